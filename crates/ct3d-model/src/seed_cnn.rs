//! The seed's 3D CNN ("3dcnn" in the Keras example), layer for layer: [`ModelConfig`] →
//! [`Model`], its Keras layer names in weights files and its `model.summary()` rows.
//!
//! ```text
//! input [batch, 1, W, H, D]
//! 4 × ( Conv3D(k=3, valid) + ReLU → MaxPool3D(2) → BatchNormalization )   filters 64, 64, 128, 256
//! GlobalAveragePooling3D → Dense(512) + ReLU → Dropout(0.3) → Dense(1)    logits
//! ```
//!
//! The network returns logits; the sigmoid is applied where probabilities are wanted
//! ([`crate::train_step::predict_proba`]) and the loss works on logits for stability.
//!
//! Keras's defaults are reproduced rather than burn's: glorot-uniform kernels with Keras's fans
//! (`fan_in = k³·in`, `fan_out = k³·out` for `Conv3D`), zero biases, BatchNorm with epsilon 1e-3
//! and Keras momentum 0.99 (burn's `momentum` weighs the *new* batch, so it is set to
//! `1 − 0.99`), gamma 1, beta 0, moving mean 0, moving variance 1. Initial values come from the
//! crate's own generator seeded by a `u64`, so two models built with the same seed are
//! bit-identical on every device.
//!
//! Axis order: our `[x, y, z]` (nibabel's `get_fdata()` order) is Keras's `(W, H, D)`; burn is
//! channels-first, so the input is `[batch, 1, x, y, z]` where Keras has `(batch, x, y, z, 1)`.

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::architecture::{Classifier, Dropout};
use crate::ops;
use crate::resnet::ResNetParams;
use crate::summary::{SummaryRow, SummaryTable};
use crate::weights::{Layout, ParamName};
use ct3d_volume::preprocess::DEFAULT_SIZE;
use ct3d_volume::rng::SplitMix64;

/// Side of every convolution kernel (Keras `kernel_size=3`).
pub const KERNEL: usize = 3;
/// Keras BatchNormalization default epsilon.
pub const BATCH_NORM_EPSILON: f64 = 1e-3;
/// Keras BatchNormalization default momentum (weight of the old moving statistic).
pub const KERAS_BATCH_NORM_MOMENTUM: f64 = 0.99;

/// The network's hyper-parameters apart from its input size: what a run records under `model`
/// in `config.json`. A run's input size is its preprocessing size, one value, so the two are
/// joined only when the network is built ([`ModelParams::at`]). [`Default`] is the seed's model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    /// Filters of each Conv3D block, in order; one block per entry.
    pub filters: Vec<usize>,
    /// Units of the hidden dense layer.
    pub dense: usize,
    /// Dropout rate after the hidden dense layer, in `[0, 1)`.
    pub dropout: f64,
    /// BatchNormalization momentum in Keras's convention: the weight of the old moving statistic
    /// at each training step, in `[0, 1)` (Keras and the seed: 0.99). The moving statistics
    /// forget their start (mean 0, variance 1) as `momentum^steps`, so a short run needs a lower
    /// value to predict with statistics that match its weights.
    #[serde(default = "keras_batch_norm_momentum")]
    pub batch_norm_momentum: f64,
    /// The ResNets' own settings (stage widths, shortcut type); recorded only by ResNet runs,
    /// absent (and [`ResNetParams::default`] when a ResNet is built) otherwise. The seed CNN
    /// ignores it; the ResNets ignore `filters`, `dense` and `dropout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resnet: Option<ResNetParams>,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            filters: vec![64, 64, 128, 256],
            dense: 512,
            dropout: 0.3,
            batch_norm_momentum: KERAS_BATCH_NORM_MOMENTUM,
            resnet: None,
        }
    }
}

impl ModelParams {
    /// The network for inputs of `input` = `[x, y, z]` voxels.
    pub fn at(&self, input: [usize; 3]) -> ModelConfig {
        let ModelParams {
            filters,
            dense,
            dropout,
            batch_norm_momentum,
            resnet,
        } = self.clone();
        ModelConfig {
            input,
            filters,
            dense,
            dropout,
            batch_norm_momentum,
            resnet,
        }
    }
}

