//! `ct3d eval` and `ct3d predict`: a trained run applied to scans.
//!
//! Both load the run's recorded configuration, so scans are preprocessed exactly as the training
//! data was (window, size), never with the defaults.

use std::path::{Path, PathBuf};

use ct3d_model::input::batch_from_volumes;
use ct3d_model::weights::load_weights;
use ct3d_model::{DeviceChoice, Model, predict_proba};
use ct3d_volume::cache::{self, PrepareOptions};
use ct3d_volume::dataset::is_scan_file_name;
use serde::Serialize;

use crate::metrics::{BinaryMetrics, binary_metrics};
use crate::run::{RunConfig, RunDir};
use crate::train::{DataSource, TrainError, predict_items, prepared_patients, run_split};

/// Which weights of a run to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WeightsChoice {
    /// The epoch with the lowest validation loss (`best.safetensors`).
    #[default]
    Best,
    /// The last completed epoch (`last.safetensors`).
    Last,
}

/// Which scans of the data folder to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    /// The run's validation part (the same per-class split, or the same fold, as training).
    Val,
    /// Every scan.
    All,
}

/// A run's configuration and model, ready for inference.
pub struct LoadedRun {
    /// The run folder.
    pub dir: RunDir,
    /// `config.json`.
    pub config: RunConfig,
    /// The model with the chosen weights, in inference mode.
    pub model: Model,
    /// The device it runs on.
    pub device: burn::tensor::Device,
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
    let model = config.train.model.init(&device, 0)?;
    let path = match weights {
        WeightsChoice::Best => dir.best_weights(),
        WeightsChoice::Last => dir.last_weights(),
    };
    let model = load_weights(model, &path)?;
    Ok(LoadedRun {
        dir,
        config,
        model,
        device,
    })
}

/// One scan's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanScore {
    /// The scan file.
    pub path: PathBuf,
    /// Its true label (0 or 1).
    pub label: u8,
    /// The model's probability of label 1.
    pub probability: f32,
}

/// The result of `ct3d eval`.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Which scans were evaluated (`val` or `all`).
    pub split: String,
    /// The metrics.
    pub metrics: BinaryMetrics,
    /// Per-scan probabilities.
    pub scans: Vec<ScanScore>,
}

/// Evaluates `run` on `data` (default: the run's own data folder), on its validation part or on
/// every scan.
pub fn evaluate(
    run: &LoadedRun,
    data: Option<&Path>,
    split: EvalSplit,
) -> Result<Evaluation, TrainError> {
    evaluate_source(run, data.map(|d| DataSource::Folder(d.to_owned())), split)
}

/// Evaluates `run` on the scans of `source` (default: the run's own class folders or manifest),
/// on its validation part (the run's split or fold) or on every scan.
pub fn evaluate_source(
    run: &LoadedRun,
    source: Option<DataSource>,
    split: EvalSplit,
) -> Result<Evaluation, TrainError> {
    let train = &run.config.train;
    let source = source.unwrap_or_else(|| match &run.config.manifest {
        Some(manifest) => DataSource::Manifest(manifest.clone()),
        None => DataSource::Folder(run.config.data_root.clone()),
    });
    let dataset = source.load(&train.classes)?;
    let options = PrepareOptions {
        config: train.preprocess.clone(),
        skip_bad: false,
        verify_entries: false,
    };
    let prepared = cache::prepare_default(&dataset, &run.config.cache, &options, |_| {})?;
    let labels: Vec<u8> = prepared.items.iter().map(|item| item.label).collect();
    let indices: Vec<usize> = match split {
        EvalSplit::All => (0..labels.len()).collect(),
        EvalSplit::Val => {
            let patients = prepared_patients(&dataset, &prepared.items);
            run_split(&labels, &patients, train)?.validation
        }
    };
    let (probabilities, labels) =
        predict_items(&run.model, &prepared.items, &indices, train, &run.device)?;
    let scans = indices
        .iter()
        .zip(probabilities.iter().zip(&labels))
        .map(|(&i, (&probability, &label))| ScanScore {
            path: prepared.items[i].source.clone(),
            label,
            probability,
        })
        .collect();
    Ok(Evaluation {
        split: match split {
            EvalSplit::Val => "val",
            EvalSplit::All => "all",
        }
        .to_owned(),
        metrics: binary_metrics(&probabilities, &labels),
        scans,
    })
}

/// One scan's prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The scan file.
    pub path: PathBuf,
    /// Probability of the positive class.
    pub probability: f32,
    /// The predicted class name (at 0.5).
    pub class: String,
}

/// Expands directories into the scans they hold (sorted): NIfTI files and sub-folders holding a
/// DICOM series. A folder that itself holds DICOM files is one scan (a DICOM series); files are
/// kept as given.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut scans = Vec::new();
    for input in inputs {
        if ct3d_volume::scan::is_dicom_series(input) {
            scans.push(input.clone());
        } else if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| {
                    let name = path.file_name().and_then(|n| n.to_str());
                    (path.is_file() && name.is_some_and(is_scan_file_name))
                        || (name.is_some_and(|n| !n.starts_with('.'))
                            && ct3d_volume::scan::is_dicom_series(path))
                })
                .collect();
            found.sort();
            scans.extend(found);
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
pub fn predict_scan_series(
    run: &LoadedRun,
    scan: &Path,
    series: Option<&str>,
) -> Result<Prediction, TrainError> {
    let train = &run.config.train;
    let volume = ct3d_volume::preprocess::process_scan(scan, series, &train.preprocess)
        .map_err(|e| TrainError::Scan(e.to_string()))?;
    let input = batch_from_volumes(&[&volume], train.model.input, &run.device)?;
    let probability = predict_proba(&run.model, input)?[0];
    let class = if probability > 0.5 {
        &train.classes.positive_name
    } else {
        &train.classes.negative_name
    };
    Ok(Prediction {
        path: scan.to_owned(),
        probability,
        class: class.clone(),
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
