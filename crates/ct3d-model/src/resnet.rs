//! 3D ResNets in MedicalNet's layout (Tencent MedicalNet; MONAI's `monai.networks.nets.resnet`
//! is the reference this module is checked against): ResNet-10/18/34 with basic blocks and
//! ResNet-50 with bottleneck blocks, one input channel and one output logit.
//!
//! ```text
//! input [batch, 1, x, y, z]
//! conv1 7×7×7 stride 2 pad 3 (no bias) → bn1 → ReLU → max-pool 3×3×3 stride 2 pad 1
//! layer1 (stride 1) → layer2 (stride 2) → layer3 (stride 2) → layer4 (stride 2)
//! global average pooling → fc (one logit)
//! ```
//!
//! MONAI builds the same network with `resnet18(spatial_dims=3, n_input_channels=1,
//! num_classes=1, conv1_t_size=7, conv1_t_stride=2, shortcut_type=…, bias_downsample=False)`
//! (`bias_downsample=True` is [`ResNetParams::downsample_bias`]); stage widths are MONAI's
//! `block_inplanes` ([`ResNetParams::widths`]).
//!
//! Parameters carry PyTorch's names and shapes (`layer1.0.bn1.running_mean`, kernels
//! `[out, in, kx, ky, kz]`, the head `[1, features]`), so a PyTorch state dict loads without a
//! transpose ([`crate::pytorch`]) and ct3d's weights files for this network use the same names.
//!
//! # Numerics
//! - BatchNorm uses PyTorch's epsilon 1e-5 (a model's outputs depend on it, so pretrained weights
//!   need it). Its momentum is the run's [`ModelConfig::batch_norm_momentum`] in Keras's
//!   convention (PyTorch's default 0.1 is 0.9 there), and burn updates the moving variance with
//!   the biased batch variance where PyTorch uses the unbiased one: training differs from
//!   PyTorch's in that detail, inference (moving statistics) does not.
//! - Shortcut A subsamples by the block's stride and pads the missing channels with zeros, as
//!   MONAI does. MONAI's version also cuts the gradient through that shortcut (it concatenates
//!   `out.data`); here the gradient flows through the kept channels, as in the original ResNet's
//!   option A. Forward values are identical.
//! - Fresh weights follow MONAI: convolution kernels from a normal with standard deviation
//!   `sqrt(2 / (out · k³))` (He, fan-out), BatchNorm weight 1 and bias 0, the head's weight
//!   uniform in `±1 / sqrt(features)` (PyTorch's `Linear` default) and its bias 0; the
//!   downsample bias, when there is one, is 0.

use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::architecture::{Classifier, Dropout};
use crate::ops;
use crate::seed_cnn::{ModelConfig, ModelError, ParamCounts};
use crate::summary::{SummaryRow, SummaryTable};
use crate::weights::{Layout, ParamName};
use ct3d_volume::rng::SplitMix64;

/// PyTorch's BatchNorm epsilon (MONAI and MedicalNet use the default).
pub const RESNET_BATCH_NORM_EPSILON: f64 = 1e-5;
/// Side of the first convolution's kernel (MedicalNet: 7).
pub const CONV1_KERNEL: usize = 7;

/// How a block whose input and output differ in channels or resolution forms its shortcut.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shortcut {
    /// Subsample by the stride and pad the new channels with zeros: no parameters
    /// (MedicalNet's ResNet-18 and -34 checkpoints).
    A,
    /// A 1×1×1 convolution with the block's stride followed by BatchNorm (MONAI's default;
    /// MedicalNet's ResNet-10 and -50 checkpoints).
    #[default]
    B,
}

/// Block type and blocks per stage of one depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Depth {
    /// Bottleneck blocks (1×1, 3×3, 1×1, four times the width out) instead of basic ones
    /// (3×3, 3×3).
    pub bottleneck: bool,
    /// Blocks in `layer1` … `layer4`.
    pub blocks: [usize; 4],
}

impl Depth {
    /// ResNet-10.
    pub const RESNET10: Depth = Depth {
        bottleneck: false,
        blocks: [1, 1, 1, 1],
    };
    /// ResNet-18.
    pub const RESNET18: Depth = Depth {
        bottleneck: false,
        blocks: [2, 2, 2, 2],
    };
    /// ResNet-34.
    pub const RESNET34: Depth = Depth {
        bottleneck: false,
        blocks: [3, 4, 6, 3],
    };
    /// ResNet-50.
    pub const RESNET50: Depth = Depth {
        bottleneck: true,
        blocks: [3, 4, 6, 3],
    };