/// A network of fixed input size: [`ModelParams`] with `input`. [`Default`] is the seed's model
/// on the seed's [`DEFAULT_SIZE`] volumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Input volume size `[x, y, z]` in voxels (the seed's `width, height, depth`).
    pub input: [usize; 3],
    /// As [`ModelParams::filters`].
    pub filters: Vec<usize>,
    /// As [`ModelParams::dense`].
    pub dense: usize,
    /// As [`ModelParams::dropout`].
    pub dropout: f64,
    /// As [`ModelParams::batch_norm_momentum`].
    #[serde(default = "keras_batch_norm_momentum")]
    pub batch_norm_momentum: f64,
    /// As [`ModelParams::resnet`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resnet: Option<ResNetParams>,
}

fn keras_batch_norm_momentum() -> f64 {
    KERAS_BATCH_NORM_MOMENTUM
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelParams::default().at(DEFAULT_SIZE)
    }
}

/// An invalid model configuration or a tensor that does not fit the model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// An input axis is too small to survive every conv + pool block.
    #[error(
        "input size {}×{}×{} is too small for {blocks} conv blocks: every axis needs at least {min} voxels",
        size[0], size[1], size[2]
    )]
    InputTooSmall {
        /// The configured input size `[x, y, z]`.
        size: [usize; 3],
        /// Number of conv blocks.
        blocks: usize,
        /// Smallest size per axis that leaves one voxel after the last block.
        min: usize,
    },
    /// The filter list is empty or contains a zero.
    #[error("filters must be a non-empty list of positive counts, got {0:?}")]
    BadFilters(Vec<usize>),
    /// The hidden dense layer has no units.
    #[error("the dense layer needs at least one unit")]
    NoDenseUnits,
    /// The dropout rate is not in `[0, 1)`.
    #[error("dropout rate must be in [0, 1), got {0}")]
    BadDropout(f64),
    /// The BatchNorm momentum is not in `[0, 1)`.
    #[error("batch-norm momentum must be in [0, 1), got {0}")]
    BadMomentum(f64),
    /// A batch tensor's shape does not match the model.
    #[error("input batch has shape {actual:?} but the model expects [batch, 1, {}, {}, {}]", expected[0], expected[1], expected[2])]
    BatchShape {
        /// The configured input size `[x, y, z]`.
        expected: [usize; 3],
        /// The tensor's shape.
        actual: [usize; 5],
    },
    /// A host buffer does not hold exactly a non-empty batch of volumes.
    #[error(
        "batch buffer holds {actual} values, expected {expected} (a non-empty whole number of volumes)"
    )]
    BufferLength {
        /// `batch · x · y · z`.
        expected: usize,
        /// Values in the buffer.
        actual: usize,
    },
    /// The number of labels differs from the batch size.
    #[error("{labels} labels for a batch of {batch} volumes")]
    LabelCount {
        /// Batch size of the input tensor.
        batch: usize,
        /// Number of labels given.
        labels: usize,
    },
    /// Shortcut A pads channels with zeros, so it cannot shrink them.
    #[error(
        "stage {stage} of the ResNet maps {in_channels} channels to {out_channels}: shortcut A only adds channels; use shortcut B or growing widths"
    )]
    ShortcutChannels {
        /// Stage `1..=4`.
        stage: usize,
        /// Channels into the stage's first block.
        in_channels: usize,
        /// Channels out of it.
        out_channels: usize,
    },
    /// Training needs parameters on an autodiff device.
    #[error(
        "the model is not on an autodiff device; build it on `device.autodiff()` (or call `.train()`) to train"
    )]
    NotTrainable,
    /// Explanation settings that do not fit the network (an occlusion patch larger than the
    /// input, a block index out of range).
    #[error("{0}")]
    Explain(String),
}

/// Parameter counts as Keras's `model.summary()` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCounts {
    /// All weights, including BatchNorm moving statistics.
    pub total: usize,
    /// Weights the optimizer updates.
    pub trainable: usize,
    /// BatchNorm moving means and variances.
    pub non_trainable: usize,
}

/// Spatial sizes `[x, y, z]` through one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockShape {
    /// Channels produced by the block's convolution.
    pub filters: usize,
    /// After the valid 3×3×3 convolution.
    pub conv: [usize; 3],
    /// After 2×2×2 max pooling (BatchNorm keeps it).
    pub pooled: [usize; 3],
}

