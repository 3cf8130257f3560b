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

use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::Volume;
use crate::rng::{SplitMix64, mix64};
use crate::volume::Affine;

/// Hounsfield units of air outside the body.
pub const AIR_HU: f32 = -1000.0;

/// The in-plane grid size that [`PhantomConfig::spacing_xy_mm`] refers to (MosMedData's 512).
pub const REFERENCE_SHAPE_XY: usize = 512;

/// The smallest in-plane grid [`PhantomConfig`] accepts, in voxels; smaller grids lose the anatomy.
pub const MIN_SHAPE_XY: usize = 32;

/// The largest in-plane grid or slice count [`PhantomConfig`] accepts, in voxels.
pub const MAX_SHAPE: usize = 2048;

/// The fewest slices [`PhantomConfig`] accepts.
pub const MIN_DEPTH: usize = 4;

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

/// Why phantoms could not be generated or written. Displays as one line.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A [`PhantomConfig`] field is out of range.
    #[error("invalid phantom config: {reason}")]
    InvalidConfig {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// An output folder could not be created.
    #[error("{}: cannot create folder: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The writer failed on a scan.
    #[error("{}", describe_with_path(path, source.as_ref()))]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The writer's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `"<path>: <error>"`, or just the error when its message already names the path.
pub(crate) fn describe_with_path(path: &Path, error: &dyn std::fmt::Display) -> String {
    let message = error.to_string();
    let shown = path.display().to_string();
    if message.contains(&shown) {
        message
    } else {
        format!("{shown}: {message}")
    }
}

/// A phantom together with the tissue of every voxel (same `[x, y, z]` order, `x` fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledPhantom {
    /// The scan in whole Hounsfield units.
    pub volume: Volume,
    /// `volume.len()` tissue labels.
    pub tissue: Vec<Tissue>,
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
    let slice_len = anatomy.n * anatomy.n;
    let mut data = vec![AIR_HU; slice_len * anatomy.depth];
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
    let slice_len = anatomy.n * anatomy.n;
    let mut data = vec![AIR_HU; slice_len * anatomy.depth];
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

/// The seed of scan `index` of `class` in a dataset drawn with `dataset_seed`. Scans are seeded
/// independently, so adding scans to a dataset leaves the existing ones unchanged.
pub fn scan_seed(dataset_seed: u64, class: ScanClass, index: usize) -> u64 {
    let class_tag = match class {
        ScanClass::Normal => 0x4E4F_524D_414C_0000,
        ScanClass::Abnormal => 0x4142_4E4F_524D_0000,
    };
    mix64(mix64(mix64(dataset_seed) ^ class_tag) ^ index as u64)
}

/// The file name of scan `index` in its class folder: `phantom_0007.nii.gz`.
pub fn phantom_file_name(index: usize) -> String {
    format!("phantom_{index:04}.nii.gz")
}

/// Generates `normal` + `abnormal` phantoms in parallel and hands each to `writer` as
/// `out/CT-0/phantom_0000.nii.gz`, … and `out/CT-23/phantom_0000.nii.gz`, …, creating the class
/// folders. Scan `i` of a class uses [`scan_seed`]`(seed, class, i)`. `progress` is called once per
/// written scan (from worker threads). Returns the paths, normal scans first, each class by index.
///
/// The real writer is `|p, v| nifti_io::write_volume(p, v, OutputDtype::I16)`; any other writer
/// (e.g. one that records calls in a test) works the same.
pub fn write_dataset<E>(
    out: &Path,
    normal: usize,
    abnormal: usize,
    seed: u64,
    config: &PhantomConfig,
    writer: impl Fn(&Path, &Volume) -> Result<(), E> + Sync,
    progress: impl Fn() + Sync,
) -> Result<Vec<PathBuf>, SynthError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    config.validate()?;
    let mut jobs = Vec::with_capacity(normal + abnormal);
    for (class, count) in [(ScanClass::Normal, normal), (ScanClass::Abnormal, abnormal)] {
        let folder = out.join(class.folder_name());
        std::fs::create_dir_all(&folder).map_err(|source| SynthError::CreateDir {
            path: folder.clone(),
            source,
        })?;
        jobs.extend((0..count).map(|index| (class, index, folder.join(phantom_file_name(index)))));
    }
    jobs.into_par_iter()
        .map(|(class, index, path)| {
            let volume = generate_phantom(config, class, scan_seed(seed, class, index))?;
            writer(&path, &volume).map_err(|source| SynthError::Write {
                path: path.clone(),
                source: Box::new(source),
            })?;
            progress();
            Ok(path)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Random numbers

/// Phantom randomness: the shared SplitMix64 plus the draws the geometry needs.
struct Rng {
    inner: SplitMix64,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Self {
            inner: SplitMix64::new(mix64(seed)),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.inner.next_f64()
    }

    /// Uniform in `[lo, hi)` (or exactly `lo` when `lo == hi`).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn uniform_in(&mut self, range: &RangeInclusive<f64>) -> f64 {
        self.uniform(*range.start(), *range.end())
    }

    /// Uniform integer in `range`.
    fn integer_in(&mut self, range: &RangeInclusive<usize>) -> usize {
        let span = (range.end() - range.start()) as u64 + 1;
        range.start() + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as usize
    }

    /// A random unit vector (by rejection from the cube: no trigonometry, see module docs).
    fn direction(&mut self) -> [f64; 3] {
        loop {
            let p = [0, 1, 2].map(|_| self.uniform(-1.0, 1.0));
            let r2 = dot(p, p);
            if r2 > 1e-6 && r2 <= 1.0 {
                return scale(p, 1.0 / r2.sqrt());
            }
        }
    }

    /// A random point on the unit circle, `(cos, sin)` of a uniform angle.
    fn unit_circle(&mut self) -> (f64, f64) {
        loop {
            let (c, s) = (self.uniform(-1.0, 1.0), self.uniform(-1.0, 1.0));
            let r2 = c * c + s * s;
            if r2 > 1e-6 && r2 <= 1.0 {
                let r = r2.sqrt();
                return (c / r, s / r);
            }
        }
    }

    /// Approximately standard-normal (Irwin–Hall sum of four 16-bit uniforms): one RNG call per
    /// voxel, and bounded at ±3.46 σ so noise never pushes a tissue into another's HU range.
    fn approx_normal(&mut self) -> f32 {
        const MEAN: f32 = 4.0 * 65535.0 / 2.0;
        // sqrt(4 * (65536² − 1) / 12)
        const STD: f32 = 37_837.23;
        let r = self.next_u64();
        let sum = (r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48);
        (sum as f32 - MEAN) * (1.0 / STD)
    }
}

const ANATOMY_STREAM: u64 = 0xA7A7_0001;
const LESION_STREAM: u64 = 0x6606_0002;
const NOISE_STREAM: u64 = 0x7015_0003;

// ---------------------------------------------------------------------------------------------
// Anatomy (all lengths in mm; x toward the patient's left, y posterior, z superior; the in-plane
// origin is the grid centre, z = 0 is the first slice)

#[derive(Debug, Clone, Copy)]
struct Ellipse {
    cx: f64,
    cy: f64,
    rx: f64,
    ry: f64,
}

impl Ellipse {
    fn scaled(self, s: f64) -> Self {
        Self {
            rx: self.rx * s,
            ry: self.ry * s,
            ..self
        }
    }

    /// The x interval (mm) of the ellipse on the row at `y` mm.
    fn row_extent(&self, y: f64) -> Option<(f64, f64)> {
        let t = (y - self.cy) / self.ry;
        (t.abs() < 1.0).then(|| {
            let half = self.rx * (1.0 - t * t).sqrt();
            (self.cx - half, self.cx + half)
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Lung {
    /// Cross-section at its widest.
    section: Ellipse,
    /// Height (mm) of the widest section.
    z_center: f64,
    /// Distance from the widest section down to the diaphragm.
    below: f64,
    /// Distance from the widest section up to the apex.
    above: f64,
    /// Parenchyma HU at the section centre.
    hu: f64,
    /// HU increase per mm toward posterior (gravity-dependent density).
    hu_per_mm_posterior: f64,
}

impl Lung {
    /// Cross-section scale at height `z`: flat-domed base, rounded apex; `None` outside the lung.
    fn profile(&self, z: f64) -> Option<f64> {
        let t = (z - self.z_center)
            / if z < self.z_center {
                self.below
            } else {
                self.above
            };
        let s = if z < self.z_center {
            (1.0 - t * t * t * t).max(0.0).sqrt()
        } else {
            (1.0 - t * t).max(0.0).sqrt()
        };
        (s > 0.08).then_some(s)
    }

    fn volume(&self) -> f64 {
        // ∫ profile² dz over both halves: (4/5)·below + (2/3)·above.
        std::f64::consts::PI
            * self.section.rx
            * self.section.ry
            * (0.8 * self.below + 2.0 / 3.0 * self.above)
    }
}

/// An ellipsoid with its in-plane axes rotated by `angle`.
#[derive(Debug, Clone, Copy)]
struct Ellipsoid {
    center: [f64; 3],
    radii: [f64; 3],
    cos: f64,
    sin: f64,
}

impl Ellipsoid {
    /// Its cross-section bounding half-width and the squared normalised z distance at `z`.
    fn slice_at(&self, z: f64) -> Option<(f64, f64)> {
        let tz = (z - self.center[2]) / self.radii[2];
        let tz2 = tz * tz;
        (tz2 < 1.0).then(|| (self.radii[0].max(self.radii[1]) * (1.0 - tz2).sqrt(), tz2))
    }

    /// Squared normalised distance of `(x, y)` given the z term.
    fn norm2(&self, x: f64, y: f64, tz2: f64) -> f64 {
        let (dx, dy) = (x - self.center[0], y - self.center[1]);
        let u = (dx * self.cos + dy * self.sin) / self.radii[0];
        let v = (-dx * self.sin + dy * self.cos) / self.radii[1];
        u * u + v * v + tz2
    }
}

#[derive(Debug, Clone, Copy)]
struct Lesion {
    shape: Ellipsoid,
    hu: f64,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    a: [f64; 3],
    b: [f64; 3],
    radius: f64,
}

impl Segment {
    fn distance2(&self, p: [f64; 3]) -> f64 {
        let ab = sub(self.b, self.a);
        let ap = sub(p, self.a);
        let t = (dot(ap, ab) / dot(ab, ab).max(1e-12)).clamp(0.0, 1.0);
        let d = sub(ap, scale(ab, t));
        dot(d, d)
    }

    /// The in-plane bounding box (mm) of the part of the tube within its radius of height `z`.
    fn bounds_at(&self, z: f64) -> Option<[f64; 4]> {
        let r = self.radius;
        let (za, zb) = (self.a[2], self.b[2]);
        if z < za.min(zb) - r || z > za.max(zb) + r {
            return None;
        }
        let dz = zb - za;
        let (t0, t1) = if dz.abs() < 1e-9 {
            (0.0, 1.0)
        } else {
            let (ta, tb) = ((z - r - za) / dz, (z + r - za) / dz);
            (ta.min(tb).clamp(0.0, 1.0), ta.max(tb).clamp(0.0, 1.0))
        };
        let p0 = add(self.a, scale(sub(self.b, self.a), t0));
        let p1 = add(self.a, scale(sub(self.b, self.a), t1));
        Some([
            p0[0].min(p1[0]) - r,
            p0[0].max(p1[0]) + r,
            p0[1].min(p1[1]) - r,
            p0[1].max(p1[1]) + r,
        ])
    }
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn normalize(a: [f64; 3]) -> [f64; 3] {
    scale(a, 1.0 / dot(a, a).sqrt().max(1e-12))
}

#[derive(Debug, Clone, Copy)]
struct Rib {
    section: Ellipse,
    /// Phase (mm) of the rib's repetition along z.
    phase: f64,
}

/// Everything drawn for one scan; rendering a slice reads it only.
struct Anatomy {
    seed: u64,
    n: usize,
    depth: usize,
    spacing: [f64; 3],
    body: Ellipse,
    fat_mm: f64,
    soft_hu: f64,
    fat_hu: f64,
    table: Ellipse,
    lungs: [Lung; 2],
    heart_hu: f64,
    heart: Ellipsoid,
    vertebral_body: Ellipse,
    canal: Ellipse,
    spinous: Ellipse,
    cortical_hu: f64,
    cancellous_hu: f64,
    disc_phase: f64,
    ribs: Vec<Rib>,
    rib_hu: f64,
    vessels: Vec<Segment>,
    vessel_hu: f64,
    lesions: Vec<Lesion>,
    noise_sigma: f64,
}

/// Vertebral level height and disc thickness, mm.
const VERTEBRA_PITCH_MM: f64 = 30.0;
const DISC_MM: f64 = 7.0;
/// Rib spacing along z and the z extent of one rib's cross-section, mm.
const RIB_PITCH_MM: f64 = 32.0;
const RIB_CROSSING_MM: f64 = 14.0;

impl Anatomy {
    fn draw(config: &PhantomConfig, class: ScanClass, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ ANATOMY_STREAM);
        let n = config.shape_xy;
        let depth = rng.integer_in(&config.depth);
        let sxy = rng.uniform_in(&config.spacing_xy_mm) * REFERENCE_SHAPE_XY as f64 / n as f64;
        let spacing = [sxy, sxy, config.slice_spacing_mm];
        let half_fov = sxy * n as f64 / 2.0;
        let length = (depth - 1) as f64 * config.slice_spacing_mm;

        // Body: how much of the field of view the patient fills, and how round the chest is.
        let rx = half_fov * rng.uniform(0.70, 0.90);
        let ry = rx * rng.uniform(0.62, 0.78);
        let body = Ellipse {
            cx: rng.uniform(-0.03, 0.03) * half_fov,
            cy: rng.uniform(-0.06, 0.02) * half_fov,
            rx,
            ry,
        };
        let fat_mm = ry * rng.uniform(0.04, 0.15);
        let soft_hu = rng.uniform(35.0, 50.0);
        let fat_hu = rng.uniform(-115.0, -85.0);
        let table_gap = rng.uniform(4.0, 25.0);
        let table = Ellipse {
            cx: 0.0,
            cy: body.cy + ry + table_gap + 2.0,
            rx: half_fov * 0.85,
            ry: 2.0,
        };

        // Lungs: size relative to the chest varies per scan; bases wider and lower than apices.
        let lung_scale = rng.uniform(0.80, 1.08);
        let wall = fat_mm + 0.05 * rx;
        let z_center = length * rng.uniform(0.40, 0.52);
        let below = length * rng.uniform(0.40, 0.52);
        let above = length * rng.uniform(0.45, 0.60);
        let lung_hu = rng.uniform(-880.0, -820.0);
        let gradient = rng.uniform(0.1, 0.4);
        let mut lungs = [0usize, 1].map(|side| {
            let sign = if side == 0 { -1.0 } else { 1.0 };
            let center_x = body.cx + sign * 0.48 * rx;
            let half_width = (0.34 * rx * lung_scale).min(rx - wall - 0.48 * rx);
            Lung {
                section: Ellipse {
                    cx: center_x,
                    cy: body.cy + 0.02 * ry,
                    rx: half_width,
                    ry: 0.72 * ry * lung_scale.min(1.0),
                },
                z_center,
                below,
                above,
                hu: lung_hu,
                hu_per_mm_posterior: gradient,
            }
        });
        // The left lung (positive x) gives room to the heart.
        lungs[1].section.rx *= 0.93;

        let heart_hu = soft_hu + rng.uniform(-5.0, 10.0);
        let heart = Ellipsoid {
            center: [
                body.cx + 0.14 * rx,
                body.cy - 0.28 * ry,
                z_center - 0.35 * below,
            ],
            radii: [0.30 * rx, 0.36 * ry, 0.45 * below.max(1.0)],
            cos: 1.0,
            sin: 0.0,
        };

        let bone_scale = ry / 100.0;
        let vertebral_body = Ellipse {
            cx: body.cx,
            cy: body.cy + 0.38 * ry,
            rx: 0.22 * ry,
            ry: 0.14 * ry,
        };
        let canal = Ellipse {
            cx: body.cx,
            cy: vertebral_body.cy + vertebral_body.ry + 0.075 * ry,
            rx: 0.07 * ry,
            ry: 0.065 * ry,
        };
        let spinous = Ellipse {
            cx: body.cx,
            cy: canal.cy + 0.17 * ry,
            rx: 0.045 * ry,
            ry: 0.09 * ry,
        };
        let cortical_hu = rng.uniform(800.0, 1000.0);
        let cancellous_hu = rng.uniform(400.0, 500.0);
        let disc_phase = rng.uniform(0.0, VERTEBRA_PITCH_MM);

        let rib_count = rng.integer_in(&(8..=12));
        let rib_ring = Ellipse {
            rx: rx - fat_mm - 0.04 * rx,
            ry: ry - fat_mm - 0.04 * ry,
            ..body
        };
        let ribs = (0..rib_count)
            .map(|i| {
                // Spread over both sides, skipping the sternum (anterior) and the spine (posterior).
                let side = if i % 2 == 0 { 1.0 } else { -1.0 };
                let along = (i / 2) as f64 / rib_count.div_ceil(2) as f64;
                let sin = (-0.95 + 1.9 * along + rng.uniform(-0.05, 0.05)).clamp(-0.97, 0.97);
                let cos = (1.0 - sin * sin).sqrt();
                let radius = 5.0 * bone_scale + 1.0;
                Rib {
                    section: Ellipse {
                        cx: rib_ring.cx + side * rib_ring.rx * cos,
                        cy: rib_ring.cy + rib_ring.ry * sin,
                        rx: radius * 1.4,
                        ry: radius,
                    },
                    phase: rng.uniform(0.0, RIB_PITCH_MM),
                }
            })
            .collect();
        let rib_hu = rng.uniform(550.0, 750.0);

        let vessels = lungs
            .iter()
            .enumerate()
            .flat_map(|(side, lung)| vessels(&mut rng, lung, side))
            .collect();
        let vessel_hu = rng.uniform(30.0, 50.0);
        let noise_sigma = rng.uniform_in(&config.noise_sigma_hu);

        let lesions = match class {
            ScanClass::Normal => Vec::new(),
            ScanClass::Abnormal => ground_glass(&mut Rng::new(seed ^ LESION_STREAM), &lungs),
        };

        Self {
            seed,
            n,
            depth,
            spacing,
            body,
            fat_mm,
            soft_hu,
            fat_hu,
            table,
            lungs,
            heart_hu,
            heart,
            vertebral_body,
            canal,
            spinous,
            cortical_hu,
            cancellous_hu,
            disc_phase,
            ribs,
            rib_hu,
            vessels,
            vessel_hu,
            lesions,
            noise_sigma,
        }
    }

    fn into_volume(self, data: Vec<f32>) -> Result<Volume, SynthError> {
        let shape = [self.n, self.n, self.depth];
        let mut volume = Volume::new(shape, data).map_err(|e| SynthError::InvalidConfig {
            reason: e.to_string(),
        })?;
        let [sx, sy, sz] = self.spacing;
        let half = (self.n - 1) as f64 / 2.0;
        let affine: Affine = [
            [-sx, 0.0, 0.0, sx * half],
            [0.0, -sy, 0.0, sy * half],
            [0.0, 0.0, sz, -sz * (self.depth - 1) as f64 / 2.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        volume.spacing = self.spacing;
        volume.affine = affine;
        Ok(volume)
    }

    /// Voxel centre → mm along x (or y).
    fn mm(&self, i: usize) -> f64 {
        (i as f64 - (self.n - 1) as f64 / 2.0) * self.spacing[0]
    }

    /// Voxel indices whose centres lie in `[lo, hi]` mm.
    fn index_span(&self, lo: f64, hi: f64) -> Range<usize> {
        let c = (self.n - 1) as f64 / 2.0;
        let first = (lo / self.spacing[0] + c).ceil().max(0.0);
        let last = (hi / self.spacing[0] + c).floor().min((self.n - 1) as f64);
        if last < first {
            0..0
        } else {
            first as usize..last as usize + 1
        }
    }

    /// Calls `paint(row_slice, row_tissue, x_range, y_mm)` for each row the ellipse covers.
    fn fill_ellipse(
        &self,
        e: &Ellipse,
        out: &mut [f32],
        tissue: &mut [Tissue],
        mut paint: impl FnMut(&mut [f32], &mut [Tissue], f64),
    ) {
        let n = self.n;
        for y in self.index_span(e.cy - e.ry, e.cy + e.ry) {
            let y_mm = self.mm(y);
            if let Some((lo, hi)) = e.row_extent(y_mm) {
                let xs = self.index_span(lo, hi);
                let row = y * n;
                paint(
                    &mut out[row + xs.start..row + xs.end],
                    &mut tissue[row + xs.start..row + xs.end],
                    y_mm,
                );
            }
        }
    }

    fn fill_constant(
        &self,
        e: &Ellipse,
        hu: f64,
        label: Tissue,
        out: &mut [f32],
        tissue: &mut [Tissue],
    ) {
        self.fill_ellipse(e, out, tissue, |values, labels, _| {
            values.fill(hu as f32);
            labels.fill(label);
        });
    }

    /// Renders slice `z` into `out` (`n × n`, `x` fastest), using `tissue` for the labels.
    fn render_slice(&self, z: usize, out: &mut [f32], tissue: &mut [Tissue]) {
        let z_mm = z as f64 * self.spacing[2];
        out.fill(AIR_HU);
        tissue.fill(Tissue::Air);

        self.fill_constant(&self.table, 100.0, Tissue::Table, out, tissue);
        self.fill_constant(&self.body, self.fat_hu, Tissue::Fat, out, tissue);
        let inner = Ellipse {
            rx: self.body.rx - self.fat_mm,
            ry: self.body.ry - self.fat_mm,
            ..self.body
        };
        self.fill_constant(&inner, self.soft_hu, Tissue::SoftTissue, out, tissue);

        let mut any_lung = false;
        for lung in &self.lungs {
            if let Some(s) = lung.profile(z_mm) {
                any_lung = true;
                self.fill_ellipse(&lung.section.scaled(s), out, tissue, |values, labels, y| {
                    let hu = lung.hu + lung.hu_per_mm_posterior * (y - lung.section.cy);
                    values.fill(hu as f32);
                    labels.fill(Tissue::Lung);
                });
            }
        }
        if let Some((_, tz2)) = self.heart.slice_at(z_mm) {
            let s = (1.0 - tz2).sqrt();
            let section = Ellipse {
                cx: self.heart.center[0],
                cy: self.heart.center[1],
                rx: self.heart.radii[0] * s,
                ry: self.heart.radii[1] * s,
            };
            self.fill_constant(&section, self.heart_hu, Tissue::SoftTissue, out, tissue);
        }
        if any_lung {
            self.paint_lesions(z_mm, out, tissue);
            self.paint_vessels(z_mm, out, tissue);
        }
        self.paint_spine(z_mm, out, tissue);
        if any_lung {
            for rib in &self.ribs {
                if (z_mm + rib.phase).rem_euclid(RIB_PITCH_MM) < RIB_CROSSING_MM {
                    self.fill_constant(&rib.section, self.rib_hu, Tissue::Bone, out, tissue);
                }
            }
        }
        self.add_noise(z, out, tissue);
    }

    fn paint_lesions(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) {
        let n = self.n;
        for lesion in &self.lesions {
            let Some((half, tz2)) = lesion.shape.slice_at(z_mm) else {
                continue;
            };
            let [cx, cy, _] = lesion.shape.center;
            let xs = self.index_span(cx - half, cx + half);
            for y in self.index_span(cy - half, cy + half) {
                let y_mm = self.mm(y);
                for x in xs.clone() {
                    let i = y * n + x;
                    if !matches!(tissue[i], Tissue::Lung | Tissue::GroundGlass) {
                        continue;
                    }
                    let r2 = lesion.shape.norm2(self.mm(x), y_mm, tz2);
                    if r2 < 1.0 {
                        // A plateau with a soft rim, like hazy ground glass.
                        let w = (1.6 * (1.0 - r2)).min(1.0) as f32;
                        out[i] += w * (lesion.hu as f32 - out[i]);
                        tissue[i] = Tissue::GroundGlass;
                    }
                }
            }
        }
    }

    fn paint_vessels(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) {
        let n = self.n;
        for vessel in &self.vessels {
            let Some([x0, x1, y0, y1]) = vessel.bounds_at(z_mm) else {
                continue;
            };
            let r2 = vessel.radius * vessel.radius;
            let xs = self.index_span(x0, x1);
            for y in self.index_span(y0, y1) {
                let y_mm = self.mm(y);
                for x in xs.clone() {
                    let i = y * n + x;
                    if matches!(tissue[i], Tissue::Lung | Tissue::GroundGlass)
                        && vessel.distance2([self.mm(x), y_mm, z_mm]) < r2
                    {
                        out[i] = self.vessel_hu as f32;
                        tissue[i] = Tissue::Vessel;
                    }
                }
            }
        }
    }

    fn paint_spine(&self, z_mm: f64, out: &mut [f32], tissue: &mut [Tissue]) {
        let vb = &self.vertebral_body;
        if (z_mm + self.disc_phase).rem_euclid(VERTEBRA_PITCH_MM) < DISC_MM {
            self.fill_constant(vb, self.soft_hu + 30.0, Tissue::SoftTissue, out, tissue);
        } else {
            self.fill_constant(vb, self.cortical_hu, Tissue::Bone, out, tissue);
            let shell = 2.0_f64.max(self.spacing[0]);
            let core = Ellipse {
                rx: vb.rx - shell,
                ry: vb.ry - shell,
                ..*vb
            };
            self.fill_constant(&core, self.cancellous_hu, Tissue::Bone, out, tissue);
        }
        // The neural arch: a bony ring around the canal, and the spinous process behind it.
        let arch = self.canal.scaled(1.6);
        self.fill_constant(&arch, self.cortical_hu * 0.8, Tissue::Bone, out, tissue);
        self.fill_constant(
            &self.spinous,
            self.cortical_hu * 0.8,
            Tissue::Bone,
            out,
            tissue,
        );
        self.fill_constant(
            &self.canal,
            self.soft_hu - 15.0,
            Tissue::SoftTissue,
            out,
            tissue,
        );
    }

    fn add_noise(&self, z: usize, out: &mut [f32], tissue: &[Tissue]) {
        let mut rng = Rng::new(self.seed ^ NOISE_STREAM ^ mix64(z as u64));
        let sigma = self.noise_sigma as f32;
        for (value, &label) in out.iter_mut().zip(tissue) {
            if label != Tissue::Air {
                *value = (*value + sigma * rng.approx_normal()).round();
            }
        }
    }
}

/// Pulmonary vessels: trees from the hilum for the large vessels, plus a field of short twigs
/// scattered through the lung for the small peripheral ones (at 8 mm slice spacing these look like
/// the dots and short lines of a real scan without growing thousands of branches).
fn vessels(rng: &mut Rng, lung: &Lung, side: usize) -> Vec<Segment> {
    let sign = if side == 0 { -1.0 } else { 1.0 };
    let s = lung.section;
    let hilum = [s.cx - sign * 0.55 * s.rx, s.cy, lung.z_center];
    let mut segments = vessel_trees(rng, lung, hilum, sign);
    // About one twig per 1.5 cm³ of lung.
    let twigs = (lung.volume() / 1500.0) as usize;
    segments.reserve(twigs);
    while segments.len() < segments.capacity() {
        // A uniform point in the lung's normalised ball, by rejection.
        let p = [
            rng.uniform(-1.0, 1.0),
            rng.uniform(-1.0, 1.0),
            rng.uniform(-1.0, 1.0),
        ];
        let r2 = dot(p, p);
        if r2 > 1.0 {
            continue;
        }
        let z = lung.z_center + p[2] * if p[2] < 0.0 { lung.below } else { lung.above };
        let Some(profile) = lung.profile(z) else {
            continue;
        };
        let a = [
            s.cx + p[0] * s.rx * profile,
            s.cy + p[1] * s.ry * profile,
            z,
        ];
        // Thinner toward the periphery, pointing away from the hilum.
        let radius = 1.8 - 1.2 * r2.sqrt() + rng.uniform(-0.2, 0.2);
        let dir = normalize(add(normalize(sub(a, hilum)), scale(rng.direction(), 0.6)));
        let length = rng.uniform(8.0, 20.0);
        segments.push(Segment {
            a,
            b: add(a, scale(dir, length)),
            radius,
        });
    }
    segments
}

/// Large vessels: trunks from `hilum` aim at points spread through the lung (upper, middle and
/// lower zones, front and back) and branch in two for four more generations; lengths shrink by
/// 0.75 and radii by 0.72 per generation, and branch directions jitter around their parent's.
fn vessel_trees(rng: &mut Rng, lung: &Lung, hilum: [f64; 3], sign: f64) -> Vec<Segment> {
    const TRUNKS: usize = 6;
    const GENERATIONS: usize = 5;
    // Lengths sum to the trunk's reach: Σ 0.75^g for g < 5 ≈ 3.05.
    const LENGTH_SUM: f64 = 3.05;
    let s = lung.section;
    let radius0 = rng.uniform(3.5, 5.0);
    let mut segments = Vec::with_capacity(TRUNKS * ((1 << GENERATIONS) - 1));
    for trunk in 0..TRUNKS {
        let zone = [0.75, 0.0, -0.75][trunk % 3];
        let front_back = if trunk < 3 { -0.5 } else { 0.5 };
        let target = [
            s.cx + sign * rng.uniform(0.0, 0.6) * s.rx,
            s.cy + (front_back + rng.uniform(-0.2, 0.2)) * s.ry,
            lung.z_center
                + zone * if zone < 0.0 { lung.below } else { lung.above }
                + rng.uniform(-0.1, 0.1) * lung.above,
        ];
        let reach = sub(target, hilum);
        let length0 = dot(reach, reach).sqrt() / LENGTH_SUM;
        let mut frontier = vec![(hilum, normalize(reach))];
        let (mut length, mut radius) = (length0, radius0);
        for _ in 0..GENERATIONS {
            let mut next = Vec::with_capacity(frontier.len() * 2);
            for (start, dir) in frontier {
                let end = add(start, scale(dir, length));
                segments.push(Segment {
                    a: start,
                    b: end,
                    radius,
                });
                for _ in 0..2 {
                    let jitter = scale(rng.direction(), 0.7);
                    next.push((end, normalize(add(dir, jitter))));
                }
            }
            frontier = next;
            length *= 0.75;
            radius *= 0.72;
        }
    }
    segments
}

/// Summed lesion volume as a fraction of the lung volume, drawn uniformly per scan.
const GROUND_GLASS_TARGET: (f64, f64) = (0.35, 3.0);
/// Ellipsoids per scan at most (bounds the generation time).
const MAX_GROUND_GLASS_LESIONS: usize = 150;

/// Ground-glass clusters, mostly peripheral, added until their summed volume reaches a drawn
/// multiple of the lung volume, [`GROUND_GLASS_TARGET`]: overlap and clipping at the lung border
/// leave them covering roughly 20–65 % of the lungs, the involvement of MosMedData's `CT-2`
/// (25–50 %) and `CT-3` (50–75 %) scans that make up the seed's `CT-23` class.
fn ground_glass(rng: &mut Rng, lungs: &[Lung; 2]) -> Vec<Lesion> {
    let lung_volume: f64 = lungs.iter().map(Lung::volume).sum();
    let target = lung_volume * rng.uniform(GROUND_GLASS_TARGET.0, GROUND_GLASS_TARGET.1);
    let mut lesions = Vec::new();
    let mut total = 0.0;
    while total < target && lesions.len() < MAX_GROUND_GLASS_LESIONS {
        let lung = &lungs[rng.integer_in(&(0..=1))];
        let t = rng.uniform(-0.7, 0.7);
        let z = lung.z_center + t * if t < 0.0 { lung.below } else { lung.above };
        let s = lung.profile(z).unwrap_or(0.5);
        let rho = rng.uniform(0.40, 0.85);
        let (cos, sin) = rng.unit_circle();
        let center = [
            lung.section.cx + rho * cos * lung.section.rx * s,
            lung.section.cy + rho * sin * lung.section.ry * s,
            z,
        ];
        let size = rng.uniform(15.0, 40.0);
        let hu = rng.uniform(-520.0, -330.0);
        for _ in 0..rng.integer_in(&(1..=3)) {
            let offset = scale(rng.direction(), rng.uniform(0.0, 0.6) * size);
            let (cos, sin) = rng.unit_circle();
            let radii = [
                size * rng.uniform(0.6, 1.0),
                size * rng.uniform(0.6, 1.0),
                size * rng.uniform(0.6, 1.1),
            ];
            total += 4.0 / 3.0 * std::f64::consts::PI * radii[0] * radii[1] * radii[2];
            lesions.push(Lesion {
                shape: Ellipsoid {
                    center: add(center, offset),
                    radii,
                    cos,
                    sin,
                },
                hu: hu + rng.uniform(-25.0, 25.0),
            });
        }
    }
    lesions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approx_normal_has_unit_variance_and_bounded_tails() {
        let mut rng = Rng::new(7);
        let n = 200_000;
        let samples: Vec<f64> = (0..n).map(|_| f64::from(rng.approx_normal())).collect();
        let mean = samples.iter().sum::<f64>() / n as f64;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        assert!(samples.iter().all(|s| s.abs() <= 3.47));
    }

    #[test]
    fn integer_in_covers_inclusive_range() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            seen[rng.integer_in(&(3..=6)) - 3] = true;
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn segment_distance_and_bounds() {
        let s = Segment {
            a: [0.0, 0.0, 0.0],
            b: [10.0, 0.0, 10.0],
            radius: 1.0,
        };
        assert!(s.distance2([5.0, 0.0, 5.0]) < 1e-12);
        assert!((s.distance2([-3.0, 4.0, 0.0]) - 25.0).abs() < 1e-9);
        let [x0, x1, ..] = s.bounds_at(5.0).unwrap();
        assert!((x0 - 3.0).abs() < 1e-9 && (x1 - 7.0).abs() < 1e-9);
        assert!(s.bounds_at(11.5).is_none());
    }
}
