//! Random affine transform: rotation about the x, y and z axes, scaling (isotropic or per axis)
//! and translation, about the volume's centre and in millimetres (the voxel spacing is honoured),
//! resampled like `scipy.ndimage.affine_transform` with `order=1` (linear) or `order=3` (cubic
//! B-spline) and `mode='constant'` (`cval=0`) or `mode='nearest'` (MONAI's `RandAffine`,
//! TorchIO's `RandomAffine`).

use std::fmt;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    Augment, SettingError, fires, recycle, require, require_probability, symmetric, take_buffer,
};
use crate::Volume;
use crate::rng::SplitMix64;
use crate::spline::{Lanes, cos_degrees, cubic_sample, inside, mirror_index, prefilter_line, sin_degrees};

const KIND: &str = "random_affine";

/// How values between voxel centres are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Trilinear (`order=1`): fast, never overshoots.
    Linear,
    /// Cubic B-spline (`order=3`, prefiltered): sharper, overshoots at edges, ~10× slower.
    Cubic,
}

/// What the volume is taken to hold outside its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Zero (scipy's `mode='constant'`, `cval=0`): air after preprocessing.
    Constant,
    /// The nearest edge voxel (scipy's `mode='nearest'`).
    Nearest,
}

/// With probability `probability`, rotates the volume about its centre by angles uniform in
/// `[−rotate_deg[k], rotate_deg[k]]` about axis `k` (x, then y, then z), scales it by factors
/// uniform in `[1 − scale[k], 1 + scale[k]]` (one factor, from `scale[0]`, when `isotropic`) and
/// moves it by up to `translate_mm[k]` millimetres along each axis; see [`AffineDraw`] for the
/// exact map and [`affine_resample`] for the resampling. Takes ten draws (probability, three
/// angles, three scales, three translations). Recorded as `{"kind": "random_affine",
/// "rotate_deg": [5.0, 5.0, 15.0], "scale": [0.1, 0.1, 0.1], "isotropic": true,
/// "translate_mm": [4.0, 4.0, 4.0], "interpolation": "linear", "padding": "constant",
/// "probability": 1.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AffineSettings")]
pub struct RandomAffine {
    /// Largest rotation about x, y and z, degrees, each in `[0, 180]`.
    rotate_deg: [f64; 3],
    /// Largest relative scale change along x, y and z, each in `[0, 1)`.
    scale: [f64; 3],
    /// One scale factor for all axes (drawn from `scale[0]`).
    isotropic: bool,
    /// Largest translation along x, y and z, millimetres, each finite and `≥ 0`.
    translate_mm: [f64; 3],
    /// Linear or cubic resampling.
    interpolation: Interpolation,
    /// Zero or nearest-voxel values outside the grid.
    padding: Padding,
    /// Chance that the transform acts on a sample, in `[0, 1]`.
    probability: f64,
}

/// [`RandomAffine`] as written, before its check; left-out settings take the defaults.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AffineSettings {
    rotate_deg: [f64; 3],
    scale: [f64; 3],
    isotropic: bool,
    translate_mm: [f64; 3],
    interpolation: Interpolation,
    padding: Padding,
    probability: f64,
}

impl Default for AffineSettings {
    fn default() -> Self {
        let RandomAffine {
            rotate_deg,
            scale,
            isotropic,
            translate_mm,
            interpolation,
            padding,
            probability,
        } = RandomAffine::default();
        Self {
            rotate_deg,
            scale,
            isotropic,
            translate_mm,
            interpolation,
            padding,
            probability,
        }
    }
}

impl TryFrom<AffineSettings> for RandomAffine {
    type Error = SettingError;

    fn try_from(s: AffineSettings) -> Result<Self, SettingError> {
        for angle in s.rotate_deg {
            require(
                (0.0..=180.0).contains(&angle),
                KIND,
                "rotate_deg",
                angle,
                "must be between 0 and 180 degrees",
            )?;
        }
        for scale in s.scale {
            require(
                (0.0..1.0).contains(&scale),
                KIND,
                "scale",
                scale,
                "must be at least 0 and below 1",
            )?;
        }
        for shift in s.translate_mm {
            require(
                shift.is_finite() && shift >= 0.0,
                KIND,
                "translate_mm",
                shift,
                "must be a finite number of millimetres, at least 0",
            )?;
        }
        require_probability(s.probability, KIND, "probability")?;
        Ok(Self {
            rotate_deg: s.rotate_deg,
            scale: s.scale,
            isotropic: s.isotropic,
            translate_mm: s.translate_mm,
            interpolation: s.interpolation,
            padding: s.padding,
            probability: s.probability,
        })
    }
}