impl ModelConfig {
    /// Smallest input size per axis for this many blocks: each block maps `s` to `(s − 2) / 2`,
    /// which must stay ≥ 1 (46 for the seed's four blocks).
    pub fn min_input_size(&self) -> usize {
        (0..self.filters.len()).fold(1, |after, _| 2 * after + KERNEL - 1)
    }

    /// The hyper-parameters without the input size.
    pub fn params(&self) -> ModelParams {
        ModelParams {
            filters: self.filters.clone(),
            dense: self.dense,
            dropout: self.dropout,
            batch_norm_momentum: self.batch_norm_momentum,
            resnet: self.resnet.clone(),
        }
    }

    /// The ResNet settings, [`ResNetParams::default`] where none are recorded.
    pub fn resnet_params(&self) -> ResNetParams {
        self.resnet.clone().unwrap_or_default()
    }

    /// Checks every hyper-parameter; all other methods assume a valid configuration.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.filters.is_empty() || self.filters.contains(&0) {
            return Err(ModelError::BadFilters(self.filters.clone()));
        }
        if self.dense == 0 {
            return Err(ModelError::NoDenseUnits);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::BadDropout(self.dropout));
        }
        if !(0.0..1.0).contains(&self.batch_norm_momentum) {
            return Err(ModelError::BadMomentum(self.batch_norm_momentum));
        }
        let min = self.min_input_size();
        if self.input.iter().any(|&side| side < min) {
            return Err(ModelError::InputTooSmall {
                size: self.input,
                blocks: self.filters.len(),
                min,
            });
        }
        Ok(())
    }

    /// Output sizes of each conv block for [`ModelConfig::input`].
    pub fn block_shapes(&self) -> Vec<BlockShape> {
        let mut size = self.input;
        self.filters
            .iter()
            .map(|&filters| {
                let conv = size.map(|side| side + 1 - KERNEL);
                let pooled = conv.map(|side| side / 2);
                size = pooled;
                BlockShape {
                    filters,
                    conv,
                    pooled,
                }
            })
            .collect()
    }

    /// Parameter counts, computed from the configuration alone (no tensors).
    pub fn param_counts(&self) -> ParamCounts {
        let mut trainable = 0;
        let mut non_trainable = 0;
        let mut in_channels = 1;
        for &filters in &self.filters {
            trainable += KERNEL.pow(3) * in_channels * filters + filters; // kernel + bias
            trainable += 2 * filters; // gamma, beta
            non_trainable += 2 * filters; // moving mean, moving variance
            in_channels = filters;
        }
        trainable += in_channels * self.dense + self.dense;
        trainable += self.dense + 1;
        ParamCounts {
            total: trainable + non_trainable,
            trainable,
            non_trainable,
        }
    }

    /// Builds the model on `device` with weights drawn from `seed`.
    ///
    /// Use `device.autodiff()` to train; a plain device gives an inference-only model. Only the
    /// parameters are allocated (5.4 MB for the seed's model), whatever the input size.
    pub fn init(&self, device: &Device, seed: u64) -> Result<Model, ModelError> {
        self.validate()?;
        let mut rng = SplitMix64::new(seed);
        let mut in_channels = 1;
        let blocks = self
            .filters
            .iter()
            .map(|&filters| {
                let block = ConvBlock {
                    conv: Conv3dLayer::glorot(in_channels, filters, &mut rng, device),
                    norm: BatchNormConfig::new(filters)
                        .with_epsilon(BATCH_NORM_EPSILON)
                        .with_momentum(1.0 - self.batch_norm_momentum)
                        .init(device),
                };
                in_channels = filters;
                block
            })
            .collect();
        Ok(Model {
            blocks,
            dense: glorot_linear(in_channels, self.dense, &mut rng, device),
            output: glorot_linear(self.dense, 1, &mut rng, device),
            config: self.clone(),
        })
    }
}

/// The network. Build it with [`ModelConfig::init`].
#[derive(Module, Debug)]
pub struct Model {
    blocks: Vec<ConvBlock>,
    dense: Linear,
    output: Linear,
    #[module(skip)]
    config: ModelConfig,
}

/// Conv3D + ReLU → MaxPool3D(2) → BatchNormalization.
#[derive(Module, Debug)]
struct ConvBlock {
    conv: Conv3dLayer,
    norm: BatchNorm,
}

/// A valid, stride-1 3D convolution whose call goes through [`crate::ops`].
#[derive(Module, Debug)]
struct Conv3dLayer {
    /// `[out_channels, in_channels, 3, 3, 3]`
    weight: Param<Tensor<5>>,
    /// `[out_channels]`
    bias: Param<Tensor<1>>,
}

