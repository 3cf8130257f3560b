//! `scipy.ndimage`-exact resampling: cubic B-spline prefiltering, in-plane rotation and linear
//! zoom, with scipy's defaults for the Keras example (`mode='constant'`, `cval=0`,
//! `grid_mode=False`).
//!
//! The arithmetic follows scipy 1.17's C code operation for operation (same pole, same boundary
//! initialisation, same tap order, float64 throughout, one rounding to `f32` at the end): on the
//! golden cases of `tests/parity.rs` (which allow a maximum absolute error of 1e-5) rotation,
//! zoom and prefilter are bit-identical to scipy.
//!
//! Behaviour worth knowing, all inherited from scipy:
//! - in `mode='constant'` a sample whose source coordinate falls outside `[0, len - 1]` (even by
//!   one rounding error) is `0`; samples inside use the mirror-extended spline, so there is no
//!   fade to zero at the border;
//! - the zoom's sampling step is `(in - 1) / (out - 1)`, so `out_index * step` can land a rounding
//!   error past the last input voxel: scipy (and this module) then output an all-zero last plane
//!   (e.g. zooming 30 voxels to 8).

use rayon::prelude::*;

use crate::Volume;

/// scipy's pole of the cubic B-spline prefilter (`sqrt(3) - 2`, as the literal scipy uses: it is
/// one ulp away from `3f64.sqrt() - 2.0`).
const CUBIC_POLE: f64 = -0.267_949_192_431_122_7;

/// `z` planes processed together by [`rotate_planes`]: the rotation's coordinates and weights are
/// computed once per `(x, y)` pixel and applied to this many planes at a time (with `z`
/// contiguous, so the per-plane arithmetic vectorizes).
const WIDE_BLOCK: usize = 16;
/// Block width for the planes left over after the wide blocks, so thin volumes do not pay for 16.
const NARROW_BLOCK: usize = 4;

/// One coefficient per plane of a block of `L` planes, `z` contiguous.
pub(crate) type Lanes<const L: usize> = [f64; L];

/// `scipy.special.cosdg`: cosine of an angle in degrees, exactly `0` or `±1` at multiples of 90°.
///
/// Like scipy's Cephes routine, the angle is reduced to within 45° of a multiple of 90° in degrees
/// before converting to radians; the result matches scipy to within one ulp.
pub fn cos_degrees(angle_deg: f64) -> f64 {
    let (octant, residual) = reduce_degrees(angle_deg);
    let (mut quadrant, mut sign) = (octant, 1.0);
    if quadrant > 3 {
        quadrant -= 4;
        sign = -sign;
    }
    if quadrant > 1 {
        sign = -sign;
    }
    sign * if quadrant == 2 {
        residual.sin()
    } else {
        residual.cos()
    }
}

/// `scipy.special.sindg`: sine of an angle in degrees, exactly `0` or `±1` at multiples of 90°.
/// See [`cos_degrees`].
pub fn sin_degrees(angle_deg: f64) -> f64 {
    let (mut quadrant, residual) = reduce_degrees(angle_deg);
    let mut sign = if angle_deg < 0.0 { -1.0 } else { 1.0 };
    if quadrant > 3 {
        quadrant -= 4;
        sign = -sign;
    }
    sign * if quadrant == 2 {
        residual.cos()
    } else {
        residual.sin()
    }
}

/// Splits `|angle|` (degrees) into the nearest even octant `k` (mod 8; octant `k` starts at
/// `k · 45°`) and the remainder `|angle| - k · 45°` in radians, which lies within ±45°.
fn reduce_degrees(angle_deg: f64) -> (u32, f64) {
    const RADIANS_PER_DEGREE: f64 = std::f64::consts::PI / 180.0;
    let magnitude = angle_deg.abs();
    let mut octants = (magnitude / 45.0).floor();
    let mut octant = (octants % 16.0) as u32;
    if octant & 1 == 1 {
        octant += 1;
        octants += 1.0;
    }
    let residual = (magnitude - octants * 45.0) * RADIANS_PER_DEGREE;
    (octant & 7, residual)
}

