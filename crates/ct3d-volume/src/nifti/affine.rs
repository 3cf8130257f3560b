//! Geometry: nibabel's `get_best_affine()` (sform, qform quaternion or base affine), the
//! quaternion of a rotation for writing, and `aff2axcodes` orientation codes
//! ([`orientation_codes`]), with the 3×3 linear algebra they need.

use glam::DVec3;

use super::*;

/// Anatomical direction of each voxel axis's positive end for `affine`, as nibabel's
/// `aff2axcodes`: `'R'`/`'L'` (world x), `'A'`/`'P'` (world y), `'S'`/`'I'` (world z).
///
/// Like nibabel's `io_orientation`, the 3×3 part is normalised column by column, replaced by its
/// closest orthogonal matrix (polar decomposition via SVD), and voxel axes are matched to world
/// axes strongest first. An axis the affine does not determine (a zero or degenerate column,
/// where nibabel gives `None`), or any non-finite entry, gives `'?'`.
pub fn orientation_codes(affine: &Affine) -> [char; 3] {
    const LABELS: [[char; 2]; 3] = [['L', 'R'], ['P', 'A'], ['I', 'S']];
    let mut codes = ['?'; 3];
    if affine[..3]
        .iter()
        .any(|row| row[..3].iter().any(|v| !v.is_finite()))
    {
        return codes;
    }
    let mut rs = [[0.0f64; 3]; 3];
    for col in 0..3 {
        let zoom = column_norm(affine, col);
        let zoom = if zoom == 0.0 { 1.0 } else { zoom };
        for row in 0..3 {
            rs[row][col] = affine[row][col] / zoom;
        }
    }
    let mut r = closest_orthogonal(&rs, true);

    // Strongest voxel axis first; a stable sort keeps ties in axis order, as nibabel does.
    let strength =
        |r: &[[f64; 3]; 3], col: usize| (0..3).map(|row| r[row][col].powi(2)).fold(0.0, f64::max);
    let mut in_axes = [0usize, 1, 2];
    in_axes.sort_by(|&a, &b| strength(&r, b).total_cmp(&strength(&r, a)));
    for in_ax in in_axes {
        let col = [r[0][in_ax], r[1][in_ax], r[2][in_ax]];
        if col.iter().all(|v| v.abs() <= 1e-8) {
            continue;
        }
        let mut out_ax = 0;
        for row in 1..3 {
            if col[row].abs() > col[out_ax].abs() {
                out_ax = row;
            }
        }
        codes[in_ax] = LABELS[out_ax][usize::from(col[out_ax] >= 0.0)];
        r[out_ax] = [0.0; 3];
    }
    codes
}

/// nibabel's `get_best_affine()` on the fixed header: for NIfTI the sform, qform or base affine;
/// for Analyze SPM's origin affine ([`spm_origin_affine`]).
pub(super) fn best_affine(
    h: &Header,
    pixdim: [f64; 3],
    shape: &[usize; 3],
    path: &Path,
) -> Result<Affine, ReadError> {
    if h.format == Format::Analyze {
        return Ok(spm_origin_affine(h, pixdim, shape));
    }
    let valid = |code: i32| (1..=5).contains(&code);
    if valid(h.sform_code) {
        let [x, y, z] = h.srow;
        return Ok([x, y, z, [0.0, 0.0, 0.0, 1.0]]);
    }
    if valid(h.qform_code) {
        return qform_affine(h, pixdim).map_err(|reason| ReadError::InvalidGeometry {
            path: path.to_owned(),
            reason,
        });
    }
    Ok(base_affine(pixdim, shape))
}

