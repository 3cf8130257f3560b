//! Synthetic phantom chest CTs: the project's test and demo data.
//!
//! MosMedData may not be redistributed, so every test, CI job and `ct3d demo` runs on phantoms that
//! look like its scans to a preprocessing pipeline and a small 3-D CNN: `int16`-valued Hounsfield
//! units on a 512×512 grid of 0.6–0.9 mm pixels with 30–70 slices 8 mm apart. Each phantom has air
//! (exactly −1000 HU) around an elliptic body of soft tissue (≈ 40 HU) with a subcutaneous fat rim
//! (≈ −100 HU), a patient table, a vertebra with its arch and ribs (≈ 400–1000 HU), a heart, and two
//! lungs (≈ −850 HU, denser posteriorly) that taper toward the apex and end at the diaphragm, filled
//! with branching vessel trees (≈ 30–50 HU). Abnormal scans ([`ScanClass::Abnormal`], folder
//! `CT-23`) add ground-glass opacities: soft-edged clusters of −520…−330 HU inside the lungs covering
//! about 20–70 % of the lung volume (MosMedData's `CT-2` and `CT-3` grades, 25–75 % involvement,
//! make up the seed's `CT-23`); normal scans (`CT-0`) have none.
//!
//! Body size, fat, field of view, lung size and noise level vary per scan, so the classes differ by
//! local texture, not by global mean intensity: a classifier has to find the opacities.
//!
//! That describes the default, [`Difficulty::Easy`]. [`Difficulty::Hard`] is a harder benchmark:
//! `CT-1`-like involvement (about 5–25 % of the lungs) with fainter, smaller opacities, stronger
//! Gaussian noise, patients of more varied size and position, and 8–10 mm slices (the numbers are
//! on [`Difficulty`]). Each abnormal scan's ground truth is its [`LabeledPhantom::lesion_mask`],
//! which [`write_dataset_with_masks`] writes next to the dataset.
//!
//! Generation is deterministic: a scan depends only on its config and `u64` seed, never on the
//! thread count, and only IEEE-exact arithmetic (`+ − × ÷ √`, no `sin`/`exp` from the platform's
//! libm) is used, so the same seed gives the same bits on every platform. The anatomy is drawn from
//! one RNG stream, the opacities from another and each slice's noise from its own stream, so the
//! same seed gives the same anatomy and noise in both classes (the abnormal scan differs only where
//! [`Tissue::GroundGlass`] is) and slices render in parallel.
//!
//! # Geometry
//! Voxel axes point to the patient's Left, Posterior and Superior (`[x, y, z]` = L, P, S, the
//! order of a DICOM axial series stored without reorientation). The affine maps them to RAS+ world
//! millimetres, `diag(-sx, -sy, sz)`, with the centre of the grid at the world origin. Noise is
//! added inside the body and the table only and the values are rounded to whole HU, so writing the
//! volume as `int16` loses nothing.
//!
//! # Layout
//! [`config`] holds what may vary ([`PhantomConfig`]); `anatomy` draws one scan's shapes and
//! values (with `vessels` and `lesions`, from the primitives in `shapes` and the draws in
//! `random`); `render` paints a slice of it; [`files`] writes datasets of phantoms.

mod anatomy;
pub mod config;
pub mod files;
mod lesions;
mod random;
mod render;
mod shapes;
mod vessels;

use std::path::PathBuf;

use rayon::prelude::*;

use crate::Volume;
use anatomy::Anatomy;
pub use config::{
    Difficulty, MAX_SHAPE, MIN_DEPTH, MIN_SHAPE_XY, PhantomConfig, REFERENCE_SHAPE_XY,
};
pub use files::{
    DatasetPlan, MASK_FOLDER, SynthOutput, phantom_file_name, scan_seed, write_dataset,
    write_dataset_with_masks,
};

/// Hounsfield units of air outside the body.
pub const AIR_HU: f32 = -1000.0;

/// The two classes of the seed example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScanClass {
    /// No findings (MosMedData `CT-0`), label 0.
    Normal,
    /// Ground-glass opacities (MosMedData `CT-2`/`CT-3`, the seed's `CT-23`), label 1.
    Abnormal,
}

impl ScanClass {
    /// Both classes in label order.
    pub const ALL: [ScanClass; 2] = [ScanClass::Normal, ScanClass::Abnormal];

