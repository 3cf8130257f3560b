//! The CPU kernels of one convolution block: `Conv3D(k=3, valid) + bias → ReLU → MaxPool3D(2)`,
//! forward and backward, on plain `f32` slices (no burn types; [`crate::cpu_backend`] wraps them
//! as a burn backend extension with its own autodiff node).
//!
//! # Why this shape of algorithm
//! burn's generic `flex` convolution builds an im2col matrix (≈ 750 MB per sample for the seed's
//! second convolution) and then runs the pooling, ReLU and their backward passes as separate full
//! passes over the 250 MB convolution output. Here:
//!
//! - Activations are **channels-last** (`[batch, x, y, z, channels]`, channels fastest). Output
//!   position `p = (x·Y + y)·Z + z` then reads input position `p + s` for the kernel offset
//!   `s = (kx·Y + ky)·Z + kz`, so for a fixed `(kx, ky)` the whole block of output rows is one
//!   GEMM whose left operand is the input itself, read with a row stride of `C` and a row length
//!   of `3·C` (the three `kz` taps are adjacent in memory: rows overlap, nothing is copied). Rows
//!   whose `y` or `z` lie past the valid output are computed and thrown away (≈ 10 % extra work)
//!   so that the rows stay contiguous. Layers with few input channels (the first one has 1) use a
//!   small im2col of `27·C` columns instead, because a GEMM with 3 columns is all overhead.
//! - The output is produced per slab of two `x` slices and a block of `y` rows that fits in L2,
//!   and bias, max pooling and ReLU are applied while it is still in cache: only the pooled
//!   eighth is written to memory, with one byte per pooled value that records which of the eight
//!   window positions won and whether the ReLU let the gradient through.
//! - The backward pass rebuilds the sparse gradient of the convolution output from those bytes,
//!   accumulates the weight gradient with the same shifted GEMMs (transposed), and computes the
//!   input gradient in gather form (`dX[p] = Σ_k dZ[p − s_k]·W_kᵀ`), so every output row is
//!   written by exactly one task and no atomics or reductions over the input are needed.
//! - GEMMs are the `gemm` crate's (the one burn's `flex` uses: runtime SIMD dispatch, pure Rust),
//!   called single-threaded inside rayon tasks over independent slabs.

use rayon::prelude::*;

/// The kernel size along each axis (the seed's `Conv3D(kernel_size=3)`).
pub const KERNEL: usize = 3;
const TAPS: usize = KERNEL * KERNEL * KERNEL;

/// Below this many input channels the forward and weight-gradient passes use an explicit
/// `[rows, 27·C]` im2col block instead of nine overlapping-row GEMMs of `3·C` columns.
const IM2COL_MAX_CHANNELS: usize = 8;

/// Target size in bytes of one slab's convolution output (two `x` slices), chosen to stay in
/// the 1–2 MiB L2 cache of current x86 cores.
const SLAB_BYTES: usize = 512 * 1024;

/// Bit set in an arg-max byte when the pooled value was positive, i.e. the ReLU passes the
/// gradient; the low three bits are the window position `dx·4 + dy·2 + dz`.
const PASSES: u8 = 0x80;

/// How many partial weight gradients the backward pass sums (in a fixed order).
const GRADIENT_GROUPS: usize = 16;

/// Rows aimed for in one input-gradient GEMM.
const DX_ROWS: usize = 2048;

/// Geometry of one fused block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FusedConvShape {
    /// Volumes in the batch.
    pub batch: usize,
    /// Input channels `C`.
    pub in_channels: usize,
    /// Output channels (filters) `F`.
    pub out_channels: usize,
    /// Input size `[X, Y, Z]` in voxels; each must be at least 4 so the pooled output is not
    /// empty.
    pub input: [usize; 3],
}

impl FusedConvShape {
    /// Size `[X − 2, Y − 2, Z − 2]` of the convolution output.
    pub fn conv_output(&self) -> [usize; 3] {
        self.input.map(|n| n - (KERNEL - 1))
    }

    /// Size of the pooled output: the convolution output halved, rounded down.
    pub fn pooled(&self) -> [usize; 3] {
        self.conv_output().map(|n| n / 2)
    }

    /// Voxels per input volume, `X·Y·Z`.
    pub fn input_positions(&self) -> usize {
        self.input.iter().product()
    }

