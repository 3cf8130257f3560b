//! The one-input-channel block (the seed's first convolution, `1 → 64` on the whole scan) as a
//! direct AVX-512 kernel: forward with fused bias, ReLU, max pooling and arg-max bytes, and the
//! weight and bias gradients (the first layer needs no input gradient).
//!
//! # Why
//! With one input channel a GEMM has only 27 columns, so the general kernels spent more time
//! packing than multiplying (30–45 GFLOP per CPU-second, against ≈ 170 for the other blocks).
//! Here the forward pass keeps two pooling windows' worth of outputs (4 `z` positions × up to
//! 64 filters = 16 registers) in registers while it walks the 27 taps: per `(kx, ky)` it
//! broadcasts the six input values of a `z` row once and uses each in up to three taps.
//!
//! The weight gradient uses the sparsity of the pooled gradient: each pooled value's gradient
//! goes to one of its window's eight positions, so per window and tap the eight candidate
//! inputs are one 8-float row, and `vpermps` picks each filter's own candidate by its arg-max
//! code, 16 filters per instruction, instead of multiplying eight mostly zero rows.
//!
//! Deterministic: outputs are written by one task each, and the gradient's partial sums are
//! added in a fixed order independent of the thread count.

// Register blocks are indexed by tap, row and vector, as in the kernel's description.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::PASSES;
use super::geometry::{FusedConvShape, output_units};
use super::pack::PackedWeights;

/// Filters per register.
const LANES: usize = 16;
/// Partial weight gradients summed in a fixed order.
const GRADIENT_GROUPS: usize = 16;
/// Windows whose candidate tables are built before the filter loop reuses them from L1
/// (27 taps × 8 floats each).
const TABLE_WINDOWS: usize = 32;

/// Whether this kernel runs `shape` on this CPU (see [`super::kernel_for`]).
pub(super) fn applies(shape: &FusedConvShape) -> bool {
    cfg!(target_arch = "x86_64")
        && shape.in_channels == 1
        && shape.out_channels.is_multiple_of(LANES)
        && super::avx512_kernels_enabled()
}

/// Forward pass; same contract as [`super::forward()`].
pub(super) fn forward(
    shape: &FusedConvShape,
    input: &[f32],
    weights: &PackedWeights,
    bias: &[f32],
    keep_argmax: bool,
) -> (Vec<f32>, Option<Vec<u8>>) {
    assert!(shape.is_valid() && applies(shape), "shape {shape:?}");
    assert_eq!(input.len(), shape.batch * shape.input_stride());
    let f_n = shape.out_channels;
    let [px_n, py_n, pz_n] = shape.pooled();
    let slab = py_n * pz_n * f_n;
    let mut output = vec![0.0f32; shape.batch * px_n * slab];
    let mut argmax = keep_argmax.then(|| vec![0u8; output.len()]);
    output_units(&mut output, argmax.as_deref_mut(), px_n * slab, slab)
        .into_par_iter()
        .enumerate()
        .for_each(|(unit, (out, arg))| {
            let (n, px) = (unit / px_n, unit % px_n);
            let volume = &input[n * shape.input_stride()..(n + 1) * shape.input_stride()];
            // SAFETY: `applies` checked AVX-512F; the slab's reads stay inside `volume`
            // (checked in `avx512::forward_slab`).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx512::forward_slab(shape, volume, &weights.forward, bias, px, out, arg);
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("{volume:?} {out:?} {arg:?}");
        });
    (output, argmax)
}