    /// The class folder name: `"CT-0"` or `"CT-23"`.
    pub fn folder_name(self) -> &'static str {
        match self {
            ScanClass::Normal => "CT-0",
            ScanClass::Abnormal => "CT-23",
        }
    }

    /// The binary label: 0 for normal, 1 for abnormal.
    pub fn label(self) -> u8 {
        match self {
            ScanClass::Normal => 0,
            ScanClass::Abnormal => 1,
        }
    }
}

/// What each phantom voxel is made of (the ground truth behind the HU values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tissue {
    /// Outside the body and the table: exactly [`AIR_HU`].
    Air,
    /// Muscle, organs, heart, intervertebral discs and spinal canal (≈ 20–80 HU).
    SoftTissue,
    /// Subcutaneous fat (≈ −100 HU).
    Fat,
    /// The patient table (≈ 100 HU).
    Table,
    /// Aerated lung parenchyma (≈ −880…−700 HU).
    Lung,
    /// Pulmonary vessels inside the lungs (≈ 30–50 HU).
    Vessel,
    /// Lung with a ground-glass opacity (between the lung value and −520…−330 HU); abnormal only.
    GroundGlass,
    /// Vertebra and ribs (≈ 400–1000 HU).
    Bone,
}

/// Why phantoms could not be generated or written. Displays as one line naming what is wrong;
/// an underlying error is the [`source`](std::error::Error::source), not repeated in the text.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A [`PhantomConfig`] field is out of range.
    #[error("invalid phantom config: {reason}")]
    InvalidConfig {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// An output folder could not be created.
    #[error("{}: cannot create the folder", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The writer failed on a scan.
    #[error("{}: cannot write the phantom", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The writer's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The mask writer failed on a scan's lesion mask.
    #[error("{}: cannot write the lesion mask", path.display())]
    WriteMask {
        /// The mask file being written.
        path: PathBuf,
        /// The mask writer's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A phantom together with the tissue of every voxel (same `[x, y, z]` order, `x` fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledPhantom {
    /// The scan in whole Hounsfield units.
    pub volume: Volume,
    /// `volume.len()` tissue labels.
    pub tissue: Vec<Tissue>,
}

impl LabeledPhantom {
    /// The ground-truth lesion mask: a volume in the scan's voxel grid (same `[x, y, z]` shape,
    /// spacing and affine) that is 1 where a ground-glass opacity contributes to the voxel's
    /// value ([`Tissue::GroundGlass`]) and 0 elsewhere, including where a vessel or bone drawn
    /// over an opacity hides it. All zeros for a normal scan (and past the end of a `tissue`
    /// shorter than the volume).
    pub fn lesion_mask(&self) -> Volume {
        let mut mask = self.volume.clone();
        for (value, i) in mask.data_mut().iter_mut().zip(0..) {
            let lesion = self.tissue.get(i) == Some(&Tissue::GroundGlass);
            *value = if lesion { 1.0 } else { 0.0 };
        }
        mask
    }
}

/// Generates one phantom scan of `shape_xy × shape_xy × depth` voxels in whole HU.
///
/// Same `(config, class, seed)` → bit-identical volume on any number of threads. With the same
/// seed, the normal and abnormal scans share anatomy and noise.
pub fn generate_phantom(
    config: &PhantomConfig,
    class: ScanClass,
    seed: u64,
) -> Result<Volume, SynthError> {
    config.validate()?;
    let anatomy = Anatomy::draw(config, class, seed);
    let slice_len = anatomy.grid.n * anatomy.grid.n;
    let mut data = vec![AIR_HU; slice_len * anatomy.grid.depth];
    data.par_chunks_mut(slice_len).enumerate().for_each_init(
        || vec![Tissue::Air; slice_len],
        |tissue, (z, slice)| anatomy.render_slice(z, slice, tissue),
    );
    anatomy.into_volume(data)
}

/// [`generate_phantom`] plus the tissue label of every voxel (for tests and inspection).
pub fn generate_labeled_phantom(
    config: &PhantomConfig,
    class: ScanClass,
    seed: u64,
) -> Result<LabeledPhantom, SynthError> {
    config.validate()?;
    let anatomy = Anatomy::draw(config, class, seed);
    let slice_len = anatomy.grid.n * anatomy.grid.n;
    let mut data = vec![AIR_HU; slice_len * anatomy.grid.depth];
    let mut tissue = vec![Tissue::Air; data.len()];
    data.par_chunks_mut(slice_len)
        .zip(tissue.par_chunks_mut(slice_len))
        .enumerate()
        .for_each(|(z, (slice, labels))| anatomy.render_slice(z, slice, labels));
    Ok(LabeledPhantom {
        volume: anatomy.into_volume(data)?,
        tissue,
    })
}
