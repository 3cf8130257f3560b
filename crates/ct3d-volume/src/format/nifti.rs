//! NIfTI as a [`ScanFormat`]: NIfTI-1 and NIfTI-2 `.nii`, `.nii.gz` and `.hdr`/`.img` pairs, and
//! Analyze 7.5 `.hdr`/`.img` pairs (listed by the header), read by [`crate::nifti`]; also the
//! fallback reader of any file no other format claims, since its reader checks the magic bytes
//! and says what the file is not.

use std::path::Path;

use super::{Recognition, ScanError, ScanFiles, ScanFormat};
use crate::Volume;

/// The NIfTI-1 / NIfTI-2 / Analyze 7.5 format (see the module docs).
pub(super) struct Nifti;

/// The file name extensions (lowercase) dataset folders list as NIfTI scans; the `.img` half of a
/// pair is read through its `.hdr`.
const LISTED_EXTENSIONS: [&str; 3] = [".nii", ".nii.gz", ".hdr"];

/// True for a name ending in a listed extension (any case) with something before it.
pub(crate) fn is_listed_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    LISTED_EXTENSIONS
        .iter()
        .any(|ext| lower.len() > ext.len() && lower.ends_with(ext))
}

impl ScanFormat for Nifti {
    fn name(&self) -> &'static str {
        "NIfTI"
    }

    fn listed_as(&self) -> &'static str {
        "*.nii, *.nii.gz, *.hdr"
    }

    fn recognize(&self, path: &Path) -> Recognition {
        let named = path
            .file_name()
            .is_some_and(|name| is_listed_name(&name.to_string_lossy()));
        if path.is_dir() {
            Recognition::No
        } else if named && path.is_file() {
            Recognition::Scan
        } else {
            Recognition::Fallback
        }
    }

    fn read(&self, path: &Path, _series: Option<&str>) -> Result<Volume, ScanError> {
        Ok(crate::nifti::read_volume(path)?)
    }

    /// A `.hdr`/`.img` pair is both files (hashed together, so that editing the `.img` changes
    /// the cache key); a single file is itself.
    fn files(&self, path: &Path) -> std::io::Result<ScanFiles> {
        Ok(match crate::nifti::scan_files(path) {
            Some(files) if files.len() > 1 => ScanFiles::Files(files),
            _ => ScanFiles::Single,
        })
    }

    fn description(&self, path: &Path) -> Option<String> {
        crate::nifti::read_header(path)
            .ok()
            .map(|header| header.description)
    }
}
