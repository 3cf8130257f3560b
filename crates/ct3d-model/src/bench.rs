//! Timing of the training step and of one-scan inference on random data, for `ct3d bench`.
//!
//! Each measurement builds the network an [`Architecture`] and a [`ModelConfig`] describe (the
//! input size is the configuration's), runs one untimed
//! warm-up call (allocator pools, kernel selection on GPUs), then times `repeats` calls and
//! reports every sample and their median. Every timed call ends by reading its result back to
//! the host, so asynchronous GPU backends are timed to completion.

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::Device;

use crate::architecture::{Architecture, Classifier};
use crate::input::batch_tensor;
use crate::seed_cnn::{ModelConfig, ModelError};
use crate::train_step::{Adam, AdamConfig, ExponentialDecay, predict_proba, train_step};
use ct3d_volume::rng::SplitMix64;

/// Wall-clock samples of one operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// Each timed repetition, in order.
    pub samples: Vec<Duration>,
}

impl Timing {
    /// The median sample (mean of the middle two for an even count; zero when empty).
    pub fn median(&self) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        match sorted.len() {
            0 => Duration::ZERO,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
        }
    }
}

/// Times [`train_step`] of the network (Keras Adam, seed learning rate, dropout) on a random
/// batch of `batch` volumes of `config.input` voxels. `device` is a plain device; autodiff is
/// added here.
pub fn bench_train_step(
    architecture: Architecture,
    config: &ModelConfig,
    device: &Device,
    batch: usize,
    repeats: usize,
) -> Result<Timing, ModelError> {
    let size = config.input;
    let device = device.clone().autodiff();
    let mut model = architecture.init(config, &device, 0)?;
    let mut optimizer = Adam::new(AdamConfig::default());
    let schedule = ExponentialDecay::default();
    let mut rng = SplitMix64::new(1);
    let labels: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
    let mut samples = Vec::with_capacity(repeats);
    for step in 0..=repeats {
        let input = batch_tensor(random_volumes(&mut rng, batch, size), batch, size, &device)?;
        let lr = schedule.learning_rate(optimizer.iterations());
        let start = Instant::now();
        let outcome = train_step(model, &mut optimizer, input, &labels, lr, step as u64)?;
        if step > 0 {
            samples.push(start.elapsed());
        }
        model = outcome.model;
    }
    Ok(Timing { samples })
}

/// Times [`predict_proba`] of the network on one random volume of `config.input` voxels.
pub fn bench_predict(
    architecture: Architecture,
    config: &ModelConfig,
    device: &Device,
    repeats: usize,
) -> Result<Timing, ModelError> {
    let size = config.input;
    let device = device.clone().without_autodiff();
    let model = architecture.init(config, &device, 0)?;
    let mut rng = SplitMix64::new(2);
    let mut samples = Vec::with_capacity(repeats);
    for call in 0..=repeats {
        let input = batch_tensor(random_volumes(&mut rng, 1, size), 1, size, &device)?;
        let start = Instant::now();
        predict_proba(&model, input)?;
        if call > 0 {
            samples.push(start.elapsed());
        }
    }
    Ok(Timing { samples })
}

/// How closely two devices agree when they run the same weights on the same inputs.
///
/// Each number is `max |other − reference| / max |reference|` over the compared values, so
/// `1e-3` means the largest difference is a thousandth of the largest value.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceAgreement {
    /// Inference-mode globally pooled features, `[batch, 256]` for the seed's model.
    pub embedding: f64,
    /// Inference-mode logits, `[batch, 1]`. An untrained model's logits are close to 0, so
    /// this ratio magnifies tiny absolute differences; [`Self::probabilities`] is the forward
    /// pass's output that users see.
    pub logits: f64,
    /// Inference-mode probabilities (sigmoid of the logits).
    pub probabilities: f64,
    /// The loss of one training step (batch statistics, dropout) on the reference and the other
    /// device.
    pub step_loss: [f32; 2],
    /// Inference-mode pooled features after that training step (exercises the backward pass,
    /// Adam and the BatchNorm moving statistics).
    pub embedding_after_step: f64,
}

impl DeviceAgreement {
    /// The forward pass's disagreement: the larger of the pooled features' and the
    /// probabilities' relative differences.
    pub fn forward(&self) -> f64 {
        self.embedding.max(self.probabilities)
    }

    /// The training step's loss difference, relative to the reference's loss.
    pub fn step_loss_difference(&self) -> f64 {
        let [a, b] = self.step_loss;
        f64::from((a - b).abs()) / f64::from(a.abs()).max(f64::MIN_POSITIVE)
    }
}

