//! Inference: a trained model applied to scans. The validation pass of training
//! ([`predict_items`], [`evaluate_items`]), `ct3d eval` ([`evaluate_recorded`],
//! [`evaluate_other`]) and `ct3d predict` ([`predict_scan`]).
//!
//! Both load the run's recorded configuration, so scans are preprocessed exactly as the training
//! data was (window, size), never with the defaults.
//!
//! A run is evaluated on the scans its `config.json` records (its validation part, or every
//! recorded scan), matched by path and SHA-256 — never on a split recomputed from what the data
//! folder holds now, which would score training scans as validation as soon as a scan is added
//! or removed. A recorded scan that is gone or whose bytes changed is refused
//! ([`RecordedDataError`]) unless the caller asks to evaluate what is there. Other data
//! (`--data`/`--manifest`) is a different question, and the result says so ([`Evaluation::data`]).
//!
//! A run calibrated by [`calibrate`] (its `calibration.json`, see [`crate::calibration`]) gives
//! temperature-scaled probabilities and its recorded decision threshold, as long as the record
//! was fitted for the weights in use ([`CalibrationStatus`]); [`LoadedRun::use_raw_probabilities`]
//! asks for the network's own probabilities and 0.5, exactly as before calibration existed.

use std::path::{Path, PathBuf};

use ct3d_model::input::{batch_from_volumes, batch_tensor};
use ct3d_model::weights::load_weights;
use ct3d_model::{DeviceChoice, Network, predict_proba};
use ct3d_volume::Volume;
use ct3d_volume::augment::{Augmentation, Augmentations, RandomFlip, RandomRotation};
use ct3d_volume::cache::{self, PrepareOptions, PreparedItem};
use ct3d_volume::dataset::{Dataset, DatasetItem};
use ct3d_volume::preprocess::{PreprocessError, description_mismatch};
use serde::Serialize;

use crate::calibration::{
    CALIBRATION_BINS, Calibration, CalibrationError, RecordedThreshold, TemperatureFit,
    fit_temperature, read_calibration, reliability_curve, write_calibration, youden_threshold,
};
use crate::config::{Classes, DataFile, RunConfig, SplitPart, TrainConfig};
use crate::data::folds::run_split;
use crate::data::loader;
use crate::data::source::{DataSource, prepared_patients};
use crate::data::split::Split;
use crate::error::{RecordedDataError, TrainError};
use crate::intervals::{BootstrapOptions, evaluation_metrics};
use crate::metrics::{BinaryMetrics, binary_metrics};
use crate::run::{FolderLock, RunDir};

/// Batches assembled ahead of the model, like the example's `prefetch(2)`.
pub(crate) const PREFETCH: usize = 2;

/// Which weights of a run to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsChoice {
    /// The epoch with the lowest validation loss (`best.safetensors`).
    #[default]
    Best,
    /// The last completed epoch (`last.safetensors`).
    Last,
}

/// Which scans to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalSplit {
    /// The run's validation part: the scans `config.json` records as validation (for other
    /// data: the run's split rule applied to it).
    Val,
    /// Every scan (of the run: every recorded scan).
    All,
}

/// What a run's `calibration.json` means for the weights loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrationStatus {
    /// No calibration (none recorded, or raw probabilities asked for): the network's
    /// probabilities and the threshold 0.5.
    Uncalibrated,
    /// Fitted for these weights: applied.
    Applied(Calibration),
    /// Fitted for other weights (the other file, or the run trained on since): not applied.
    OtherWeights(Calibration),
}

impl CalibrationStatus {
    /// The calibration applied, if any.
    pub fn applied(&self) -> Option<&Calibration> {
        match self {
            Self::Applied(c) => Some(c),
            _ => None,
        }
    }
}

