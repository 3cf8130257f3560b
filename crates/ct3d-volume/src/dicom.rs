//! DICOM series input: a folder holding the slices of one CT series becomes a [`Volume`] equal to
//! what `dcm2niix` makes of it.
//!
//! # What is read
//!
//! [`read_dicom_series`] reads the regular files directly inside a folder (not its sub-folders).
//! Hidden files (names starting with `.`), files that are not DICOM Part 10 files (no `DICM` magic
//! after the 128-byte preamble: `.txt`, `.json`, ...), `DICOMDIR` and other DICOM objects without
//! an image (no `Rows`) are skipped. The remaining files are grouped by `SeriesInstanceUID`; a
//! folder with several series is an error listing them ([`list_series`] lists them too) unless
//! `series` names one. Only single-frame images with one sample per pixel are read (classic CT,
//! MR, PET image storage); multi-frame and enhanced objects are refused by name.
//!
//! Pixel data in every transfer syntax dicom-rs can decode without C libraries is read: native
//! (implicit/explicit VR, either byte order), deflated, RLE, JPEG baseline/extended/lossless and
//! JPEG 2000 (pure-Rust `openjp2`). Anything else (JPEG-LS, JPEG XL, HTJ2K, video, an unknown UID)
//! is an error naming the transfer syntax.
//!
//! # Values
//!
//! Voxels are Hounsfield units: each slice's stored values times its own `RescaleSlope` plus its
//! own `RescaleIntercept` (1 and 0 when absent), computed in `f64` and rounded once to `f32`.
//!
//! # Geometry (the `dcm2niix` convention)
//!
//! With `r` and `c` the row and column direction cosines of `ImageOrientationPatient`,
//! `PixelSpacing = [Δrow, Δcol]` (row spacing first, as DICOM orders it) and `n = r × c`:
//!
//! - slices are ordered by `ImagePositionPatient · n`, ascending — never by file name or
//!   `InstanceNumber`;
//! - `x` is the DICOM column index, `y` the row index reversed (`y = Rows − 1 − row`, the flip
//!   `dcm2niix` applies), `z` the slice order;
//! - spacing is `[Δcol, Δrow, Δslice]`, where `Δslice` comes from the slice positions (the median
//!   distance between neighbours along `n`), not from `SliceThickness`;
//! - the affine is the LPS geometry turned into RAS (first two rows negated): column `x` is
//!   `Δcol·r`, column `y` is `−Δrow·c`, column `z` is `(last position − first position) / (slices −
//!   1)`, and the origin is the first slice's position moved to its last row.
//!
//! A folder holding a single image is a valid one-slice volume; its `Δslice` is `SliceThickness`
//! (1 mm when absent) and its `z` column is `n·Δslice`.
//!
//! # Consistency policy
//!
//! Every slice of the series must have the same `Rows`/`Columns`, `PixelSpacing` (within 1e-4
//! relative) and `ImageOrientationPatient` (within 1e-4). Two slices at the same position (closer
//! than 1e-3 mm along `n`) are an error naming both files. The distance between neighbouring
//! slices may differ from the median distance by at most [`GAP_TOLERANCE_FRACTION`] of it or
//! [`GAP_TOLERANCE_MM`], whichever is larger; a larger difference is an error (a missing slice,
//! or a mixed series); smaller differences above 1e-3 mm only log a `tracing` warning. Every
//! failure is a [`DicomError`] whose message is one line naming the folder; no input makes the
//! reader panic.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, FileMetaTable, OpenFileOptions, Tag};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use rayon::prelude::*;

use crate::Volume;
use crate::volume::Provenance;

/// Largest neighbour-distance deviation from the median allowed, as a fraction of the median.
pub const GAP_TOLERANCE_FRACTION: f64 = 0.01;

/// Largest neighbour-distance deviation from the median allowed, in millimetres (used when it is
/// larger than [`GAP_TOLERANCE_FRACTION`] of the median).
pub const GAP_TOLERANCE_MM: f64 = 0.01;

