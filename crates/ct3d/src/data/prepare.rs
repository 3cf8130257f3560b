//! A run's data made ready: the dataset listed and every scan preprocessed into the cache (or
//! found there), with progress reported to the training observer.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ct3d_volume::cache::{self, CacheError, PrepareObserver, PrepareOptions, PreparedDataset};

use crate::config::TrainConfig;
use crate::data::source::{DataSource, prepared_patients};
use crate::error::TrainError;
use crate::observe::TrainObserver;

/// Lists the dataset of `source` and brings the cache in `cache_dir` up to date for the run's
/// preprocessing, leaving out unreadable scans when `skip_bad` (each one reported to
/// `observer`). Returns the prepared items and their patients.
pub fn prepare_data(
    source: &DataSource,
    cache_dir: &Path,
    skip_bad: bool,
    config: &TrainConfig,
    observer: &dyn TrainObserver,
) -> Result<(PreparedDataset, Vec<Option<String>>), TrainError> {
    let dataset = source.load(&config.classes)?;
    let options = PrepareOptions {
        config: config.preprocess.clone(),
        skip_bad,
        verify_entries: false,
    };
    let progress = Progress {
        observer,
        total: dataset.len(),
        done: AtomicUsize::new(0),
    };
    let prepared =
        cache::prepare_default(&dataset, cache_dir, &options, &progress).map_err(|error| {
            match error.failed_scan() {
                Some(_) if !skip_bad => TrainError::BadScan(error),
                _ => error.into(),
            }
        })?;
    let patients = prepared_patients(&dataset, &prepared.items);
    Ok((prepared, patients))
}

/// Passes the cache's progress on to the training observer as a count of scans done.
struct Progress<'a> {
    observer: &'a dyn TrainObserver,
    total: usize,
    done: AtomicUsize,
}

impl Progress<'_> {
    fn step(&self) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        self.observer.prepare_progress(n, self.total);
    }
}

impl PrepareObserver for Progress<'_> {
    fn hit(&self, _source: &Path) {
        self.step();
    }
    fn processed(&self, _source: &Path) {
        self.step();
    }
    fn failed(&self, _source: &Path, error: &CacheError) {
        self.observer.skipped(error);
        self.step();
    }
}