/// Builds the network from the same seed on `reference` and on `other` (plain devices), and
/// compares them on `batch` random volumes of `config.input` voxels: inference features and
/// logits, then one training step and the features after it.
pub fn compare_devices(
    architecture: Architecture,
    config: &ModelConfig,
    reference: &Device,
    other: &Device,
    batch: usize,
) -> Result<DeviceAgreement, ModelError> {
    let size = config.input;
    let mut rng = SplitMix64::new(3);
    let volumes = random_volumes(&mut rng, batch, size);
    let labels: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
    let run = |device: &Device| -> Result<DeviceRun, ModelError> {
        let device = device.clone().autodiff();
        let model = architecture.init(config, &device, 0)?;
        let plain = device.clone().without_autodiff();
        let input = || batch_tensor(volumes.clone(), batch, size, &plain);
        let inference = model.valid();
        let embedding = host_vec(inference.embedding(input()?));
        let logits = host_vec(inference.forward(input()?));
        let probabilities = predict_proba(&inference, input()?)?;
        let mut optimizer = Adam::new(AdamConfig::default());
        let train_input = batch_tensor(volumes.clone(), batch, size, &device)?;
        let lr = ExponentialDecay::default().learning_rate(0);
        let outcome = train_step(model, &mut optimizer, train_input, &labels, lr, 0)?;
        let after = host_vec(outcome.model.valid().embedding(input()?));
        Ok(DeviceRun {
            embedding,
            logits,
            probabilities,
            loss: outcome.loss,
            after,
        })
    };
    let a = run(reference)?;
    let b = run(other)?;
    Ok(DeviceAgreement {
        embedding: relative_difference(&a.embedding, &b.embedding),
        logits: relative_difference(&a.logits, &b.logits),
        probabilities: relative_difference(&a.probabilities, &b.probabilities),
        step_loss: [a.loss, b.loss],
        embedding_after_step: relative_difference(&a.after, &b.after),
    })
}

struct DeviceRun {
    embedding: Vec<f32>,
    logits: Vec<f32>,
    probabilities: Vec<f32>,
    loss: f32,
    after: Vec<f32>,
}

fn host_vec<const D: usize>(tensor: burn::tensor::Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor reads back as f32")
}

/// `max |b − a| / max |a|` (infinite when the lengths differ or a value is not finite).
fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let scale = a.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let worst = a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| {
        let d = (f64::from(x) - f64::from(y)).abs();
        if d.is_nan() { f64::INFINITY } else { m.max(d) }
    });
    worst / scale.max(f64::MIN_POSITIVE)
}

/// Voxels uniform in `[0, 1)`, the range of preprocessed scans.
fn random_volumes(rng: &mut SplitMix64, batch: usize, size: [usize; 3]) -> Vec<f32> {
    (0..batch * size.iter().product::<usize>())
        .map(|_| rng.next_f32())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        let ms = |v: &[u64]| Timing {
            samples: v.iter().map(|&m| Duration::from_millis(m)).collect(),
        };
        assert_eq!(ms(&[5, 1, 3]).median(), Duration::from_millis(3));
        assert_eq!(
            ms(&[4, 1, 3, 2]).median(),
            Duration::from_millis(2) + Duration::from_micros(500)
        );
        assert_eq!(ms(&[]).median(), Duration::ZERO);
    }

    #[test]
    fn relative_difference_scales_by_the_reference() {
        assert_eq!(relative_difference(&[2.0, -4.0], &[2.0, -4.0]), 0.0);
        assert!((relative_difference(&[2.0, -4.0], &[2.4, -4.0]) - 0.1).abs() < 1e-6);
        assert_eq!(relative_difference(&[1.0], &[f32::NAN]), f64::INFINITY);
        assert_eq!(relative_difference(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }

    #[test]
    fn a_device_agrees_with_itself() {
        let device = Device::flex();
        let config = ModelConfig {
            input: [46, 46, 46],
            ..ModelConfig::default()
        };
        let agreement =
            compare_devices(Architecture::SeedCnn, &config, &device, &device, 2).unwrap();
        assert_eq!(agreement.embedding, 0.0);
        assert_eq!(agreement.logits, 0.0);
        assert_eq!(agreement.step_loss[0], agreement.step_loss[1]);
        assert_eq!(agreement.forward(), 0.0);
        assert_eq!(agreement.step_loss_difference(), 0.0);
        assert_eq!(agreement.embedding_after_step, 0.0);
    }
}
