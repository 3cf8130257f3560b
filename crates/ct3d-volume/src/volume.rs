//! The in-memory CT volume every ct3d stage passes around.
//!
//! A [`Volume`] is a dense 3-D grid of `f32` values with the geometry needed to place it in the
//! scanner's world. Its index order is nibabel's `get_fdata()` order, `[x, y, z]`; its memory order
//! is NIfTI's on-disk order, `x` fastest then `y` then `z` (Fortran order), so reading a file never
//! transposes and `volume.get(x, y, z)` equals `nib.load(f).get_fdata()[x, y, z]`.

use std::path::PathBuf;

/// A 4×4 voxel-to-world matrix in millimetres (row-major: `affine[row][col]`), mapping
/// `[x, y, z, 1]` voxel indices to RAS+ world coordinates as NIfTI defines them.
pub type Affine = [[f64; 4]; 4];

/// The identity affine: 1 mm isotropic voxels at the world origin.
pub const IDENTITY_AFFINE: Affine = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// Where a volume came from, kept for messages and `ct3d info`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Provenance {
    /// The file the volume was read from, if any.
    pub path: Option<PathBuf>,
    /// The on-disk datatype as NIfTI names it (`"int16"`, `"float32"`, ...), if read from a file.
    pub datatype: Option<String>,
}

/// A 3-D scalar volume.
///
/// - `data`: `shape[0] * shape[1] * shape[2]` values, `x` fastest. For raw CT these are Hounsfield
///   units (scaling already applied); after preprocessing they are in `[0, 1]`.
/// - `shape`: `[x, y, z]` in voxels.
/// - `spacing`: voxel size along `[x, y, z]` in millimetres (absolute values of `pixdim[1..4]`).
/// - `affine`: voxel-to-world matrix (sform if its code is set, else qform, else from `pixdim`).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    data: Vec<f32>,
    shape: [usize; 3],
    /// Voxel size along `[x, y, z]` in millimetres.
    pub spacing: [f64; 3],
    /// Voxel-to-world matrix in millimetres.
    pub affine: Affine,
    /// Where the volume came from.
    pub provenance: Provenance,
}

/// A shape and data length that do not agree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shape {shape:?} needs {expected} voxels but {actual} were given")]
pub struct ShapeMismatch {
    /// The requested `[x, y, z]` shape.
    pub shape: [usize; 3],
    /// `shape[0] * shape[1] * shape[2]`.
    pub expected: usize,
    /// The data length supplied.
    pub actual: usize,
}

impl Volume {
    /// Wraps `data` (`x` fastest) of the given `[x, y, z]` shape, with 1 mm voxels and an identity
    /// affine.
    pub fn new(shape: [usize; 3], data: Vec<f32>) -> Result<Self, ShapeMismatch> {
        let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        match expected {
            Some(expected) if expected == data.len() => Ok(Self {
                data,
                shape,
                spacing: [1.0; 3],
                affine: IDENTITY_AFFINE,
                provenance: Provenance::default(),
            }),
            _ => Err(ShapeMismatch {
                shape,
                expected: expected.unwrap_or(usize::MAX),
                actual: data.len(),
            }),
        }
    }

    /// A volume of `shape` filled with `value`.
    pub fn filled(shape: [usize; 3], value: f32) -> Self {
        let len = shape[0] * shape[1] * shape[2];
        Self::new(shape, vec![value; len]).expect("length computed from shape")
    }

    /// Builds a volume by evaluating `f(x, y, z)` at every voxel.
    pub fn from_fn(shape: [usize; 3], mut f: impl FnMut(usize, usize, usize) -> f32) -> Self {
        let mut data = Vec::with_capacity(shape[0] * shape[1] * shape[2]);
        for z in 0..shape[2] {
            for y in 0..shape[1] {
                for x in 0..shape[0] {
                    data.push(f(x, y, z));
                }
            }
        }
        Self::new(shape, data).expect("length computed from shape")
    }

