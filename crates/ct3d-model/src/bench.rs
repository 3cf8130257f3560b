//! Timing of the training step and of one-scan inference on random data, for `ct3d bench`.
//!
//! Each measurement builds the seed's model at the requested input size, runs one untimed
//! warm-up call (allocator pools, kernel selection on GPUs), then times `repeats` calls and
//! reports every sample and their median. Every timed call ends by reading its result back to
//! the host, so asynchronous GPU backends are timed to completion.

use std::time::{Duration, Instant};

use burn::tensor::Device;

use crate::input::batch_tensor;
use crate::model::{ModelConfig, ModelError};
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

/// Times [`train_step`] of the seed's model (Keras Adam, seed learning rate, dropout) on a
/// random batch of `batch` volumes of `size` `[x, y, z]` voxels. `device` is a plain device;
/// autodiff is added here.
pub fn bench_train_step(
    device: &Device,
    batch: usize,
    size: [usize; 3],
    repeats: usize,
) -> Result<Timing, ModelError> {
    let config = ModelConfig {
        input: size,
        ..ModelConfig::default()
    };
    let device = device.clone().autodiff();
    let mut model = config.init(&device, 0)?;
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

/// Times [`predict_proba`] of the seed's model on one random volume of `size` `[x, y, z]`.
pub fn bench_predict(
    device: &Device,
    size: [usize; 3],
    repeats: usize,
) -> Result<Timing, ModelError> {
    let config = ModelConfig {
        input: size,
        ..ModelConfig::default()
    };
    let device = device.clone().without_autodiff();
    let model = config.init(&device, 0)?;
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
}