/// Folds a tap index into `[0, len)` the way scipy's mirror boundary does (period `2 * len - 2`,
/// edge samples not repeated); every index maps to `0` when `len <= 1`.
pub(crate) fn mirror_index(index: isize, len: usize) -> usize {
    if len <= 1 {
        return 0;
    }
    let len = len as isize;
    let period = 2 * len - 2;
    let folded = index.rem_euclid(period);
    (if folded >= len {
        period - folded
    } else {
        folded
    }) as usize
}

/// True when a source coordinate is inside `[0, len - 1]`; NaN is outside. This is scipy's
/// `mode='constant'` test: outside means the sample is `cval`.
pub(crate) fn inside(coordinate: f64, len: usize) -> bool {
    coordinate >= 0.0 && coordinate <= len as f64 - 1.0
}

/// Taps and weights of an order-3 sample at `x`, `0 <= x <= len - 1`: the four mirrored indices
/// `floor(x) - 1 ..= floor(x) + 2` and scipy's weights for them.
#[inline]
pub(crate) fn cubic_sample(x: f64, len: usize) -> ([usize; 4], [f64; 4]) {
    // x >= 0, so truncation is floor (and needs no libm call on baseline x86-64).
    let whole = x as usize;
    let t = x - whole as f64;
    let (y, z) = (t, 1.0 - t);
    let w1 = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
    let w2 = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
    let w0 = z * z * z / 6.0;
    let weights = [w0, w1, w2, 1.0 - w0 - w1 - w2];
    let taps = if whole >= 1 && whole + 2 < len {
        [whole - 1, whole, whole + 1, whole + 2]
    } else {
        std::array::from_fn(|k| mirror_index(whole as isize - 1 + k as isize, len))
    };
    (taps, weights)
}

/// Cubic B-spline prefilter of one line in place (`line(i)` is element `i`, each a block of `z`
/// lanes), with scipy's mirror initialisation (used for `mode='constant'` too).
#[inline(always)]
pub(crate) fn prefilter_line<const L: usize>(
    coefficients: &mut [Lanes<L>],
    line: impl Fn(usize) -> usize,
    len: usize,
) {
    if len < 2 {
        return;
    }
    let z = CUBIC_POLE;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    for i in 0..len {
        coefficients[line(i)].iter_mut().for_each(|c| *c *= gain);
    }

    // Causal initialisation: the mirror-extended sum for c[0], in scipy's order.
    let z_last = z.powf((len - 1) as f64);
    let last = coefficients[line(len - 1)];
    let mut first = coefficients[line(0)];
    lanes_zip(&mut first, &last, |f, l| *f += z_last * l);
    let mut z_i = z;
    for i in 1..len - 1 {
        let (near, far) = (&coefficients[line(i)], &coefficients[line(len - 1 - i)]);
        for l in 0..L {
            first[l] += z_i * (near[l] + z_last * far[l]);
        }
        z_i *= z;
    }
    let denominator = 1.0 - z_last * z_last;
    first.iter_mut().for_each(|f| *f /= denominator);
    coefficients[line(0)] = first;

    let mut previous = first;
    for i in 1..len {
        let current = &mut coefficients[line(i)];
        lanes_zip(current, &previous, |c, p| *c += z * p);
        previous = *current;
    }

    // Anticausal initialisation and pass.
    let before_last = coefficients[line(len - 2)];
    let mut next = coefficients[line(len - 1)];
    lanes_zip(&mut next, &before_last, |n, b| {
        *n = (z * b + *n) * z / (z * z - 1.0)
    });
    coefficients[line(len - 1)] = next;
    for i in (0..len - 1).rev() {
        let current = &mut coefficients[line(i)];
        lanes_zip(current, &next, |c, n| *c = z * (n - *c));
        next = *current;
    }
}

#[inline(always)]
fn lanes_zip<const L: usize>(target: &mut Lanes<L>, other: &Lanes<L>, f: impl Fn(&mut f64, f64)) {
    for (t, &o) in target.iter_mut().zip(other) {
        f(t, o);
    }
}

