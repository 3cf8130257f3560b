//! Stratified (and patient-grouped) k-fold assignment for cross-validation.
//!
//! Folds are numbered 1 to K. Every scan is in exactly one fold; fold `i`'s run validates on the
//! scans of fold `i` and trains on all the others.
//!
//! The algorithm, one for both cases:
//!
//! 1. Scans are grouped: all scans of one patient (a manifest's `patient` column) form one group;
//!    a scan without a patient is a group of its own. A group counts its scans per label
//!    (a patient may have scans of both labels).
//! 2. The groups are put in a random order drawn from the run's seed (SplitMix64, stream
//!    [`FOLDS_STREAM`]), then sorted, stably, by size, largest first (big groups are the hard
//!    ones to place, so they go while every fold still has room).
//! 3. Each group in turn goes to the fold where it adds the least squared error to the ideal
//!    per-class counts (`n_c / K` scans of class `c` per fold): the increase
//!    `Σ_c g_c · (2 (count_f,c − n_c / K) + g_c)`, i.e. the fold that most lacks the group's
//!    classes. Ties go to the fold with the fewest scans, then the lowest number.
//!
//! Without patients every group is one scan and step 3 always picks a fold with the fewest
//! scans of that class, so each fold holds `floor(n_c / K)` or `ceil(n_c / K)` scans of each
//! class (and fold sizes differ by at most one) — the classic stratified k-fold. With patients
//! no patient straddles folds, and the per-class counts are as even as the group sizes allow.
//! The assignment depends only on the seed and on the scans' labels, groups and order, so every
//! fold run of one cross-validation (same seed) sees the same partition.
//!
//! Refused: K < 2; K above a class's scan count (some fold would have no scan of that class); and
//! a grouping that leaves a fold without one of the classes (too few patients of a class).

use ct3d_volume::rng::{SplitMix64, derive_seed};

use crate::config::{FoldError, FoldSpec, TrainConfig};
use crate::data::split::{Split, split_by_patient};
use crate::error::TrainError;

/// Tag of the fold-assignment random stream (mixed into the run's seed).
pub const FOLDS_STREAM: u64 = 0x464f_4c44;

/// Assigns each item (with its 0/1 label and optional group) to a fold, 1 to `count`, as the
/// module documentation describes.
pub fn assign_folds(
    labels: &[u8],
    groups: &[Option<String>],
    count: usize,
    seed: u64,
    class_names: [&str; 2],
) -> Result<Vec<usize>, FoldError> {
    assert_eq!(labels.len(), groups.len(), "one group entry per label");
    if count < 2 {
        return Err(FoldError::TooFewFolds(count));
    }
    let mut totals = [0usize; 2];
    for &label in labels {
        totals[usize::from(label != 0)] += 1;
    }
    for class in 0..2 {
        if totals[class] < count {
            return Err(FoldError::ClassTooSmall {
                class: class_names[class].to_owned(),
                scans: totals[class],
                count,
            });
        }
    }
    let members = crate::data::split::patient_groups(labels, groups);
    let mut order: Vec<usize> = (0..members.len()).collect();
    SplitMix64::new(derive_seed(seed, &[FOLDS_STREAM, count as u64])).shuffle(&mut order);
    order.sort_by_key(|&g| std::cmp::Reverse(members[g].0.len()));

    let ideal = [
        totals[0] as f64 / count as f64,
        totals[1] as f64 / count as f64,
    ];
    let mut per_fold = vec![[0usize; 2]; count];
    let mut fold_of = vec![0usize; labels.len()];
    for g in order {
        let (items, counts) = &members[g];
        let cost = |f: usize| -> f64 {
            (0..2)
                .map(|c| {
                    let g = counts[c] as f64;
                    g * (2.0 * (per_fold[f][c] as f64 - ideal[c]) + g)
                })
                .sum()
        };
        let best = (0..count)
            .min_by(|&a, &b| {
                cost(a)
                    .total_cmp(&cost(b))
                    .then((per_fold[a][0] + per_fold[a][1]).cmp(&(per_fold[b][0] + per_fold[b][1])))
                    .then(a.cmp(&b))
            })
            .unwrap_or(0);
        per_fold[best][0] += counts[0];
        per_fold[best][1] += counts[1];
        for &i in items {
            fold_of[i] = best + 1;
        }
    }
    for (f, fold_counts) in per_fold.iter().enumerate() {
        for class in 0..2 {
            if fold_counts[class] == 0 {
                return Err(FoldError::GroupsTooFew {
                    count,
                    fold: f + 1,
                    class: class_names[class].to_owned(),
                    patients: members.iter().filter(|(_, c)| c[class] > 0).count(),
                });
            }
        }
    }
    Ok(fold_of)
}

