//! The `ScanFormat` seam: one place that knows which raw scan formats ct3d reads, how a path is
//! recognised as one of them, and how it becomes a [`Volume`] with its geometry.
//!
//! Every consumer goes through here: `ct3d info` and `predict` read with [`read_scan`], dataset
//! and input folders are listed with [`is_listed_scan`] / [`list_scans`], the `prepare` cache
//! hashes the bytes [`scan_files`] names, and the "looks already preprocessed" check asks
//! [`description`]. A NIfTI file, an NRRD or MetaImage file and a DICOM series folder give the
//! same [`Volume`] for the same scan (a DICOM series and its `dcm2niix` conversion agree voxel for
//! voxel; NRRD and MetaImage files read as pynrrd and SimpleITK read them, placed in RAS+ space as
//! ITK and 3D Slicer place them).
//!
//! # Adding a format
//! Write one file, `format/<name>.rs`, with a unit struct implementing [`ScanFormat`] (its
//! errors go in [`ScanError::Format`]), and register it with one `mod` line and one entry in
//! [`FORMATS`]. Datasets, `predict`'s folder expansion, the cache key and `info` then accept it.
//! A format that is a text header over a block of samples (as [`nrrd`] and [`metaimage`] are)
//! can reuse their bounded block reader and [`FormatError`]; one with a detached data file says
//! so with [`ScanFiles::Files`] so that the cache hashes the data too.
//!
//! # How a path is recognised
//! Each format says how it [recognises](Recognition) a path. Listing a folder keeps the entries
//! some format calls a whole [`Recognition::Scan`]. Reading picks the strongest claim, the first
//! registered format winning a tie: a file that is only one file of a larger scan
//! ([`Recognition::Part`]: a lone DICOM slice, or the `.raw` data file beside an `.nhdr` or
//! `.mhd` header) beats a name, a name beats a
//! [`Recognition::Fallback`] (a folder without DICOM files is read as a DICOM series so that
//! the error says so; any other file as NIfTI, whose reader checks the magic bytes).

mod dicom;
pub mod metaimage;
mod nifti;
pub mod nrrd;
mod raw;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::Volume;
use crate::dicom::DicomError;
use crate::nifti::ReadError;

pub(crate) use nifti::is_listed_name as nifti_listed_name;
pub use raw::{ElementType, FormatError, MAX_HEADER_BYTES};

/// The registered formats. Order breaks ties between equal claims and orders the names in
/// messages ([`listed_kinds`]).
pub static FORMATS: &[&dyn ScanFormat] = &[
    &nifti::Nifti,
    &nrrd::Nrrd,
    &metaimage::MetaImage,
    &dicom::DicomSeries,
];

/// How strongly a format claims a path; stronger claims win (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recognition {
    /// Not this format.
    No,
    /// Not recognisably this format, but this format reads it when no other format claims it
    /// (so that the reader's error says what is wrong with it).
    Fallback,
    /// A whole scan of this format, by its name or its content: listed in dataset and input
    /// folders, and read by this format.
    Scan,
    /// A file of this format that is only part of a scan (one file of a DICOM series, the data
    /// file of a detached header): never listed; reading it is an error that says what to give
    /// instead.
    Part,
}

/// Which files hold a scan's bytes, for the `prepare` cache's content hash and change stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanFiles {
    /// The scan is the one file at its path, hashed as its bytes.
    Single,
    /// The scan is a folder of these files (sorted), hashed by name, length and content.
    Folder(Vec<PathBuf>),
    /// The scan is these files, its header (the path itself) first and then its data files (an
    /// NRRD `.nhdr` or a MetaImage `.mhd` with detached data), hashed as a folder's files are.
    Files(Vec<PathBuf>),
}

/// One input format: how a path is recognised as it and how it is read.
pub trait ScanFormat: Sync {
    /// What the format is called in messages ("NIfTI", "DICOM series").
    fn name(&self) -> &'static str;

    /// How the scans dataset folders list are described in messages
    /// ("*.nii, *.nii.gz, *.hdr").
    fn listed_as(&self) -> &'static str;

    /// How strongly this format claims `path` (cheap: the path's kind and name, or a few magic
    /// bytes; never the whole file). Hidden names are left out by the caller when listing.
    fn recognize(&self, path: &Path) -> Recognition;

    /// Reads the scan at `path` into a volume with its spacing (mm) and affine (voxel → world
    /// mm), in `[x, y, z]` order with `x` fastest. `series` selects a series inside a scan that
    /// holds several (a DICOM folder); the dispatcher refuses it on single files before this is
    /// called.
    fn read(&self, path: &Path, series: Option<&str>) -> Result<Volume, ScanError>;

    /// The files whose bytes make up the scan (the cache key hashes them). Default: the file
    /// itself.
    fn files(&self, _path: &Path) -> io::Result<ScanFiles> {
        Ok(ScanFiles::Single)
    }

    /// The free-text description the scan records, if the format has one (NIfTI's `descrip`,
    /// where `ct3d preprocess` records its parameters). Default: none.
    fn description(&self, _path: &Path) -> Option<String> {
        None
    }
}

