//! The Keras example's `process_scan`, number for number with scipy, in a few milliseconds.
//!
//! The seed does, on `nib.load(path).get_fdata()` (float64, `[x, y, z]`):
//!
//! 1. `normalize`: clip to the HU window `[-1000, 400]`, `(v - min) / (max - min)` in float64,
//!    `astype(float32)`;
//! 2. `ndimage.rotate(img, 90, reshape=False)`: a cubic-spline quarter turn of every `(x, y)` plane;
//! 3. `ndimage.zoom(img, (1 / (W / 128), 1 / (H / 128), 1 / (D / 64)), order=1)`: linear resampling
//!    to 128×128×64.
//!
//! [`process_volume`] reproduces that to within `f32` rounding (tested against scipy to 1e-5;
//! in practice the last bit). When a plane's sides have equal parity (every real CT: 512×512) the
//! quarter turn lands every output pixel exactly on an input pixel, where the spline reproduces the
//! sample, so the rotation is an index permutation: the three steps are fused, and only the input
//! voxels the zoom reads are ever normalised, with no full-size intermediate. Other planes go
//! through [`crate::spline`]'s general cubic rotation, as scipy does.
//!
//! Differences from the seed, deliberate and documented:
//! - NaN voxels become `0` (the window's low end) instead of propagating NaN into the network;
//!   `±inf` are clipped to the window like any other value.
//! - The output carries geometry: each output voxel's world position is where its value was
//!   sampled (see [`process_volume`]).

use std::path::Path;

use rayon::prelude::*;

use crate::spline::{self, LinearTap};
use crate::{Affine, Volume};

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
        Self {
            hu_min: -1000.0,
            hu_max: 400.0,
            size: [128, 128, 64],
        }
    }
}

impl PreprocessConfig {
    /// Checks the parameters: a finite, non-empty HU window (`hu_min < hu_max`) and an output size
    /// of at least one voxel per axis whose voxel count fits in memory addressing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (hu_min, hu_max) = (self.hu_min, self.hu_max);
        if !hu_min.is_finite() || !hu_max.is_finite() {
            return Err(ConfigError::NonFiniteWindow { hu_min, hu_max });
        }
        if hu_min >= hu_max {
            return Err(ConfigError::EmptyWindow { hu_min, hu_max });
        }
        if self.size.contains(&0) {
            return Err(ConfigError::ZeroSize { size: self.size });
        }
        let voxels = self
            .size
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n));
        if voxels
            .and_then(|n| n.checked_mul(size_of::<f32>()))
            .is_none_or(|b| b > isize::MAX as usize)
        {
            return Err(ConfigError::TooLarge { size: self.size });
        }
        Ok(())
    }
}

/// Invalid [`PreprocessConfig`] values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A window bound is NaN or infinite.
    #[error("invalid preprocessing settings: HU window [{hu_min}, {hu_max}] must be finite")]
    NonFiniteWindow {
        /// The lower bound given (HU).
        hu_min: f32,
        /// The upper bound given (HU).
        hu_max: f32,
    },
    /// `hu_min >= hu_max`.
    #[error(
        "invalid preprocessing settings: HU window minimum {hu_min} must be below its maximum {hu_max}"
    )]
    EmptyWindow {
        /// The lower bound given (HU).
        hu_min: f32,
        /// The upper bound given (HU).
        hu_max: f32,
    },
    /// An output axis of zero voxels.
    #[error(
        "invalid preprocessing settings: output size {size:?} needs at least one voxel per axis"
    )]
    ZeroSize {
        /// The `[x, y, z]` size given.
        size: [usize; 3],
    },
    /// More output voxels than memory can address.
    #[error("invalid preprocessing settings: output size {size:?} has too many voxels")]
    TooLarge {
        /// The `[x, y, z]` size given.
        size: [usize; 3],
    },
}

/// Why preprocessing failed. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The scan could not be read (the message names the file).
    #[error(transparent)]
    Read(#[from] crate::nifti_io::ReadError),
    /// The parameters are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The volume has an axis of zero voxels.
    #[error("{origin}: cannot preprocess an empty volume of shape {shape:?}")]
    EmptyVolume {
        /// The file the volume came from, or `in-memory volume`.
        origin: String,
        /// Its `[x, y, z]` shape.
        shape: [usize; 3],
    },
}

