//! The default train/validation split: per class, the first 70 % in dataset order train and the
//! rest validate — exactly the Keras example's split when there are no patients (it takes
//! `scans[:70]` of 100 sorted file names per class).
//!
//! With patients (a manifest's `patient` column), a patient's scans never straddle training and
//! validation. The rule, one for both cases and without randomness:
//!
//! 1. Each class `c` gets a training target `t_c = floor(n_c · fraction)` (a tiny tolerance makes
//!    70 % of 100 exactly 70); it must leave at least one training and one validation scan.
//! 2. Scans are grouped: all scans of one patient form one group (a patient may have scans of both
//!    classes); a scan without a patient is a group of its own. Groups are walked in dataset
//!    order (the order of their first scan), and a group goes to training when adding it keeps
//!    every class at or under its target; otherwise it validates. The walk goes on past a group
//!    that did not fit, so a later, smaller group may still fill the target.
//! 3. A class left without a training scan (every group holding it was too big) gets the
//!    smallest validation group holding it (the first such in dataset order on a tie), as long as
//!    validation keeps a scan of each class; if no group can move, the split is refused
//!    ([`SplitError::TooFewPatients`]).
//!
//! Without patients every group is one scan and step 2 takes exactly the first `t_c` scans of each
//! class — today's split, unchanged (and so is a manifest whose patients are all different).
//! Training never exceeds a class's target except by step 3's move, so validation always keeps at
//! least `n_c − t_c` scans of each class; with patients the training part can fall short of the
//! target when the groups do not add up to it ("stratified as far as the groups allow").

use std::collections::{HashMap, HashSet};

/// Indices into a dataset's item list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training items: negatives first, then positives, each in dataset order.
    pub train: Vec<usize>,
    /// Validation items, same ordering.
    pub validation: Vec<usize>,
}

impl Split {
    /// The split that puts the items with `in_train[i]` into training and the others into
    /// validation, in this module's order (negatives first, then positives, each in dataset
    /// order) — the order the training loop's seeded shuffle starts from.
    pub fn from_assignment(labels: &[u8], in_train: &[bool]) -> Self {
        assert_eq!(labels.len(), in_train.len(), "one assignment per label");
        let mut split = Split {
            train: Vec::new(),
            validation: Vec::new(),
        };
        for class in 0..2u8 {
            for i in (0..labels.len()).filter(|&i| labels[i] == class) {
                if in_train[i] {
                    split.train.push(i);
                } else {
                    split.validation.push(i);
                }
            }
        }
        split
    }
}

/// A split that would leave a class without training or validation scans.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// The class has too few scans for the fraction.
    #[error(
        "class {class:?} has {count} {}: too few for a {percent}% training split \
         (each class needs at least one training and one validation scan)",
        if *count == 1 { "scan" } else { "scans" }
    )]
    TooFewScans {
        /// The class name.
        class: String,
        /// How many scans it has.
        count: usize,
        /// The training fraction, in percent.
        percent: f64,
    },
    /// The class's scans belong to too few patients to keep each patient on one side and still
    /// have the class in both training and validation.
    #[error(
        "class {class:?}: its {count} scans belong to {patients} patient(s), too few to keep each \
         patient's scans together with {class:?} scans in both training and validation \
         (a {percent}% training split); add patients of that class"
    )]
    TooFewPatients {
        /// The class name.
        class: String,
        /// How many scans it has.
        count: usize,
        /// How many patients (groups) hold scans of it.
        patients: usize,
        /// The training fraction, in percent.
        percent: f64,
    },
}

impl SplitError {
    /// The class that cannot be split.
    pub fn class(&self) -> &str {
        match self {
            Self::TooFewScans { class, .. } | Self::TooFewPatients { class, .. } => class,
        }
    }
}

/// Splits items with `labels` (0 or 1, in dataset order, which is sorted by file name within a
/// class) so that the first `train_fraction` of each class trains: the split without patients.
///
/// The count per class is `floor(n · fraction)` with a tiny tolerance, so 70 % of 100 is 70 even
/// though `100.0 * 0.7` is 70.00000000000001 in floating point.
pub fn split_per_class(
    labels: &[u8],
    class_names: [&str; 2],
    train_fraction: f64,
) -> Result<Split, SplitError> {
    split_by_patient(
        labels,
        &vec![None; labels.len()],
        class_names,
        train_fraction,
    )
}