/// ±5° about x and y, ±15° about z (in-plane, as the seed's rotation), ±10 % isotropic scale,
/// ±4 mm translation, linear, zero padding, always.
impl Default for RandomAffine {
    fn default() -> Self {
        Self {
            rotate_deg: [5.0, 5.0, 15.0],
            scale: [0.1; 3],
            isotropic: true,
            translate_mm: [4.0; 3],
            interpolation: Interpolation::Linear,
            padding: Padding::Constant,
            probability: 1.0,
        }
    }
}

/// The parameters of one affine draw: the map it describes takes a point `p` (millimetres,
/// relative to the volume's centre) to `R · S · p + t`, where `S = diag(scales)`,
/// `R = Rz(γ) · Ry(β) · Rx(α)` (right-handed rotations about the `[x, y, z]` axes by
/// `angles_deg = [α, β, γ]`) and `t = translation_mm`. The output at `q` is the input at the
/// preimage `S⁻¹ Rᵀ (q − t)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineDraw {
    /// Rotation about x, y and z, degrees.
    pub angles_deg: [f64; 3],
    /// Scale factors along x, y and z (positive).
    pub scales: [f64; 3],
    /// Translation along x, y and z, millimetres.
    pub translation_mm: [f64; 3],
}

/// A 3×3 matrix, row-major.
pub type Matrix3 = [[f64; 3]; 3];

fn multiply(a: &Matrix3, b: &Matrix3) -> Matrix3 {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

impl AffineDraw {
    /// The rotation `R = Rz · Ry · Rx` (degrees through [`cos_degrees`], exact at right angles).
    pub fn rotation(&self) -> Matrix3 {
        let [a, b, g] = self.angles_deg;
        let (ca, sa) = (cos_degrees(a), sin_degrees(a));
        let (cb, sb) = (cos_degrees(b), sin_degrees(b));
        let (cg, sg) = (cos_degrees(g), sin_degrees(g));
        let rx = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
        let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
        let rz = [[cg, -sg, 0.0], [sg, cg, 0.0], [0.0, 0.0, 1.0]];
        multiply(&rz, &multiply(&ry, &rx))
    }

    /// The `(matrix, offset)` that [`affine_resample`] takes for a volume of `shape` voxels with
    /// `spacing` (mm): output voxel `o` samples input voxel `matrix · o + offset`. With
    /// `D = diag(spacing)` and `c = (shape − 1) / 2`: `matrix = D⁻¹ S⁻¹ Rᵀ D` and
    /// `offset = c − matrix · c − D⁻¹ S⁻¹ Rᵀ t`.
    pub fn sampling(&self, shape: [usize; 3], spacing: [f64; 3]) -> (Matrix3, [f64; 3]) {
        let r = self.rotation();
        let (s, d, t) = (self.scales, spacing, self.translation_mm);
        let centre = shape.map(|n| (n as f64 - 1.0) / 2.0);
        let matrix: Matrix3 =
            std::array::from_fn(|i| std::array::from_fn(|j| r[j][i] * d[j] / (s[i] * d[i])));
        let offset = std::array::from_fn(|i| {
            let turned: f64 = (0..3).map(|j| matrix[i][j] * centre[j]).sum();
            let moved: f64 = (0..3).map(|j| r[j][i] * t[j]).sum::<f64>() / (s[i] * d[i]);
            centre[i] - turned - moved
        });
        (matrix, offset)
    }
}

impl RandomAffine {
    /// The interpolation used.
    pub fn interpolation(&self) -> Interpolation {
        self.interpolation
    }

    /// The padding used.
    pub fn padding(&self) -> Padding {
        self.padding
    }

    /// `Some(draw)` for the next ten draws of `rng`, `None` when it does not act.
    pub fn draw(&self, rng: &mut SplitMix64) -> Option<AffineDraw> {
        let acts = fires(rng, self.probability);
        let angles_deg = self.rotate_deg.map(|r| symmetric(rng, r));
        let mut scales = self.scale.map(|s| 1.0 + symmetric(rng, s));
        if self.isotropic {
            scales = [scales[0]; 3];
        }
        let translation_mm = self.translate_mm.map(|t| symmetric(rng, t));
        acts.then_some(AffineDraw {
            angles_deg,
            scales,
            translation_mm,
        })
    }

    /// `volume` under the drawn map: [`affine_resample`] with [`AffineDraw::sampling`] for the
    /// volume's shape and spacing, with this transform's interpolation and padding.
    pub fn apply_drawn(&self, volume: &Volume, draw: &AffineDraw) -> Volume {
        let (matrix, offset) = draw.sampling(volume.shape(), volume.spacing);
        affine_resample(volume, &matrix, offset, self.interpolation, self.padding)
    }
}

impl Augment for RandomAffine {
    fn apply(&self, volume: &Volume, rng: &mut SplitMix64) -> Volume {
        match self.draw(rng) {
            Some(draw) => self.apply_drawn(volume, &draw),
            None => volume.clone(),
        }
    }

    fn apply_owned(&self, volume: Volume, rng: &mut SplitMix64) -> Volume {
        match self.draw(rng) {
            Some(draw) => {
                let out = self.apply_drawn(&volume, &draw);
                recycle(volume.into_data());
                out
            }
            None => volume,
        }
    }
}

/// `random affine (rotate ±5, 5, 15°, scale ±10% isotropic, translate ±4, 4, 4 mm, linear,
/// constant padding, p 1)`.
impl fmt::Display for RandomAffine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: [f64; 3]| v.map(|x| x.to_string()).join(", ");
        let scale = if self.isotropic {
            format!("±{}% isotropic", self.scale[0] * 100.0)
        } else {
            format!("±{}%", list(self.scale.map(|s| s * 100.0)))
        };
        write!(
            f,
            "random affine (rotate ±{}°, scale {scale}, translate ±{} mm, {}, {} padding, p {})",
            list(self.rotate_deg),
            list(self.translate_mm),
            match self.interpolation {
                Interpolation::Linear => "linear",
                Interpolation::Cubic => "cubic",
            },
            match self.padding {
                Padding::Constant => "constant",
                Padding::Nearest => "nearest",
            },
            self.probability
        )
    }
}

