//! Pictures of runs and evaluations (`ct3d plot`, `ct3d eval --plots`), built on `ct3d-plot`.

use std::path::{Path, PathBuf};

use ct3d_plot::charts::{
    Curves, ReliabilityPoint, confusion_png, curves_png, reliability_png, roc_png,
};
use ct3d_plot::{PlotError, Png};
use ct3d_volume::atomic::write_bytes_atomic;

use crate::config::Classes;
use crate::history::{EpochRecord, from_csv};
use crate::metrics::{Evaluation, roc_curve};
use crate::run::RunDir;

/// Size of the curves figure in pixels (two panels side by side).
pub const CURVES_SIZE: [usize; 2] = [1200, 400];
/// Side of the square ROC and confusion-matrix pictures in pixels.
pub const SQUARE_SIDE: usize = 480;

/// Why a picture of a run could not be made or saved.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    /// The run's history could not be read.
    #[error("{path}: {reason}")]
    History {
        /// `history.csv` of the run.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Drawing failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// The output's extension names a format ct3d does not write.
    #[error("{}: cannot write a .{extension} picture; name the output .png or .jpg", path.display())]
    Format {
        /// The output file.
        path: PathBuf,
        /// Its extension.
        extension: String,
    },
    /// The picture could not be written.
    #[error("{path}: cannot write")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The history's four curves.
pub fn curves_from_history(history: &[EpochRecord]) -> Curves {
    Curves {
        train_accuracy: history.iter().map(|r| r.acc).collect(),
        validation_accuracy: history.iter().map(|r| r.val_acc).collect(),
        train_loss: history.iter().map(|r| r.loss).collect(),
        validation_loss: history.iter().map(|r| r.val_loss).collect(),
    }
}

/// Reads `RUN/history.csv`.
pub fn read_history(run: &Path) -> Result<Vec<EpochRecord>, PictureError> {
    let path = RunDir::new(run).history();
    let text = std::fs::read_to_string(&path).map_err(|e| PictureError::History {
        path: path.clone(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "not found: is this a run folder written by `ct3d train`, with at least one finished epoch?"
                .into()
        } else {
            e.to_string()
        },
    })?;
    from_csv(&text, &path).map_err(|e| PictureError::History {
        path: path.clone(),
        reason: e.reason,
    })
}

/// The seed's accuracy/loss figure for a run.
pub fn run_curves_png(run: &Path) -> Result<Png, PictureError> {
    let history = read_history(run)?;
    let [width, height] = CURVES_SIZE;
    Ok(curves_png(&curves_from_history(&history), width, height)?)
}

/// ROC curve and confusion matrix of an evaluation.
pub struct EvaluationPictures {
    /// ROC curve with the AUC in its title.
    pub roc: Png,
    /// 2×2 confusion matrix (rows: true class).
    pub confusion: Png,
}

/// Draws an evaluation's ROC curve and confusion matrix; `classes` names the two classes.
pub fn evaluation_pictures(
    evaluation: &Evaluation,
    classes: &Classes,
) -> Result<EvaluationPictures, PlotError> {
    let scores: Vec<f32> = evaluation.scans.iter().map(|s| s.probability).collect();
    let labels: Vec<u8> = evaluation.scans.iter().map(|s| s.label).collect();
    let m = &evaluation.metrics;
    let c = &m.confusion;
    Ok(EvaluationPictures {
        roc: roc_png(&roc_curve(&scores, &labels), m.auc, SQUARE_SIDE)?,
        confusion: confusion_png(
            [
                [c.true_negative, c.false_positive],
                [c.false_negative, c.true_positive],
            ],
            [&classes.negative_name, &classes.positive_name],
            SQUARE_SIDE,
        )?,
    })
}

/// Writes an evaluation's `roc.png` and `confusion.png` into `dir` (created if missing), each
/// atomically. Returns the two paths.
pub fn write_evaluation_pictures(
    evaluation: &Evaluation,
    classes: &Classes,
    dir: &Path,
) -> Result<[PathBuf; 2], PictureError> {
    let pictures = evaluation_pictures(evaluation, classes)?;
    std::fs::create_dir_all(dir).map_err(|source| PictureError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let roc = dir.join("roc.png");
    let confusion = dir.join("confusion.png");
    save_png(&pictures.roc, &roc)?;
    save_png(&pictures.confusion, &confusion)?;
    Ok([roc, confusion])
}

/// An evaluation's reliability diagram: the reliability curve of its probabilities (15 bins)
/// against the diagonal, titled with which probabilities they are and their ECE.
pub fn reliability_picture(evaluation: &Evaluation) -> Result<Png, PlotError> {
    let points: Vec<ReliabilityPoint> = evaluation
        .reliability
        .iter()
        .map(|b| ReliabilityPoint {
            predicted: b.mean_predicted,
            observed: b.observed,
            count: b.count,
        })
        .collect();
    let ece = evaluation
        .metrics
        .ece
        .map_or("n/a".to_owned(), |e| format!("{e:.3}"));
    let title = format!(
        "Reliability, {} probabilities (ECE = {ece})",
        evaluation.probabilities
    );
    reliability_png(&points, &title, SQUARE_SIDE)
}

/// Writes an evaluation's `reliability.png` into `dir` (created if missing), atomically.
pub fn write_reliability_picture(
    evaluation: &Evaluation,
    dir: &Path,
) -> Result<PathBuf, PictureError> {
    let png = reliability_picture(evaluation)?;
    std::fs::create_dir_all(dir).map_err(|source| PictureError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join("reliability.png");
    save_png(&png, &path)?;
    Ok(path)
}

/// The file format a picture output gets, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureFormat {
    /// `.png`, or no extension.
    Png,
    /// `.jpg` or `.jpeg`.
    Jpeg,
}

/// The format of the picture file `path` asks for (case-insensitive extension); any extension
/// other than .png, .jpg and .jpeg is refused, so that a file's name never lies about its bytes.
pub fn picture_format(path: &Path) -> Result<PictureFormat, PictureError> {
    let Some(extension) = path.extension() else {
        return Ok(PictureFormat::Png);
    };
    match extension.to_string_lossy().to_lowercase().as_str() {
        "png" => Ok(PictureFormat::Png),
        "jpg" | "jpeg" => Ok(PictureFormat::Jpeg),
        other => Err(PictureError::Format {
            path: path.to_owned(),
            extension: other.to_owned(),
        }),
    }
}

/// Writes a picture atomically (temporary file, then rename): PNG, or JPEG when `path` ends in
/// .jpg or .jpeg (see [`picture_format`]).
pub fn save_png(png: &Png, path: &Path) -> Result<(), PictureError> {
    let jpeg;
    let bytes = match picture_format(path)? {
        PictureFormat::Png => &png.bytes,
        PictureFormat::Jpeg => {
            jpeg = png.to_jpeg()?;
            &jpeg
        }
    };
    write_bytes_atomic(path, bytes).map_err(|source| PictureError::Write {
        path: path.to_owned(),
        source,
    })
}
