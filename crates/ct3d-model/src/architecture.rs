//! The seam between "which network" and everything that trains, saves, summarises, benchmarks
//! or runs one.
//!
//! - [`Architecture`] names the network. It is plain serializable data, recorded in a run's
//!   `config.json` as `"architecture": "seed_cnn"`, and with the shared hyper-parameters
//!   ([`ModelConfig`]: input size, dense units, dropout, BatchNorm momentum) it builds a
//!   [`Network`], prints its summary and counts its parameters without tensors.
//! - [`Network`] is the built model: a burn [`Module`] enum with one variant per architecture.
//! - [`Classifier`] is what a network module implements so that training
//!   ([`mod@crate::train_step`]), weights files ([`crate::weights`]) and inference work on it:
//!   logits, pooled features, its dropout layer and the names of its parameters in a weights
//!   file.
//!
//! # Adding a network
//! Write one module (as [`crate::seed_cnn`]: a config → `init`, a burn module implementing
//! [`Classifier`], its summary rows), then add one variant to [`Architecture`] and to
//! [`Network`] here; the compiler lists the match arms to extend, all in this file. Nothing
//! above this module changes.

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::resnet::{self, Depth, ResNet};
use crate::seed_cnn::{self, Model, ModelConfig, ModelError, ParamCounts};
use crate::summary::SummaryTable;
use crate::weights::ParamName;

/// Which network a run trains. [`Default`] is the seed's CNN, which is also what a run folder
/// written before this field existed holds (its `config.json` has no `architecture`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// The Keras example's 3D CNN ([`crate::seed_cnn`]); uses every field of [`ModelConfig`]
    /// but `resnet`.
    #[default]
    SeedCnn,
    /// ResNet-10 ([`crate::resnet`], basic blocks 1-1-1-1); uses the input size,
    /// `batch_norm_momentum` and `resnet` of [`ModelConfig`].
    Resnet10,
    /// ResNet-18 (basic blocks 2-2-2-2), as [`Architecture::Resnet10`].
    Resnet18,
    /// ResNet-34 (basic blocks 3-4-6-3), as [`Architecture::Resnet10`].
    Resnet34,
    /// ResNet-50 (bottleneck blocks 3-4-6-3), as [`Architecture::Resnet10`].
    Resnet50,
}

impl Architecture {
    /// Every architecture.
    pub const ALL: [Architecture; 5] = [
        Architecture::SeedCnn,
        Architecture::Resnet10,
        Architecture::Resnet18,
        Architecture::Resnet34,
        Architecture::Resnet50,
    ];

    /// The name recorded in `config.json` (`"seed_cnn"`, `"resnet18"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::SeedCnn => "seed_cnn",
            Architecture::Resnet10 => "resnet10",
            Architecture::Resnet18 => "resnet18",
            Architecture::Resnet34 => "resnet34",
            Architecture::Resnet50 => "resnet50",
        }
    }

    /// The architecture called `name` ([`Self::name`]); `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The ResNet depth, `None` for the seed CNN.
    pub fn resnet_depth(self) -> Option<Depth> {
        match self {
            Architecture::SeedCnn => None,
            Architecture::Resnet10 => Some(Depth::RESNET10),
            Architecture::Resnet18 => Some(Depth::RESNET18),
            Architecture::Resnet34 => Some(Depth::RESNET34),
            Architecture::Resnet50 => Some(Depth::RESNET50),
        }
    }

    /// Checks `config` for this architecture; every other method assumes a valid one.
    pub fn validate(self, config: &ModelConfig) -> Result<(), ModelError> {
        match self.resnet_depth() {
            None => config.validate(),
            Some(depth) => resnet::validate(depth, config),
        }
    }

    /// Builds the network on `device` with weights drawn from `seed` (bit-identical for equal
    /// seeds on every device). Use `device.autodiff()` to train.
    pub fn init(
        self,
        config: &ModelConfig,
        device: &Device,
        seed: u64,
    ) -> Result<Network, ModelError> {
        match self.resnet_depth() {
            None => config.init(device, seed).map(Network::SeedCnn),
            Some(depth) => resnet::init(depth, config, device, seed).map(Network::ResNet),
        }
    }

    /// Parameter counts as Keras's `model.summary()` reports them, from `config` alone.
    pub fn param_counts(self, config: &ModelConfig) -> ParamCounts {
        match self.resnet_depth() {
            None => config.param_counts(),
            Some(depth) => resnet::param_counts(depth, config),
        }
    }

    /// The layer table, Keras's `model.summary()` style, from `config` alone.
    pub fn summary_table(self, config: &ModelConfig) -> SummaryTable {
        match self.resnet_depth() {
            None => seed_cnn::summary_table(config),
            Some(depth) => resnet::summary_table(self.name(), depth, config),
        }
    }

    /// [`Self::summary_table`] as text, ending with the three parameter-count lines.
    pub fn summary(self, config: &ModelConfig) -> String {
        self.summary_table(config).to_string()
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The dropout layer that training applies before a network's output layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Width of the layer the mask multiplies, `units` in the `[batch, units]` mask.
    pub units: usize,
    /// Fraction of units dropped, in `[0, 1)`.
    pub rate: f64,
}

