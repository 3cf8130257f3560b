//! The forward pass: per tile, the convolution rows as shifted GEMMs into a cache-sized buffer,
//! then bias, 2×2×2 max pooling and ReLU while the rows are still in cache; only the pooled
//! values (and, for training, one arg-max byte each) reach memory.

use rayon::prelude::*;

use super::gemm::{im2col, matmul};
use super::geometry::{FusedConvShape, split_lengths};
use super::pack::PackedWeights;
use super::winograd;
use super::{KERNEL, PASSES, TAPS};

/// Convolution output (bias not added) of `rows` consecutive positions from `start`, into
/// `out` (`rows × F`, channels fastest).
pub(super) fn conv_rows(
    shape: &FusedConvShape,
    volume: &[f32],
    weights: &PackedWeights,
    start: usize,
    rows: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    assert!(out.len() >= rows * f_n);
    if shape.uses_im2col() {
        scratch.resize(rows * TAPS * c_n, 0.0);
        im2col(shape, volume, start, rows, scratch);
        // SAFETY: `scratch` is rows × 27C, `weights.forward` is 27C × F, `out` is rows × F.
        unsafe {
            matmul(
                rows,
                f_n,
                TAPS * c_n,
                out.as_mut_ptr(),
                f_n,
                false,
                scratch.as_ptr(),
                TAPS * c_n,
                1,
                weights.forward.as_ptr(),
                f_n,
            );
        }
        return;
    }
    for kx in 0..KERNEL {
        for ky in 0..KERNEL {
            let first = (start + shape.shift(kx, ky)) * c_n;
            let last = first + (rows - 1) * c_n + KERNEL * c_n;
            assert!(
                last <= volume.len(),
                "shifted rows stay inside the padded volume"
            );
            let w = &weights.forward[(kx * KERNEL + ky) * KERNEL * c_n * f_n..];
            // SAFETY: lhs rows r = 0..rows read volume[first + r·C .. + 3C] ⊆ volume (checked);
            // w holds 3C × F values; out holds rows × F.
            unsafe {
                matmul(
                    rows,
                    f_n,
                    KERNEL * c_n,
                    out.as_mut_ptr(),
                    f_n,
                    kx + ky > 0,
                    volume.as_ptr().add(first),
                    c_n,
                    1,
                    w.as_ptr(),
                    f_n,
                );
            }
        }
    }
}

/// Max over a 2×2×2 window (eight rows of `F` channels), plus bias, then ReLU; with `argmax`,
/// also the first winning position and whether the ReLU passed it.
///
/// Written as fixed-width lanes with selects rather than branches so that it vectorizes: it runs
/// once per pooled value and is the forward pass's only work outside the GEMMs.
fn pool_window(window: &[&[f32]; 8], bias: &[f32], out: &mut [f32], argmax: Option<&mut [u8]>) {
    const LANES: usize = 16;
    let f_n = out.len();
    let mut argmax = argmax;
    for f0 in (0..f_n).step_by(LANES) {
        let width = (f_n - f0).min(LANES);
        let mut best = [f32::NEG_INFINITY; LANES];
        for row in window {
            for (b, &v) in best.iter_mut().zip(&row[f0..f0 + width]) {
                *b = if v > *b { v } else { *b };
            }
        }
        if let Some(argmax) = argmax.as_deref_mut() {
            // Last to first, so equal values leave the first position (as a strict `>` scan).
            let mut codes = [7u8; LANES];
            for code in (0..8u8).rev() {
                for ((c, &b), &v) in codes
                    .iter_mut()
                    .zip(&best)
                    .zip(&window[code as usize][f0..f0 + width])
                {
                    *c = if v == b { code } else { *c };
                }
            }
            for i in 0..width {
                let value = best[i] + bias[f0 + i];
                argmax[f0 + i] = codes[i] | if value > 0.0 { PASSES } else { 0 };
            }
        }
        for i in 0..width {
            let value = best[i] + bias[f0 + i];
            out[f0 + i] = if value > 0.0 { value } else { 0.0 };
        }
    }
}