/// A run's configuration and model, ready for inference.
#[derive(Clone)]
pub struct LoadedRun {
    /// The run folder.
    pub dir: RunDir,
    /// `config.json`.
    pub config: RunConfig,
    /// The model with the chosen weights, in inference mode.
    pub model: Network,
    /// The device it runs on.
    pub device: burn::tensor::Device,
    /// Which weights were loaded.
    pub weights: WeightsChoice,
    /// Whether its probabilities are calibrated.
    pub calibration: CalibrationStatus,
    /// How evaluations compute their confidence intervals.
    pub bootstrap: BootstrapOptions,
    /// Test-time augmentation of predictions and evaluations; `None`: each scan is predicted
    /// once, as it is.
    pub tta: Option<TtaOptions>,
}

/// Test-time augmentation: a scan is predicted `count` times, each time through the recipe
/// drawn with its own seeded stream, and the (shown) probabilities are averaged.
#[derive(Debug, Clone, PartialEq)]
pub struct TtaOptions {
    /// Augmented copies to average (at least 1).
    pub count: usize,
    /// Seed of the draws: copy `k` uses the stream of sample 0 in "epoch" `k` of this seed.
    pub seed: u64,
    /// The transforms ([`tta_recipe`] by default).
    pub recipe: Augmentations,
}

/// The default test-time recipe: a left-right flip with probability ½ and the Keras example's
/// small in-plane rotations (±5, 10 or 20 degrees), transforms under which a chest CT keeps its
/// label.
pub fn tta_recipe() -> Augmentations {
    Augmentations::new(vec![
        Augmentation::RandomFlip(RandomFlip::default()),
        Augmentation::RandomRotation(RandomRotation::seed()),
    ])
}

impl LoadedRun {
    /// Ignores the run's calibration: raw probabilities and the threshold 0.5.
    pub fn use_raw_probabilities(&mut self) {
        self.calibration = CalibrationStatus::Uncalibrated;
    }

    /// The probability shown for the network's `p` (calibrated when a calibration applies).
    pub fn shown_probability(&self, p: f32) -> f32 {
        self.calibration.applied().map_or(p, |c| c.apply(p))
    }

    /// The decision threshold on shown probabilities.
    pub fn decision_threshold(&self) -> f64 {
        self.calibration
            .applied()
            .map_or(0.5, Calibration::decision_threshold)
    }

    /// Which probabilities are shown: `raw` or `calibrated (T = 1.37)`.
    pub fn probabilities_description(&self) -> String {
        self.calibration
            .applied()
            .map_or_else(|| "raw".to_owned(), Calibration::describe)
    }
}

impl WeightsChoice {
    /// `best` or `last`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::Last => "last",
        }
    }
}

