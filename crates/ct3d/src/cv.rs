//! `ct3d cv`: stratified k-fold cross-validation of the training recipe.
//!
//! The seed example warns that with so few scans the validation accuracy varies by 6–7 % between
//! splits; this measures it. Fold `i` of K (see [`crate::data::folds`]) is an ordinary training run in
//! `OUT/fold-i`, validating on fold `i` and training on the others. Each fold's best weights are
//! then evaluated on its validation fold, and the per-fold loss, accuracy, ROC AUC, sensitivity
//! and specificity are summarised as mean ± sample standard deviation (n − 1) in `OUT/cv.json`
//! and `OUT/cv.csv` (both written atomically). Every scan is validated exactly once, by the fold
//! model that did not train on it: those out-of-fold predictions are also pooled into one
//! evaluation ([`CvSummary::pooled`]) whose accuracy, sensitivity, specificity and AUC carry 95 %
//! confidence intervals ([`crate::intervals`]), as each fold's metrics do.
//!
//! Resumable: rerunning the same command skips folds that finished, resumes a fold that was
//! interrupted, and refuses a fold folder trained with other settings (unless `force`, which
//! retrains every fold).

use std::path::{Path, PathBuf};

use ct3d_volume::atomic::write_bytes_atomic;
use serde::{Deserialize, Serialize};

use crate::config::{FoldError, FoldSpec, SplitPart, TrainConfig, TrainParams};
use crate::data::source::DataSource;
use crate::error::{RunError, TrainError};
use crate::history::csv_display;
use crate::inference::{EvalSplit, WeightsChoice, evaluate_source, load_run};
use crate::intervals::evaluation_metrics;
use crate::metrics::BinaryMetrics;
use crate::run::{FolderLock, LOCK_FILE, RunDir};
use crate::training::train;

use crate::observe::{Silent, TrainObserver};
use crate::request::TrainRequest;

// The request and the progress hooks of a cross-validation live with those of training; their
// old paths keep working.
pub use crate::observe::{CvObserver, FoldResult, FoldStart};
pub use crate::request::CvRequest;

/// Mean and sample standard deviation of one metric over the folds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation (n − 1); `None` with fewer than two values.
    pub sd: Option<f64>,
    /// How many folds had a value (AUC is undefined for a fold with one class).
    pub n: usize,
}

impl MeanSd {
    /// Mean and sample SD of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = (n > 1).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        Some(Self { mean, sd, n })
    }
}

/// Mean ± SD of every metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvMeans {
    /// Validation loss (binary cross-entropy).
    pub loss: Option<MeanSd>,
    /// Validation accuracy at 0.5.
    pub accuracy: Option<MeanSd>,
    /// ROC AUC.
    pub auc: Option<MeanSd>,
    /// Sensitivity.
    pub sensitivity: Option<MeanSd>,
    /// Specificity.
    pub specificity: Option<MeanSd>,
}

/// `cv.json`: the whole cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvSummary {
    /// K.
    pub folds: usize,
    /// The seed of every fold run and of the fold assignment.
    pub seed: u64,
    /// The data folder (for a manifest, its folder).
    pub data: PathBuf,
    /// The CSV manifest, when the data came from one.
    pub manifest: Option<PathBuf>,
    /// Which weights were evaluated (always `best`).
    pub weights: String,
    /// Per fold, in fold order.
    pub per_fold: Vec<FoldResult>,
    /// Mean ± sample SD over the folds.
    pub mean: CvMeans,
    /// The metrics of every fold's validation scans pooled (each scan scored by the fold model
    /// that did not train on it), with 95 % confidence intervals; absent in summaries written
    /// before ct3d computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooled: Option<BinaryMetrics>,
}

