//! The Keras example's `process_scan`, number for number with scipy and hundreds of times faster.
//!
//! The seed does, on `nib.load(path).get_fdata()` (float64, `[x, y, z]`):
//!
//! 1. `normalize`: clip to the HU window `[-1000, 400]`, `(v - min) / (max - min)` in float64,
//!    `astype(float32)`;
//! 2. `ndimage.rotate(img, 90, reshape=False)`: a cubic-spline quarter turn of every `(x, y)`
//!    plane;
//! 3. `ndimage.zoom(img, (1 / (W / 128), 1 / (H / 128), 1 / (D / 64)), order=1)`: linear resampling
//!    to 128×128×64.
//!
//! [`process_volume`] reproduces that to within `f32` rounding (tested against scipy to 1e-5; on
//! the golden cases the largest difference is 5e-16). When a plane's sides have equal parity
//! (every real CT: 512×512) the quarter turn lands every output pixel exactly on an input pixel,
//! where the spline reproduces the sample, so the rotation is an index permutation: the three
//! steps are fused, and only the input voxels the zoom reads are ever normalised, with no
//! full-size intermediate. Other planes go through [`crate::spline`]'s general cubic rotation, as
//! scipy does.
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

/// The seed's output size `[x, y, z]` in voxels (its `width, height, depth`: 128×128×64), the
/// default of every size setting (preprocessing, the model's input, the CLI's `--size`).
pub const DEFAULT_SIZE: [usize; 3] = [128, 128, 64];

/// Preprocessing as the user wrote it (the seed's defaults via [`Default`]), not yet checked:
/// [`PreprocessParams::check`] turns it into the [`PreprocessConfig`] every function here takes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PreprocessParams {
    /// Lower end of the HU window (seed: -1000).
    pub hu_min: f32,
    /// Upper end of the HU window (seed: 400).
    pub hu_max: f32,
    /// Output `[x, y, z]` size in voxels (seed: [`DEFAULT_SIZE`]).
    pub size: [usize; 3],
}

impl Default for PreprocessParams {
    fn default() -> Self {
        Self {
            hu_min: -1000.0,
            hu_max: 400.0,
            size: DEFAULT_SIZE,
        }
    }
}

impl PreprocessParams {
    /// Checks the parameters once: a finite, non-empty HU window (`hu_min < hu_max`) and an output
    /// size of at least one voxel per axis whose voxel count fits in memory addressing.
    pub fn check(self) -> Result<PreprocessConfig, ConfigError> {
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
        Ok(PreprocessConfig(self))
    }
}

/// Checked preprocessing settings: only [`PreprocessParams::check`] (or deserializing, which
/// checks) makes one, so nothing that takes it validates again. Its fields are read through
/// [`Deref`](std::ops::Deref) (`config.size`); to change one, go back to the parameters
/// ([`PreprocessConfig::params`]) and check again. Serializes as the parameters' fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "PreprocessParams", into = "PreprocessParams")]
pub struct PreprocessConfig(PreprocessParams);

impl Default for PreprocessConfig {
    /// The seed's settings (valid: see the test `the_defaults_are_valid`).
    fn default() -> Self {
        Self(PreprocessParams::default())
    }
}

impl std::ops::Deref for PreprocessConfig {
    type Target = PreprocessParams;

    fn deref(&self) -> &PreprocessParams {
        &self.0
    }
}

impl PreprocessConfig {
    /// The seed's settings with another output size `[x, y, z]` (voxels).
    pub fn sized(size: [usize; 3]) -> Result<Self, ConfigError> {
        PreprocessParams {
            size,
            ..PreprocessParams::default()
        }
        .check()
    }

    /// A copy of the parameters, to change and [`check`](PreprocessParams::check) again.
    pub fn params(&self) -> PreprocessParams {
        self.0.clone()
    }
}

impl TryFrom<PreprocessParams> for PreprocessConfig {
    type Error = ConfigError;

    fn try_from(params: PreprocessParams) -> Result<Self, ConfigError> {
        params.check()
    }
}

impl From<PreprocessConfig> for PreprocessParams {
    fn from(config: PreprocessConfig) -> Self {
        config.0
    }
}