/// The SHA-256 of a weights file, as hex.
fn weights_sha256(path: &Path) -> Result<String, TrainError> {
    let hash = cache::hash_file(path).map_err(|source| CalibrationError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(hash.iter().map(|b| format!("{b:02x}")).collect())
}

/// Loads `run`'s configuration and `weights` onto `device`.
pub fn load_run(
    run: &Path,
    weights: WeightsChoice,
    device: DeviceChoice,
) -> Result<LoadedRun, TrainError> {
    let dir = RunDir::new(run);
    let config = dir.read_config()?;
    let device = device.resolve()?;
    let train = &config.train;
    let model = train.architecture.init(&train.model_config(), &device, 0)?;
    let path = match weights {
        WeightsChoice::Best => dir.best_weights(),
        WeightsChoice::Last => dir.last_weights(),
    };
    let model = load_weights(model, &path)?;
    let calibration = match read_calibration(dir.root())? {
        None => CalibrationStatus::Uncalibrated,
        Some(c) if c.weights == weights.name() && c.weights_sha256 == weights_sha256(&path)? => {
            CalibrationStatus::Applied(c)
        }
        Some(c) => CalibrationStatus::OtherWeights(c),
    };
    Ok(LoadedRun {
        dir,
        config,
        model,
        device,
        weights,
        calibration,
        bootstrap: BootstrapOptions::default(),
        tta: None,
    })
}

// What an evaluation produces lives with the metrics, so that pictures of it need not sit
// above the inference that computes it.
pub use crate::metrics::{Evaluation, ScanScore, TtaSpread};

/// Evaluates `run` on another data folder `data`, or (`None`) on its recorded scans (refusing
/// missing or changed ones), on the validation part or on every scan.
pub fn evaluate(
    run: &LoadedRun,
    data: Option<&Path>,
    split: EvalSplit,
) -> Result<Evaluation, TrainError> {
    evaluate_source(run, data.map(|d| DataSource::Folder(d.to_owned())), split)
}

/// Evaluates `run` on the scans of another `source`, or (`None`) on its recorded scans as
/// [`evaluate_recorded`] does, refusing missing or changed ones.
pub fn evaluate_source(
    run: &LoadedRun,
    source: Option<DataSource>,
    split: EvalSplit,
) -> Result<Evaluation, TrainError> {
    match source {
        Some(source) => evaluate_other(run, &source, [None, None], split),
        None => evaluate_recorded(run, split, false),
    }
}

/// Evaluates `run` on the scans its `config.json` records: those with split `validation`
/// ([`EvalSplit::Val`]) or all of them, matched by path and SHA-256, whatever the data folder
/// holds now. A recorded scan that is missing or changed is an error, unless
/// `allow_changed_data`: then missing scans are left out and changed ones scored as they are
/// now, both listed in the result.
pub fn evaluate_recorded(
    run: &LoadedRun,
    split: EvalSplit,
    allow_changed_data: bool,
) -> Result<Evaluation, TrainError> {
    let config = &run.config;
    let config_path = run.dir.config();
    let wanted: Vec<&DataFile> = config
        .files
        .iter()
        .filter(|f| split == EvalSplit::All || f.split == SplitPart::Validation)
        .collect();
    let (present, missing): (Vec<&DataFile>, Vec<&DataFile>) =
        wanted.iter().partition(|f| f.path.exists());
    if let Some(first) = missing.first()
        && !allow_changed_data
    {
        return Err(RecordedDataError::Missing {
            path: first.path.clone(),
            config: config_path,
            part: match first.split {
                SplitPart::Train => "training",
                SplitPart::Validation => "validation",
            },
            others: missing.len() - 1,
        }
        .into());
    }
    if present.is_empty() {
        return Err(RecordedDataError::NoneLeft {
            config: config_path,
            count: wanted.len(),
        }
        .into());
    }
    let classes = &config.train.classes;
    let dataset = Dataset::from_parts(
        config.data_root.clone(),
        config.manifest.clone(),
        [
            classes.negative_folder.clone(),
            classes.positive_folder.clone(),
        ],
        present
            .iter()
            .map(|f| DatasetItem {
                path: f.path.clone(),
                label: f.label,
                patient: f.patient.clone(),
            })
            .collect(),
    );
    let prepared = prepare(run, &dataset)?;
    // The cache hashed every file while preparing it: compare with the recorded hashes.
    let recorded: std::collections::HashMap<&Path, &str> = present
        .iter()
        .map(|f| (f.path.as_path(), f.sha256.as_str()))
        .collect();
    let changed: Vec<(&Path, &str, &str)> = prepared
        .items
        .iter()
        .filter_map(|item| {
            let then = recorded.get(item.source.as_path())?;
            (*then != item.sha256).then_some((item.source.as_path(), *then, item.sha256.as_str()))
        })
        .collect();
    if let Some(&(path, then, now)) = changed.first()
        && !allow_changed_data
    {
        return Err(RecordedDataError::Changed {
            path: path.to_owned(),
            config: config_path,
            recorded: then.to_owned(),
            now: now.to_owned(),
            others: changed.len() - 1,
        }
        .into());
    }
    let labels: Vec<u8> = prepared.items.iter().map(|item| item.label).collect();
    let indices = match split {
        // Negatives first, then positives, as training validated them.
        EvalSplit::Val => Split::from_assignment(&labels, &vec![false; labels.len()]).validation,
        EvalSplit::All => (0..labels.len()).collect(),
    };
    let mut evaluation = score(run, &prepared.items, &indices, split, "recorded".to_owned())?;
    evaluation.missing = missing.iter().map(|f| f.path.clone()).collect();
    evaluation.changed = changed
        .iter()
        .map(|(path, ..)| path.to_path_buf())
        .collect();
    Ok(evaluation)
}

/// Evaluates `run` on another dataset: every scan, or the run's split rule applied to it.
///
/// `folders` names the other data's class folders (or a manifest's label names), negative then
/// positive, where they differ from the run's; `None` keeps the run's name.
pub fn evaluate_other(
    run: &LoadedRun,
    source: &DataSource,
    folders: [Option<String>; 2],
    split: EvalSplit,
) -> Result<Evaluation, TrainError> {
    let train = &run.config.train;
    let [negative, positive] = folders;
    let classes = Classes {
        negative_folder: negative.unwrap_or_else(|| train.classes.negative_folder.clone()),
        positive_folder: positive.unwrap_or_else(|| train.classes.positive_folder.clone()),
        ..train.classes.clone()
    };
    let dataset = source.load(&classes)?;
    let prepared = prepare(run, &dataset)?;
    let labels: Vec<u8> = prepared.items.iter().map(|item| item.label).collect();
    let indices: Vec<usize> = match split {
        EvalSplit::All => (0..labels.len()).collect(),
        EvalSplit::Val => {
            let patients = prepared_patients(&dataset, &prepared.items);
            run_split(&labels, &patients, train)?.validation
        }
    };
    let path = match source {
        DataSource::Folder(path) | DataSource::Manifest(path) => path,
    };
    let data = format!("other: {}", path.display());
    score(run, &prepared.items, &indices, split, data)
}

/// Brings the run's cache up to date for `dataset` with the run's preprocessing.
fn prepare(run: &LoadedRun, dataset: &Dataset) -> Result<cache::PreparedDataset, TrainError> {
    let options = PrepareOptions {
        config: run.config.train.preprocess.clone(),
        skip_bad: false,
        verify_entries: false,
    };
    Ok(cache::prepare_default(
        dataset,
        &run.config.cache,
        &options,
        &(),
    )?)
}

/// Predicts `indices` of `items` and computes the metrics.
fn score(
    run: &LoadedRun,
    items: &[cache::PreparedItem],
    indices: &[usize],
    split: EvalSplit,
    data: String,
) -> Result<Evaluation, TrainError> {
    let train = &run.config.train;
    let (probabilities, labels, spreads) = match &run.tta {
        None => {
            let (raw, labels) = predict_items(&run.model, items, indices, train, &run.device)?;
            let shown: Vec<f32> = raw.iter().map(|&p| run.shown_probability(p)).collect();
            (shown, labels, vec![None; indices.len()])
        }
        Some(options) => {
            let count = options.count.max(1);
            let mut copies: Vec<Vec<f32>> = vec![Vec::with_capacity(count); indices.len()];
            let mut labels = Vec::new();
            for k in 0..count {
                let augmentation = loader::Augmentation {
                    list: &options.recipe,
                    seed: options.seed,
                    epoch: k as u64,
                };
                let (raw, these) = predict_items_with(
                    &run.model,
                    items,
                    indices,
                    train,
                    &run.device,
                    Some(augmentation),
                )?;
                for (scan, p) in copies.iter_mut().zip(raw) {
                    scan.push(run.shown_probability(p));
                }
                labels = these;
            }
            let (means, spreads): (Vec<f32>, Vec<TtaSpread>) =
                copies.iter().map(|c| tta_mean(c)).unzip();
            (means, labels, spreads.into_iter().map(Some).collect())
        }
    };
    let threshold = run.decision_threshold();
    let scans = indices
        .iter()
        .zip(probabilities.iter().zip(&labels))
        .zip(spreads)
        .map(|((&i, (&probability, &label)), tta)| ScanScore {
            path: items[i].source.clone(),
            label,
            probability,
            tta,
        })
        .collect();
    Ok(Evaluation {
        data,
        split: match split {
            EvalSplit::Val => "val",
            EvalSplit::All => "all",
        }
        .to_owned(),
        missing: Vec::new(),
        changed: Vec::new(),
        metrics: evaluation_metrics(&probabilities, &labels, threshold, run.bootstrap),
        reliability: reliability_curve(&probabilities, &labels, CALIBRATION_BINS),
        probabilities: run.probabilities_description(),
        scans,
    })
}

/// Loss and accuracy of `model` (inference mode) on `indices`, without augmentation.
pub fn evaluate_items(
    model: &Network,
    items: &[PreparedItem],
    indices: &[usize],
    config: &TrainConfig,
    device: &burn::tensor::Device,
) -> Result<(f64, f64), TrainError> {
    let (probabilities, labels) = predict_items(model, items, indices, config, device)?;
    let metrics = binary_metrics(&probabilities, &labels);
    Ok((metrics.loss, metrics.accuracy))
}

/// Probabilities of the positive class for `indices` (inference mode), with their labels.
pub fn predict_items(
    model: &Network,
    items: &[PreparedItem],
    indices: &[usize],
    config: &TrainConfig,
    device: &burn::tensor::Device,
) -> Result<(Vec<f32>, Vec<u8>), TrainError> {
    predict_items_with(model, items, indices, config, device, None)
}

/// The mean of one scan's test-time-augmented probabilities, and their spread.
fn tta_mean(copies: &[f32]) -> (f32, TtaSpread) {
    let count = copies.len().max(1);
    let values: Vec<f64> = copies.iter().map(|&p| f64::from(p)).collect();
    let mean = values.iter().sum::<f64>() / count as f64;
    let sd = if count > 1 {
        let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    let spread = TtaSpread {
        count,
        sd,
        min: copies.iter().copied().fold(f32::INFINITY, f32::min),
        max: copies.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    };
    (mean as f32, spread)
}

/// [`predict_items`] with the volumes passed through `augmentation` first (test-time
/// augmentation; each scan's stream is keyed by its item index and the augmentation's epoch).
fn predict_items_with(
    model: &Network,
    items: &[PreparedItem],
    indices: &[usize],
    config: &TrainConfig,
    device: &burn::tensor::Device,
    augmentation: Option<loader::Augmentation<'_>>,
) -> Result<(Vec<f32>, Vec<u8>), TrainError> {
    let size = config.preprocess.size;
    let mut probabilities = Vec::with_capacity(indices.len());
    let mut labels = Vec::with_capacity(indices.len());
    loader::for_each_batch(
        items,
        indices,
        config.batch_size,
        size,
        augmentation,
        PREFETCH,
        |batch| -> Result<(), TrainError> {
            let n = batch.labels.len();
            let input = batch_tensor(batch.input, n, size, device)?;
            probabilities.extend(predict_proba(model, input)?);
            labels.extend(batch.labels.iter().map(|&l| l as u8));
            Ok(())
        },
    )?;
    Ok((probabilities, labels))
}

/// One scan's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The scan file.
    pub path: PathBuf,
    /// Probability of the positive class (calibrated when the run is, see
    /// [`LoadedRun::probabilities_description`]).
    pub probability: f32,
    /// The predicted class name (above the run's decision threshold, 0.5 unless calibrated with
    /// another).
    pub class: String,
    /// With test-time augmentation: how much the augmented copies disagree (`probability` is
    /// their mean).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<TtaSpread>,
}

/// Expands directories into the scans they hold (sorted, as [`ct3d_volume::format::list_scans`]
/// lists them: NIfTI files and sub-folders holding a DICOM series). A folder that is itself a
/// scan (one holding DICOM files) is kept, as are files.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut scans = Vec::new();
    for input in inputs {
        if input.is_dir() && !ct3d_volume::format::is_scan(input) {
            scans.extend(ct3d_volume::format::list_scans(input).unwrap_or_default());
        } else {
            scans.push(input.clone());
        }
    }
    scans
}