/// Two slices closer than this along the slice normal (mm) are at the same position.
const DUPLICATE_MM: f64 = 1e-3;

/// Deviations from the median slice distance above this (mm) are logged.
const WARN_MM: f64 = 1e-3;

/// `MediaStorageSOPClassUID` of a `DICOMDIR`.
const MEDIA_STORAGE_DIRECTORY: &str = "1.2.840.10008.1.3.10";

/// Enhanced and legacy-converted enhanced CT, MR and PET image storage: multi-frame objects whose
/// geometry lives in functional groups.
const ENHANCED_SOP_CLASSES: [&str; 7] = [
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.2.2",
    "1.2.840.10008.5.1.4.1.1.4.1",
    "1.2.840.10008.5.1.4.1.1.4.4",
    "1.2.840.10008.5.1.4.1.1.128.1",
    "1.2.840.10008.5.1.4.1.1.130",
    "1.2.840.10008.5.1.4.1.1.4.3",
];

/// Why a folder could not be read as a DICOM series. Displays as one line that names the folder.
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    /// The folder does not exist.
    #[error("{path}: no such folder")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a file, not a folder.
    #[error("{path}: not a folder (a DICOM series is read from the folder holding its files)")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// An operating-system error while listing or reading.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The folder, or the file that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No file in the folder is a DICOM file.
    #[error("{path}: no DICOM files in the folder")]
    NoDicomFiles {
        /// The folder.
        path: PathBuf,
    },
    /// DICOM files, but none holds an image (e.g. only a `DICOMDIR`).
    #[error("{path}: no DICOM images in the folder ({files} DICOM files, none with an image)")]
    NoImages {
        /// The folder.
        path: PathBuf,
        /// How many DICOM files there were.
        files: usize,
    },
    /// A DICOM file could not be parsed.
    #[error("{path}: {file}: cannot read DICOM file: {detail}")]
    ReadFile {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// What went wrong.
        detail: String,
    },
    /// The transfer syntax is unknown, or its pixel data cannot be decoded.
    #[error(
        "{path}: {file}: transfer syntax {uid} ({name}) cannot be decoded by ct3d (it reads \
         uncompressed, deflate, RLE, JPEG and JPEG 2000 DICOM)"
    )]
    UnsupportedTransferSyntax {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// The transfer syntax UID.
        uid: String,
        /// Its name, or `unknown transfer syntax`.
        name: String,
    },
    /// An image kind ct3d does not read (multi-frame, colour, ...).
    #[error("{path}: {file}: {what} is not supported")]
    Unsupported {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// What it is.
        what: String,
    },
    /// A required attribute is missing or invalid.
    #[error("{path}: {file}: {detail}")]
    BadAttribute {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// Which attribute and what is wrong with it.
        detail: String,
    },
    /// Several series and no selection.
    #[error("{path}: {count} DICOM series in the folder, choose one with --series UID: {listing}")]
    SeveralSeries {
        /// The folder.
        path: PathBuf,
        /// How many series.
        count: usize,
        /// `UID "description" (N slices)` for each, separated by `; `.
        listing: String,
    },
    /// The series asked for is not in the folder.
    #[error("{path}: no series {uid} in the folder; series present: {listing}")]
    SeriesNotFound {
        /// The folder.
        path: PathBuf,
        /// The UID asked for.
        uid: String,
        /// The series present, as in [`DicomError::SeveralSeries`].
        listing: String,
    },
    /// The slices disagree on size, pixel spacing or orientation.
    #[error("{path}: inconsistent series: {detail}")]
    Inconsistent {
        /// The folder.
        path: PathBuf,
        /// What differs, naming the files.
        detail: String,
    },
    /// Two slices at the same position.
    #[error(
        "{path}: slices {first} and {second} are at the same position ({position:.3} mm along \
         the slice normal): duplicate slices or two series with one UID"
    )]
    DuplicatePosition {
        /// The folder.
        path: PathBuf,
        /// One file.
        first: String,
        /// The other.
        second: String,
        /// Their position along the slice normal.
        position: f64,
    },
    /// Uneven slice positions: a missing slice or a mixed series.
    #[error(
        "{path}: slices {first} and {second} are {distance:.4} mm apart but the series' median \
         slice distance is {median:.4} mm (missing slices?)"
    )]
    Gap {
        /// The folder.
        path: PathBuf,
        /// The slice before the gap.
        first: String,
        /// The slice after it.
        second: String,
        /// Their distance along the slice normal.
        distance: f64,
        /// The median distance between neighbouring slices.
        median: f64,
    },
    /// The pixel data could not be decoded.
    #[error("{path}: {file}: cannot decode pixel data: {detail}")]
    Decode {
        /// The folder.
        path: PathBuf,
        /// The file's name.
        file: String,
        /// What went wrong.
        detail: String,
    },
    /// More voxels than ct3d accepts.
    #[error(
        "{path}: {columns}×{rows}×{slices} voxels exceeds ct3d's limit of {} voxels",
        crate::nifti_io::MAX_VOXELS
    )]
    TooLarge {
        /// The folder.
        path: PathBuf,
        /// Columns per slice.
        columns: usize,
        /// Rows per slice.
        rows: usize,
        /// Number of slices.
        slices: usize,
    },
}