/// Why a scan could not be read. Displays as one line that names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The NIfTI file could not be read.
    #[error(transparent)]
    Nifti(#[from] ReadError),
    /// The DICOM series folder could not be read.
    #[error(transparent)]
    Dicom(#[from] DicomError),
    /// Another registered format's reader failed (its message names the file): for NRRD and
    /// MetaImage, a [`FormatError`].
    #[error(transparent)]
    Format(Box<dyn std::error::Error + Send + Sync>),
    /// A series was selected but the scan is a file.
    #[error("{path}: a series can only be selected in a DICOM folder, but this is a file")]
    SeriesOnFile {
        /// The file.
        path: PathBuf,
    },
    /// A single DICOM file was given instead of its folder.
    #[error("{path}: a DICOM file; give the folder that holds its series instead")]
    DicomFile {
        /// The file.
        path: PathBuf,
    },
}

/// The format that reads `path`: the strongest claim, the first registered format winning a
/// tie; `None` when no format claims it at all.
pub fn format_of(path: &Path) -> Option<&'static dyn ScanFormat> {
    let mut best: Option<(Recognition, &'static dyn ScanFormat)> = None;
    for &format in FORMATS {
        let claim = format.recognize(path);
        if claim > Recognition::No && best.is_none_or(|(strongest, _)| claim > strongest) {
            best = Some((claim, format));
        }
    }
    best.map(|(_, format)| format)
}

/// Reads a scan with the format that claims it (see the module docs): a folder as a DICOM
/// series (the one whose `SeriesInstanceUID` is `series`, or the only one), a `.nrrd`/`.nhdr` as
/// NRRD, a `.mha`/`.mhd` as MetaImage, any other file as NIfTI.
/// `series` on an existing file is an error.
pub fn read_scan(path: &Path, series: Option<&str>) -> Result<Volume, ScanError> {
    if series.is_some() && !path.is_dir() && path.exists() {
        return Err(ScanError::SeriesOnFile {
            path: path.to_owned(),
        });
    }
    match format_of(path) {
        Some(format) => format.read(path, series),
        // Unreachable with the NIfTI fallback registered; the NIfTI reader's error then.
        None => Ok(crate::nifti::read_volume(path)?),
    }
}

/// True when some format sees a whole scan at `path` ([`Recognition::Scan`]), whatever its
/// name: a folder given explicitly is one scan when this holds (a DICOM series), else a folder
/// of scans.
pub fn is_scan(path: &Path) -> bool {
    FORMATS
        .iter()
        .any(|format| format.recognize(path) == Recognition::Scan)
}

/// [`is_scan`] for a name that is not hidden: what dataset folders and `predict`'s input folders
/// list.
pub fn is_listed_scan(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'));
    !hidden && is_scan(path)
}

/// The scans directly inside `dir` ([`is_listed_scan`]), sorted by name.
pub fn list_scans(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if is_listed_scan(&entry.path()) {
            names.push(entry.file_name());
        }
    }
    names.sort();
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// The files holding the bytes of the scan at `path`, as the format reading it says.
pub fn scan_files(path: &Path) -> io::Result<ScanFiles> {
    match format_of(path) {
        Some(format) => format.files(path),
        None => Ok(ScanFiles::Single),
    }
}

/// The description the scan at `path` records, if its format has one and it can be read.
pub fn description(path: &Path) -> Option<String> {
    format_of(path)?.description(path)
}

/// The listed kinds of scan in words, for messages: "*.nii, *.nii.gz, *.hdr or DICOM series
/// folders".
pub fn listed_kinds() -> String {
    let kinds: Vec<&str> = FORMATS.iter().map(|format| format.listed_as()).collect();
    match kinds.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// True for a path [`read_scan`] reads as a DICOM series: a folder holding DICOM files.
pub fn is_dicom_series(path: &Path) -> bool {
    crate::dicom::is_dicom_folder(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_kinds_names_every_format_in_order() {
        assert_eq!(
            listed_kinds(),
            "*.nii, *.nii.gz, *.hdr, *.nrrd, *.nhdr, *.mha, *.mhd or DICOM series folders"
        );
    }

    #[test]
    fn recognition_order_puts_content_over_names_over_fallbacks() {
        assert!(Recognition::Part > Recognition::Scan);
        assert!(Recognition::Scan > Recognition::Fallback);
        assert!(Recognition::Fallback > Recognition::No);
    }

    #[test]
    fn every_path_kind_has_exactly_the_expected_reader() {
        let dir = tempfile::tempdir().unwrap();
        let nii = dir.path().join("a.nii.gz");
        std::fs::write(&nii, b"not really").unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let name = |path: &Path| format_of(path).map(|f| f.name());
        assert_eq!(name(&nii), Some("NIfTI"));
        assert_eq!(name(&dir.path().join("missing.nii")), Some("NIfTI"));
        assert_eq!(name(&dir.path().join("notes.txt")), Some("NIfTI"));
        assert_eq!(name(&empty), Some("DICOM series"));
        assert!(is_listed_scan(&nii));
        assert!(!is_listed_scan(&empty), "no DICOM files: not a scan");
        assert!(!is_listed_scan(&dir.path().join("notes.txt")));
        let hidden = dir.path().join(".a.nii");
        std::fs::write(&hidden, b"x").unwrap();
        assert!(!is_listed_scan(&hidden));
        assert_eq!(scan_files(&nii).unwrap(), ScanFiles::Single);
        assert_eq!(scan_files(&empty).unwrap(), ScanFiles::Folder(Vec::new()));
    }
}