/// Fused forward pass.
///
/// - `input`: channels-last volumes, `batch × input_stride()` floats (see
///   [`FusedConvShape::input_stride`]; the tail of each volume must be zero or finite).
/// - `weights`: packed `[F, C, 3, 3, 3]` weights; `bias`: `[F]`.
/// - returns the pooled output, channels-last `[batch, px, py, pz, F]`, and, when `keep_argmax`,
///   one arg-max byte per pooled value for [`super::backward()`].
pub fn forward(
    shape: &FusedConvShape,
    input: &[f32],
    weights: &PackedWeights,
    bias: &[f32],
    keep_argmax: bool,
) -> (Vec<f32>, Option<Vec<u8>>) {
    assert!(shape.is_valid(), "shape {shape:?}");
    assert_eq!(
        input.len(),
        shape.batch * shape.input_stride(),
        "input length"
    );
    assert_eq!(bias.len(), shape.out_channels, "bias length");
    match super::kernel_for(shape) {
        super::Kernel::FirstLayer => {
            super::first_layer::forward(shape, input, weights, bias, keep_argmax)
        }
        super::Kernel::Winograd => winograd::forward(
            winograd::Isa::best(),
            shape,
            input,
            weights,
            bias,
            keep_argmax,
        ),
        super::Kernel::General => general(shape, input, weights, bias, keep_argmax),
    }
}

/// [`forward()`] on the general kernels, whatever the CPU.
pub(super) fn general(
    shape: &FusedConvShape,
    input: &[f32],
    weights: &PackedWeights,
    bias: &[f32],
    keep_argmax: bool,
) -> (Vec<f32>, Option<Vec<u8>>) {
    let f_n = shape.out_channels;
    let [px_n, py_n, pz_n] = shape.pooled();
    let mut output = vec![0.0f32; shape.batch * px_n * py_n * pz_n * f_n];
    let mut argmax = keep_argmax.then(|| vec![0u8; output.len()]);
    let tiles = shape.tiles();
    let outputs = split_lengths(&mut output, tiles.iter().map(|t| t.len(shape)));
    let argmaxes: Vec<Option<&mut [u8]>> = match argmax.as_mut() {
        Some(a) => split_lengths(a, tiles.iter().map(|t| t.len(shape)))
            .into_iter()
            .map(Some)
            .collect(),
        None => tiles.iter().map(|_| None).collect(),
    };

    tiles.par_iter().zip(outputs).zip(argmaxes).for_each_init(
        || (Vec::new(), Vec::new()),
        |(scratch, conv), ((tile, out), mut arg)| {
            let volume = &input[tile.n * shape.input_stride()..(tile.n + 1) * shape.input_stride()];
            let x_stride = tile.x_stride(shape);
            let runs = tile.runs(shape, x_stride);
            let total: usize = runs.iter().map(|r| r.1).sum();
            conv.resize(total * f_n, 0.0);
            for &(start, rows, buffer_row) in &runs {
                let buffer = &mut conv[buffer_row * f_n..(buffer_row + rows) * f_n];
                conv_rows(shape, volume, weights, start, rows, scratch, buffer);
            }
            let mut o = 0;
            for pxi in 0..tile.px.len() {
                for pyi in 0..tile.py.len() {
                    for pz in 0..pz_n {
                        // The window's eight rows, in code order dx·4 + dy·2 + dz.
                        let window: [&[f32]; 8] = std::array::from_fn(|code| {
                            let (dx, dy, dz) = (code >> 2, (code >> 1) & 1, code & 1);
                            let row =
                                tile.row(shape, x_stride, 2 * pxi + dx, 2 * pyi + dy, 2 * pz + dz);
                            &conv[row * f_n..(row + 1) * f_n]
                        });
                        pool_window(
                            &window,
                            bias,
                            &mut out[o..o + f_n],
                            arg.as_deref_mut().map(|a| &mut a[o..o + f_n]),
                        );
                        o += f_n;
                    }
                }
            }
        },
    );
    (output, argmax)
}
