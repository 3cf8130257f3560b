//! The Keras example's `process_scan`. (Interface stub: the implementation is being written.)

use std::path::Path;

use crate::Volume;

/// Preprocessing parameters (the seed's defaults via [`Default`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreprocessConfig {
    /// Lower end of the HU window (seed: -1000).
    pub hu_min: f32,
    /// Upper end of the HU window (seed: 400).
    pub hu_max: f32,
    /// Output `[x, y, z]` size in voxels (seed: 128×128×64).
    pub size: [usize; 3],
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self { hu_min: -1000.0, hu_max: 400.0, size: [128, 128, 64] }
    }
}

/// Why preprocessing failed.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The scan could not be read.
    #[error(transparent)]
    Read(#[from] crate::nifti_io::ReadError),
}

/// Reads a scan and applies the seed's pipeline: HU window → [0, 1], rotate 90°, zoom to `size`.
pub fn process_file(path: &Path, config: &PreprocessConfig) -> Result<Volume, PreprocessError> {
    let _ = config;
    Ok(crate::nifti_io::read_volume(path)?)
}
