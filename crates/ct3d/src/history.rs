//! The per-epoch training history, kept in memory as rows and on disk as `history.csv`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One epoch's numbers, as Keras's `History` records them plus the learning rate and wall time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (binary cross-entropy).
    #[serde(with = "crate::run::json_f64")]
    pub loss: f64,
    /// Training accuracy over the epoch.
    #[serde(with = "crate::run::json_f64")]
    pub acc: f64,
    /// Validation loss.
    #[serde(with = "crate::run::json_f64")]
    pub val_loss: f64,
    /// Validation accuracy.
    #[serde(with = "crate::run::json_f64")]
    pub val_acc: f64,
    /// Learning rate used at the epoch's last step.
    #[serde(with = "crate::run::json_f64")]
    pub lr: f64,
    /// Wall-clock seconds for the epoch (training and validation).
    #[serde(with = "crate::run::json_f64")]
    pub seconds: f64,
}

/// The CSV header line of `history.csv`.
pub const HISTORY_HEADER: &str = "epoch,loss,acc,val_loss,val_acc,lr,seconds";

/// A history file that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: line {line}: {reason}")]
pub struct HistoryParseError {
    /// The file.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Renders rows as CSV text (header included). Floats use Rust's shortest round-trip form, so
/// parsing the text gives back exactly the same numbers.
pub fn to_csv(rows: &[EpochRecord]) -> String {
    let mut out = String::from(HISTORY_HEADER);
    out.push('\n');
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{}",
            r.epoch, r.loss, r.acc, r.val_loss, r.val_acc, r.lr, r.seconds
        );
    }
    out
}

/// Parses `history.csv` text written by [`to_csv`]; `path` is only used in error messages.
pub fn from_csv(text: &str, path: &Path) -> Result<Vec<EpochRecord>, HistoryParseError> {
    let err = |line: usize, reason: String| HistoryParseError {
        path: path.display().to_string(),
        line,
        reason,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == HISTORY_HEADER => {}
        _ => return Err(err(1, format!("expected the header {HISTORY_HEADER:?}"))),
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 7 {
            return Err(err(
                i + 1,
                format!("expected 7 fields, found {}", fields.len()),
            ));
        }
        let num = |k: usize| -> Result<f64, HistoryParseError> {
            fields[k]
                .trim()
                .parse::<f64>()
                .map_err(|_| err(i + 1, format!("{:?} is not a number", fields[k])))
        };
        let epoch = fields[0]
            .trim()
            .parse::<usize>()
            .map_err(|_| err(i + 1, format!("{:?} is not an epoch number", fields[0])))?;
        rows.push(EpochRecord {
            epoch,
            loss: num(1)?,
            acc: num(2)?,
            val_loss: num(3)?,
            val_acc: num(4)?,
            lr: num(5)?,
            seconds: num(6)?,
        });
    }
    Ok(rows)
}

/// One line per epoch in the style of Keras's `verbose=2`:
/// `Epoch 3/100 - 41s - loss: 0.6154 - acc: 0.6643 - val_loss: 1.9429 - val_acc: 0.5000`.
pub fn keras_line(record: &EpochRecord, epochs: usize) -> String {
    format!(
        "Epoch {}/{} - {:.0}s - loss: {:.4} - acc: {:.4} - val_loss: {:.4} - val_acc: {:.4}",
        record.epoch,
        epochs,
        record.seconds,
        record.loss,
        record.acc,
        record.val_loss,
        record.val_acc
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize) -> EpochRecord {
        EpochRecord {
            epoch,
            loss: 0.1 + epoch as f64 / 3.0,
            acc: 0.5,
            val_loss: 1.0 / 7.0,
            val_acc: 0.6667,
            lr: 1e-4,
            seconds: 41.25,
        }
    }

    #[test]
    fn csv_round_trip_is_exact() {
        let rows = vec![row(1), row(2), row(3)];
        let text = to_csv(&rows);
        assert!(text.starts_with(HISTORY_HEADER));
        assert_eq!(from_csv(&text, Path::new("h.csv")).unwrap(), rows);
    }

    #[test]
    fn bad_csv_names_file_and_line() {
        let text =
            format!("{HISTORY_HEADER}\n1,0.5,0.5,0.5,0.5,0.0001,3\n2,x,0.5,0.5,0.5,0.0001,3\n");
        let e = from_csv(&text, Path::new("run/history.csv")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "run/history.csv: line 3: \"x\" is not a number"
        );
        assert!(from_csv("nope\n", Path::new("h.csv")).is_err());
    }

    #[test]
    fn keras_style_line() {
        let line = keras_line(&row(3), 100);
        assert_eq!(
            line,
            "Epoch 3/100 - 41s - loss: 1.1000 - acc: 0.5000 - val_loss: 0.1429 - val_acc: 0.6667"
        );
    }
}