/// Reads a scan and applies the seed's pipeline: HU window → [0, 1], rotate 90°, zoom to `size`
/// (see [`process_volume`]).
pub fn process_file(path: &Path, config: &PreprocessConfig) -> Result<Volume, PreprocessError> {
    config.validate()?;
    let volume = crate::nifti_io::read_volume(path)?;
    process(&volume, config, Some(path))
}

/// The seed's `normalize` + `resize_volume` on a volume of Hounsfield units (`[x, y, z]`, any
/// shape with every axis ≥ 1): returns `config.size` voxels in `[0, 1]`.
///
/// Output geometry: the quarter turn maps output axis `x` onto input `y` (reversed) and output `y`
/// onto input `x`, and the zoom places the first and last voxel centres of each axis on the
/// input's. So `spacing = [sy·(H−1)/(out_x−1), sx·(W−1)/(out_y−1), sz·(D−1)/(out_z−1)]` mm
/// (`in/out` for an axis of one input or output voxel) and `affine` maps each output voxel to the
/// world position its value was sampled from. Provenance is kept.
pub fn process_volume(
    volume: &Volume,
    config: &PreprocessConfig,
) -> Result<Volume, PreprocessError> {
    process(volume, config, None)
}

fn process(
    volume: &Volume,
    config: &PreprocessConfig,
    path: Option<&Path>,
) -> Result<Volume, PreprocessError> {
    config.validate()?;
    let shape = volume.shape();
    if volume.is_empty() {
        let origin = path.or(volume.provenance.path.as_deref());
        return Err(PreprocessError::EmptyVolume {
            origin: origin.map_or_else(
                || "in-memory volume".to_owned(),
                |p| p.display().to_string(),
            ),
            shape,
        });
    }
    let window = HuWindow::new(config.hu_min, config.hu_max);
    let factors = seed_zoom_factors(shape, config.size);
    let out_shape = spline::zoom_output_shape(shape, factors);
    let mut out = if (shape[0] + shape[1]) % 2 == 0 {
        let data = quarter_turn_zoom(volume, &window, out_shape);
        volume
            .with_data(out_shape, data)
            .expect("fused output has the zoom's shape")
    } else {
        let normalized = normalize_with(volume, &window);
        spline::zoom_linear_factors(&spline::rotate_planes(&normalized, 90.0), factors)
    };
    let (spacing, affine) = output_geometry(volume, out_shape);
    out.spacing = spacing;
    out.affine = affine;
    Ok(out)
}

/// The seed's zoom factors, computed with its exact float expression `1 / (current / desired)`
/// per axis (`shape` and `size` in `[x, y, z]` voxels).
pub fn seed_zoom_factors(shape: [usize; 3], size: [usize; 3]) -> [f64; 3] {
    std::array::from_fn(|k| 1.0 / (shape[k] as f64 / size[k] as f64))
}

/// The seed's HU window with its arithmetic precomputed: `normalize(hu)` equals
/// `float32((clip(hu, min, max) - min) / (max - min))` computed in float64, bit for bit.
///
/// NaN maps to `0` (the window's low end; the seed would propagate NaN); `±inf` clip to the
/// window. Integer HU values (every int16 scan) come from a lookup table of the same results,
/// which avoids a float64 division per voxel.
#[derive(Debug, Clone)]
pub struct HuWindow {
    low: f32,
    high: f32,
    low_f64: f64,
    width: f64,
    table_start: i64,
    table: Vec<f32>,
}

impl HuWindow {
    /// Integers beyond ±2^24 are not all representable as `f32`; the table stops there.
    const TABLE_LIMIT: f32 = 16_777_216.0;
    /// Windows wider than this many integers compute every value instead.
    const TABLE_MAX_LEN: f32 = 65_536.0;