/// Preprocesses `scan` with the run's recorded parameters and predicts it.
pub fn predict_scan(run: &LoadedRun, scan: &Path) -> Result<Prediction, TrainError> {
    predict_scan_series(run, scan, None)
}

/// [`predict_scan`] with a DICOM series chosen by `SeriesInstanceUID` (for a folder holding
/// several series).
///
/// A volume that is already preprocessed (the output of `ct3d preprocess`, or any float volume
/// whose values all lie in `[0, 1]`) is refused ([`TrainError::AlreadyPreprocessed`]) in favour
/// of [`predict_model_ready`]: preprocessing it again would give a confident, meaningless answer.
pub fn predict_scan_series(
    run: &LoadedRun,
    scan: &Path,
    series: Option<&str>,
) -> Result<Prediction, TrainError> {
    let volume = preprocessed_scan(scan, series, &run.config.train.preprocess)?;
    predict_volume(run, scan, &volume)
}

/// `scan` preprocessed with `preprocess`; a scan that already is refused.
fn preprocessed_scan(
    scan: &Path,
    series: Option<&str>,
    preprocess: &ct3d_volume::preprocess::PreprocessConfig,
) -> Result<Volume, TrainError> {
    ct3d_volume::preprocess::process_scan(scan, series, preprocess).map_err(|e| match e {
        PreprocessError::AlreadyPreprocessed { path, reason } => {
            TrainError::AlreadyPreprocessed { path, reason }
        }
        other => TrainError::Preprocess(other),
    })
}

