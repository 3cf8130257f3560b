//! Random affine transform: rotation about the x, y and z axes, scaling (isotropic or per axis)
//! and translation, about the volume's centre and in millimetres (the voxel spacing is honoured),
//! resampled like `scipy.ndimage.affine_transform` with `order=1` (linear) or `order=3` (cubic
//! B-spline) and `mode='constant'` (`cval=0`) or `mode='nearest'` (MONAI's `RandAffine`,
//! TorchIO's `RandomAffine`).

use std::fmt;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Augment, SettingError, fires, require, require_probability, symmetric};
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
    let mut out = vec![0.0f32; volume.len()];
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

/// Output plane `z` of the linear [`affine_resample`]. Bit for bit the general per-voxel
/// computation (the coordinate summed `((x·m₀ + y·m₁) + z·m₂) + offset`, the eight taps summed
/// `x` outer, `z` inner, each `value · wx · wy · wz`), with the products of `y` and `z` hoisted
/// out of the row and a branch-free path for samples whose taps are all inside the grid.
fn linear_plane(
    data: &[f32],
    shape: [usize; 3],
    matrix: &Matrix3,
    offset: [f64; 3],
    padding: Padding,
    z: usize,
    plane: &mut [f32],
) {
    let [nx, ny, nz] = shape;
    let (sy, sz) = (nx, nx * ny);
    let place = |c: f64, n: usize| -> Option<f64> {
        match padding {
            Padding::Constant => inside(c, n).then_some(c),
            Padding::Nearest if c.is_nan() => None,
            Padding::Nearest => Some(c.clamp(0.0, n as f64 - 1.0)),
        }
    };
    let zf = z as f64;
    let zm = [zf * matrix[0][2], zf * matrix[1][2], zf * matrix[2][2]];
    for (y, row) in plane.chunks_exact_mut(nx).enumerate() {
        let yf = y as f64;
        let ym = [yf * matrix[0][1], yf * matrix[1][1], yf * matrix[2][1]];
        for (x, o) in row.iter_mut().enumerate() {
            let xf = x as f64;
            let c = [
                ((xf * matrix[0][0] + ym[0]) + zm[0]) + offset[0],
                ((xf * matrix[1][0] + ym[1]) + zm[1]) + offset[1],
                ((xf * matrix[2][0] + ym[2]) + zm[2]) + offset[2],
            ];
            let (Some(cx), Some(cy), Some(cz)) = (place(c[0], nx), place(c[1], ny), place(c[2], nz))
            else {
                continue;
            };
            // Coordinates are ≥ 0 here: truncation is floor.
            let (ix, iy, iz) = (cx as usize, cy as usize, cz as usize);
            *o = if ix + 1 < nx && iy + 1 < ny && iz + 1 < nz {
                let (tx, ty, tz) = (cx - ix as f64, cy - iy as f64, cz - iz as f64);
                let (ux, uy, uz) = (1.0 - tx, 1.0 - ty, 1.0 - tz);
                let base = ix + sy * iy + sz * iz;
                let v = |step: usize| f64::from(data[base + step]);
                let mut sum = 0.0;
                sum += v(0) * ux * uy * uz;
                sum += v(sz) * ux * uy * tz;
                sum += v(sy) * ux * ty * uz;
                sum += v(sy + sz) * ux * ty * tz;
                sum += v(1) * tx * uy * uz;
                sum += v(1 + sz) * tx * uy * tz;
                sum += v(1 + sy) * tx * ty * uz;
                sum += v(1 + sy + sz) * tx * ty * tz;
                sum
            } else {
                sample_linear(data, shape, [cx, cy, cz])
            } as f32;
        }
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