    /// Output channels per unit of width: 1 for basic blocks, 4 for bottlenecks.
    pub fn expansion(self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }
}

/// A ResNet's settings apart from its depth, recorded as `model.resnet` in `config.json`.
/// [`Default`] is MedicalNet's and MONAI's full width with shortcut B.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetParams {
    /// Channels of `layer1` … `layer4` before the block expansion (MONAI's `block_inplanes`);
    /// `conv1` has `widths[0]`. Default `[64, 128, 256, 512]`.
    pub widths: [usize; 4],
    /// Shortcut type of the blocks that change channels or resolution.
    #[serde(default)]
    pub shortcut: Shortcut,
    /// Whether shortcut B's convolution has a bias (MONAI's `bias_downsample`, true by default
    /// there; MedicalNet's checkpoints have none).
    #[serde(default)]
    pub downsample_bias: bool,
}

impl Default for ResNetParams {
    fn default() -> Self {
        Self {
            widths: [64, 128, 256, 512],
            shortcut: Shortcut::B,
            downsample_bias: false,
        }
    }
}

/// One stage's block in numbers: what the summary and the parameter count need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BlockPlan {
    stage: usize,
    index: usize,
    in_channels: usize,
    width: usize,
    out_channels: usize,
    stride: usize,
    /// Whether the shortcut changes channels or resolution.
    downsample: bool,
}

fn plan(depth: Depth, params: &ResNetParams) -> Vec<BlockPlan> {
    let mut in_channels = params.widths[0];
    let mut blocks = Vec::new();
    for stage in 0..4 {
        let width = params.widths[stage];
        let out_channels = width * depth.expansion();
        for index in 0..depth.blocks[stage] {
            let stride = if stage > 0 && index == 0 { 2 } else { 1 };
            blocks.push(BlockPlan {
                stage,
                index,
                in_channels,
                width,
                out_channels,
                stride,
                downsample: stride != 1 || in_channels != out_channels,
            });
            in_channels = out_channels;
        }
    }
    blocks
}

/// Size along one axis after a convolution or pooling of `kernel`, `stride`, `padding`.
fn out_size(size: usize, kernel: usize, stride: usize, padding: usize) -> usize {
    (size + 2 * padding).saturating_sub(kernel) / stride + 1
}

/// Checks `config` for a ResNet of `depth`.
pub fn validate(depth: Depth, config: &ModelConfig) -> Result<(), ModelError> {
    let params = config.resnet_params();
    if params.widths.contains(&0) {
        return Err(ModelError::BadFilters(params.widths.to_vec()));
    }
    if !(0.0..1.0).contains(&config.batch_norm_momentum) {
        return Err(ModelError::BadMomentum(config.batch_norm_momentum));
    }
    if config.input.contains(&0) {
        return Err(ModelError::InputTooSmall {
            size: config.input,
            blocks: 4,
            min: 1,
        });
    }
    if params.shortcut == Shortcut::A
        && let Some(block) = plan(depth, &params)
            .iter()
            .find(|b| b.downsample && b.out_channels < b.in_channels)
    {
        return Err(ModelError::ShortcutChannels {
            stage: block.stage + 1,
            in_channels: block.in_channels,
            out_channels: block.out_channels,
        });
    }
    Ok(())
}

/// Parameter counts from the configuration alone. `trainable` is MONAI's
/// `sum(p.numel() for p in model.parameters())`; `non_trainable` the BatchNorm running means and
/// variances (PyTorch's `num_batches_tracked` counters are not kept).
pub fn param_counts(depth: Depth, config: &ModelConfig) -> ParamCounts {
    let rows = layer_rows(depth, config);
    let non_trainable: usize = rows.iter().map(|row| row.non_trainable).sum();
    let total: usize = rows.iter().map(|row| row.params).sum();
    ParamCounts {
        total,
        trainable: total - non_trainable,
        non_trainable,
    }
}

struct LayerRow {
    name: String,
    kind: &'static str,
    channels: usize,
    size: [usize; 3],
    params: usize,
    non_trainable: usize,
}