/// Prefilters a block of planes (`[x, y]` pixels, `x` fastest, each a block of `z` lanes) along
/// `x`, then along `y`, as `scipy.ndimage.spline_filter` does axis by axis.
#[inline(always)]
fn prefilter_block<const L: usize>(coefficients: &mut [Lanes<L>], nx: usize, ny: usize) {
    for y in 0..ny {
        prefilter_line(coefficients, |i| i + nx * y, nx);
    }
    for x in 0..nx {
        prefilter_line(coefficients, |i| x + nx * i, ny);
    }
}

/// The order-3 B-spline coefficients of one plane: `scipy.ndimage.spline_filter(plane, order=3,
/// mode='constant', output=float64)`.
///
/// `plane` holds `shape[0] * shape[1]` values, index `x + shape[0] * y` (`x` fastest), and is
/// filtered in place along `x`, then along `y`. Axes of length 1 are left as they are.
///
/// # Panics
/// If `plane.len() != shape[0] * shape[1]`.
pub fn spline_prefilter_plane(plane: &mut [f64], shape: [usize; 2]) {
    assert_eq!(
        plane.len(),
        shape[0] * shape[1],
        "plane length must match its shape"
    );
    let mut lanes: Vec<Lanes<1>> = plane.iter().map(|&v| [v]).collect();
    prefilter_block(&mut lanes, shape[0], shape[1]);
    for (v, lane) in plane.iter_mut().zip(&lanes) {
        *v = lane[0];
    }
}

/// The affine map scipy's `rotate(..., reshape=False)` applies in a plane: output pixel
/// `(o0, o1)` samples the input at `matrix · (o0, o1) + offset`, which turns the plane by the
/// angle about its centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaneRotation {
    /// `[[cos, sin], [-sin, cos]]` of the angle (degrees, [`cos_degrees`]/[`sin_degrees`]).
    pub matrix: [[f64; 2]; 2],
    /// Input-pixel offset that keeps the plane's centre fixed.
    pub offset: [f64; 2],
}

impl PlaneRotation {
    /// The rotation by `angle_deg` degrees of an `[n0, n1]`-pixel plane, as
    /// `scipy.ndimage.rotate(input, angle_deg, axes=(1, 0), reshape=False)` builds it.
    pub fn new(angle_deg: f64, [n0, n1]: [usize; 2]) -> Self {
        let (c, s) = (cos_degrees(angle_deg), sin_degrees(angle_deg));
        let matrix = [[c, s], [-s, c]];
        let center = [(n0 as f64 - 1.0) / 2.0, (n1 as f64 - 1.0) / 2.0];
        let turned = [
            matrix[0][0] * center[0] + matrix[0][1] * center[1],
            matrix[1][0] * center[0] + matrix[1][1] * center[1],
        ];
        Self {
            matrix,
            offset: [center[0] - turned[0], center[1] - turned[1]],
        }
    }

    /// The input coordinates (pixels) that output pixel `(o0, o1)` samples, summed in scipy's
    /// order.
    #[inline]
    pub fn source(&self, o0: usize, o1: usize) -> [f64; 2] {
        let (o0, o1) = (o0 as f64, o1 as f64);
        let m = &self.matrix;
        [
            o0 * m[0][0] + o1 * m[0][1] + self.offset[0],
            o0 * m[1][0] + o1 * m[1][1] + self.offset[1],
        ]
    }
}

/// Rotates every `z` plane of `volume` by `angle_deg` degrees in the `(x, y)` plane about its
/// centre, keeping the shape: `scipy.ndimage.rotate(volume, angle_deg, axes=(1, 0),
/// reshape=False)` with its defaults (`order=3`, `mode='constant'`, `cval=0`, `prefilter=True`).
///
/// Any angle and any plane shape. Output voxels whose source falls outside the plane are `0`;
/// values may overshoot the input's range (cubic splines ring at edges). The geometry (spacing,
/// affine, provenance) is kept: the values move within the same voxel grid, which is what the
/// Keras example's augmentation means. Planes are processed in parallel (rayon).
pub fn rotate_planes(volume: &Volume, angle_deg: f64) -> Volume {
    rotate_planes_then(volume, angle_deg, |v| v)
}