/// The model-ready volume at `path`, checked as [`predict_model_ready`] describes.
fn model_ready_volume(
    path: &Path,
    series: Option<&str>,
    preprocess: &ct3d_volume::preprocess::PreprocessConfig,
) -> Result<Volume, TrainError> {
    let volume = ct3d_volume::format::read_scan(path, series)?;
    check_model_ready(&volume, path, preprocess.size)?;
    // `ct3d preprocess` records its parameters: other ones than the run's give wrong answers.
    let recorded = ct3d_volume::format::description(path)
        .and_then(|text| description_mismatch(&text, preprocess));
    if let Some(difference) = recorded {
        return Err(TrainError::OtherParameters {
            path: path.to_owned(),
            difference,
        });
    }
    Ok(volume)
}

/// Predicts every scan of `scans` in order, calling `each` with each answer as soon as it is
/// known, while reading and preprocessing run ahead on another thread: a scan's decompression and
/// preprocessing overlap the network's work on the one before, so a folder goes through both
/// cores instead of one stage at a time. With `preprocessed`, the scans are model-ready volumes
/// ([`predict_model_ready`]). The answers are the same as [`predict_scan_series`]'s (and
/// [`predict_model_ready`]'s), one scan at a time.
pub fn predict_scans(
    run: &LoadedRun,
    scans: &[PathBuf],
    series: Option<&str>,
    preprocessed: bool,
    mut each: impl FnMut(&Path, Result<Prediction, TrainError>),
) {
    // Two volumes ahead: enough to hide a read, little memory (two 128×128×64 f32 volumes).
    const AHEAD: usize = 2;
    let preprocess = &run.config.train.preprocess;
    let prepare = |scan: &Path| {
        if preprocessed {
            model_ready_volume(scan, series, preprocess)
        } else {
            preprocessed_scan(scan, series, preprocess)
        }
    };
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(AHEAD);
        scope.spawn(move || {
            for scan in scans {
                if sender.send(prepare(scan)).is_err() {
                    return;
                }
            }
        });
        for (scan, volume) in scans.iter().zip(receiver) {
            each(scan, volume.and_then(|v| predict_volume(run, scan, &v)));
        }
    });
}