/// What training, weights files and inference need from a network module.
///
/// Every method works on host-independent burn tensors; the input is always
/// `[batch, 1, x, y, z]` with `[x, y, z]` = [`Classifier::input_size`], the output logits
/// `[batch, 1]`.
pub trait Classifier: Module + Sized {
    /// The input size `[x, y, z]` in voxels.
    fn input_size(&self) -> [usize; 3];

    /// Logits without dropout, in the module's current mode (batch statistics on an autodiff
    /// device in training mode, moving statistics otherwise).
    ///
    /// # Shapes
    /// - `input`: `[batch, 1, x, y, z]`
    /// - output: `[batch, 1]`
    fn forward(&self, input: Tensor<5>) -> Tensor<2>;

    /// Logits with dropout applied through `keep_mask` (`[batch, units]` of [`Self::dropout`],
    /// each entry `0` or `1 / (1 − rate)`), as in a training step.
    fn forward_with_dropout(&self, input: Tensor<5>, keep_mask: Tensor<2>) -> Tensor<2>;

    /// The pooled features feeding the head, `[batch, features]`, in the current mode.
    fn embedding(&self, input: Tensor<5>) -> Tensor<2>;

    /// The dropout layer a training step draws a mask for, if the network has one.
    fn dropout(&self) -> Option<Dropout>;

    /// The convolution blocks an explanation can look at, input side first: their outputs are
    /// what [`Self::forward_to`] returns (`block1` … `block4` for the seed CNN; `stem`, `layer1`
    /// … `layer4` for a ResNet). The last one feeds the global pooling.
    fn layer_names(&self) -> Vec<String>;

    /// The output of block `layer` (an index into [`Self::layer_names`]), in the current mode.
    /// Panics when `layer` is out of range (callers look names up first).
    ///
    /// # Shapes
    /// - `input`: `[batch, 1, x, y, z]`
    /// - output: `[batch, channels, sx, sy, sz]` of that block
    fn forward_to(&self, layer: usize, input: Tensor<5>) -> Tensor<5>;

    /// Where output voxel `j` of block `layer` sits in the input, along every axis: input voxel
    /// `stride · j + offset`, the centre of its receptive field, as `(stride, offset)` in input
    /// voxels. Maps computed on a block are placed on the input with it.
    fn layer_placement(&self, layer: usize) -> (f64, f64);

    /// Logits (no dropout) from the output of block `layer`: the rest of [`Self::forward`], so
    /// that `forward_from(l, forward_to(l, x)) == forward(x)`. Grad-CAM differentiates it with
    /// respect to `activation`. Panics when `layer` is out of range.
    ///
    /// # Shapes
    /// - `activation`: `[batch, channels, sx, sy, sz]` as [`Self::forward_to`] returns it
    /// - output: `[batch, 1]`
    fn forward_from(&self, layer: usize, activation: Tensor<5>) -> Tensor<2>;

    /// Whether the parameters live on an autodiff device (required to train).
    fn is_trainable(&self) -> bool;

    /// Every batch-norm layer, input side first (what [`Self::sync_moving_stats`] and
    /// [`crate::batch_stats`] walk).
    fn batch_norms(&self) -> Vec<&BatchNorm>;

