//! CSV manifests: a dataset listed in a file instead of laid out in class folders.
//!
//! ```text
//! path,label,patient
//! scans/a.nii.gz,normal,P001
//! "scans/b, follow-up.nii.gz",1,P001
//! /data/other/c.nii.gz,0,
//! ```
//!
//! - The first row is a header naming the columns; `path` and `label` are required, `patient` is
//!   optional, names match case-insensitively and in any order, and other columns are ignored
//!   (notes, say). Every row must have as many fields as the header.
//! - `path` is relative to the CSV file's folder (or absolute). It must exist; a folder is
//!   accepted too (a scan format stored as a folder, such as a DICOM series).
//! - `label` is the negative class name or `0` for label 0, the positive class name or `1` for
//!   label 1 (names match exactly, after trimming spaces).
//! - `patient` (optional, may be empty) groups scans of one patient: k-fold cross-validation
//!   keeps a patient's scans in one fold. A patient with scans of both labels is allowed (say a
//!   normal baseline and an abnormal follow-up): the scans stay together, and the fold assignment
//!   counts each of them under its own label.
//! - Fields follow RFC 4180 (read by the `csv` crate): separated by commas, optionally quoted
//!   with `"` right after the comma, a quote inside a quoted field doubled (`""`); quoted fields
//!   may hold commas and line breaks. Line ends are LF or CRLF; a UTF-8 byte-order mark and blank
//!   lines are ignored. Fields are trimmed of surrounding spaces. A row whose quotes do not pair
//!   up (a quoted field never closed, a lone quote inside an unquoted field) is refused.
//! - Rows are numbered as a spreadsheet numbers them: the header is row 1.
//!
//! Every problem of the file is reported at once, in one [`ManifestError`]: all rows pointing to
//! missing files, all bad labels, all rows with the wrong number of fields, all duplicate paths.
//!
//! Items come out label 0 first, each class in row order (the order the per-class train /
//! validation split takes them in).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use csv::StringRecord;
use serde::Deserialize;

use crate::dataset::{Dataset, DatasetItem};

/// How many offending rows a message lists per kind of problem before it says "and N more".
const LISTED_ROWS: usize = 10;

/// A CSV syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    /// The 1-based line where it was found.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The columns a data row is read into (by header name, so in any order; others are ignored).
#[derive(Debug, Deserialize)]
struct ManifestRow {
    path: String,
    label: String,
    #[serde(default)]
    patient: Option<String>,
}

/// Reads the records of CSV text (header included; blank lines skipped, fields trimmed, rows of
/// any length). The `csv` crate reads a quote that does not pair up leniently, as literal text or
/// up to the end of the file; such a row is refused here instead, naming its line, since it is
/// almost always a typing mistake that would otherwise turn into puzzling rows.
fn read_records(text: &str) -> Result<Vec<StringRecord>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
        .into_records()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CsvError {
            line: e.position().map_or(1, |p| p.line() as usize),
            message: e.to_string(),
        })?;
    let starts: Vec<usize> = records
        .iter()
        .map(|r| r.position().map_or(0, |p| p.byte() as usize))
        .chain([text.len()])
        .collect();
    for (record, span) in records.iter().zip(starts.windows(2)) {
        let raw = text.get(span[0]..span[1]).unwrap_or_default();
        if raw.matches('"').count() % 2 == 1 {
            return Err(CsvError {
                line: record_line(text, record),
                message: "a quote is never closed, or stands inside an unquoted field (quote the \
                          whole field and double each quote inside it: \"\")"
                    .to_owned(),
            });
        }
    }
    Ok(records)
}

/// The 1-based line `record` of `text` starts on. Counted here because `csv` places a record
/// after a CRLF line end on the `\n`, one line too early.
fn record_line(text: &str, record: &StringRecord) -> usize {
    let start = record.position().map_or(0, |p| p.byte() as usize);
    let rest = text.get(start..).unwrap_or_default();
    let start = start + (rest.len() - rest.trim_start_matches(['\r', '\n']).len());
    1 + text.get(..start).unwrap_or_default().matches('\n').count()
}