impl Conv3dLayer {
    fn glorot(
        in_channels: usize,
        out_channels: usize,
        rng: &mut SplitMix64,
        device: &Device,
    ) -> Self {
        let receptive = KERNEL.pow(3);
        let limit = glorot_limit(receptive * in_channels, receptive * out_channels);
        let shape = [out_channels, in_channels, KERNEL, KERNEL, KERNEL];
        let values = uniform_vec(rng, shape.iter().product(), limit);
        Self {
            weight: param(values, shape, device),
            bias: param(vec![0.0; out_channels], [out_channels], device),
        }
    }

    /// The convolution alone (tests check its shape; the model calls the fused block).
    #[cfg(test)]
    fn forward(&self, input: Tensor<5>) -> Tensor<5> {
        ops::conv3d_valid(input, self.weight.val(), self.bias.val())
    }
}

impl ConvBlock {
    /// `[batch, in, x, y, z]` → `[batch, filters, (x − 2) / 2, (y − 2) / 2, (z − 2) / 2]`.
    fn forward(&self, input: Tensor<5>) -> Tensor<5> {
        // relu(conv) → [batch, filters, x − 2, y − 2, z − 2], pooled to
        // [batch, filters, (x − 2) / 2, (y − 2) / 2, (z − 2) / 2]
        let x = ops::conv3d_relu_max_pool3d(input, self.conv.weight.val(), self.conv.bias.val());
        ops::batch_norm(&self.norm, x) // same shape
    }
}

impl Model {
    /// Appends this network's inference-mode nodes to `graph` after the value `input`
    /// (`[N, 1, x, y, z]`) and returns the logit's value name (`[N, 1]`): per block Conv (valid)
    /// → Relu → MaxPool 2 → BatchNormalization, then GlobalAveragePool, Gemm → Relu (dropout is
    /// the identity at inference) → Gemm. Mirrors [`Model::forward`].
    pub(crate) fn to_onnx(&self, graph: &mut crate::onnx::Graph, input: &str) -> String {
        let mut x = input.to_owned();
        for (i, block) in self.blocks.iter().enumerate() {
            let name = format!("block{}", i + 1);
            let conv = graph.conv(
                &x,
                &format!("{name}.conv"),
                &block.conv.weight,
                Some(&block.conv.bias),
                1,
                0,
            );
            let activated = graph.op("Relu", &[&conv], vec![]);
            let pooled = graph.max_pool(&activated, 2, 2, 0);
            x = graph.batch_norm(&pooled, &format!("{name}.norm"), &block.norm);
        }
        let features = graph.global_average(&x);
        let dense = graph.dense(
            &features,
            "dense",
            &self.dense.weight,
            self.dense.bias.as_ref(),
            false,
        );
        let activated = graph.op("Relu", &[&dense], vec![]);
        graph.dense(
            &activated,
            "output",
            &self.output.weight,
            self.output.bias.as_ref(),
            false,
        )
    }
}

/// Global average pooling: `[batch, channels, sx, sy, sz]` → `[batch, channels]`
/// (`[batch, 256, 6, 6, 2]` → `[batch, 256]` for the seed).
pub(crate) fn global_average(x: Tensor<5>) -> Tensor<2> {
    let [batch, channels, sx, sy, sz] = x.dims();
    let voxels = x.reshape([batch, channels, sx * sy * sz]); // [batch, 256, 72]
    voxels.mean_dim(2).reshape([batch, channels]) // [batch, 256]
}

/// Keras `glorot_uniform`: U(−l, l) with `l = sqrt(6 / (fan_in + fan_out))`.
fn glorot_limit(fan_in: usize, fan_out: usize) -> f32 {
    (6.0 / (fan_in + fan_out) as f64).sqrt() as f32
}

/// Keras `Dense`: kernel `[in, out]` (burn's row layout, the same as Keras's), zero bias.
/// `len` values uniform in `[-limit, limit)` (24-bit resolution, exact in `f32`).
fn uniform_vec(rng: &mut SplitMix64, len: usize, limit: f32) -> Vec<f32> {
    (0..len)
        .map(|_| (2.0 * rng.next_f32() - 1.0) * limit)
        .collect()
}