/// The split of the module documentation: per class `floor(n · train_fraction)` training scans,
/// filled by whole patient groups in dataset order. `patients` has one entry per label; `None` is
/// a scan of its own.
pub fn split_by_patient(
    labels: &[u8],
    patients: &[Option<String>],
    class_names: [&str; 2],
    train_fraction: f64,
) -> Result<Split, SplitError> {
    assert_eq!(labels.len(), patients.len(), "one patient entry per label");
    let class_of = |label: u8| usize::from(label != 0);
    let mut totals = [0usize; 2];
    for &label in labels {
        totals[class_of(label)] += 1;
    }
    let percent = train_fraction * 100.0;
    let mut targets = [0usize; 2];
    for class in 0..2 {
        let target = ((totals[class] as f64) * train_fraction + 1e-9).floor() as usize;
        if target == 0 || target >= totals[class] {
            return Err(SplitError::TooFewScans {
                class: class_names[class].to_owned(),
                count: totals[class],
                percent,
            });
        }
        targets[class] = target;
    }

    let groups = patient_groups(labels, patients);

    let mut in_train = vec![false; groups.len()];
    let mut trained = [0usize; 2];
    for (g, (_, counts)) in groups.iter().enumerate() {
        if (0..2).all(|c| trained[c] + counts[c] <= targets[c]) {
            in_train[g] = true;
            trained[0] += counts[0];
            trained[1] += counts[1];
        }
    }
    for class in 0..2 {
        if trained[class] > 0 {
            continue;
        }
        let validating = |c: usize| totals[c] - trained[c];
        let movable = groups
            .iter()
            .enumerate()
            .filter(|(g, (_, counts))| {
                !in_train[*g] && counts[class] > 0 && (0..2).all(|c| validating(c) > counts[c])
            })
            .min_by_key(|(g, (members, _))| (members.len(), *g))
            .map(|(g, _)| g);
        match movable {
            Some(g) => {
                in_train[g] = true;
                trained[0] += groups[g].1[0];
                trained[1] += groups[g].1[1];
            }
            None => {
                return Err(SplitError::TooFewPatients {
                    class: class_names[class].to_owned(),
                    count: totals[class],
                    patients: groups.iter().filter(|(_, c)| c[class] > 0).count(),
                    percent,
                });
            }
        }
    }

    let mut item_in_train = vec![false; labels.len()];
    for (g, (members, _)) in groups.iter().enumerate() {
        for &i in members {
            item_in_train[i] = in_train[g];
        }
    }
    Ok(Split::from_assignment(labels, &item_in_train))
}

/// How a split divides patients, for reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatientSplitSummary {
    /// Patients with training scans (a scan without a patient counts as one).
    pub train_patients: usize,
    /// Training scans.
    pub train_scans: usize,
    /// Patients with validation scans.
    pub validation_patients: usize,
    /// Validation scans.
    pub validation_scans: usize,
}

impl PatientSplitSummary {
    /// The patients on each side of `split`; `None` when no scan has a patient.
    pub fn of(split: &Split, patients: &[Option<String>]) -> Option<Self> {
        if patients.iter().all(Option::is_none) {
            return None;
        }
        let count = |part: &[usize]| {
            let named: HashSet<&str> = part
                .iter()
                .filter_map(|&i| patients[i].as_deref())
                .collect();
            let unnamed = part.iter().filter(|&&i| patients[i].is_none()).count();
            named.len() + unnamed
        };
        Some(Self {
            train_patients: count(&split.train),
            train_scans: split.train.len(),
            validation_patients: count(&split.validation),
            validation_scans: split.validation.len(),
        })
    }
}