    /// Folds moving statistics that burn keeps per thread into the shared value; called after
    /// every training step.
    ///
    /// burn's `RunningState` stores each forward's update under the calling thread and merges
    /// (averaging across threads) at the next read from that thread. Syncing after every step
    /// keeps the moving statistics exactly Keras's even if later steps or a checkpoint run on
    /// another thread.
    fn sync_moving_stats(&self) {
        for norm in self.batch_norms() {
            norm.running_mean.value_sync();
            norm.running_var.value_sync();
        }
    }

    /// The name and role in a weights file of the parameter at burn module path `module_path`
    /// (`blocks.0.conv.weight`), or `None` for a path the network does not have.
    fn param_name(module_path: &str) -> Option<ParamName>;

    /// Whether the parameter at `module_path` belongs to the output head (what a fine-tuning run
    /// trains alone while the encoder is frozen, and what a pretrained file may lack).
    fn is_head(module_path: &str) -> bool;

    /// Checks that `input` is `[batch ≥ 1, 1, x, y, z]` with the network's size; returns
    /// `batch`.
    fn check_input(&self, input: &Tensor<5>) -> Result<usize, ModelError> {
        let dims = input.dims();
        let [batch, channels, x, y, z] = dims;
        let expected = self.input_size();
        if batch == 0 || channels != 1 || [x, y, z] != expected {
            return Err(ModelError::BatchShape {
                expected,
                actual: dims,
            });
        }
        Ok(batch)
    }
}

/// A built network, whatever its architecture. burn visits an enum module's parameters under
/// the variant's name (`SeedCnn.blocks.0.conv.weight`); [`Classifier::param_name`] strips it,
/// so a weights file does not depend on whether the concrete model or this enum saved it.
// The ResNet's stem and head hold their BatchNorm inline (about a kilobyte of handles); a network
// is moved once per training step, so boxing it would buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Network {
    /// [`Architecture::SeedCnn`].
    SeedCnn(Model),
    /// [`Architecture::Resnet10`] … [`Architecture::Resnet50`] (the depth is the model's).
    ResNet(ResNet),
}

impl Network {
    /// The architecture this network was built from.
    pub fn architecture(&self) -> Architecture {
        match self {
            Network::SeedCnn(_) => Architecture::SeedCnn,
            Network::ResNet(model) => {
                let depth = model.depth();
                Architecture::ALL
                    .into_iter()
                    .find(|a| a.resnet_depth() == Some(depth))
                    .unwrap_or(Architecture::Resnet18)
            }
        }
    }
}

impl From<Model> for Network {
    fn from(model: Model) -> Self {
        Network::SeedCnn(model)
    }
}

impl Classifier for Network {
    fn input_size(&self) -> [usize; 3] {
        match self {
            Network::SeedCnn(model) => model.input_size(),
            Network::ResNet(model) => model.input_size(),
        }
    }

    fn forward(&self, input: Tensor<5>) -> Tensor<2> {
        match self {
            Network::SeedCnn(model) => Classifier::forward(model, input),
            Network::ResNet(model) => Classifier::forward(model, input),
        }
    }

    fn forward_with_dropout(&self, input: Tensor<5>, keep_mask: Tensor<2>) -> Tensor<2> {
        match self {
            Network::SeedCnn(model) => Classifier::forward_with_dropout(model, input, keep_mask),
            Network::ResNet(model) => Classifier::forward_with_dropout(model, input, keep_mask),
        }
    }

    fn embedding(&self, input: Tensor<5>) -> Tensor<2> {
        match self {
            Network::SeedCnn(model) => Classifier::embedding(model, input),
            Network::ResNet(model) => Classifier::embedding(model, input),
        }
    }

    fn dropout(&self) -> Option<Dropout> {
        match self {
            Network::SeedCnn(model) => model.dropout(),
            Network::ResNet(model) => model.dropout(),
        }
    }

    fn layer_names(&self) -> Vec<String> {
        match self {
            Network::SeedCnn(model) => model.layer_names(),
            Network::ResNet(model) => model.layer_names(),
        }
    }

    fn forward_to(&self, layer: usize, input: Tensor<5>) -> Tensor<5> {
        match self {
            Network::SeedCnn(model) => model.forward_to(layer, input),
            Network::ResNet(model) => model.forward_to(layer, input),
        }
    }