    /// Voxels per pooled output volume.
    pub fn pooled_positions(&self) -> usize {
        self.pooled().iter().product()
    }

    /// Zero positions stored after each volume in a channels-last input buffer: the discarded
    /// rows at the end of the last slab read up to `2·Z + 2` positions past the volume.
    pub fn input_tail(&self) -> usize {
        2 * self.input[2] + 2
    }

    /// Floats per volume in a channels-last input buffer, tail included.
    pub fn input_stride(&self) -> usize {
        (self.input_positions() + self.input_tail()) * self.in_channels
    }

    /// Whether the shape can be computed (every axis ≥ 4, channels ≥ 1).
    pub fn is_valid(&self) -> bool {
        self.batch > 0
            && self.in_channels > 0
            && self.out_channels > 0
            && self.input.iter().all(|&n| n > KERNEL)
    }

    fn uses_im2col(&self) -> bool {
        self.in_channels <= IM2COL_MAX_CHANNELS
    }

    /// Pooled `y` rows per slab so that two `x` slices of convolution output fit [`SLAB_BYTES`].
    fn slab_pooled_rows(&self) -> usize {
        let per_pooled_row = 2 * 2 * self.input[2] * self.out_channels * 4;
        (SLAB_BYTES / per_pooled_row).clamp(1, self.pooled()[1].max(1))
    }

    /// Offset in positions of the input read for output position 0 by kernel tap `(kx, ky, 0)`.
    fn shift(&self, kx: usize, ky: usize) -> usize {
        (kx * self.input[1] + ky) * self.input[2]
    }

    /// The units of work, in output order. Small layers group several whole pooled `x` slabs in
    /// one tile (one GEMM over contiguous rows, so the GEMM's packing is paid once per tile);
    /// large ones split a slab into blocks of pooled `y` rows so the output stays in cache.
    fn tiles(&self) -> Vec<Tile> {
        let [px_n, py_n, _] = self.pooled();
        let [_, y_n, z_n] = self.input;
        let slab_bytes = 2 * y_n * z_n * self.out_channels * 4;
        let mut tiles = Vec::new();
        if slab_bytes <= SLAB_BYTES {
            // At least two tiles per volume so both cores have work even at batch 1.
            let group = (SLAB_BYTES / slab_bytes).clamp(1, px_n.div_ceil(2).max(1));
            for n in 0..self.batch {
                for px0 in (0..px_n).step_by(group) {
                    let px1 = (px0 + group).min(px_n);
                    tiles.push(Tile {
                        n,
                        px: px0..px1,
                        py: 0..py_n,
                        whole: true,
                    });
                }
            }
        } else {
            let block = self.slab_pooled_rows();
            for n in 0..self.batch {
                for px in 0..px_n {
                    for py0 in (0..py_n).step_by(block) {
                        let py1 = (py0 + block).min(py_n);
                        tiles.push(Tile {
                            n,
                            px: px..px + 1,
                            py: py0..py1,
                            whole: false,
                        });
                    }
                }
            }
        }
        tiles
    }
}

/// Pooled slabs `px` (and pooled rows `py` of them) of volume `n`. `whole` tiles cover all `y`
/// rows of their slabs, so their convolution rows are one contiguous run of positions.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Tile {
    n: usize,
    px: std::ops::Range<usize>,
    py: std::ops::Range<usize>,
    whole: bool,
}

impl Tile {
    /// Pooled values (times channels) of this tile; tiles are contiguous in the output.
    fn len(&self, shape: &FusedConvShape) -> usize {
        self.px.len() * self.py.len() * shape.pooled()[2] * shape.out_channels
    }

    /// Input position of the first convolution row the tile needs.
    fn first_position(&self, shape: &FusedConvShape) -> usize {
        let [_, y_n, z_n] = shape.input;
        (2 * self.px.start * y_n + 2 * self.py.start) * z_n
    }

    /// Rows between consecutive `x` slices in a compact buffer of the tile's convolution rows.
    fn x_stride(&self, shape: &FusedConvShape) -> usize {
        let [_, y_n, z_n] = shape.input;
        if self.whole {
            y_n * z_n
        } else {
            2 * self.py.len() * z_n
        }
    }

