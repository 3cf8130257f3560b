//! What a caller asks the library to do with a dataset: train one run ([`TrainRequest`]) or
//! cross-validate the recipe ([`CvRequest`]): on which data, with which configuration, into which
//! folder, on which device. The command line fills these in; [`crate::training`], [`crate::cv`]
//! and the resource checks ([`crate::resources`]) read them.

use std::path::PathBuf;

use ct3d_model::DeviceChoice;

use crate::config::TrainConfig;
use crate::data::source::DataSource;

/// What to train, where, and how to treat an existing run folder.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// Folder with one sub-folder per class (with `manifest`: the manifest's folder, recorded as
    /// the run's data folder).
    pub data: PathBuf,
    /// A CSV manifest listing the scans (see [`ct3d_volume::manifest`]), instead of class
    /// folders in `data`.
    pub manifest: Option<PathBuf>,
    /// The run folder.
    pub out: PathBuf,
    /// The `prepare` cache folder.
    pub cache: PathBuf,
    /// Hyper-parameters. On resume the run's recorded ones are used, and those named in
    /// `given` must equal them (except `epochs`, which changes the schedule).
    pub config: TrainConfig,
    /// The settings of `config` that the user gave explicitly, as configuration keys of
    /// [`TrainConfig`]'s JSON (`epochs`, `schedule.initial`, `model.filters`, …). Only used on
    /// resume: a given setting that differs from the recorded one is refused
    /// ([`crate::error::TrainError::SettingChanged`]), except `epochs`, which extends a run (or ends it
    /// earlier, but not before its completed epochs) and is recorded in `config.json`.
    pub given: Vec<String>,
    /// Where to compute.
    pub device: DeviceChoice,
    /// Continue the run in `out` from its last complete epoch.
    pub resume: bool,
    /// Replace an existing run in `out`.
    pub force: bool,
    /// Leave out scans that cannot be read instead of failing (they are reported).
    pub skip_bad: bool,
}

impl TrainRequest {
    /// Where the scans are listed.
    pub fn source(&self) -> DataSource {
        match &self.manifest {
            Some(manifest) => DataSource::Manifest(manifest.clone()),
            None => DataSource::Folder(self.data.clone()),
        }
    }
}

/// What to cross-validate, and where.
#[derive(Debug, Clone)]
pub struct CvRequest {
    /// Where the scans are listed.
    pub source: DataSource,
    /// The cross-validation folder: `fold-1` … `fold-K`, `cv.json`, `cv.csv`.
    pub out: PathBuf,
    /// The `prepare` cache folder.
    pub cache: PathBuf,
    /// Hyper-parameters of every fold (their `folds` field is set per fold; the seed also draws
    /// the fold assignment, so it is the same for all folds).
    pub config: TrainConfig,
    /// K, the number of folds.
    pub folds: usize,
    /// Where to compute.
    pub device: DeviceChoice,
    /// Retrain every fold, replacing existing fold runs.
    pub force: bool,
    /// Leave out scans that cannot be read instead of failing.
    pub skip_bad: bool,
}
