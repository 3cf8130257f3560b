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
//!
//! The module's files, one idea each: `geometry` (shapes, tiles), `pack` (weight layouts),
//! `layout` (channels-first ↔ channels-last), `gemm` (the strided GEMM and im2col), `forward`
//! and `backward` (the general kernels), `first_layer` and `winograd` (AVX-512 kernels for the
//! one-channel block and for blocks with many channels, see [`kernel_for`]); the public items
//! are re-exported here.

mod backward;
mod first_layer;
mod forward;
mod gemm;
mod geometry;
mod layout;
mod pack;
#[cfg(test)]
mod tests;
mod winograd;

pub use backward::{FusedConvGradients, backward};
pub use forward::forward;
pub use geometry::FusedConvShape;
pub use layout::{to_channels_first, to_channels_last};
pub use pack::{PackedWeights, unpack_weight_gradient};

use std::sync::atomic::{AtomicBool, Ordering};

/// The kernel size along each axis (the seed's `Conv3D(kernel_size=3)`).
pub const KERNEL: usize = 3;
const TAPS: usize = KERNEL * KERNEL * KERNEL;

/// Bit set in an arg-max byte when the pooled value was positive, i.e. the ReLU passes the
/// gradient; the low three bits are the window position `dx·4 + dy·2 + dz`.
const PASSES: u8 = 0x80;

static AVX512_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns the AVX-512 kernels (the direct one-channel kernel and the Winograd kernels) on (the
/// default) or off for the whole process; off, every block runs the general kernels. For
/// benchmarks and comparisons; switch it only between training steps, because a forward pass
/// and its backward pass must run the same kernels (the arg-max of a near tie may differ).
/// Returns the previous setting.
pub fn set_avx512_kernels(enabled: bool) -> bool {
    AVX512_KERNELS.swap(enabled, Ordering::Relaxed)
}

fn avx512_kernels_enabled() -> bool {
    AVX512_KERNELS.load(Ordering::Relaxed) && winograd::Isa::best() == winograd::Isa::Avx512
}

/// Which kernels run a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// One input channel, filters a multiple of 16, AVX-512: the direct kernel of
    /// `first_layer.rs` (its input gradient, when asked for, comes from the general kernels).
    FirstLayer,
    /// Input channels ≥ 16 and both channel counts multiples of 16, AVX-512: Winograd
    /// F(2×2×2, 3×3×3) (`winograd.rs`).
    Winograd,
    /// Everything else: shifted GEMMs or a small im2col (`forward.rs`, `backward.rs`).
    General,
}

/// The kernels [`forward()`] and [`backward()`] use for `shape` on this CPU with the current
/// [`set_avx512_kernels`] setting.
pub fn kernel_for(shape: &FusedConvShape) -> Kernel {
    if first_layer::applies(shape) {
        Kernel::FirstLayer
    } else if winograd::applies(shape) {
        Kernel::Winograd
    } else {
        Kernel::General
    }
}
