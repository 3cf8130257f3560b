//! The model's convolution and pooling: the only place they are called.
//!
//! Both dominate the step time on the CPU, and a later change replaces them with hand-written
//! kernels (fused, cache-blocked, SIMD) through burn's backend extensions; keeping every call
//! behind these two functions makes that a local change. Everything here works on any burn
//! device, with or without autodiff, and gradients flow through the burn ops used.
//!
//! Tensors are channels-first: `[batch, channels, x, y, z]`, `z` varying fastest in memory.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Dispatch;
use burn::tensor::activation::relu;
use burn::tensor::module::{conv3d as conv3d_burn, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor};

use burn::nn::BatchNorm;

use crate::cpu_backend::FusedConvBackend;

/// One convolution block's first half: `max_pool3d_2(relu(conv3d_valid(x, kernel, bias)))`.
///
/// On the CPU (`flex`, with or without autodiff) this is one fused operation with hand-written
/// kernels and backward pass ([`crate::fused_conv`]); on other devices it is the composition of
/// burn's ops below. Both compute the same function; their agreement is tested.
///
/// # Shapes
/// - `input`: `[batch, in_channels, x, y, z]`, each of `x, y, z ≥ 4`
/// - `kernel`: `[out_channels, in_channels, 3, 3, 3]`; `bias`: `[out_channels]`
/// - output: `[batch, out_channels, (x − 2) / 2, (y − 2) / 2, (z − 2) / 2]`
pub fn conv3d_relu_max_pool3d(input: Tensor<5>, kernel: Tensor<5>, bias: Tensor<1>) -> Tensor<5> {
    if FUSED_CPU_KERNELS.load(Ordering::Relaxed)
        && is_flex(&input.device())
        && kernel.dims()[2..] == [3, 3, 3]
    {
        let output = <Dispatch as FusedConvBackend>::conv3d_relu_max_pool3d(
            input.into_dispatch(),
            kernel.into_dispatch(),
            bias.into_dispatch(),
        );
        return Tensor::from_dispatch(output);
    }
    conv3d_relu_max_pool3d_composed(input, kernel, bias)
}

/// burn's `BatchNorm::forward` for a `[batch, channels, x, y, z]` activation; on the CPU
/// (`flex`) with ct3d's batch-norm kernels ([`crate::norm_kernels`]): training mode (autodiff
/// device, layer not frozen) normalizes with the batch's statistics and updates the running
/// averages exactly as burn does; inference (no autodiff) uses the running statistics. Other
/// devices, and a frozen layer on an autodiff CPU device, run burn's own layer.
pub fn batch_norm(norm: &BatchNorm, x: Tensor<5>) -> Tensor<5> {
    let device = x.device();
    if !(FUSED_CPU_KERNELS.load(Ordering::Relaxed) && is_flex(&device)) {
        return norm.forward(x);
    }
    if device.is_autodiff() && norm.training.is_enabled() {
        let (output, mean, variance) = <Dispatch as FusedConvBackend>::fused_batch_norm_train(
            x.into_dispatch(),
            norm.gamma.val().into_dispatch(),
            norm.beta.val().into_dispatch(),
            norm.epsilon,
        );
        let (mean, variance) = (
            Tensor::<1>::from_dispatch(mean),
            Tensor::<1>::from_dispatch(variance),
        );
        // As burn's `BatchNorm::forward_train`.
        let running_mean = norm.running_mean.value_sync().to_device(&device);
        let running_var = norm.running_var.value_sync().to_device(&device);
        let running_mean = running_mean
            .mul_scalar(1.0 - norm.momentum)
            .add(mean.detach().mul_scalar(norm.momentum));
        let running_var = running_var
            .mul_scalar(1.0 - norm.momentum)
            .add(variance.detach().mul_scalar(norm.momentum));
        norm.running_mean.update(running_mean.detach());
        norm.running_var.update(running_var.detach());
        return Tensor::from_dispatch(output);
    }
    if device.is_autodiff() {
        return norm.forward(x);
    }
    let output = <Dispatch as FusedConvBackend>::fused_batch_norm(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.running_mean.value().to_device(&device).into_dispatch(),
        norm.running_var.value().to_device(&device).into_dispatch(),
        norm.epsilon,
    );
    Tensor::from_dispatch(output)
}

/// [`conv3d_relu_max_pool3d`] from burn's generic ops on any device (the GPU path, and the
/// reference the fused CPU kernels are tested against).
pub fn conv3d_relu_max_pool3d_composed(
    input: Tensor<5>,
    kernel: Tensor<5>,
    bias: Tensor<1>,
) -> Tensor<5> {
    max_pool3d_2(relu(conv3d_valid(input, kernel, bias)))
}

static FUSED_CPU_KERNELS: AtomicBool = AtomicBool::new(true);

/// Chooses, for the whole process, whether the CPU runs the fused kernels (the default) or
/// burn's generic ops, e.g. to compare the two in one benchmark or test. Returns the previous
/// setting. GPU devices always use burn's ops.
pub fn set_fused_cpu_kernels(enabled: bool) -> bool {
    FUSED_CPU_KERNELS.swap(enabled, Ordering::Relaxed)
}