    fn layer_placement(&self, layer: usize) -> (f64, f64) {
        match self {
            Network::SeedCnn(model) => model.layer_placement(layer),
            Network::ResNet(model) => model.layer_placement(layer),
        }
    }

    fn forward_from(&self, layer: usize, activation: Tensor<5>) -> Tensor<2> {
        match self {
            Network::SeedCnn(model) => model.forward_from(layer, activation),
            Network::ResNet(model) => model.forward_from(layer, activation),
        }
    }

    fn is_trainable(&self) -> bool {
        match self {
            Network::SeedCnn(model) => Classifier::is_trainable(model),
            Network::ResNet(model) => Classifier::is_trainable(model),
        }
    }

    fn batch_norms(&self) -> Vec<&BatchNorm> {
        match self {
            Network::SeedCnn(model) => Classifier::batch_norms(model),
            Network::ResNet(model) => Classifier::batch_norms(model),
        }
    }

    fn param_name(module_path: &str) -> Option<ParamName> {
        let (variant, rest) = module_path.split_once('.')?;
        match variant {
            "SeedCnn" => Model::param_name(rest),
            "ResNet" => ResNet::param_name(rest),
            _ => None,
        }
    }

    fn is_head(module_path: &str) -> bool {
        match module_path.split_once('.') {
            Some(("SeedCnn", rest)) => Model::is_head(rest),
            Some(("ResNet", rest)) => ResNet::is_head(rest),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_names_round_trip_through_serde() {
        for architecture in Architecture::ALL {
            let json = serde_json::to_string(&architecture).unwrap();
            assert_eq!(json, format!("\"{}\"", architecture.name()));
            assert_eq!(
                serde_json::from_str::<Architecture>(&json).unwrap(),
                architecture
            );
        }
        assert_eq!(Architecture::default(), Architecture::SeedCnn);
        assert_eq!(Architecture::SeedCnn.to_string(), "seed_cnn");
        assert!(serde_json::from_str::<Architecture>("\"resnet\"").is_err());
        assert_eq!(Architecture::Resnet18.to_string(), "resnet18");
        assert_eq!(
            Architecture::from_name("resnet50"),
            Some(Architecture::Resnet50)
        );
        assert_eq!(Architecture::from_name("resnet"), None);
    }

    #[test]
    fn the_enum_names_parameters_as_the_concrete_model_does() {
        assert_eq!(
            Network::param_name("SeedCnn.blocks.1.norm.running_var"),
            Model::param_name("blocks.1.norm.running_var")
        );
        assert!(Network::param_name("SeedCnn.blocks.0.conv.weight").is_some());
        assert_eq!(Network::param_name("blocks.0.conv.weight"), None);
        assert_eq!(Network::param_name("Other.dense.weight"), None);
        assert_eq!(Network::param_name("SeedCnn"), None);
    }

    #[test]
    fn the_seam_builds_summarises_and_counts_the_seed_cnn() {
        let config = ModelConfig {
            input: [46, 46, 46],
            filters: vec![2, 2, 2, 2],
            dense: 4,
            ..ModelConfig::default()
        };
        let architecture = Architecture::SeedCnn;
        let network = architecture.init(&config, &Device::flex(), 5).unwrap();
        assert_eq!(network.architecture(), architecture);
        assert_eq!(network.input_size(), [46, 46, 46]);
        assert_eq!(architecture.param_counts(&config), config.param_counts());
        assert_eq!(
            architecture.summary(&config),
            crate::summary::summary(&config)
        );
        assert_eq!(
            network.dropout(),
            Some(Dropout {
                units: 4,
                rate: 0.3
            })
        );
        // The enum forwards exactly as the model it wraps.
        let model = config.init(&Device::flex(), 5).unwrap();
        let input = Tensor::<5>::ones([1, 1, 46, 46, 46], &Device::flex());
        let values = |logits: Tensor<2>| logits.into_data().try_into_vec_as::<f32>().unwrap();
        let a = values(Classifier::forward(&network, input.clone()));
        let b = values(model.forward(input));
        assert_eq!(a, b);
        let bad = ModelConfig { dense: 0, ..config };
        assert!(architecture.validate(&bad).is_err());
    }
}
