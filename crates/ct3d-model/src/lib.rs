//! # ct3d-model
//!
//! The Keras example's 3D CNN for CT volumes on [burn](https://burn.dev) 0.22, reproducing
//! Keras's numerics where they are a choice rather than an accident:
//!
//! - [`device`]: `cpu` (burn's pure-Rust `flex` backend), `cuda`, `vulkan`, chosen at run time;
//! - [`architecture`]: the seam that picks the network — [`Architecture`] (serializable,
//!   `"seed_cnn"`) builds a [`Network`]; everything below works on any [`Classifier`];
//! - [`seed_cnn`]: [`ModelConfig`] → [`Model`], Keras initialisers and BatchNorm settings,
//!   Keras names and summary rows (also reachable as `model`, its former path);
//! - [`resnet`]: 3D ResNet-10/18/34/50 in MedicalNet's layout, PyTorch names;
//! - [`pytorch`]: PyTorch state dicts (`.pth`) into a network, names mapped, shapes checked;
//! - [`ops`]: the only calls to convolution and pooling (3D max pooling built from 2D);
//! - [`mod@train_step`]: stable binary cross-entropy on logits, Keras's Adam, the exponential-decay
//!   schedule, binary accuracy, one training step, inference;
//! - [`batch_stats`]: batch-norm moving statistics recomputed from clean batches ("precise BN");
//! - [`weights`]: safetensors files with each architecture's names, Keras's kernel layout;
//! - [`summary`]: Keras's `model.summary()` table layout;
//! - [`input`]: volumes (`x` fastest) to the `[batch, 1, x, y, z]` input tensor;
//! - [`onnx`]: a network as a standard ONNX graph (opset 17) for ONNX Runtime and servers;
//! - [`explain`]: Grad-CAM, Grad-CAM++ and occlusion sensitivity maps for any [`Classifier`];
//! - [`mod@bench`]: step and inference timings for `ct3d bench`;
//! - [`fuzzing`]: the bodies of the weight-file fuzz targets (`fuzz/`).
//!
//! burn 0.22 selects the backend through the [`Device`](burn::tensor::Device) value, so no type
//! here has a backend parameter: the same [`Network`] runs on every device, and a model on
//! `device.autodiff()` trains.

pub mod architecture;
pub mod batch_stats;
pub mod bench;
pub mod cpu_backend;
pub mod device;
pub mod explain;
pub mod fused_conv;
pub mod fuzzing;
pub mod input;
pub mod norm_kernels;
pub mod onnx;
pub mod ops;
pub mod pytorch;
pub mod resnet;
pub mod seed_cnn;
pub mod summary;
pub mod train_step;
pub mod weights;

/// The seed CNN's former module path, kept for callers of `ct3d_model::model::…`.
pub use seed_cnn as model;

pub use architecture::{Architecture, Classifier, Network};
pub use batch_stats::BatchNormStats;
pub use device::{DeviceChoice, DeviceSelectionError};
pub use resnet::{ResNetParams, Shortcut};
pub use seed_cnn::{Model, ModelConfig, ModelError, ModelParams, ParamCounts};
pub use train_step::{
    Adam, AdamConfig, ExponentialDecay, StepOutcome, freeze_encoder, predict_proba, train_step,
};
pub use weights::{Layout, ParamName, WeightsError};