/// One series found in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    /// `SeriesInstanceUID` (empty when the files have none).
    pub uid: String,
    /// `SeriesDescription` (empty when absent).
    pub description: String,
    /// How many image files belong to it.
    pub slices: usize,
}

impl std::fmt::Display for SeriesInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uid = if self.uid.is_empty() {
            "(no SeriesInstanceUID)"
        } else {
            &self.uid
        };
        write!(f, "{uid} {:?} ({} slices)", self.description, self.slices)
    }
}

/// True when `path` starts like a DICOM Part 10 file: a 128-byte preamble, then `DICM`.
pub fn is_dicom_file(path: &Path) -> bool {
    let mut head = [0u8; 132];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut head))
        .is_ok_and(|()| &head[128..] == b"DICM")
}

/// The DICOM files directly inside `dir` (non-hidden regular files with the `DICM` magic, links
/// followed), sorted by name. `DICOMDIR` and non-image objects are included: this is the set of
/// files a series folder's content hash covers.
pub fn dicom_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') || !path.is_file() {
            continue;
        }
        if is_dicom_file(&path) {
            files.push(path);
        } else {
            tracing::debug!("{}: not a DICOM file, skipped", path.display());
        }
    }
    files.sort();
    Ok(files)
}

/// True when `dir` is a folder holding at least one DICOM file (see [`dicom_files`]); stops at
/// the first one.
pub fn is_dicom_folder(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        !entry.file_name().to_string_lossy().starts_with('.')
            && path.is_file()
            && is_dicom_file(&path)
    })
}

/// The series in `dir`, sorted by UID.
pub fn list_series(dir: &Path) -> Result<Vec<SeriesInfo>, DicomError> {
    let headers = read_headers(dir)?;
    Ok(group(&headers)
        .into_values()
        .map(|members| info_of(&members))
        .collect())
}