fn layer_rows(depth: Depth, config: &ModelConfig) -> Vec<LayerRow> {
    let params = config.resnet_params();
    let conv = |k: usize, i: usize, o: usize| k * k * k * i * o;
    let norm = |c: usize| 4 * c;
    let w0 = params.widths[0];
    let mut rows = Vec::new();
    let mut size = config
        .input
        .map(|s| out_size(s, CONV1_KERNEL, 2, CONV1_KERNEL / 2));
    rows.push(LayerRow {
        name: "conv1".into(),
        kind: "Conv3d",
        channels: w0,
        size,
        params: conv(CONV1_KERNEL, 1, w0),
        non_trainable: 0,
    });
    rows.push(LayerRow {
        name: "bn1".into(),
        kind: "BatchNorm3d",
        channels: w0,
        size,
        params: norm(w0),
        non_trainable: 2 * w0,
    });
    size = size.map(|s| out_size(s, 3, 2, 1));
    rows.push(LayerRow {
        name: "maxpool".into(),
        kind: "MaxPool3d",
        channels: w0,
        size,
        params: 0,
        non_trainable: 0,
    });
    for block in plan(depth, &params) {
        size = size.map(|s| out_size(s, 3, block.stride, 1));
        let BlockPlan {
            in_channels: i,
            width: w,
            out_channels: o,
            ..
        } = block;
        let (convs, norms) = if depth.bottleneck {
            (conv(1, i, w) + conv(3, w, w) + conv(1, w, o), 2 * w + o)
        } else {
            (conv(3, i, w) + conv(3, w, w), 2 * w)
        };
        let shortcut = block.downsample && params.shortcut == Shortcut::B;
        let (shortcut_params, shortcut_norm) = match shortcut {
            true => (conv(1, i, o) + usize::from(params.downsample_bias) * o, o),
            false => (0, 0),
        };
        rows.push(LayerRow {
            name: format!("layer{}.{}", block.stage + 1, block.index),
            kind: if depth.bottleneck {
                "Bottleneck"
            } else {
                "BasicBlock"
            },
            channels: o,
            size,
            params: convs + shortcut_params + norm(norms + shortcut_norm),
            non_trainable: 2 * (norms + shortcut_norm),
        });
    }
    let features = params.widths[3] * depth.expansion();
    rows.push(LayerRow {
        name: "avgpool".into(),
        kind: "AdaptiveAvgPool3d",
        channels: features,
        size: [1, 1, 1],
        params: 0,
        non_trainable: 0,
    });
    rows.push(LayerRow {
        name: "fc".into(),
        kind: "Linear",
        channels: 1,
        size: [0; 3],
        params: features + 1,
        non_trainable: 0,
    });
    rows
}

/// Values (`f32`) of the layer outputs of one forward pass over one volume, for memory
/// estimates: the stem's convolution, BatchNorm and ReLU outputs and the pooled map; per block its
/// convolution, BatchNorm and ReLU outputs, the sum and the shortcut's own outputs.
pub fn activation_values(depth: Depth, config: &ModelConfig) -> u64 {
    let params = config.resnet_params();
    let shortcut_b = params.shortcut == Shortcut::B;
    let mut downsamples = plan(depth, &params).into_iter().map(|b| b.downsample);
    let voxels = |size: [usize; 3]| size.iter().map(|&s| s as u64).product::<u64>();
    let input = voxels(config.input);
    layer_rows(depth, config).iter().fold(input, |acc, row| {
        let copies: u64 = match row.kind {
            "Conv3d" => 1,
            "BatchNorm3d" => 2, // normalised and activated
            "MaxPool3d" => 1,
            // conv, BN, ReLU per 3×3 (or 1×1) layer, the sum and the final ReLU
            "BasicBlock" | "Bottleneck" => {
                let layers = if row.kind == "Bottleneck" { 3 } else { 2 };
                let down = downsamples.next().unwrap_or(false) && shortcut_b;
                3 * layers + 2 + if down { 2 } else { 0 }
            }
            _ => 0,
        };
        acc.saturating_add(
            copies
                .saturating_mul(voxels(row.size))
                .saturating_mul(row.channels as u64),
        )
    })
}

/// The layer table for a ResNet of `depth` named `title`: one row per stem layer and per block
/// (its parameters including its shortcut), output shapes channels-first
/// `(None, channels, x, y, z)`.
pub fn summary_table(title: &str, depth: Depth, config: &ModelConfig) -> SummaryTable {
    let [x, y, z] = config.input;
    let mut rows = vec![SummaryRow {
        layer: "input (Input)".into(),
        output: format!("(None, 1, {x}, {y}, {z})"),
        params: 0,
    }];
    for row in layer_rows(depth, config) {
        let [a, b, c] = row.size;
        let output = match row.kind {
            "Linear" => format!("(None, {})", row.channels),
            "AdaptiveAvgPool3d" => format!("(None, {})", row.channels),
            _ => format!("(None, {}, {a}, {b}, {c})", row.channels),
        };
        rows.push(SummaryRow {
            layer: format!("{} ({})", row.name, row.kind),
            output,
            params: row.params,
        });
    }
    SummaryTable {
        title: title.to_owned(),
        rows,
        counts: param_counts(depth, config),
    }
}