/// The voxels added on every side before the cubic prefilter with nearest padding, as scipy does
/// (`_prepad_for_spline_filter`): the spline then sees the edge values continue.
const NEAREST_PAD: usize = 12;

/// `scipy.ndimage.affine_transform(volume, matrix, offset, order, mode, cval=0)` on a float32
/// volume (`[x, y, z]`): output voxel `o` is the input interpolated at `matrix · o + offset`
/// (voxel indices), the coordinate summed in scipy's order. With [`Padding::Constant`] an output
/// whose source lies outside `[0, n − 1]` on any axis is 0; with [`Padding::Nearest`] the source
/// is clamped onto the grid. Taps beyond the edge are mirrored (scipy's spline boundary). Cubic
/// interpolation prefilters the whole volume in `f64` first. Output planes are computed in
/// parallel; shape and geometry are kept.
pub fn affine_resample(
    volume: &Volume,
    matrix: &Matrix3,
    offset: [f64; 3],
    interpolation: Interpolation,
    padding: Padding,
) -> Volume {
    let shape = volume.shape();
    let [nx, ny, _] = shape;
    let mut out = take_buffer(volume.len());
    if !out.is_empty() {
        let source = |o: [usize; 3]| -> [f64; 3] {
            let o = o.map(|v| v as f64);
            std::array::from_fn(|k| {
                let mut c = 0.0;
                for (m, ok) in matrix[k].iter().zip(o) {
                    c += ok * m;
                }
                c + offset[k]
            })
        };
        // Where an output samples along an axis of `n` voxels (`None`: the constant), before
        // any prepadding: with nearest padding, scipy clamps onto the grid it interpolates,
        // which for cubic splines includes the `pad` edge voxels added on each side.
        let placed = |c: f64, n: usize, pad: usize| -> Option<f64> {
            match padding {
                Padding::Constant => inside(c, n).then_some(c),
                Padding::Nearest if c.is_nan() => None,
                Padding::Nearest => Some(c.clamp(-(pad as f64), (n - 1 + pad) as f64)),
            }
        };
        match interpolation {
            Interpolation::Linear => {
                let data = volume.data();
                out.par_chunks_mut(nx * ny)
                    .enumerate()
                    .for_each(|(z, plane)| linear_plane(data, shape, matrix, offset, padding, z, plane));
            }
            Interpolation::Cubic => {
                let pad = match padding {
                    Padding::Constant => 0,
                    Padding::Nearest => NEAREST_PAD,
                };
                let (coefficients, padded) = cubic_coefficients(volume, pad);
                out.par_chunks_mut(nx * ny).enumerate().for_each(|(z, plane)| {
                    for (y, row) in plane.chunks_exact_mut(nx).enumerate() {
                        for (x, o) in row.iter_mut().enumerate() {
                            let c = source([x, y, z]);
                            let (Some(cx), Some(cy), Some(cz)) = (
                                placed(c[0], shape[0], pad),
                                placed(c[1], shape[1], pad),
                                placed(c[2], shape[2], pad),
                            ) else {
                                // The buffer may hold an earlier volume's values.
                                *o = 0.0;
                                continue;
                            };
                            let p = pad as f64;
                            *o = sample_cubic3(&coefficients, padded, [cx + p, cy + p, cz + p]) as f32;
                        }
                    }
                });
            }
        }
    }
    volume
        .with_data(shape, out)
        .expect("output has the input's shape")
}