/// Weight and bias gradients (no input gradient); the weight gradient in the forward packing.
pub(super) fn weight_and_bias_gradients(
    shape: &FusedConvShape,
    input: &[f32],
    argmax: &[u8],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    assert!(shape.is_valid() && applies(shape), "shape {shape:?}");
    let f_n = shape.out_channels;
    let total = shape.batch * shape.pooled_positions();
    assert_eq!(argmax.len(), total * f_n);
    assert_eq!(grad.len(), total * f_n);
    let group_len = total.div_ceil(GRADIENT_GROUPS).max(TABLE_WINDOWS);
    let groups = total.div_ceil(group_len);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let (first, last) = (g * group_len, ((g + 1) * group_len).min(total));
            let mut dw = vec![0.0f32; 27 * f_n];
            let mut db = vec![0.0f32; f_n];
            // SAFETY: `applies` checked AVX-512F; reads are bounds-checked inside.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                avx512::weight_gradient(shape, input, argmax, grad, first, last, &mut dw, &mut db);
            }
            (dw, db)
        })
        .collect();
    let mut partials = partials.into_iter();
    let (mut dw, mut db) = partials.next().expect("at least one group");
    for (w, b) in partials {
        dw.iter_mut().zip(&w).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

#[cfg(target_arch = "x86_64")]
pub(super) use avx512::pool;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{FusedConvShape, LANES, PASSES, TABLE_WINDOWS};

    /// Convolution outputs (no bias) of `R` consecutive `z` positions from input position
    /// `base`, for filters `f0..f0 + 16·V`, into `out[r·ld + v·16]`.
    ///
    /// # Safety
    /// AVX-512F; `x[base + (kx·Y + ky)·Z + j]` for `j < R + 2` and `w[tap·ld_w + f0 + 16·V]`
    /// in bounds; `out[(R − 1)·ld + 16·V]` in bounds.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn positions<const R: usize, const V: usize>(
        x: *const f32,
        (y_n, z_n): (usize, usize),
        base: usize,
        w: *const f32,
        ld_w: usize,
        out: *mut f32,
        ld: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            for kx in 0..3 {
                for ky in 0..3 {
                    let row = x.add(base + (kx * y_n + ky) * z_n);
                    let mut b = [_mm512_setzero_ps(); 6];
                    for j in 0..R + 2 {
                        b[j] = _mm512_set1_ps(*row.add(j));
                    }
                    for kz in 0..3 {
                        let tap = (kx * 3 + ky) * 3 + kz;
                        let mut wv = [_mm512_setzero_ps(); V];
                        for v in 0..V {
                            wv[v] = _mm512_loadu_ps(w.add(tap * ld_w + 16 * v));
                        }
                        for r in 0..R {
                            for v in 0..V {
                                acc[r][v] = _mm512_fmadd_ps(b[r + kz], wv[v], acc[r][v]);
                            }
                        }
                    }
                }
            }
            for r in 0..R {
                for v in 0..V {
                    _mm512_storeu_ps(out.add(r * ld + 16 * v), acc[r][v]);
                }
            }
        }
    }

    /// [`positions`] for any `R ∈ {2, 4}` and 16-filter count `v ∈ 1..=4`.
    ///
    /// # Safety
    /// As [`positions`].
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn positions_any(
        r: usize,
        v: usize,
        x: *const f32,
        yz: (usize, usize),
        base: usize,
        w: *const f32,
        ld_w: usize,
        out: *mut f32,
        ld: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match (r, v) {
                (4, 4) => positions::<4, 4>(x, yz, base, w, ld_w, out, ld),
                (4, 3) => positions::<4, 3>(x, yz, base, w, ld_w, out, ld),
                (4, 2) => positions::<4, 2>(x, yz, base, w, ld_w, out, ld),
                (4, _) => positions::<4, 1>(x, yz, base, w, ld_w, out, ld),
                (_, 4) => positions::<2, 4>(x, yz, base, w, ld_w, out, ld),
                (_, 3) => positions::<2, 3>(x, yz, base, w, ld_w, out, ld),
                (_, 2) => positions::<2, 2>(x, yz, base, w, ld_w, out, ld),
                _ => positions::<2, 1>(x, yz, base, w, ld_w, out, ld),
            }
        }
    }

    /// One pooled `x` slab of the forward pass.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward_slab(
        shape: &FusedConvShape,
        volume: &[f32],
        w: &[f32],
        bias: &[f32],
        px: usize,
        out: &mut [f32],
        mut arg: Option<&mut [u8]>,
    ) {
        let f_n = shape.out_channels;
        let [_, y_n, z_n] = shape.input;
        let [_, py_n, pz_n] = shape.pooled();
        assert_eq!(w.len(), 27 * f_n);
        // The last window reads input x ≤ 2·px + 3, y ≤ 2·py_n + 1, z ≤ 2·pz_n + 1.
        assert!(((2 * px + 3) * y_n + 2 * py_n + 1) * z_n + 2 * pz_n + 2 <= volume.len());
        // Conv outputs of one or two windows: [dx·2 + dy][z offset 0..4][f].
        let mut conv = vec![0.0f32; 4 * 4 * f_n];
        for py in 0..py_n {
            for pz0 in (0..pz_n).step_by(2) {
                let r = if pz0 + 1 < pz_n { 4 } else { 2 };
                for dx in 0..2 {
                    for dy in 0..2 {
                        let base = ((2 * px + dx) * y_n + 2 * py + dy) * z_n + 2 * pz0;
                        for f0 in (0..f_n).step_by(64) {
                            let v = ((f_n - f0) / LANES).min(4);
                            // SAFETY: rows x ≤ 2·px + 3, y ≤ 2·py + 3, z ≤ 2·pz0 + r + 1
                            // are inside the volume (asserted bound and valid pooled sizes);
                            // `conv` holds 4 × 4 × F values, `w` 27 × F.
                            unsafe {
                                positions_any(
                                    r,
                                    v,
                                    volume.as_ptr(),
                                    (y_n, z_n),
                                    base,
                                    w.as_ptr().add(f0),
                                    f_n,
                                    conv.as_mut_ptr().add(((dx * 2 + dy) * 4) * f_n + f0),
                                    f_n,
                                );
                            }
                        }
                    }
                }
                for window in 0..r / 2 {
                    let o = (py * pz_n + pz0 + window) * f_n;
                    for f0 in (0..f_n).step_by(LANES) {
                        let rows: [*const f32; 8] = std::array::from_fn(|code| {
                            let (dx, dy, dz) = (code >> 2, (code >> 1) & 1, code & 1);
                            let at = ((dx * 2 + dy) * 4 + 2 * window + dz) * f_n + f0;
                            conv[at..at + LANES].as_ptr()
                        });
                        let arg = match arg.as_deref_mut() {
                            Some(a) => a[o + f0..o + f0 + LANES].as_mut_ptr(),
                            None => std::ptr::null_mut(),
                        };
                        // SAFETY: each row, bias[f0..], out[o + f0..] and arg (when not null)
                        // hold 16 values.
                        unsafe {
                            pool(
                                &rows,
                                bias[f0..f0 + LANES].as_ptr(),
                                out[o + f0..o + f0 + LANES].as_mut_ptr(),
                                arg,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Max pooling of one window (eight rows of 16 filters), plus bias, then ReLU, and the
    /// arg-max byte per filter when `arg` is not null: the general kernels' rule (first maximum
    /// in code order `dx·4 + dy·2 + dz`; a NaN never wins), in registers.
    ///
    /// # Safety
    /// AVX-512F; every row, `bias`, `out` (and `arg` unless null) hold 16 values.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn pool(
        rows: &[*const f32; 8],
        bias: *const f32,
        out: *mut f32,
        arg: *mut u8,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let y: [__m512; 8] = [
                _mm512_loadu_ps(rows[0]),
                _mm512_loadu_ps(rows[1]),
                _mm512_loadu_ps(rows[2]),
                _mm512_loadu_ps(rows[3]),
                _mm512_loadu_ps(rows[4]),
                _mm512_loadu_ps(rows[5]),
                _mm512_loadu_ps(rows[6]),
                _mm512_loadu_ps(rows[7]),
            ];
            // `max(row, best)` returns `best` when `row` is NaN, as `if row > best`.
            let mut best = _mm512_set1_ps(f32::NEG_INFINITY);
            for row in y {
                best = _mm512_max_ps(row, best);
            }
            let value = _mm512_add_ps(best, _mm512_loadu_ps(bias));
            let zero = _mm512_setzero_ps();
            if !arg.is_null() {
                let mut codes = _mm512_set1_epi32(7);
                for code in (0..8).rev() {
                    let won = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(y[code], best);
                    codes = _mm512_mask_mov_epi32(codes, won, _mm512_set1_epi32(code as i32));
                }
                let passes = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(value, zero);
                codes =
                    _mm512_mask_or_epi32(codes, passes, codes, _mm512_set1_epi32(PASSES as i32));
                _mm_storeu_si128(arg as *mut __m128i, _mm512_cvtepi32_epi8(codes));
            }
            // `max(value, 0)` returns 0 when `value` is NaN, as `if value > 0`.
            _mm512_storeu_ps(out, _mm512_max_ps(value, zero));
        }
    }

    /// The weight and bias gradients of windows `first..last` (flattened `(n, px, py, pz)`),
    /// added to `dw` (`[tap][f]`) and `db`.
    ///
    /// # Safety
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn weight_gradient(
        shape: &FusedConvShape,
        input: &[f32],
        argmax: &[u8],
        grad: &[f32],
        first: usize,
        last: usize,
        dw: &mut [f32],
        db: &mut [f32],
    ) {
        let f_n = shape.out_channels;
        let [_, y_n, z_n] = shape.input;
        let [px_n, py_n, pz_n] = shape.pooled();
        // Per window, per tap, the eight candidate inputs in window-code order.
        let mut tables = vec![0.0f32; TABLE_WINDOWS * 27 * 8];
        let passes = _mm512_set1_epi32(PASSES as i32);
        let seven = _mm512_set1_epi32(7);
        for w0 in (first..last).step_by(TABLE_WINDOWS) {
            let wn = (last - w0).min(TABLE_WINDOWS);
            for i in 0..wn {
                let window = w0 + i;
                let n = window / (px_n * py_n * pz_n);
                let (px, py, pz) = (
                    window / (py_n * pz_n) % px_n,
                    window / pz_n % py_n,
                    window % pz_n,
                );
                let volume = &input[n * shape.input_stride()..(n + 1) * shape.input_stride()];
                let table = &mut tables[i * 216..(i + 1) * 216];
                for dx in 0..2 {
                    for dy in 0..2 {
                        for kx in 0..3 {
                            for ky in 0..3 {
                                let at =
                                    ((2 * px + dx + kx) * y_n + 2 * py + dy + ky) * z_n + 2 * pz;
                                let row = &volume[at..at + 4];
                                for kz in 0..3 {
                                    let tap = (kx * 3 + ky) * 3 + kz;
                                    let code = dx * 4 + dy * 2;
                                    table[tap * 8 + code] = row[kz];
                                    table[tap * 8 + code + 1] = row[kz + 1];
                                }
                            }
                        }
                    }
                }
            }
            for f0 in (0..f_n).step_by(LANES) {
                // SAFETY: AVX-512F (this function's feature); every pointer below is into a
                // slice whose length covers the 16 or 8 values read (tables: wn·216 values;
                // argmax, grad: (w0 + wn)·F; dw: 27·F; db: F).
                unsafe {
                    let mut acc = [_mm512_setzero_ps(); 27];
                    for t in 0..27 {
                        acc[t] = _mm512_loadu_ps(dw.as_ptr().add(t * f_n + f0));
                    }
                    let mut bias_acc = _mm512_loadu_ps(db.as_ptr().add(f0));
                    for i in 0..wn {
                        let at = (w0 + i) * f_n + f0;
                        assert!(at + LANES <= argmax.len());
                        let bytes = _mm_loadu_si128(argmax.as_ptr().add(at) as *const __m128i);
                        let codes = _mm512_cvtepu8_epi32(bytes);
                        let live = _mm512_test_epi32_mask(codes, passes);
                        let g = _mm512_maskz_loadu_ps(live, grad.as_ptr().add(at));
                        bias_acc = _mm512_add_ps(bias_acc, g);
                        let index = _mm512_and_si512(codes, seven);
                        let table = tables.as_ptr().add(i * 216);
                        for t in 0..27 {
                            let row = _mm512_castps256_ps512(_mm256_loadu_ps(table.add(t * 8)));
                            let x = _mm512_permutexvar_ps(index, row);
                            acc[t] = _mm512_fmadd_ps(x, g, acc[t]);
                        }
                    }
                    for t in 0..27 {
                        _mm512_storeu_ps(dw.as_mut_ptr().add(t * f_n + f0), acc[t]);
                    }
                    _mm512_storeu_ps(db.as_mut_ptr().add(f0), bias_acc);
                }
            }
        }
    }
}