/// [`rotate_planes`] with `finish` applied to every output value (after the rounding to `f32`).
pub(crate) fn rotate_planes_then(
    volume: &Volume,
    angle_deg: f64,
    finish: impl Fn(f32) -> f32 + Sync,
) -> Volume {
    let [nx, ny, nz] = volume.shape();
    let plane = nx * ny;
    let mut out = vec![0.0f32; volume.len()];
    if plane > 0 {
        let rotation = PlaneRotation::new(angle_deg, [nx, ny]);
        let wide_len = nz / WIDE_BLOCK * WIDE_BLOCK * plane;
        let (wide_in, narrow_in) = volume.data().split_at(wide_len);
        let (wide_out, narrow_out) = out.split_at_mut(wide_len);
        let (rotation, finish) = (&rotation, &finish);
        rayon::join(
            || {
                wide_out
                    .par_chunks_mut(plane * WIDE_BLOCK)
                    .zip(wide_in.par_chunks(plane * WIDE_BLOCK))
                    .for_each(|(out_block, in_block)| {
                        rotate_block::<WIDE_BLOCK>(in_block, out_block, [nx, ny], rotation, finish)
                    })
            },
            || {
                narrow_out
                    .par_chunks_mut(plane * NARROW_BLOCK)
                    .zip(narrow_in.par_chunks(plane * NARROW_BLOCK))
                    .for_each(|(out_block, in_block)| {
                        rotate_block::<NARROW_BLOCK>(
                            in_block,
                            out_block,
                            [nx, ny],
                            rotation,
                            finish,
                        )
                    })
            },
        );
    }
    volume
        .with_data(volume.shape(), out)
        .expect("output has the input's shape")
}

/// Rotates up to `L` consecutive planes (`input`, `x` fastest) into `output`, with AVX2
/// where the CPU has it: the same arithmetic, four `f64` lanes per instruction instead of two.
fn rotate_block<const L: usize>(
    input: &[f32],
    output: &mut [f32],
    shape: [usize; 2],
    rotation: &PlaneRotation,
    finish: &impl Fn(f32) -> f32,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, the only requirement of `rotate_block_avx2`.
        unsafe { rotate_block_avx2::<L>(input, output, shape, rotation, finish) };
        return;
    }
    rotate_block_portable::<L>(input, output, shape, rotation, finish);
}

/// [`rotate_block_portable`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rotate_block_avx2<const L: usize>(
    input: &[f32],
    output: &mut [f32],
    shape: [usize; 2],
    rotation: &PlaneRotation,
    finish: &impl Fn(f32) -> f32,
) {
    rotate_block_portable::<L>(input, output, shape, rotation, finish);
}

/// The block rotation: transpose the planes to `z` fastest in `f64`, prefilter, then sample every
/// output pixel once for all `L` planes. Inlined into both [`rotate_block`] variants.
#[inline(always)]
fn rotate_block_portable<const L: usize>(
    input: &[f32],
    output: &mut [f32],
    [nx, ny]: [usize; 2],
    rotation: &PlaneRotation,
    finish: &impl Fn(f32) -> f32,
) {
    let plane = nx * ny;
    // Transpose to `z` fastest in cache-sized runs of pixels: each run is read plane by plane.
    const RUN: usize = 64;
    let mut coefficients: Vec<Lanes<L>> = Vec::with_capacity(plane);
    for start in (0..plane).step_by(RUN) {
        let end = (start + RUN).min(plane);
        coefficients.resize(end, [0.0; L]);
        let run = &mut coefficients[start..end];
        for (l, src) in input.chunks_exact(plane).enumerate() {
            for (c, &v) in run.iter_mut().zip(&src[start..end]) {
                c[l] = f64::from(v);
            }
        }
    }
    prefilter_block(&mut coefficients, nx, ny);

    let mut row = vec![[0.0; L]; nx];
    for o1 in 0..ny {
        for (o0, value) in row.iter_mut().enumerate() {
            let [s0, s1] = rotation.source(o0, o1);
            *value = if inside(s0, nx) && inside(s1, ny) {
                sample_cubic(&coefficients, nx, [s0, s1], [nx, ny])
            } else {
                [0.0; L]
            };
        }
        for (l, out_plane) in output.chunks_exact_mut(plane).enumerate() {
            let out_row = &mut out_plane[o1 * nx..(o1 + 1) * nx];
            for (o, value) in out_row.iter_mut().zip(&row) {
                *o = finish(value[l] as f32);
            }
        }
    }
}

