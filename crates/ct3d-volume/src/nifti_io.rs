//! NIfTI-1 reading and writing. (Interface stub: the implementation is being written.)

use std::path::{Path, PathBuf};

use crate::Volume;

/// Why a file could not be read as a volume. Displays as one line that names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Placeholder until the reader lands.
    #[error("{path}: not implemented yet")]
    Unimplemented {
        /// The file.
        path: PathBuf,
    },
}

/// Why a volume could not be written. Displays as one line that names the file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Placeholder until the writer lands.
    #[error("{path}: not implemented yet")]
    Unimplemented {
        /// The file.
        path: PathBuf,
    },
}

/// On-disk datatype for [`write_volume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputDtype {
    /// 32-bit float (preprocessed volumes).
    F32,
    /// 16-bit signed integer, values rounded and saturated (raw HU scans).
    I16,
}

/// Reads a NIfTI-1 file (`.nii`, `.nii.gz`, `.hdr`/`.img`) into a [`Volume`] of Hounsfield units
/// (scl_slope/scl_inter applied), in nibabel's `get_fdata()` order.
pub fn read_volume(path: &Path) -> Result<Volume, ReadError> {
    Err(ReadError::Unimplemented { path: path.to_owned() })
}

/// Writes `volume` to `path` atomically; gzip-compressed when the name ends in `.gz`.
pub fn write_volume(path: &Path, volume: &Volume, dtype: OutputDtype) -> Result<(), WriteError> {
    let _ = (volume, dtype);
    Err(WriteError::Unimplemented { path: path.to_owned() })
}