/// Output plane `z` of the linear [`affine_resample`]. Each sample's coordinate is summed as in
/// the general per-voxel computation (`((x·m₀ + y·m₁) + z·m₂) + offset`, in `f64`), so every
/// output is inside, outside or on the grid's edge exactly as scipy decides. Samples whose eight
/// taps all lie inside the grid (nearly all of them) take a fast path, [`interior_sample`]:
/// three linear interpolations in `f32` instead of scipy's sum of eight triple products in
/// `f64`. The two differ by a few `f32` ulps (≤ 1e-6 on `[0, 1]` values, against a 1e-5 parity
/// bound); the fast path, eight samples at a time with AVX2 where the CPU has it, is what brings
/// a 128×128×64 affine under the augmentation budget (bench/augment.sh). Samples at the edge take
/// scipy's mirrored-tap sum in `f64`.
fn linear_plane(
    data: &[f32],
    shape: [usize; 3],
    matrix: &Matrix3,
    offset: [f64; 3],
    padding: Padding,
    z: usize,
    plane: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, the only requirement of `linear_plane_avx2`.
        unsafe { linear_plane_avx2(data, shape, matrix, offset, padding, z, plane) };
        return;
    }
    linear_plane_portable(data, shape, matrix, offset, padding, z, plane);
}

/// [`linear_plane_portable`] compiled for AVX2 (the coordinates four lanes at a time).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn linear_plane_avx2(
    data: &[f32],
    shape: [usize; 3],
    matrix: &Matrix3,
    offset: [f64; 3],
    padding: Padding,
    z: usize,
    plane: &mut [f32],
) {
    linear_plane_portable(data, shape, matrix, offset, padding, z, plane);
}

/// The body of [`linear_plane`], inlined into both of its variants.
#[inline(always)]
fn linear_plane_portable(
    data: &[f32],
    shape: [usize; 3],
    matrix: &Matrix3,
    offset: [f64; 3],
    padding: Padding,
    z: usize,
    plane: &mut [f32],
) {
    let [nx, ny, nz] = shape;
    let place = |c: f64, n: usize| -> Option<f64> {
        match padding {
            Padding::Constant => inside(c, n).then_some(c),
            Padding::Nearest if c.is_nan() => None,
            Padding::Nearest => Some(c.clamp(0.0, n as f64 - 1.0)),
        }
    };
    let grid = Interior::new(shape, padding);
    let zf = z as f64;
    let zm = [zf * matrix[0][2], zf * matrix[1][2], zf * matrix[2][2]];
    // One row's coordinates, axis by axis, so their computation vectorizes; `x` as `f64` comes
    // from a table because converting a `usize` does not (it was a third of the time).
    let xs: Vec<f64> = (0..nx).map(|x| x as f64).collect();
    let mut coordinates = [vec![0.0f64; nx], vec![0.0f64; nx], vec![0.0f64; nx]];
    for (y, row) in plane.chunks_exact_mut(nx).enumerate() {
        let yf = y as f64;
        for (k, axis) in coordinates.iter_mut().enumerate() {
            let (m, ym, zm, o) = (matrix[k][0], yf * matrix[k][1], zm[k], offset[k]);
            for (c, &xf) in axis.iter_mut().zip(&xs) {
                *c = ((xf * m + ym) + zm) + o;
            }
        }
        let [cxs, cys, czs] = &coordinates;
        let voxel = |x: usize| -> f32 {
            let c = [cxs[x], cys[x], czs[x]];
            if let Some(value) = grid.sample(data, c) {
                return value;
            }
            match (place(c[0], nx), place(c[1], ny), place(c[2], nz)) {
                (Some(cx), Some(cy), Some(cz)) => sample_linear(data, shape, [cx, cy, cz]) as f32,
                _ => 0.0,
            }
        };
        interior_row(data, &grid, [cxs, cys, czs], row, &voxel);
    }
}

/// A grid's strides and the bounds of the coordinates whose eight linear taps are all inside it
/// (`0 ≤ c < n − 1` per axis).
struct Interior {
    /// Elements between neighbours along y and along z.
    strides: [usize; 2],
    /// `n − 1` per axis, as `f64`.
    last: [f64; 3],
    /// Whether every voxel index fits an `i32` (the AVX2 gather's index type).
    small: bool,
    /// Whether samples outside the grid are 0 ([`Padding::Constant`]).
    zero_outside: bool,
}

impl Interior {
    fn new([nx, ny, nz]: [usize; 3], padding: Padding) -> Self {
        Self {
            strides: [nx, nx * ny],
            last: [nx, ny, nz].map(|n| n as f64 - 1.0),
            small: nx * ny * nz < i32::MAX as usize,
            zero_outside: padding == Padding::Constant,
        }
    }

