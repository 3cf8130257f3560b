//! The model can learn: eight separable 48×48×48 volumes (class 1 holds a bright cube) reach
//! training accuracy 1.0 (Keras's `acc`, measured in training mode) with a mean epoch loss
//! below 0.1 within a bounded number of epochs.
//!
//! Uses the seed's architecture, head, Adam and schedule with two changes that keep it at a
//! few seconds on two cores: fewer filters (8, 8, 16, 16 instead of 64, 64, 128, 256; with the
//! seed's filters one epoch here costs ~60 GFLOP, about a minute on burn's flex backend) and
//! ten times the seed's learning rate (at 1e-4 the loss is still ~0.3 after 40 epochs).
//!
//! Inference-mode accuracy is not asserted: with Keras's BatchNorm momentum 0.99 the moving
//! statistics still carry 0.99^160 ≈ 20% of their initial values (mean 0, variance 1) after
//! these 160 steps, and the model predicts one class for everything, as the seed's own early
//! epochs do (val_acc ≈ 0.5). The moving-statistics update itself is tested exactly in
//! `model.rs`.

use crate::common::{default_kernels, pseudo_random};
use burn::tensor::Device;
use ct3d_model::input::batch_tensor;
use ct3d_model::{Adam, AdamConfig, ExponentialDecay, ModelConfig, train_step};

const SIZE: usize = 48;
const MAX_EPOCHS: usize = 40;

/// Volume `index` in input order: noise in [0, 0.25), plus a 12³ cube of +0.75 for class 1 at
/// a position that varies with the index.
fn volume(index: usize, positive: bool) -> Vec<f32> {
    let mut data = pseudo_random(1000 + index as u64, SIZE * SIZE * SIZE);
    data.iter_mut().for_each(|v| *v *= 0.25);
    if positive {
        let corner = [4 + 3 * index % 30, 30 - 3 * index % 25, 8 + 5 * index % 28];
        for x in corner[0]..corner[0] + 12 {
            for y in corner[1]..corner[1] + 12 {
                for z in corner[2]..corner[2] + 12 {
                    data[(x * SIZE + y) * SIZE + z] += 0.75;
                }
            }
        }
    }
    data
}

#[test]
fn eight_separable_volumes_reach_training_accuracy_one_and_low_loss() {
    let _kernels = default_kernels();
    let config = ModelConfig {
        input: [SIZE; 3],
        filters: vec![8, 8, 16, 16],
        ..ModelConfig::default()
    };
    let device = Device::flex().autodiff();
    let mut model = config.init(&device, 2024).unwrap();
    let mut adam = Adam::new(AdamConfig::default());
    let schedule = ExponentialDecay::default();
    let labels: Vec<f32> = (0..8).map(|i| (i % 2) as f32).collect();
    let volumes: Vec<Vec<f32>> = (0..8).map(|i| volume(i, labels[i] == 1.0)).collect();

    let mut history = Vec::new();
    for epoch in 0..MAX_EPOCHS {
        let mut correct = 0;
        let mut loss = 0.0;
        // Batches of two as in the seed, in a different order each epoch (so some batches hold
        // one class only and batch statistics alone cannot separate them).
        let order = shuffled(epoch as u64);
        for batch in 0..4 {
            let (a, b) = (order[2 * batch], order[2 * batch + 1]);
            let data = [volumes[a].as_slice(), volumes[b].as_slice()].concat();
            let input = batch_tensor(data, 2, config.input, &device).unwrap();
            let lr = 10.0 * schedule.learning_rate(adam.iterations());
            let seed = (epoch * 4 + batch) as u64;
            let outcome =
                train_step(model, &mut adam, input, &[labels[a], labels[b]], lr, seed).unwrap();
            correct += outcome.correct;
            loss += outcome.loss / 4.0;
            model = outcome.model;
        }
        history.push((loss, correct));
        if correct == 8 && loss < 0.1 {
            println!("fitted after {} epochs: {history:?}", epoch + 1);
            return;
        }
    }
    panic!("no epoch fitted all 8 in {MAX_EPOCHS}: (loss, correct) {history:?}");
}

/// A permutation of 0..8 that depends on `seed` (Fisher–Yates with an LCG).
fn shuffled(seed: u64) -> [usize; 8] {
    let mut order = [0, 1, 2, 3, 4, 5, 6, 7];
    let random = pseudo_random(seed, 8);
    for i in (1..8).rev() {
        let j = (random[i] * (i + 1) as f32) as usize;
        order.swap(i, j.min(i));
    }
    order
}
