//! The backward pass, in three steps: rebuild the sparse gradient of the convolution output
//! from the forward pass's arg-max bytes (with the bias gradient on the way), accumulate the
//! weight gradient from it with the forward pass's shifted GEMMs transposed, and gather the
//! input gradient (`dX[p] = Σ_k dZ[p − s_k]·W_kᵀ`) so every input row is written by one task.
//! Partial sums are added in a fixed order, so the gradients do not depend on scheduling.

use rayon::prelude::*;

use super::gemm::{SharedMut, im2col, matmul};
use super::geometry::{FusedConvShape, Tile};
use super::pack::PackedWeights;
use super::winograd;
use super::{KERNEL, PASSES, TAPS};

/// How many partial weight gradients the backward pass sums (in a fixed order).
const GRADIENT_GROUPS: usize = 16;

/// Rows aimed for in one input-gradient GEMM.
const DX_ROWS: usize = 2048;

/// Gradients of the fused block.
pub struct FusedConvGradients {
    /// Weight gradient in the forward packing; see [`super::unpack_weight_gradient`].
    pub weights_packed: Vec<f32>,
    /// Bias gradient, `[F]`.
    pub bias: Vec<f32>,
    /// Input gradient, channels-last `[batch, X, Y, Z, C]` (no tail), when asked for.
    pub input: Option<Vec<f32>>,
}

/// Fused backward pass.
///
/// - `input`, `weights`: as given to [`super::forward`]; `argmax`: what it returned.
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
    let [px_n, py_n, pz_n] = shape.pooled();
    assert_eq!(
        input.len(),
        shape.batch * shape.input_stride(),
        "input length"
    );
    assert_eq!(
        argmax.len(),
        shape.batch * px_n * py_n * pz_n * shape.out_channels,
        "argmax length"
    );
    assert_eq!(grad_pooled.len(), argmax.len(), "gradient length");
    match super::kernel_for(shape) {
        super::Kernel::FirstLayer if !want_input_grad => {
            let (weights_packed, bias) =
                super::first_layer::weight_and_bias_gradients(shape, input, argmax, grad_pooled);
            FusedConvGradients {
                weights_packed,
                bias,
                input: None,
            }
        }
        super::Kernel::Winograd => winograd::backward(
            winograd::Isa::best(),
            shape,
            input,
            weights,
            argmax,
            grad_pooled,
            want_input_grad,
        ),
        _ => general(shape, input, weights, argmax, grad_pooled, want_input_grad),
    }
}

/// [`backward()`] on the general kernels, whatever the CPU.
pub(super) fn general(
    shape: &FusedConvShape,
    input: &[f32],
    weights: &PackedWeights,
    argmax: &[u8],
    grad_pooled: &[f32],
    want_input_grad: bool,
) -> FusedConvGradients {
    let mut conv_grad = want_input_grad.then(|| ConvGradient::zeros(shape));
    let (weights_packed, bias) =
        weight_and_bias_gradients(shape, input, argmax, grad_pooled, conv_grad.as_mut());
    let input_grad = conv_grad.map(|dz| input_gradient(shape, weights, &dz));
    FusedConvGradients {
        weights_packed,
        bias,
        input: input_grad,
    }
}

/// The convolution-output gradient dZ of every volume, kept whole when the input gradient needs
/// it: `front` zero rows before each volume's rows so the gather form never reads before them.
struct ConvGradient {
    /// `[batch, front + X·Y·Z, F]`.
    values: Vec<f32>,
    /// Zero rows before each volume.
    front: usize,
    /// Floats per volume.
    stride: usize,
}

impl ConvGradient {
    fn zeros(shape: &FusedConvShape) -> Self {
        let front = shape.shift(KERNEL - 1, KERNEL - 1) + KERNEL - 1;
        let stride = (front + shape.input_positions()) * shape.out_channels;
        Self {
            values: vec![0.0f32; shape.batch * stride],
            front,
            stride,
        }
    }
}

