//! The kernels against plain `f64` reference implementations, and the tiling's coverage.

use super::*;

fn shape(
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    input: [usize; 3],
) -> FusedConvShape {
    FusedConvShape {
        batch,
        in_channels,
        out_channels,
        input,
    }
}

/// Plain f64 Conv3D(valid) + bias → ReLU → MaxPool3D(2) on channels-first data, with the
/// window's first maximum as its arg-max.
fn reference_forward(
    shape: &FusedConvShape,
    x: &[f64],
    w: &[f64],
    b: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [x_n, y_n, z_n] = shape.input;
    let [ox, oy, oz] = shape.conv_output();
    let mut conv = vec![0.0; shape.batch * f_n * ox * oy * oz];
    for n in 0..shape.batch {
        for f in 0..f_n {
            for i in 0..ox {
                for j in 0..oy {
                    for k in 0..oz {
                        let mut s = b[f];
                        for c in 0..c_n {
                            for a in 0..3 {
                                for bb in 0..3 {
                                    for cc in 0..3 {
                                        s += x[(((n * c_n + c) * x_n + i + a) * y_n + j + bb)
                                            * z_n
                                            + k
                                            + cc]
                                            * w[(f * c_n + c) * 27 + (a * 3 + bb) * 3 + cc];
                                    }
                                }
                            }
                        }
                        conv[(((n * f_n + f) * ox + i) * oy + j) * oz + k] = s;
                    }
                }
            }
        }
    }
    let [px, py, pz] = shape.pooled();
    let mut pooled = vec![0.0; shape.batch * f_n * px * py * pz];
    for n in 0..shape.batch {
        for f in 0..f_n {
            for i in 0..px {
                for j in 0..py {
                    for k in 0..pz {
                        let mut m = f64::NEG_INFINITY;
                        for a in 0..2 {
                            for bb in 0..2 {
                                for cc in 0..2 {
                                    let v =
                                        conv[(((n * f_n + f) * ox + 2 * i + a) * oy + 2 * j + bb)
                                            * oz
                                            + 2 * k
                                            + cc];
                                    m = m.max(v);
                                }
                            }
                        }
                        pooled[(((n * f_n + f) * px + i) * py + j) * pz + k] = m.max(0.0);
                    }
                }
            }
        }
    }
    (conv, pooled)
}