    /// The trilinear sample at `c` when its eight taps are inside the grid, `None` otherwise (NaN
    /// included): `a + t·(b − a)` along x, then y, then z, in `f32`, with `t` the coordinate's
    /// fraction rounded to `f32`. [`interior_row_avx2`] computes exactly the same operations.
    #[inline(always)]
    fn sample(&self, data: &[f32], c: [f64; 3]) -> Option<f32> {
        let interior = (0..3).all(|k| c[k] >= 0.0 && c[k] < self.last[k]);
        if !interior {
            return None;
        }
        // 0 ≤ c < n − 1: truncation is floor and the upper taps exist. Through `i32` (one
        // instruction each way on baseline x86-64, where `usize` takes about ten).
        let i = c.map(|c| c as i32);
        let t: [f32; 3] = std::array::from_fn(|k| (c[k] - f64::from(i[k])) as f32);
        let [sy, sz] = self.strides;
        let base = i[0] as usize + sy * i[1] as usize + sz * i[2] as usize;
        // One bounds check for all eight taps, the highest of which is `base + sz + sy + 1`.
        let taps = &data[base..=base + sz + sy + 1];
        let tap = |k: usize| taps[k];
        let x00 = lerp(tap(0), tap(1), t[0]);
        let x10 = lerp(tap(sy), tap(sy + 1), t[0]);
        let x01 = lerp(tap(sz), tap(sz + 1), t[0]);
        let x11 = lerp(tap(sz + sy), tap(sz + sy + 1), t[0]);
        Some(lerp(lerp(x00, x10, t[1]), lerp(x01, x11, t[1]), t[2]))
    }
}

/// `a + t·(b − a)`, three roundings (no fused multiply-add, so every CPU gives the same bits).
#[inline(always)]
fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + t * (b - a)
}

/// Fills `row` with `voxel(x)` for every `x`, using AVX2 for runs of eight interior samples
/// where the CPU has it (bit for bit the same values).
fn interior_row(
    data: &[f32],
    grid: &Interior,
    coordinates: [&[f64]; 3],
    row: &mut [f32],
    voxel: &impl Fn(usize) -> f32,
) {
    #[cfg(target_arch = "x86_64")]
    if grid.small && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, the only requirement of `interior_row_avx2`.
        unsafe { interior_row_avx2(data, grid, coordinates, row, voxel) };
        return;
    }
    for (x, o) in row.iter_mut().enumerate() {
        *o = voxel(x);
    }
}

