//! Train/validation split exactly as the Keras example does it: per class, in sorted file-name
//! order, the first 70 % train and the rest validate (the example takes `scans[:70]` of 100).

/// Indices into a dataset's item list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training items: negatives first, then positives, each in dataset order.
    pub train: Vec<usize>,
    /// Validation items, same ordering.
    pub validation: Vec<usize>,
}

/// A split that would leave a class without training or validation scans.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "class {class:?} has {count} {}: too few for a {percent}% training split \
     (each class needs at least one training and one validation scan)",
    if *count == 1 { "scan" } else { "scans" }
)]
pub struct SplitError {
    /// The class name.
    pub class: String,
    /// How many scans it has.
    pub count: usize,
    /// The training fraction, in percent.
    pub percent: f64,
}

/// Splits items with `labels` (0 or 1, in dataset order, which is sorted by file name within a
/// class) so that the first `train_fraction` of each class trains.
///
/// The count per class is `floor(n · fraction)` with a tiny tolerance, so 70 % of 100 is 70 even
/// though `100.0 * 0.7` is 70.00000000000001 in floating point.
pub fn split_per_class(
    labels: &[u8],
    class_names: [&str; 2],
    train_fraction: f64,
) -> Result<Split, SplitError> {
    let mut split = Split {
        train: Vec::new(),
        validation: Vec::new(),
    };
    for class in 0..2u8 {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        let n_train = ((members.len() as f64) * train_fraction + 1e-9).floor() as usize;
        if n_train == 0 || n_train >= members.len() {
            return Err(SplitError {
                class: class_names[class as usize].to_owned(),
                count: members.len(),
                percent: train_fraction * 100.0,
            });
        }
        split.train.extend_from_slice(&members[..n_train]);
        split.validation.extend_from_slice(&members[n_train..]);
    }
    Ok(split)
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
        assert_eq!(err.class, "CT-23");
        assert!(err.to_string().contains("\"CT-23\" has 1 scan:"), "{err}");
        assert!(split_per_class(&[0, 0, 1, 1], ["a", "b"], 0.2).is_err());
        assert!(split_per_class(&[0, 0, 1, 1], ["a", "b"], 1.0).is_err());
    }
}