fn random(len: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn check_forward(shape: FusedConvShape) {
    let xs = random(shape.batch * shape.in_channels * shape.input_positions(), 1);
    let ws = random(shape.out_channels * shape.in_channels * 27, 2);
    let bs = random(shape.out_channels, 3);
    let (_, expected) = reference_forward(&shape, &xs, &ws, &bs);
    let input = to_channels_last(
        &f32s(&xs),
        shape.batch,
        shape.in_channels,
        shape.input_positions(),
        shape.input_tail(),
    );
    let packed = PackedWeights::new(&f32s(&ws), shape.in_channels, shape.out_channels);
    let (out, _) = forward(&shape, &input, &packed, &f32s(&bs), true);
    let out = to_channels_first(
        &out,
        shape.batch,
        shape.out_channels,
        shape.pooled_positions(),
    );
    let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = out
        .iter()
        .zip(&expected)
        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
    assert!(
        worst <= 1e-5 * scale,
        "{shape:?}: worst {worst}, scale {scale}"
    );
}

/// f64 gradients of `Σ pooled · g` with respect to the input, weights and bias.
fn reference_backward(
    shape: &FusedConvShape,
    x: &[f64],
    w: &[f64],
    b: &[f64],
    g: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [x_n, y_n, z_n] = shape.input;
    let [ox, oy, oz] = shape.conv_output();
    let [px, py, pz] = shape.pooled();
    let (conv, _) = reference_forward(shape, x, w, b);
    let mut dconv = vec![0.0; conv.len()];
    for n in 0..shape.batch {
        for f in 0..f_n {
            for i in 0..px {
                for j in 0..py {
                    for k in 0..pz {
                        let mut best = (f64::NEG_INFINITY, 0);
                        for a in 0..2 {
                            for bb in 0..2 {
                                for cc in 0..2 {
                                    let at = (((n * f_n + f) * ox + 2 * i + a) * oy + 2 * j + bb)
                                        * oz
                                        + 2 * k
                                        + cc;
                                    if conv[at] > best.0 {
                                        best = (conv[at], at);
                                    }
                                }
                            }
                        }
                        if best.0 > 0.0 {
                            dconv[best.1] += g[(((n * f_n + f) * px + i) * py + j) * pz + k];
                        }
                    }
                }
            }
        }
    }
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; b.len()];
    for n in 0..shape.batch {
        for f in 0..f_n {
            for i in 0..ox {
                for j in 0..oy {
                    for k in 0..oz {
                        let d = dconv[(((n * f_n + f) * ox + i) * oy + j) * oz + k];
                        if d == 0.0 {
                            continue;
                        }
                        db[f] += d;
                        for c in 0..c_n {
                            for a in 0..3 {
                                for bb in 0..3 {
                                    for cc in 0..3 {
                                        let xi = (((n * c_n + c) * x_n + i + a) * y_n + j + bb)
                                            * z_n
                                            + k
                                            + cc;
                                        let wi = (f * c_n + c) * 27 + (a * 3 + bb) * 3 + cc;
                                        dw[wi] += d * x[xi];
                                        dx[xi] += d * w[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

fn assert_close(name: &str, got: &[f32], expected: &[f64], shape: &FusedConvShape) {
    assert_eq!(got.len(), expected.len(), "{name} length");
    let scale = expected.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(expected)
        .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b).abs()));
    assert!(scale > 0.0, "{name}: all-zero reference for {shape:?}");
    assert!(
        worst <= 1e-5 * scale,
        "{name} {shape:?}: worst {worst}, scale {scale}"
    );
}

#[test]
fn backward_matches_f64_reference() {
    for shape in [
        shape(2, 1, 5, [7, 8, 9]),
        shape(1, 12, 3, [6, 9, 7]),
        shape(2, 9, 70, [5, 4, 6]),
        // Slabs too big for one tile: blocks of pooled y rows.
        shape(1, 2, 48, [6, 40, 41]),
    ] {
        let xs = random(shape.batch * shape.in_channels * shape.input_positions(), 4);
        let ws = random(shape.out_channels * shape.in_channels * 27, 5);
        let bs = random(shape.out_channels, 6);
        let gs = random(
            shape.batch * shape.out_channels * shape.pooled_positions(),
            7,
        );
        let (dx, dw, db) = reference_backward(&shape, &xs, &ws, &bs, &gs);
        let input = to_channels_last(
            &f32s(&xs),
            shape.batch,
            shape.in_channels,
            shape.input_positions(),
            shape.input_tail(),
        );
        let packed = PackedWeights::new(&f32s(&ws), shape.in_channels, shape.out_channels);
        let (_, argmax) = forward(&shape, &input, &packed, &f32s(&bs), true);
        let grad = to_channels_last(
            &f32s(&gs),
            shape.batch,
            shape.out_channels,
            shape.pooled_positions(),
            0,
        );
        let grads = backward(&shape, &input, &packed, &argmax.unwrap(), &grad, true);
        let got_dx = to_channels_first(
            grads.input.as_ref().unwrap(),
            shape.batch,
            shape.in_channels,
            shape.input_positions(),
        );
        assert_close("input", &got_dx, &dx, &shape);
        let got_dw =
            unpack_weight_gradient(&grads.weights_packed, shape.in_channels, shape.out_channels);
        assert_close("weights", &got_dw, &dw, &shape);
        assert_close("bias", &grads.bias, &db, &shape);
    }
}

#[test]
fn tiles_cover_every_pooled_value_once() {
    for shape in [
        shape(2, 1, 64, [128, 128, 64]),
        shape(2, 64, 64, [63, 63, 31]),
        shape(1, 128, 256, [14, 14, 6]),
        shape(3, 1, 2, [5, 4, 4]),
    ] {
        let tiles = shape.tiles();
        let [px, py, pz] = shape.pooled();
        let total: usize = tiles.iter().map(|t| t.len(&shape)).sum();
        assert_eq!(
            total,
            shape.batch * px * py * pz * shape.out_channels,
            "{shape:?}"
        );
        assert!(
            tiles.len() >= 2 * shape.batch.min(px),
            "{shape:?}: {} tiles",
            tiles.len()
        );
        let mut expected = (0, 0, 0);
        for t in &tiles {
            assert_eq!(
                (t.n, t.px.start, t.py.start),
                expected,
                "{shape:?}: tiles in order"
            );
            expected = if t.py.end < py {
                (t.n, t.px.start, t.py.end)
            } else if t.px.end < px {
                (t.n, t.px.end, 0)
            } else {
                (t.n + 1, 0, 0)
            };
        }
    }
}

#[test]
fn forward_matches_f64_reference() {
    for shape in [
        shape(2, 1, 5, [7, 8, 9]),
        shape(1, 12, 3, [6, 9, 7]),
        shape(2, 3, 70, [4, 5, 6]),
        shape(1, 10, 48, [7, 40, 41]),
    ] {
        check_forward(shape);
    }
}

/// The Winograd kernels, with every instruction set this CPU has, against the f64 reference:
/// odd and even sizes (partial input-gradient tiles at the far edges), one to several blocks of
/// tiles, more and fewer filters than input channels.
#[test]
fn winograd_matches_f64_reference() {
    let mut isas = vec![winograd::Isa::Portable];
    if winograd::Isa::best() != winograd::Isa::Portable {
        isas.push(winograd::Isa::best());
    }
    for shape in [
        shape(2, 16, 32, [7, 8, 9]),
        shape(1, 32, 16, [6, 9, 5]),
        shape(1, 16, 16, [4, 4, 4]),
        // More tiles than one block (and than one weight-gradient block).
        shape(1, 16, 16, [6, 30, 21]),
    ] {
        let xs = random(shape.batch * shape.in_channels * shape.input_positions(), 8);
        let ws = random(shape.out_channels * shape.in_channels * 27, 9);
        let bs = random(shape.out_channels, 10);
        let gs = random(
            shape.batch * shape.out_channels * shape.pooled_positions(),
            11,
        );
        let (_, pooled) = reference_forward(&shape, &xs, &ws, &bs);
        let (dx, dw, db) = reference_backward(&shape, &xs, &ws, &bs, &gs);
        let input = to_channels_last(
            &f32s(&xs),
            shape.batch,
            shape.in_channels,
            shape.input_positions(),
            shape.input_tail(),
        );
        let packed = PackedWeights::new(&f32s(&ws), shape.in_channels, shape.out_channels);
        let grad = to_channels_last(
            &f32s(&gs),
            shape.batch,
            shape.out_channels,
            shape.pooled_positions(),
            0,
        );
        for &isa in &isas {
            let (out, argmax) = winograd::forward(isa, &shape, &input, &packed, &f32s(&bs), true);
            let out = to_channels_first(
                &out,
                shape.batch,
                shape.out_channels,
                shape.pooled_positions(),
            );
            assert_close(&format!("{isa:?} forward"), &out, &pooled, &shape);
            // The arg-max bytes are the direct kernel's (no near ties in random data).
            let (_, direct_argmax) = forward_direct(&shape, &input, &packed, &f32s(&bs));
            assert_eq!(argmax.as_ref(), Some(&direct_argmax), "{isa:?} arg-max");
            let grads =
                winograd::backward(isa, &shape, &input, &packed, &argmax.unwrap(), &grad, true);
            let got_dx = to_channels_first(
                grads.input.as_ref().unwrap(),
                shape.batch,
                shape.in_channels,
                shape.input_positions(),
            );
            assert_close(&format!("{isa:?} input"), &got_dx, &dx, &shape);
            let got_dw = unpack_weight_gradient(
                &grads.weights_packed,
                shape.in_channels,
                shape.out_channels,
            );
            assert_close(&format!("{isa:?} weights"), &got_dw, &dw, &shape);
            assert_close(&format!("{isa:?} bias"), &grads.bias, &db, &shape);
        }
    }
}

/// The general kernels' forward pass whatever the CPU.
fn forward_direct(
    shape: &FusedConvShape,
    input: &[f32],
    packed: &PackedWeights,
    bias: &[f32],
) -> (Vec<f32>, Vec<u8>) {
    let (out, argmax) = forward::general(shape, input, packed, bias, true);
    (out, argmax.unwrap())
}

/// The Winograd gradients do not depend on the number of threads (fixed summation order), and
/// the public entry points choose Winograd exactly where the CPU and the shape allow it.
#[test]
fn winograd_is_deterministic_and_chosen_where_it_applies() {
    let shape = shape(2, 16, 32, [10, 12, 14]);
    let xs = f32s(&random(
        shape.batch * shape.in_channels * shape.input_positions(),
        12,
    ));
    let ws = f32s(&random(shape.out_channels * shape.in_channels * 27, 13));
    let gs = f32s(&random(
        shape.batch * shape.out_channels * shape.pooled_positions(),
        14,
    ));
    let input = to_channels_last(
        &xs,
        shape.batch,
        shape.in_channels,
        shape.input_positions(),
        shape.input_tail(),
    );
    let packed = PackedWeights::new(&ws, shape.in_channels, shape.out_channels);
    let bias = vec![0.1f32; shape.out_channels];
    let isa = winograd::Isa::best();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (out, argmax) = winograd::forward(isa, &shape, &input, &packed, &bias, true);
            let g = winograd::backward(isa, &shape, &input, &packed, &argmax.unwrap(), &gs, true);
            (out, g.weights_packed, g.bias, g.input.unwrap())
        })
    };
    let (one, three) = (run(1), run(3));
    assert!(one.0 == three.0 && one.1 == three.1 && one.2 == three.2 && one.3 == three.3);

    let avx512 = isa == winograd::Isa::Avx512;
    let expected = if avx512 {
        Kernel::Winograd
    } else {
        Kernel::General
    };
    assert_eq!(kernel_for(&shape), expected);
    assert_eq!(
        kernel_for(&FusedConvShape {
            in_channels: 8,
            ..shape
        }),
        Kernel::General
    );
    assert_eq!(
        kernel_for(&FusedConvShape {
            out_channels: 24,
            ..shape
        }),
        Kernel::General
    );
    // The switch is on by default (flipping it here would race with the other tests).
    assert!(set_avx512_kernels(true));
}

/// The one-channel AVX-512 kernel against the f64 reference (where the CPU has AVX-512; the
/// general kernels run these shapes elsewhere): odd and even pooled sizes (a lone last window
/// in `z`), 16 to 80 filters (one to five 16-filter registers), gradients independent of the
/// thread count.
#[test]
fn first_layer_kernel_matches_f64_reference() {
    let shapes = [
        shape(2, 1, 16, [7, 8, 9]),
        shape(1, 1, 64, [6, 9, 10]),
        shape(1, 1, 80, [5, 6, 7]),
        // More windows than one candidate-table block, in several groups.
        shape(2, 1, 32, [12, 20, 22]),
    ];
    if winograd::Isa::best() != winograd::Isa::Avx512 {
        for s in &shapes {
            assert_eq!(kernel_for(s), Kernel::General);
        }
        eprintln!("no AVX-512 here: the one-channel kernel is not used");
        return;
    }
    for shape in shapes {
        assert_eq!(kernel_for(&shape), Kernel::FirstLayer);
        let xs = random(shape.batch * shape.input_positions(), 15);
        let ws = random(shape.out_channels * 27, 16);
        let bs = random(shape.out_channels, 17);
        let gs = random(
            shape.batch * shape.out_channels * shape.pooled_positions(),
            18,
        );
        let (_, pooled) = reference_forward(&shape, &xs, &ws, &bs);
        let (_, dw, db) = reference_backward(&shape, &xs, &ws, &bs, &gs);
        let input = to_channels_last(
            &f32s(&xs),
            shape.batch,
            1,
            shape.input_positions(),
            shape.input_tail(),
        );
        let packed = PackedWeights::new(&f32s(&ws), 1, shape.out_channels);
        let grad = to_channels_last(
            &f32s(&gs),
            shape.batch,
            shape.out_channels,
            shape.pooled_positions(),
            0,
        );
        let (out, argmax) = first_layer::forward(&shape, &input, &packed, &f32s(&bs), true);
        let argmax = argmax.unwrap();
        let out = to_channels_first(
            &out,
            shape.batch,
            shape.out_channels,
            shape.pooled_positions(),
        );
        assert_close("first-layer forward", &out, &pooled, &shape);
        let (_, direct_argmax) = forward_direct(&shape, &input, &packed, &f32s(&bs));
        assert_eq!(argmax, direct_argmax, "arg-max bytes");
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| first_layer::weight_and_bias_gradients(&shape, &input, &argmax, &grad))
        };
        let (got_w, got_b) = run(2);
        assert_eq!(
            (got_w.clone(), got_b.clone()),
            run(1),
            "thread-count independent"
        );
        let got_dw = unpack_weight_gradient(&got_w, 1, shape.out_channels);
        assert_close("first-layer weights", &got_dw, &dw, &shape);
        assert_close("first-layer bias", &got_b, &db, &shape);
        // Through the public entry points too.
        let grads = backward(&shape, &input, &packed, &argmax, &grad, false);
        assert_eq!(grads.weights_packed, got_w);
        assert!(grads.input.is_none());
    }
}