/// Seconds spent in each stage of one prediction ([`predict_scan_timed`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StageTimes {
    /// Reading and decoding the scan file(s).
    pub read: f64,
    /// Windowing, rotating and resizing.
    pub preprocess: f64,
    /// The network (and calibration).
    pub model: f64,
}

/// [`predict_scan_series`], timing its three stages (a service reports them per request).
pub fn predict_scan_timed(
    run: &LoadedRun,
    scan: &Path,
    series: Option<&str>,
) -> Result<(Prediction, StageTimes), TrainError> {
    let started = std::time::Instant::now();
    let raw = ct3d_volume::preprocess::read_raw_scan(scan, series).map_err(|e| match e {
        PreprocessError::AlreadyPreprocessed { path, reason } => {
            TrainError::AlreadyPreprocessed { path, reason }
        }
        other => TrainError::Preprocess(other),
    })?;
    let read = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let volume = ct3d_volume::preprocess::process_volume(&raw, &run.config.train.preprocess)
        .map_err(TrainError::Preprocess)?;
    let preprocess = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let prediction = predict_volume(run, scan, &volume)?;
    let model = started.elapsed().as_secs_f64();
    Ok((
        prediction,
        StageTimes {
            read,
            preprocess,
            model,
        },
    ))
}

/// Predicts a model-ready volume (`ct3d preprocess` output made with the run's window and size)
/// as it is: no windowing, rotation or resizing. Its values must be finite and within `[0, 1]`
/// (up to [`MODEL_READY_SLACK`]) and its shape the run's input size ([`check_model_ready`]), and
/// the parameters its `ct3d preprocess` header records (if any) the run's; else one line says
/// what is wrong.
pub fn predict_model_ready(
    run: &LoadedRun,
    path: &Path,
    series: Option<&str>,
) -> Result<Prediction, TrainError> {
    let volume = model_ready_volume(path, series, &run.config.train.preprocess)?;
    predict_volume(run, path, &volume)
}

