//! Winograd F(2×2×2, 3×3×3) versions of the fused block's three passes, used for layers with
//! many channels (the seed's blocks 2–4) on CPUs with AVX-512.
//!
//! # Why
//! The direct kernels already run near one core's FMA peak (BENCHMARKS.md), so the remaining
//! way to a faster step is fewer multiplications. Winograd's minimal filtering computes a
//! `2×2×2` output tile of a `3×3×3` convolution from a `4×4×4` input patch with 64
//! multiplications per (input, output) channel pair instead of 216, 3.4× fewer; the transforms
//! are additions on channel vectors, and the 64 element-wise products of a block of tiles are 64
//! independent GEMMs `[tiles, C] · [C, F]`.
//!
//! # Why F(2,3) fits this block exactly
//! The output tile `2×2×2` at even positions is exactly one max-pooling window, so the forward
//! pass goes from input patch to pooled value (bias, ReLU, arg-max byte) without the convolution
//! output ever reaching memory, as the direct kernel does. The backward passes use the same
//! algebra (`y = Aᵀ[(G g) ⊙ (Bᵀ d)]` per axis):
//! - weight gradient, by differentiating that identity: `dW = Gᵀ[(A e) ⊙ (Bᵀ d)]` per pooling
//!   window, with `e` the window's `2×2×2` output gradient (one non-zero per channel) and `d` the
//!   same input patch as the forward pass; the products are summed over windows in the
//!   transformed domain (64 GEMMs `[C, tiles] · [tiles, F]`) and transformed back once;
//! - input gradient, in gather form: `dX` is a correlation of the zero-padded output gradient
//!   with the flipped kernel, so it is the forward algorithm again; the `4×4×4` gradient patch of
//!   a `dX` tile at even position `2a` is exactly the pooling windows `a − 1` and `a` per axis.
//!
//! F(2,3) in fp32 loses about one decimal digit against the direct sum (its transforms only add
//! and halve); the parity tests against the naive f64 reference still hold at 1e-5 of the
//! output's scale. F(4,3) (8× fewer multiplications) loses several digits and is not used.
//!
//! The GEMMs are a small hand-written AVX-512 kernel rather than the `gemm` crate: there are 64
//! of them per block of tiles, each a few hundred kFLOP, where the crate's per-call packing
//! and dispatch cost as much as the arithmetic (measured: `examples/fused_conv_layers.rs`). A
//! portable version of every step runs where AVX-512 is missing, used by the tests only; the
//! public entry points then pick the direct kernels.
//!
//! Results are deterministic: every output value is computed by one task, and the weight
//! gradient's partial sums are added in a fixed order independent of the thread count.

#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::backward::FusedConvGradients;
use super::geometry::{FusedConvShape, output_units};
use super::pack::PackedWeights;
use super::{PASSES, TAPS};

/// Channels handled together by the transforms (one AVX-512 register of `f32`).
const LANES: usize = 16;
type Lane = [f32; LANES];
/// Transformed points per tile, `4×4×4`, indexed `(ix·4 + iy)·4 + iz`.
const POINTS: usize = 64;
/// Fewer input channels than this and the transforms cost more than they save.
const MIN_CHANNELS: usize = 16;
/// Bytes of transformed input and products per block of tiles, sized for a 1–2 MiB L2.
const BLOCK_BYTES: usize = 1024 * 1024;
/// Partial weight gradients summed in a fixed order (as the direct kernel's backward pass).
const GRADIENT_GROUPS: usize = 16;
/// Fewest tiles per partial weight gradient: each partial is a `64 × C × F` buffer to clear
/// and add, which costs more than its GEMMs save for small layers (measured on the seed's
/// third block: 16 groups 47 ms, groups of ≥ 512 tiles 18.5 ms).
const MIN_GROUP_TILES: usize = 512;
/// Tiles per weight-gradient block: the GEMM's depth, long enough to amortise loading and
/// storing the accumulators.
const WEIGHT_BLOCK: usize = 64;

/// Whether the Winograd kernels handle `shape` on this CPU (see [`super::kernel_for`]).
pub(super) fn applies(shape: &FusedConvShape) -> bool {
    super::avx512_kernels_enabled() && shape_fits(shape)
}

fn shape_fits(shape: &FusedConvShape) -> bool {
    shape.in_channels >= MIN_CHANNELS
        && shape.in_channels.is_multiple_of(LANES)
        && shape.out_channels.is_multiple_of(LANES)
}

/// The instruction set the GEMMs and transforms are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    Avx512,
    Portable,
}

impl Isa {
    pub(super) fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        Isa::Portable
    }
}

// ---------------------------------------------------------------------------------------------
// One-dimensional transforms on four (or two, three) channel vectors.

#[inline(always)]
fn zip(a: &Lane, b: &Lane, f: impl Fn(f32, f32) -> f32) -> Lane {
    let mut out = [0.0; LANES];
    for i in 0..LANES {
        out[i] = f(a[i], b[i]);
    }
    out
}

/// `Bᵀ d`: the input transform.
#[inline(always)]
fn input_1d(d: &[Lane; 4]) -> [Lane; 4] {
    [
        zip(&d[0], &d[2], |a, b| a - b),
        zip(&d[1], &d[2], |a, b| a + b),
        zip(&d[2], &d[1], |a, b| a - b),
        zip(&d[1], &d[3], |a, b| a - b),
    ]
}

/// `Aᵀ m`: the output transform, four products to two outputs.
#[inline(always)]
fn output_1d(m: &[Lane; 4]) -> [Lane; 2] {
    let s = zip(&m[1], &m[2], |a, b| a + b);
    let d = zip(&m[1], &m[2], |a, b| a - b);
    [zip(&m[0], &s, |a, b| a + b), zip(&d, &m[3], |a, b| a - b)]
}

