//! The fused convolution block as a burn backend extension for the `flex` CPU backend, with a
//! hand-written autodiff node.
//!
//! burn dispatches at run time; [`FusedConvBackend`] adds one operation,
//! `Conv3D(k=3, valid) + bias → ReLU → MaxPool3D(2)`, implemented for `Flex` (inference) and for
//! `Autodiff<Flex>` (training: the forward pass keeps the channels-last input and one arg-max
//! byte per pooled value, and the backward node calls [`fused_conv::backward`]). Other devices
//! never reach it: [`crate::ops::conv3d_relu_max_pool3d`] sends them through burn's own ops.
//!
//! Tensors cross the boundary channels-first (`[batch, channels, x, y, z]`, burn's layout), so
//! the rest of the model is unchanged; the kernels transpose to channels-last inside.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use burn::tensor::TensorData;

use crate::fused_conv::{self, FusedConvShape, PackedWeights};
use crate::norm_kernels;

/// The fused convolution block as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait FusedConvBackend: Backend {
    /// `max_pool3d_2(relu(conv3d_valid(x, weight) + bias))`.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, x, y, z]`, each spatial size ≥ 4
    /// - `weight`: `[out_channels, in_channels, 3, 3, 3]`; `bias`: `[out_channels]`
    /// - output: `[batch, out_channels, (x − 2) / 2, (y − 2) / 2, (z − 2) / 2]`
    fn conv3d_relu_max_pool3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Training-mode batch normalization with the batch's own statistics, as burn's
    /// `batch_norm_train` (see [`crate::norm_kernels`]): `(output, mean, biased variance)`.
    ///
    /// # Shapes
    /// - `x` and output: `[batch, channels, …]`; `gamma`, `beta`, mean, variance: `[channels]`
    ///
    /// Only the output is differentiated (the statistics feed the running averages).
    #[allow(clippy::type_complexity)]
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Inference-mode batch normalization with given statistics, as burn's `batch_norm`:
    /// `γ·(x − mean)/√(variance + ε) + β` per channel, one pass.
    ///
    /// # Shapes
    /// - `x` and output: `[batch, channels, …]`; the others: `[channels]`
    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

/// `(batch, channels, positions)` of a channels-first tensor.
fn norm_dims(x: &FlexTensor) -> (usize, usize, usize) {
    let dims = x.layout().shape().to_vec();
    assert!(dims.len() >= 2, "batch norm of a tensor {dims:?}");
    (dims[0], dims[1], dims[2..].iter().product())
}

/// The tensor with its `f32` values in one row-major run (copied only when it is a view).
fn contiguous(tensor: &FlexTensor) -> FlexTensor {
    let mut contiguous = tensor.to_contiguous();
    if contiguous.as_slice::<f32>().is_none() {
        // A contiguous view at a non-zero offset: copy it out.
        let data = contiguous.into_data();
        contiguous = FlexTensor::from_data(data);
    }
    contiguous
}

/// Row-major `f32` values of a tensor made by [`contiguous`].
fn values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("the fused convolution runs on f32 tensors")
}

fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// A tensor of logical shape `[batch, channels, s…]` whose memory is channels-last
/// (`[batch, s…, channels]`): a permuted view, no copy. The fused blocks and the batch norm
/// produce and consume this layout, so activations cross the boundary between them without the
/// two transposes per block that channels-first tensors cost (≈ a tenth of a CPU step).
fn channels_last_tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    let rank = shape.len();
    let mut stored: Vec<usize> = vec![shape[0]];
    stored.extend_from_slice(&shape[2..]);
    stored.push(shape[1]);
    let mut axes = vec![0, rank - 1];
    axes.extend(1..rank - 1);
    tensor(values, &stored).permute(&axes)
}

/// A gradient's values channels-last (`[batch, positions, channels]`): borrowed when it is
/// already in that layout, else transposed.
fn channels_last_or_transposed(
    tensor: &FlexTensor,
    (batch, channels, positions): (usize, usize, usize),
) -> std::borrow::Cow<'_, [f32]> {
    match channels_last_values(tensor) {
        Some(last) => std::borrow::Cow::Borrowed(last),
        None => std::borrow::Cow::Owned(fused_conv::to_channels_last(
            values(&contiguous(tensor)),
            batch,
            channels,
            positions,
            0,
        )),
    }
}

/// The channels-last values of a tensor made by [`channels_last_tensor`] (the whole buffer,
/// no offset), or `None` for any other layout.
fn channels_last_values(tensor: &FlexTensor) -> Option<&[f32]> {
    let layout = tensor.layout();
    let shape = layout.shape().to_vec();
    if shape.len() < 3 || layout.start_offset() != 0 {
        return None;
    }
    let channels = shape[1];
    let mut expected = vec![0isize; shape.len()];
    expected[1] = 1;
    let mut stride = channels;
    for axis in (2..shape.len()).rev() {
        expected[axis] = stride as isize;
        stride *= shape[axis];
    }
    expected[0] = stride as isize;
    let storage = tensor.storage::<f32>();
    (layout.strides() == expected.as_slice() && storage.len() == stride * shape[0])
        .then_some(storage)
}