/// How far outside `[0, 1]` a model-ready value may lie: preprocessing through the general
/// cubic-spline rotation (planes of unequal side parity) may overshoot a little, while a raw scan
/// in Hounsfield units is off by hundreds.
pub const MODEL_READY_SLACK: f32 = 0.25;

/// Checks that `volume` (read from `path`) can go into a model taking `input` voxels as it is.
pub fn check_model_ready(
    volume: &Volume,
    path: &Path,
    input: [usize; 3],
) -> Result<(), TrainError> {
    let range = -MODEL_READY_SLACK..=1.0 + MODEL_READY_SLACK;
    let stats = volume.stats();
    let problem = match stats {
        None => Some("no finite values".to_owned()),
        Some(s) if s.non_finite > 0 => Some(format!("{} NaN or infinite voxels", s.non_finite)),
        Some(s) if !range.contains(&s.min) || !range.contains(&s.max) => Some(format!(
            "values from {} to {}, not within [0, 1]",
            s.min, s.max
        )),
        Some(_) => None,
    };
    if let Some(problem) = problem {
        return Err(TrainError::NotModelReady {
            path: path.to_owned(),
            problem,
        });
    }
    let shape = volume.shape();
    if shape != input {
        return Err(TrainError::ModelReadyShape {
            path: path.to_owned(),
            shape,
            input,
        });
    }
    Ok(())
}

/// The model's prediction for the preprocessed `volume` of `scan`.
fn predict_volume(run: &LoadedRun, scan: &Path, volume: &Volume) -> Result<Prediction, TrainError> {
    let train = &run.config.train;
    let (probability, tta) = match &run.tta {
        None => {
            let input = batch_from_volumes(&[volume], train.preprocess.size, &run.device)?;
            (
                run.shown_probability(predict_proba(&run.model, input)?[0]),
                None,
            )
        }
        Some(options) => {
            let count = options.count.max(1);
            let mut copies = Vec::with_capacity(count);
            for k in 0..count {
                let augmented = options
                    .recipe
                    .apply(volume.clone(), options.seed, k as u64, 0);
                let input = batch_from_volumes(&[&augmented], train.preprocess.size, &run.device)?;
                copies.push(run.shown_probability(predict_proba(&run.model, input)?[0]));
            }
            let (mean, spread) = tta_mean(&copies);
            (mean, Some(spread))
        }
    };
    let class = if f64::from(probability) > run.decision_threshold() {
        &train.classes.positive_name
    } else {
        &train.classes.negative_name
    };
    Ok(Prediction {
        path: scan.to_owned(),
        probability,
        class: class.clone(),
        tta,
    })
}

/// The upstream example's two sentences for a probability `p` of the positive class:
/// `This model is 8.77 percent confident that CT scan is normal` and
/// `This model is 91.23 percent confident that CT scan is abnormal`.
pub fn prediction_sentences(p: f32, negative_name: &str, positive_name: &str) -> [String; 2] {
    let p = f64::from(p);
    [
        format!(
            "This model is {:.2} percent confident that CT scan is {negative_name}",
            100.0 * (1.0 - p)
        ),
        format!(
            "This model is {:.2} percent confident that CT scan is {positive_name}",
            100.0 * p
        ),
    ]
}