/// Reads the DICOM series in `dir` (the one whose `SeriesInstanceUID` is `series`, or the only
/// one) into a volume of Hounsfield units, oriented as `dcm2niix` converts it. See the
/// [module documentation](self) for the conventions and the consistency policy.
pub fn read_dicom_series(dir: &Path, series: Option<&str>) -> Result<Volume, DicomError> {
    let headers = read_headers(dir)?;
    let groups = group(&headers);
    let listing = || {
        groups
            .values()
            .map(|members| info_of(members).to_string())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let members = match series {
        Some(uid) => match groups.get(uid.trim()) {
            Some(members) => members,
            None => {
                return Err(DicomError::SeriesNotFound {
                    path: dir.to_owned(),
                    uid: uid.to_owned(),
                    listing: listing(),
                });
            }
        },
        None if groups.len() > 1 => {
            return Err(DicomError::SeveralSeries {
                path: dir.to_owned(),
                count: groups.len(),
                listing: listing(),
            });
        }
        None => groups.values().next().expect("read_headers found images"),
    };
    let slices = members
        .iter()
        .map(|header| Slice::of(dir, header))
        .collect::<Result<Vec<_>, _>>()?;
    let geometry = Geometry::of(dir, slices)?;
    decode(dir, geometry)
}

// ---------------------------------------------------------------------------------------------
// Pass 1: headers

/// A DICOM image file's attributes, read up to (not including) its pixel data.
struct Header {
    path: PathBuf,
    name: String,
    object: DefaultDicomObject,
    series_uid: String,
    transfer_syntax: String,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Every DICOM image header in `dir`, sorted by file name.
fn read_headers(dir: &Path) -> Result<Vec<Header>, DicomError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(DicomError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DicomError::NotFound {
                path: dir.to_owned(),
            });
        }
        Err(source) => {
            return Err(DicomError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    }
    let files = dicom_files(dir).map_err(|source| DicomError::Io {
        path: dir.to_owned(),
        source,
    })?;
    if files.is_empty() {
        return Err(DicomError::NoDicomFiles {
            path: dir.to_owned(),
        });
    }
    let count = files.len();
    let read: Vec<Result<Option<Header>, DicomError>> = files
        .into_par_iter()
        .map(|path| read_header(dir, path))
        .collect();
    let mut headers = Vec::with_capacity(count);
    for result in read {
        if let Some(header) = result? {
            headers.push(header);
        }
    }
    if headers.is_empty() {
        return Err(DicomError::NoImages {
            path: dir.to_owned(),
            files: count,
        });
    }
    Ok(headers)
}

/// The header of one DICOM file, or `None` for a DICOM object that is not an image.
fn read_header(dir: &Path, path: PathBuf) -> Result<Option<Header>, DicomError> {
    let name = file_name(&path);
    let object = match OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(&path)
    {
        Ok(object) => object,
        Err(e) => {
            // Name the transfer syntax when it is what stopped the parser.
            if let Some(uid) = transfer_syntax_of(&path)
                && !TransferSyntaxRegistry
                    .get(&uid)
                    .is_some_and(|ts| ts.can_decode_dataset())
            {
                return Err(unsupported_ts(dir, &name, &uid));
            }
            return Err(DicomError::ReadFile {
                path: dir.to_owned(),
                file: name,
                detail: error_chain(&e),
            });
        }
    };
    let meta = object.meta();
    if trim_uid(meta.media_storage_sop_class_uid()) == MEDIA_STORAGE_DIRECTORY
        || object.element_opt(tags::ROWS).ok().flatten().is_none()
    {
        tracing::debug!("{}: DICOM object without an image, skipped", path.display());
        return Ok(None);
    }
    let transfer_syntax = trim_uid(meta.transfer_syntax()).to_owned();
    let series_uid = string(&object, tags::SERIES_INSTANCE_UID)
        .map(|s| trim_uid(&s).to_owned())
        .unwrap_or_default();
    Ok(Some(Header {
        path,
        name,
        object,
        series_uid,
        transfer_syntax,
    }))
}

/// The transfer syntax UID in a file's meta group, if it can be read.
fn transfer_syntax_of(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(128)).ok()?;
    let meta = FileMetaTable::from_reader(io::BufReader::new(file)).ok()?;
    Some(trim_uid(meta.transfer_syntax()).to_owned())
}

fn unsupported_ts(dir: &Path, file: &str, uid: &str) -> DicomError {
    let name = TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_owned())
        .unwrap_or_else(|| "unknown transfer syntax".to_owned());
    DicomError::UnsupportedTransferSyntax {
        path: dir.to_owned(),
        file: file.to_owned(),
        uid: uid.to_owned(),
        name,
    }
}