/// Builds a ResNet of `depth` for `config` on `device`, weights drawn from `seed`.
pub fn init(
    depth: Depth,
    config: &ModelConfig,
    device: &Device,
    seed: u64,
) -> Result<ResNet, ModelError> {
    validate(depth, config)?;
    let params = config.resnet_params();
    let mut rng = SplitMix64::new(seed);
    let norm = |channels: usize| {
        BatchNormConfig::new(channels)
            .with_epsilon(RESNET_BATCH_NORM_EPSILON)
            .with_momentum(1.0 - config.batch_norm_momentum)
            .init(device)
    };
    let w0 = params.widths[0];
    let conv1 = Conv::he(1, w0, CONV1_KERNEL, 2, false, &mut rng, device);
    let mut layers: [Vec<Block>; 4] = Default::default();
    for block in plan(depth, &params) {
        let BlockPlan {
            in_channels: i,
            width: w,
            out_channels: o,
            stride,
            ..
        } = block;
        let mut conv = |inp, out, k, s| Conv::he(inp, out, k, s, false, &mut rng, device);
        let (conv1, conv2, conv3) = if depth.bottleneck {
            (
                conv(i, w, 1, 1),
                conv(w, w, 3, stride),
                Some(conv(w, o, 1, 1)),
            )
        } else {
            (conv(i, w, 3, stride), conv(w, w, 3, 1), None)
        };
        let downsample = (block.downsample && params.shortcut == Shortcut::B).then(|| Downsample {
            conv: Conv::he(i, o, 1, stride, params.downsample_bias, &mut rng, device),
            norm: norm(o),
        });
        layers[block.stage].push(Block {
            conv1,
            bn1: norm(w),
            conv2,
            bn2: norm(w),
            bn3: conv3.as_ref().map(|_| norm(o)),
            conv3,
            downsample,
            stride,
            out_channels: o,
        });
    }
    let features = params.widths[3] * depth.expansion();
    let limit = 1.0 / (features as f32).sqrt();
    let fc_weight = (0..features)
        .map(|_| (2.0 * rng.next_f32() - 1.0) * limit)
        .collect();
    let [layer1, layer2, layer3, layer4] = layers;
    Ok(ResNet {
        conv1,
        bn1: norm(w0),
        layer1,
        layer2,
        layer3,
        layer4,
        fc: Head {
            weight: param(fc_weight, [1, features], device),
            bias: param(vec![0.0], [1], device),
        },
        config: config.clone(),
        depth_blocks: depth.blocks,
        bottleneck: depth.bottleneck,
    })
}

/// The stages an explanation can look at, as [`Classifier::layer_names`] lists them.
const STAGES: [&str; 5] = ["stem", "layer1", "layer2", "layer3", "layer4"];

/// A 3D ResNet (see the module docs). Build it through [`crate::Architecture::init`].
#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv,
    bn1: BatchNorm,
    layer1: Vec<Block>,
    layer2: Vec<Block>,
    layer3: Vec<Block>,
    layer4: Vec<Block>,
    fc: Head,
    #[module(skip)]
    config: ModelConfig,
    #[module(skip)]
    depth_blocks: [usize; 4],
    #[module(skip)]
    bottleneck: bool,
}

/// A convolution without dilation or groups, padded to keep `size / stride` ("same" for odd
/// kernels), PyTorch's `Conv3d(…, padding=k // 2)`.
#[derive(Module, Debug)]
struct Conv {
    /// `[out, in, k, k, k]`
    weight: Param<Tensor<5>>,
    /// `[out]`, only in shortcut B's convolution with [`ResNetParams::downsample_bias`].
    bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    stride: usize,
}

/// Shortcut B: PyTorch's `downsample = Sequential(Conv3d, BatchNorm3d)`, named `downsample.0`
/// and `downsample.1` in a state dict.
#[derive(Module, Debug)]
struct Downsample {
    conv: Conv,
    norm: BatchNorm,
}

/// A basic block (`conv3`/`bn3` absent) or a bottleneck block.
#[derive(Module, Debug)]
struct Block {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    conv3: Option<Conv>,
    bn3: Option<BatchNorm>,
    downsample: Option<Downsample>,
    #[module(skip)]
    stride: usize,
    #[module(skip)]
    out_channels: usize,
}

/// The one-logit head, stored as PyTorch's `Linear` (`weight` `[1, features]`), so that its
/// weights need no transpose on the way in or out.
#[derive(Module, Debug)]
struct Head {
    /// `[1, features]`
    weight: Param<Tensor<2>>,
    /// `[1]`
    bias: Param<Tensor<1>>,
}