/// nibabel's `Spm99AnalyzeHeader.get_origin_affine()` (which `Spm2AnalyzeHeader` inherits): the
/// voxel sizes on the diagonal with x negated, and the translation putting SPM's 1-based
/// `origin` voxel at the world origin when the origin is set and within `(-dim, 2 * dim)`
/// on every axis; otherwise the base affine (volume centre at the origin).
///
/// nibabel computes the origin translation as `int16 * float32`, i.e. in `f32`, and so does this.
pub(super) fn spm_origin_affine(h: &Header, pixdim: [f64; 3], shape: &[usize; 3]) -> Affine {
    // Analyze dimensions are int16 on disk, so these conversions are exact.
    let dims = [h.dim[1], h.dim[2], h.dim[3]].map(|d| d as i16);
    let origin = h.origin;
    // `dims * 2` wraps in numpy's int16 arithmetic, and so it does here.
    let usable = origin.iter().any(|&o| o != 0)
        && (0..3)
            .all(|k| origin[k] > dims[k].wrapping_neg() && origin[k] < dims[k].wrapping_mul(2));
    if !usable {
        return base_affine(pixdim, shape);
    }
    // The fixed pixdims came from f32 fields, so narrowing them back is exact.
    let zooms = [-(pixdim[0] as f32), pixdim[1] as f32, pixdim[2] as f32];
    let mut affine = IDENTITY;
    for axis in 0..3 {
        affine[axis][axis] = f64::from(zooms[axis]);
        let voxel = origin[axis].wrapping_sub(1).wrapping_neg();
        affine[axis][3] = f64::from(f32::from(voxel) * zooms[axis]);
    }
    affine
}

/// The qform: rotation from the quaternion, times `diag(pixdim[1], pixdim[2], qfac * pixdim[3])`,
/// plus the offsets.
pub(super) fn qform_affine(h: &Header, pixdim: [f64; 3]) -> Result<Affine, String> {
    let [b, c, d] = h.quatern;
    let w2 = 1.0 - (b * b + c * c + d * d);
    // nibabel's threshold follows the precision the quaternion is stored in.
    let threshold = match h.format {
        Format::Nifti2 => f64::EPSILON * 3.0,
        _ => f64::from(f32::EPSILON) * 3.0,
    };
    let a = if w2.abs() < threshold {
        0.0
    } else if w2 < 0.0 || !w2.is_finite() {
        return Err(format!(
            "qform quaternion (b, c, d) = ({b}, {c}, {d}) has norm above 1"
        ));
    } else {
        w2.sqrt()
    };
    let rotation = quaternion_matrix(a, b, c, d);
    let qfac = if h.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
    let zooms = [pixdim[0], pixdim[1], pixdim[2] * qfac];
    let offsets = h.qoffset;
    let mut affine = IDENTITY;
    for row in 0..3 {
        for col in 0..3 {
            affine[row][col] = rotation[row][col] * zooms[col];
        }
        affine[row][3] = offsets[row];
    }
    Ok(affine)
}