/// [`interior_row`] eight samples at a time. A group whose samples are all interior, or (with
/// zero padding) each either interior or outside the grid, is computed with eight gathers
/// (masked to the interior samples) and the same `f32` operations as [`Interior::sample`] (no
/// fused multiply-add), its outside samples 0 as [`Padding::Constant`] makes them; any other
/// group (one touching the grid's last voxel, or nearest padding outside), and the row's tail,
/// goes through `voxel`.
///
/// # Safety
/// The CPU must support AVX2, and every index of `data` must fit an `i32` (`grid.small`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn interior_row_avx2(
    data: &[f32],
    grid: &Interior,
    [cxs, cys, czs]: [&[f64]; 3],
    row: &mut [f32],
    voxel: &impl Fn(usize) -> f32,
) {
    use std::arch::x86_64::*;
    let n = row.len().min(cxs.len()).min(cys.len()).min(czs.len());
    let zero = _mm256_setzero_pd();
    let last = grid.last.map(|l| _mm256_set1_pd(l));
    let [sy, sz] = grid.strides.map(|s| s as i32);
    let (vsy, vsz) = (_mm256_set1_epi32(sy), _mm256_set1_epi32(sz));
    // The low 32 bits of each 64-bit lane, gathered into the low half.
    let low_dwords = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    let mut x = 0;
    while x + 8 <= n {
        // SAFETY: x + 8 ≤ n, the length of every coordinate slice.
        let load = |axis: &[f64], at: usize| unsafe { _mm256_loadu_pd(axis.as_ptr().add(at)) };
        let halves = [x, x + 4].map(|at| [load(cxs, at), load(cys, at), load(czs, at)]);
        // Per half: lanes whose taps are all inside (0 ≤ c < n − 1 on every axis).
        let ones = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
        let interior = halves.map(|half| {
            let mut interior = ones;
            for (c, l) in half.iter().zip(&last) {
                let ge = _mm256_cmp_pd::<_CMP_GE_OQ>(*c, zero);
                interior = _mm256_and_pd(interior, _mm256_and_pd(ge, _mm256_cmp_pd::<_CMP_LT_OQ>(*c, *l)));
            }
            interior
        });
        let bits = |m: __m256d| _mm256_movemask_pd(m);
        let interior_bits = bits(interior[0]) | bits(interior[1]) << 4;
        // With zero padding, the other lanes may all be outside the grid on some axis (c < 0,
        // c > n − 1 or NaN: scipy's constant value), which the vector path sets to 0.
        let vector = interior_bits == 0xff
            || grid.zero_outside && {
                let outside = halves.map(|half| {
                    let mut outside = zero;
                    for (c, l) in half.iter().zip(&last) {
                        let on = _mm256_and_pd(
                            _mm256_cmp_pd::<_CMP_GE_OQ>(*c, zero),
                            _mm256_cmp_pd::<_CMP_LE_OQ>(*c, *l),
                        );
                        outside = _mm256_or_pd(outside, _mm256_xor_pd(on, ones));
                    }
                    outside
                });
                (interior_bits | bits(outside[0]) | bits(outside[1]) << 4) == 0xff
            };
        if !vector {
            for (k, o) in row[x..x + 8].iter_mut().enumerate() {
                *o = voxel(x + k);
            }
            x += 8;
            continue;
        }
        if interior_bits == 0 {
            row[x..x + 8].fill(0.0);
            x += 8;
            continue;
        }
        // The interior lanes as an eight-lane mask for the gathers and the final blend.
        let pack = |m: __m256d| {
            _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_castpd_si256(m), low_dwords))
        };
        let lanes = _mm256_castsi256_ps(_mm256_set_m128i(pack(interior[1]), pack(interior[0])));
        // Per axis: the truncated index (floor, as c ≥ 0) and the fraction rounded to f32,
        // four lanes from each half.
        let split = |k: usize| {
            let i = halves.map(|h| _mm256_cvttpd_epi32(h[k]));
            let t = [0, 1].map(|j| _mm256_cvtpd_ps(_mm256_sub_pd(halves[j][k], _mm256_cvtepi32_pd(i[j]))));
            (_mm256_set_m128i(i[1], i[0]), _mm256_set_m128(t[1], t[0]))
        };
        let ((ix, tx), (iy, ty), (iz, tz)) = (split(0), split(1), split(2));
        let base = _mm256_add_epi32(
            ix,
            _mm256_add_epi32(_mm256_mullo_epi32(iy, vsy), _mm256_mullo_epi32(iz, vsz)),
        );
        // Each pair of taps along x is adjacent in memory: one 64-bit gather per half reads both
        // (half the gathered elements of one 32-bit gather per tap; measured faster).
        let index = [_mm256_castsi256_si128(base), _mm256_extracti128_si256::<1>(base)];
        let masks = interior.map(|m| _mm256_castpd_si256(m));
        let pair = |step: i32| {
            let [low, high] = [0, 1].map(|h| {
                // SAFETY: only interior lanes are read (`masks`), and their coordinates put
                // both taps inside `data` (the highest is base + sz + sy + 1 < len, as in
                // `Interior::sample`); indices fit i32.
                unsafe {
                    _mm256_castsi256_ps(_mm256_mask_i32gather_epi64::<4>(
                        _mm256_setzero_si256(),
                        data.as_ptr().cast::<i64>(),
                        _mm_add_epi32(index[h], _mm_set1_epi32(step)),
                        masks[h],
                    ))
                }
            });
            // [a0 b0 a1 b1 | a2 b2 a3 b3] of samples 0–3 and 4–7 into the eight a's and the
            // eight b's, in sample order.
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(low, high);
            let odd = _mm256_shuffle_ps::<0b11_01_11_01>(low, high);
            let order = |v: __m256| {
                _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
            };
            (order(even), order(odd))
        };
        let lerp8 = |a: __m256, b: __m256, t: __m256| _mm256_add_ps(a, _mm256_mul_ps(t, _mm256_sub_ps(b, a)));
        let along_x = |step: i32| {
            let (a, b) = pair(step);
            lerp8(a, b, tx)
        };
        let x00 = along_x(0);
        let x10 = along_x(sy);
        let x01 = along_x(sz);
        let x11 = along_x(sz + sy);
        let value = lerp8(lerp8(x00, x10, ty), lerp8(x01, x11, ty), tz);
        // Outside lanes are 0 (their fractions may be anything, NaN included).
        let value = _mm256_blendv_ps(_mm256_setzero_ps(), value, lanes);
        // SAFETY: x + 8 ≤ n ≤ row.len().
        unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(x), value) };
        x += 8;
    }
    for (k, o) in row[x..].iter_mut().enumerate() {
        *o = voxel(x + k);
    }
}

/// The two taps and weights of an order-1 sample at `c` in `[0, n − 1]` (the upper tap mirrored
/// back inside at the last voxel, where its weight is 0).
#[inline(always)]
fn linear_taps(c: f64, n: usize) -> ([usize; 2], [f64; 2]) {
    let start = c as usize; // c ≥ 0: truncation is floor.
    let t = c - start as f64;
    let high = if start + 1 < n {
        start + 1
    } else {
        mirror_index(start as isize + 1, n)
    };
    ([start, high], [1.0 - t, t])
}

/// Trilinear sample of `data` (`shape`, `x` fastest) at `c`, each coordinate in `[0, n − 1]`;
/// taps summed `x` outer, `z` inner, as scipy does.
#[inline(always)]
fn sample_linear(data: &[f32], [nx, ny, nz]: [usize; 3], c: [f64; 3]) -> f64 {
    let (tx, wx) = linear_taps(c[0], nx);
    let (ty, wy) = linear_taps(c[1], ny);
    let (tz, wz) = linear_taps(c[2], nz);
    let mut sum = 0.0;
    for (&ix, &wxa) in tx.iter().zip(&wx) {
        for (&iy, &wyb) in ty.iter().zip(&wy) {
            for (&iz, &wzc) in tz.iter().zip(&wz) {
                sum += f64::from(data[ix + nx * (iy + ny * iz)]) * wxa * wyb * wzc;
            }
        }
    }
    sum
}

