//! Batch-norm moving statistics recomputed from clean data ("precise BN": Wu & Johnson 2021,
//! "Rethinking 'Batch' in BatchNorm", §3).
//!
//! During training a batch-norm layer normalises with the statistics of the current (augmented)
//! batch, and keeps an exponential moving average of them for inference. That average lags the
//! weights — it mixes statistics of earlier weights — and it describes augmented scans, while
//! validation and prediction see clean ones. With small batches of heavily augmented CT volumes
//! the two differ enough that the validation accuracy swings from epoch to epoch, and so does
//! which epoch is kept as the best. [`BatchNormStats`] replaces the average by the mean of the
//! per-batch statistics of the *current* weights over clean scans, which is what inference should
//! use. Training itself is unchanged: in training mode the layers never read the moving values.

use burn::tensor::Tensor;

use crate::architecture::Classifier;
use crate::seed_cnn::ModelError;

/// One batch-norm layer's per-batch statistics, each times its batch's size, summed.
struct LayerSums {
    mean: Tensor<1>,
    var: Tensor<1>,
}

/// Accumulates the per-batch mean and variance every batch-norm layer of a network computes in
/// training mode, then writes their sample-weighted averages into the layers' moving statistics.
///
/// ```text
/// let mut stats = BatchNormStats::default();
/// for batch in clean_training_batches { stats.observe(&model, batch)?; }
/// let scans = stats.apply(&model);
/// ```
#[derive(Default)]
pub struct BatchNormStats {
    /// One entry per layer of [`Classifier::batch_norms`]; `None` for a layer whose training
    /// mode is off, which never updates its moving statistics and keeps them.
    layers: Vec<Option<LayerSums>>,
    samples: usize,
}

impl BatchNormStats {
    /// Runs `input` (`[batch, 1, x, y, z]`, the network's input size) through `model` in training
    /// mode and adds each trainable batch-norm layer's batch statistics, weighted by `batch`.
    ///
    /// The model must be trainable (on an autodiff device). Its moving statistics are left in an
    /// intermediate state until [`Self::apply`]; nothing else changes (no gradient step).
    pub fn observe<C: Classifier>(
        &mut self,
        model: &C,
        input: Tensor<5>,
    ) -> Result<(), ModelError> {
        if !model.is_trainable() {
            return Err(ModelError::NotTrainable);
        }
        let batch = model.check_input(&input)?;
        let norms = model.batch_norms();
        if self.layers.is_empty() {
            self.layers = norms.iter().map(|_| None).collect();
        }
        // A layer updates `running ← (1 − m)·running + m·batch`; starting it from zero leaves
        // `m·batch`, read back below. Frozen layers do not update and are left alone.
        let training: Vec<bool> = norms.iter().map(|n| n.training.is_enabled()).collect();
        for (norm, _) in norms.iter().zip(&training).filter(|(_, t)| **t) {
            norm.running_mean
                .update(norm.running_mean.value_sync().zeros_like());
            norm.running_var
                .update(norm.running_var.value_sync().zeros_like());
        }
        // A copy whose parameters need no gradient: batch norm still takes its training path
        // (that is the `training` flag, which `no_grad` keeps), but autodiff records no graph
        // for a forward nobody differentiates. The copy shares the layers' running state.
        let probe = model.clone().no_grad();
        drop(probe.forward(input));
        let weight = batch as f64;
        for ((norm, sums), _) in norms
            .iter()
            .zip(self.layers.iter_mut())
            .zip(&training)
            .filter(|(_, t)| **t)
        {
            let scale = weight / norm.momentum;
            let mean = norm.running_mean.value_sync().mul_scalar(scale);
            let var = norm.running_var.value_sync().mul_scalar(scale);
            *sums = Some(match sums.take() {
                None => LayerSums { mean, var },
                Some(s) => LayerSums {
                    mean: s.mean.add(mean),
                    var: s.var.add(var),
                },
            });
        }
        self.samples += batch;
        Ok(())
    }

    /// Sets every observed layer's moving mean and variance to the averages of its batch
    /// statistics; returns the number of scans they came from. With nothing observed, the model
    /// is not touched and 0 is returned.
    pub fn apply<C: Classifier>(self, model: &C) -> usize {
        if self.samples == 0 {
            return 0;
        }
        let total = self.samples as f64;
        for (norm, sums) in model.batch_norms().iter().zip(self.layers) {
            if let Some(sums) = sums {
                norm.running_mean.update(sums.mean.div_scalar(total));
                norm.running_var.update(sums.var.div_scalar(total));
            }
        }
        model.sync_moving_stats();
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Flag, Module, ModuleMapper, Param};
    use burn::tensor::{Device, TensorData};

    use super::*;
    use crate::seed_cnn::{Model, ModelConfig};

    fn config() -> ModelConfig {
        ModelConfig {
            input: [46, 46, 46],
            filters: vec![3, 2, 2, 2],
            dense: 4,
            dropout: 0.3,
            // burn's momentum 0.2: the old value's weight 0.8 must not leak into the result.
            batch_norm_momentum: 0.8,
            ..ModelConfig::default()
        }
    }