/// `G g`: the kernel transform, three taps to four.
#[inline(always)]
fn kernel_1d(g: &[Lane; 3]) -> [Lane; 4] {
    let outer = zip(&g[0], &g[2], |a, b| a + b);
    [
        g[0],
        zip(&outer, &g[1], |a, b| 0.5 * (a + b)),
        zip(&outer, &g[1], |a, b| 0.5 * (a - b)),
        g[2],
    ]
}

/// `A e`: a pooling window's output gradient, two positions to four.
#[inline(always)]
fn window_1d(e: &[Lane; 2]) -> [Lane; 4] {
    [
        e[0],
        zip(&e[0], &e[1], |a, b| a + b),
        zip(&e[0], &e[1], |a, b| a - b),
        e[1].map(|v| -v),
    ]
}

/// `Gᵀ m`: transformed weight gradient back to three taps.
#[inline(always)]
fn weight_1d(m: &[Lane; 4]) -> [Lane; 3] {
    let s = zip(&m[1], &m[2], |a, b| 0.5 * (a + b));
    [
        zip(&m[0], &s, |a, b| a + b),
        zip(&m[1], &m[2], |a, b| 0.5 * (a - b)),
        zip(&s, &m[3], |a, b| a + b),
    ]
}

/// Applies a one-dimensional transform along `z`, then `y`, then `x`, in place, to an `I×I×I`
/// block of channel vectors giving an `O×O×O` block. Both live in the same `4×4×4` layout
/// (`buf[(x·4 + y)·4 + z]`, only indices below `I`, then `O`, used), so no scratch buffer has to
/// be cleared per call (those clears cost as much as the transform).
#[inline(always)]
fn separable<const I: usize, const O: usize>(
    buf: &mut [Lane; POINTS],
    f: impl Fn(&[Lane; I]) -> [Lane; O],
) {
    let at = |x: usize, y: usize, z: usize| (x * 4 + y) * 4 + z;
    for x in 0..I {
        for y in 0..I {
            let line: [Lane; I] = std::array::from_fn(|z| buf[at(x, y, z)]);
            let out = f(&line);
            for z in 0..O {
                buf[at(x, y, z)] = out[z];
            }
        }
    }
    for x in 0..I {
        for z in 0..O {
            let line: [Lane; I] = std::array::from_fn(|y| buf[at(x, y, z)]);
            let out = f(&line);
            for y in 0..O {
                buf[at(x, y, z)] = out[y];
            }
        }
    }
    for y in 0..O {
        for z in 0..O {
            let line: [Lane; I] = std::array::from_fn(|x| buf[at(x, y, z)]);
            let out = f(&line);
            for x in 0..O {
                buf[at(x, y, z)] = out[x];
            }
        }
    }
}

/// One tile's 64 channel vectors, aligned to the cache line so that no vector load or store
/// splits across two lines (unaligned, this buffer's traffic cost twice as much).
#[repr(C, align(64))]
struct Points([Lane; POINTS]);

impl Points {
    fn zeroed() -> Self {
        Self([[0.0; LANES]; POINTS])
    }
}

/// Index in the `4×4×4` layout of kernel tap `(kx·3 + ky)·3 + kz`.
fn tap_point(tap: usize) -> usize {
    let (kx, ky, kz) = (tap / 9, tap / 3 % 3, tap % 3);
    (kx * 4 + ky) * 4 + kz
}

/// Index in the `4×4×4` layout of pooling-window position `code = dx·4 + dy·2 + dz`.
fn code_point(code: usize) -> usize {
    let (dx, dy, dz) = (code >> 2, (code >> 1) & 1, code & 1);
    (dx * 4 + dy) * 4 + dz
}

/// The output gradient at window position `code` of 16 channels: the pooled gradient where
/// that position won the max and the ReLU passed it, else 0. Selects rather than scattered
/// scalar stores, which stall the vector loads that follow them.
#[inline(always)]
fn window_lane(arg: &[u8; LANES], grad: &Lane, code: usize) -> Lane {
    let want = PASSES | code as u8;
    let mut out = [0.0; LANES];
    for l in 0..LANES {
        out[l] = if arg[l] & (PASSES | 7) == want {
            grad[l]
        } else {
            0.0
        };
    }
    out
}

#[inline(always)]
fn arg_lane(data: &[u8], at: usize) -> [u8; LANES] {
    data[at..at + LANES].try_into().expect("a lane")
}

#[inline(always)]
fn lane_at(data: &[f32], at: usize) -> Lane {
    data[at..at + LANES].try_into().expect("a lane")
}

// ---------------------------------------------------------------------------------------------
// Weights.

/// `U[ξ][c][f] = (G ⊗ G ⊗ G) W[f][c]`, from the forward packing `[tap][c][f]`.
fn forward_weights(packed: &[f32], c_n: usize, f_n: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; POINTS * c_n * f_n];
    let mut t = Points::zeroed();
    let t = &mut t.0;
    for c in 0..c_n {
        for f0 in (0..f_n).step_by(LANES) {
            for tap in 0..TAPS {
                t[tap_point(tap)] = lane_at(packed, (tap * c_n + c) * f_n + f0);
            }
            separable::<3, 4>(t, kernel_1d);
            for xi in 0..POINTS {
                u[(xi * c_n + c) * f_n + f0..][..LANES].copy_from_slice(&t[xi]);
            }
        }
    }
    u
}