    /// Runs of consecutive positions to compute: `(first position, rows, first buffer row)`
    /// with buffer rows `x_stride` apart per `x` slice.
    fn runs(&self, shape: &FusedConvShape, x_stride: usize) -> Vec<(usize, usize, usize)> {
        let [_, y_n, z_n] = shape.input;
        let first = self.first_position(shape);
        if self.whole {
            vec![(first, 2 * self.px.len() * y_n * z_n, 0)]
        } else {
            let rows = 2 * self.py.len() * z_n;
            vec![(first, rows, 0), (first + y_n * z_n, rows, x_stride)]
        }
    }

    /// Buffer row of conv position (`x`, `y`, `z`) relative to the tile's first `x`, `y`.
    fn row(
        &self,
        shape: &FusedConvShape,
        x_stride: usize,
        xi: usize,
        yi: usize,
        z: usize,
    ) -> usize {
        xi * x_stride + yi * shape.input[2] + z
    }
}

/// Splits `data` into consecutive pieces of the given lengths.
fn split_lengths<T>(mut data: &mut [T], lengths: impl Iterator<Item = usize>) -> Vec<&mut [T]> {
    let mut pieces = Vec::new();
    for len in lengths {
        let (head, tail) = std::mem::take(&mut data).split_at_mut(len);
        pieces.push(head);
        data = tail;
    }
    pieces
}

/// Convolution weights rearranged for the kernels.
///
/// `forward`: `[kx, ky, kz, c, f]`, i.e. one `[3·C, F]` matrix per `(kx, ky)` whose rows follow the
/// three adjacent `kz` taps; `backward`: per `(kx, ky)` a `[3·F, C]` matrix with the taps in
/// reverse order (`kz = 2, 1, 0`), the transposed weights of the gather-form input gradient.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    forward: Vec<f32>,
    backward: Vec<f32>,
}

impl PackedWeights {
    /// Packs burn's/PyTorch's `[F, C, kx, ky, kz]` weights.
    pub fn new(weights: &[f32], in_channels: usize, out_channels: usize) -> Self {
        let (c_n, f_n) = (in_channels, out_channels);
        assert_eq!(weights.len(), f_n * c_n * TAPS, "weights length");
        let mut forward = vec![0.0; weights.len()];
        let mut backward = vec![0.0; weights.len()];
        for f in 0..f_n {
            for c in 0..c_n {
                for tap in 0..TAPS {
                    let value = weights[(f * c_n + c) * TAPS + tap];
                    forward[(tap * c_n + c) * f_n + f] = value;
                    let (kxy, kz) = (tap / KERNEL, tap % KERNEL);
                    let j = KERNEL - 1 - kz;
                    backward[((kxy * KERNEL + j) * f_n + f) * c_n + c] = value;
                }
            }
        }
        Self { forward, backward }
    }
}

/// Converts a gradient in the forward packing (`[kx, ky, kz, c, f]`) back to `[F, C, kx, ky, kz]`.
pub fn unpack_weight_gradient(packed: &[f32], in_channels: usize, out_channels: usize) -> Vec<f32> {
    let (c_n, f_n) = (in_channels, out_channels);
    let mut out = vec![0.0; packed.len()];
    for tap in 0..TAPS {
        for c in 0..c_n {
            for f in 0..f_n {
                out[(f * c_n + c) * TAPS + tap] = packed[(tap * c_n + c) * f_n + f];
            }
        }
    }
    out
}

/// A raw pointer that rayon tasks share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every user writes only the rows of its own slab; the slabs are disjoint by
// construction (see the callers).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Send + Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)` with explicit strides, single-threaded.
///
/// # Safety
/// Every element addressed through the strides must be inside a live allocation; `dst` must
/// not overlap the operands.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            1,
            rhs_rs as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Copies `rows` im2col rows (`27·C` values each, taps in `[kx, ky, kz]` order) starting at
/// input position `start` of one volume.
fn im2col(shape: &FusedConvShape, volume: &[f32], start: usize, rows: usize, out: &mut [f32]) {
    let c_n = shape.in_channels;
    let width = TAPS * c_n;
    for (r, row) in out[..rows * width].chunks_exact_mut(width).enumerate() {
        for kx in 0..KERNEL {
            for ky in 0..KERNEL {
                let src = (start + r + shape.shift(kx, ky)) * c_n;
                let dst = (kx * KERNEL + ky) * KERNEL * c_n;
                row[dst..dst + KERNEL * c_n].copy_from_slice(&volume[src..src + KERNEL * c_n]);
            }
        }
    }
}