/// Whether the CPU runs the fused kernels (see [`set_fused_cpu_kernels`]).
pub fn fused_cpu_kernels() -> bool {
    FUSED_CPU_KERNELS.load(Ordering::Relaxed)
}

/// Whether `device` is burn's `flex` CPU backend (autodiff or not).
fn is_flex(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// Keras `Conv3D(padding="valid", strides=1)`: cross-correlation without padding, plus bias.
///
/// # Shapes
/// - `input`: `[batch, in_channels, x, y, z]`
/// - `kernel`: `[out_channels, in_channels, kx, ky, kz]`
/// - `bias`: `[out_channels]`
/// - output: `[batch, out_channels, x - kx + 1, y - ky + 1, z - kz + 1]`
///
/// The caller guarantees `x ≥ kx` etc. and matching channel counts (the model validates its
/// input size once); burn panics otherwise.
pub fn conv3d_valid(input: Tensor<5>, kernel: Tensor<5>, bias: Tensor<1>) -> Tensor<5> {
    conv3d_burn(
        input,
        kernel,
        Some(bias),
        ConvOptions::new([1, 1, 1], [0, 0, 0], [1, 1, 1], 1),
    )
}

/// A 3D convolution with equal `stride` and zero `padding` on every axis, as PyTorch's
/// `Conv3d(…, stride, padding, bias=…)` (cross-correlation).
///
/// # Shapes
/// - `input`: `[batch, in_channels, x, y, z]`
/// - `kernel`: `[out_channels, in_channels, k, k, k]`; `bias`: `[out_channels]`
/// - output: `[batch, out_channels, (x + 2·padding − k) / stride + 1, …]`
///
/// The caller guarantees sizes that leave at least one output voxel (the network validates its
/// configuration once); burn panics otherwise.
pub fn conv3d(
    input: Tensor<5>,
    kernel: Tensor<5>,
    bias: Option<Tensor<1>>,
    stride: usize,
    padding: usize,
) -> Tensor<5> {
    conv3d_burn(
        input,
        kernel,
        bias,
        ConvOptions::new([stride; 3], [padding; 3], [1, 1, 1], 1),
    )
}

/// PyTorch's `MaxPool3d(kernel_size=3, stride=2, padding=1)`: 3×3×3 windows every second
/// voxel, the input padded by one voxel on each side (padding never wins a window: burn pads
/// max pooling with −∞).
///
/// Built from two 2D poolings over views of the same memory, as [`max_pool3d_2`]: `y` and `z`
/// first (treating `channels·x` as channels), then `x`.
///
/// # Shapes
/// - `input`: `[batch, channels, x, y, z]`, every axis ≥ 1
/// - output: `[batch, channels, (x − 1) / 2 + 1, (y − 1) / 2 + 1, (z − 1) / 2 + 1]`
pub fn max_pool3d_3_stride_2(input: Tensor<5>) -> Tensor<5> {
    let [batch, channels, x, y, z] = input.dims();
    let planes = input.reshape([batch, channels * x, y, z]);
    let options = MaxPoolOptions::new([3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1]);
    let pooled_yz = max_pool2d(planes, options); // [batch, channels·x, py, pz]
    let [_, _, py, pz] = pooled_yz.dims();
    let columns = pooled_yz.reshape([batch, channels, x, py * pz]);
    let options = MaxPoolOptions::new([3, 1])
        .with_stride([2, 1])
        .with_padding_pairs([(1, 1), (0, 0)]);
    let pooled = max_pool2d(columns, options); // [batch, channels, px, py·pz]
    let [_, _, px, _] = pooled.dims();
    pooled.reshape([batch, channels, px, py, pz])
}

/// Keras `MaxPool3D(pool_size=2)`: 2×2×2 windows, stride 2, no padding, odd sizes rounded down.
///
/// burn has no 3D max pooling, so this pools twice in 2D over views of the same memory: first
/// `y` and `z` together (2×2), treating `channels·x` as channels, then `x` (2×1) over a view in
/// which `y·z` is one axis. The maximum of the two stages is the maximum over the 2×2×2 window,
/// and burn's `max_pool2d` backward routes each gradient to its window's arg-max, so the
/// gradient is exact too. (An 8-D reshape with `max_dim` was ~3× slower in the backward pass.)
///
/// # Shapes
/// - `input`: `[batch, channels, x, y, z]` with `x, y, z ≥ 2`
/// - output: `[batch, channels, x / 2, y / 2, z / 2]` (integer division)
pub fn max_pool3d_2(input: Tensor<5>) -> Tensor<5> {
    let [batch, channels, x, y, z] = input.dims();
    let (px, py, pz) = (x / 2, y / 2, z / 2);
    let planes = input.reshape([batch, channels * x, y, z]);
    let pooled_yz = max_pool2d(planes, MaxPoolOptions::new([2, 2])); // [batch, channels·x, py, pz]
    let columns = pooled_yz.reshape([batch, channels, x, py * pz]);
    let pooled = max_pool2d(columns, MaxPoolOptions::new([2, 1])); // [batch, channels, px, py·pz]
    pooled.reshape([batch, channels, px, py, pz])
}