fn param<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

/// A standard normal draw (Box–Muller on the crate's generator: reproducible on every device).
fn normal(rng: &mut SplitMix64) -> f64 {
    // 1 − u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.next_f64();
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl Conv {
    /// PyTorch's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, MONAI's choice.
    fn he(
        inputs: usize,
        outputs: usize,
        kernel: usize,
        stride: usize,
        bias: bool,
        rng: &mut SplitMix64,
        device: &Device,
    ) -> Self {
        let std = (2.0 / (outputs * kernel.pow(3)) as f64).sqrt();
        let shape = [outputs, inputs, kernel, kernel, kernel];
        let values = (0..shape.iter().product::<usize>())
            .map(|_| (normal(rng) * std) as f32)
            .collect();
        Self {
            weight: param(values, shape, device),
            bias: bias.then(|| param(vec![0.0; outputs], [outputs], device)),
            stride,
        }
    }

    /// `[batch, in, x, y, z]` → `[batch, out, ⌈x / stride⌉, …]` (for odd kernels).
    fn forward(&self, input: Tensor<5>) -> Tensor<5> {
        let kernel = self.weight.val();
        let padding = kernel.dims()[2] / 2;
        ops::conv3d(
            input,
            kernel,
            self.bias.as_ref().map(|b| b.val()),
            self.stride,
            padding,
        )
    }
}

impl Block {
    /// `[batch, in, x, y, z]` → `[batch, out, ⌈x / stride⌉, ⌈y / stride⌉, ⌈z / stride⌉]`.
    fn forward(&self, input: Tensor<5>) -> Tensor<5> {
        let mut x = relu(ops::batch_norm(
            &self.bn1,
            self.conv1.forward(input.clone()),
        ));
        x = ops::batch_norm(&self.bn2, self.conv2.forward(x));
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            x = ops::batch_norm(bn3, conv3.forward(relu(x)));
        }
        let shortcut = match &self.downsample {
            Some(down) => ops::batch_norm(&down.norm, down.conv.forward(input)),
            None => self.shortcut_a(input),
        };
        relu(x + shortcut)
    }

    /// The identity, or shortcut A where the block changes shape: every `stride`-th voxel
    /// (MONAI's 1×1×1 average pooling with that stride) and zeros for the new channels.
    fn shortcut_a(&self, input: Tensor<5>) -> Tensor<5> {
        let [_, channels, ..] = input.dims();
        if self.stride == 1 && channels == self.out_channels {
            return input;
        }
        let s = self.stride as isize;
        let kept = input.slice(burn::tensor::s![.., .., ..;s, ..;s, ..;s]);
        let [batch, channels, x, y, z] = kept.dims();
        if channels == self.out_channels {
            return kept;
        }
        let zeros = Tensor::zeros(
            [batch, self.out_channels - channels, x, y, z],
            &kept.device(),
        );
        Tensor::cat(vec![kept, zeros], 1)
    }
}

impl Conv {
    /// This convolution as an ONNX `Conv` node after `x`, its weights named `name.weight`.
    fn to_onnx(&self, graph: &mut crate::onnx::Graph, x: &str, name: &str) -> String {
        let padding = self.weight.val().dims()[2] / 2;
        graph.conv(
            x,
            name,
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            padding,
        )
    }
}