/// Invalid [`PreprocessParams`] values.
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
        "invalid preprocessing settings: HU window minimum {hu_min} must be below maximum {hu_max}"
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
    Read(#[from] crate::nifti::ReadError),
    /// The DICOM series folder could not be read, or a series was selected on a file (the message
    /// names the folder or file).
    #[error(transparent)]
    Scan(crate::format::ScanError),
    /// The parameters are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The scan is not in Hounsfield units: it looks already preprocessed (see
    /// [`not_raw_hu_reason`]). Preprocessing it again would squash it into a constant.
    #[error(
        "{}: looks already preprocessed ({reason}); ct3d expects raw CT scans in Hounsfield units",
        path.display()
    )]
    AlreadyPreprocessed {
        /// The scan file.
        path: std::path::PathBuf,
        /// Why it is not a raw scan: its header or its value range.
        reason: String,
    },
    /// The volume has an axis of zero voxels.
    #[error("{origin}: cannot preprocess an empty volume of shape {shape:?}")]
    EmptyVolume {
        /// The file the volume came from, or `in-memory volume`.
        origin: String,
        /// Its `[x, y, z]` shape.
        shape: [usize; 3],
    },
}

/// How the `descrip` field of every `ct3d preprocess` output starts.
pub const OUTPUT_DESCRIPTION_PREFIX: &str = "ct3d preprocess";

/// The NIfTI `descrip` that `ct3d preprocess` writes into its output, e.g.
/// `ct3d preprocess v0.1.0 size=128,128,64 window=-1000,400`: it marks the file as model-ready
/// (not Hounsfield units) and records how it was made.
pub fn output_description(config: &PreprocessConfig) -> String {
    let [x, y, z] = config.size;
    format!(
        "{OUTPUT_DESCRIPTION_PREFIX} v{} size={x},{y},{z} window={},{}",
        env!("CARGO_PKG_VERSION"),
        config.hu_min,
        config.hu_max
    )
}

/// How the parameters recorded in a `ct3d preprocess` header (`description`, see
/// [`output_description`]) differ from `config`, e.g. `window=-900,300 (expected
/// window=-1000,400)`; `None` when they agree or the description is not ct3d's.
pub fn description_mismatch(description: &str, config: &PreprocessConfig) -> Option<String> {
    if !description.starts_with(OUTPUT_DESCRIPTION_PREFIX) {
        return None;
    }
    let expected = output_description(config);
    let differences: Vec<String> = ["size=", "window="]
        .into_iter()
        .filter_map(|key| {
            let found = description.split(' ').find(|w| w.starts_with(key))?;
            let wanted = expected.split(' ').find(|w| w.starts_with(key))?;
            (found != wanted).then(|| format!("{found} (expected {wanted})"))
        })
        .collect();
    (!differences.is_empty()).then(|| differences.join(", "))
}

/// Why `volume` is not a raw CT scan in Hounsfield units, or `None` when it may be one.
///
/// `description` is the NIfTI header's `descrip`, if known: `ct3d preprocess` marks its output
/// there ([`output_description`]). Otherwise a floating-point volume whose finite values all lie
/// in `[0, 1]` cannot be a CT scan (real HU span about -1024 to 3000, air alone is -1000) and is
/// taken as already preprocessed. Integer volumes (every scanner's output) are never flagged, and
/// the value scan stops at the first voxel outside `[0, 1]`, so a raw float scan costs next to
/// nothing.
pub fn not_raw_hu_reason(volume: &Volume, description: Option<&str>) -> Option<String> {
    if let Some(text) = description.filter(|d| d.starts_with(OUTPUT_DESCRIPTION_PREFIX)) {
        return Some(format!("its header says \"{text}\""));
    }
    if !is_float(volume) {
        return None;
    }
    let (mut min, mut max, mut finite) = (f32::INFINITY, f32::NEG_INFINITY, false);
    for &v in volume.data() {
        if v.is_finite() {
            if !(0.0..=1.0).contains(&v) {
                return None;
            }
            (min, max, finite) = (min.min(v), max.max(v), true);
        }
    }
    finite.then(|| {
        format!(
            "all its values lie in [0, 1] (min {min}, max {max}), while CT scans span about -1024 to 3000 HU"
        )
    })
}