/// Why a cross-validation failed. One line.
#[derive(Debug, thiserror::Error)]
pub enum CvError {
    /// Training or evaluating a fold failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// K is not usable.
    #[error(transparent)]
    Folds(#[from] FoldError),
    /// A fold folder holds a run with other settings.
    #[error(
        "{}: this fold was trained with other settings ({}); rerun with the same settings, or \
         retrain every fold from the start",
        dir.display(),
        differences.join(", ")
    )]
    OtherSettings {
        /// The fold's run folder.
        dir: PathBuf,
        /// The settings that differ (configuration keys).
        differences: Vec<String>,
    },
    /// `cv.json` or `cv.csv` could not be written (the I/O error is the source).
    #[error("{}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl From<RunError> for CvError {
    fn from(error: RunError) -> Self {
        Self::Train(error.into())
    }
}

/// The run folder of fold `fold`: `out/fold-<fold>`.
pub fn fold_dir(out: &Path, fold: usize) -> PathBuf {
    out.join(format!("fold-{fold}"))
}

/// The seed recorded by an earlier cross-validation in `out` (its first fold run), so that a
/// rerun without `--seed` continues it instead of starting a different partition.
pub fn recorded_seed(out: &Path) -> Option<u64> {
    RunDir::new(fold_dir(out, 1))
        .read_config()
        .ok()
        .map(|config| config.train.seed)
}

/// Trains and evaluates every fold (skipping finished ones), then writes `cv.json` and `cv.csv`.
/// The folder is locked for the whole time, so a second `cv` into it fails at once.
pub fn run_cross_validation(
    request: &CvRequest,
    train_observer: &dyn TrainObserver,
    observer: &dyn CvObserver,
) -> Result<CvSummary, CvError> {
    FoldSpec {
        count: request.folds,
        fold: 1,
    }
    .validate()?;
    let created = !request.out.exists();
    let lock = FolderLock::acquire_creating(&request.out)?;
    let result = cross_validate(request, train_observer, observer);
    let only_the_lock = || {
        std::fs::read_dir(&request.out)
            .map(|entries| {
                entries
                    .flatten()
                    .all(|entry| entry.file_name() == LOCK_FILE)
            })
            .unwrap_or(false)
    };
    if result.is_err() && created && only_the_lock() {
        // A start that failed leaves nothing behind: the folder made for the lock is removed
        // while still locked.
        let _ = std::fs::remove_file(request.out.join(LOCK_FILE));
        let _ = std::fs::remove_dir(&request.out);
    }
    drop(lock);
    result
}

fn cross_validate(
    request: &CvRequest,
    train_observer: &dyn TrainObserver,
    observer: &dyn CvObserver,
) -> Result<CvSummary, CvError> {
    let mut per_fold = Vec::with_capacity(request.folds);
    let (mut pooled_probabilities, mut pooled_labels) = (Vec::new(), Vec::new());
    let mut bootstrap = None;
    for fold in 1..=request.folds {
        let dir = fold_dir(&request.out, fold);
        let config = TrainParams {
            folds: Some(FoldSpec {
                count: request.folds,
                fold,
            }),
            ..request.config.params()
        }
        .check()
        .map_err(TrainError::from)?;
        let run = train_fold(
            &FoldTraining {
                source: &request.source,
                dir: &dir,
                cache: &request.cache,
                config,
                device: request.device,
                force: request.force,
                skip_bad: request.skip_bad,
            },
            train_observer,
            |start| observer.fold_started(fold, request.folds, &dir, start),
        )?;
        pooled_probabilities.extend(run.probabilities);
        pooled_labels.extend(run.labels);
        bootstrap = Some(run.bootstrap);
        observer.fold_finished(&run.result, request.folds);
        per_fold.push(run.result);
    }
    let first = RunDir::new(fold_dir(&request.out, 1)).read_config()?;
    let summary = CvSummary {
        folds: request.folds,
        seed: request.config.seed,
        data: first.data_root,
        manifest: first.manifest,
        weights: "best".to_owned(),
        mean: means(&per_fold),
        per_fold,
        pooled: bootstrap
            .map(|options| evaluation_metrics(&pooled_probabilities, &pooled_labels, 0.5, options)),
    };
    write_summary(&request.out, &summary)?;
    Ok(summary)
}