impl Block {
    /// Mirrors [`Block::forward`] as ONNX nodes after `input`; weights take the block's PyTorch
    /// names under `name` (`layer2.0`).
    fn to_onnx(&self, graph: &mut crate::onnx::Graph, input: &str, name: &str) -> String {
        let x = self.conv1.to_onnx(graph, input, &format!("{name}.conv1"));
        let x = graph.batch_norm(&x, &format!("{name}.bn1"), &self.bn1);
        let x = graph.op("Relu", &[&x], vec![]);
        let x = self.conv2.to_onnx(graph, &x, &format!("{name}.conv2"));
        let mut x = graph.batch_norm(&x, &format!("{name}.bn2"), &self.bn2);
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            let y = graph.op("Relu", &[&x], vec![]);
            let y = conv3.to_onnx(graph, &y, &format!("{name}.conv3"));
            x = graph.batch_norm(&y, &format!("{name}.bn3"), bn3);
        }
        let shortcut = match &self.downsample {
            Some(down) => {
                let y = down
                    .conv
                    .to_onnx(graph, input, &format!("{name}.downsample.0"));
                graph.batch_norm(&y, &format!("{name}.downsample.1"), &down.norm)
            }
            None => self.shortcut_a_onnx(graph, input, name),
        };
        let sum = graph.op("Add", &[&x, &shortcut], vec![]);
        graph.op("Relu", &[&sum], vec![])
    }

    /// [`Block::shortcut_a`] as ONNX nodes: `Slice` with steps, then `Pad` of the channels.
    fn shortcut_a_onnx(&self, graph: &mut crate::onnx::Graph, input: &str, name: &str) -> String {
        let channels = self.conv1.weight.val().dims()[1];
        if self.stride == 1 && channels == self.out_channels {
            return input.to_owned();
        }
        let s = self.stride as i64;
        let starts = graph.constant_i64(&format!("{name}.shortcut.starts"), &[0, 0, 0]);
        let ends = graph.constant_i64(&format!("{name}.shortcut.ends"), &[i64::MAX; 3]);
        let axes = graph.constant_i64(&format!("{name}.shortcut.axes"), &[2, 3, 4]);
        let steps = graph.constant_i64(&format!("{name}.shortcut.steps"), &[s, s, s]);
        let kept = graph.op("Slice", &[input, &starts, &ends, &axes, &steps], vec![]);
        if channels == self.out_channels {
            return kept;
        }
        let extra = (self.out_channels - channels) as i64;
        let pads = graph.constant_i64(
            &format!("{name}.shortcut.pads"),
            &[0, 0, 0, 0, 0, 0, extra, 0, 0, 0],
        );
        graph.op("Pad", &[&kept, &pads], vec![])
    }
}

impl ResNet {
    /// Appends this network's inference-mode nodes to `graph` after the value `input`
    /// (`[N, 1, x, y, z]`) and returns the logit's value name (`[N, 1]`); weights keep their
    /// PyTorch names. Mirrors [`Classifier::forward`].
    pub(crate) fn to_onnx(&self, graph: &mut crate::onnx::Graph, input: &str) -> String {
        let x = self.conv1.to_onnx(graph, input, "conv1");
        let x = graph.batch_norm(&x, "bn1", &self.bn1);
        let x = graph.op("Relu", &[&x], vec![]);
        let mut x = graph.max_pool(&x, 3, 2, 1);
        for (stage, layer) in [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .enumerate()
        {
            for (index, block) in layer.iter().enumerate() {
                x = block.to_onnx(graph, &x, &format!("layer{}.{index}", stage + 1));
            }
        }
        let features = graph.global_average(&x);
        graph.dense(&features, "fc", &self.fc.weight, Some(&self.fc.bias), true)
    }
}

impl ResNet {
    /// The configuration the network was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The depth the network was built with.
    pub fn depth(&self) -> Depth {
        Depth {
            bottleneck: self.bottleneck,
            blocks: self.depth_blocks,
        }
    }

    /// Globally pooled features `[batch, widths[3] · expansion]` for input `[batch, 1, x, y, z]`.
    fn features(&self, input: Tensor<5>) -> Tensor<2> {
        let mut x = input;
        for stage in 0..STAGES.len() {
            x = self.stage(stage, x); // … [b, features, x/32, y/32, z/32]
        }
        crate::seed_cnn::global_average(x)
    }

    /// Stage `index` of [`STAGES`]: the stem (conv1, BN, ReLU, max-pool: `[b, 1, x, y, z]` →
    /// `[b, w0, x/4, y/4, z/4]`) or the blocks of `layer1` … `layer4`.
    fn stage(&self, index: usize, input: Tensor<5>) -> Tensor<5> {
        let layer = match index {
            0 => {
                let x = relu(ops::batch_norm(&self.bn1, self.conv1.forward(input))); // [b, w0, x/2, y/2, z/2]
                return ops::max_pool3d_3_stride_2(x); // [b, w0, x/4, y/4, z/4]
            }
            1 => &self.layer1,
            2 => &self.layer2,
            3 => &self.layer3,
            _ => &self.layer4,
        };
        layer.iter().fold(input, |x, block| block.forward(x))
    }

    fn head(&self, features: Tensor<2>) -> Tensor<2> {
        // [b, features] · [features, 1] + [1] → [b, 1]
        features.matmul(self.fc.weight.val().transpose()) + self.fc.bias.val().unsqueeze()
    }

    fn batch_norms(&self) -> Vec<&BatchNorm> {
        let mut norms = vec![&self.bn1];
        for layer in [&self.layer1, &self.layer2, &self.layer3, &self.layer4] {
            for block in layer {
                norms.extend([&block.bn1, &block.bn2]);
                norms.extend(block.bn3.as_ref());
                norms.extend(block.downsample.as_ref().map(|d| &d.norm));
            }
        }
        norms
    }
}

impl Classifier for ResNet {
    fn input_size(&self) -> [usize; 3] {
        self.config.input
    }