/// The items grouped by patient, in first-appearance order: each group's item indices and its
/// count of negatives and positives. An item without a patient is a group of its own. Shared by
/// this split and the k-fold assignment ([`crate::data::folds`]).
pub(crate) fn patient_groups(
    labels: &[u8],
    patients: &[Option<String>],
) -> Vec<(Vec<usize>, [usize; 2])> {
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(Vec<usize>, [usize; 2])> = Vec::new();
    for (i, (&label, patient)) in labels.iter().zip(patients).enumerate() {
        let slot = match patient {
            Some(name) => *group_of.entry(name.as_str()).or_insert_with(|| {
                groups.push((Vec::new(), [0, 0]));
                groups.len() - 1
            }),
            None => {
                groups.push((Vec::new(), [0, 0]));
                groups.len() - 1
            }
        };
        groups[slot].0.push(i);
        groups[slot].1[usize::from(label != 0)] += 1;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_split_of_100_per_class() {
        let labels: Vec<u8> = (0..200).map(|i| u8::from(i >= 100)).collect();
        let s = split_per_class(&labels, ["CT-0", "CT-23"], 0.7).unwrap();
        assert_eq!(s.train.len(), 140);
        assert_eq!(s.validation.len(), 60);
        assert_eq!(&s.train[..70], &(0..70).collect::<Vec<_>>()[..]);
        assert_eq!(&s.validation[..30], &(70..100).collect::<Vec<_>>()[..]);
        assert_eq!(&s.train[70..], &(100..170).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn interleaved_labels_keep_dataset_order() {
        let labels = [1, 0, 1, 0, 1, 0];
        let s = split_per_class(&labels, ["a", "b"], 0.5).unwrap();
        assert_eq!(s.train, vec![1, 0]);
        assert_eq!(s.validation, vec![3, 5, 2, 4]);
    }

    #[test]
    fn too_few_scans_is_an_error_naming_the_class() {
        let err = split_per_class(&[0, 0, 0, 1], ["CT-0", "CT-23"], 0.7).unwrap_err();
        assert_eq!(err.class(), "CT-23");
        assert!(err.to_string().contains("\"CT-23\" has 1 scan:"), "{err}");
        assert!(split_per_class(&[0, 0, 1, 1], ["a", "b"], 0.2).is_err());
        assert!(split_per_class(&[0, 0, 1, 1], ["a", "b"], 1.0).is_err());
    }

    fn names(list: &[&str]) -> Vec<Option<String>> {
        list.iter()
            .map(|p| (!p.is_empty()).then(|| (*p).to_owned()))
            .collect()
    }

    /// Every patient's scans are on one side.
    fn assert_no_straddling(split: &Split, patients: &[Option<String>]) {
        for i in &split.train {
            for j in &split.validation {
                if let (Some(a), Some(b)) = (&patients[*i], &patients[*j]) {
                    assert_ne!(a, b, "patient {a} straddles: {split:?}");
                }
            }
        }
    }

    #[test]
    fn without_patients_the_split_is_the_examples() {
        // No patients, or all different ones, give exactly the per-class split of sorted file
        // names, whatever the label order.
        for labels in [
            (0..200).map(|i| u8::from(i >= 100)).collect::<Vec<u8>>(),
            vec![1, 0, 1, 0, 1, 0],
            vec![0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 1, 0, 0],
        ] {
            // The old rule written out: the first floor(n · 0.7) of each class train.
            let mut expected = Split {
                train: Vec::new(),
                validation: Vec::new(),
            };
            for class in 0..2u8 {
                let members: Vec<usize> =
                    (0..labels.len()).filter(|&i| labels[i] == class).collect();
                let n = ((members.len() as f64) * 0.7 + 1e-9).floor() as usize;
                expected.train.extend_from_slice(&members[..n]);
                expected.validation.extend_from_slice(&members[n..]);
            }
            assert_eq!(split_per_class(&labels, ["a", "b"], 0.7).unwrap(), expected);
            let none = vec![None; labels.len()];
            let distinct: Vec<Option<String>> =
                (0..labels.len()).map(|i| Some(format!("p{i}"))).collect();
            for patients in [&none, &distinct] {
                assert_eq!(
                    split_by_patient(&labels, patients, ["a", "b"], 0.7).unwrap(),
                    expected
                );
            }
        }
    }

    #[test]
    fn a_patient_with_three_scans_never_straddles() {
        // Targets floor(6 · 0.7) = 4 per class. a1's three scans and a2's one fill the
        // negatives' target; a3's two would overshoot it, so a3 validates whole. b3's pair
        // would overshoot the positives' (1 + 2 + 2), b4 fills it.
        let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let patients = names(&[
            "a1", "a1", "a1", "a2", "a3", "a3", "b1", "b2", "b2", "b3", "b3", "b4",
        ]);
        let s = split_by_patient(&labels, &patients, ["CT-0", "CT-23"], 0.7).unwrap();
        assert_no_straddling(&s, &patients);
        assert_eq!(s.train, vec![0, 1, 2, 3, 6, 7, 8, 11]);
        assert_eq!(s.validation, vec![4, 5, 9, 10]);
        // a1 in the middle of its class: still together (here on the validation side, since
        // it does not fit once a0's two scans are in).
        let labels = [0, 0, 0, 0, 0, 1, 1, 1];
        let patients = names(&["a0", "a0", "a1", "a1", "a1", "b1", "b2", "b3"]);
        let s = split_by_patient(&labels, &patients, ["CT-0", "CT-23"], 0.7).unwrap();
        assert_no_straddling(&s, &patients);
        assert_eq!(s.train, vec![0, 1, 5, 6]);
        assert_eq!(s.validation, vec![2, 3, 4, 7]);
    }

    #[test]
    fn stratified_per_class_as_far_as_groups_allow() {
        // 20 negatives in pairs, 10 positives alone, interleaved: each class meets its target
        // (14 and 7), no class borrows the other's room.
        let mut labels = Vec::new();
        let mut patients = Vec::new();
        for i in 0..10 {
            labels.extend([0, 0, 1]);
            patients.extend([Some(format!("n{i}")), Some(format!("n{i}")), None]);
        }
        let s = split_by_patient(&labels, &patients, ["a", "b"], 0.7).unwrap();
        assert_no_straddling(&s, &patients);
        let count =
            |part: &[usize], class: u8| part.iter().filter(|&&i| labels[i] == class).count();
        assert_eq!((count(&s.train, 0), count(&s.train, 1)), (14, 7));
        assert_eq!((count(&s.validation, 0), count(&s.validation, 1)), (6, 3));
        // A later, smaller group fills what a big one could not.
        let labels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1];
        let patients = names(&["p", "p", "p", "q", "q", "q", "r", "r", "r", "s", "", "", ""]);
        let s = split_by_patient(&labels, &patients, ["a", "b"], 0.7).unwrap();
        assert_eq!(s.train, vec![0, 1, 2, 3, 4, 5, 9, 10, 11]);
        assert_no_straddling(&s, &patients);
    }

    #[test]
    fn a_class_whose_groups_are_all_too_big_still_trains_when_it_can() {
        // Positives: two patients of 4 scans, target floor(8 · 0.4) = 3: neither fits, so
        // the smaller (on a tie: the first) trains anyway, and the class has both parts.
        let labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
        let patients = names(&["", "", "", "", "x", "x", "x", "x", "y", "y", "y", "y"]);
        let s = split_by_patient(&labels, &patients, ["a", "b"], 0.4).unwrap();
        assert_eq!(s.train, vec![0, 4, 5, 6, 7]);
        assert_eq!(s.validation, vec![1, 2, 3, 8, 9, 10, 11]);
        // One patient holds every positive: refused, naming the class.
        let patients = names(&["", "", "", "", "x", "x", "x", "x", "x", "x", "x", "x"]);
        let err = split_by_patient(&labels, &patients, ["a", "CT-23"], 0.7).unwrap_err();
        assert_eq!(err.class(), "CT-23");
        let message = err.to_string();
        assert!(
            message.contains("\"CT-23\": its 8 scans belong to 1 patient(s)"),
            "{message}"
        );
    }

    #[test]
    fn the_split_is_deterministic_and_ordered() {
        let labels: Vec<u8> = (0..40).map(|i| u8::from(i % 3 == 0)).collect();
        let patients: Vec<Option<String>> = (0..40)
            .map(|i| Some(format!("p{}", (i * 7) % 13)))
            .collect();
        let a = split_by_patient(&labels, &patients, ["a", "b"], 0.7).unwrap();
        assert_eq!(
            a,
            split_by_patient(&labels, &patients, ["a", "b"], 0.7).unwrap()
        );
        assert_no_straddling(&a, &patients);
        // Negatives first, then positives, each in dataset order: the order the seeded shuffle
        // of the training loop starts from.
        for part in [&a.train, &a.validation] {
            let negatives = part.iter().take_while(|&&i| labels[i] == 0).count();
            assert!(part[negatives..].iter().all(|&i| labels[i] == 1));
            assert!(part[..negatives].is_sorted() && part[negatives..].is_sorted());
        }
        let mut all: Vec<usize> = a.train.iter().chain(&a.validation).copied().collect();
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn patients_are_counted_per_side() {
        let labels = [0, 0, 0, 0, 1, 1, 1];
        let patients = names(&["a", "a", "b", "", "c", "d", "d"]);
        let s = Split::from_assignment(&labels, &[true, true, false, true, true, false, false]);
        assert_eq!(
            PatientSplitSummary::of(&s, &patients),
            Some(PatientSplitSummary {
                train_patients: 3,
                train_scans: 4,
                validation_patients: 2,
                validation_scans: 3,
            })
        );
        assert_eq!(PatientSplitSummary::of(&s, &vec![None; 7]), None);
    }
}