    /// The window `[hu_min, hu_max]` in Hounsfield units (valid when `hu_min < hu_max`, both finite;
    /// see [`PreprocessConfig::validate`]).
    pub fn new(hu_min: f32, hu_max: f32) -> Self {
        let low_f64 = f64::from(hu_min);
        let mut window = Self {
            low: hu_min,
            high: hu_max,
            low_f64,
            width: f64::from(hu_max) - low_f64,
            table_start: 0,
            table: Vec::new(),
        };
        let (first, last) = (hu_min.ceil(), hu_max.floor());
        if first >= -Self::TABLE_LIMIT
            && last <= Self::TABLE_LIMIT
            && last - first < Self::TABLE_MAX_LEN
        {
            window.table_start = first as i64;
            window.table = (first as i64..=last as i64)
                .map(|hu| window.compute(hu as f32))
                .collect();
        }
        window
    }

    /// `hu` (Hounsfield units) mapped into `[0, 1]`.
    #[inline]
    pub fn normalize(&self, hu: f32) -> f32 {
        let clipped = hu.max(self.low).min(self.high);
        let whole = clipped as i64;
        let tabulated = (whole as f32 == clipped)
            .then(|| {
                usize::try_from(whole - self.table_start)
                    .ok()
                    .and_then(|i| self.table.get(i))
            })
            .flatten();
        match tabulated {
            Some(&value) => value,
            None => self.compute(clipped),
        }
    }

    #[inline]
    fn compute(&self, clipped: f32) -> f32 {
        ((f64::from(clipped) - self.low_f64) / self.width) as f32
    }
}

/// The seed's `normalize` on every voxel (see [`HuWindow`] for the exact arithmetic and the NaN
/// policy). The shape and geometry are kept.
pub fn normalize_hu(volume: &Volume, hu_min: f32, hu_max: f32) -> Volume {
    normalize_with(volume, &HuWindow::new(hu_min, hu_max))
}

fn normalize_with(volume: &Volume, window: &HuWindow) -> Volume {
    let data = volume
        .data()
        .par_iter()
        .map(|&hu| window.normalize(hu))
        .collect();
    volume
        .with_data(volume.shape(), data)
        .expect("same shape as the input")
}

/// One zoom sample along one axis of the quarter-turned volume, with its taps translated to input
/// indices: `None` where the tap falls outside the input (so it contributes `0`) or has weight 0.
#[derive(Debug, Clone, Copy)]
struct InputTaps {
    low: Option<usize>,
    low_weight: f64,
    high: Option<usize>,
    high_weight: f64,
}

impl InputTaps {
    fn from_zoom(tap: &LinearTap, to_input: impl Fn(usize) -> Option<usize>) -> Self {
        Self {
            low: to_input(tap.low),
            low_weight: tap.low_weight,
            high: if tap.high_weight == 0.0 {
                None
            } else {
                to_input(tap.high)
            },
            high_weight: tap.high_weight,
        }
    }

    /// The weighted sum of the normalised samples of `row` (`x` fastest) at the two taps.
    #[inline]
    fn sample_row(&self, row: &[f32], window: &HuWindow) -> f64 {
        let low = self.low.map_or(0.0, |x| {
            self.low_weight * f64::from(window.normalize(row[x]))
        });
        let high = self.high.map_or(0.0, |x| {
            self.high_weight * f64::from(window.normalize(row[x]))
        });
        low + high
    }
}

