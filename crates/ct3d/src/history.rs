//! The per-epoch training history, kept in memory as rows and on disk as `history.csv`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One epoch's numbers, as Keras's `History` records them plus the learning rate and wall time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (binary cross-entropy).
    #[serde(with = "crate::json_f64")]
    pub loss: f64,
    /// Training accuracy over the epoch.
    #[serde(with = "crate::json_f64")]
    pub acc: f64,
    /// Validation loss.
    #[serde(with = "crate::json_f64")]
    pub val_loss: f64,
    /// Validation accuracy.
    #[serde(with = "crate::json_f64")]
    pub val_acc: f64,
    /// Learning rate used at the epoch's last step.
    #[serde(with = "crate::json_f64")]
    pub lr: f64,
    /// Wall-clock seconds for the epoch (training and validation).
    #[serde(with = "crate::json_f64")]
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

/// serde helpers that write a number with `Display` (Rust's shortest decimal that reads back
/// exactly, never an exponent: `0.0001`, `3`, `NaN`, `inf`) instead of the `csv` crate's own float
/// format (`1e-4`, `3.0`), so that ct3d's CSV files keep the text they have always had.
pub mod csv_display {
    use std::fmt::Display;

    use serde::Serializer;

    /// Writes `value` with `Display`.
    pub fn value<T: Display, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// Writes `Some(value)` with `Display`, `None` as an empty field.
    pub fn option<T: Display, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_none(),
        }
    }
}

/// One `history.csv` row, in [`HISTORY_HEADER`]'s column order.
#[derive(Serialize, Deserialize)]
struct CsvRow(
    usize,
    #[serde(serialize_with = "csv_display::value")] f64,
    #[serde(serialize_with = "csv_display::value")] f64,
    #[serde(serialize_with = "csv_display::value")] f64,
    #[serde(serialize_with = "csv_display::value")] f64,
    #[serde(serialize_with = "csv_display::value")] f64,
    #[serde(serialize_with = "csv_display::value")] f64,
);

impl From<&EpochRecord> for CsvRow {
    fn from(r: &EpochRecord) -> Self {
        CsvRow(
            r.epoch, r.loss, r.acc, r.val_loss, r.val_acc, r.lr, r.seconds,
        )
    }
}

impl From<CsvRow> for EpochRecord {
    fn from(CsvRow(epoch, loss, acc, val_loss, val_acc, lr, seconds): CsvRow) -> Self {
        EpochRecord {
            epoch,
            loss,
            acc,
            val_loss,
            val_acc,
            lr,
            seconds,
        }
    }
}

/// Renders rows as CSV text (header included). Floats use Rust's shortest round-trip form, so
/// parsing the text gives back exactly the same numbers.
pub fn to_csv(rows: &[EpochRecord]) -> String {
    // The header is written by hand so that a history without epochs still has it.
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let written = writer
        .write_record(HISTORY_HEADER.split(','))
        .and_then(|()| {
            rows.iter()
                .try_for_each(|r| writer.serialize(CsvRow::from(r)))
        });
    // Numbers into memory: neither the serializer nor the writer has a way to fail.
    debug_assert!(written.is_ok(), "{written:?}");
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// Parses `history.csv` text written by [`to_csv`]; `path` is only used in error messages.
pub fn from_csv(text: &str, path: &Path) -> Result<Vec<EpochRecord>, HistoryParseError> {
    let err = |line: u64, reason: String| HistoryParseError {
        path: path.display().to_string(),
        line: usize::try_from(line).unwrap_or(usize::MAX),
        reason,
    };
    let line_of = |record: &csv::StringRecord| record.position().map_or(1, |p| p.line());
    let mut records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
        .into_records();
    let expected_header = || err(1, format!("expected the header {HISTORY_HEADER:?}"));
    match records.next() {
        Some(Ok(header)) if header.iter().eq(HISTORY_HEADER.split(',')) => {}
        _ => return Err(expected_header()),
    }
    let mut rows = Vec::new();
    for record in records {
        let record =
            record.map_err(|e| err(e.position().map_or(1, csv::Position::line), e.to_string()))?;
        // A line of spaces is a blank line too.
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = line_of(&record);
        if record.len() != 7 {
            return Err(err(
                line,
                format!("expected 7 fields, found {}", record.len()),
            ));
        }
        let row: CsvRow = record.deserialize(None).map_err(|e| {
            let field = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err.field().unwrap_or(0),
                _ => 0,
            };
            let text = record.get(field as usize).unwrap_or_default();
            let what = if field == 0 {
                "an epoch number"
            } else {
                "a number"
            };
            err(line, format!("{text:?} is not {what}"))
        })?;
        rows.push(row.into());
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

    /// The text `to_csv` wrote before it used the `csv` crate: old runs' files must read back,
    /// and new files must not differ from them.
    fn old_to_csv(rows: &[EpochRecord]) -> String {
        use std::fmt::Write as _;
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

    #[test]
    fn csv_text_is_the_same_as_before() {
        let odd = EpochRecord {
            epoch: 12,
            loss: f64::NAN,
            acc: 3.0,
            val_loss: f64::INFINITY,
            val_acc: 1e-7,
            lr: 1e20,
            seconds: -0.0,
        };
        let rows = vec![row(1), row(2), odd, row(100)];
        let text = to_csv(&rows);
        assert_eq!(text, old_to_csv(&rows));
        assert!(
            text.contains("\n12,NaN,3,inf,0.0000001,100000000000000000000,-0\n"),
            "{text}"
        );
        assert_eq!(to_csv(&[]), format!("{HISTORY_HEADER}\n"));
        let back = from_csv(&old_to_csv(&rows), Path::new("h.csv")).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back[0], rows[0]);
        assert_eq!(back[3], rows[3]);
        assert!(back[2].loss.is_nan() && back[2].val_loss == f64::INFINITY);
        assert_eq!(
            (back[2].acc, back[2].val_acc, back[2].lr),
            (3.0, 1e-7, 1e20)
        );
    }

    #[test]
    fn short_rows_and_bad_epochs_name_the_line() {
        let text = format!("{HISTORY_HEADER}\n\n1,0.5,0.5,0.5,0.5,0.0001,3\n  \n2,0.5\n");
        let e = from_csv(&text, Path::new("h.csv")).unwrap_err();
        assert_eq!(e.to_string(), "h.csv: line 5: expected 7 fields, found 2");
        let text = format!("{HISTORY_HEADER}\nx,0.5,0.5,0.5,0.5,0.0001,3\n");
        let e = from_csv(&text, Path::new("h.csv")).unwrap_err();
        assert_eq!(e.to_string(), "h.csv: line 2: \"x\" is not an epoch number");
        assert_eq!(
            from_csv("", Path::new("h.csv")).unwrap_err().to_string(),
            format!("h.csv: line 1: expected the header {HISTORY_HEADER:?}")
        );
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