/// `U'[ξ][f][c]`: the transformed kernel of the input gradient's correlation, i.e. the
/// weights flipped along all three axes with input and output channels swapped.
fn backward_weights(packed: &[f32], c_n: usize, f_n: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; POINTS * f_n * c_n];
    let mut t = Points::zeroed();
    let t = &mut t.0;
    for f in 0..f_n {
        for c0 in (0..c_n).step_by(LANES) {
            for tap in 0..TAPS {
                let flipped = TAPS - 1 - tap;
                for l in 0..LANES {
                    t[tap_point(tap)][l] = packed[(flipped * c_n + c0 + l) * f_n + f];
                }
            }
            separable::<3, 4>(t, kernel_1d);
            for xi in 0..POINTS {
                u[(xi * f_n + f) * c_n + c0..][..LANES].copy_from_slice(&t[xi]);
            }
        }
    }
    u
}

// ---------------------------------------------------------------------------------------------
// GEMM: `c (m×n) [+]= a (m×k) · b (k×n)`; `a` with any strides (element `(i, p)` at
// `i·a_rs + p·a_cs`, so the weight gradient reads its transposed operand in place), `b` and `c`
// row-major, `n % 16 == 0`.

#[allow(clippy::too_many_arguments)]
fn gemm(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 {
        return;
    }
    assert!(n.is_multiple_of(LANES) && k > 0);
    assert!(
        a.len() > (m - 1) * a_rs + (k - 1) * a_cs,
        "gemm: a too short"
    );
    assert!(b.len() >= (k - 1) * ldb + n, "gemm: b too short");
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: c too short");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the operands cover every element the strides address (checked above), and
        // `Isa::Avx512` is only chosen after the CPU feature was detected.
        Isa::Avx512 => unsafe {
            avx512::gemm(
                m,
                n,
                k,
                a.as_ptr(),
                (a_rs, a_cs),
                b.as_ptr(),
                ldb,
                c.as_mut_ptr(),
                ldc,
                accumulate,
            )
        },
        _ => {
            for i in 0..m {
                let row = &mut c[i * ldc..i * ldc + n];
                if !accumulate {
                    row.fill(0.0);
                }
                for p in 0..k {
                    let av = a[i * a_rs + p * a_cs];
                    for (cv, &bv) in row.iter_mut().zip(&b[p * ldb..p * ldb + n]) {
                        *cv += av * bv;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Rows of `a` per register block and 16-wide column vectors per block: 6 × 4 accumulators
    /// plus 4 loaded `b` vectors and one broadcast fit the 32 registers.
    const MR: usize = 6;
    const NV: usize = 4;

    /// One `R × 16·V` block of `c`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const R: usize, const V: usize>(
        k: usize,
        a: *const f32,
        (a_rs, a_cs): (usize, usize),
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: the caller guarantees that the `R` rows of `a` (k values each), the k rows of
        // `b` (16·V values each) and the R rows of `c` (16·V values each) are in bounds.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            if accumulate {
                for r in 0..R {
                    for v in 0..V {
                        acc[r][v] = _mm512_loadu_ps(c.add(r * ldc + 16 * v));
                    }
                }
            }
            for p in 0..k {
                let mut bv = [_mm512_setzero_ps(); V];
                for v in 0..V {
                    bv[v] = _mm512_loadu_ps(b.add(p * ldb + 16 * v));
                }
                for r in 0..R {
                    let av = _mm512_set1_ps(*a.add(r * a_rs + p * a_cs));
                    for v in 0..V {
                        acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
                    }
                }
            }
            for r in 0..R {
                for v in 0..V {
                    _mm512_storeu_ps(c.add(r * ldc + 16 * v), acc[r][v]);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const V: usize>(
        r: usize,
        k: usize,
        a: *const f32,
        lda: (usize, usize),
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match r {
                1 => block::<1, V>(k, a, lda, b, ldb, c, ldc, accumulate),
                2 => block::<2, V>(k, a, lda, b, ldb, c, ldc, accumulate),
                3 => block::<3, V>(k, a, lda, b, ldb, c, ldc, accumulate),
                4 => block::<4, V>(k, a, lda, b, ldb, c, ldc, accumulate),
                5 => block::<5, V>(k, a, lda, b, ldb, c, ldc, accumulate),
                _ => block::<MR, V>(k, a, lda, b, ldb, c, ldc, accumulate),
            }
        }
    }

    #[inline(always)]
    fn input_line(d: [__m512; 4]) -> [__m512; 4] {
        // SAFETY (of the intrinsics): only called from functions with AVX-512F enabled.
        unsafe {
            [
                _mm512_sub_ps(d[0], d[2]),
                _mm512_add_ps(d[1], d[2]),
                _mm512_sub_ps(d[2], d[1]),
                _mm512_sub_ps(d[1], d[3]),
            ]
        }
    }

    #[inline(always)]
    fn output_line(m: [__m512; 4]) -> [__m512; 2] {
        // SAFETY (of the intrinsics): only called from functions with AVX-512F enabled.
        unsafe {
            let s = _mm512_add_ps(m[1], m[2]);
            let d = _mm512_sub_ps(m[1], m[2]);
            [_mm512_add_ps(m[0], s), _mm512_sub_ps(d, m[3])]
        }
    }

    /// [`super::input_transform`] in registers: the `z` pass straight from the source, the `x`
    /// pass straight into the destination, so each lane is loaded and stored twice, not four
    /// times.
    ///
    /// # Safety
    /// AVX-512F; `src + ix·xs + iy·ys + iz·zs + 16` and `dst + ξ·xi_stride + 16` in bounds.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_transform(
        src: *const f32,
        (xs, ys, zs): (usize, usize, usize),
        dst: *mut f32,
        xi_stride: usize,
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut t = [_mm512_setzero_ps(); 64];
            for ix in 0..4 {
                for iy in 0..4 {
                    let p = src.add(ix * xs + iy * ys);
                    let d = [
                        _mm512_loadu_ps(p),
                        _mm512_loadu_ps(p.add(zs)),
                        _mm512_loadu_ps(p.add(2 * zs)),
                        _mm512_loadu_ps(p.add(3 * zs)),
                    ];
                    let out = input_line(d);
                    for iz in 0..4 {
                        t[(ix * 4 + iy) * 4 + iz] = out[iz];
                    }
                }
            }
            for ix in 0..4 {
                for iz in 0..4 {
                    let at = |iy: usize| (ix * 4 + iy) * 4 + iz;
                    let d = [t[at(0)], t[at(1)], t[at(2)], t[at(3)]];
                    let out = input_line(d);
                    for iy in 0..4 {
                        t[(ix * 4 + iy) * 4 + iz] = out[iy];
                    }
                }
            }
            for iy in 0..4 {
                for iz in 0..4 {
                    let at = |ix: usize| (ix * 4 + iy) * 4 + iz;
                    let d = [t[at(0)], t[at(1)], t[at(2)], t[at(3)]];
                    let out = input_line(d);
                    for ix in 0..4 {
                        _mm512_storeu_ps(dst.add(((ix * 4 + iy) * 4 + iz) * xi_stride), out[ix]);
                    }
                }
            }
        }
    }

    /// [`super::transform_products`] for 16 channels: `Aᵀ m A` per axis from
    /// `src[ξ·xi_stride]`, the eight outputs in window-code order.
    ///
    /// # Safety
    /// AVX-512F; `src + ξ·xi_stride + 16` in bounds.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_transform(src: *const f32, xi_stride: usize) -> [[f32; 16]; 8] {
        // SAFETY: forwarded from the caller.
        unsafe {
            let mut t1 = [_mm512_setzero_ps(); 32];
            for x in 0..4 {
                for y in 0..4 {
                    let p = src.add((x * 4 + y) * 4 * xi_stride);
                    let m = [
                        _mm512_loadu_ps(p),
                        _mm512_loadu_ps(p.add(xi_stride)),
                        _mm512_loadu_ps(p.add(2 * xi_stride)),
                        _mm512_loadu_ps(p.add(3 * xi_stride)),
                    ];
                    let out = output_line(m);
                    t1[(x * 4 + y) * 2] = out[0];
                    t1[(x * 4 + y) * 2 + 1] = out[1];
                }
            }
            let mut t2 = [_mm512_setzero_ps(); 16];
            for x in 0..4 {
                for z in 0..2 {
                    let at = |y: usize| (x * 4 + y) * 2 + z;
                    let m = [t1[at(0)], t1[at(1)], t1[at(2)], t1[at(3)]];
                    let out = output_line(m);
                    t2[(x * 2) * 2 + z] = out[0];
                    t2[(x * 2 + 1) * 2 + z] = out[1];
                }
            }
            let mut y = [[0.0f32; 16]; 8];
            for yy in 0..2 {
                for z in 0..2 {
                    let at = |x: usize| (x * 2 + yy) * 2 + z;
                    let m = [t2[at(0)], t2[at(1)], t2[at(2)], t2[at(3)]];
                    let out = output_line(m);
                    _mm512_storeu_ps(y[yy * 2 + z].as_mut_ptr(), out[0]);
                    _mm512_storeu_ps(y[4 + yy * 2 + z].as_mut_ptr(), out[1]);
                }
            }
            y
        }
    }

    /// See [`super::gemm`].
    ///
    /// # Safety
    /// The CPU has AVX-512F; the strides address only elements inside the operands.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: *const f32,
        lda: (usize, usize),
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // Column panels outermost, so one panel of `b` (k × 64) stays in L1 across the rows.
        let mut j = 0;
        while j < n {
            let v = ((n - j) / 16).min(NV);
            let mut i = 0;
            while i < m {
                let r = (m - i).min(MR);
                // SAFETY: rows i..i+r and columns j..j+16v are inside the operands.
                unsafe {
                    let (ai, bj, cij) = (a.add(i * lda.0), b.add(j), c.add(i * ldc + j));
                    match v {
                        1 => rows::<1>(r, k, ai, lda, bj, ldb, cij, ldc, accumulate),
                        2 => rows::<2>(r, k, ai, lda, bj, ldb, cij, ldc, accumulate),
                        3 => rows::<3>(r, k, ai, lda, bj, ldb, cij, ldc, accumulate),
                        _ => rows::<NV>(r, k, ai, lda, bj, ldb, cij, ldc, accumulate),
                    }
                }
                i += r;
            }
            j += 16 * v;
        }
    }
}