/// Normalise + 90° rotation + linear zoom in one pass, for `(x, y)` planes with `W + H` even.
///
/// scipy's quarter turn samples input pixel `(r1 + (W − H)/2, (W + H)/2 − 1 − r0)` for rotated
/// pixel `(r0, r1)` (zero outside the plane); with `W + H` even those are whole pixels, where the
/// cubic spline returns the sample itself, so the rotation is a permutation. The zoom is then done
/// separably: each input `z` plane the zoom reads is reduced to an output-sized `(x, y)` plane
/// (touching, and normalising, only the pixels the zoom reads), and output planes blend two of
/// those. Parallel over contiguous runs of output planes.
fn quarter_turn_zoom(volume: &Volume, window: &HuWindow, out_shape: [usize; 3]) -> Vec<f32> {
    let [nx, ny, nz] = volume.shape();
    let [ox, oy, oz] = out_shape;
    let shift = (nx as isize - ny as isize) / 2;
    let flip = ((nx + ny) / 2) as isize - 1;
    let input_row = |r0: usize| usize::try_from(flip - r0 as isize).ok().filter(|&y| y < ny);
    let input_col = |r1: usize| {
        usize::try_from(r1 as isize + shift)
            .ok()
            .filter(|&x| x < nx)
    };

    let to_input = |taps: Vec<Option<LinearTap>>,
                    map: &dyn Fn(usize) -> Option<usize>|
     -> Vec<Option<InputTaps>> {
        taps.iter()
            .map(|t| t.as_ref().map(|t| InputTaps::from_zoom(t, map)))
            .collect()
    };
    let rows = to_input(spline::linear_taps(nx, ox), &input_row);
    let cols = to_input(spline::linear_taps(ny, oy), &input_col);
    let depths = spline::linear_taps(nz, oz);

    let plane_in = nx * ny;
    let plane_out = ox * oy;
    let data = volume.data();
    // Output-sized (x, y) plane of input plane `z`, `x` fastest; pixels the zoom leaves at 0 are
    // never written.
    let reduce_plane = |z: usize, reduced: &mut [f64]| {
        let plane = &data[z * plane_in..(z + 1) * plane_in];
        for (i, row_taps) in rows.iter().enumerate() {
            let Some(row_taps) = row_taps else { continue };
            let low_row = row_taps.low.map(|y| &plane[y * nx..(y + 1) * nx]);
            let high_row = row_taps.high.map(|y| &plane[y * nx..(y + 1) * nx]);
            for (j, col_taps) in cols.iter().enumerate() {
                let Some(col_taps) = col_taps else { continue };
                let low = low_row.map_or(0.0, |row| {
                    row_taps.low_weight * col_taps.sample_row(row, window)
                });
                let high = high_row.map_or(0.0, |row| {
                    row_taps.high_weight * col_taps.sample_row(row, window)
                });
                reduced[i + ox * j] = low + high;
            }
        }
    };

    let mut out = vec![0.0f32; plane_out * oz];
    let planes_per_task = oz.div_ceil(rayon::current_num_threads().max(1)).max(1);
    out.par_chunks_mut(plane_out * planes_per_task)
        .enumerate()
        .for_each(|(task, chunk)| {
            let mut cache = ReducedPlanes::new(plane_out);
            for (k, out_plane) in chunk.chunks_exact_mut(plane_out).enumerate() {
                let Some(depth) = &depths[task * planes_per_task + k] else {
                    continue;
                };
                let high = (depth.high_weight != 0.0).then_some(depth.high);
                let (low_plane, high_plane) = cache.pair(depth.low, high, &reduce_plane);
                match high_plane {
                    Some(high_plane) => {
                        for ((o, &l), &h) in out_plane.iter_mut().zip(low_plane).zip(high_plane) {
                            *o = (depth.low_weight * l + depth.high_weight * h) as f32;
                        }
                    }
                    None => {
                        for (o, &l) in out_plane.iter_mut().zip(low_plane) {
                            *o = (depth.low_weight * l) as f32;
                        }
                    }
                }
            }
        });
    out
}

/// The last two reduced planes computed: consecutive output planes mostly share input planes.
struct ReducedPlanes {
    planes: [Vec<f64>; 2],
    held: [Option<usize>; 2],
}

impl ReducedPlanes {
    fn new(len: usize) -> Self {
        Self {
            planes: [vec![0.0; len], vec![0.0; len]],
            held: [None, None],
        }
    }

    /// Reduced planes `low` and (if given) `high`, computing what is not held.
    fn pair(
        &mut self,
        low: usize,
        high: Option<usize>,
        reduce: &impl Fn(usize, &mut [f64]),
    ) -> (&[f64], Option<&[f64]>) {
        let low_slot = self.slot(low, high, reduce);
        let high_slot = high.map(|h| self.slot(h, Some(low), reduce));
        (
            &self.planes[low_slot],
            high_slot.map(|s| self.planes[s].as_slice()),
        )
    }