fn glorot_linear(inputs: usize, outputs: usize, rng: &mut SplitMix64, device: &Device) -> Linear {
    let values = uniform_vec(rng, inputs * outputs, glorot_limit(inputs, outputs));
    Linear {
        weight: param(values, [inputs, outputs], device),
        bias: Some(param(vec![0.0; outputs], [outputs], device)),
    }
}

fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

impl Model {
    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Logits without dropout. BatchNorm uses batch statistics (and updates its moving ones)
    /// when the model is on an autodiff device in training mode, moving statistics otherwise
    /// (e.g. after [`Module::valid`]).
    ///
    /// # Shapes
    /// - `input`: `[batch, 1, x, y, z]`, the configured input size
    /// - output: `[batch, 1]`
    pub fn forward(&self, input: Tensor<5>) -> Tensor<2> {
        self.head(self.features(input), None)
    }

    /// Logits with dropout applied through `keep_mask` (`[batch, dense]`, each entry `0` or
    /// `1 / (1 − rate)`, as Keras's inverted dropout).
    pub(crate) fn forward_with_dropout(&self, input: Tensor<5>, keep_mask: Tensor<2>) -> Tensor<2> {
        self.head(self.features(input), Some(keep_mask))
    }

    /// The four blocks and global average pooling. For the seed's 128×128×64 input:
    ///
    /// | after   | shape                      |
    /// |---------|----------------------------|
    /// | input   | `[batch, 1, 128, 128, 64]` |
    /// | conv    | `[batch, 64, 126, 126, 62]`|
    /// | block 1 | `[batch, 64, 63, 63, 31]`  |
    /// | block 2 | `[batch, 64, 30, 30, 14]`  |
    /// | block 3 | `[batch, 128, 14, 14, 6]`  |
    /// | block 4 | `[batch, 256, 6, 6, 2]`    |
    /// | GAP     | `[batch, 256]`             |
    fn features(&self, input: Tensor<5>) -> Tensor<2> {
        let mut x = input; // [batch, 1, 128, 128, 64]
        for block in &self.blocks {
            x = block.forward(x); // [batch, 64, 63, 63, 31] … [batch, 256, 6, 6, 2]
        }
        global_average(x)
    }

    fn head(&self, features: Tensor<2>, keep_mask: Option<Tensor<2>>) -> Tensor<2> {
        let x = relu(self.dense.forward(features)); // [batch, 512]
        let x = match keep_mask {
            Some(mask) => x * mask, // [batch, 512]
            None => x,
        };
        self.output.forward(x) // [batch, 1]
    }

    /// The globally pooled features feeding the dense head, `[batch, last filters]` (256 for the
    /// seed), in the model's current mode. Exposed so that two devices or two implementations
    /// can be compared on more than the single output logit.
    pub fn embedding(&self, input: Tensor<5>) -> Tensor<2> {
        self.features(input)
    }

    /// Whether the parameters live on an autodiff device (required to train).
    pub fn is_trainable(&self) -> bool {
        self.output.weight.val().is_autodiff()
    }

    /// Checks that `input` is `[batch ≥ 1, 1, x, y, z]` with the configured size.
    pub fn check_input(&self, input: &Tensor<5>) -> Result<usize, ModelError> {
        Classifier::check_input(self, input)
    }
}

impl Classifier for Model {
    fn input_size(&self) -> [usize; 3] {
        self.config.input
    }

    fn forward(&self, input: Tensor<5>) -> Tensor<2> {
        Model::forward(self, input)
    }

    fn forward_with_dropout(&self, input: Tensor<5>, keep_mask: Tensor<2>) -> Tensor<2> {
        Model::forward_with_dropout(self, input, keep_mask)
    }

    fn embedding(&self, input: Tensor<5>) -> Tensor<2> {
        Model::embedding(self, input)
    }

    fn dropout(&self) -> Option<Dropout> {
        Some(Dropout {
            units: self.config.dense,
            rate: self.config.dropout,
        })
    }

    fn layer_names(&self) -> Vec<String> {
        (1..=self.blocks.len())
            .map(|i| format!("block{i}"))
            .collect()
    }

    fn forward_to(&self, layer: usize, input: Tensor<5>) -> Tensor<5> {
        let mut x = input;
        for block in &self.blocks[..=layer] {
            x = block.forward(x);
        }
        x
    }