/// Whether the volume was stored as floating point (`float32`/`float64` NIfTI).
fn is_float(volume: &Volume) -> bool {
    volume
        .provenance
        .datatype
        .as_deref()
        .is_some_and(|d| d.starts_with("float"))
}

/// Reads a scan (a NIfTI file or a DICOM series folder, see [`crate::format::read_scan`]) and
/// applies the seed's pipeline: HU window → [0, 1], rotate 90°, zoom to `size` (see
/// [`process_volume`]). A volume that is already preprocessed ([`not_raw_hu_reason`]) is
/// refused with [`PreprocessError::AlreadyPreprocessed`].
pub fn process_file(path: &Path, config: &PreprocessConfig) -> Result<Volume, PreprocessError> {
    process_scan(path, None, config)
}

/// [`process_file`] with a DICOM series selected by its `SeriesInstanceUID` (for a folder holding
/// several series).
pub fn process_scan(
    path: &Path,
    series: Option<&str>,
    config: &PreprocessConfig,
) -> Result<Volume, PreprocessError> {
    let volume = read_raw_scan(path, series)?;
    process(&volume, config, Some(path))
}

/// Reads a scan as [`crate::format::read_scan`] does, refusing one that is not in Hounsfield units
/// ([`not_raw_hu_reason`]; the description the scan records, see
/// [`crate::format::description`], is only consulted for floating-point volumes).
pub fn read_raw_scan(path: &Path, series: Option<&str>) -> Result<Volume, PreprocessError> {
    let volume = crate::format::read_scan(path, series).map_err(|e| match e {
        crate::format::ScanError::Nifti(e) => PreprocessError::Read(e),
        other => PreprocessError::Scan(other),
    })?;
    let description = is_float(&volume)
        .then(|| crate::format::description(path))
        .flatten();
    match not_raw_hu_reason(&volume, description.as_deref()) {
        Some(reason) => Err(PreprocessError::AlreadyPreprocessed {
            path: path.to_owned(),
            reason,
        }),
        None => Ok(volume),
    }
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
    let mut out = if (shape[0] + shape[1]).is_multiple_of(2) && shape[0] >= 2 {
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
/// window. Integer HU values (every int16 scan) multiply by `1 / (max - min)` instead of dividing:
/// the constructor checks, for every integer in the window, that this rounds to the same `f32`
/// as the division (it does for every window tried; if not, everything divides).
#[derive(Debug, Clone)]
pub struct HuWindow {
    low: f32,
    high: f32,
    low_f64: f64,
    width: f64,
    inverse_width: f64,
    /// Whether `multiply` equals `divide` for every integer in the window.
    integers_multiply: bool,
}

impl HuWindow {
    /// `1.5 · 2^23`: adding it to an `f32` of magnitude below `2^22` rounds it to an integer, so
    /// `(x + M) - M == x` tests integrality without float-to-int conversions (and vectorizes).
    const ROUNDING_MAGIC: f32 = 12_582_912.0;
    /// The multiplication shortcut is verified for windows within `±2^22` HU, at most this many
    /// integers wide.
    const SHORTCUT_LIMIT: f32 = 4_194_304.0;
    const SHORTCUT_MAX_INTEGERS: f32 = 1_048_576.0;

    /// The window `[hu_min, hu_max]` in Hounsfield units (valid when `hu_min < hu_max`, both
    /// finite; see [`PreprocessParams::check`]).
    pub fn new(hu_min: f32, hu_max: f32) -> Self {
        let low_f64 = f64::from(hu_min);
        let width = f64::from(hu_max) - low_f64;
        let mut window = Self {
            low: hu_min,
            high: hu_max,
            low_f64,
            width,
            inverse_width: 1.0 / width,
            integers_multiply: false,
        };
        let (first, last) = (hu_min.ceil(), hu_max.floor());
        if first > -Self::SHORTCUT_LIMIT
            && last < Self::SHORTCUT_LIMIT
            && last - first < Self::SHORTCUT_MAX_INTEGERS
        {
            let view = window.view();
            window.integers_multiply = (first as i32..=last as i32)
                .all(|hu| view.multiply(hu as f32) == view.divide(hu as f32));
        }
        window
    }

    /// `hu` (Hounsfield units) mapped into `[0, 1]`.
    #[inline]
    pub fn normalize(&self, hu: f32) -> f32 {
        self.view().normalize(hu)
    }

    /// A by-value copy of the parameters, which hot loops keep in registers.
    fn view(&self) -> WindowView {
        WindowView {
            low: self.low,
            high: self.high,
            low_f64: self.low_f64,
            width: self.width,
            inverse_width: self.inverse_width,
            integers_multiply: self.integers_multiply,
        }
    }
}

/// [`HuWindow`]'s parameters by value.
#[derive(Clone, Copy)]
struct WindowView {
    low: f32,
    high: f32,
    low_f64: f64,
    width: f64,
    inverse_width: f64,
    integers_multiply: bool,
}

impl WindowView {
    /// Clips to the window; written as comparisons so NaN takes the low end and each is one
    /// `maxss`/`minss`.
    #[inline(always)]
    fn clip(self, hu: f32) -> f32 {
        let clipped = if hu > self.low { hu } else { self.low };
        if clipped < self.high {
            clipped
        } else {
            self.high
        }
    }

    #[inline(always)]
    fn is_integer(value: f32) -> bool {
        value + HuWindow::ROUNDING_MAGIC - HuWindow::ROUNDING_MAGIC == value
    }

    #[inline(always)]
    fn multiply(self, clipped: f32) -> f32 {
        ((f64::from(clipped) - self.low_f64) * self.inverse_width) as f32
    }

    #[inline(always)]
    fn divide(self, clipped: f32) -> f32 {
        ((f64::from(clipped) - self.low_f64) / self.width) as f32
    }

    #[inline(always)]
    fn normalize(self, hu: f32) -> f32 {
        let clipped = self.clip(hu);
        if self.integers_multiply && Self::is_integer(clipped) {
            self.multiply(clipped)
        } else {
            self.divide(clipped)
        }
    }

    /// `normalized[k] = normalize(hu[k])`. When every clipped value is an integer (int16 scans)
    /// this is one vectorized pass; otherwise a second pass redoes it value by value.
    #[inline(always)]
    fn normalize_into(self, hu: &[f32], normalized: &mut [f32]) {
        let mut all_integers = self.integers_multiply;
        for (n, &value) in normalized.iter_mut().zip(hu) {
            let clipped = self.clip(value);
            all_integers &= Self::is_integer(clipped);
            *n = self.multiply(clipped);
        }
        if !all_integers {
            for (n, &value) in normalized.iter_mut().zip(hu) {
                *n = self.normalize(value);
            }
        }
    }
}

/// The seed's `normalize` on every voxel (see [`HuWindow`] for the exact arithmetic and the NaN
/// policy). The shape and geometry are kept.
pub fn normalize_hu(volume: &Volume, hu_min: f32, hu_max: f32) -> Volume {
    normalize_with(volume, &HuWindow::new(hu_min, hu_max))
}

fn normalize_with(volume: &Volume, window: &HuWindow) -> Volume {
    let mut data = vec![0.0; volume.len()];
    let window = window.view();
    const CHUNK: usize = 1 << 16;
    data.par_chunks_mut(CHUNK)
        .zip(volume.data().par_chunks(CHUNK))
        .for_each(|(normalized, hu)| window.normalize_into(hu, normalized));
    volume
        .with_data(volume.shape(), data)
        .expect("same shape as the input")
}

/// The zoom's taps along output `y`, which reads along input rows (input `x`), as adjacent pairs
/// `row[start]`, `row[start + 1]` with a weight each (structure of arrays).
///
/// Branch-free: a tap outside the input (scipy reads it as 0) or of weight 0 just gets weight 0,
/// which adds exactly 0 since normalised values are finite. The zoom's two taps are adjacent
/// wherever both can have weight (its mirrored tap at the very end has weight 0), so every sample
/// is one pair.
struct ColumnPairs {
    start: Vec<usize>,
    first_weight: Vec<f64>,
    second_weight: Vec<f64>,
}

impl ColumnPairs {
    /// `row_len >= 2`.
    fn new(
        taps: &[Option<LinearTap>],
        row_len: usize,
        to_input: impl Fn(usize) -> Option<usize>,
    ) -> Self {
        let mut pairs = Self {
            start: vec![],
            first_weight: vec![],
            second_weight: vec![],
        };
        for tap in taps {
            let mut weights = [0.0; 2];
            let mut start = 0;
            if let Some(t) = tap {
                let low = to_input(t.low);
                let high = to_input(t.high).filter(|_| t.high_weight != 0.0);
                start = low
                    .or(high.map(|x| x.saturating_sub(1)))
                    .unwrap_or(0)
                    .min(row_len - 2);
                for (x, w) in [(low, t.low_weight), (high, t.high_weight)] {
                    if let Some(x) = x {
                        weights[x - start] = w;
                    }
                }
            }
            pairs.start.push(start);
            pairs.first_weight.push(weights[0]);
            pairs.second_weight.push(weights[1]);
        }
        pairs
    }

    /// Copies each pair of `row` into `firsts[j]`, `seconds[j]`.
    #[inline(always)]
    fn gather(&self, row: &[f32], firsts: &mut [f32], seconds: &mut [f32]) {
        for ((first, second), &start) in firsts.iter_mut().zip(seconds.iter_mut()).zip(&self.start)
        {
            *first = row[start];
            *second = row[start + 1];
        }
    }
}

/// The zoom's taps along output `x`, which selects input rows (input `y`): `None` where the tap
/// falls outside the input or has weight 0.
#[derive(Debug, Clone, Copy)]
struct RowTaps {
    low: Option<(usize, f64)>,
    high: Option<(usize, f64)>,
}

/// Normalise + 90° rotation + linear zoom in one pass, for `(x, y)` planes with `W + H` even.
///
/// scipy's quarter turn samples input pixel `(r1 + (W − H)/2, (W + H)/2 − 1 − r0)` for rotated
/// pixel `(r0, r1)` (zero outside the plane); with `W + H` even those are whole pixels, where the
/// cubic spline returns the sample itself, so the rotation is a permutation. The zoom is then done
/// separably: each input `z` plane the zoom reads is reduced to an output-sized `(x, y)` plane
/// (gathering, and normalising, only the pixels the zoom reads), and output planes blend two of
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

    let rows: Vec<Option<RowTaps>> = spline::linear_taps(nx, ox)
        .iter()
        .map(|tap| {
            tap.map(|t| RowTaps {
                low: input_row(t.low).map(|y| (y, t.low_weight)),
                high: input_row(t.high)
                    .filter(|_| t.high_weight != 0.0)
                    .map(|y| (y, t.high_weight)),
            })
        })
        .collect();
    let cols = ColumnPairs::new(&spline::linear_taps(ny, oy), nx, input_col);
    let depths = spline::linear_taps(nz, oz);
    let window = window.view();

    let plane_in = nx * ny;
    let plane_out = ox * oy;
    let data = volume.data();
    // The output-sized plane of input plane `z` (`x` fastest, like the output): output row `i`
    // blends the zoom's two input rows; pixels the zoom leaves at 0 are never written.
    let reduce_plane = |z: usize, reduced: &mut [f64]| {
        let plane = &data[z * plane_in..(z + 1) * plane_in];
        let row = |y: usize| &plane[y * nx..(y + 1) * nx];
        // Per output row: the gathered HU pairs of up to two input rows, then their normalised
        // values, each as [first row firsts | first row seconds | second row firsts | seconds].
        let mut gathered = vec![0.0f32; 4 * oy];
        let mut normalized = vec![0.0f32; 4 * oy];
        let mut blended = vec![0.0f64; oy];
        // Descending `i` reads the input rows in ascending memory order, which prefetches best.
        for (i, row_taps) in rows.iter().enumerate().rev() {
            let Some(RowTaps { low, high }) = row_taps else {
                continue;
            };
            let mut taps = [*low, *high].into_iter().flatten();
            let Some((y0, w0)) = taps.next() else {
                continue;
            };
            let second = taps.next();
            let used = if second.is_some() { 4 * oy } else { 2 * oy };
            let (first_row, second_row) = gathered.split_at_mut(2 * oy);
            let (firsts, seconds) = first_row.split_at_mut(oy);
            cols.gather(row(y0), firsts, seconds);
            if let Some((y1, _)) = second {
                let (firsts, seconds) = second_row.split_at_mut(oy);
                cols.gather(row(y1), firsts, seconds);
            }
            window.normalize_into(&gathered[..used], &mut normalized[..used]);
            // Equal-length slices let the compiler drop bounds checks and vectorize.
            let (a, rest) = normalized.split_at(oy);
            let (b, rest) = rest.split_at(oy);
            let (c, d) = rest.split_at(oy);
            let (wa, wb) = (&cols.first_weight[..oy], &cols.second_weight[..oy]);
            let blended = &mut blended[..oy];
            match second {
                Some((_, w1)) => {
                    let (c, d) = (&c[..oy], &d[..oy]);
                    for j in 0..oy {
                        let first = wa[j] * f64::from(a[j]) + wb[j] * f64::from(b[j]);
                        let second = wa[j] * f64::from(c[j]) + wb[j] * f64::from(d[j]);
                        blended[j] = w0 * first + w1 * second;
                    }
                }
                None => {
                    for j in 0..oy {
                        blended[j] = w0 * (wa[j] * f64::from(a[j]) + wb[j] * f64::from(b[j]));
                    }
                }
            }
            for (target, &value) in reduced[i..].iter_mut().step_by(ox).zip(blended.iter()) {
                *target = value;
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
                match cache.pair(depth.low, high, &reduce_plane) {
                    (low_plane, Some(high_plane)) => {
                        for ((o, &l), &h) in out_plane.iter_mut().zip(low_plane).zip(high_plane) {
                            *o = (depth.low_weight * l + depth.high_weight * h) as f32;
                        }
                    }
                    (low_plane, None) => {
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
    let steps = zoom_steps(volume.shape(), out_shape);
    let s = volume.spacing;
    let spacing = [s[1] * steps[0], s[0] * steps[1], s[2] * steps[2]];
    let sampling = sampling_matrix(volume.shape(), out_shape);
    let a = &volume.affine;
    let affine = std::array::from_fn(|r| {
        std::array::from_fn(|c| (0..4).map(|k| a[r][k] * sampling[k][c]).sum())
    });
    (spacing, affine)
}

/// Rotated-grid voxels per output voxel along each axis (the zoom's corner-aligned step). The
/// quarter turn keeps the shape (`reshape=False`), so axis `k` zooms from `shape[k]` voxels.
fn zoom_steps([nx, ny, nz]: [usize; 3], out_shape: [usize; 3]) -> [f64; 3] {
    let step = |n_in: usize, n_out: usize| {
        if n_in > 1 && n_out > 1 {
            (n_in - 1) as f64 / (n_out - 1) as f64
        } else {
            n_in as f64 / n_out as f64
        }
    };
    [
        step(nx, out_shape[0]),
        step(ny, out_shape[1]),
        step(nz, out_shape[2]),
    ]
}

/// The matrix taking an output voxel `(o0, o1, o2, 1)` to the input voxel preprocessing sampled
/// it from: the zoom scales, the quarter turn sends rotated `(r0, r1)` to input
/// `(r1 + cx − cy, cx + cy − r0)`.
fn sampling_matrix(shape: [usize; 3], out_shape: [usize; 3]) -> Affine {
    let steps = zoom_steps(shape, out_shape);
    let (cx, cy) = ((shape[0] as f64 - 1.0) / 2.0, (shape[1] as f64 - 1.0) / 2.0);
    [
        [0.0, steps[1], 0.0, cx - cy],
        [-steps[0], 0.0, 0.0, cx + cy],
        [0.0, 0.0, steps[2], 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// Places a map computed on the preprocessed grid back on the grid of the raw scan it came from,
/// undoing the zoom and the quarter turn: scan voxel `v` takes the map's trilinear interpolation
/// at the output position that preprocessing sampled from `v` (the inverse of the sampling
/// [`process_volume`] documents), clamped to the map's edge.
///
/// `map` is `[x, y, z]` voxels of the preprocessed grid (any values, e.g. a heat map); `scan` is
/// the raw volume (only its shape, spacing and affine are used). The result has the scan's shape,
/// spacing and affine, so it overlays the original in any viewer.
pub fn to_scan_grid(map: &Volume, scan: &Volume) -> Volume {
    let shape = scan.shape();
    let out_shape = map.shape();
    let steps = zoom_steps(shape, out_shape);
    let (cx, cy) = ((shape[0] as f64 - 1.0) / 2.0, (shape[1] as f64 - 1.0) / 2.0);
    // Inverse of `sampling_matrix`: input (i, j, k) came from output
    // ((cx + cy − j) / s0, (i − cx + cy) / s1, k / s2).
    let position = |value: f64, n: usize| value.clamp(0.0, (n.max(1) - 1) as f64);
    let mut out = Volume::from_fn(shape, |i, j, k| {
        let o = [
            position((cx + cy - j as f64) / steps[0], out_shape[0]),
            position((i as f64 - cx + cy) / steps[1], out_shape[1]),
            position(k as f64 / steps[2], out_shape[2]),
        ];
        map.sample_linear(o)
    });
    out.spacing = scan.spacing;
    out.affine = scan.affine;
    out.provenance = scan.provenance.clone();
    out
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

    #[test]
    fn a_map_goes_back_to_the_scan_grid_where_preprocessing_took_it_from() {
        // A map holding each output voxel's world position: placed back on the scan grid, every
        // voxel must read its own world position (up to interpolation between grid points, which
        // is exact for an affine function), for square and non-square planes.
        for shape in [[20, 20, 9], [20, 14, 9], [13, 20, 5]] {
            let mut scan = phantom(shape);
            scan.spacing = [0.7, 0.8, 5.0];
            scan.affine = [
                [-0.7, 0.0, 0.0, 90.0],
                [0.0, 0.8, 0.0, -120.0],
                [0.0, 0.0, 5.0, -30.0],
                [0.0, 0.0, 0.0, 1.0],
            ];
            let config = PreprocessConfig::sized([8, 8, 4]).unwrap();
            let processed = process_volume(&scan, &config).unwrap();
            let world = |a: &Affine, v: [f64; 3], row: usize| {
                (0..3).map(|c| a[row][c] * v[c]).sum::<f64>() + a[row][3]
            };
            for row in 0..3 {
                let map = Volume::from_fn(processed.shape(), |x, y, z| {
                    world(&processed.affine, [x as f64, y as f64, z as f64], row) as f32
                });
                let back = to_scan_grid(&map, &scan);
                assert_eq!(back.shape(), shape);
                assert_eq!(back.affine, scan.affine);
                // Square planes turn onto themselves; in others the corners were cut off by the
                // quarter turn (`reshape=False`) and only the middle was ever seen.
                let (n0, n1, n2) = (shape[0] - 1, shape[1] - 1, shape[2] - 1);
                let voxels = if shape[0] == shape[1] {
                    vec![(0, 0, 0), (5, 7, 3), (n0, n1, n2), (n0, 0, 1)]
                } else {
                    vec![(n0 / 2, n1 / 2, n2 / 2), (n0 / 2 + 2, n1 / 2 - 1, 0)]
                };
                for (i, j, k) in voxels {
                    let expected = world(&scan.affine, [i as f64, j as f64, k as f64], row);
                    let got = f64::from(back.get(i, j, k));
                    assert!(
                        (got - expected).abs() < 1e-3,
                        "{shape:?} row {row} voxel ({i},{j},{k}): {got} vs {expected}"
                    );
                }
            }
        }
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
            PreprocessParams {
                hu_min: 400.0,
                hu_max: 400.0,
                ..Default::default()
            },
            PreprocessParams {
                hu_min: f32::NAN,
                ..Default::default()
            },
            PreprocessParams {
                size: [128, 0, 64],
                ..Default::default()
            },
            PreprocessParams {
                size: [usize::MAX, 2, 1],
                ..Default::default()
            },
        ];
        for params in cases {
            let message = params.check().unwrap_err().to_string();
            assert!(
                message.starts_with("invalid preprocessing settings") && !message.contains('\n'),
                "{message}"
            );
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        let checked = PreprocessParams::default().check().unwrap();
        assert_eq!(checked, PreprocessConfig::default());
        assert_eq!(checked.size, DEFAULT_SIZE);
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
    fn preprocessed_volumes_are_told_from_raw_scans() {
        let mut v = Volume::from_fn([4, 4, 2], |x, _, _| x as f32 / 3.0);
        // Values in [0, 1] of unknown storage (built in memory) are not judged.
        assert_eq!(not_raw_hu_reason(&v, None), None);
        v.provenance.datatype = Some("float32".to_owned());
        let reason = not_raw_hu_reason(&v, None).unwrap();
        assert!(
            reason.contains("[0, 1]") && reason.contains("max 1"),
            "{reason}"
        );
        // One voxel of air makes it a plausible HU volume; NaN does not count.
        v.data_mut()[0] = f32::NAN;
        assert!(not_raw_hu_reason(&v, None).is_some());
        v.data_mut()[1] = -1000.0;
        assert_eq!(not_raw_hu_reason(&v, None), None);
        // ct3d preprocess's header mark is decisive whatever the values.
        let description = output_description(
            &PreprocessParams {
                size: [48, 40, 32],
                ..Default::default()
            }
            .check()
            .unwrap(),
        );
        assert_eq!(
            description,
            format!(
                "ct3d preprocess v{} size=48,40,32 window=-1000,400",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(
            not_raw_hu_reason(&v, Some(&description))
                .unwrap()
                .contains(&description)
        );
        assert_eq!(not_raw_hu_reason(&v, Some("ct3d")), None);
        let same = PreprocessParams {
            size: [48, 40, 32],
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(description_mismatch(&description, &same), None);
        let other = PreprocessParams {
            hu_min: -900.0,
            hu_max: 300.0,
            size: [48, 40, 33],
        }
        .check()
        .unwrap();
        assert_eq!(
            description_mismatch(&description, &other).unwrap(),
            "size=48,40,32 (expected size=48,40,33), window=-1000,400 (expected window=-900,300)"
        );
        assert_eq!(description_mismatch("ct3d", &other), None);
        // Integer scans are never flagged by their values.
        let mut ints = Volume::filled([2, 2, 2], 1.0);
        ints.provenance.datatype = Some("int16".to_owned());
        assert_eq!(not_raw_hu_reason(&ints, None), None);
    }

    #[test]
    fn process_file_refuses_its_own_output() {
        let dir = tempfile::tempdir().unwrap();
        let config = PreprocessParams {
            size: [6, 6, 4],
            ..Default::default()
        }
        .check()
        .unwrap();
        let raw = phantom([10, 10, 5]);
        let out = process_volume(&raw, &config).unwrap();
        let marked = dir.path().join("marked.nii");
        let description = output_description(&config);
        crate::nifti::write_volume_described(
            &marked,
            &out,
            crate::nifti::OutputDtype::F32,
            &description,
        )
        .unwrap();
        let err = process_file(&marked, &config).unwrap_err();
        assert!(matches!(err, PreprocessError::AlreadyPreprocessed { .. }));
        let message = err.to_string();
        assert!(
            message.contains("marked.nii")
                && message.contains(&description)
                && message.contains("Hounsfield")
                && !message.contains('\n'),
            "{message}"
        );
        // Without the mark, the [0, 1] range gives it away.
        let plain = dir.path().join("plain.nii");
        crate::nifti::write_volume(&plain, &out, crate::nifti::OutputDtype::F32).unwrap();
        let message = process_file(&plain, &config).unwrap_err().to_string();
        assert!(message.contains("[0, 1]"), "{message}");
        // The raw scan, stored as float32 too, is fine.
        let hu = dir.path().join("hu.nii");
        crate::nifti::write_volume(&hu, &raw, crate::nifti::OutputDtype::F32).unwrap();
        assert_eq!(process_file(&hu, &config).unwrap().data(), out.data());
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
        let config = PreprocessParams {
            size,
            ..Default::default()
        }
        .check()
        .unwrap();
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
            &PreprocessParams {
                size: [4, 4, 3],
                ..Default::default()
            }
            .check()
            .unwrap(),
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