/// Steps 1 and 2: per tile, dZ from the arg-max bytes (written into `conv_grad` when given, so
/// the input gradient can use it) and its weight and bias gradients. Tiles are summed in fixed
/// groups and the group sums in a fixed order, so the result does not depend on how rayon
/// schedules the work (training is bit-reproducible).
fn weight_and_bias_gradients(
    shape: &FusedConvShape,
    input: &[f32],
    argmax: &[u8],
    grad_pooled: &[f32],
    conv_grad: Option<&mut ConvGradient>,
) -> (Vec<f32>, Vec<f32>) {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    // Tasks write disjoint rows of the whole-volume buffer through this pointer.
    let whole = conv_grad.map(|dz| (SharedMut(dz.values.as_mut_ptr()), dz.front, dz.stride));
    let tiles = shape.tiles();
    let offsets: Vec<usize> = tiles
        .iter()
        .scan(0, |next, t| {
            let at = *next;
            *next += t.len(shape);
            Some(at)
        })
        .collect();
    let group_len = tiles.len().div_ceil(GRADIENT_GROUPS);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = (0..tiles.len().div_ceil(group_len))
        .into_par_iter()
        .map(|group| {
            let mut dw = vec![0.0f32; TAPS * c_n * f_n];
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
                let runs = tile.runs(shape, 0);
                // The tile's dZ rows: in the whole-volume buffer when the input gradient needs
                // them later, else in reused local buffers; one slice per run of positions.
                let mut dz_runs: Vec<&mut [f32]> = match whole {
                    Some((shared, front, stride)) => runs
                        .iter()
                        .map(|&(start, rows, _)| {
                            let at = n * stride + (front + start) * f_n;
                            // SAFETY: the positions of a run belong to this tile's convolution
                            // rows, and tiles (and the runs of a tile) never share positions.
                            unsafe {
                                std::slice::from_raw_parts_mut(shared.get().add(at), rows * f_n)
                            }
                        })
                        .collect(),
                    None => locals
                        .iter_mut()
                        .zip(&runs)
                        .map(|(local, &(_, rows, _))| {
                            local.clear();
                            local.resize(rows * f_n, 0.0);
                            &mut local[..]
                        })
                        .collect(),
                };
                scatter_pooled_gradient(
                    shape,
                    tile,
                    &argmax[offset..offset + len],
                    &grad_pooled[offset..offset + len],
                    &mut dz_runs,
                    &mut db,
                );
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
    (weights_packed, bias)
}

/// Step 1 for one tile: each pooled gradient goes to the window position that won the max
/// (when the ReLU let it through), into the tile's dZ rows (`dz_runs`, zero elsewhere), and is
/// added to the bias gradient `db`.
fn scatter_pooled_gradient(
    shape: &FusedConvShape,
    tile: &Tile,
    arg: &[u8],
    grad: &[f32],
    dz_runs: &mut [&mut [f32]],
    db: &mut [f32],
) {
    let f_n = shape.out_channels;
    let [_, y_n, z_n] = shape.input;
    let pz_n = shape.pooled()[2];
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

/// Step 3: the input gradient in gather form, channels-last `[batch, X, Y, Z, C]`, from the
/// whole-volume dZ; parallel over chunks of `x` slices, each written by exactly one task.
fn input_gradient(shape: &FusedConvShape, weights: &PackedWeights, dz: &ConvGradient) -> Vec<f32> {
    let (c_n, f_n) = (shape.in_channels, shape.out_channels);
    let [x_n, y_n, z_n] = shape.input;
    let yz = y_n * z_n;
    let (front, dz_stride) = (dz.front, dz.stride);
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
            let dz = &dz.values[n * dz_stride..(n + 1) * dz_stride];
            let p0 = x * yz;
            let rows = out.len() / c_n;
            for kx in 0..KERNEL {
                for ky in 0..KERNEL {
                    // Row p reads dZ rows p − s − 2, p − s − 1, p − s (taps kz = 2, 1, 0).
                    let first = (front + p0 - shape.shift(kx, ky) - (KERNEL - 1)) * f_n;
                    let last = first + (rows - 1) * f_n + KERNEL * f_n;
                    assert!(last <= dz.len());
                    let w = &weights.backward()[(kx * KERNEL + ky) * KERNEL * f_n * c_n..];
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
}