/// Tiles per block so that the transformed inputs and products (`64 × tiles × (a + b)` floats)
/// fit [`BLOCK_BYTES`]; a multiple of the kernel's six rows, and at least 24: every block reads
/// all of the transformed weights (`64 × a × b` floats, 8 MB for the seed's last block), which
/// with fewer tiles cost more than the block's arithmetic (measured on the seed's blocks 3–4).
fn tiles_per_block(a: usize, b: usize) -> usize {
    let tiles = BLOCK_BYTES / (POINTS * (a + b) * 4);
    (tiles / 6 * 6).clamp(24, 96)
}

/// Slabs per unit of parallel work so that a unit has at least one block of tiles (small
/// layers have fewer tiles per slab than a block).
fn slabs_per_unit(tiles: usize, per_slab: usize, slabs: usize) -> usize {
    tiles.div_ceil(per_slab.max(1)).clamp(1, slabs.max(1))
}

// ---------------------------------------------------------------------------------------------
// Tile-level steps, written once and compiled per instruction set through `#[inline(always)]`.

/// Transforms one `4×4×4` patch of 16 channels, `src[at + ix·xs + iy·ys + iz·zs + l]`, into
/// `dst[ξ·xi_stride + l]` (`Bᵀ d B` per axis).
#[inline(always)]
fn input_transform(
    isa: Isa,
    src: &[f32],
    at: usize,
    (xs, ys, zs): (usize, usize, usize),
    dst: &mut [f32],
    xi_stride: usize,
) {
    // Checked once here, so the 128 lane moves below need no bounds checks (with them, and
    // with the generic transform below, this step cost half as much as the GEMMs).
    assert!(
        at + 3 * (xs + ys + zs) + LANES <= src.len(),
        "patch inside source"
    );
    assert!(
        (POINTS - 1) * xi_stride + LANES <= dst.len(),
        "patch inside block"
    );
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: bounds asserted above; `Isa::Avx512` only where the CPU has it.
        Isa::Avx512 => unsafe {
            avx512::input_transform(
                src.as_ptr().add(at),
                (xs, ys, zs),
                dst.as_mut_ptr(),
                xi_stride,
            )
        },
        _ => {
            let mut t = Points::zeroed();
            for ix in 0..4 {
                for iy in 0..4 {
                    for iz in 0..4 {
                        t.0[(ix * 4 + iy) * 4 + iz] =
                            lane_at(src, at + ix * xs + iy * ys + iz * zs);
                    }
                }
            }
            separable::<4, 4>(&mut t.0, input_1d);
            for xi in 0..POINTS {
                dst[xi * xi_stride..][..LANES].copy_from_slice(&t.0[xi]);
            }
        }
    }
}