/// One fold run to train (or resume, or only evaluate when finished) and evaluate: the unit of
/// work of `cv` and of a sweep task ([`crate::sweep`]).
pub(crate) struct FoldTraining<'a> {
    /// Where the scans are listed.
    pub(crate) source: &'a DataSource,
    /// The fold's run folder.
    pub(crate) dir: &'a Path,
    /// The `prepare` cache.
    pub(crate) cache: &'a Path,
    /// The run's configuration, its `folds` set.
    pub(crate) config: TrainConfig,
    /// Where to compute.
    pub(crate) device: ct3d_model::DeviceChoice,
    /// Retrain from scratch even when the folder holds a run.
    pub(crate) force: bool,
    /// Leave out unreadable scans.
    pub(crate) skip_bad: bool,
}

/// What [`train_fold`] gives back: the fold's result and its out-of-fold predictions.
pub(crate) struct FoldRun {
    pub(crate) result: FoldResult,
    /// The best weights' probability for each validation scan, in the run's file order.
    pub(crate) probabilities: Vec<f32>,
    /// The validation scans' labels (0/1), in the same order.
    pub(crate) labels: Vec<u8>,
    /// The run's confidence-interval settings.
    pub(crate) bootstrap: crate::intervals::BootstrapOptions,
}

/// Trains fold `job` unless it finished (resuming an interrupted run; refusing a folder trained
/// with other settings, [`CvError::OtherSettings`]), then evaluates its best weights on its
/// validation scans. `started` learns how the fold starts before any work.
pub(crate) fn train_fold(
    job: &FoldTraining<'_>,
    train_observer: &dyn TrainObserver,
    started: impl FnOnce(FoldStart),
) -> Result<FoldRun, CvError> {
    let run = RunDir::new(job.dir);
    let start = if job.force || !run.config().exists() {
        FoldStart::New
    } else {
        let recorded = run.read_config()?;
        if recorded.train != job.config {
            return Err(CvError::OtherSettings {
                differences: differences(&recorded.train, &job.config),
                dir: job.dir.to_owned(),
            });
        }
        match run.read_state() {
            Ok(state) if state.finished.is_some() => FoldStart::Finished,
            _ => FoldStart::Resumed,
        }
    };
    started(start);
    let (data, manifest) = match job.source {
        DataSource::Folder(dir) => (dir.clone(), None),
        DataSource::Manifest(csv) => (job.source.folder(), Some(csv.clone())),
    };
    let train_request = TrainRequest {
        data,
        manifest,
        out: job.dir.to_owned(),
        cache: job.cache.to_owned(),
        config: job.config.clone(),
        device: job.device,
        resume: start != FoldStart::New,
        // A fold folder without a run (an earlier start that failed early) is reused.
        force: start == FoldStart::New && (job.force || job.dir.exists()),
        skip_bad: job.skip_bad,
        // Every setting was compared with the recorded one above.
        given: Vec::new(),
    };
    let outcome = if start == FoldStart::Finished {
        train(&train_request, &Silent)?
    } else {
        train(&train_request, train_observer)?
    };
    let recorded = run.read_config()?;
    let count = |part| recorded.files.iter().filter(|f| f.split == part).count();
    let loaded = load_run(job.dir, WeightsChoice::Best, job.device)?;
    let evaluation = evaluate_source(&loaded, None, EvalSplit::Val)?;
    let fold = job.config.params().folds.map_or(1, |spec| spec.fold);
    Ok(FoldRun {
        result: FoldResult {
            fold,
            run: outcome.run.clone(),
            train_scans: count(SplitPart::Train),
            validation_scans: count(SplitPart::Validation),
            epochs: outcome.history.len(),
            best_epoch: outcome.best_epoch,
            finished: outcome.finished.clone(),
            metrics: evaluation.metrics,
        },
        probabilities: evaluation.scans.iter().map(|s| s.probability).collect(),
        labels: evaluation.scans.iter().map(|s| s.label).collect(),
        bootstrap: loaded.bootstrap,
    })
}