/// The cubic B-spline coefficients of `volume` padded by `pad` edge voxels on every side
/// (`scipy.ndimage.spline_filter(order=3)` along x, then y, then z, in `f64`), and the padded
/// shape.
fn cubic_coefficients(volume: &Volume, pad: usize) -> (Vec<Lanes<1>>, [usize; 3]) {
    let [nx, ny, nz] = volume.shape();
    let padded = [nx + 2 * pad, ny + 2 * pad, nz + 2 * pad];
    let [px, py, pz] = padded;
    let clamp = |i: usize, n: usize| i.saturating_sub(pad).min(n - 1);
    let mut coefficients: Vec<Lanes<1>> = Vec::with_capacity(px * py * pz);
    for z in 0..pz {
        for y in 0..py {
            for x in 0..px {
                let v = volume.get(clamp(x, nx), clamp(y, ny), clamp(z, nz));
                coefficients.push([f64::from(v)]);
            }
        }
    }
    for z in 0..pz {
        for y in 0..py {
            let base = px * (y + py * z);
            prefilter_line(&mut coefficients, |i| base + i, px);
        }
    }
    for z in 0..pz {
        for x in 0..px {
            prefilter_line(&mut coefficients, |i| x + px * (i + py * z), py);
        }
    }
    for y in 0..py {
        for x in 0..px {
            prefilter_line(&mut coefficients, |i| x + px * (y + py * i), pz);
        }
    }
    (coefficients, padded)
}

