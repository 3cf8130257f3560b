//! What phantoms may look like: [`PhantomConfig`], the ranges every scan's grid, spacing and
//! noise are drawn from, with the limits it is checked against, and the [`Difficulty`] that
//! sets the patients, the opacities and the noise distribution.

use std::ops::RangeInclusive;

use super::SynthError;

/// The in-plane grid size that [`PhantomConfig::spacing_xy_mm`] refers to (MosMedData's 512).
pub const REFERENCE_SHAPE_XY: usize = 512;

/// The smallest in-plane grid [`PhantomConfig`] accepts, in voxels; smaller grids lose the anatomy.
pub const MIN_SHAPE_XY: usize = 32;

/// The largest in-plane grid or slice count [`PhantomConfig`] accepts, in voxels.
pub const MAX_SHAPE: usize = 2048;

/// The fewest slices [`PhantomConfig`] accepts.
pub const MIN_DEPTH: usize = 4;

/// How hard the two classes are to tell apart. Both use MosMedData's geometry (512×512 pixels of
/// 0.6–0.9 mm, 30–70 slices); [`PhantomConfig::of`] gives each one's full settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Difficulty {
    /// The original phantoms (the default; unchanged, byte for byte): ground glass of −520…−330 HU
    /// in clusters of 15–40 mm over about 20–65 % of the lungs (MosMedData `CT-2`/`CT-3`); noise
    /// σ 10–20 HU, bounded at ±3.46 σ; the body fills 70–90 % of the field of view's half-width
    /// and sits within 3 % (left–right) and −6…+2 % (anterior–posterior) of its centre; 8 mm
    /// slices. The seed's 3-D CNN separates the classes easily.
    #[default]
    Easy,
    /// A benchmark closer to MosMedData's mild cases: fainter ground glass (−700…−560 HU, about
    /// 100–350 HU above aerated lung instead of easy's 300–550) in smaller clusters of 8–25 mm over
    /// about 5–25 % of the lungs (`CT-1`-like involvement); Gaussian noise (12-term Irwin–Hall, tails to ±6 σ) of σ 20–45 HU,
    /// floored at −1024 HU like a scanner's range; patients of varied size (the body fills 55–92 %
    /// of the field of view's half-width) and position (within 8 % left–right and −12…+6 %
    /// anterior–posterior of the centre); slice spacing drawn from 8–10 mm (MosMedData kept every
    /// 10th slice of 0.8–1 mm series).
    Hard,
}

/// How phantoms are drawn. Every range is sampled uniformly and independently per scan.
#[derive(Debug, Clone, PartialEq)]
pub struct PhantomConfig {
    /// In-plane grid size `x = y`, in voxels (default 512, like MosMedData; e.g. 128 for fast
    /// tests), between [`MIN_SHAPE_XY`] and [`MAX_SHAPE`].
    pub shape_xy: usize,
    /// Number of slices `z` (default `30..=70`), at least [`MIN_DEPTH`], at most [`MAX_SHAPE`].
    pub depth: RangeInclusive<usize>,
    /// In-plane pixel size in mm of a [`REFERENCE_SHAPE_XY`] grid (default `0.6..=0.9`). A smaller
    /// grid covers the same field of view with proportionally larger pixels, like a downsampled
    /// scan, so the anatomy keeps its size in millimetres.
    pub spacing_xy_mm: RangeInclusive<f64>,
    /// Slice spacing in mm (default `8.0..=8.0`, MosMedData's every-10th-slice spacing; hard
    /// `8.0..=10.0`). A single value draws nothing, so it leaves every other draw unchanged.
    pub slice_spacing_mm: RangeInclusive<f64>,
    /// Standard deviation of the image noise in HU (default `10.0..=20.0`; hard `20.0..=45.0`).
    pub noise_sigma_hu: RangeInclusive<f64>,
    /// The patients, opacities and noise distribution (default [`Difficulty::Easy`]); see
    /// [`PhantomConfig::of`] for a difficulty's whole preset, grid ranges included.
    pub difficulty: Difficulty,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        Self {
            shape_xy: REFERENCE_SHAPE_XY,
            depth: 30..=70,
            spacing_xy_mm: 0.6..=0.9,
            slice_spacing_mm: 8.0..=8.0,
            noise_sigma_hu: 10.0..=20.0,
            difficulty: Difficulty::Easy,
        }
    }
}

impl PhantomConfig {
    /// The default phantoms at `shape_xy` voxels in-plane, with `depth` slices (`None`: drawn
    /// from the default range, like MosMedData).
    pub fn sized(shape_xy: usize, depth: Option<usize>) -> Self {
        let defaults = Self::default();
        Self {
            shape_xy,
            depth: depth.map_or(defaults.depth.clone(), |d| d..=d),
            ..defaults
        }
    }

    /// The full-size (512×512) phantoms of `difficulty`: [`PhantomConfig::default`] for
    /// [`Difficulty::Easy`]; for [`Difficulty::Hard`] also 8–10 mm slices and noise σ 20–45 HU.
    pub fn of(difficulty: Difficulty) -> Self {
        match difficulty {
            Difficulty::Easy => Self::default(),
            Difficulty::Hard => Self {
                slice_spacing_mm: 8.0..=10.0,
                noise_sigma_hu: 20.0..=45.0,
                difficulty,
                ..Self::default()
            },
        }
    }

    /// This grid size (`shape_xy` and `depth`) with everything else from [`PhantomConfig::of`]
    /// `difficulty`.
    pub fn with_difficulty(self, difficulty: Difficulty) -> Self {
        Self {
            shape_xy: self.shape_xy,
            depth: self.depth,
            ..Self::of(difficulty)
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), SynthError> {
        let invalid = |reason: String| Err(SynthError::InvalidConfig { reason });
        if !(MIN_SHAPE_XY..=MAX_SHAPE).contains(&self.shape_xy) {
            return invalid(format!(
                "shape_xy {} is outside {MIN_SHAPE_XY}..={MAX_SHAPE} voxels",
                self.shape_xy
            ));
        }
        let (dmin, dmax) = (*self.depth.start(), *self.depth.end());
        if dmin < MIN_DEPTH || dmax > MAX_SHAPE || dmin > dmax {
            return invalid(format!(
                "depth {dmin}..={dmax} must be a non-empty range within {MIN_DEPTH}..={MAX_SHAPE} slices"
            ));
        }
        let positive_range = |r: &RangeInclusive<f64>| {
            r.start().is_finite() && r.end().is_finite() && *r.start() > 0.0 && r.start() <= r.end()
        };
        if !positive_range(&self.spacing_xy_mm) {
            return invalid(format!(
                "spacing_xy_mm {:?} must be a non-empty range of positive millimetres",
                self.spacing_xy_mm
            ));
        }
        if !positive_range(&self.slice_spacing_mm) {
            return invalid(format!(
                "slice_spacing_mm {:?} must be a non-empty range of positive millimetres",
                self.slice_spacing_mm
            ));
        }
        let sigma = &self.noise_sigma_hu;
        if !(sigma.start().is_finite()
            && sigma.end().is_finite()
            && *sigma.start() >= 0.0
            && sigma.start() <= sigma.end())
        {
            return invalid(format!(
                "noise_sigma_hu {sigma:?} must be a non-empty range of non-negative HU"
            ));
        }
        Ok(())
    }
}
