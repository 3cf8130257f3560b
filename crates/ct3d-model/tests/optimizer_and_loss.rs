//! Keras's Adam, the learning-rate schedule, binary cross-entropy and accuracy against numbers
//! computed by hand from Keras's formulas.

use crate::common::values;
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use ct3d_model::train_step::{
    binary_cross_entropy_with_logits, count_correct, weighted_binary_cross_entropy_with_logits,
};
use ct3d_model::{Adam, AdamConfig, ExponentialDecay};

fn assert_close(got: &[f32], expected: &[f64], tolerance: f64) {
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (f64::from(*g) - e).abs() <= tolerance,
            "got {got:?}, expected {expected:?}"
        );
    }
}

/// One dense layer `y = x·W + b` with `W = [0.5, −0.25]ᵀ`, `b = 0.1`, input `x = [1, 1e-6]` and
/// loss `y`: the gradients are `[1, 1e-6]` for `W` and `1` for `b`.
///
/// Keras (lr 0.01, β1 0.9, β2 0.999, ε 1e-7), step t: `α = lr·sqrt(1−β2ᵗ)/(1−β1ᵗ)`,
/// `m ← m + (g−m)·0.1`, `v ← v + (g²−v)·0.001`, `θ ← θ − α·m/(sqrt(v)+ε)`. Worked out in f64:
/// - step 1: `W = [0.49000003, −0.25240253]`, `b = 0.09000003`
/// - step 2: `W = [0.48000005, −0.25549217]`, `b = 0.08000005`
///
/// The tiny gradient tells the formulas apart: with ε added to the bias-corrected `sqrt(v̂)`
/// (burn's `AdamConfig`, PyTorch) step 1 would give `W[1] = −0.25909`.
#[test]
fn two_adam_steps_of_a_dense_layer_match_keras_by_hand() {
    let device = Device::flex().autodiff();
    let param = |values: Vec<f32>, shape: [usize; 2]| {
        Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(values, shape),
            &device,
        ))
    };
    let mut layer = Linear {
        weight: param(vec![0.5, -0.25], [2, 1]),
        bias: Some(Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(vec![0.1f32], [1]),
            &device,
        ))),
    };
    let mut adam = Adam::new(AdamConfig::default());
    let expected = [
        ([0.490_000_03, -0.252_402_53], 0.090_000_03),
        ([0.480_000_05, -0.255_492_17], 0.080_000_05),
    ];
    for (weight, bias) in expected {
        let input = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1e-6], [1, 2]), &device);
        let loss = layer.forward(input).sum();
        layer = adam.step(0.01, layer, loss.backward());
        assert_close(&values(layer.weight.val()), &weight, 2e-7);
        assert_close(&values(layer.bias.as_ref().unwrap().val()), &[bias], 2e-7);
    }
    assert_eq!(adam.iterations(), 2);
}

#[test]
fn exponential_decay_is_keras_staircase_schedule() {
    let seed = ExponentialDecay::default();
    assert_eq!(seed.learning_rate(0), 1e-4);
    assert_eq!(seed.learning_rate(99_999), 1e-4);
    assert!((seed.learning_rate(100_000) - 0.96e-4).abs() < 1e-18);
    assert!((seed.learning_rate(250_000) - 1e-4 * 0.96 * 0.96).abs() < 1e-18);
    let smooth = ExponentialDecay {
        staircase: false,
        ..seed
    };
    assert!((smooth.learning_rate(50_000) - 1e-4 * 0.96f64.sqrt()).abs() < 1e-18);
}

/// `−(y·ln σ(z) + (1−y)·ln σ(−z))` evaluated literally in f64 (finite for |z| ≤ 500).
fn naive_bce(z: f64, y: f64) -> f64 {
    let sigmoid = |t: f64| 1.0 / (1.0 + (-t).exp());
    -(y * sigmoid(z).ln() + (1.0 - y) * sigmoid(-z).ln())
}

#[test]
fn cross_entropy_from_logits_matches_naive_formula_including_large_logits() {
    let device = Device::flex().autodiff();
    let logits = [
        -500.0, -100.0, -20.0, -3.0, -0.5, 0.0, 0.5, 3.0, 20.0, 100.0, 500.0f32,
    ];
    for label in [0.0f32, 1.0] {
        for &z in &logits {
            let logit =
                Tensor::<2>::from_data(TensorData::new(vec![z], [1, 1]), &device).require_grad();
            let target = Tensor::<2>::from_data(TensorData::new(vec![label], [1, 1]), &device);
            let loss = binary_cross_entropy_with_logits(logit.clone(), target);
            let grad = values(logit.grad(&loss.backward()).unwrap())[0];
            let got = values(loss)[0];
            let expected = naive_bce(f64::from(z), f64::from(label));
            assert!(
                (f64::from(got) - expected).abs() <= 1e-6 * expected.max(1.0),
                "z={z} y={label}: {got} vs {expected}"
            );
            // d loss / d z = σ(z) − y.
            let expected_grad = 1.0 / (1.0 + (-f64::from(z)).exp()) - f64::from(label);
            assert!(
                (f64::from(grad) - expected_grad).abs() < 1e-6,
                "z={z} y={label}: grad {grad}"
            );
        }
    }
}

#[test]
fn cross_entropy_is_the_batch_mean() {
    let device = Device::flex();
    let logits = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, -1.0, 0.3], [3, 1]), &device);
    let labels = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0], [3, 1]), &device);
    let got = values(binary_cross_entropy_with_logits(logits, labels))[0];
    let expected = (naive_bce(2.0, 1.0) + naive_bce(-1.0, 1.0) + naive_bce(0.3, 0.0)) / 3.0;
    assert!((f64::from(got) - expected).abs() < 1e-6);
}

/// Keras's reduction of a class-weighted loss: `Σ wᵢ·lᵢ / batch` ("sum over batch size"), so
/// weights of 1 give the plain mean and the weights are not renormalised.
#[test]
fn weighted_cross_entropy_sums_over_the_batch_size() {
    let device = Device::flex();
    let tensor = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [3, 1]), &device);
    let (logits, labels) = (vec![2.0f32, -1.0, 0.3], vec![1.0f32, 1.0, 0.0]);
    let weighted = |w: Vec<f32>| {
        values(weighted_binary_cross_entropy_with_logits(
            tensor(logits.clone()),
            tensor(labels.clone()),
            tensor(w),
        ))[0]
    };
    let got = weighted(vec![0.5, 2.0, 1.0]);
    let expected =
        (0.5 * naive_bce(2.0, 1.0) + 2.0 * naive_bce(-1.0, 1.0) + naive_bce(0.3, 0.0)) / 3.0;
    assert!(
        (f64::from(got) - expected).abs() < 1e-6,
        "{got} vs {expected}"
    );
    let plain = values(binary_cross_entropy_with_logits(
        tensor(logits.clone()),
        tensor(labels.clone()),
    ))[0];
    assert_eq!(weighted(vec![1.0; 3]), plain);
}

#[test]
fn binary_accuracy_thresholds_logits_at_zero() {
    assert_eq!(
        count_correct(&[0.1, -0.1, 5.0, -5.0], &[1.0, 0.0, 0.0, 1.0]),
        2
    );
    // p = 0.5 exactly is not "> 0.5": class 0, as Keras's binary_accuracy.
    assert_eq!(count_correct(&[0.0, 0.0], &[0.0, 1.0]), 1);
}