/// Rotation matrix of quaternion `(w, x, y, z)` (need not be normalised), as nibabel's `quat2mat`.
pub(super) fn quaternion_matrix(w: f64, x: f64, y: f64, z: f64) -> [[f64; 3]; 3] {
    let nq = w * w + x * x + y * y + z * z;
    if nq < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / nq;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

/// nibabel's `shape_zoom_affine(shape, zooms, x_flip=True)`: voxel sizes on the diagonal, x
/// negated, the volume centre at the world origin.
pub(super) fn base_affine(pixdim: [f64; 3], shape: &[usize; 3]) -> Affine {
    let mut affine = IDENTITY;
    for axis in 0..3 {
        let zoom = pixdim[axis] * if axis == 0 { -1.0 } else { 1.0 };
        let origin = (shape[axis] as f64 - 1.0) / 2.0;
        affine[axis][axis] = zoom;
        affine[axis][3] = -origin * zoom;
    }
    affine
}

pub(super) const IDENTITY: Affine = crate::volume::IDENTITY_AFFINE;

/// Quaternion `[w, x, y, z]` of a proper rotation matrix (Shepperd's method).
pub(super) fn rotation_quaternion(m: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = m[0][0] + m[1][1] + m[2][2];
    if trace > 0.0 {
        let s = (trace + 1.0).sqrt() * 2.0;
        [
            0.25 * s,
            (m[2][1] - m[1][2]) / s,
            (m[0][2] - m[2][0]) / s,
            (m[1][0] - m[0][1]) / s,
        ]
    } else if m[0][0] > m[1][1] && m[0][0] > m[2][2] {
        let s = (1.0 + m[0][0] - m[1][1] - m[2][2]).sqrt() * 2.0;
        [
            (m[2][1] - m[1][2]) / s,
            0.25 * s,
            (m[0][1] + m[1][0]) / s,
            (m[0][2] + m[2][0]) / s,
        ]
    } else if m[1][1] > m[2][2] {
        let s = (1.0 + m[1][1] - m[0][0] - m[2][2]).sqrt() * 2.0;
        [
            (m[0][2] - m[2][0]) / s,
            (m[0][1] + m[1][0]) / s,
            0.25 * s,
            (m[1][2] + m[2][1]) / s,
        ]
    } else {
        let s = (1.0 + m[2][2] - m[0][0] - m[1][1]).sqrt() * 2.0;
        [
            (m[1][0] - m[0][1]) / s,
            (m[0][2] + m[2][0]) / s,
            (m[1][2] + m[2][1]) / s,
            0.25 * s,
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 3×3 linear algebra

/// Column `col` of the affine's 3×3 part: where one voxel step along that axis goes, in mm.
pub(super) fn column(affine: &Affine, col: usize) -> DVec3 {
    DVec3::new(affine[0][col], affine[1][col], affine[2][col])
}

/// The length of [`column`] `col` in mm (the voxel size along that axis).
pub(super) fn column_norm(affine: &Affine, col: usize) -> f64 {
    column(affine, col).length()
}

pub(super) fn determinant(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// The orthogonal factor `U Vᵀ` of `m = U S Vᵀ` (one-sided Jacobi SVD). With `drop_null`, singular
/// directions whose value is below numpy's rank tolerance (`max(S) * 3 * eps`) are left out, as
/// nibabel's `io_orientation` does.
pub(super) fn closest_orthogonal(m: &[[f64; 3]; 3], drop_null: bool) -> [[f64; 3]; 3] {
    // Columns of `a` converge to U·S, columns of `v` to V.
    let mut a = *m;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..64 {
        let mut rotated = false;
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            let alpha: f64 = (0..3).map(|i| a[i][p] * a[i][p]).sum();
            let beta: f64 = (0..3).map(|i| a[i][q] * a[i][q]).sum();
            let gamma: f64 = (0..3).map(|i| a[i][p] * a[i][q]).sum();
            if gamma == 0.0 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                continue;
            }
            rotated = true;
            let zeta = (beta - alpha) / (2.0 * gamma);
            let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
            let c = 1.0 / (1.0 + t * t).sqrt();
            let s = c * t;
            for mat in [&mut a, &mut v] {
                for row in mat.iter_mut() {
                    let (xp, xq) = (row[p], row[q]);
                    row[p] = c * xp - s * xq;
                    row[q] = s * xp + c * xq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let singular: [f64; 3] =
        std::array::from_fn(|k| (0..3).map(|i| a[i][k] * a[i][k]).sum::<f64>().sqrt());
    let largest = singular.iter().copied().fold(0.0, f64::max);
    let tolerance = if drop_null {
        largest * 3.0 * f64::EPSILON
    } else {
        0.0
    };
    let mut r = [[0.0f64; 3]; 3];
    for k in (0..3).filter(|&k| singular[k] > tolerance) {
        for row in 0..3 {
            for col in 0..3 {
                r[row][col] += a[row][k] / singular[k] * v[col][k];
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quaternion_round_trips_through_matrix() {
        // 30° about an oblique axis.
        let (w, x, y, z): (f64, f64, f64, f64) = (0.9659258262890683, 0.1494292, 0.0747146, 0.1868);
        let n = (w * w + x * x + y * y + z * z).sqrt();
        let m = quaternion_matrix(w / n, x / n, y / n, z / n);
        let q = rotation_quaternion(&m);
        for (got, want) in q.iter().zip([w / n, x / n, y / n, z / n]) {
            assert!((got - want).abs() < 1e-12, "{q:?}");
        }
    }

    #[test]
    fn closest_orthogonal_removes_shear() {
        let sheared = [[1.0, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let r = closest_orthogonal(&sheared, false);
        for i in 0..3 {
            for j in 0..3 {
                let dot: f64 = (0..3).map(|k| r[k][i] * r[k][j]).sum();
                assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
        assert!(determinant(&r) > 0.0);
    }
}