/// How `ct3d calibrate` sets the decision threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThresholdChoice {
    /// 0.5 (nothing recorded).
    #[default]
    Half,
    /// Youden's J on the validation scans' calibrated probabilities.
    Youden,
}

/// What [`calibrate`] fitted, with the validation metrics before and after.
#[derive(Debug, Clone)]
pub struct CalibrationOutcome {
    /// The record written to `calibration.json`.
    pub calibration: Calibration,
    /// The temperature fit.
    pub fit: TemperatureFit,
    /// The validation metrics of the raw probabilities at 0.5.
    pub before: BinaryMetrics,
    /// The validation metrics of the calibrated probabilities at the recorded threshold.
    pub after: BinaryMetrics,
    /// Recorded validation scans that were left out or scored as changed (only when allowed).
    pub missing: Vec<PathBuf>,
    /// Recorded validation scans scored as they are now although they changed.
    pub changed: Vec<PathBuf>,
}

/// Fits temperature scaling (and, with [`ThresholdChoice::Youden`], a decision threshold) on the
/// run's recorded validation scans with the loaded weights, and records it in the run folder
/// (`calibration.json`, atomically, holding the folder's lock so that a training run in it is not
/// disturbed). Needs validation scans of both classes.
///
/// The numbers before and after come from the same scans the temperature was fitted on, so they
/// show what the fit did, not how it will do on new scans.
pub fn calibrate(
    run: &mut LoadedRun,
    threshold: ThresholdChoice,
    allow_changed_data: bool,
) -> Result<CalibrationOutcome, TrainError> {
    run.use_raw_probabilities();
    let raw = evaluate_recorded(run, EvalSplit::Val, allow_changed_data)?;
    let probabilities: Vec<f32> = raw.scans.iter().map(|s| s.probability).collect();
    let labels: Vec<u8> = raw.scans.iter().map(|s| s.label).collect();
    let fit = fit_temperature(&probabilities, &labels)?;
    let calibrated: Vec<f32> = probabilities
        .iter()
        .map(|&p| crate::calibration::apply_temperature(p, fit.temperature))
        .collect();
    let threshold = match threshold {
        ThresholdChoice::Half => None,
        ThresholdChoice::Youden => Some(RecordedThreshold {
            value: youden_threshold(&calibrated, &labels)
                .ok_or(CalibrationError::NoYoudenThreshold)?,
            method: "youden".to_owned(),
        }),
    };
    let decision = threshold.as_ref().map_or(0.5, |t| t.value);
    let after = evaluation_metrics(&calibrated, &labels, decision, run.bootstrap);
    let before = raw.metrics;
    let path = match run.weights {
        WeightsChoice::Best => run.dir.best_weights(),
        WeightsChoice::Last => run.dir.last_weights(),
    };
    let pair = |a: Option<f64>, b: Option<f64>| [a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)];
    let calibration = Calibration {
        temperature: fit.temperature,
        threshold,
        weights: run.weights.name().to_owned(),
        weights_sha256: weights_sha256(&path)?,
        split: "val".to_owned(),
        scans: labels.len(),
        nll: [fit.nll_before, fit.nll_after],
        ece: pair(before.ece, after.ece),
        brier: pair(before.brier, after.brier),
        ct3d_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let lock = FolderLock::acquire(run.dir.root())?;
    write_calibration(run.dir.root(), &calibration)?;
    drop(lock);
    run.calibration = CalibrationStatus::Applied(calibration.clone());
    Ok(CalibrationOutcome {
        calibration,
        fit,
        before,
        after,
        missing: raw.missing,
        changed: raw.changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_match_the_example() {
        let [normal, abnormal] = prediction_sentences(0.9123, "normal", "abnormal");
        assert_eq!(
            normal,
            "This model is 8.77 percent confident that CT scan is normal"
        );
        assert_eq!(
            abnormal,
            "This model is 91.23 percent confident that CT scan is abnormal"
        );
    }
}