/// Mean ± SD of each metric over `folds`.
pub fn means(folds: &[FoldResult]) -> CvMeans {
    let of = |metric: &dyn Fn(&BinaryMetrics) -> Option<f64>| {
        let values: Vec<f64> = folds.iter().filter_map(|f| metric(&f.metrics)).collect();
        MeanSd::of(&values)
    };
    CvMeans {
        loss: of(&|m| Some(m.loss)),
        accuracy: of(&|m| Some(m.accuracy)),
        auc: of(&|m| m.auc),
        sensitivity: of(&|m| m.sensitivity),
        specificity: of(&|m| m.specificity),
    }
}

/// The top-level configuration keys whose values differ.
fn differences(recorded: &TrainConfig, wanted: &TrainConfig) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(recorded), serde_json::to_value(wanted))
    else {
        return vec!["unreadable configuration".to_owned()];
    };
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Writes `out/cv.json` and `out/cv.csv` atomically.
pub fn write_summary(out: &Path, summary: &CvSummary) -> Result<(), CvError> {
    let json_path = out.join("cv.json");
    let mut json = serde_json::to_string_pretty(summary).map_err(|e| CvError::Write {
        path: json_path.clone(),
        source: std::io::Error::other(e),
    })?;
    json.push('\n');
    write_bytes_atomic(&json_path, json.as_bytes()).map_err(|source| CvError::Write {
        path: json_path,
        source,
    })?;
    let csv_path = out.join("cv.csv");
    write_bytes_atomic(&csv_path, summary_csv(summary).as_bytes()).map_err(|source| {
        CvError::Write {
            path: csv_path,
            source,
        }
    })
}

/// One row of `cv.csv` (the header is the field names): a fold, or the `mean` / `sd` row, which
/// leaves the scan and epoch counts empty. Numbers are written as ct3d has always written them.
#[derive(Serialize)]
struct CvCsvRow {
    fold: String,
    train_scans: Option<usize>,
    validation_scans: Option<usize>,
    epochs: Option<usize>,
    best_epoch: Option<usize>,
    #[serde(serialize_with = "csv_display::option")]
    loss: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    accuracy: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    auc: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    sensitivity: Option<f64>,
    #[serde(serialize_with = "csv_display::option")]
    specificity: Option<f64>,
}

