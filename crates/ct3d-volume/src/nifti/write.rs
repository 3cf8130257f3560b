//! Writing: the header nibabel writes for `Nifti1Image(data, affine)` and the voxels, gzipped
//! for `.nii.gz`, atomically ([`write_volume`]).

use super::*;

/// Writes `volume` to `path` atomically; gzip-compressed when the name ends in `.gz`.
///
/// The name must end in `.nii` or `.nii.gz` (any case). See the [module documentation](super) for
/// the header written; [`read_volume`] of the result returns the same shape, spacing, affine (to
/// `f32` precision, as NIfTI-1 stores it) and data (exactly for [`OutputDtype::F32`]).
pub fn write_volume(path: &Path, volume: &Volume, dtype: OutputDtype) -> Result<(), WriteError> {
    write_volume_described(path, volume, dtype, "ct3d")
}

/// [`write_volume`] with `description` in the header's `descrip` field (NIfTI-1 keeps its first
/// 79 bytes; longer text is cut at a character boundary).
pub fn write_volume_described(
    path: &Path,
    volume: &Volume,
    dtype: OutputDtype,
    description: &str,
) -> Result<(), WriteError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let gzip = if name.ends_with(".nii.gz") {
        true
    } else if name.ends_with(".nii") {
        false
    } else {
        return Err(WriteError::UnsupportedName {
            path: path.to_owned(),
        });
    };
    let header = encode_header(volume, dtype, path, description)?;
    let io_err = |source| WriteError::Io {
        path: path.to_owned(),
        source,
    };
    let mut nan_at = None;
    crate::atomic::write_atomic(path, |file| {
        if gzip {
            let mut encoder = GzEncoder::new(file, Compression::new(GZIP_LEVEL));
            write_body(&mut encoder, &header, volume, dtype, &mut nan_at)?;
            encoder.finish().map(drop)
        } else {
            write_body(file, &header, volume, dtype, &mut nan_at)
        }
    })
    .map_err(|source| match nan_at {
        Some(linear) => {
            let [nx, ny, _] = volume.shape();
            WriteError::NanInInteger {
                path: path.to_owned(),
                index: [linear % nx, (linear / nx) % ny, linear / (nx * ny)],
                dtype: match dtype {
                    OutputDtype::U8 => "uint8",
                    OutputDtype::F32 | OutputDtype::I16 => "int16",
                },
            }
        }
        None => io_err(source),
    })
}

// ---------------------------------------------------------------------------------------------
// Writing