/// The cubic spline at `source` for every lane, summing the 16 taps in scipy's order (`x` tap
/// outer, `y` tap inner, `coefficient * wx * wy`).
#[inline(always)]
fn sample_cubic<const L: usize>(
    coefficients: &[Lanes<L>],
    stride: usize,
    source: [f64; 2],
    shape: [usize; 2],
) -> Lanes<L> {
    let (tx, wx) = cubic_sample(source[0], shape[0]);
    let (ty, wy) = cubic_sample(source[1], shape[1]);
    let mut sum = [0.0; L];
    for (&ix, &wxa) in tx.iter().zip(&wx) {
        for (&iy, &wyb) in ty.iter().zip(&wy) {
            let c = &coefficients[ix + stride * iy];
            for l in 0..L {
                sum[l] += c[l] * wxa * wyb;
            }
        }
    }
    sum
}

/// One output position of an order-1 zoom along an axis: the two input taps and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LinearTap {
    /// `floor(coordinate)`.
    pub low: usize,
    /// `floor(coordinate) + 1`, mirrored back inside the axis at its end.
    pub high: usize,
    /// `1 - fract(coordinate)`.
    pub low_weight: f64,
    /// `1 - low_weight`.
    pub high_weight: f64,
}

/// Taps of `scipy.ndimage.zoom(order=1, grid_mode=False)` along one axis of `in_len` voxels
/// resampled to `out_len`: output `k` samples input coordinate `k * (in_len - 1) / (out_len - 1)`;
/// `None` where that lands outside `[0, in_len - 1]` (scipy's `cval`).
pub(crate) fn linear_taps(in_len: usize, out_len: usize) -> Vec<Option<LinearTap>> {
    let last = in_len as f64 - 1.0;
    let step = if out_len > 1 {
        last / (out_len - 1) as f64
    } else {
        1.0
    };
    (0..out_len)
        .map(|k| {
            let coordinate = k as f64 * step;
            inside(coordinate, in_len).then(|| {
                let floor = coordinate.floor();
                let low_weight = 1.0 - (coordinate - floor);
                LinearTap {
                    low: floor as usize,
                    high: mirror_index(floor as isize + 1, in_len),
                    low_weight,
                    high_weight: 1.0 - low_weight,
                }
            })
        })
        .collect()
}

/// The output shape `scipy.ndimage.zoom` gives `shape` for `factors`: `round(n * factor)` per axis,
/// rounding half to even like Python's `round`. Negative or NaN products give `0`.
pub fn zoom_output_shape(shape: [usize; 3], factors: [f64; 3]) -> [usize; 3] {
    std::array::from_fn(|k| (shape[k] as f64 * factors[k]).round_ties_even() as usize)
}

/// `scipy.ndimage.zoom(volume, factors, order=1)` (`mode='constant'`, `cval=0`,
/// `grid_mode=False`): the output shape is [`zoom_output_shape`]; when every factor is exactly 1
/// the input is returned unchanged (scipy's early exit), otherwise [`zoom_linear`] resamples it.
///
/// # Panics
/// If the output's voxel count overflows `usize`.
pub fn zoom_linear_factors(volume: &Volume, factors: [f64; 3]) -> Volume {
    if factors.iter().all(|&f| f == 1.0) {
        return volume.clone();
    }
    zoom_linear(volume, zoom_output_shape(volume.shape(), factors))
}