    fn batch(offset: usize, device: &Device) -> Tensor<5> {
        let values: Vec<f32> = (0..2 * 46 * 46 * 46)
            .map(|i| (((i + offset) * 7919) % 1000) as f32 / 1000.0 + offset as f32 * 0.01)
            .collect();
        Tensor::from_data(TensorData::new(values, [2, 1, 46, 46, 46]), device)
    }

    fn moving(model: &Model) -> Vec<(Vec<f32>, Vec<f32>)> {
        let read = |t: Tensor<1>| t.into_data().try_into_vec_as::<f32>().unwrap();
        Classifier::batch_norms(model)
            .iter()
            .map(|n| {
                (
                    read(n.running_mean.value_sync()),
                    read(n.running_var.value_sync()),
                )
            })
            .collect()
    }

    /// The batch statistics of `input` as burn's own update reveals them:
    /// `(after − (1 − m)·before) / m` for a fresh model's one training forward.
    fn burn_batch_statistics(input: Tensor<5>, device: &Device) -> Vec<(Vec<f32>, Vec<f32>)> {
        let model = config().init(device, 8).unwrap();
        let before = moving(&model);
        drop(Classifier::forward(&model, input));
        let m = 0.2f32;
        let undo = |after: &[f32], before: &[f32]| -> Vec<f32> {
            after
                .iter()
                .zip(before)
                .map(|(a, b)| (a - (1.0 - m) * b) / m)
                .collect()
        };
        moving(&model)
            .iter()
            .zip(&before)
            .map(|((am, av), (bm, bv))| (undo(am, bm), undo(av, bv)))
            .collect()
    }

    fn assert_close(actual: &[f32], expected: &[f32], what: &str) {
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-4 * e.abs().max(1.0),
                "{what}[{i}]: {a} vs {e}"
            );
        }
    }

    #[test]
    fn moving_statistics_become_the_mean_of_the_batch_statistics() {
        let device = Device::flex().autodiff();
        let a = burn_batch_statistics(batch(0, &device), &device);
        let b = burn_batch_statistics(batch(1, &device), &device);

        let model = config().init(&device, 8).unwrap();
        let gamma_before = Classifier::batch_norms(&model)[1].gamma.val().into_data();
        let mut stats = BatchNormStats::default();
        stats.observe(&model, batch(0, &device)).unwrap();
        stats.observe(&model, batch(1, &device)).unwrap();
        assert_eq!(stats.apply(&model), 4);

        let got = moving(&model);
        assert_eq!(got.len(), 4);
        for (layer, ((mean, var), ((am, av), (bm, bv)))) in
            got.iter().zip(a.iter().zip(&b)).enumerate()
        {
            let average = |x: &[f32], y: &[f32]| -> Vec<f32> {
                x.iter().zip(y).map(|(x, y)| (x + y) / 2.0).collect()
            };
            assert_close(mean, &average(am, bm), &format!("layer {layer} mean"));
            assert_close(var, &average(av, bv), &format!("layer {layer} variance"));
        }
        // Only the moving statistics change.
        assert_eq!(
            Classifier::batch_norms(&model)[1].gamma.val().into_data(),
            gamma_before
        );
    }

    #[test]
    fn a_layer_out_of_training_mode_keeps_its_statistics() {
        struct FreezeFirstNorm {
            path: Vec<String>,
        }
        impl ModuleMapper for FreezeFirstNorm {
            fn enter_module(&mut self, name: &str, _container_type: &str) {
                self.path.push(name.to_owned());
            }
            fn exit_module(&mut self, _name: &str, _container_type: &str) {
                self.path.pop();
            }
            fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
                if self.path.join(".").starts_with("blocks.0.norm") {
                    flag.with_value(false)
                } else {
                    flag
                }
            }
        }
        let device = Device::flex().autodiff();
        let model = config()
            .init(&device, 8)
            .unwrap()
            .map(&mut FreezeFirstNorm { path: Vec::new() });
        assert!(!Classifier::batch_norms(&model)[0].training.is_enabled());
        assert!(Classifier::batch_norms(&model)[1].training.is_enabled());
        let before = moving(&model);
        let mut stats = BatchNormStats::default();
        stats.observe(&model, batch(0, &device)).unwrap();
        stats.apply(&model);
        let after = moving(&model);
        assert_eq!(after[0], before[0]);
        assert_ne!(after[1], before[1]);
    }

    #[test]
    fn an_inference_model_is_refused_and_nothing_observed_changes_nothing() {
        let model = config().init(&Device::flex(), 8).unwrap();
        let mut stats = BatchNormStats::default();
        let err = stats
            .observe(&model, batch(0, &Device::flex()))
            .unwrap_err();
        assert!(matches!(err, ModelError::NotTrainable), "{err}");
        let before = moving(&model);
        assert_eq!(BatchNormStats::default().apply(&model), 0);
        assert_eq!(moving(&model), before);
    }
}
