//! `ops::max_pool3d_2` and `ops::conv3d_valid` against naive loops, forward and backward, and
//! MaxPool3d's gradient against finite differences.

use crate::common::{pseudo_random, values};
use burn::tensor::{Device, Tensor, TensorData};
use ct3d_model::ops::{conv3d_valid, max_pool3d_2};

fn index(shape: [usize; 5], i: [usize; 5]) -> usize {
    (((i[0] * shape[1] + i[1]) * shape[2] + i[2]) * shape[3] + i[3]) * shape[4] + i[4]
}

/// Naive pooling: output values and, per output, the flat index of its window's maximum.
fn naive_pool(input: &[f32], shape: [usize; 5]) -> (Vec<f32>, Vec<usize>, [usize; 5]) {
    let out_shape = [shape[0], shape[1], shape[2] / 2, shape[3] / 2, shape[4] / 2];
    let mut out = Vec::new();
    let mut argmax = Vec::new();
    for n in 0..out_shape[0] {
        for c in 0..out_shape[1] {
            for x in 0..out_shape[2] {
                for y in 0..out_shape[3] {
                    for z in 0..out_shape[4] {
                        let mut best = (f32::NEG_INFINITY, 0);
                        for (dx, dy, dz) in (0..8).map(|k| (k >> 2, (k >> 1) & 1, k & 1)) {
                            let i = index(shape, [n, c, 2 * x + dx, 2 * y + dy, 2 * z + dz]);
                            if input[i] > best.0 {
                                best = (input[i], i);
                            }
                        }
                        out.push(best.0);
                        argmax.push(best.1);
                    }
                }
            }
        }
    }
    (out, argmax, out_shape)
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[test]
fn max_pool3d_forward_and_backward_match_naive_on_odd_sizes() {
    let device = Device::flex().autodiff();
    for shape in [[2, 3, 5, 6, 7], [1, 2, 4, 4, 4], [1, 1, 3, 2, 9]] {
        let numel: usize = shape.iter().product();
        // Distinct values, so every window has a unique maximum.
        let input_values: Vec<f32> = pseudo_random(shape[4] as u64, numel)
            .iter()
            .enumerate()
            .map(|(i, v)| v + i as f32 * 1e-3)
            .collect();
        let (expected, argmax, out_shape) = naive_pool(&input_values, shape);

        let input = tensor(input_values, shape, &device).require_grad();
        let output = max_pool3d_2(input.clone());
        assert_eq!(output.dims(), out_shape);
        assert_eq!(values(output.clone()), expected, "forward for {shape:?}");

        let weights = pseudo_random(99, expected.len());
        let loss = (output * tensor(weights.clone(), out_shape, &device)).sum();
        let grad = values(input.grad(&loss.backward()).unwrap());
        let mut expected_grad = vec![0.0; numel];
        for (w, &i) in weights.iter().zip(&argmax) {
            expected_grad[i] += w;
        }
        assert_eq!(grad, expected_grad, "gradient for {shape:?}");
    }
}

#[test]
fn max_pool3d_gradient_matches_finite_differences() {
    let shape = [1, 2, 5, 4, 3];
    let numel: usize = shape.iter().product();
    let base: Vec<f32> = pseudo_random(5, numel)
        .iter()
        .enumerate()
        .map(|(i, v)| v + i as f32 * 1e-2)
        .collect();
    let out_shape = [1, 2, 2, 2, 1];
    let weights = pseudo_random(6, out_shape.iter().product());
    let plain = Device::flex();
    let loss_at = |input: Vec<f32>| -> f64 {
        let pooled = values(max_pool3d_2(tensor(input, shape, &plain)));
        pooled
            .iter()
            .zip(&weights)
            .map(|(p, w)| f64::from(*p) * f64::from(*w))
            .sum()
    };

    let device = plain.clone().autodiff();
    let input = tensor(base.clone(), shape, &device).require_grad();
    let loss = (max_pool3d_2(input.clone()) * tensor(weights.clone(), out_shape, &device)).sum();
    let grad = values(input.grad(&loss.backward()).unwrap());

    let h = 1e-3;
    for i in 0..numel {
        let mut up = base.clone();
        up[i] += h;
        let mut down = base.clone();
        down[i] -= h;
        let numeric = (loss_at(up) - loss_at(down)) / (2.0 * f64::from(h));
        assert!(
            (numeric - f64::from(grad[i])).abs() < 1e-3,
            "element {i}: finite difference {numeric} vs autodiff {}",
            grad[i]
        );
    }
}

#[test]
fn conv3d_valid_matches_naive_correlation() {
    let (n, cin, cout, size) = (2, 3, 4, [5, 4, 6]);
    let in_shape = [n, cin, size[0], size[1], size[2]];
    let k_shape = [cout, cin, 3, 3, 3];
    let input: Vec<f32> = pseudo_random(1, in_shape.iter().product());
    let kernel: Vec<f32> = pseudo_random(2, k_shape.iter().product());
    let bias: Vec<f32> = pseudo_random(3, cout);
    let out_shape = [n, cout, size[0] - 2, size[1] - 2, size[2] - 2];

    let device = Device::flex();
    let output = conv3d_valid(
        tensor(input.clone(), in_shape, &device),
        tensor(kernel.clone(), k_shape, &device),
        tensor(bias.clone(), [cout], &device),
    );
    assert_eq!(output.dims(), out_shape);
    let got = values(output);

    let mut i = 0;
    for b in 0..n {
        for o in 0..cout {
            for x in 0..out_shape[2] {
                for y in 0..out_shape[3] {
                    for z in 0..out_shape[4] {
                        let mut sum = f64::from(bias[o]);
                        for c in 0..cin {
                            for (dx, dy, dz) in (0..27).map(|k| (k / 9, k / 3 % 3, k % 3)) {
                                let v = input[index(in_shape, [b, c, x + dx, y + dy, z + dz])];
                                let w = kernel[index(k_shape, [o, c, dx, dy, dz])];
                                sum += f64::from(v) * f64::from(w);
                            }
                        }
                        assert!(
                            (f64::from(got[i]) - sum).abs() < 1e-4,
                            "{} vs {sum}",
                            got[i]
                        );
                        i += 1;
                    }
                }
            }
        }
    }
}
