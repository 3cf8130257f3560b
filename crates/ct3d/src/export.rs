//! `ct3d export`: a trained run as an ONNX model for ONNX Runtime, TensorRT or an inference
//! server, with what a consumer needs to feed it recorded in the model's metadata.
//!
//! The graph is [`ct3d_model::onnx`]'s: input `[N, 1, X, Y, Z]` float32 in [0, 1] (the volume
//! `ct3d preprocess` writes, `X` its first voxel axis), outputs `logit` and `probability`, the
//! latter with the run's calibration temperature when one is applied (so it equals `ct3d
//! predict`'s). The metadata properties (`ct3d.*`) record the preprocessing, the class names,
//! the decision threshold, the weights and the run's `config.json` hash.

use std::path::{Path, PathBuf};

use ct3d_model::DeviceChoice;
use ct3d_model::onnx::{BatchSize, ExportOptions};
use ct3d_volume::atomic::write_bytes_atomic;

use crate::error::TrainError;
use crate::inference::{WeightsChoice, load_run};

/// What [`export_onnx`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: usize,
    /// The architecture's name.
    pub architecture: String,
    /// The network's input size `[x, y, z]` (voxels).
    pub input_size: [usize; 3],
    /// The calibration temperature folded into `probability`, if any.
    pub temperature: Option<f64>,
    /// The metadata properties written.
    pub metadata: Vec<(String, String)>,
}

/// Why a run cannot be exported. One line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The run cannot be loaded.
    #[error(transparent)]
    Run(#[from] TrainError),
    /// The network cannot be expressed (see [`ct3d_model::onnx::OnnxError`]).
    #[error(transparent)]
    Onnx(#[from] ct3d_model::onnx::OnnxError),
    /// The file cannot be written, or the run's config cannot be read for its hash.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Writes the run in `run` (its `weights`) as an ONNX model to `out`, atomically.
pub fn export_onnx(
    run: &Path,
    weights: WeightsChoice,
    batch: BatchSize,
    out: &Path,
) -> Result<Exported, ExportError> {
    let loaded = load_run(run, weights, DeviceChoice::Cpu)?;
    let config_path = loaded.dir.config();
    let config_sha256 =
        ct3d_volume::cache::hash_file(&config_path).map_err(|source| ExportError::Io {
            path: config_path.clone(),
            source,
        })?;
    let train = &loaded.config.train;
    let preprocess = &train.preprocess;
    let [x, y, z] = preprocess.size;
    let calibration = loaded.calibration.applied();
    let temperature = calibration.map(|c| c.temperature);
    let threshold = calibration
        .and_then(|c| c.threshold.as_ref())
        .map_or(0.5, |t| t.value);
    let weights_name = match weights {
        WeightsChoice::Best => "best",
        WeightsChoice::Last => "last",
    };
    let mut metadata: Vec<(String, String)> = vec![
        ("ct3d.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("ct3d.architecture".into(), train.architecture.name().into()),
        (
            "ct3d.input".into(),
            format!(
                "[N, 1, {x}, {y}, {z}] float32 in [0, 1]: the preprocessed volume, axes in the \
                 scan file's voxel order (x, y, z), as `ct3d preprocess` writes it"
            ),
        ),
        (
            "ct3d.preprocess".into(),
            format!(
                "clip Hounsfield units to [{}, {}] and scale to [0, 1]; rotate 90 degrees in the \
                 (x, y) plane (cubic spline, as scipy.ndimage.rotate); linear resize to \
                 {x}x{y}x{z} (as scipy.ndimage.zoom, order 1)",
                preprocess.hu_min, preprocess.hu_max
            ),
        ),
        (
            "ct3d.preprocess.hu_window".into(),
            format!("{},{}", preprocess.hu_min, preprocess.hu_max),
        ),
        ("ct3d.preprocess.size".into(), format!("{x},{y},{z}")),
        ("ct3d.preprocess.rotation_degrees".into(), "90".into()),
        (
            "ct3d.classes".into(),
            format!(
                "0={},1={}",
                train.classes.negative_name, train.classes.positive_name
            ),
        ),
        (
            "ct3d.outputs".into(),
            "logit [N, 1]; probability [N, 1] = sigmoid(logit / temperature) of class 1".into(),
        ),
        (
            "ct3d.temperature".into(),
            temperature.map_or("1".to_owned(), |t| t.to_string()),
        ),
        ("ct3d.decision_threshold".into(), threshold.to_string()),
        ("ct3d.weights".into(), weights_name.into()),
        ("ct3d.config_sha256".into(), hex(&config_sha256)),
    ];
    metadata.push(("ct3d.seed".into(), train.seed.to_string()));
    let bytes = ct3d_model::onnx::export(
        &loaded.model,
        &ExportOptions {
            batch,
            temperature,
            metadata: metadata.clone(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )?;
    write_bytes_atomic(out, &bytes).map_err(|source| ExportError::Io {
        path: out.to_owned(),
        source,
    })?;
    Ok(Exported {
        path: out.to_owned(),
        bytes: bytes.len(),
        architecture: train.architecture.name().to_owned(),
        input_size: preprocess.size,
        temperature,
        metadata,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