/// Writes the transformed `4×4×4` input patch whose first voxel is position `origin` of the
/// channels-last `volume` into `v[ξ·xi_stride + at + c]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn transform_patch(
    isa: Isa,
    volume: &[f32],
    y_n: usize,
    z_n: usize,
    c_n: usize,
    origin: usize,
    v: &mut [f32],
    xi_stride: usize,
    at: usize,
) {
    let strides = (y_n * z_n * c_n, z_n * c_n, c_n);
    for c0 in (0..c_n).step_by(LANES) {
        input_transform(
            isa,
            volume,
            origin * c_n + c0,
            strides,
            &mut v[at + c0..],
            xi_stride,
        );
    }
}

/// The eight convolution outputs of tile `t` for 16 channels at a time, from the products
/// `m[ξ·xi_stride + at + j]`, `j < n`: calls `emit(j0, outputs)` with outputs in window-code
/// order `dx·4 + dy·2 + dz`.
#[inline(always)]
fn transform_products(
    isa: Isa,
    m: &[f32],
    xi_stride: usize,
    at: usize,
    n: usize,
    mut emit: impl FnMut(usize, &[Lane; 8]),
) {
    assert!((POINTS - 1) * xi_stride + at + n <= m.len() && n.is_multiple_of(LANES));
    for j0 in (0..n).step_by(LANES) {
        let y: [Lane; 8] = match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: inside `m` (asserted above); `Isa::Avx512` only where the CPU has it.
            Isa::Avx512 => unsafe { avx512::output_transform(m.as_ptr().add(at + j0), xi_stride) },
            _ => {
                let mut p = Points::zeroed();
                for xi in 0..POINTS {
                    p.0[xi] = lane_at(m, xi * xi_stride + at + j0);
                }
                separable::<4, 2>(&mut p.0, output_1d);
                std::array::from_fn(|code| p.0[code_point(code)])
            }
        };
        emit(j0, &y);
    }
}

/// Max pooling of one window's eight outputs (16 channels), plus bias, then ReLU, with the
/// arg-max bytes: the same rule as the direct kernel's `pool_window` (first maximum in code
/// order), on whole lanes so that it vectorizes.
#[inline(always)]
pub(super) fn pool_lanes(y: &[Lane; 8], bias: &[f32], out: &mut [f32], arg: Option<&mut [u8]>) {
    let mut best = [f32::NEG_INFINITY; LANES];
    for row in y {
        for l in 0..LANES {
            best[l] = if row[l] > best[l] { row[l] } else { best[l] };
        }
    }
    let bias: &Lane = bias[..LANES].try_into().expect("a lane");
    let mut value = [0.0f32; LANES];
    for l in 0..LANES {
        value[l] = best[l] + bias[l];
    }
    if let Some(arg) = arg {
        // Codes as 32-bit lanes, one register wide like the values they are compared with
        // (as bytes, the compiler shuffled them lane by lane: a third of the first layer).
        let mut codes = [7u32; LANES];
        for code in (0..8u32).rev() {
            for l in 0..LANES {
                codes[l] = if y[code as usize][l] == best[l] {
                    code
                } else {
                    codes[l]
                };
            }
        }
        for l in 0..LANES {
            codes[l] |= if value[l] > 0.0 { PASSES as u32 } else { 0 };
        }
        for l in 0..LANES {
            arg[l] = codes[l] as u8;
        }
    }
    for l in 0..LANES {
        out[l] = if value[l] > 0.0 { value[l] } else { 0.0 };
    }
}

struct Blocks {
    v: Vec<f32>,
    m: Vec<f32>,
}

impl Blocks {
    fn new(tiles: usize, a: usize, b: usize) -> Self {
        Self {
            v: vec![0.0; POINTS * tiles * a],
            m: vec![0.0; POINTS * tiles * b],
        }
    }
}

