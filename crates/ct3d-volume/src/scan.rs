//! One entry point for every raw scan ct3d accepts: a NIfTI file or a folder holding a DICOM
//! series.
//!
//! [`read_scan`] reads a directory with [`dicom::read_dicom_series`](crate::dicom) and anything
//! else with [`nifti_io::read_volume`](crate::nifti_io), so both give the same [`Volume`] for the
//! same scan (a DICOM series and its `dcm2niix` conversion agree voxel for voxel).

use std::path::{Path, PathBuf};

use crate::Volume;
use crate::dicom::{self, DicomError};
use crate::nifti_io::{self, ReadError};

/// Why a scan could not be read. Displays as one line that names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The NIfTI file could not be read.
    #[error(transparent)]
    Nifti(#[from] ReadError),
    /// The DICOM series folder could not be read.
    #[error(transparent)]
    Dicom(#[from] DicomError),
    /// A series was selected but the scan is a file.
    #[error("{path}: --series selects a series in a DICOM folder, but this is a file")]
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

/// Reads a scan: a folder is read as a DICOM series (the one whose `SeriesInstanceUID` is
/// `series`, or the only one), a file as NIfTI. `series` on a file is an error.
pub fn read_scan(path: &Path, series: Option<&str>) -> Result<Volume, ScanError> {
    if path.is_dir() {
        return Ok(dicom::read_dicom_series(path, series)?);
    }
    if series.is_some() && path.exists() {
        return Err(ScanError::SeriesOnFile {
            path: path.to_owned(),
        });
    }
    match nifti_io::read_volume(path) {
        Err(ReadError::NotNifti { .. }) if dicom::is_dicom_file(path) => {
            Err(ScanError::DicomFile {
                path: path.to_owned(),
            })
        }
        result => Ok(result?),
    }
}

/// True for a path [`read_scan`] reads as a DICOM series: a folder holding DICOM files.
pub fn is_dicom_series(path: &Path) -> bool {
    dicom::is_dicom_folder(path)
}
