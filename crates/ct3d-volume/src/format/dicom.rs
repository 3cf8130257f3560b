//! A DICOM series folder as a [`ScanFormat`], read by [`crate::dicom`]: a folder holding DICOM
//! files is a scan; any other folder is read as one so that the error says it holds none; a lone
//! DICOM file (recognised by its `DICM` magic) is refused with a pointer to its folder.

use std::io;
use std::path::Path;

use super::{Recognition, ScanError, ScanFiles, ScanFormat};
use crate::Volume;
use crate::dicom;

/// A folder holding one or more DICOM series (see the module docs).
pub(super) struct DicomSeries;

impl ScanFormat for DicomSeries {
    fn name(&self) -> &'static str {
        "DICOM series"
    }

    fn listed_as(&self) -> &'static str {
        "DICOM series folders"
    }

    fn recognize(&self, path: &Path) -> Recognition {
        if path.is_dir() {
            if dicom::is_dicom_folder(path) {
                Recognition::Scan
            } else {
                Recognition::Fallback
            }
        } else if dicom::is_dicom_file(path) {
            Recognition::Part
        } else {
            Recognition::No
        }
    }

    fn read(&self, path: &Path, series: Option<&str>) -> Result<Volume, ScanError> {
        if !path.is_dir() && dicom::is_dicom_file(path) {
            return Err(ScanError::DicomFile {
                path: path.to_owned(),
            });
        }
        Ok(dicom::read_dicom_series(path, series)?)
    }

    /// The folder's DICOM files in name order (`DICOMDIR` and non-image objects included); a
    /// lone file is itself.
    fn files(&self, path: &Path) -> io::Result<ScanFiles> {
        if path.is_dir() {
            Ok(ScanFiles::Folder(dicom::dicom_files(path)?))
        } else {
            Ok(ScanFiles::Single)
        }
    }
}