/// Pooled `x` slabs `px0..px0 + slabs` of the forward pass: every `(px, py, pz)` of them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_slab(
    isa: Isa,
    shape: &FusedConvShape,
    volume: &[f32],
    u: &[f32],
    bias: &[f32],
    (px0, slabs): (usize, usize),
    tiles: usize,
    s: &mut Blocks,
    out: &mut [f32],
    mut arg: Option<&mut [u8]>,
) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [_, y_n, z_n] = shape.input;
    let [_, py_n, pz_n] = shape.pooled();
    let per_slab = py_n * pz_n;
    let total = slabs * per_slab;
    for t0 in (0..total).step_by(tiles) {
        let tn = (total - t0).min(tiles);
        for t in 0..tn {
            let (px, rest) = (px0 + (t0 + t) / per_slab, (t0 + t) % per_slab);
            let (py, pz) = (rest / pz_n, rest % pz_n);
            let origin = ((2 * px) * y_n + 2 * py) * z_n + 2 * pz;
            transform_patch(
                isa,
                volume,
                y_n,
                z_n,
                c_n,
                origin,
                &mut s.v,
                c_n,
                t * POINTS * c_n,
            );
        }
        for xi in 0..POINTS {
            gemm(
                isa,
                tn,
                f_n,
                c_n,
                &s.v[xi * c_n..],
                (POINTS * c_n, 1),
                &u[xi * c_n * f_n..],
                f_n,
                &mut s.m[xi * f_n..],
                POINTS * f_n,
                false,
            );
        }
        for t in 0..tn {
            let o = (t0 + t) * f_n;
            transform_products(isa, &s.m, f_n, t * POINTS * f_n, f_n, |j0, y| {
                let at = o + j0..o + j0 + LANES;
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => {
                        let rows: [*const f32; 8] = std::array::from_fn(|code| y[code].as_ptr());
                        let arg = match arg.as_deref_mut() {
                            Some(a) => a[at.clone()].as_mut_ptr(),
                            None => std::ptr::null_mut(),
                        };
                        // SAFETY: AVX-512 detected; rows, bias, out, arg hold 16 values.
                        unsafe {
                            super::first_layer::pool(
                                &rows,
                                bias[j0..j0 + LANES].as_ptr(),
                                out[at].as_mut_ptr(),
                                arg,
                            );
                        }
                    }
                    _ => pool_lanes(
                        y,
                        &bias[j0..],
                        &mut out[at.clone()],
                        arg.as_deref_mut().map(|a| &mut a[at]),
                    ),
                }
            });
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn forward_slab_avx512(
    shape: &FusedConvShape,
    volume: &[f32],
    u: &[f32],
    bias: &[f32],
    slabs: (usize, usize),
    tiles: usize,
    s: &mut Blocks,
    out: &mut [f32],
    arg: Option<&mut [u8]>,
) {
    forward_slab(
        Isa::Avx512,
        shape,
        volume,
        u,
        bias,
        slabs,
        tiles,
        s,
        out,
        arg,
    );
}

/// Winograd forward pass; same contract as [`super::forward()`].
pub(super) fn forward(
    isa: Isa,
    shape: &FusedConvShape,
    input: &[f32],
    weights: &PackedWeights,
    bias: &[f32],
    keep_argmax: bool,
) -> (Vec<f32>, Option<Vec<u8>>) {
    assert!(shape.is_valid() && shape_fits(shape), "shape {shape:?}");
    assert_eq!(input.len(), shape.batch * shape.input_stride());
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [px_n, py_n, pz_n] = shape.pooled();
    let slab = py_n * pz_n * f_n;
    let u = forward_weights(&weights.forward, c_n, f_n);
    let mut output = vec![0.0f32; shape.batch * px_n * slab];
    let mut argmax = keep_argmax.then(|| vec![0u8; output.len()]);
    let tiles = tiles_per_block(c_n, f_n);
    let group = slabs_per_unit(tiles, py_n * pz_n, px_n);
    // Units: `group` consecutive slabs of one volume, with their output (and arg-max) rows.
    let units = output_units(
        &mut output,
        argmax.as_deref_mut(),
        px_n * slab,
        group * slab,
    );
    let per_volume = px_n.div_ceil(group);
    units.into_par_iter().enumerate().for_each_init(
        || Blocks::new(tiles, c_n, f_n),
        |s, (unit, (out, arg))| {
            let (n, px0) = (unit / per_volume, unit % per_volume * group);
            let slabs = (px0, out.len() / slab);
            let volume = &input[n * shape.input_stride()..(n + 1) * shape.input_stride()];
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `Isa::Avx512` is only chosen where the CPU has AVX-512F.
                Isa::Avx512 => unsafe {
                    forward_slab_avx512(shape, volume, &u, bias, slabs, tiles, s, out, arg)
                },
                _ => forward_slab(isa, shape, volume, &u, bias, slabs, tiles, s, out, arg),
            }
        },
    );
    (output, argmax)
}

// ---------------------------------------------------------------------------------------------
// Input gradient.