/// The 352 bytes before the voxels: header plus the empty extension flag.
pub(super) fn encode_header(
    volume: &Volume,
    dtype: OutputDtype,
    path: &Path,
    description: &str,
) -> Result<[u8; 352], WriteError> {
    let shape = volume.shape();
    let dims = shape.map(|d| i16::try_from(d).ok().filter(|&d| d >= 1));
    let [Some(nx), Some(ny), Some(nz)] = dims else {
        return Err(WriteError::ShapeNotStorable {
            path: path.to_owned(),
            shape,
        });
    };
    let invalid = |reason: String| WriteError::InvalidGeometry {
        path: path.to_owned(),
        reason,
    };
    if let Some(s) = volume
        .spacing
        .iter()
        .find(|s| !(s.is_finite() && **s > 0.0))
    {
        return Err(invalid(format!(
            "voxel size {s} mm is not a positive number"
        )));
    }
    let affine = &volume.affine;
    if affine.iter().flatten().any(|v| !v.is_finite()) {
        return Err(invalid("affine has non-finite entries".to_owned()));
    }
    let qform =
        QformFields::from_affine(affine).ok_or_else(|| invalid("affine is singular".to_owned()))?;

    let (code, bitpix): (i16, i16) = match dtype {
        OutputDtype::F32 => (16, 32),
        OutputDtype::I16 => (4, 16),
        OutputDtype::U8 => (2, 8),
    };
    let mut h = HeaderWriter::default();
    h.i32(0, 348);
    for (k, d) in [3, nx, ny, nz, 1, 1, 1, 1].into_iter().enumerate() {
        h.i16(40 + 2 * k, d);
    }
    h.i16(70, code);
    h.i16(72, bitpix);
    let pixdim = [
        qform.qfac,
        volume.spacing[0] as f32,
        volume.spacing[1] as f32,
        volume.spacing[2] as f32,
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    for (k, p) in pixdim.into_iter().enumerate() {
        h.f32(76 + 4 * k, p);
    }
    h.f32(108, SINGLE_FILE_VOX_OFFSET as f32);
    h.f32(112, 1.0); // scl_slope
    h.f32(116, 0.0); // scl_inter
    h.bytes[123] = 2; // xyzt_units: millimetres, time unknown
    // descrip: 80 bytes, NUL-terminated.
    let mut end = description.len().min(79);
    while !description.is_char_boundary(end) {
        end -= 1;
    }
    h.bytes[148..148 + end].copy_from_slice(&description.as_bytes()[..end]);
    h.i16(252, 0); // qform_code: unknown, as nibabel writes for a new image
    h.i16(254, 2); // sform_code: aligned
    let quaternion = [
        qform.b,
        qform.c,
        qform.d,
        affine[0][3],
        affine[1][3],
        affine[2][3],
    ];
    for (k, q) in quaternion.into_iter().enumerate() {
        h.f32(256 + 4 * k, q as f32);
    }
    for (row, values) in affine[..3].iter().enumerate() {
        for (col, &value) in values.iter().enumerate() {
            h.f32(280 + 16 * row + 4 * col, value as f32);
        }
    }
    h.bytes[344..348].copy_from_slice(b"n+1\0");
    Ok(h.bytes)
}

/// A little-endian header being filled in.
pub(super) struct HeaderWriter {
    pub(super) bytes: [u8; 352],
}

impl Default for HeaderWriter {
    fn default() -> Self {
        Self { bytes: [0; 352] }
    }
}

impl HeaderWriter {
    pub(super) fn i16(&mut self, at: usize, v: i16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub(super) fn i32(&mut self, at: usize, v: i32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub(super) fn f32(&mut self, at: usize, v: f32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// The qform fields nibabel's `set_qform` derives from an affine (written with code 0).
pub(super) struct QformFields {
    pub(super) qfac: f32,
    pub(super) b: f64,
    pub(super) c: f64,
    pub(super) d: f64,
}

impl QformFields {
    /// `None` for a singular affine.
    pub(super) fn from_affine(affine: &Affine) -> Option<Self> {
        let mut r = [[0.0f64; 3]; 3];
        for col in 0..3 {
            let zoom = column_norm(affine, col);
            if zoom == 0.0 {
                return None;
            }
            for row in 0..3 {
                r[row][col] = affine[row][col] / zoom;
            }
        }
        let qfac = if determinant(&r) > 0.0 {
            1.0
        } else {
            for row in &mut r {
                row[2] = -row[2];
            }
            -1.0
        };
        let rotation = closest_orthogonal(&r, false);
        let [w, b, c, d] = rotation_quaternion(&rotation);
        // nibabel stores the quaternion with a non-negative w, which then is implied.
        let sign = if w < 0.0 { -1.0 } else { 1.0 };
        Some(Self {
            qfac,
            b: b * sign,
            c: c * sign,
            d: d * sign,
        })
    }
}

/// Header, then voxels in `x`-fastest order, through a 1 MiB staging buffer. Sets `nan_at` to the
/// linear index of a NaN refused by [`OutputDtype::I16`] or [`OutputDtype::U8`] (and returns an
/// error).
pub(super) fn write_body(
    out: &mut impl Write,
    header: &[u8; 352],
    volume: &Volume,
    dtype: OutputDtype,
    nan_at: &mut Option<usize>,
) -> io::Result<()> {
    out.write_all(header)?;
    const VOXELS_PER_STEP: usize = 1 << 18;
    let mut staging = Vec::with_capacity(VOXELS_PER_STEP * 4);
    for (step, values) in volume.data().chunks(VOXELS_PER_STEP).enumerate() {
        staging.clear();
        match dtype {
            OutputDtype::F32 => values
                .iter()
                .for_each(|v| staging.extend_from_slice(&v.to_le_bytes())),
            OutputDtype::I16 | OutputDtype::U8 => {
                if let Some(k) = values.iter().position(|v| v.is_nan()) {
                    *nan_at = Some(step * VOXELS_PER_STEP + k);
                    return Err(io::Error::other("NaN voxel"));
                }
                // `as` saturates; round() is half away from zero.
                if dtype == OutputDtype::I16 {
                    values
                        .iter()
                        .for_each(|v| staging.extend_from_slice(&(v.round() as i16).to_le_bytes()));
                } else {
                    values.iter().for_each(|v| staging.push(v.round() as u8));
                }
            }
        }
        out.write_all(&staging)?;
    }
    Ok(())
}