/// Convolution output (bias not added) of `rows` consecutive positions from `start`, into
/// `out` (`rows × F`, channels fastest).
fn conv_rows(
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
///   one arg-max byte per pooled value for [`backward`].
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

/// Gradients of the fused block.
pub struct FusedConvGradients {
    /// Weight gradient in the forward packing; see [`unpack_weight_gradient`].
    pub weights_packed: Vec<f32>,
    /// Bias gradient, `[F]`.
    pub bias: Vec<f32>,
    /// Input gradient, channels-last `[batch, X, Y, Z, C]` (no tail), when asked for.
    pub input: Option<Vec<f32>>,
}

/// Fused backward pass.
///
/// - `input`, `weights`: as given to [`forward`]; `argmax`: what it returned.
/// - `grad_pooled`: gradient of the pooled output, channels-last `[batch, px, py, pz, F]`.
/// - `want_input_grad`: the first layer's input needs none, which saves a third of its work.
pub fn backward(
    shape: &FusedConvShape,
    input: &[f32],
    weights: &PackedWeights,
    argmax: &[u8],
    grad_pooled: &[f32],
    want_input_grad: bool,
) -> FusedConvGradients {
    assert!(shape.is_valid(), "shape {shape:?}");
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [px_n, py_n, pz_n] = shape.pooled();
    let [x_n, y_n, z_n] = shape.input;
    let yz = y_n * z_n;
    let pooled_slab = py_n * pz_n * f_n;
    assert_eq!(
        input.len(),
        shape.batch * shape.input_stride(),
        "input length"
    );
    assert_eq!(
        argmax.len(),
        shape.batch * px_n * pooled_slab,
        "argmax length"
    );
    assert_eq!(grad_pooled.len(), argmax.len(), "gradient length");

    // Convolution-output gradient of a whole volume (only when the input gradient is needed):
    // `front` zero rows first so the gather form never reads before the buffer.
    let front = shape.shift(KERNEL - 1, KERNEL - 1) + KERNEL - 1;
    let dz_stride = (front + x_n * yz) * f_n;
    let mut dz_full = if want_input_grad {
        vec![0.0f32; shape.batch * dz_stride]
    } else {
        Vec::new()
    };
    let dz_shared = SharedMut(dz_full.as_mut_ptr());
    let packed_len = TAPS * c_n * f_n;
    let tiles = shape.tiles();
    let offsets: Vec<usize> = tiles
        .iter()
        .scan(0, |next, t| {
            let at = *next;
            *next += t.len(shape);
            Some(at)
        })
        .collect();

    // Tiles are summed in fixed groups and the group sums in a fixed order, so the gradients
    // do not depend on how rayon happens to schedule the work (training is bit-reproducible).
    let group_len = tiles.len().div_ceil(GRADIENT_GROUPS);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..tiles.len().div_ceil(group_len))
        .into_par_iter()
        .map(|group| {
            let mut dw = vec![0.0f32; packed_len];
            let mut db = vec![0.0f32; f_n];
            let (mut scratch, mut locals) = (Vec::new(), vec![Vec::new(), Vec::new()]);
            let last = ((group + 1) * group_len).min(tiles.len());
            for (tile, &offset) in tiles[group * group_len..last]
                .iter()
                .zip(&offsets[group * group_len..])
            {
                let n = tile.n;
                let volume = &input[n * shape.input_stride()..(n + 1) * shape.input_stride()];
                let len = tile.len(shape);
                let arg = &argmax[offset..offset + len];
                let grad = &grad_pooled[offset..offset + len];
                let runs = tile.runs(shape, 0);
                // The tile's dZ rows: in the whole-volume buffer when the input gradient needs
                // them later, else in reused local buffers; one slice per run of positions.
                let mut dz_runs: Vec<&mut [f32]> = if want_input_grad {
                    runs.iter()
                        .map(|&(start, rows, _)| {
                            let at = n * dz_stride + (front + start) * f_n;
                            // SAFETY: the positions of a run belong to this tile's convolution
                            // rows, and tiles (and the runs of a tile) never share positions.
                            unsafe {
                                std::slice::from_raw_parts_mut(dz_shared.get().add(at), rows * f_n)
                            }
                        })
                        .collect()
                } else {
                    locals
                        .iter_mut()
                        .zip(&runs)
                        .map(|(local, &(_, rows, _))| {
                            local.clear();
                            local.resize(rows * f_n, 0.0);
                            &mut local[..]
                        })
                        .collect()
                };
                let mut o = 0;
                for pxi in 0..tile.px.len() {
                    for pyi in 0..tile.py.len() {
                        for pz in 0..pz_n {
                            for f in 0..f_n {
                                let code = arg[o + f];
                                if code & PASSES == 0 {
                                    continue;
                                }
                                let xi = 2 * pxi + ((code >> 2) & 1) as usize;
                                let yi = 2 * pyi + ((code >> 1) & 1) as usize;
                                let z = 2 * pz + (code & 1) as usize;
                                let (run, row) = if tile.whole {
                                    (0, (xi * y_n + yi) * z_n + z)
                                } else {
                                    (xi, yi * z_n + z)
                                };
                                dz_runs[run][row * f_n + f] = grad[o + f];
                                db[f] += grad[o + f];
                            }
                            o += f_n;
                        }
                    }
                }
                for (dz, &(start, rows, _)) in dz_runs.iter().zip(&runs) {
                    accumulate_weight_gradient(
                        shape,
                        volume,
                        dz,
                        start,
                        rows,
                        &mut scratch,
                        &mut dw,
                    );
                }
            }
            (dw, db)
        })
        .collect();
    let mut partials = partials.into_iter();
    let (mut weights_packed, mut bias) = partials.next().expect("at least one slab");
    for (dw, db) in partials {
        weights_packed
            .iter_mut()
            .zip(&dw)
            .for_each(|(a, b)| *a += b);
        bias.iter_mut().zip(&db).for_each(|(a, b)| *a += b);
    }

    let input_grad = want_input_grad.then(|| {
        let mut dx = vec![0.0f32; shape.batch * shape.input_positions() * c_n];
        // Several x slices per GEMM for small layers (the weights are packed once per call).
        let slices = (DX_ROWS / yz).clamp(1, x_n.div_ceil(2));
        let per_volume: Vec<(usize, &mut [f32])> = dx
            .chunks_mut(x_n * yz * c_n)
            .enumerate()
            .flat_map(|(n, volume)| volume.chunks_mut(slices * yz * c_n).map(move |c| (n, c)))
            .collect();
        let chunks_per_volume = x_n.div_ceil(slices);
        per_volume
            .into_par_iter()
            .enumerate()
            .for_each(|(chunk, (n, out))| {
                let x = (chunk % chunks_per_volume) * slices;
                let dz = &dz_full[n * dz_stride..(n + 1) * dz_stride];
                let p0 = x * yz;
                let rows = out.len() / c_n;
                for kx in 0..KERNEL {
                    for ky in 0..KERNEL {
                        // Row p reads dZ rows p − s − 2, p − s − 1, p − s (taps kz = 2, 1, 0).
                        let first = (front + p0 - shape.shift(kx, ky) - (KERNEL - 1)) * f_n;
                        let last = first + (rows - 1) * f_n + KERNEL * f_n;
                        assert!(last <= dz.len());
                        let w = &weights.backward[(kx * KERNEL + ky) * KERNEL * f_n * c_n..];
                        // SAFETY: lhs rows stay in dz (checked); w holds 3F × C values; out
                        // holds rows × C.
                        unsafe {
                            matmul(
                                rows,
                                c_n,
                                KERNEL * f_n,
                                out.as_mut_ptr(),
                                c_n,
                                kx + ky > 0,
                                dz.as_ptr().add(first),
                                f_n,
                                1,
                                w.as_ptr(),
                                c_n,
                            );
                        }
                    }
                }
            });
        dx
    });

    FusedConvGradients {
        weights_packed,
        bias,
        input: input_grad,
    }
}

