//! The two primitives under both passes: a strided single-threaded GEMM (the `gemm` crate's,
//! called inside rayon tasks) whose left operand can be the input itself read with overlapping
//! rows, and the small im2col used instead for layers with few input channels; plus the shared
//! pointer through which tasks write disjoint parts of one buffer.

use super::geometry::FusedConvShape;
use super::{KERNEL, TAPS};

/// A raw pointer that rayon tasks share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(super) struct SharedMut(pub(super) *mut f32);
// SAFETY: every user writes only the rows of its own slab; the slabs are disjoint by
// construction (see the callers).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Send + Sync` wrapper).
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)` with explicit strides, single-threaded.
///
/// # Safety
/// Every element addressed through the strides must be inside a live allocation; `dst` must
/// not overlap the operands.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
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
pub(super) fn im2col(
    shape: &FusedConvShape,
    volume: &[f32],
    start: usize,
    rows: usize,
    out: &mut [f32],
) {
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
