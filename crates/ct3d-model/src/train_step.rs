//! One optimisation step and inference, as Keras's `model.fit` / `model.predict` do them for the
//! seed: binary cross-entropy on logits, Keras's Adam, the exponential-decay learning rate,
//! binary accuracy, dropout during training only.
//!
//! # Adam: Keras's formula, not burn's
//! Keras 3 (`keras/src/optimizers/adam.py`) updates, with `t` = iterations + 1:
//! ```text
//! α = lr · sqrt(1 − β2ᵗ) / (1 − β1ᵗ)
//! m ← m + (g − m)(1 − β1);  v ← v + (g² − v)(1 − β2)
//! θ ← θ − α · m / (sqrt(v) + ε)
//! ```
//! i.e. the bias correction is folded into the step size and ε is added to the *uncorrected*
//! `sqrt(v)`. burn's `AdamConfig` (burn-optim 0.22.1, `optim/adam.rs`) computes
//! `m̂ / (sqrt(v̂) + ε)` with both moments corrected, which equals Keras only with
//! `ε_burn = ε_keras / sqrt(1 − β2ᵗ)` — a different ε every step (3.2e-6 instead of 1e-7 at
//! step 1), so no constant setting matches. [`Adam`] therefore implements Keras's update
//! itself, in `f32` like Keras, which also makes its state (keyed by layer name) easy to save
//! and resume.
//!
//! # Randomness
//! The dropout mask of a step is drawn from the crate's generator seeded with the caller's
//! `dropout_seed`, so a training loop that derives it from (run seed, step) reproduces every
//! step exactly, including after a resume, on any device.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};

use crate::architecture::Classifier;
use crate::seed_cnn::{Model, ModelError};
use ct3d_volume::rng::SplitMix64;

/// Keras `ExponentialDecay`: `initial · rate^(step / decay_steps)`, the exponent floored when
/// `staircase`. `step` counts optimizer updates already applied (Keras's `optimizer.iterations`,
/// 0 for the first batch).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExponentialDecay {
    /// Learning rate at step 0.
    pub initial: f64,
    /// Steps per decay period.
    pub decay_steps: u64,
    /// Factor per period.
    pub rate: f64,
    /// Decay in whole periods (a step function) rather than continuously.
    pub staircase: bool,
}

impl Default for ExponentialDecay {
    /// The seed's schedule: 1e-4, ×0.96 every 100 000 steps, staircase.
    fn default() -> Self {
        Self {
            initial: 1e-4,
            decay_steps: 100_000,
            rate: 0.96,
            staircase: true,
        }
    }
}

impl ExponentialDecay {
    /// The learning rate for the update after `step` earlier updates.
    pub fn learning_rate(&self, step: u64) -> f64 {
        let periods = step as f64 / self.decay_steps.max(1) as f64;
        let periods = if self.staircase {
            periods.floor()
        } else {
            periods
        };
        self.initial * self.rate.powf(periods)
    }
}

/// Adam hyper-parameters; [`Default`] is Keras's (β1 0.9, β2 0.999, ε 1e-7).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Decay of the first moment.
    pub beta_1: f32,
    /// Decay of the second moment.
    pub beta_2: f32,
    /// Added to `sqrt(v)` (Keras's placement, see the module docs).
    pub epsilon: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// First and second moment of one parameter, flattened (`[numel]`, burn's element order).
#[derive(Clone, Debug)]
pub(crate) struct Moments {
    pub(crate) m: Tensor<1>,
    pub(crate) v: Tensor<1>,
    /// The parameter's burn shape.
    pub(crate) shape: Vec<usize>,
}

/// Keras's Adam over any burn module (a [`crate::Network`] or [`Model`] in practice); state is keyed by the
/// parameter's module path (`blocks.0.conv.weight`, …), which is stable across processes.
#[derive(Clone, Debug)]
pub struct Adam {
    config: AdamConfig,
    iterations: u64,
    pub(crate) moments: HashMap<String, Moments>,
}

impl Adam {
    /// A fresh optimizer (zero moments, zero iterations).
    pub fn new(config: AdamConfig) -> Self {
        Self {
            config,
            iterations: 0,
            moments: HashMap::new(),
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> AdamConfig {
        self.config
    }

    /// Updates applied so far (Keras's `optimizer.iterations`).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    pub(crate) fn restore(
        config: AdamConfig,
        iterations: u64,
        moments: HashMap<String, Moments>,
    ) -> Self {
        Self {
            config,
            iterations,
            moments,
        }
    }

    /// Applies one update with learning rate `lr` to every parameter of `module` that has a
    /// gradient in `grads` (BatchNorm moving statistics have none and stay as they are).
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: Gradients) -> M {
        let t = (self.iterations + 1) as f32;
        let AdamConfig {
            beta_1,
            beta_2,
            epsilon,
        } = self.config;
        let alpha = lr as f32 * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t));
        let mut mapper = AdamMapper {
            path: Vec::new(),
            grads,
            moments: &mut self.moments,
            alpha,
            beta_1,
            beta_2,
            epsilon,
        };
        let module = module.map(&mut mapper);
        self.iterations += 1;
        module
    }
}