    /// Returns a copy of this volume's geometry and provenance around new data of a new shape.
    pub fn with_data(&self, shape: [usize; 3], data: Vec<f32>) -> Result<Self, ShapeMismatch> {
        let mut out = Self::new(shape, data)?;
        out.spacing = self.spacing;
        out.affine = self.affine;
        out.provenance = self.provenance.clone();
        Ok(out)
    }

    /// `[x, y, z]` in voxels.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a volume with no voxels (never produced by the readers).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The voxel values, `x` fastest.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable voxel values, `x` fastest.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the volume, returning its values (`x` fastest).
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Linear index of voxel `(x, y, z)`.
    #[inline]
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        x + self.shape[0] * (y + self.shape[1] * z)
    }

    /// The value at voxel `(x, y, z)`. Panics when out of bounds, like slice indexing.
    #[inline]
    pub fn get(&self, x: usize, y: usize, z: usize) -> f32 {
        self.data[self.index(x, y, z)]
    }

    /// The value at `position` (voxel coordinates `[x, y, z]`, each clamped into the grid),
    /// interpolated linearly along each axis between the two nearest voxels.
    pub fn sample_linear(&self, position: [f64; 3]) -> f32 {
        let mut taps = [(0usize, 0usize, 0.0f64); 3];
        for (k, tap) in taps.iter_mut().enumerate() {
            let last = self.shape[k].saturating_sub(1);
            let p = position[k].clamp(0.0, last as f64);
            let low = (p.floor() as usize).min(last);
            *tap = (low, (low + 1).min(last), p - low as f64);
        }
        let [(x0, x1, fx), (y0, y1, fy), (z0, z1, fz)] = taps;
        let v = |x, y, z| f64::from(self.get(x, y, z));
        let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
        let plane = |z| {
            lerp(
                lerp(v(x0, y0, z), v(x1, y0, z), fx),
                lerp(v(x0, y1, z), v(x1, y1, z), fx),
                fy,
            )
        };
        lerp(plane(z0), plane(z1), fz) as f32
    }

    /// Minimum, maximum and mean of the finite values, or `None` if there are none.
    pub fn stats(&self) -> Option<VolumeStats> {
        let mut min = f32::INFINITY;
        let mut max = f32::NEG_INFINITY;
        let mut sum = 0.0f64;
        let mut count = 0usize;
        for &v in self.data.iter().filter(|v| v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
            sum += f64::from(v);
            count += 1;
        }
        (count > 0).then(|| VolumeStats {
            min,
            max,
            mean: sum / count as f64,
            non_finite: self.data.len() - count,
        })
    }
}

/// Summary statistics of a volume's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VolumeStats {
    /// Smallest finite value.
    pub min: f32,
    /// Largest finite value.
    pub max: f32,
    /// Mean of the finite values.
    pub mean: f64,
    /// How many values were NaN or infinite.
    pub non_finite: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_x_fastest() {
        let v = Volume::from_fn([2, 3, 4], |x, y, z| (x + 10 * y + 100 * z) as f32);
        assert_eq!(v.data()[1], 1.0);
        assert_eq!(v.data()[2], 10.0);
        assert_eq!(v.data()[6], 100.0);
        assert_eq!(v.get(1, 2, 3), 321.0);
    }

    #[test]
    fn new_rejects_wrong_length() {
        let err = Volume::new([2, 2, 2], vec![0.0; 7]).unwrap_err();
        assert_eq!(err.expected, 8);
        assert_eq!(err.actual, 7);
    }

    #[test]
    fn stats_skip_non_finite() {
        let v = Volume::new([4, 1, 1], vec![1.0, f32::NAN, 3.0, f32::INFINITY]).unwrap();
        let s = v.stats().unwrap();
        assert_eq!((s.min, s.max, s.mean, s.non_finite), (1.0, 3.0, 2.0, 2));
    }
}
