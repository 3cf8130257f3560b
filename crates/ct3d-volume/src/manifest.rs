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
//! - Fields follow RFC 4180: separated by commas, optionally quoted with `"`, a quote inside a
//!   quoted field doubled (`""`); quoted fields may hold commas and line breaks. Line ends are LF
//!   or CRLF; a UTF-8 byte-order mark and blank lines are ignored. Unquoted fields are trimmed.
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

use crate::dataset::{Dataset, DatasetItem};

/// How many offending rows a message lists per kind of problem before it says "and N more".
const LISTED_ROWS: usize = 10;

/// One record of a CSV file: its fields and the row number it starts on (the header is row 1,
/// as in a spreadsheet; a quoted line break does not start a new row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    /// The 1-based row number.
    pub row: usize,
    /// The 1-based line of the file the record starts on.
    pub line: usize,
    /// The fields, unquoted; unquoted fields trimmed of surrounding spaces.
    pub fields: Vec<String>,
}

/// A CSV syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    /// The 1-based line where it was found.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses RFC 4180 CSV text into records (see the module documentation). Blank lines are
/// skipped; a leading UTF-8 byte-order mark is ignored.
pub fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    let mut row = 0usize;
    loop {
        // Skip blank lines between records.
        while let Some(&c) = chars.peek() {
            match c {
                '\n' => {
                    line += 1;
                    chars.next();
                }
                '\r' => {
                    chars.next();
                }
                _ => break,
            }
        }
        if chars.peek().is_none() {
            break;
        }
        let start_line = line;
        let mut fields = Vec::new();
        loop {
            // One field.
            let mut field = String::new();
            let mut quoted = false;
            while chars.peek().is_some_and(|&c| c == ' ' || c == '\t') {
                field.push(chars.next().unwrap_or(' '));
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                quoted = true;
                field.clear();
                loop {
                    match chars.next() {
                        None => {
                            return Err(CsvError {
                                line: start_line,
                                message: "a quoted field is never closed (missing \")".to_owned(),
                            });
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                while chars.peek().is_some_and(|&c| c == ' ' || c == '\t') {
                    chars.next();
                }
                if let Some(&c) = chars.peek()
                    && !matches!(c, ',' | '\n' | '\r')
                {
                    return Err(CsvError {
                        line,
                        message: format!(
                            "unexpected {c:?} after a closing quote (a quote inside a quoted \
                             field is written \"\")"
                        ),
                    });
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if matches!(c, ',' | '\n' | '\r') {
                        break;
                    }
                    if c == '"' {
                        return Err(CsvError {
                            line,
                            message: "a quote inside an unquoted field (quote the whole field \
                                      and double the quote: \"\")"
                                .to_owned(),
                        });
                    }
                    field.push(c);
                    chars.next();
                }
            }
            fields.push(if quoted {
                field
            } else {
                field.trim().to_owned()
            });
            match chars.next() {
                Some(',') => continue,
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    break;
                }
                Some('\n') => {
                    line += 1;
                    break;
                }
                None => break,
                Some(_) => unreachable!("fields end at a comma, a line end or the end of text"),
            }
        }
        row += 1;
        records.push(CsvRecord {
            row,
            line: start_line,
            fields,
        });
    }
    Ok(records)
}

/// Why a manifest could not be read. Displays as one line naming the file; a manifest with bad
/// rows lists every problem at once.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not valid CSV.
    #[error("{}: not a valid CSV file: {source}", path.display())]
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
        let records = parse_csv(&text).map_err(|source| ManifestError::Syntax {
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

/// Which column holds what.
struct Columns {
    path: usize,
    label: usize,
    patient: Option<usize>,
    count: usize,
}

fn header_columns(manifest: &Path, header: &CsvRecord) -> Result<Columns, ManifestError> {
    let header_error = |message: String| ManifestError::Header {
        path: manifest.to_owned(),
        message,
    };
    let find = |name: &str| -> Result<Option<usize>, ManifestError> {
        let found: Vec<usize> = (0..header.fields.len())
            .filter(|&i| header.fields[i].trim().eq_ignore_ascii_case(name))
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [i] => Ok(Some(*i)),
            _ => Err(header_error(format!(
                "the header has {} columns named {name:?}",
                found.len()
            ))),
        }
    };
    let path = find("path")?;
    let label = find("label")?;
    let patient = find("patient")?;
    let (Some(path), Some(label)) = (path, label) else {
        let missing: Vec<&str> = [("path", path), ("label", label)]
            .iter()
            .filter(|(_, found)| found.is_none())
            .map(|(name, _)| *name)
            .collect();
        return Err(header_error(format!(
            "the header row ({}) has no {} column",
            header.fields.join(","),
            missing.join(" or ")
        )));
    };
    Ok(Columns {
        path,
        label,
        patient,
        count: header.fields.len(),
    })
}

/// Validates every data row, collecting all problems before failing.
fn manifest_items(
    manifest: &Path,
    records: &[CsvRecord],
    base: &Path,
    classes: [&str; 2],
) -> Result<Vec<DatasetItem>, ManifestError> {
    let Some((header, rows)) = records.split_first() else {
        return Err(ManifestError::Empty {
            path: manifest.to_owned(),
            what: "no header row".to_owned(),
        });
    };
    let columns = header_columns(manifest, header)?;
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
    for record in rows {
        let row = record.row;
        if record.fields.len() != columns.count {
            wrong_width.push(format!(
                "row {row} has {} (the header has {})",
                record.fields.len(),
                columns.count
            ));
            continue;
        }
        let raw_path = record.fields[columns.path].as_str();
        let raw_label = record.fields[columns.label].trim();
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
        let patient = columns
            .patient
            .map(|i| record.fields[i].trim().to_owned())
            .filter(|p| !p.is_empty());
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
        parse_csv(text)
            .unwrap()
            .into_iter()
            .map(|r| r.fields)
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
        let records =
            parse_csv("\u{feff}path,label,patient\r\n\r\n a.nii , 0 ,\r\nb.nii,1,P").unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].fields, vec!["path", "label", "patient"]);
        assert_eq!(records[1].fields, vec!["a.nii", "0", ""]);
        assert_eq!((records[1].row, records[1].line), (2, 3));
        assert_eq!(records[2].fields, vec!["b.nii", "1", "P"]);
        assert_eq!(fields(",\n"), vec![vec!["", ""]]);
        assert!(parse_csv("").unwrap().is_empty());
        assert!(parse_csv("\n\r\n").unwrap().is_empty());
    }

    #[test]
    fn csv_quoted_line_break_is_one_row() {
        let records = parse_csv("h\n\"two\nlines\"\nnext\n").unwrap();
        assert_eq!(records[1].fields, vec!["two\nlines"]);
        assert_eq!((records[2].row, records[2].line), (3, 4));
    }

    #[test]
    fn csv_syntax_errors_name_the_line() {
        let err = parse_csv("h\n\"open,1\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("never closed"), "{err}");
        let err = parse_csv("h\n\"a\"b,1\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse_csv("h\nx\na\"b,1\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("unquoted"), "{err}");
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
