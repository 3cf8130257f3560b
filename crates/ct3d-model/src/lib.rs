//! # ct3d-model
//!
//! The Keras example's 3D CNN for CT volumes on [burn](https://burn.dev) 0.22, reproducing
//! Keras's numerics where they are a choice rather than an accident:
//!
//! - [`device`]: `cpu` (burn's pure-Rust `flex` backend), `cuda`, `vulkan`, chosen at run time;
//! - [`model`]: [`ModelConfig`] → [`Model`], Keras initialisers and BatchNorm settings;
//! - [`ops`]: the only calls to convolution and pooling (3D max pooling built from 2D);
//! - [`mod@train_step`]: stable binary cross-entropy on logits, Keras's Adam, the exponential-decay
//!   schedule, binary accuracy, one training step, inference;
//! - [`weights`]: safetensors files with Keras names and kernel layout;
//! - [`summary`]: Keras's `model.summary()` table;
//! - [`input`]: volumes (`x` fastest) to the `[batch, 1, x, y, z]` input tensor;
//! - [`mod@bench`]: step and inference timings for `ct3d bench`.
//!
//! burn 0.22 selects the backend through the [`Device`](burn::tensor::Device) value, so no type
//! here has a backend parameter: the same [`Model`] runs on every device, and a model on
//! `device.autodiff()` trains.

pub mod bench;
pub mod cpu_backend;
pub mod device;
pub mod fused_conv;
pub mod input;
pub mod model;
pub mod ops;
pub mod summary;
pub mod train_step;
pub mod weights;

pub use device::{DeviceChoice, DeviceSelectionError};
pub use model::{Model, ModelConfig, ModelError, ParamCounts};
pub use train_step::{Adam, AdamConfig, ExponentialDecay, StepOutcome, predict_proba, train_step};
pub use weights::WeightsError;