struct AdamMapper<'a> {
    path: Vec<String>,
    grads: Gradients,
    moments: &'a mut HashMap<String, Moments>,
    alpha: f32,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

impl ModuleMapper for AdamMapper<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let grad = match tensor.is_require_grad() {
            true => tensor.grad_remove(&mut self.grads),
            false => None,
        };
        let Some(grad) = grad else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.dims();
        let numel = shape.iter().product::<usize>();
        let grad: Tensor<1> = grad.reshape([numel]);
        let key = self.path.join(".");
        let Moments { m, v, .. } = self.moments.remove(&key).unwrap_or_else(|| Moments {
            m: Tensor::zeros([numel], &grad.device()),
            v: Tensor::zeros([numel], &grad.device()),
            shape: Vec::new(),
        });
        // Keras's algebraic form, m + (g − m)(1 − β1), for identical rounding.
        let m = m.clone() + (grad.clone() - m).mul_scalar(1.0 - self.beta_1);
        let v = v.clone() + (grad.square() - v).mul_scalar(1.0 - self.beta_2);
        let update = m.clone().mul_scalar(self.alpha) / v.clone().sqrt().add_scalar(self.epsilon);
        let value: Tensor<1> = tensor.inner().reshape([numel]);
        let updated = Tensor::from_inner((value - update).reshape(shape)).require_grad();
        let shape = shape.to_vec();
        self.moments.insert(key, Moments { m, v, shape });
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// Mean binary cross-entropy of `labels` (0 or 1) given `logits`, computed stably as
/// `max(z, 0) − z·y + log(1 + exp(−|z|))`, TensorFlow's `sigmoid_cross_entropy_with_logits`.
///
/// As there, `max(z, 0)` and `−|z|` take their branches from one mask `z ≥ 0`, so the gradient
/// is exactly `σ(z) − y` also at `z = 0`, where separate `max` and `abs` subgradients would
/// give `1 − y`.
///
/// # Shapes
/// - `logits`, `labels`: `[batch, 1]`
/// - output: `[1]`
pub fn binary_cross_entropy_with_logits(logits: Tensor<2>, labels: Tensor<2>) -> Tensor<1> {
    let non_negative = logits.clone().greater_equal_elem(0.0).float(); // 1 where z ≥ 0
    let positive_part = logits.clone() * non_negative.clone(); // max(z, 0)
    let minus_abs = logits.clone() * non_negative.mul_scalar(-2.0).add_scalar(1.0); // −|z|
    (positive_part - logits * labels + minus_abs.exp().log1p()).mean()
}

/// [`binary_cross_entropy_with_logits`] with a weight per volume, reduced as Keras reduces a
/// loss with `class_weight`/`sample_weight` ("sum over batch size"): `Σ wᵢ·lᵢ / batch`, not a
/// weighted average, so that weights that are all 1 give the plain mean.
///
/// # Shapes
/// - `logits`, `labels`, `weights`: `[batch, 1]`
/// - output: `[1]`
pub fn weighted_binary_cross_entropy_with_logits(
    logits: Tensor<2>,
    labels: Tensor<2>,
    weights: Tensor<2>,
) -> Tensor<1> {
    let non_negative = logits.clone().greater_equal_elem(0.0).float();
    let positive_part = logits.clone() * non_negative.clone();
    let minus_abs = logits.clone() * non_negative.mul_scalar(-2.0).add_scalar(1.0);
    ((positive_part - logits * labels + minus_abs.exp().log1p()) * weights).mean()
}

/// Keras `binary_accuracy` on logits: a prediction is class 1 when its probability exceeds 0.5,
/// i.e. when its logit is positive. Returns the number of correct predictions.
pub fn count_correct(logits: &[f32], labels: &[f32]) -> usize {
    logits
        .iter()
        .zip(labels)
        .filter(|&(&logit, &label)| (logit > 0.0) == (label > 0.5))
        .count()
}

/// The result of [`train_step`].
#[derive(Debug)]
pub struct StepOutcome<C = Model> {
    /// The updated model.
    pub model: C,
    /// Mean binary cross-entropy of the batch, before the update.
    pub loss: f32,
    /// Correct predictions in the batch, before the update (Keras's training `acc` numerator).
    pub correct: usize,
}

/// One Keras training step: forward in training mode (batch statistics, dropout), loss,
/// backward, Adam update with learning rate `lr`.
///
/// `model` is any network ([`crate::Network`], or a concrete one such as [`Model`]); `input` is
/// `[batch, 1, x, y, z]` (see [`crate::input`]); `labels` has one 0/1 value per volume;
/// `dropout_seed` fixes this step's dropout mask. The model must be on an autodiff device.
/// Runs synchronously: the loss is read back before returning.
pub fn train_step<C: Classifier>(
    model: C,
    optimizer: &mut Adam,
    input: Tensor<5>,
    labels: &[f32],
    lr: f64,
    dropout_seed: u64,
) -> Result<StepOutcome<C>, ModelError> {
    train_step_weighted(model, optimizer, input, labels, None, lr, dropout_seed)
}