    fn forward(&self, input: Tensor<5>) -> Tensor<2> {
        self.head(self.features(input))
    }

    fn forward_with_dropout(&self, input: Tensor<5>, _keep_mask: Tensor<2>) -> Tensor<2> {
        // No dropout layer ([`Classifier::dropout`] is `None`), so there is never a mask.
        self.head(self.features(input))
    }

    fn embedding(&self, input: Tensor<5>) -> Tensor<2> {
        self.features(input)
    }

    fn dropout(&self) -> Option<Dropout> {
        None
    }

    fn layer_names(&self) -> Vec<String> {
        STAGES.iter().map(|s| (*s).to_owned()).collect()
    }

    fn forward_to(&self, layer: usize, input: Tensor<5>) -> Tensor<5> {
        assert!(layer < STAGES.len(), "ResNet stage {layer} out of range");
        (0..=layer).fold(input, |x, stage| self.stage(stage, x))
    }

    fn layer_placement(&self, layer: usize) -> (f64, f64) {
        // "Same" padding keeps centres aligned (j → stride · j): conv1 and the max-pool halve
        // twice, layer1 keeps the size, layer2 … layer4 halve once each.
        let scale = match layer {
            0 | 1 => 4.0,
            k => f64::from(1u32 << (k + 1).min(31)),
        };
        (scale, 0.0)
    }

    fn forward_from(&self, layer: usize, activation: Tensor<5>) -> Tensor<2> {
        assert!(layer < STAGES.len(), "ResNet stage {layer} out of range");
        let x = (layer + 1..STAGES.len()).fold(activation, |x, stage| self.stage(stage, x));
        self.head(crate::seed_cnn::global_average(x))
    }

    fn is_trainable(&self) -> bool {
        self.fc.weight.val().is_autodiff()
    }

    fn batch_norms(&self) -> Vec<&BatchNorm> {
        ResNet::batch_norms(self)
    }

    fn param_name(module_path: &str) -> Option<ParamName> {
        pytorch_name(module_path).map(|name| ParamName {
            trainable: !name.ends_with(".running_mean") && !name.ends_with(".running_var"),
            name,
            layout: Layout::PyTorch,
        })
    }