    fn layer_placement(&self, layer: usize) -> (f64, f64) {
        // A block maps input centre c to 2c + 1.5 (valid 3³ convolution: +1; 2³ pooling of
        // outputs 2j and 2j + 1: 2j + 0.5), so after k blocks j sits at 2ᵏ·j + 1.5·(2ᵏ − 1).
        let scale = f64::from(1u32 << (layer + 1).min(31));
        (scale, 1.5 * (scale - 1.0))
    }

    fn forward_from(&self, layer: usize, activation: Tensor<5>) -> Tensor<2> {
        let mut x = activation;
        for block in &self.blocks[layer + 1..] {
            x = block.forward(x);
        }
        self.head(global_average(x), None)
    }

    fn is_trainable(&self) -> bool {
        Model::is_trainable(self)
    }

    fn batch_norms(&self) -> Vec<&BatchNorm> {
        self.blocks.iter().map(|block| &block.norm).collect()
    }

    fn param_name(module_path: &str) -> Option<ParamName> {
        keras_name(module_path).map(|name| ParamName {
            // Moving statistics are the only weights Keras does not train.
            trainable: !name.contains("/moving_"),
            name,
            layout: Layout::Keras,
        })
    }

    fn is_head(module_path: &str) -> bool {
        module_path.starts_with("dense.") || module_path.starts_with("output.")
    }
}

/// The Keras name of the parameter at a burn module path such as `blocks.1.norm.running_var`
/// (`batch_normalization_1/moving_variance`); `None` for a path outside [`Model`].
fn keras_name(module_path: &str) -> Option<String> {
    let parts: Vec<&str> = module_path.split('.').collect();
    match parts.as_slice() {
        ["blocks", index, layer, field] => {
            let suffix = index.parse::<usize>().ok().map(keras_suffix);
            let names = match (*layer, *field) {
                ("conv", "weight") => Some(("conv3d", "kernel")),
                ("conv", "bias") => Some(("conv3d", "bias")),
                ("norm", "gamma") => Some(("batch_normalization", "gamma")),
                ("norm", "beta") => Some(("batch_normalization", "beta")),
                ("norm", "running_mean") => Some(("batch_normalization", "moving_mean")),
                ("norm", "running_var") => Some(("batch_normalization", "moving_variance")),
                _ => None,
            };
            suffix
                .zip(names)
                .map(|(suffix, (layer, field))| format!("{layer}{suffix}/{field}"))
        }
        [layer @ ("dense" | "output"), field @ ("weight" | "bias")] => {
            let layer = if *layer == "dense" {
                "dense"
            } else {
                "dense_1"
            };
            let field = if *field == "weight" { "kernel" } else { "bias" };
            Some(format!("{layer}/{field}"))
        }
        _ => None,
    }
}

/// Keras's layer-name suffix for the `index`-th layer of a type: "", "_1", "_2", …
pub(crate) fn keras_suffix(index: usize) -> String {
    match index {
        0 => String::new(),
        n => format!("_{n}"),
    }
}

