//! Batches for the model, assembled on a worker thread ahead of it (the `prefetch(2)` of the
//! Keras example's `tf.data` pipeline).
//!
//! Volumes are read from the `prepare` cache on demand (never all held in memory), augmented when
//! training, transposed into the model's `[batch, 1, x, y, z]` order and handed over through a
//! bounded channel, so the next batches are ready while the model computes. The time the model
//! spends waiting for data is measured: in steady state it should be ~0.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ct3d_model::input::copy_in_input_order;
use ct3d_volume::augment::Augmentations;
use ct3d_volume::cache::PreparedItem;
use ct3d_volume::rng::{SplitMix64, derive_seed};

/// Tags that keep the random streams of a run apart (mixed into [`derive_seed`]).
pub mod streams {
    /// The per-epoch shuffle of the training set.
    pub const SHUFFLE: u64 = 0x5348_5546;
    /// The per-step dropout masks.
    pub const DROPOUT: u64 = 0x4452_4f50;
    /// Weight initialisation.
    pub const INIT: u64 = 0x494e_4954;
    /// The per-epoch draws of the class-balanced sampler.
    pub const BALANCED: u64 = 0x4241_4c41;
}

/// One batch: `len` volumes in the model's input order (`[len, 1, x, y, z]`, `z` fastest) and
/// their 0/1 labels.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Voxel values, `len · x · y · z`.
    pub input: Vec<f32>,
    /// One label per volume.
    pub labels: Vec<f32>,
    /// Dataset item indices of the volumes, in order.
    pub items: Vec<usize>,
}

/// Augmentation of a training epoch: the run's list of transforms, applied to each sample with
/// the random stream that the run's seed, the (1-based) epoch number and the sample's index select.
#[derive(Debug, Clone, Copy)]
pub struct Augmentation<'a> {
    /// The transforms, in order.
    pub list: &'a Augmentations,
    /// The run's seed.
    pub seed: u64,
    /// The epoch.
    pub epoch: u64,
}

/// A batch that could not be assembled. One line naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoaderError(String);

/// The order of the training items in `epoch`: a seeded shuffle (the example shuffles every
/// epoch), identical on every run with the same seed.
pub fn epoch_order(train: &[usize], seed: u64, epoch: u64) -> Vec<usize> {
    let mut order = train.to_vec();
    SplitMix64::new(derive_seed(seed, &[streams::SHUFFLE, epoch])).shuffle(&mut order);
    order
}

/// The training items of `epoch` for the class-balanced sampler: `train.len()` draws with
/// replacement, each picking a class with probability ½ (a fair coin; the only class when the
/// other has no training item) and then one of its items uniformly. `labels[i]` is item `i`'s
/// 0/1 label. Identical on every run with the same seed.
pub fn balanced_epoch_order(train: &[usize], labels: &[u8], seed: u64, epoch: u64) -> Vec<usize> {
    let by_class: [Vec<usize>; 2] = [0u8, 1].map(|class| {
        train
            .iter()
            .copied()
            .filter(|&item| labels.get(item).is_some_and(|&l| l.min(1) == class))
            .collect()
    });
    let mut rng = SplitMix64::new(derive_seed(seed, &[streams::BALANCED, epoch]));
    (0..train.len())
        .filter_map(|_| {
            let coin = rng.below(2);
            let class = if by_class[coin].is_empty() {
                1 - coin
            } else {
                coin
            };
            let members = &by_class[class];
            (!members.is_empty()).then(|| members[rng.below(members.len())])
        })
        .collect()
}

/// Reads, augments and transposes the volumes of `indices` into one batch.
pub fn assemble_batch(
    items: &[PreparedItem],
    indices: &[usize],
    size: [usize; 3],
    augmentation: Option<Augmentation<'_>>,
) -> Result<Batch, LoaderError> {
    let voxels: usize = size.iter().product();
    let mut input = vec![0.0f32; voxels * indices.len()];
    let mut labels = Vec::with_capacity(indices.len());
    for (&index, out) in indices.iter().zip(input.chunks_exact_mut(voxels)) {
        let item = &items[index];
        let volume = item
            .load()
            .map_err(|e| LoaderError(ct3d_volume::chain(&e)))?;
        let volume = match augmentation {
            Some(a) => a.list.apply(volume, a.seed, a.epoch, index as u64),
            None => volume,
        };
        copy_in_input_order(&volume, size, out).map_err(|e| {
            LoaderError(format!(
                "{}: cached volume does not fit the model: {e}",
                item.entry.path().display()
            ))
        })?;
        labels.push(f32::from(item.label));
    }
    Ok(Batch {
        input,
        labels,
        items: indices.to_vec(),
    })
}

/// Runs `consume` on every batch of `order` (chunks of `batch_size`, the last one possibly
/// smaller) while a worker thread assembles up to `ahead` batches in advance. Stops at the first
/// error of either side. Returns how long `consume` waited for data in total.
pub fn for_each_batch<E>(
    items: &[PreparedItem],
    order: &[usize],
    batch_size: usize,
    size: [usize; 3],
    augmentation: Option<Augmentation<'_>>,
    ahead: usize,
    mut consume: impl FnMut(Batch) -> Result<(), E>,
) -> Result<Duration, E>
where
    E: From<LoaderError>,
{
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel(ahead.max(1));
        scope.spawn(move || {
            for chunk in order.chunks(batch_size.max(1)) {
                let batch = assemble_batch(items, chunk, size, augmentation);
                let failed = batch.is_err();
                // A closed channel means the consumer stopped early: nothing left to do.
                if sender.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        let mut waited = Duration::ZERO;
        loop {
            let started = Instant::now();
            let Ok(batch) = receiver.recv() else {
                return Ok(waited);
            };
            waited += started.elapsed();
            consume(batch?)?;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let train: Vec<usize> = (10..30).collect();
        let a = epoch_order(&train, 7, 1);
        assert_eq!(a, epoch_order(&train, 7, 1));
        assert_ne!(a, epoch_order(&train, 7, 2));
        assert_ne!(a, epoch_order(&train, 8, 1));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, train);
    }

    /// 2 negatives and 18 positives: the balanced sampler draws each class about half the time,
    /// only training items, as many as there are, and the same on a rerun.
    #[test]
    fn the_balanced_sampler_draws_each_class_half_the_time() {
        let labels: Vec<u8> = (0..40).map(|i| u8::from(i % 10 != 0)).collect();
        let train: Vec<usize> = (0..20).collect();
        let mut negatives = 0;
        let mut draws = 0;
        for epoch in 1..=50 {
            let order = balanced_epoch_order(&train, &labels, 3, epoch);
            assert_eq!(order.len(), train.len());
            assert!(order.iter().all(|item| train.contains(item)));
            assert_eq!(order, balanced_epoch_order(&train, &labels, 3, epoch));
            negatives += order.iter().filter(|&&item| labels[item] == 0).count();
            draws += order.len();
        }
        let share = negatives as f64 / draws as f64;
        assert!((0.45..0.55).contains(&share), "negative share {share}");
        assert_ne!(
            balanced_epoch_order(&train, &labels, 3, 1),
            balanced_epoch_order(&train, &labels, 3, 2)
        );
        // One class only: every draw is of it.
        let positives: Vec<usize> = (1..10).collect();
        let order = balanced_epoch_order(&positives, &labels, 3, 1);
        assert_eq!(order.len(), 9);
        assert!(order.iter().all(|&item| labels[item] == 1));
    }
}