/// `dW[kx, ky] += A_{kx,ky}ᵀ · dZ` over `rows` output positions from `start`.
fn accumulate_weight_gradient(
    shape: &FusedConvShape,
    volume: &[f32],
    dz: &[f32],
    start: usize,
    rows: usize,
    scratch: &mut Vec<f32>,
    dw: &mut [f32],
) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    if shape.uses_im2col() {
        scratch.resize(rows * TAPS * c_n, 0.0);
        im2col(shape, volume, start, rows, scratch);
        // SAFETY: lhs = scratchᵀ (27C × rows), rhs = dz (rows × F), dst = dw (27C × F).
        unsafe {
            matmul(
                TAPS * c_n,
                f_n,
                rows,
                dw.as_mut_ptr(),
                f_n,
                true,
                scratch.as_ptr(),
                1,
                TAPS * c_n,
                dz.as_ptr(),
                f_n,
            );
        }
        return;
    }
    for kx in 0..KERNEL {
        for ky in 0..KERNEL {
            let first = (start + shape.shift(kx, ky)) * c_n;
            assert!(first + (rows - 1) * c_n + KERNEL * c_n <= volume.len());
            let w = &mut dw[(kx * KERNEL + ky) * KERNEL * c_n * f_n..];
            // SAFETY: lhs (3C × rows) element (i, r) = volume[first + r·C + i], inside volume
            // (checked); rhs = dz (rows × F); dst = 3C × F inside dw.
            unsafe {
                matmul(
                    KERNEL * c_n,
                    f_n,
                    rows,
                    w.as_mut_ptr(),
                    f_n,
                    true,
                    volume.as_ptr().add(first),
                    1,
                    c_n,
                    dz.as_ptr(),
                    f_n,
                );
            }
        }
    }
}

