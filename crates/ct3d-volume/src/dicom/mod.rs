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

mod error;
mod geometry;
mod header;
mod lengths;
mod pixels;

pub use error::DicomError;

use geometry::*;
use header::*;
use pixels::*;

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