/// The cubic spline of `coefficients` (`shape`, `x` fastest) at `c` (each in `[0, n − 1]`), the
/// 64 taps summed `x` outer, `z` inner.
fn sample_cubic3(coefficients: &[Lanes<1>], [nx, ny, nz]: [usize; 3], c: [f64; 3]) -> f64 {
    let (tx, wx) = cubic_sample(c[0], nx);
    let (ty, wy) = cubic_sample(c[1], ny);
    let (tz, wz) = cubic_sample(c[2], nz);
    let mut sum = 0.0;
    for (&ix, &wxa) in tx.iter().zip(&wx) {
        for (&iy, &wyb) in ty.iter().zip(&wy) {
            for (&iz, &wzc) in tz.iter().zip(&wz) {
                sum += coefficients[ix + nx * (iy + ny * iz)][0] * wxa * wyb * wzc;
            }
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Volume {
        Volume::from_fn([9, 8, 7], |x, y, z| {
            ((x * 7 + y * 3 + z * 5) % 11) as f32 / 11.0
        })
    }

    fn identity() -> AffineDraw {
        AffineDraw {
            angles_deg: [0.0; 3],
            scales: [1.0; 3],
            translation_mm: [0.0; 3],
        }
    }

    #[test]
    fn the_identity_draw_keeps_the_volume() {
        let v = ramp();
        for interpolation in [Interpolation::Linear, Interpolation::Cubic] {
            for padding in [Padding::Constant, Padding::Nearest] {
                let t = RandomAffine {
                    interpolation,
                    padding,
                    ..RandomAffine::default()
                };
                let out = t.apply_drawn(&v, &identity());
                let error = out
                    .data()
                    .iter()
                    .zip(v.data())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(error < 1e-6, "{interpolation:?} {padding:?}: {error}");
            }
        }
    }

    #[test]
    fn a_translation_moves_values_by_whole_voxels_in_millimetres() {
        let mut v = ramp();
        v.spacing = [2.0, 1.0, 1.0];
        let draw = AffineDraw {
            translation_mm: [4.0, 0.0, 0.0],
            ..identity()
        };
        let t = RandomAffine::default();
        let out = t.apply_drawn(&v, &draw);
        // 4 mm at 2 mm per voxel: output x samples input x − 2; the first two columns are air.
        assert_eq!(out.get(5, 3, 2), v.get(3, 3, 2));
        assert_eq!(out.get(1, 3, 2), 0.0);
        let nearest = RandomAffine {
            padding: Padding::Nearest,
            ..RandomAffine::default()
        };
        assert_eq!(nearest.apply_drawn(&v, &draw).get(1, 3, 2), v.get(0, 3, 2));
    }

    #[test]
    fn a_quarter_turn_about_z_permutes_voxels() {
        let v = Volume::from_fn([6, 6, 3], |x, y, z| (x + 10 * y + 100 * z) as f32);
        let draw = AffineDraw {
            angles_deg: [0.0, 0.0, 90.0],
            ..identity()
        };
        let out = RandomAffine::default().apply_drawn(&v, &draw);
        // The point (x, y) goes to (−y, x) about the centre 2.5: output (o0, o1) holds input
        // (o1, 5 − o0).
        assert!((out.get(1, 4, 2) - v.get(4, 4, 2)).abs() < 1e-4);
        assert!((out.get(0, 2, 1) - v.get(2, 5, 1)).abs() < 1e-4);
    }

    #[test]
    fn the_fast_paths_equal_the_per_voxel_computation() {
        // Rows long enough for groups of eight samples that are all interior, all outside, or
        // mixed with edge samples; bit for bit the per-voxel rule (`Interior::sample` inside,
        // scipy's mirrored sum at the edge, 0 or the clamped edge outside), whichever path
        // (AVX2 or portable) this CPU takes, and within 1e-6 of scipy's sum everywhere.
        let v = Volume::from_fn([37, 21, 13], |x, y, z| {
            ((x * 7 + y * 3 + z * 5) % 11) as f32 / 11.0 + 0.01 * x as f32
        });
        let draws = [
            ([3.0, -4.0, 12.0], [2.0, -1.5, 1.0]),
            ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
            ([20.0, 10.0, -35.0], [6.0, -9.0, 4.0]),
            ([0.0, 0.0, 90.0], [0.0, 0.0, 0.0]),
        ];
        let shape = v.shape();
        for (angles_deg, translation_mm) in draws {
            for padding in [Padding::Constant, Padding::Nearest] {
                let draw = AffineDraw {
                    angles_deg,
                    scales: [1.1, 0.9, 1.0],
                    translation_mm,
                };
                let (m, o) = draw.sampling(shape, v.spacing);
                let out = affine_resample(&v, &m, o, Interpolation::Linear, padding);
                let grid = Interior::new(shape, padding);
                let (mut interior, mut outside) = (0, 0);
                for z in 0..shape[2] {
                    for y in 0..shape[1] {
                        for x in 0..shape[0] {
                            let p = [x as f64, y as f64, z as f64];
                            let c: [f64; 3] = std::array::from_fn(|k| {
                                ((p[0] * m[k][0] + p[1] * m[k][1]) + p[2] * m[k][2]) + o[k]
                            });
                            let placed: Option<[f64; 3]> = match padding {
                                Padding::Constant => {
                                    (0..3).all(|k| inside(c[k], shape[k])).then_some(c)
                                }
                                Padding::Nearest => Some(std::array::from_fn(|k| {
                                    c[k].clamp(0.0, shape[k] as f64 - 1.0)
                                })),
                            };
                            let scipy = placed.map_or(0.0, |c| sample_linear(v.data(), shape, c));
                            let expected = match grid.sample(v.data(), c) {
                                Some(fast) => {
                                    interior += 1;
                                    fast
                                }
                                None => {
                                    outside += usize::from(placed.is_none());
                                    scipy as f32
                                }
                            };
                            let got = out.get(x, y, z);
                            assert_eq!(
                                got.to_bits(),
                                expected.to_bits(),
                                "{angles_deg:?} {padding:?} at {x} {y} {z}: {got} vs {expected}"
                            );
                            assert!((f64::from(got) - scipy).abs() < 1e-6);
                        }
                    }
                }
                assert!(interior > 1000, "{angles_deg:?}: {interior} interior samples");
                if padding == Padding::Constant && translation_mm[0] != 0.0 {
                    assert!(outside > 100, "{angles_deg:?}: {outside} outside samples");
                }
            }
        }
    }

    #[test]
    fn draws_respect_isotropy_and_the_seed() {
        let t = RandomAffine::default();
        let mut rng = SplitMix64::new(2);
        for _ in 0..200 {
            let d = t.draw(&mut rng).unwrap();
            assert!(d.scales.iter().all(|&s| s == d.scales[0] && (0.9..=1.1).contains(&s)));
            assert!(d.angles_deg[2].abs() <= 15.0 && d.angles_deg[0].abs() <= 5.0);
            assert!(d.translation_mm.iter().all(|t| t.abs() <= 4.0));
        }
        let v = ramp();
        assert_eq!(
            t.apply(&v, &mut SplitMix64::new(6)),
            t.apply(&v, &mut SplitMix64::new(6))
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let read = |json: &str| serde_json::from_str::<RandomAffine>(json).map(|_| ());
        let err = read(r#"{"rotate_deg": [0, 200, 0]}"#).unwrap_err().to_string();
        assert!(
            err.starts_with("random_affine rotate_deg 200: must be between 0 and 180 degrees"),
            "{err}"
        );
        assert!(read(r#"{"scale": [1.0, 0, 0]}"#).is_err());
        assert!(read(r#"{"translate_mm": [-1, 0, 0]}"#).is_err());
        assert!(read(r#"{"interpolation": "quintic"}"#).is_err());
        assert!(read(r#"{"padding": "nearest", "interpolation": "cubic"}"#).is_ok());
    }
}