/// `dX` slabs `a0..a0 + slabs` (input slices `2·a0 ..`) of volume `n`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_gradient_slab(
    isa: Isa,
    shape: &FusedConvShape,
    u: &[f32],
    argmax: &[u8],
    grad: &[f32],
    n: usize,
    (a0, slabs): (usize, usize),
    tiles: usize,
    s: &mut Blocks,
    out: &mut [f32],
) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [x_n, y_n, z_n] = shape.input;
    let [px_n, py_n, pz_n] = shape.pooled();
    let (by_n, bz_n) = (y_n.div_ceil(2), z_n.div_ceil(2));
    let per_slab = by_n * bz_n;
    let total = slabs * per_slab;
    let mut lanes = Points::zeroed();
    let lanes = &mut lanes.0;
    for t0 in (0..total).step_by(tiles) {
        let tn = (total - t0).min(tiles);
        for t in 0..tn {
            let (a, rest) = (a0 + (t0 + t) / per_slab, (t0 + t) % per_slab);
            let (b, c) = (rest / bz_n, rest % bz_n);
            // The output-gradient patch: pooling windows a − 1 and a (b − 1, b; c − 1, c),
            // one non-zero per window and channel, where the ReLU passed it.
            for f0 in (0..f_n).step_by(LANES) {
                for (wx, ox) in [(a.wrapping_sub(1), 0), (a, 2)] {
                    for (wy, oy) in [(b.wrapping_sub(1), 0), (b, 2)] {
                        for (wz, oz) in [(c.wrapping_sub(1), 0), (c, 2)] {
                            let inside = wx < px_n && wy < py_n && wz < pz_n;
                            let (arg, g) = if inside {
                                let base = (((n * px_n + wx) * py_n + wy) * pz_n + wz) * f_n + f0;
                                (arg_lane(argmax, base), lane_at(grad, base))
                            } else {
                                ([0; LANES], [0.0; LANES])
                            };
                            for code in 0..8 {
                                let (dx, dy, dz) = (code >> 2, (code >> 1) & 1, code & 1);
                                lanes[((ox + dx) * 4 + oy + dy) * 4 + oz + dz] =
                                    window_lane(&arg, &g, code);
                            }
                        }
                    }
                }
                let flat = lanes.as_flattened();
                input_transform(
                    isa,
                    flat,
                    0,
                    (16 * LANES, 4 * LANES, LANES),
                    &mut s.v[t * POINTS * f_n + f0..],
                    f_n,
                );
            }
        }
        for xi in 0..POINTS {
            gemm(
                isa,
                tn,
                c_n,
                f_n,
                &s.v[xi * f_n..],
                (POINTS * f_n, 1),
                &u[xi * f_n * c_n..],
                c_n,
                &mut s.m[xi * c_n..],
                POINTS * c_n,
                false,
            );
        }
        for t in 0..tn {
            let (a, rest) = (a0 + (t0 + t) / per_slab, (t0 + t) % per_slab);
            let (b, c) = (rest / bz_n, rest % bz_n);
            transform_products(isa, &s.m, c_n, t * POINTS * c_n, c_n, |j0, values| {
                for code in 0..8 {
                    let (dx, dy, dz) = (code >> 2, (code >> 1) & 1, code & 1);
                    let (x, y, z) = (2 * a + dx, 2 * b + dy, 2 * c + dz);
                    if x >= x_n || y >= y_n || z >= z_n {
                        continue;
                    }
                    let local_x = 2 * (a - a0) + dx;
                    let at = ((local_x * y_n + y) * z_n + z) * c_n + j0;
                    out[at..at + LANES].copy_from_slice(&values[code]);
                }
            });
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn input_gradient_slab_avx512(
    shape: &FusedConvShape,
    u: &[f32],
    argmax: &[u8],
    grad: &[f32],
    n: usize,
    slabs: (usize, usize),
    tiles: usize,
    s: &mut Blocks,
    out: &mut [f32],
) {
    input_gradient_slab(Isa::Avx512, shape, u, argmax, grad, n, slabs, tiles, s, out);
}

fn input_gradient(
    isa: Isa,
    shape: &FusedConvShape,
    weights: &PackedWeights,
    argmax: &[u8],
    grad: &[f32],
) -> Vec<f32> {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [x_n, y_n, z_n] = shape.input;
    let u = backward_weights(&weights.forward, c_n, f_n);
    let volume = x_n * y_n * z_n * c_n;
    let mut dx = vec![0.0f32; shape.batch * volume];
    let tiles = tiles_per_block(f_n, c_n);
    let group = slabs_per_unit(tiles, y_n.div_ceil(2) * z_n.div_ceil(2), x_n.div_ceil(2));
    // Units: `group` consecutive slabs (two input `x` slices each) of one volume.
    let slice = y_n * z_n * c_n;
    let units: Vec<(usize, (usize, usize), &mut [f32])> = dx
        .chunks_mut(volume)
        .enumerate()
        .flat_map(|(n, v)| {
            v.chunks_mut(2 * group * slice)
                .enumerate()
                .map(move |(j, out)| (n, (j * group, (out.len() / slice).div_ceil(2)), out))
        })
        .collect();
    units.into_par_iter().for_each_init(
        || Blocks::new(tiles, f_n, c_n),
        |s, (n, slabs, out)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx512` is only chosen where the CPU has AVX-512F.
            Isa::Avx512 => unsafe {
                input_gradient_slab_avx512(shape, &u, argmax, grad, n, slabs, tiles, s, out)
            },
            _ => input_gradient_slab(isa, shape, &u, argmax, grad, n, slabs, tiles, s, out),
        },
    );
    dx
}

// ---------------------------------------------------------------------------------------------
// Weight and bias gradients.

struct WeightBlocks {
    /// Transformed input patches, `[tile][ξ][c]` (read transposed by the GEMM).
    v: Vec<f32>,
    /// Transformed window gradients, `[tile][ξ][f]`.
    e: Vec<f32>,
    /// Sums of the products, `[ξ][c][f]`.
    sums: Vec<f32>,
    bias: Vec<f32>,
}

/// Tiles `first..last` (flattened `(n, px, py, pz)`) of the weight gradient, summed into `w`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn weight_gradient_group(
    isa: Isa,
    shape: &FusedConvShape,
    input: &[f32],
    argmax: &[u8],
    grad: &[f32],
    first: usize,
    last: usize,
    w: &mut WeightBlocks,
) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [_, y_n, z_n] = shape.input;
    let [px_n, py_n, pz_n] = shape.pooled();
    let tiles = WEIGHT_BLOCK;
    let mut t_lanes = Points::zeroed();
    let t_lanes = &mut t_lanes.0;
    for t0 in (first..last).step_by(tiles) {
        let tn = (last - t0).min(tiles);
        for t in 0..tn {
            let tile = t0 + t;
            let n = tile / (px_n * py_n * pz_n);
            let (px, py, pz) = (tile / (py_n * pz_n) % px_n, tile / pz_n % py_n, tile % pz_n);
            let volume = &input[n * shape.input_stride()..(n + 1) * shape.input_stride()];
            let origin = ((2 * px) * y_n + 2 * py) * z_n + 2 * pz;
            transform_patch(
                isa,
                volume,
                y_n,
                z_n,
                c_n,
                origin,
                &mut w.v,
                c_n,
                t * POINTS * c_n,
            );
            let base = tile * f_n;
            for f0 in (0..f_n).step_by(LANES) {
                let (arg, g) = (arg_lane(argmax, base + f0), lane_at(grad, base + f0));
                for code in 0..8 {
                    t_lanes[code_point(code)] = window_lane(&arg, &g, code);
                }
                for l in 0..LANES {
                    w.bias[f0 + l] += if arg[l] & PASSES != 0 { g[l] } else { 0.0 };
                }
                separable::<2, 4>(t_lanes, window_1d);
                for xi in 0..POINTS {
                    w.e[(t * POINTS + xi) * f_n + f0..][..LANES].copy_from_slice(&t_lanes[xi]);
                }
            }
        }
        for xi in 0..POINTS {
            gemm(
                isa,
                c_n,
                f_n,
                tn,
                &w.v[xi * c_n..],
                (1, POINTS * c_n),
                &w.e[xi * f_n..],
                POINTS * f_n,
                &mut w.sums[xi * c_n * f_n..],
                f_n,
                true,
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn weight_gradient_group_avx512(
    shape: &FusedConvShape,
    input: &[f32],
    argmax: &[u8],
    grad: &[f32],
    first: usize,
    last: usize,
    w: &mut WeightBlocks,
) {
    weight_gradient_group(Isa::Avx512, shape, input, argmax, grad, first, last, w);
}

/// The weight gradient in the forward packing `[tap][c][f]`, and the bias gradient.
fn weight_and_bias_gradients(
    isa: Isa,
    shape: &FusedConvShape,
    input: &[f32],
    argmax: &[u8],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let total = shape.batch * shape.pooled_positions();
    let group_len = total.div_ceil(GRADIENT_GROUPS).max(MIN_GROUP_TILES);
    let groups = total.div_ceil(group_len);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..groups)
        .into_par_iter()
        .map_init(
            // The transformed blocks are per thread; only the sums are per group.
            || WeightBlocks {
                v: vec![0.0; POINTS * c_n * WEIGHT_BLOCK],
                e: vec![0.0; POINTS * WEIGHT_BLOCK * f_n],
                sums: Vec::new(),
                bias: Vec::new(),
            },
            |w, g| {
                w.sums = vec![0.0; POINTS * c_n * f_n];
                w.bias = vec![0.0; f_n];
                let (first, last) = (g * group_len, ((g + 1) * group_len).min(total));
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `Isa::Avx512` is only chosen where the CPU has AVX-512F.
                    Isa::Avx512 => unsafe {
                        weight_gradient_group_avx512(shape, input, argmax, grad, first, last, w)
                    },
                    _ => weight_gradient_group(isa, shape, input, argmax, grad, first, last, w),
                }
                (std::mem::take(&mut w.sums), std::mem::take(&mut w.bias))
            },
        )
        .collect();
    // Fixed order: group 0, 1, … whatever the thread count.
    let mut partials = partials.into_iter();
    let (mut sums, mut bias) = partials.next().expect("at least one group");
    for (s, b) in partials {
        sums.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        bias.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
    }
    let mut packed = vec![0.0f32; TAPS * c_n * f_n];
    let mut m = Points::zeroed();
    let m = &mut m.0;
    for c in 0..c_n {
        for f0 in (0..f_n).step_by(LANES) {
            for xi in 0..POINTS {
                m[xi] = lane_at(&sums, (xi * c_n + c) * f_n + f0);
            }
            separable::<4, 3>(m, weight_1d);
            for tap in 0..TAPS {
                packed[(tap * c_n + c) * f_n + f0..][..LANES].copy_from_slice(&m[tap_point(tap)]);
            }
        }
    }
    (packed, bias)
}

/// Winograd backward pass; same contract as [`super::backward()`].
pub(super) fn backward(
    isa: Isa,
    shape: &FusedConvShape,
    input: &[f32],
    weights: &PackedWeights,
    argmax: &[u8],
    grad_pooled: &[f32],
    want_input_grad: bool,
) -> FusedConvGradients {
    assert!(shape.is_valid() && shape_fits(shape), "shape {shape:?}");
    let (weights_packed, bias) = weight_and_bias_gradients(isa, shape, input, argmax, grad_pooled);
    let input = want_input_grad.then(|| input_gradient(isa, shape, weights, argmax, grad_pooled));
    FusedConvGradients {
        weights_packed,
        bias,
        input,
    }
}
