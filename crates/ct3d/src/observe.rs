//! Progress, one style for the library: a trait per long operation whose methods are the
//! operation's events, each with a do-nothing default, so an observer implements only what it
//! shows. [`TrainObserver`] follows a training run (preparing, epochs, batches), [`CvObserver`]
//! the folds of a cross-validation, and [`Silent`] shows nothing for either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ScheduleChange;
use crate::data::split::PatientSplitSummary;
use crate::history::EpochRecord;
use crate::metrics::BinaryMetrics;

/// Hooks for progress display; every method has a do-nothing default.
pub trait TrainObserver: Sync {
    /// `done` of `total` scans prepared.
    fn prepare_progress(&self, _done: usize, _total: usize) {}
    /// A scan was left out (unreadable scans are left out on request); `error` names it, and
    /// [`ct3d_volume::chain`] gives it with its causes on one line.
    fn skipped(&self, _error: &ct3d_volume::cache::CacheError) {}
    /// Training starts or resumes at `first_epoch` with this many training / validation scans.
    fn started(&self, _first_epoch: usize, _epochs: usize, _train: usize, _validation: usize) {}
    /// After [`TrainObserver::started`], when the data has patients: how the split divides them
    /// (no patient is on both sides).
    fn patient_split(&self, _summary: &PatientSplitSummary) {}
    /// `done` of `total` training batches of `epoch`, with the running mean loss and accuracy.
    fn batch(&self, _epoch: usize, _done: usize, _total: usize, _loss: f64, _acc: f64) {}
    /// An epoch finished and was committed.
    fn epoch(&self, _record: &EpochRecord, _epochs: usize, _data_wait: Duration) {}
    /// A resumed run's number of epochs changed, as recorded.
    fn schedule_changed(&self, _change: &ScheduleChange) {}
    /// A new run's network was initialised from `file` (`init`): what was loaded, skipped and
    /// newly initialised.
    fn initialised(&self, _file: &Path, _report: &ct3d_model::pytorch::InitReport) {}
}

/// An observer that shows nothing.
pub struct Silent;
impl TrainObserver for Silent {}
impl CvObserver for Silent {}

/// How a fold starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldStart {
    /// Trained from scratch.
    New,
    /// An interrupted fold run, continued.
    Resumed,
    /// Already finished: only evaluated.
    Finished,
}

/// Progress hooks of a cross-validation; every method has a do-nothing default.
pub trait CvObserver: Sync {
    /// Fold `fold` of `folds` starts (its run folder is `run`).
    fn fold_started(&self, _fold: usize, _folds: usize, _run: &Path, _start: FoldStart) {}
    /// Fold `result.fold` is trained and evaluated.
    fn fold_finished(&self, _result: &FoldResult, _folds: usize) {}
}

/// One fold's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// The fold, 1 to K.
    pub fold: usize,
    /// Its run folder.
    pub run: PathBuf,
    /// Training scans (all other folds).
    pub train_scans: usize,
    /// Validation scans (this fold).
    pub validation_scans: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// The epoch whose weights (`best.safetensors`) were evaluated.
    pub best_epoch: usize,
    /// Why training ended (`completed`, `early stopping`).
    pub finished: String,
    /// The best weights' metrics on the validation fold.
    pub metrics: BinaryMetrics,
}
