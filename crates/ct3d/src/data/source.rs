//! Where a dataset comes from and how a run records it: the class folders or CSV manifest that
//! list the scans ([`DataSource`]), the cache folder they are prepared into ([`default_cache`]),
//! and the files, patients and split recorded in `config.json` ([`data_files`],
//! [`recorded_split`]).

use std::path::{Path, PathBuf};

use ct3d_volume::cache::PreparedItem;
use ct3d_volume::dataset::Dataset;

use crate::config::{Classes, DataFile, SplitPart};
use crate::data::split::Split;
use crate::error::TrainError;

/// Where a dataset's scans are listed: class folders or a CSV manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A folder with one sub-folder per class.
    Folder(PathBuf),
    /// A CSV manifest (`path,label[,patient]`).
    Manifest(PathBuf),
}

impl DataSource {
    /// Lists the scans, with the class folder names (or a manifest's label names) of `classes`.
    pub fn load(&self, classes: &Classes) -> Result<Dataset, TrainError> {
        let (negative, positive) = (&classes.negative_folder, &classes.positive_folder);
        Ok(match self {
            Self::Folder(dir) => Dataset::from_class_folders(dir, negative, positive)?,
            Self::Manifest(csv) => Dataset::from_manifest(csv, negative, positive)?,
        })
    }

    /// The folder of the data: the class-folder root, or the manifest's folder.
    pub fn folder(&self) -> PathBuf {
        match self {
            Self::Folder(dir) => dir.clone(),
            Self::Manifest(csv) => csv
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
        }
    }
}

/// The split recorded in a run's `files` (one per item, in item order), in [`Split`]'s order.
pub fn recorded_split(files: &[DataFile]) -> Split {
    let labels: Vec<u8> = files.iter().map(|f| f.label).collect();
    let in_train: Vec<bool> = files.iter().map(|f| f.split == SplitPart::Train).collect();
    Split::from_assignment(&labels, &in_train)
}

/// The patient of each prepared item (matched by path), in item order.
pub fn prepared_patients(dataset: &Dataset, items: &[PreparedItem]) -> Vec<Option<String>> {
    let by_path: std::collections::HashMap<&Path, &Option<String>> = dataset
        .items()
        .iter()
        .map(|item| (item.path.as_path(), &item.patient))
        .collect();
    items
        .iter()
        .map(|item| {
            by_path
                .get(item.source.as_path())
                .and_then(|p| (*p).clone())
        })
        .collect()
}

/// The run's record of `items` (with their `patients`), as `config.json` lists them: the items
/// whose indices are in `train` are training scans, the others validation scans.
pub fn data_files(
    items: &[PreparedItem],
    patients: &[Option<String>],
    train: &[usize],
) -> Vec<DataFile> {
    items
        .iter()
        .zip(patients)
        .enumerate()
        .map(|(i, (item, patient))| DataFile {
            patient: patient.clone(),
            path: item.source.clone(),
            label: item.label,
            sha256: item.sha256.clone(),
            split: if train.contains(&i) {
                SplitPart::Train
            } else {
                SplitPart::Validation
            },
        })
        .collect()
}

/// The default cache folder for a data folder: `DATA/.ct3d-cache` (hidden, so it is never
/// mistaken for a class folder, and shared by every run on that data).
pub fn default_cache(data: &Path) -> PathBuf {
    data.join(".ct3d-cache")
}