/// The operands of one call, converted for the kernels.
struct Operands {
    shape: FusedConvShape,
    /// Channels-last input with its zero tail.
    input: Vec<f32>,
    weights: PackedWeights,
    bias: Vec<f32>,
}

impl Operands {
    fn new(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> Self {
        let [batch, in_channels, sx, sy, sz] = x.layout().shape().dims::<5>();
        let [out_channels, weight_in, kx, ky, kz] = weight.layout().shape().dims::<5>();
        assert!(
            weight_in == in_channels && [kx, ky, kz] == [fused_conv::KERNEL; 3],
            "fused convolution: weight {:?} for input {:?}",
            weight.layout().shape(),
            x.layout().shape()
        );
        let shape = FusedConvShape {
            batch,
            in_channels,
            out_channels,
            input: [sx, sy, sz],
        };
        assert!(
            shape.is_valid(),
            "fused convolution: input {:?} too small",
            x.layout().shape()
        );
        let input = match channels_last_values(x) {
            // Already channels-last (the previous block's output): only the zero tail to add.
            Some(last) => {
                let volume = shape.input_positions() * in_channels;
                let mut input = vec![0.0f32; batch * shape.input_stride()];
                for (dst, src) in input
                    .chunks_mut(shape.input_stride())
                    .zip(last.chunks(volume))
                {
                    dst[..volume].copy_from_slice(src);
                }
                input
            }
            None => fused_conv::to_channels_last(
                values(&contiguous(x)),
                batch,
                in_channels,
                shape.input_positions(),
                shape.input_tail(),
            ),
        };
        Self {
            shape,
            input,
            weights: PackedWeights::new(values(&contiguous(weight)), in_channels, out_channels),
            bias: values(&contiguous(bias)).to_vec(),
        }
    }

    /// The pooled output, channels-last from the kernel, as a channels-last tensor.
    fn output(&self, pooled: Vec<f32>) -> FlexTensor {
        let s = &self.shape;
        let [px, py, pz] = s.pooled();
        channels_last_tensor(pooled, &[s.batch, s.out_channels, px, py, pz])
    }
}

impl FusedConvBackend for Flex {
    fn fused_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let dims = norm_dims(&x);
        let shape = x.layout().shape().to_vec();
        let (gamma, beta) = (contiguous(&gamma), contiguous(&beta));
        if let Some(last) = channels_last_values(&x) {
            let (output, mean, variance) = norm_kernels::train_forward_channels_last(
                last,
                dims.1,
                values(&gamma),
                values(&beta),
                epsilon,
            );
            return (
                channels_last_tensor(output, &shape),
                tensor(mean, &[dims.1]),
                tensor(variance, &[dims.1]),
            );
        }
        let x = contiguous(&x);
        let (output, mean, variance) =
            norm_kernels::train_forward(values(&x), dims, values(&gamma), values(&beta), epsilon);
        (
            tensor(output, &shape),
            tensor(mean, &[dims.1]),
            tensor(variance, &[dims.1]),
        )
    }

    fn fused_batch_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let dims = norm_dims(&x);
        let shape = x.layout().shape().to_vec();
        if let Some(last) = channels_last_values(&x) {
            let output = norm_kernels::inference_channels_last(
                last,
                dims.1,
                values(&contiguous(&gamma)),
                values(&contiguous(&beta)),
                values(&contiguous(&mean)),
                values(&contiguous(&variance)),
                epsilon,
            );
            return channels_last_tensor(output, &shape);
        }
        let output = norm_kernels::inference(
            values(&contiguous(&x)),
            dims,
            values(&contiguous(&gamma)),
            values(&contiguous(&beta)),
            values(&contiguous(&mean)),
            values(&contiguous(&variance)),
            epsilon,
        );
        tensor(output, &shape)
    }

    fn conv3d_relu_max_pool3d(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let operands = Operands::new(&x, &weight, &bias);
        let (pooled, _) = fused_conv::forward(
            &operands.shape,
            &operands.input,
            &operands.weights,
            &operands.bias,
            false,
        );
        operands.output(pooled)
    }
}

/// The autodiff node of [`FusedConvBackend::conv3d_relu_max_pool3d`]; parents are
/// `[x, weight, bias]`.
#[derive(Debug)]
struct FusedConvBackward;