/// Channels-first `[batch, C, positions]` → channels-last `[batch, positions + tail, C]` with a
/// zero tail of `tail` positions after each volume.
pub fn to_channels_last(
    data: &[f32],
    batch: usize,
    channels: usize,
    positions: usize,
    tail: usize,
) -> Vec<f32> {
    assert_eq!(data.len(), batch * channels * positions);
    let stride = (positions + tail) * channels;
    let mut out = vec![0.0f32; batch * stride];
    if channels == 1 {
        for n in 0..batch {
            out[n * stride..n * stride + positions]
                .copy_from_slice(&data[n * positions..(n + 1) * positions]);
        }
        return out;
    }
    const TILE: usize = 64;
    out.par_chunks_mut(stride)
        .zip(data.par_chunks(channels * positions))
        .for_each(|(dst, src)| {
            dst[..positions * channels]
                .par_chunks_mut(TILE * channels)
                .enumerate()
                .for_each(|(tile, dst)| {
                    let p0 = tile * TILE;
                    let rows = dst.len() / channels;
                    for c in 0..channels {
                        let column = &src[c * positions + p0..c * positions + p0 + rows];
                        for (r, &v) in column.iter().enumerate() {
                            dst[r * channels + c] = v;
                        }
                    }
                });
        });
    out
}

/// Channels-last `[batch, positions, C]` (no tail) → channels-first `[batch, C, positions]`.
pub fn to_channels_first(
    data: &[f32],
    batch: usize,
    channels: usize,
    positions: usize,
) -> Vec<f32> {
    assert_eq!(data.len(), batch * channels * positions);
    let mut out = vec![0.0f32; data.len()];
    if channels == 1 {
        out.copy_from_slice(data);
        return out;
    }
    const TILE: usize = 64;
    let volume = channels * positions;
    out.par_chunks_mut(volume)
        .zip(data.par_chunks(volume))
        .for_each(|(dst, src)| {
            // Parallel over channel tiles; each reads the rows of its channels.
            dst.par_chunks_mut(positions * TILE.min(channels))
                .enumerate()
                .for_each(|(tile, dst)| {
                    let c0 = tile * TILE.min(channels);
                    let width = dst.len() / positions;
                    for p0 in (0..positions).step_by(TILE) {
                        let p1 = (p0 + TILE).min(positions);
                        for p in p0..p1 {
                            let row = &src[p * channels + c0..p * channels + c0 + width];
                            for (c, &v) in row.iter().enumerate() {
                                dst[c * positions + p] = v;
                            }
                        }
                    }
                });
        });
    out
}

#[cfg(test)]
mod tests {
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
                                        let v = conv[(((n * f_n + f) * ox + 2 * i + a) * oy
                                            + 2 * j
                                            + bb)
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
                                        let at =
                                            (((n * f_n + f) * ox + 2 * i + a) * oy + 2 * j + bb)
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
            let got_dw = unpack_weight_gradient(
                &grads.weights_packed,
                shape.in_channels,
                shape.out_channels,
            );
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
}