/// [`train_step`] with a loss weight per volume (`sample_weights`, one per label, as Keras's
/// `class_weight` gives each sample its class's weight), reduced as in
/// [`weighted_binary_cross_entropy_with_logits`]. `None` is exactly [`train_step`]'s unweighted
/// loss (the same operations, so runs without weights keep their numbers bit for bit).
pub fn train_step_weighted<C: Classifier>(
    model: C,
    optimizer: &mut Adam,
    input: Tensor<5>,
    labels: &[f32],
    sample_weights: Option<&[f32]>,
    lr: f64,
    dropout_seed: u64,
) -> Result<StepOutcome<C>, ModelError> {
    if !model.is_trainable() {
        return Err(ModelError::NotTrainable);
    }
    let batch = model.check_input(&input)?;
    if labels.len() != batch {
        return Err(ModelError::LabelCount {
            batch,
            labels: labels.len(),
        });
    }
    let device = input.device();
    let logits = match model.dropout() {
        Some(dropout) => {
            let keep_mask = dropout_mask(batch, dropout.units, dropout.rate, dropout_seed, &device);
            model.forward_with_dropout(input, keep_mask) // [batch, 1]
        }
        None => model.forward(input), // [batch, 1]
    };
    let targets = Tensor::<2>::from_data(TensorData::new(labels.to_vec(), [batch, 1]), &device);
    let loss = match sample_weights {
        None => binary_cross_entropy_with_logits(logits.clone(), targets),
        Some(weights) => {
            if weights.len() != batch {
                return Err(ModelError::LabelCount {
                    batch,
                    labels: weights.len(),
                });
            }
            let weights =
                Tensor::<2>::from_data(TensorData::new(weights.to_vec(), [batch, 1]), &device);
            weighted_binary_cross_entropy_with_logits(logits.clone(), targets, weights)
        }
    };
    let grads = loss.backward();
    let loss_value = loss.into_scalar::<f32>();
    let logit_values = host_values(logits);
    let model = optimizer.step(lr, model, grads);
    model.sync_moving_stats();
    Ok(StepOutcome {
        model,
        loss: loss_value,
        correct: count_correct(&logit_values, labels),
    })
}

/// Keras's inverted dropout mask `[batch, units]`: each entry `1 / (1 − rate)` with probability
/// `1 − rate`, else 0.
fn dropout_mask(batch: usize, units: usize, rate: f64, seed: u64, device: &Device) -> Tensor<2> {
    let keep = 1.0 - rate;
    let scale = (1.0 / keep) as f32;
    let mut rng = SplitMix64::new(seed);
    let values = (0..batch * units)
        .map(|_| {
            if f64::from(rng.next_f32()) < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [batch, units]), device)
}

/// Probabilities of class 1 (sigmoid of the logits) for each volume of `input`, in inference
/// mode: BatchNorm uses its moving statistics and there is no dropout, whatever device the
/// model is on.
pub fn predict_proba<C: Classifier>(model: &C, input: Tensor<5>) -> Result<Vec<f32>, ModelError> {
    model.check_input(&input)?;
    let model = model.valid();
    let logits = model.forward(input.without_autodiff());
    Ok(host_values(logits)
        .into_iter()
        .map(|z| (1.0 / (1.0 + (-f64::from(z)).exp())) as f32)
        .collect())
}

fn host_values(logits: Tensor<2>) -> Vec<f32> {
    logits
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("a float tensor reads back as f32")
}

/// Freezes (`frozen`) or unfreezes every parameter outside the network's head
/// ([`Classifier::is_head`]): a frozen parameter gets no gradient, so [`train_step`] leaves it
/// as it is and Adam keeps no moments for it. BatchNorm moving statistics are not parameters and
/// keep following the batches while frozen, as in PyTorch with `requires_grad = False`.
pub fn freeze_encoder<C: Classifier>(model: C, frozen: bool) -> C {
    struct Freezer<C> {
        path: Vec<String>,
        frozen: bool,
        marker: std::marker::PhantomData<C>,
    }
    impl<C: Classifier> ModuleMapper for Freezer<C> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let module_path = self.path.join(".");
            // Moving statistics never take gradients; leave them as burn made them.
            let trainable = C::param_name(&module_path).is_some_and(|name| name.trainable);
            if !trainable || C::is_head(&module_path) {
                return param;
            }
            param.set_require_grad(!self.frozen)
        }
    }
    model.map(&mut Freezer::<C> {
        path: Vec::new(),
        frozen,
        marker: std::marker::PhantomData,
    })
}