fn trim_uid(uid: &str) -> &str {
    uid.trim_matches(|c: char| c == '\0' || c.is_whitespace())
}

/// The headers grouped by series UID (sorted), each group in file-name order.
fn group(headers: &[Header]) -> BTreeMap<&str, Vec<&Header>> {
    let mut groups: BTreeMap<&str, Vec<&Header>> = BTreeMap::new();
    for header in headers {
        groups.entry(&header.series_uid).or_default().push(header);
    }
    groups
}

fn info_of(members: &[&Header]) -> SeriesInfo {
    let first = members[0];
    let description = string(&first.object, tags::SERIES_DESCRIPTION)
        .map(|s| {
            s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        })
        .unwrap_or_default();
    SeriesInfo {
        uid: first.series_uid.clone(),
        description,
        slices: members.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// Attribute access

fn string(object: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let element = object.element_opt(tag).ok()??;
    element.to_str().ok().map(|s| s.into_owned())
}

/// The attribute's numbers: `Ok(None)` when absent or empty, `Err` when unreadable.
fn numbers(object: &DefaultDicomObject, tag: Tag) -> Result<Option<Vec<f64>>, String> {
    let Some(element) = object.element_opt(tag).ok().flatten() else {
        return Ok(None);
    };
    let values = match element.to_multi_float64() {
        Ok(values) => values,
        Err(_)
            if element
                .to_str()
                .is_ok_and(|s| s.trim_matches(|c: char| c == '\0' || c == ' ').is_empty()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(format!("unreadable {}: {e}", tag_name(tag))),
    };
    if values.iter().any(|v| !v.is_finite()) {
        return Err(format!("{} {values:?} is not finite", tag_name(tag)));
    }
    Ok((!values.is_empty()).then_some(values))
}

fn tag_name(tag: Tag) -> &'static str {
    match tag {
        tags::ROWS => "Rows",
        tags::COLUMNS => "Columns",
        tags::IMAGE_POSITION_PATIENT => "ImagePositionPatient",
        tags::IMAGE_ORIENTATION_PATIENT => "ImageOrientationPatient",
        tags::PIXEL_SPACING => "PixelSpacing",
        tags::RESCALE_SLOPE => "RescaleSlope",
        tags::RESCALE_INTERCEPT => "RescaleIntercept",
        tags::SLICE_THICKNESS => "SliceThickness",
        tags::NUMBER_OF_FRAMES => "NumberOfFrames",
        tags::SAMPLES_PER_PIXEL => "SamplesPerPixel",
        tags::BITS_ALLOCATED => "BitsAllocated",
        _ => "attribute",
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 2: geometry

/// What one slice contributes: its place, size and rescaling.
struct Slice<'a> {
    header: &'a Header,
    rows: usize,
    columns: usize,
    position: [f64; 3],
    orientation: [f64; 6],
    /// `[Δrow, Δcol]` as DICOM stores it.
    pixel_spacing: [f64; 2],
    thickness: Option<f64>,
    slope: f64,
    intercept: f64,
    datatype: &'static str,
}

impl<'a> Slice<'a> {
    fn of(dir: &Path, header: &'a Header) -> Result<Self, DicomError> {
        let object = &header.object;
        let bad = |detail: String| DicomError::BadAttribute {
            path: dir.to_owned(),
            file: header.name.clone(),
            detail,
        };
        let unsupported = |what: String| DicomError::Unsupported {
            path: dir.to_owned(),
            file: header.name.clone(),
            what,
        };
        let sop_class = string(object, tags::SOP_CLASS_UID)
            .map(|s| trim_uid(&s).to_owned())
            .unwrap_or_else(|| trim_uid(object.meta().media_storage_sop_class_uid()).to_owned());
        if ENHANCED_SOP_CLASSES.contains(&sop_class.as_str()) {
            return Err(unsupported(format!(
                "enhanced multi-frame image storage (SOP class {sop_class})"
            )));
        }
        let frames = numbers(object, tags::NUMBER_OF_FRAMES)
            .map_err(bad)?
            .map_or(1.0, |v| v[0]);
        if frames != 1.0 {
            return Err(unsupported(format!(
                "a multi-frame image ({frames} frames; ct3d reads series of single-frame slices)"
            )));
        }
        let samples = numbers(object, tags::SAMPLES_PER_PIXEL)
            .map_err(bad)?
            .map_or(1.0, |v| v[0]);
        if samples != 1.0 {
            return Err(unsupported(format!(
                "a colour image ({samples} samples per pixel)"
            )));
        }
        let size = |tag| -> Result<usize, DicomError> {
            match numbers(object, tag).map_err(bad)? {
                Some(v) if v[0] >= 1.0 && v[0] <= 65535.0 && v[0].fract() == 0.0 => {
                    Ok(v[0] as usize)
                }
                Some(v) => Err(bad(format!("invalid {} {}", tag_name(tag), v[0]))),
                None => Err(bad(format!("no {}", tag_name(tag)))),
            }
        };
        let rows = size(tags::ROWS)?;
        let columns = size(tags::COLUMNS)?;
        let exactly = |tag, n: usize| -> Result<Vec<f64>, DicomError> {
            match numbers(object, tag).map_err(bad)? {
                Some(v) if v.len() == n => Ok(v),
                Some(v) => Err(bad(format!(
                    "{} has {} values, expected {n}",
                    tag_name(tag),
                    v.len()
                ))),
                None => Err(bad(format!(
                    "no {} (ct3d needs the slice geometry)",
                    tag_name(tag)
                ))),
            }
        };
        let position = exactly(tags::IMAGE_POSITION_PATIENT, 3)?;
        let orientation = exactly(tags::IMAGE_ORIENTATION_PATIENT, 6)?;
        let pixel_spacing = exactly(tags::PIXEL_SPACING, 2)?;
        if pixel_spacing.iter().any(|&s| s <= 0.0) {
            return Err(bad(format!(
                "PixelSpacing {pixel_spacing:?} must be positive"
            )));
        }
        let thickness = numbers(object, tags::SLICE_THICKNESS)
            .ok()
            .flatten()
            .map(|v| v[0])
            .filter(|&t| t > 0.0);
        let scalar = |tag, default: f64| -> Result<f64, DicomError> {
            Ok(numbers(object, tag).map_err(bad)?.map_or(default, |v| v[0]))
        };
        let slope = scalar(tags::RESCALE_SLOPE, 1.0)?;
        let intercept = scalar(tags::RESCALE_INTERCEPT, 0.0)?;
        let bits = scalar(tags::BITS_ALLOCATED, 16.0)?;
        let signed = scalar(tags::PIXEL_REPRESENTATION, 0.0)? == 1.0;
        let datatype = match (bits as u32, signed) {
            (8, false) => "uint8",
            (8, true) => "int8",
            (16, false) => "uint16",
            (16, true) => "int16",
            (b, _) => {
                return Err(unsupported(format!(
                    "BitsAllocated {b} (ct3d reads 8- and 16-bit images)"
                )));
            }
        };
        Ok(Self {
            header,
            rows,
            columns,
            position: [position[0], position[1], position[2]],
            orientation: std::array::from_fn(|i| orientation[i]),
            pixel_spacing: [pixel_spacing[0], pixel_spacing[1]],
            thickness,
            slope,
            intercept,
            datatype,
        })
    }
}

/// The checked, ordered series.
struct Geometry<'a> {
    slices: Vec<Slice<'a>>,
    shape: [usize; 3],
    spacing: [f64; 3],
    affine: crate::Affine,
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

impl<'a> Geometry<'a> {
    fn of(dir: &Path, mut slices: Vec<Slice<'a>>) -> Result<Self, DicomError> {
        let inconsistent = |detail: String| DicomError::Inconsistent {
            path: dir.to_owned(),
            detail,
        };
        let first = &slices[0];
        for other in &slices[1..] {
            if (other.rows, other.columns) != (first.rows, first.columns) {
                return Err(inconsistent(format!(
                    "{} is {}×{} pixels but {} is {}×{}",
                    first.header.name,
                    first.columns,
                    first.rows,
                    other.header.name,
                    other.columns,
                    other.rows
                )));
            }
            if first
                .orientation
                .iter()
                .zip(&other.orientation)
                .any(|(a, b)| (a - b).abs() > 1e-4)
            {
                return Err(inconsistent(format!(
                    "{} has ImageOrientationPatient {:?} but {} has {:?}",
                    first.header.name, first.orientation, other.header.name, other.orientation
                )));
            }
            if first
                .pixel_spacing
                .iter()
                .zip(&other.pixel_spacing)
                .any(|(a, b)| (a - b).abs() > 1e-4 * a.abs().max(b.abs()))
            {
                return Err(inconsistent(format!(
                    "{} has PixelSpacing {:?} but {} has {:?}",
                    first.header.name, first.pixel_spacing, other.header.name, other.pixel_spacing
                )));
            }
        }
        let o = first.orientation;
        let row_dir = [o[0], o[1], o[2]];
        let col_dir = [o[3], o[4], o[5]];
        let normal = cross(row_dir, col_dir);
        if (norm(row_dir) - 1.0).abs() > 1e-2
            || (norm(col_dir) - 1.0).abs() > 1e-2
            || dot(row_dir, col_dir).abs() > 1e-2
        {
            return Err(DicomError::BadAttribute {
                path: dir.to_owned(),
                file: first.header.name.clone(),
                detail: format!("ImageOrientationPatient {o:?} is not two orthogonal unit vectors"),
            });
        }
        let normal = normal.map(|v| v / norm(normal));
        let along = |s: &Slice<'_>| dot(s.position, normal);
        slices.sort_by(|a, b| along(a).total_cmp(&along(b)));
        let distances: Vec<f64> = slices
            .windows(2)
            .map(|w| along(&w[1]) - along(&w[0]))
            .collect();
        for (w, &d) in slices.windows(2).zip(&distances) {
            if d < DUPLICATE_MM {
                return Err(DicomError::DuplicatePosition {
                    path: dir.to_owned(),
                    first: w[0].header.name.clone(),
                    second: w[1].header.name.clone(),
                    position: along(&w[0]),
                });
            }
        }
        let [rows, columns, count] = [slices[0].rows, slices[0].columns, slices.len()];
        let slice_spacing = if distances.is_empty() {
            slices[0].thickness.unwrap_or(1.0)
        } else {
            let mut sorted = distances.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let tolerance = (GAP_TOLERANCE_FRACTION * median).max(GAP_TOLERANCE_MM);
            let mut worst = 0.0f64;
            for (w, &d) in slices.windows(2).zip(&distances) {
                if (d - median).abs() > tolerance {
                    return Err(DicomError::Gap {
                        path: dir.to_owned(),
                        first: w[0].header.name.clone(),
                        second: w[1].header.name.clone(),
                        distance: d,
                        median,
                    });
                }
                worst = worst.max((d - median).abs());
            }
            if worst > WARN_MM {
                tracing::warn!(
                    "{}: slice distances differ from their median {median:.4} mm by up to \
                     {worst:.4} mm",
                    dir.display()
                );
            }
            median
        };
        if (columns as u64) * (rows as u64) * (count as u64) > crate::nifti_io::MAX_VOXELS {
            return Err(DicomError::TooLarge {
                path: dir.to_owned(),
                columns,
                rows,
                slices: count,
            });
        }
        let [d_row, d_col] = slices[0].pixel_spacing;
        let first = slices[0].position;
        let step = if count > 1 {
            let last = slices[count - 1].position;
            std::array::from_fn(|i| (last[i] - first[i]) / (count - 1) as f64)
        } else {
            normal.map(|v| v * slice_spacing)
        };
        // LPS world of voxel (x, y, z): first + x·Δcol·r + (rows−1−y)·Δrow·c + z·step.
        let x_axis = row_dir.map(|v| v * d_col);
        let y_axis = col_dir.map(|v| -v * d_row);
        let origin: [f64; 3] =
            std::array::from_fn(|i| first[i] + (rows - 1) as f64 * d_row * col_dir[i]);
        let mut affine = [[0.0; 4]; 4];
        for i in 0..3 {
            let sign = if i < 2 { -1.0 } else { 1.0 };
            affine[i] = [
                sign * x_axis[i],
                sign * y_axis[i],
                sign * step[i],
                sign * origin[i],
            ];
        }
        affine[3] = [0.0, 0.0, 0.0, 1.0];
        Ok(Self {
            slices,
            shape: [columns, rows, count],
            spacing: [d_col, d_row, slice_spacing],
            affine,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Pass 3: pixels

fn decode(dir: &Path, geometry: Geometry<'_>) -> Result<Volume, DicomError> {
    let [nx, ny, nz] = geometry.shape;
    let plane = nx * ny;
    let mut data = vec![0f32; plane * nz];
    let results: Vec<Result<(), DicomError>> = data
        .par_chunks_mut(plane)
        .zip(&geometry.slices)
        .map(|(out, slice)| decode_slice(dir, slice, out))
        .collect();
    results.into_iter().collect::<Result<(), _>>()?;
    let datatype = geometry.slices[0].datatype;
    let mut volume = Volume::new(geometry.shape, data).expect("buffer sized from the shape");
    volume.spacing = geometry.spacing;
    volume.affine = geometry.affine;
    volume.provenance = Provenance {
        path: Some(dir.to_owned()),
        datatype: Some(format!("dicom {datatype}")),
    };
    Ok(volume)
}

/// Decodes one slice into `out` (`x` fastest, rows reversed), in Hounsfield units.
fn decode_slice(dir: &Path, slice: &Slice<'_>, out: &mut [f32]) -> Result<(), DicomError> {
    let header = slice.header;
    let decode_error = |detail: String| DicomError::Decode {
        path: dir.to_owned(),
        file: header.name.clone(),
        detail,
    };
    if !TransferSyntaxRegistry
        .get(&header.transfer_syntax)
        .is_some_and(|ts| ts.can_decode_all())
    {
        return Err(unsupported_ts(dir, &header.name, &header.transfer_syntax));
    }
    let object = dicom_object::open_file(&header.path).map_err(|e| DicomError::ReadFile {
        path: dir.to_owned(),
        file: header.name.clone(),
        detail: error_chain(&e),
    })?;
    if object
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_none()
    {
        return Err(decode_error("no PixelData".to_owned()));
    }
    let pixels = object
        .decode_pixel_data()
        .map_err(|e| decode_error(error_chain(&e)))?;
    let (rows, columns) = (pixels.rows() as usize, pixels.columns() as usize);
    if (rows, columns) != (slice.rows, slice.columns) || pixels.number_of_frames() != 1 {
        return Err(decode_error(format!(
            "decoded {columns}×{rows}×{} pixels, the header says {}×{}×1",
            pixels.number_of_frames(),
            slice.columns,
            slice.rows
        )));
    }
    let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let stored: Vec<f64> = pixels
        .to_vec_frame_with_options(0, &options)
        .map_err(|e| decode_error(error_chain(&e)))?;
    if stored.len() != rows * columns {
        return Err(decode_error(format!(
            "decoded {} values for {columns}×{rows} pixels",
            stored.len()
        )));
    }
    let (slope, intercept) = (slice.slope, slice.intercept);
    for (row, values) in stored.chunks_exact(columns).enumerate() {
        let y = rows - 1 - row;
        for (o, &v) in out[y * columns..(y + 1) * columns].iter_mut().zip(values) {
            *o = (v * slope + intercept) as f32;
        }
    }
    Ok(())
}

/// An error and its sources as one line (`a: b: c`), repeated messages dropped.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ").replace('\n', " ")
}