/// Keras's `model.summary()` table for `config`: layer names and types, output shapes in
/// Keras's channels-last `(None, x, y, z, channels)` form, parameter counts. Computed from the
/// configuration alone; sizes of an invalid configuration are printed as computed.
pub fn summary_table(config: &ModelConfig) -> SummaryTable {
    let shape = |size: [usize; 3], channels: usize| {
        format!("(None, {}, {}, {}, {channels})", size[0], size[1], size[2])
    };
    let row = |layer: String, output: String, params: usize| SummaryRow {
        layer,
        output,
        params,
    };
    let mut rows = Vec::new();
    let [x, y, z] = config.input;
    rows.push(row(
        "input_1 (InputLayer)".to_owned(),
        format!("[(None, {x}, {y}, {z}, 1)]"),
        0,
    ));
    let mut in_channels = 1;
    for (index, block) in config.block_shapes().iter().enumerate() {
        let suffix = keras_suffix(index);
        let filters = block.filters;
        rows.push(row(
            format!("conv3d{suffix} (Conv3D)"),
            shape(block.conv, filters),
            KERNEL.pow(3) * in_channels * filters + filters,
        ));
        rows.push(row(
            format!("max_pooling3d{suffix} (MaxPooling3D)"),
            shape(block.pooled, filters),
            0,
        ));
        rows.push(row(
            format!("batch_normalization{suffix} (BatchNormalization)"),
            shape(block.pooled, filters),
            4 * filters,
        ));
        in_channels = filters;
    }
    rows.push(row(
        "global_average_pooling3d (GlobalAveragePooling3D)".to_owned(),
        format!("(None, {in_channels})"),
        0,
    ));
    rows.push(row(
        "dense (Dense)".to_owned(),
        format!("(None, {})", config.dense),
        in_channels * config.dense + config.dense,
    ));
    rows.push(row(
        "dropout (Dropout)".to_owned(),
        format!("(None, {})", config.dense),
        0,
    ));
    rows.push(row(
        "dense_1 (Dense)".to_owned(),
        "(None, 1)".to_owned(),
        config.dense + 1,
    ));
    SummaryTable {
        title: "3dcnn".to_owned(),
        rows,
        counts: config.param_counts(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_names_for_module_paths() {
        assert_eq!(keras_name("blocks.0.conv.weight").unwrap(), "conv3d/kernel");
        assert_eq!(keras_name("blocks.3.conv.bias").unwrap(), "conv3d_3/bias");
        assert_eq!(
            keras_name("blocks.1.norm.running_var").unwrap(),
            "batch_normalization_1/moving_variance"
        );
        assert_eq!(keras_name("dense.weight").unwrap(), "dense/kernel");
        assert_eq!(keras_name("output.bias").unwrap(), "dense_1/bias");
        for unknown in [
            "blocks.x.conv.weight",
            "blocks.0.pool.weight",
            "head.weight",
            "",
        ] {
            assert_eq!(keras_name(unknown), None, "{unknown}");
        }
        let moving = Model::param_name("blocks.2.norm.running_mean").unwrap();
        assert!(!moving.trainable);
        assert!(Model::param_name("blocks.2.norm.gamma").unwrap().trainable);
    }

    #[test]
    fn every_block_produces_the_configured_shape() {
        let config = ModelConfig {
            input: [47, 62, 46],
            filters: vec![2, 3, 4, 5],
            dense: 4,
            dropout: 0.3,
            ..ModelConfig::default()
        };
        let device = Device::flex();
        let model = config.init(&device, 3).unwrap();
        let mut x = Tensor::<5>::zeros([2, 1, 47, 62, 46], &device);
        for (block, expected) in model.blocks.iter().zip(config.block_shapes()) {
            let conv = block.conv.forward(x.clone());
            let [_, _, cx, cy, cz] = conv.dims();
            assert_eq!([cx, cy, cz], expected.conv);
            x = block.forward(x);
            let [batch, channels, px, py, pz] = x.dims();
            assert_eq!([batch, channels], [2, expected.filters]);
            assert_eq!([px, py, pz], expected.pooled);
        }
        assert_eq!(config.block_shapes()[3].pooled, [1, 2, 1]);
        assert_eq!(
            model
                .forward(Tensor::zeros([2, 1, 47, 62, 46], &device))
                .dims(),
            [2, 1]
        );
    }

    #[test]
    fn seed_block_shapes_without_tensors() {
        let shapes = ModelConfig::default().block_shapes();
        let conv: Vec<[usize; 3]> = shapes.iter().map(|s| s.conv).collect();
        let pooled: Vec<[usize; 3]> = shapes.iter().map(|s| s.pooled).collect();
        assert_eq!(
            conv,
            [[126, 126, 62], [61, 61, 29], [28, 28, 12], [12, 12, 4]]
        );
        assert_eq!(pooled, [[63, 63, 31], [30, 30, 14], [14, 14, 6], [6, 6, 2]]);
    }

    #[test]
    fn glorot_limits_and_keras_constants() {
        let config = ModelConfig {
            input: [46, 46, 46],
            filters: vec![8, 8, 8, 8],
            dense: 16,
            dropout: 0.3,
            ..ModelConfig::default()
        };
        let model = config.init(&Device::flex(), 11).unwrap();
        let conv_limit = (6.0f64 / (27.0 * 1.0 + 27.0 * 8.0)).sqrt() as f32;
        let kernel = model.blocks[0]
            .conv
            .weight
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(kernel.iter().all(|v| v.abs() <= conv_limit));
        // 216 draws from U(−l, l): the largest should come close to the limit.
        assert!(kernel.iter().any(|v| v.abs() > 0.8 * conv_limit));
        let bias = model.blocks[0]
            .conv
            .bias
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(bias.iter().all(|&v| v == 0.0));
        let dense_limit = (6.0f64 / (8.0 + 16.0)).sqrt() as f32;
        let dense = model
            .dense
            .weight
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(dense.iter().all(|v| v.abs() <= dense_limit));
        let norm = &model.blocks[2].norm;
        assert_eq!(norm.epsilon, 1e-3);
        assert!((norm.momentum - 0.01).abs() < 1e-12);
        let gamma = norm
            .gamma
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let var = norm
            .running_var
            .value()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let mean = norm
            .running_mean
            .value()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(gamma.iter().chain(&var).all(|&v| v == 1.0));
        assert!(mean.iter().all(|&v| v == 0.0));
    }

    /// Keras: `moving = moving·0.99 + batch·0.01`, with the biased batch variance of the
    /// block's pooled activations over batch and voxels.
    #[test]
    fn moving_statistics_follow_keras_momentum() {
        let config = ModelConfig {
            input: [46, 46, 46],
            filters: vec![3, 2, 2, 2],
            dense: 4,
            dropout: 0.3,
            ..ModelConfig::default()
        };
        let device = Device::flex().autodiff();
        let model = config.init(&device, 8).unwrap();
        let values: Vec<f32> = (0..2 * 46 * 46 * 46)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let input = Tensor::<5>::from_data(TensorData::new(values, [2, 1, 46, 46, 46]), &device);

        let before = model.valid();
        let pooled = ops::max_pool3d_2(relu(before.blocks[0].conv.forward(input.clone().inner())));
        let [batch, channels, px, py, pz] = pooled.dims();
        let pooled = pooled.into_data().try_into_vec_as::<f32>().unwrap();
        let per_sample = px * py * pz;

        let mut optimizer = crate::train_step::Adam::new(Default::default());
        let outcome =
            crate::train_step::train_step(model, &mut optimizer, input, &[0.0, 1.0], 1e-3, 0)
                .unwrap();
        let norm = &outcome.model.blocks[0].norm;
        let moving_mean = norm
            .running_mean
            .value()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let moving_var = norm
            .running_var
            .value()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();

        for c in 0..channels {
            let samples: Vec<f64> = (0..batch)
                .flat_map(|n| {
                    let start = (n * channels + c) * per_sample;
                    pooled[start..start + per_sample]
                        .iter()
                        .map(|&v| f64::from(v))
                })
                .collect();
            let mean = samples.iter().sum::<f64>() / samples.len() as f64;
            let var =
                samples.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / samples.len() as f64;
            let expected_mean = 0.99 * 0.0 + 0.01 * mean;
            let expected_var = 0.99 * 1.0 + 0.01 * var;
            assert!(
                (f64::from(moving_mean[c]) - expected_mean).abs() < 1e-6,
                "channel {c} mean"
            );
            assert!(
                (f64::from(moving_var[c]) - expected_var).abs() < 1e-6,
                "channel {c} variance"
            );
        }
    }

    #[test]
    fn invalid_configurations_are_typed_errors() {
        let small = ModelConfig {
            input: [128, 45, 64],
            ..ModelConfig::default()
        };
        assert_eq!(small.min_input_size(), 46);
        assert_eq!(
            small.validate().unwrap_err().to_string(),
            "input size 128×45×64 is too small for 4 conv blocks: every axis needs at least 46 voxels"
        );
        let two_blocks = ModelConfig {
            input: [10, 10, 10],
            filters: vec![4, 4],
            ..ModelConfig::default()
        };
        assert_eq!(two_blocks.min_input_size(), 10);
        assert!(two_blocks.validate().is_ok());
        let cases = [
            ModelConfig {
                filters: vec![],
                ..ModelConfig::default()
            },
            ModelConfig {
                filters: vec![4, 0],
                ..ModelConfig::default()
            },
            ModelConfig {
                dense: 0,
                ..ModelConfig::default()
            },
            ModelConfig {
                dropout: 1.0,
                ..ModelConfig::default()
            },
            ModelConfig {
                dropout: -0.1,
                ..ModelConfig::default()
            },
            ModelConfig {
                batch_norm_momentum: 1.0,
                ..ModelConfig::default()
            },
            ModelConfig {
                batch_norm_momentum: f64::NAN,
                ..ModelConfig::default()
            },
        ];
        for config in cases {
            assert!(config.init(&Device::flex(), 0).is_err(), "{config:?}");
        }
    }
}
