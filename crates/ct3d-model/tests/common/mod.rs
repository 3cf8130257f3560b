//! Shared helpers for the integration tests: tiny configurations, synthetic batches, and the
//! lock around the process-wide kernel switch.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use burn::tensor::{Device, Tensor, TensorData};
use ct3d_model::ModelConfig;

/// The choice of CPU kernels (`ct3d_model::ops::set_fused_cpu_kernels`) is process-wide, and all
/// integration tests run on threads of one process: a test that flips it holds the write side, and
/// every test whose numbers go through the switch holds the read side, so none runs mid-flip.
static KERNEL_SWITCH: RwLock<()> = RwLock::new(());

/// Held by a test that runs the model's convolution blocks with the default (fused) CPU kernels.
pub fn default_kernels() -> RwLockReadGuard<'static, ()> {
    KERNEL_SWITCH.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held by a test that flips the kernel switch; it runs alone among the tests that hold
/// [`default_kernels`].
pub fn switching_kernels() -> RwLockWriteGuard<'static, ()> {
    KERNEL_SWITCH
        .write()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Four blocks like the seed but with a handful of filters, at the smallest legal size.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        input: [46, 47, 46],
        filters: vec![2, 3, 4, 5],
        dense: 6,
        dropout: 0.3,
        ..ModelConfig::default()
    }
}

/// Deterministic pseudo-random values in `[0, 1)` (a 64-bit LCG; quality is irrelevant here).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// A `[batch, 1, x, y, z]` tensor of pseudo-random voxels.
pub fn random_batch(seed: u64, batch: usize, size: [usize; 3], device: &Device) -> Tensor<5> {
    let shape = [batch, 1, size[0], size[1], size[2]];
    let values = pseudo_random(seed, shape.iter().product());
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Reads a tensor back as `f32` values.
pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_into_vec_as::<f32>().unwrap()
}