/// Why a manifest could not be read. Displays as one line naming the file; a manifest with bad
/// rows lists every problem at once.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read (the I/O error is the source).
    #[error("{}", path.display())]
    Io {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not valid CSV.
    #[error("{}: not a valid CSV file", path.display())]
    Syntax {
        /// The manifest.
        path: PathBuf,
        /// Where and what.
        source: CsvError,
    },
    /// No header, or no data rows.
    #[error("{}: empty manifest ({what})", path.display())]
    Empty {
        /// The manifest.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// The header lacks a required column or repeats one.
    #[error("{}: {message} (expected a header row such as path,label,patient)", path.display())]
    Header {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Both class names are the same.
    #[error("{}: negative and positive class are both {name:?}", path.display())]
    SameClass {
        /// The manifest.
        path: PathBuf,
        /// The repeated name.
        name: String,
    },
    /// Some rows are wrong: every problem, in one message.
    #[error("{}: {}", path.display(), problems.join("; "))]
    Rows {
        /// The manifest.
        path: PathBuf,
        /// One entry per kind of problem, each listing its rows.
        problems: Vec<String>,
    },
}

impl Dataset {
    /// Reads a CSV manifest (see [`crate::manifest`]): `negative` or `0` is label 0, `positive`
    /// or `1` label 1. The dataset's root is the manifest's folder.
    pub fn from_manifest(
        manifest: &Path,
        negative: &str,
        positive: &str,
    ) -> Result<Self, ManifestError> {
        if negative == positive {
            return Err(ManifestError::SameClass {
                path: manifest.to_owned(),
                name: negative.to_owned(),
            });
        }
        let text = fs::read_to_string(manifest).map_err(|source| ManifestError::Io {
            path: manifest.to_owned(),
            source,
        })?;
        let records = read_records(&text).map_err(|source| ManifestError::Syntax {
            path: manifest.to_owned(),
            source,
        })?;
        let base = manifest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let items = manifest_items(manifest, &records, base, [negative, positive])?;
        Ok(Dataset::from_parts(
            base.to_owned(),
            Some(manifest.to_owned()),
            [negative.to_owned(), positive.to_owned()],
            items,
        ))
    }
}

/// Checks the header (a `path` and a `label` column, each once, in any case) and returns it with
/// the names trimmed and in lower case, as [`ManifestRow`] reads them.
fn header_names(manifest: &Path, header: &StringRecord) -> Result<StringRecord, ManifestError> {
    let header_error = |message: String| ManifestError::Header {
        path: manifest.to_owned(),
        message,
    };
    let names: StringRecord = header.iter().map(str::to_ascii_lowercase).collect();
    for name in ["path", "label", "patient"] {
        let count = names.iter().filter(|n| *n == name).count();
        if count > 1 {
            return Err(header_error(format!(
                "the header has {count} columns named {name:?}"
            )));
        }
    }
    let missing: Vec<&str> = ["path", "label"]
        .into_iter()
        .filter(|name| !names.iter().any(|n| n == *name))
        .collect();
    if !missing.is_empty() {
        return Err(header_error(format!(
            "the header row ({}) has no {} column",
            header.iter().collect::<Vec<_>>().join(","),
            missing.join(" or ")
        )));
    }
    Ok(names)
}

/// Validates every data row, collecting all problems before failing.
fn manifest_items(
    manifest: &Path,
    records: &[StringRecord],
    base: &Path,
    classes: [&str; 2],
) -> Result<Vec<DatasetItem>, ManifestError> {
    let Some((header, rows)) = records.split_first() else {
        return Err(ManifestError::Empty {
            path: manifest.to_owned(),
            what: "no header row".to_owned(),
        });
    };
    let header = header_names(manifest, header)?;
    if rows.is_empty() {
        return Err(ManifestError::Empty {
            path: manifest.to_owned(),
            what: "a header row but no scans".to_owned(),
        });
    }
    let mut wrong_width: Vec<String> = Vec::new();
    let mut empty_path: Vec<String> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut bad_label: Vec<String> = Vec::new();
    let mut duplicates: Vec<String> = Vec::new();
    let mut first_row_of: HashMap<PathBuf, usize> = HashMap::new();
    let mut items: Vec<(u8, DatasetItem)> = Vec::new();
    // Row 1 is the header; blank lines are not rows.
    for (row, record) in (2..).zip(rows) {
        // The reader is flexible so that every short or long row is listed, not just the first.
        if record.len() != header.len() {
            wrong_width.push(format!(
                "row {row} has {} (the header has {})",
                record.len(),
                header.len()
            ));
            continue;
        }
        let fields: ManifestRow = match record.deserialize(Some(&header)) {
            Ok(fields) => fields,
            // Every field is text and the header has both columns, so this does not happen;
            // should it, the row is still named.
            Err(error) => {
                wrong_width.push(format!("row {row} ({error})"));
                continue;
            }
        };
        let raw_path = fields.path.as_str();
        let raw_label = fields.label.as_str();
        let label = match raw_label {
            "0" => Some(0u8),
            "1" => Some(1u8),
            l if l == classes[0] => Some(0),
            l if l == classes[1] => Some(1),
            _ => None,
        };
        if label.is_none() {
            bad_label.push(format!("row {row} {raw_label:?}"));
        }
        if raw_path.is_empty() {
            empty_path.push(format!("row {row}"));
            continue;
        }
        let path = base.join(raw_path);
        if fs::metadata(&path).is_err() {
            missing.push(format!("row {row} {raw_path}"));
            continue;
        }
        // The same file spelled two ways (`a.nii`, `./x/../a.nii`, a link) is one file.
        let identity = path.canonicalize().unwrap_or_else(|_| path.clone());
        if let Some(first) = first_row_of.get(&identity) {
            duplicates.push(format!("row {row} {raw_path} (as row {first})"));
            continue;
        }
        first_row_of.insert(identity, row);
        let patient = fields.patient.filter(|p| !p.is_empty());
        if let Some(label) = label {
            items.push((
                label,
                DatasetItem {
                    path,
                    label,
                    patient,
                },
            ));
        }
    }
    let mut problems = Vec::new();
    let mut report = |rows: Vec<String>, what: &str| {
        if !rows.is_empty() {
            problems.push(format!("{} {what}: {}", rows.len(), listed(&rows)));
        }
    };
    report(wrong_width, "rows have the wrong number of fields");
    report(empty_path, "rows have an empty path");
    report(missing, "rows point to missing files");
    report(
        bad_label,
        &format!(
            "rows have a label that is neither {:?} / 0 nor {:?} / 1",
            classes[0], classes[1]
        ),
    );
    report(duplicates, "rows repeat a path");
    if problems.is_empty() {
        for (label, class) in classes.iter().enumerate() {
            if !items.iter().any(|(l, _)| usize::from(*l) == label) {
                problems.push(format!("no scan is labelled {class:?} (or {label})"));
            }
        }
    }
    if !problems.is_empty() {
        // "1 rows" reads badly; the counts are exact, so say "1 row … points".
        let problems = problems
            .into_iter()
            .map(|p| singular_fix(&p))
            .collect::<Vec<_>>();
        return Err(ManifestError::Rows {
            path: manifest.to_owned(),
            problems,
        });
    }
    // Label 0 first, each class in row order.
    items.sort_by_key(|(label, _)| *label);
    Ok(items.into_iter().map(|(_, item)| item).collect())
}

/// The first [`LISTED_ROWS`] entries, comma-separated, then "and N more".
fn listed(rows: &[String]) -> String {
    let mut text = rows
        .iter()
        .take(LISTED_ROWS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if rows.len() > LISTED_ROWS {
        text.push_str(&format!(" and {} more", rows.len() - LISTED_ROWS));
    }
    text
}

/// "1 rows have/point/repeat" → "1 row has/points/repeats".
fn singular_fix(problem: &str) -> String {
    let Some(rest) = problem.strip_prefix("1 rows ") else {
        return problem.to_owned();
    };
    let rest = if let Some(r) = rest.strip_prefix("have ") {
        format!("has {r}")
    } else if let Some(r) = rest.strip_prefix("point ") {
        format!("points {r}")
    } else if let Some(r) = rest.strip_prefix("repeat ") {
        format!("repeats {r}")
    } else {
        rest.to_owned()
    };
    format!("1 row {rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        read_records(text)
            .unwrap()
            .iter()
            .map(|r| r.iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn csv_plain_quoted_and_escaped_fields() {
        assert_eq!(
            fields("path,label\na.nii,0\n\"b, c.nii\",\"1\"\n\"say \"\"hi\"\".nii\",x\n"),
            vec![
                vec!["path", "label"],
                vec!["a.nii", "0"],
                vec!["b, c.nii", "1"],
                vec!["say \"hi\".nii", "x"],
            ]
        );
    }

    #[test]
    fn csv_line_ends_blank_lines_bom_and_empty_fields() {
        let text = "path,label,patient\r\n\r\n a.nii , 0 ,\r\nb.nii,1,P";
        let records = read_records(&format!("\u{feff}{text}")).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(&records[0], vec!["path", "label", "patient"]);
        assert_eq!(&records[1], vec!["a.nii", "0", ""]);
        assert_eq!(record_line(text, &records[1]), 3);
        assert_eq!(&records[2], vec!["b.nii", "1", "P"]);
        assert_eq!(fields(",\n"), vec![vec!["", ""]]);
        assert!(read_records("").unwrap().is_empty());
        assert!(read_records("\n\r\n").unwrap().is_empty());
    }

    #[test]
    fn csv_quoted_line_break_is_one_row() {
        let records = read_records("h\n\"two\nlines\"\nnext\n").unwrap();
        assert_eq!(&records[1], vec!["two\nlines"]);
        assert_eq!(record_line("h\n\"two\nlines\"\nnext\n", &records[2]), 4);
    }

    #[test]
    fn csv_unpaired_quotes_name_the_line() {
        let err = read_records("h\n\"open,1\nnext,0\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("never closed"), "{err}");
        let err = read_records("h\nx\na\"b,1\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("unquoted"), "{err}");
    }

    #[test]
    fn rows_of_any_width_and_columns_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.nii", "b.nii"] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let manifest = dir.path().join("m.csv");
        let records =
            read_records("Notes, LABEL ,Patient,Path\nx,1,P1,a.nii\n\"y, z\",0,,b.nii\n").unwrap();
        let items = manifest_items(&manifest, &records, dir.path(), ["n", "p"]).unwrap();
        let got: Vec<(u8, Option<&str>)> = items
            .iter()
            .map(|i| (i.label, i.patient.as_deref()))
            .collect();
        assert_eq!(got, vec![(0, None), (1, Some("P1"))]);
        assert_eq!(items[0].path, dir.path().join("b.nii"));
        let records = read_records("path,label\na.nii\nb.nii,0,x\n").unwrap();
        let err = manifest_items(&manifest, &records, dir.path(), ["n", "p"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2 rows have the wrong number of fields: row 2 has 1 (the header has 2), row 3 has 3"),
            "{err}"
        );
    }

    #[test]
    fn singular_messages() {
        assert_eq!(
            singular_fix("1 rows point to missing files: row 2 a"),
            "1 row points to missing files: row 2 a"
        );
        assert_eq!(singular_fix("2 rows have x"), "2 rows have x");
    }

    #[test]
    fn long_lists_are_cut() {
        let rows: Vec<String> = (0..12).map(|i| format!("row {i}")).collect();
        assert!(listed(&rows).ends_with("row 9 and 2 more"));
    }
}