/// Trilinear resampling of `volume` to `out_shape` (`[x, y, z]` voxels) exactly as
/// `scipy.ndimage.zoom(order=1, mode='constant', grid_mode=False)` does it: the first and last
/// voxel centres of each axis map onto the input's, output voxel `k` samples input coordinate
/// `k * (in - 1) / (out - 1)` (`0` for a one-voxel output axis), and a coordinate a rounding error
/// past the last input voxel gives `0` (see the module notes). The 8 taps are summed in scipy's
/// order in `f64`. Geometry and provenance are copied from `volume` unchanged; callers that
/// change the grid (like [`crate::preprocess`]) set them.
///
/// # Panics
/// If the output's voxel count overflows `usize`.
pub fn zoom_linear(volume: &Volume, out_shape: [usize; 3]) -> Volume {
    let [nx, ny, nz] = volume.shape();
    let len = out_shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .expect("zoom output voxel count overflows usize");
    let mut out = vec![0.0f32; len];
    let plane = out_shape[0] * out_shape[1];
    if len > 0 {
        let taps = [
            linear_taps(nx, out_shape[0]),
            linear_taps(ny, out_shape[1]),
            linear_taps(nz, out_shape[2]),
        ];
        let data = volume.data();
        out.par_chunks_mut(plane)
            .zip(&taps[2])
            .for_each(|(out_plane, tz)| {
                let Some(tz) = tz else { return };
                for (ty_taps, out_row) in
                    taps[1].iter().zip(out_plane.chunks_exact_mut(out_shape[0]))
                {
                    let Some(ty) = ty_taps else { continue };
                    // The four input rows this output row reads, in scipy's tap order
                    // (y outer, z inner), with their weights.
                    let row = |y: usize, z: usize| &data[nx * (y + ny * z)..][..nx];
                    let rows = [
                        (row(ty.low, tz.low), ty.low_weight, tz.low_weight),
                        (row(ty.low, tz.high), ty.low_weight, tz.high_weight),
                        (row(ty.high, tz.low), ty.high_weight, tz.low_weight),
                        (row(ty.high, tz.high), ty.high_weight, tz.high_weight),
                    ];
                    for (o, tx) in out_row.iter_mut().zip(&taps[0]) {
                        let Some(tx) = tx else { continue };
                        let mut sum = 0.0;
                        for (x, wx) in [(tx.low, tx.low_weight), (tx.high, tx.high_weight)] {
                            for (row, wy, wz) in rows {
                                sum += f64::from(row[x]) * wx * wy * wz;
                            }
                        }
                        *o = sum as f32;
                    }
                }
            });
    }
    volume
        .with_data(out_shape, out)
        .expect("length computed from the output shape")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(shape: [usize; 3]) -> Volume {
        Volume::from_fn(shape, |x, y, z| {
            ((x * 7 + y * 3 + z * 11) % 13) as f32 / 13.0
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
    fn degrees_are_exact_at_right_angles() {
        for (angle, c, s) in [
            (0.0, 1.0, 0.0),
            (90.0, 0.0, 1.0),
            (180.0, -1.0, 0.0),
            (-90.0, 0.0, -1.0),
        ] {
            assert_eq!(
                (cos_degrees(angle), sin_degrees(angle)),
                (c, s),
                "angle {angle}"
            );
        }
        let r = 20f64.to_radians();
        assert!((cos_degrees(20.0) - r.cos()).abs() < 1e-15);
        assert!((sin_degrees(-380.0) + r.sin()).abs() < 1e-15);
    }

    #[test]
    fn mirror_folds_without_repeating_edges() {
        let folded: Vec<usize> = (-3..9).map(|i| mirror_index(i, 4)).collect();
        assert_eq!(folded, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]);
        assert_eq!(mirror_index(3, 2), 1);
        assert_eq!(mirror_index(-1, 1), 0);
    }

    #[test]
    fn cubic_taps_mirror_and_weights_partition_unity() {
        for x in [0.0, 0.25, 0.5, 3.9, 7.0] {
            let (_, w) = cubic_sample(x, 8);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        }
        // At a knot the last weight is a rounding residue, as in scipy (1 - 1/6 - 4/6 - 1/6).
        let (taps, knot) = cubic_sample(2.0, 8);
        assert_eq!(taps, [1, 2, 3, 4]);
        assert_eq!(knot[..3], [1.0 / 6.0, 4.0 / 6.0, 1.0 / 6.0]);
        assert!(knot[3].abs() < 1e-16);
        assert_eq!(cubic_sample(0.5, 3).0, [1, 0, 1, 2]);
        assert_eq!(cubic_sample(2.0, 3).0, [1, 2, 1, 0]);
    }

    #[test]
    fn prefilter_then_interpolate_reproduces_samples() {
        let shape = [6, 5];
        let values: Vec<f64> = (0..30).map(|i| ((i * 17) % 11) as f64).collect();
        let mut coefficients = values.clone();
        spline_prefilter_plane(&mut coefficients, shape);
        let lanes: Vec<Lanes<1>> = coefficients.iter().map(|&c| [c]).collect();
        for y in 0..5 {
            for x in 0..6 {
                let v = sample_cubic(&lanes, 6, [x as f64, y as f64], shape)[0];
                assert!((v - values[x + 6 * y]).abs() < 1e-12, "({x}, {y})");
            }
        }
    }

    #[test]
    fn zero_and_full_turns_keep_values() {
        let v = ramp([9, 7, 20]);
        for angle in [0.0, 360.0] {
            assert!(max_abs_diff(rotate_planes(&v, angle).data(), v.data()) < 1e-6);
        }
    }

    #[test]
    fn four_quarter_turns_are_identity_on_square_planes() {
        let v = ramp([8, 8, 3]);
        let mut r = v.clone();
        for _ in 0..4 {
            r = rotate_planes(&r, 90.0);
        }
        assert!(max_abs_diff(r.data(), v.data()) < 1e-6);
        let quarter = rotate_planes(&v, 90.0);
        // Output (o0, o1) samples input (o1, 7 - o0).
        assert!((quarter.get(2, 5, 1) - v.get(5, 5, 1)).abs() < 1e-6);
        assert!((quarter.get(0, 3, 2) - v.get(3, 7, 2)).abs() < 1e-6);
    }

    #[test]
    fn dispatched_and_portable_blocks_agree_bit_for_bit() {
        let v = ramp([11, 9, WIDE_BLOCK]);
        let rotation = PlaneRotation::new(17.0, [11, 9]);
        let mut dispatched = vec![0.0; v.len()];
        let mut portable = vec![0.0; v.len()];
        rotate_block::<WIDE_BLOCK>(v.data(), &mut dispatched, [11, 9], &rotation, &|x| x);
        rotate_block_portable::<WIDE_BLOCK>(v.data(), &mut portable, [11, 9], &rotation, &|x| x);
        assert!(
            dispatched
                .iter()
                .zip(&portable)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert!(dispatched.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn rotation_keeps_geometry_and_handles_empty_volumes() {
        let mut v = ramp([4, 3, 2]);
        v.spacing = [0.5, 0.7, 2.5];
        assert_eq!(rotate_planes(&v, 17.0).spacing, v.spacing);
        let empty = Volume::new([0, 3, 2], vec![]).unwrap();
        assert!(rotate_planes(&empty, 10.0).is_empty());
    }

    #[test]
    fn unit_factors_return_the_input() {
        let v = Volume::new([3, 1, 2], vec![0.1, f32::NAN, 0.3, 0.4, 0.5, 0.6]).unwrap();
        let z = zoom_linear_factors(&v, [1.0, 1.0, 1.0]);
        assert_eq!(z.shape(), v.shape());
        assert!(
            z.data()
                .iter()
                .zip(v.data())
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn zoom_rounding_edge_zeroes_the_last_plane() {
        // 29 / 7 * 7 > 29 in f64: scipy outputs 0 for the last x index.
        let (last, intervals) = (29.0f64, 7.0f64);
        assert!(last / intervals * intervals > last);
        let v = Volume::filled([30, 2, 2], 1.0);
        let z = zoom_linear(&v, [8, 2, 2]);
        let last_x: Vec<f32> = (0..2)
            .flat_map(|y| (0..2).map(move |k| (y, k)))
            .map(|(y, k)| z.get(7, y, k))
            .collect();
        assert_eq!(last_x, [0.0; 4]);
        assert_eq!(z.get(6, 1, 1), 1.0);
    }

    #[test]
    fn zoom_interpolates_linearly() {
        let v = Volume::from_fn([5, 1, 1], |x, _, _| x as f32);
        let z = zoom_linear(&v, [9, 1, 1]);
        let expected: Vec<f32> = (0..9).map(|k| k as f32 * 0.5).collect();
        assert_eq!(z.data(), expected.as_slice());
        assert_eq!(zoom_output_shape([5, 4, 3], [2.5, 0.125, 1.5]), [12, 0, 4]);
        assert_eq!(
            zoom_output_shape([3, 1, 1], [1.5, f64::NAN, -2.0]),
            [4, 0, 0]
        );
    }
}
