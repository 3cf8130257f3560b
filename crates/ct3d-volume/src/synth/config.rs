//! What phantoms may look like: [`PhantomConfig`], the ranges every scan's grid, spacing and
//! noise are drawn from, with the limits it is checked against.

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
    /// Slice spacing in mm (default 8, MosMedData's every-10th-slice spacing).
    pub slice_spacing_mm: f64,
    /// Standard deviation of the image noise in HU (default `10.0..=20.0`).
    pub noise_sigma_hu: RangeInclusive<f64>,
}

impl Default for PhantomConfig {
    fn default() -> Self {
        Self {
            shape_xy: REFERENCE_SHAPE_XY,
            depth: 30..=70,
            spacing_xy_mm: 0.6..=0.9,
            slice_spacing_mm: 8.0,
            noise_sigma_hu: 10.0..=20.0,
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
        if !(self.slice_spacing_mm.is_finite() && self.slice_spacing_mm > 0.0) {
            return invalid(format!(
                "slice_spacing_mm {} must be positive",
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