    fn is_head(module_path: &str) -> bool {
        module_path.starts_with("fc.")
    }
}

/// The PyTorch (MONAI, MedicalNet) state-dict name of the parameter at burn module path
/// `module_path` (`layer2.0.downsample.norm.gamma` → `layer2.0.downsample.1.weight`); `None`
/// for a path outside [`ResNet`].
pub fn pytorch_name(module_path: &str) -> Option<String> {
    let parts: Vec<&str> = module_path.split('.').collect();
    let norm = |field: &str| {
        match field {
            "gamma" => Some("weight"),
            "beta" => Some("bias"),
            "running_mean" | "running_var" => Some(field),
            _ => None,
        }
        .map(str::to_owned)
    };
    match parts.as_slice() {
        ["conv1", "weight"] => Some(module_path.to_owned()),
        ["bn1", field] => Some(format!("bn1.{}", norm(field)?)),
        ["fc", field @ ("weight" | "bias")] => Some(format!("fc.{field}")),
        [
            layer @ ("layer1" | "layer2" | "layer3" | "layer4"),
            index,
            rest @ ..,
        ] => {
            let index: usize = index.parse().ok()?;
            let tail = match rest {
                [conv @ ("conv1" | "conv2" | "conv3"), "weight"] => format!("{conv}.weight"),
                [bn @ ("bn1" | "bn2" | "bn3"), field] => format!("{bn}.{}", norm(field)?),
                ["downsample", "conv", field @ ("weight" | "bias")] => {
                    format!("downsample.0.{field}")
                }
                ["downsample", "norm", field] => format!("downsample.1.{}", norm(field)?),
                _ => return None,
            };
            Some(format!("{layer}.{index}.{tail}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::ModuleVisitor;

    fn config(widths: [usize; 4], shortcut: Shortcut, input: [usize; 3]) -> ModelConfig {
        ModelConfig {
            input,
            resnet: Some(ResNetParams {
                widths,
                shortcut,
                downsample_bias: false,
            }),
            ..ModelConfig::default()
        }
    }

    /// Every parameter's PyTorch name and its element count.
    fn named_params(model: &ResNet) -> Vec<(String, usize)> {
        struct Names(Vec<String>, Vec<(String, usize)>);
        impl ModuleVisitor for Names {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.0.push(name.to_owned());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.0.pop();
            }
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let path = self.0.join(".");
                let name = ResNet::param_name(&path).unwrap_or_else(|| panic!("{path}"));
                self.1
                    .push((name.name, param.val().dims().iter().product()));
            }
        }
        let mut names = Names(Vec::new(), Vec::new());
        model.visit(&mut names);
        names.1
    }

    #[test]
    fn counts_from_the_configuration_match_the_built_network() {
        for (depth, shortcut) in [
            (Depth::RESNET10, Shortcut::B),
            (Depth::RESNET18, Shortcut::A),
            (Depth::RESNET34, Shortcut::A),
            (Depth::RESNET50, Shortcut::B),
        ] {
            let config = config([2, 3, 4, 5], shortcut, [9, 8, 7]);
            let model = init(depth, &config, &Device::flex(), 1).unwrap();
            let params = named_params(&model);
            let total: usize = params.iter().map(|(_, n)| n).sum();
            let moving: usize = params
                .iter()
                .filter(|(name, _)| name.contains("running_"))
                .map(|(_, n)| n)
                .sum();
            let counts = param_counts(depth, &config);
            assert_eq!(counts.total, total, "{depth:?}");
            assert_eq!(counts.non_trainable, moving, "{depth:?}");
            let logits =
                Classifier::forward(&model, Tensor::zeros([2, 1, 9, 8, 7], &Device::flex()));
            assert_eq!(logits.dims(), [2, 1]);
        }
    }

    #[test]
    fn names_are_pytorch_state_dict_names() {
        let config = config([2, 3, 4, 5], Shortcut::B, [8, 8, 8]);
        let model = init(Depth::RESNET18, &config, &Device::flex(), 1).unwrap();
        let names: Vec<String> = named_params(&model).into_iter().map(|(n, _)| n).collect();
        for expected in [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "layer1.0.conv1.weight",
            "layer1.1.bn2.running_var",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.weight",
            "layer4.1.conv2.weight",
            "fc.weight",
            "fc.bias",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.starts_with("layer1.0.downsample")));
        assert!(!names.iter().any(|n| n == "layer2.0.downsample.0.bias"));
        assert_eq!(pytorch_name("layer1.0.conv4.weight"), None);
        assert_eq!(pytorch_name("layer5.0.conv1.weight"), None);
        assert_eq!(pytorch_name("bn1.weight"), None);
        assert!(!ResNet::param_name("bn1.running_var").unwrap().trainable);
        assert!(ResNet::param_name("bn1.gamma").unwrap().trainable);
    }

    #[test]
    fn shapes_through_the_stem_and_stages() {
        // 20 → conv1 10 → maxpool 5 → layer2 3 → layer3 2 → layer4 1.
        let config = config([2, 3, 4, 5], Shortcut::A, [20, 33, 1]);
        let table = summary_table("resnet10", Depth::RESNET10, &config).to_string();
        for expected in [
            "conv1 (Conv3d)",
            "(None, 2, 10, 17, 1)",
            "(None, 2, 5, 9, 1)",
            "layer2.0 (BasicBlock)",
            "(None, 3, 3, 5, 1)",
            "(None, 4, 2, 3, 1)",
            "(None, 5, 1, 2, 1)",
            "fc (Linear)",
        ] {
            assert!(table.contains(expected), "{expected} in\n{table}");
        }
        let model = init(Depth::RESNET10, &config, &Device::flex(), 3).unwrap();
        let input = Tensor::<5>::ones([1, 1, 20, 33, 1], &Device::flex());
        assert_eq!(Classifier::embedding(&model, input).dims(), [1, 5]);
    }

    #[test]
    fn shortcut_a_needs_growing_channels() {
        let shrinking = config([4, 2, 4, 4], Shortcut::A, [8, 8, 8]);
        assert!(matches!(
            validate(Depth::RESNET18, &shrinking),
            Err(ModelError::ShortcutChannels { stage: 2, .. })
        ));
        let b = config([4, 2, 4, 4], Shortcut::B, [8, 8, 8]);
        assert!(validate(Depth::RESNET18, &b).is_ok());
        assert!(
            validate(
                Depth::RESNET18,
                &config([4, 0, 4, 4], Shortcut::B, [8, 8, 8])
            )
            .is_err()
        );
    }

    #[test]
    fn normal_draws_have_unit_spread() {
        let mut rng = SplitMix64::new(9);
        let draws: Vec<f64> = (0..20_000).map(|_| normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
    }
}