/// What the backward pass needs from the forward pass.
#[derive(Clone)]
struct Saved {
    shape: FusedConvShape,
    input: Arc<Vec<f32>>,
    weights: Arc<PackedWeights>,
    argmax: Arc<Vec<u8>>,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl Backward<Flex, 3> for FusedConvBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let saved = ops.state;
        let s = saved.shape;
        let grad_pooled =
            channels_last_or_transposed(&grad, (s.batch, s.out_channels, s.pooled_positions()));
        let gradients = fused_conv::backward(
            &s,
            &saved.input,
            &saved.weights,
            &saved.argmax,
            &grad_pooled,
            node_x.is_some(),
        );
        if let (Some(node), Some(input)) = (node_x, gradients.input) {
            let [sx, sy, sz] = s.input;
            grads.register::<Flex>(
                node.id,
                channels_last_tensor(input, &[s.batch, s.in_channels, sx, sy, sz]),
            );
        }
        if let Some(node) = node_weight {
            let data = fused_conv::unpack_weight_gradient(
                &gradients.weights_packed,
                s.in_channels,
                s.out_channels,
            );
            let k = fused_conv::KERNEL;
            grads.register::<Flex>(
                node.id,
                tensor(data, &[s.out_channels, s.in_channels, k, k, k]),
            );
        }
        if let Some(node) = node_bias {
            grads.register::<Flex>(node.id, tensor(gradients.bias, &[s.out_channels]));
        }
    }
}

/// The autodiff node of [`FusedConvBackend::fused_batch_norm_train`]; parents are
/// `[x, gamma, beta]`.
#[derive(Debug)]
struct BatchNormBackward;

/// What the batch-norm backward pass needs: the input and the batch statistics.
#[derive(Clone)]
struct NormSaved {
    x: FlexTensor,
    gamma: Vec<f32>,
    mean: Vec<f32>,
    variance: Vec<f32>,
    epsilon: f64,
}

impl std::fmt::Debug for NormSaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NormSaved")
            .field("channels", &self.gamma.len())
            .finish_non_exhaustive()
    }
}

impl Backward<Flex, 3> for BatchNormBackward {
    type State = NormSaved;

    fn backward(self, ops: Ops<NormSaved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let saved = ops.state;
        let dims = norm_dims(&saved.x);
        let shape = saved.x.layout().shape().to_vec();
        let (dx, dgamma, dbeta, last) = match channels_last_values(&saved.x) {
            Some(x) => {
                // The gradient in the input's layout (it usually is: the next block's input
                // gradient; the last block's comes channels-first from the pooling head).
                let dy = channels_last_or_transposed(&grad, dims);
                let (dx, dg, db) = norm_kernels::train_backward_channels_last(
                    x,
                    &dy,
                    dims.1,
                    &saved.gamma,
                    &saved.mean,
                    &saved.variance,
                    saved.epsilon,
                );
                (dx, dg, db, true)
            }
            None => {
                let (dx, dg, db) = norm_kernels::train_backward(
                    values(&saved.x),
                    values(&contiguous(&grad)),
                    dims,
                    &saved.gamma,
                    &saved.mean,
                    &saved.variance,
                    saved.epsilon,
                );
                (dx, dg, db, false)
            }
        };
        if let Some(node) = node_x {
            let dx = if last {
                channels_last_tensor(dx, &shape)
            } else {
                tensor(dx, &shape)
            };
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(dgamma, &[dims.1]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(dbeta, &[dims.1]));
        }
    }
}

impl<C: CheckpointStrategy> FusedConvBackend for Autodiff<Flex, C> {
    fn fused_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = if channels_last_values(x.primitive()).is_some() {
                    x.primitive().clone()
                } else {
                    contiguous(x.primitive())
                };
                let gamma_values = values(&contiguous(gamma.primitive())).to_vec();
                let (output, mean, variance) = Flex::fused_batch_norm_train(
                    input.clone(),
                    gamma.primitive().clone(),
                    beta.primitive().clone(),
                    epsilon,
                );
                let saved = NormSaved {
                    x: input,
                    gamma: gamma_values,
                    mean: values(&mean).to_vec(),
                    variance: values(&variance).to_vec(),
                    epsilon,
                };
                (
                    prep.finish(saved, output),
                    <Self as AutodiffBackend>::from_inner(mean),
                    <Self as AutodiffBackend>::from_inner(variance),
                )
            }
            OpsKind::UnTracked(prep) => {
                let (output, mean, variance) = Flex::fused_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    epsilon,
                );
                (
                    prep.finish(output),
                    <Self as AutodiffBackend>::from_inner(mean),
                    <Self as AutodiffBackend>::from_inner(variance),
                )
            }
        }
    }

    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        // With autodiff, burn's composed (differentiable) version.
        <Self as ModuleOps<Self>>::batch_norm(x, gamma, beta, mean, variance, epsilon)
    }

    fn conv3d_relu_max_pool3d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match FusedConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let operands = Operands::new(x.primitive(), weight.primitive(), bias.primitive());
                let (pooled, argmax) = fused_conv::forward(
                    &operands.shape,
                    &operands.input,
                    &operands.weights,
                    &operands.bias,
                    true,
                );
                let output = operands.output(pooled);
                let saved = Saved {
                    shape: operands.shape,
                    input: Arc::new(operands.input),
                    weights: Arc::new(operands.weights),
                    argmax: Arc::new(argmax.expect("forward keeps the arg-max when asked")),
                };
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv3d_relu_max_pool3d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }
}
