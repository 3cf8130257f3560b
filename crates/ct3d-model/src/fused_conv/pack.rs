//! Convolution weights rearranged for the kernels: [`PackedWeights`] holds the forward and the
//! backward (transposed, taps reversed) GEMM operands, built once per call from burn's
//! `[F, C, kx, ky, kz]`; [`unpack_weight_gradient`] turns the gradient back into that layout.

use super::{KERNEL, TAPS};

/// Convolution weights rearranged for the kernels.
///
/// `forward`: `[kx, ky, kz, c, f]`, i.e. one `[3·C, F]` matrix per `(kx, ky)` whose rows follow the
/// three adjacent `kz` taps; `backward`: per `(kx, ky)` a `[3·F, C]` matrix with the taps in
/// reverse order (`kz = 2, 1, 0`), the transposed weights of the gather-form input gradient.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    pub(super) forward: Vec<f32>,
    /// Built on first use: only the general kernels' input gradient reads it.
    backward: std::sync::OnceLock<Vec<f32>>,
    in_channels: usize,
    out_channels: usize,
}

impl PackedWeights {
    /// Packs burn's/PyTorch's `[F, C, kx, ky, kz]` weights.
    pub fn new(weights: &[f32], in_channels: usize, out_channels: usize) -> Self {
        let (c_n, f_n) = (in_channels, out_channels);
        assert_eq!(weights.len(), f_n * c_n * TAPS, "weights length");
        let mut forward = vec![0.0; weights.len()];
        // Blocks of 16 filters, so that the writes are 16-value runs and the reads 16 rows of
        // 27 taps (filter by filter, each write strode C·F values: ≈ 1 % of a training step).
        const BLOCK: usize = 16;
        for f0 in (0..f_n).step_by(BLOCK) {
            let f1 = (f0 + BLOCK).min(f_n);
            for c in 0..c_n {
                for tap in 0..TAPS {
                    let row = &mut forward[(tap * c_n + c) * f_n..][f0..f1];
                    for (f, value) in (f0..f1).zip(row) {
                        *value = weights[(f * c_n + c) * TAPS + tap];
                    }
                }
            }
        }
        Self {
            forward,
            backward: std::sync::OnceLock::new(),
            in_channels,
            out_channels,
        }
    }

    /// The backward packing, built from the forward one on first use.
    pub(super) fn backward(&self) -> &[f32] {
        self.backward.get_or_init(|| {
            let (c_n, f_n) = (self.in_channels, self.out_channels);
            let mut backward = vec![0.0; self.forward.len()];
            for tap in 0..TAPS {
                let (kxy, kz) = (tap / KERNEL, tap % KERNEL);
                let j = KERNEL - 1 - kz;
                for c in 0..c_n {
                    for f in 0..f_n {
                        backward[((kxy * KERNEL + j) * f_n + f) * c_n + c] =
                            self.forward[(tap * c_n + c) * f_n + f];
                    }
                }
            }
            backward
        })
    }
}

/// Converts a gradient in the forward packing (`[kx, ky, kz, c, f]`) back to `[F, C, kx, ky, kz]`.
pub fn unpack_weight_gradient(packed: &[f32], in_channels: usize, out_channels: usize) -> Vec<f32> {
    let (c_n, f_n) = (in_channels, out_channels);
    let mut out = vec![0.0; packed.len()];
    // Blocks of 16 filters, as in [`PackedWeights::new`].
    const BLOCK: usize = 16;
    for f0 in (0..f_n).step_by(BLOCK) {
        let f1 = (f0 + BLOCK).min(f_n);
        for c in 0..c_n {
            for tap in 0..TAPS {
                let row = &packed[(tap * c_n + c) * f_n..][f0..f1];
                for (f, &value) in (f0..f1).zip(row) {
                    out[(f * c_n + c) * TAPS + tap] = value;
                }
            }
        }
    }
    out
}