/// The train / validation split of fold `spec.fold`: validation is that fold, training all the
/// others; both in item order, negatives first like [`crate::data::split::split_per_class`].
pub fn fold_split(
    labels: &[u8],
    groups: &[Option<String>],
    spec: FoldSpec,
    seed: u64,
    class_names: [&str; 2],
) -> Result<Split, FoldError> {
    spec.validate()?;
    let fold_of = assign_folds(labels, groups, spec.count, seed, class_names)?;
    let mut split = Split {
        train: Vec::new(),
        validation: Vec::new(),
    };
    for class in 0..2u8 {
        for i in (0..labels.len()).filter(|&i| labels[i] == class) {
            if fold_of[i] == spec.fold {
                split.validation.push(i);
            } else {
                split.train.push(i);
            }
        }
    }
    Ok(split)
}

/// The train / validation split a new run uses: fold `i` of K when the configuration asks for
/// k-fold cross-validation (this module), else the per-class split of
/// [`split_by_patient`] (without patients: the Keras example's). `patients` has one entry per
/// label. A run, once started, keeps the split its `config.json` records ([`crate::data::source::recorded_split`]).
pub fn run_split(
    labels: &[u8],
    patients: &[Option<String>],
    config: &TrainConfig,
) -> Result<Split, TrainError> {
    let class_names = [
        config.classes.negative_folder.as_str(),
        config.classes.positive_folder.as_str(),
    ];
    Ok(match config.folds {
        Some(spec) => fold_split(labels, patients, spec, config.seed, class_names)?,
        None => split_by_patient(labels, patients, class_names, config.train_fraction)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const NAMES: [&str; 2] = ["CT-0", "CT-23"];

    fn labels(negatives: usize, positives: usize) -> Vec<u8> {
        (0..negatives + positives)
            .map(|i| u8::from(i >= negatives))
            .collect()
    }

    fn per_fold(labels: &[u8], folds: &[usize], k: usize) -> Vec<[usize; 2]> {
        let mut counts = vec![[0usize; 2]; k];
        for (&l, &f) in labels.iter().zip(folds) {
            counts[f - 1][usize::from(l)] += 1;
        }
        counts
    }

    #[test]
    fn stratified_without_groups_within_one_of_ideal() {
        for (n0, n1, k) in [
            (10, 10, 2),
            (13, 7, 3),
            (100, 100, 5),
            (31, 9, 4),
            (5, 5, 5),
        ] {
            for seed in 0..5 {
                let labels = labels(n0, n1);
                let groups = vec![None; labels.len()];
                let folds = assign_folds(&labels, &groups, k, seed, NAMES).unwrap();
                assert!(folds.iter().all(|&f| (1..=k).contains(&f)));
                let counts = per_fold(&labels, &folds, k);
                for c in 0..2 {
                    let ideal = [n0, n1][c] as f64 / k as f64;
                    for fold in &counts {
                        assert!(
                            (fold[c] as f64 - ideal).abs() < 1.0,
                            "{n0}/{n1} k={k} seed={seed}: {counts:?}"
                        );
                    }
                }
                let sizes: Vec<usize> = counts.iter().map(|c| c[0] + c[1]).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "fold sizes {sizes:?}");
            }
        }
    }

    #[test]
    fn every_item_validates_exactly_once() {
        let labels = labels(11, 8);
        let groups = vec![None; labels.len()];
        let k = 4;
        let mut seen = vec![0usize; labels.len()];
        for fold in 1..=k {
            let split =
                fold_split(&labels, &groups, FoldSpec { count: k, fold }, 7, NAMES).unwrap();
            assert_eq!(split.train.len() + split.validation.len(), labels.len());
            for &i in &split.validation {
                seen[i] += 1;
                assert!(!split.train.contains(&i));
            }
            // Both classes on both sides.
            for part in [&split.train, &split.validation] {
                assert!(part.iter().any(|&i| labels[i] == 0));
                assert!(part.iter().any(|&i| labels[i] == 1));
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
    }

    #[test]
    fn deterministic_per_seed_and_seed_dependent() {
        let labels = labels(20, 20);
        let groups = vec![None; labels.len()];
        let a = assign_folds(&labels, &groups, 5, 3, NAMES).unwrap();
        assert_eq!(a, assign_folds(&labels, &groups, 5, 3, NAMES).unwrap());
        assert_ne!(a, assign_folds(&labels, &groups, 5, 4, NAMES).unwrap());
    }

    #[test]
    fn patients_never_straddle_folds() {
        // 30 patients with 1 to 4 scans each, some with both labels.
        let mut labels = Vec::new();
        let mut groups = Vec::new();
        for p in 0..30usize {
            for s in 0..(p % 4 + 1) {
                labels.push(u8::from((p + s / 3) % 2 == 1));
                groups.push(Some(format!("P{p}")));
            }
        }
        // And a few scans without a patient.
        for i in 0..6 {
            labels.push(u8::from(i % 2 == 0));
            groups.push(None);
        }
        for seed in 0..10 {
            let k = 3;
            let folds = assign_folds(&labels, &groups, k, seed, NAMES).unwrap();
            let mut fold_of_patient: HashMap<&str, usize> = HashMap::new();
            for (g, &f) in groups.iter().zip(&folds) {
                if let Some(p) = g {
                    assert_eq!(*fold_of_patient.entry(p).or_insert(f), f, "patient {p}");
                }
            }
            let counts = per_fold(&labels, &folds, k);
            let n1 = labels.iter().filter(|&&l| l == 1).count();
            let ideal1 = n1 as f64 / k as f64;
            for fold in &counts {
                assert!(fold[0] > 0 && fold[1] > 0, "{counts:?}");
                // Groups hold at most 4 scans: the greedy stays within that of the ideal.
                assert!((fold[1] as f64 - ideal1).abs() <= 4.0, "{counts:?}");
            }
        }
    }

    #[test]
    fn too_many_folds_or_too_few_are_errors() {
        let labels = labels(10, 3);
        let groups = vec![None; labels.len()];
        let err = assign_folds(&labels, &groups, 4, 0, NAMES).unwrap_err();
        assert_eq!(
            err,
            FoldError::ClassTooSmall {
                class: "CT-23".into(),
                scans: 3,
                count: 4
            }
        );
        assert!(err.to_string().contains("use 3 folds or fewer"), "{err}");
        assert!(assign_folds(&labels, &groups, 3, 0, NAMES).is_ok());
        for k in [0, 1] {
            assert_eq!(
                assign_folds(&labels, &groups, k, 0, NAMES).unwrap_err(),
                FoldError::TooFewFolds(k)
            );
        }
        let spec = FoldSpec { count: 3, fold: 4 };
        assert!(spec.validate().unwrap_err().to_string().contains("1 to 3"));
        assert!(FoldSpec { count: 3, fold: 0 }.validate().is_err());
        assert!(FoldSpec { count: 3, fold: 3 }.validate().is_ok());
    }

    #[test]
    fn one_patient_holding_a_class_cannot_fill_two_folds() {
        // Every positive scan belongs to the same patient.
        let labels = labels(6, 3);
        let groups: Vec<Option<String>> = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                Some(if l == 1 {
                    "P".to_owned()
                } else {
                    format!("N{i}")
                })
            })
            .collect();
        let err = assign_folds(&labels, &groups, 2, 0, NAMES).unwrap_err();
        assert!(
            matches!(&err, FoldError::GroupsTooFew { class, patients: 1, .. } if class == "CT-23"),
            "{err:?}"
        );
    }
}