    fn slot(
        &mut self,
        z: usize,
        keep: Option<usize>,
        reduce: &impl Fn(usize, &mut [f64]),
    ) -> usize {
        if let Some(slot) = self.held.iter().position(|&h| h == Some(z)) {
            return slot;
        }
        let slot = usize::from(self.held[0].is_some() && self.held[0] == keep);
        reduce(z, &mut self.planes[slot]);
        self.held[slot] = Some(z);
        slot
    }
}

/// Spacing and voxel-to-world affine of the preprocessed volume (see [`process_volume`]).
fn output_geometry(volume: &Volume, out_shape: [usize; 3]) -> ([f64; 3], Affine) {
    let [nx, ny, nz] = volume.shape();
    let step = |n_in: usize, n_out: usize| {
        if n_in > 1 && n_out > 1 {
            (n_in - 1) as f64 / (n_out - 1) as f64
        } else {
            n_in as f64 / n_out as f64
        }
    };
    let steps = [
        step(nx, out_shape[0]),
        step(ny, out_shape[1]),
        step(nz, out_shape[2]),
    ];
    let s = volume.spacing;
    let spacing = [s[1] * steps[0], s[0] * steps[1], s[2] * steps[2]];
    // Input voxel = sampling · output voxel: the zoom scales, the quarter turn sends rotated
    // (r0, r1) to input (r1 + cx − cy, cx + cy − r0).
    let (cx, cy) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let sampling: Affine = [
        [0.0, steps[1], 0.0, cx - cy],
        [-steps[0], 0.0, 0.0, cx + cy],
        [0.0, 0.0, steps[2], 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let a = &volume.affine;
    let affine = std::array::from_fn(|r| {
        std::array::from_fn(|c| (0..4).map(|k| a[r][k] * sampling[k][c]).sum())
    });
    (spacing, affine)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn phantom(shape: [usize; 3]) -> Volume {
        Volume::from_fn(shape, |x, y, z| {
            let v = (x * 37 + y * 101 + z * 53) % 2900;
            v as f32 - 1400.0 + if (x + y) % 7 == 0 { 0.25 } else { 0.0 }
        })
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn window_arithmetic_is_the_seeds() {
        let w = HuWindow::new(-1000.0, 400.0);
        assert_eq!(w.normalize(-1000.0), 0.0);
        assert_eq!(w.normalize(400.0), 1.0);
        assert_eq!(w.normalize(-300.0), 0.5);
        assert_eq!(w.normalize(-5000.0), 0.0);
        assert_eq!(w.normalize(3071.0), 1.0);
        assert_eq!(w.normalize(f32::NAN), 0.0);
        assert_eq!(w.normalize(f32::INFINITY), 1.0);
        assert_eq!(w.normalize(f32::NEG_INFINITY), 0.0);
        for hu in -1000..=400 {
            let expected = ((f64::from(hu) + 1000.0) / 1400.0) as f32;
            assert_eq!(w.normalize(hu as f32).to_bits(), expected.to_bits(), "{hu}");
        }
        assert_eq!(w.normalize(12.5), ((12.5f64 + 1000.0) / 1400.0) as f32);
        let odd = HuWindow::new(-1000.5, 399.25);
        assert_eq!(odd.normalize(-1000.5), 0.0);
        assert_eq!(odd.normalize(0.0), ((1000.5f64) / 1399.75) as f32);
    }

    #[test]
    fn invalid_settings_are_rejected_in_one_line() {
        let cases = [
            PreprocessConfig {
                hu_min: 400.0,
                hu_max: 400.0,
                ..Default::default()
            },
            PreprocessConfig {
                hu_min: f32::NAN,
                ..Default::default()
            },
            PreprocessConfig {
                size: [128, 0, 64],
                ..Default::default()
            },
            PreprocessConfig {
                size: [usize::MAX, 2, 1],
                ..Default::default()
            },
        ];
        for config in cases {
            let err = process_volume(&Volume::filled([2, 2, 2], 0.0), &config).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with("invalid preprocessing settings") && !message.contains('\n'),
                "{message}"
            );
        }
        assert!(PreprocessConfig::default().validate().is_ok());
    }

    #[test]
    fn empty_volumes_are_an_error_naming_the_source() {
        let mut v = Volume::new([0, 4, 4], vec![]).unwrap();
        let err = process_volume(&v, &PreprocessConfig::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "in-memory volume: cannot preprocess an empty volume of shape [0, 4, 4]"
        );
        v.provenance.path = Some(PathBuf::from("scan.nii.gz"));
        let err = process_volume(&v, &PreprocessConfig::default()).unwrap_err();
        assert!(err.to_string().starts_with("scan.nii.gz: "));
    }

    #[test]
    fn read_errors_name_the_file() {
        let err = process_file(
            Path::new("/nonexistent/scan.nii.gz"),
            &PreprocessConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(err, PreprocessError::Read(_)));
        assert!(err.to_string().contains("/nonexistent/scan.nii.gz"));
    }

    /// The fused path against the general one (normalise, cubic rotation, scipy-order zoom).
    fn assert_fused_matches_general(shape: [usize; 3], size: [usize; 3]) {
        let v = phantom(shape);
        let config = PreprocessConfig {
            size,
            ..Default::default()
        };
        let fused = process_volume(&v, &config).unwrap();
        let general = spline::zoom_linear_factors(
            &spline::rotate_planes(&normalize_hu(&v, -1000.0, 400.0), 90.0),
            seed_zoom_factors(shape, size),
        );
        assert_eq!(fused.shape(), size);
        let diff = max_abs_diff(fused.data(), general.data());
        assert!(diff < 1e-6, "{shape:?} -> {size:?}: {diff}");
    }

    #[test]
    fn fused_path_matches_the_general_path() {
        assert_fused_matches_general([20, 20, 7], [8, 8, 5]);
        assert_fused_matches_general([20, 20, 7], [30, 9, 13]);
        assert_fused_matches_general([14, 22, 9], [8, 12, 4]);
        assert_fused_matches_general([22, 14, 3], [22, 14, 3]);
        assert_fused_matches_general([1, 1, 3], [2, 3, 1]);
        assert_fused_matches_general([30, 30, 30], [8, 8, 8]);
    }

    #[test]
    fn output_has_the_requested_size_for_any_input() {
        for n in [1usize, 2, 3, 30, 59, 127, 128, 129, 333, 512, 1000] {
            let size = [128, 128, 64];
            assert_eq!(
                spline::zoom_output_shape([n, n, n], seed_zoom_factors([n, n, n], size)),
                size,
                "{n}"
            );
        }
    }

    #[test]
    fn geometry_follows_the_samples() {
        let mut v = phantom([10, 10, 5]);
        v.spacing = [0.7, 0.8, 5.0];
        v.affine = [
            [0.7, 0.0, 0.0, -10.0],
            [0.0, 0.8, 0.0, 20.0],
            [0.0, 0.0, 5.0, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let out = process_volume(
            &v,
            &PreprocessConfig {
                size: [4, 4, 3],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(out.spacing, [0.8 * 3.0, 0.7 * 3.0, 5.0 * 2.0]);
        let world = |a: &Affine, p: [f64; 3]| -> [f64; 3] {
            std::array::from_fn(|r| a[r][0] * p[0] + a[r][1] * p[1] + a[r][2] * p[2] + a[r][3])
        };
        // Output (0, 0, 0) holds input (0, 9, 0); output (3, 1, 2) holds input (3, 0, 4).
        assert_eq!(
            world(&out.affine, [0.0, 0.0, 0.0]),
            world(&v.affine, [0.0, 9.0, 0.0])
        );
        assert_eq!(
            world(&out.affine, [3.0, 1.0, 2.0]),
            world(&v.affine, [3.0, 0.0, 4.0])
        );
        let hu_at = v.get(3, 0, 4);
        assert_eq!(
            out.get(3, 1, 2),
            HuWindow::new(-1000.0, 400.0).normalize(hu_at)
        );
    }
}