/// `cv.csv`: one row per fold, then a `mean` and an `sd` row.
pub fn summary_csv(summary: &CvSummary) -> String {
    let folds = summary.per_fold.iter().map(|f| {
        let m = &f.metrics;
        CvCsvRow {
            fold: f.fold.to_string(),
            train_scans: Some(f.train_scans),
            validation_scans: Some(f.validation_scans),
            epochs: Some(f.epochs),
            best_epoch: Some(f.best_epoch),
            loss: Some(m.loss),
            accuracy: Some(m.accuracy),
            auc: m.auc,
            sensitivity: m.sensitivity,
            specificity: m.specificity,
        }
    });
    let m = &summary.mean;
    let over_folds = |name: &str, pick: fn(&MeanSd) -> Option<f64>| {
        let pick = |v: &Option<MeanSd>| v.as_ref().and_then(pick);
        CvCsvRow {
            fold: name.to_owned(),
            train_scans: None,
            validation_scans: None,
            epochs: None,
            best_epoch: None,
            loss: pick(&m.loss),
            accuracy: pick(&m.accuracy),
            auc: pick(&m.auc),
            sensitivity: pick(&m.sensitivity),
            specificity: pick(&m.specificity),
        }
    };
    let rows = folds.chain([
        over_folds("mean", |s| Some(s.mean)),
        over_folds("sd", |s| s.sd),
    ]);
    let mut writer = csv::Writer::from_writer(Vec::new());
    let written = rows.into_iter().try_for_each(|row| writer.serialize(row));
    // Numbers and names into memory: neither the serializer nor the writer has a way to fail.
    debug_assert!(written.is_ok(), "{written:?}");
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_standard_deviation() {
        let s = MeanSd::of(&[0.8, 0.9, 1.0]).unwrap();
        assert!((s.mean - 0.9).abs() < 1e-12);
        // Sample SD (n − 1): sqrt(0.02 / 2) = 0.1; the population SD would be 0.0816.
        assert!((s.sd.unwrap() - 0.1).abs() < 1e-12, "{s:?}");
        assert_eq!(s.n, 3);
        assert_eq!(MeanSd::of(&[0.5]).unwrap().sd, None);
        assert_eq!(MeanSd::of(&[]), None);
    }

    /// The text `summary_csv` wrote before it used the `csv` crate.
    fn old_summary_csv(summary: &CvSummary) -> String {
        use std::fmt::Write as _;
        let mut csv = String::from(
            "fold,train_scans,validation_scans,epochs,best_epoch,loss,accuracy,auc,sensitivity,specificity\n",
        );
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for f in &summary.per_fold {
            let m = &f.metrics;
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{}",
                f.fold,
                f.train_scans,
                f.validation_scans,
                f.epochs,
                f.best_epoch,
                m.loss,
                m.accuracy,
                opt(m.auc),
                opt(m.sensitivity),
                opt(m.specificity)
            );
        }
        let m = &summary.mean;
        let metrics = [m.loss, m.accuracy, m.auc, m.sensitivity, m.specificity];
        for (name, pick) in [
            (
                "mean",
                (|s: &MeanSd| Some(s.mean)) as fn(&MeanSd) -> Option<f64>,
            ),
            ("sd", |s: &MeanSd| s.sd),
        ] {
            let values: Vec<String> = metrics
                .iter()
                .map(|v| opt(v.as_ref().and_then(pick)))
                .collect();
            let _ = writeln!(csv, "{name},,,,,{}", values.join(","));
        }
        csv
    }

    #[test]
    fn cv_csv_text_is_the_same_as_before() {
        let metrics = |loss: f64, auc: Option<f64>| BinaryMetrics {
            count: 4,
            loss,
            accuracy: 0.75,
            auc,
            sensitivity: Some(1.0),
            specificity: Some(0.5),
            confusion: Default::default(),
            threshold: 0.5,
            brier: None,
            ece: None,
            intervals: None,
        };
        let fold = |fold: usize, metrics: BinaryMetrics| FoldResult {
            fold,
            run: PathBuf::from(format!("cv/fold-{fold}")),
            train_scans: 8,
            validation_scans: 4,
            epochs: 3,
            best_epoch: 2,
            finished: "completed".to_owned(),
            metrics,
        };
        let per_fold = vec![
            fold(1, metrics(0.6123456789012345, None)),
            fold(2, metrics(1e-7, Some(2.0 / 3.0))),
        ];
        let summary = CvSummary {
            folds: 2,
            seed: 1,
            data: PathBuf::from("data"),
            manifest: None,
            weights: "best".to_owned(),
            mean: means(&per_fold),
            per_fold,
            pooled: None,
        };
        let text = summary_csv(&summary);
        assert_eq!(text, old_summary_csv(&summary));
        assert!(
            text.contains("\n1,8,4,3,2,0.6123456789012345,0.75,,1,0.5\n"),
            "{text}"
        );
        assert!(text.contains("\nsd,,,,,"), "{text}");
    }

    #[test]
    fn differing_settings_are_named() {
        let a = TrainConfig::default();
        let b = TrainParams {
            epochs: 3,
            seed: 9,
            ..TrainParams::default()
        }
        .check()
        .unwrap();
        assert_eq!(differences(&a, &b), vec!["epochs", "seed"]);
        assert!(differences(&a, &a).is_empty());
    }
}
