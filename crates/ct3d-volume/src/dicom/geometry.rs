//! Pass 2: the series' geometry: slices ordered along the slice normal, spacing and gaps checked
//! against the consistency policy, and the affine `dcm2niix` writes.

use glam::DVec3;

use super::*;

/// What one slice contributes: its place, size and rescaling.
pub(super) struct Slice<'a> {
    pub(super) header: &'a Header,
    pub(super) rows: usize,
    pub(super) columns: usize,
    pub(super) position: DVec3,
    pub(super) orientation: [f64; 6],
    /// `[Δrow, Δcol]` as DICOM stores it.
    pub(super) pixel_spacing: [f64; 2],
    pub(super) thickness: Option<f64>,
    pub(super) slope: f64,
    pub(super) intercept: f64,
    pub(super) datatype: &'static str,
}

impl<'a> Slice<'a> {
    pub(super) fn of(dir: &Path, header: &'a Header) -> Result<Self, DicomError> {
        let object = &header.object;
        let bad = |detail: String| DicomError::BadAttribute {
            path: dir.to_owned(),
            file: header.name.clone(),
            detail,
        };
        let unsupported = |what: String| DicomError::Unsupported {
            path: dir.to_owned(),
            file: header.name.clone(),
            what,
        };
        let sop_class = string(object, tags::SOP_CLASS_UID)
            .map(|s| trim_uid(&s).to_owned())
            .unwrap_or_else(|| trim_uid(object.meta().media_storage_sop_class_uid()).to_owned());
        if ENHANCED_SOP_CLASSES.contains(&sop_class.as_str()) {
            return Err(unsupported(format!(
                "enhanced multi-frame image storage (SOP class {sop_class})"
            )));
        }
        let frames = numbers(object, tags::NUMBER_OF_FRAMES)
            .map_err(bad)?
            .map_or(1.0, |v| v[0]);
        if frames != 1.0 {
            return Err(unsupported(format!(
                "a multi-frame image ({frames} frames; ct3d reads series of single-frame slices)"
            )));
        }
        let samples = numbers(object, tags::SAMPLES_PER_PIXEL)
            .map_err(bad)?
            .map_or(1.0, |v| v[0]);
        if samples != 1.0 {
            return Err(unsupported(format!(
                "a colour image ({samples} samples per pixel)"
            )));
        }
        let size = |tag| -> Result<usize, DicomError> {
            match numbers(object, tag).map_err(bad)? {
                Some(v) if v[0] >= 1.0 && v[0] <= 65535.0 && v[0].fract() == 0.0 => {
                    Ok(v[0] as usize)
                }
                Some(v) => Err(bad(format!("invalid {} {}", tag_name(tag), v[0]))),
                None => Err(bad(format!("no {}", tag_name(tag)))),
            }
        };
        let rows = size(tags::ROWS)?;
        let columns = size(tags::COLUMNS)?;
        let exactly = |tag, n: usize| -> Result<Vec<f64>, DicomError> {
            match numbers(object, tag).map_err(bad)? {
                Some(v) if v.len() == n => Ok(v),
                Some(v) => Err(bad(format!(
                    "{} has {} values, expected {n}",
                    tag_name(tag),
                    v.len()
                ))),
                None => Err(bad(format!(
                    "no {} (ct3d needs the slice geometry)",
                    tag_name(tag)
                ))),
            }
        };
        let position = exactly(tags::IMAGE_POSITION_PATIENT, 3)?;
        let orientation = exactly(tags::IMAGE_ORIENTATION_PATIENT, 6)?;
        let pixel_spacing = exactly(tags::PIXEL_SPACING, 2)?;
        if pixel_spacing.iter().any(|&s| s <= 0.0) {
            return Err(bad(format!(
                "PixelSpacing {pixel_spacing:?} must be positive"
            )));
        }
        let thickness = numbers(object, tags::SLICE_THICKNESS)
            .ok()
            .flatten()
            .map(|v| v[0])
            .filter(|&t| t > 0.0);
        let scalar = |tag, default: f64| -> Result<f64, DicomError> {
            Ok(numbers(object, tag).map_err(bad)?.map_or(default, |v| v[0]))
        };
        let slope = scalar(tags::RESCALE_SLOPE, 1.0)?;
        let intercept = scalar(tags::RESCALE_INTERCEPT, 0.0)?;
        let bits = scalar(tags::BITS_ALLOCATED, 16.0)?;
        let signed = scalar(tags::PIXEL_REPRESENTATION, 0.0)? == 1.0;
        let datatype = match (bits as u32, signed) {
            (8, false) => "uint8",
            (8, true) => "int8",
            (16, false) => "uint16",
            (16, true) => "int16",
            (b, _) => {
                return Err(unsupported(format!(
                    "BitsAllocated {b} (ct3d reads 8- and 16-bit images)"
                )));
            }
        };
        Ok(Self {
            header,
            rows,
            columns,
            position: DVec3::new(position[0], position[1], position[2]),
            orientation: std::array::from_fn(|i| orientation[i]),
            pixel_spacing: [pixel_spacing[0], pixel_spacing[1]],
            thickness,
            slope,
            intercept,
            datatype,
        })
    }
}

/// The checked, ordered series.
pub(super) struct Geometry<'a> {
    pub(super) slices: Vec<Slice<'a>>,
    pub(super) shape: [usize; 3],
    pub(super) spacing: [f64; 3],
    pub(super) affine: crate::Affine,
}

impl<'a> Geometry<'a> {
    pub(super) fn of(dir: &Path, mut slices: Vec<Slice<'a>>) -> Result<Self, DicomError> {
        let inconsistent = |detail: String| DicomError::Inconsistent {
            path: dir.to_owned(),
            detail,
        };
        let first = &slices[0];
        for other in &slices[1..] {
            if (other.rows, other.columns) != (first.rows, first.columns) {
                return Err(inconsistent(format!(
                    "{} is {}×{} pixels but {} is {}×{}",
                    first.header.name,
                    first.columns,
                    first.rows,
                    other.header.name,
                    other.columns,
                    other.rows
                )));
            }
            if first
                .orientation
                .iter()
                .zip(&other.orientation)
                .any(|(a, b)| (a - b).abs() > 1e-4)
            {
                return Err(inconsistent(format!(
                    "{} has ImageOrientationPatient {:?} but {} has {:?}",
                    first.header.name, first.orientation, other.header.name, other.orientation
                )));
            }
            if first
                .pixel_spacing
                .iter()
                .zip(&other.pixel_spacing)
                .any(|(a, b)| (a - b).abs() > 1e-4 * a.abs().max(b.abs()))
            {
                return Err(inconsistent(format!(
                    "{} has PixelSpacing {:?} but {} has {:?}",
                    first.header.name, first.pixel_spacing, other.header.name, other.pixel_spacing
                )));
            }
        }
        let o = first.orientation;
        let row_dir = DVec3::new(o[0], o[1], o[2]);
        let col_dir = DVec3::new(o[3], o[4], o[5]);
        let normal = row_dir.cross(col_dir);
        if (row_dir.length() - 1.0).abs() > 1e-2
            || (col_dir.length() - 1.0).abs() > 1e-2
            || row_dir.dot(col_dir).abs() > 1e-2
        {
            return Err(DicomError::BadAttribute {
                path: dir.to_owned(),
                file: first.header.name.clone(),
                detail: format!("ImageOrientationPatient {o:?} is not two orthogonal unit vectors"),
            });
        }
        // Divided, not multiplied by the reciprocal as `normalize` does: the bits stay dcm2niix's.
        let normal = normal / normal.length();
        let along = |s: &Slice<'_>| s.position.dot(normal);
        slices.sort_by(|a, b| along(a).total_cmp(&along(b)));
        let distances: Vec<f64> = slices
            .windows(2)
            .map(|w| along(&w[1]) - along(&w[0]))
            .collect();
        for (w, &d) in slices.windows(2).zip(&distances) {
            if d < DUPLICATE_MM {
                return Err(DicomError::DuplicatePosition {
                    path: dir.to_owned(),
                    first: w[0].header.name.clone(),
                    second: w[1].header.name.clone(),
                    position: along(&w[0]),
                });
            }
        }
        let [rows, columns, count] = [slices[0].rows, slices[0].columns, slices.len()];
        let slice_spacing = if distances.is_empty() {
            slices[0].thickness.unwrap_or(1.0)
        } else {
            let mut sorted = distances.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let tolerance = (GAP_TOLERANCE_FRACTION * median).max(GAP_TOLERANCE_MM);
            let mut worst = 0.0f64;
            for (w, &d) in slices.windows(2).zip(&distances) {
                if (d - median).abs() > tolerance {
                    return Err(DicomError::Gap {
                        path: dir.to_owned(),
                        first: w[0].header.name.clone(),
                        second: w[1].header.name.clone(),
                        distance: d,
                        median,
                    });
                }
                worst = worst.max((d - median).abs());
            }
            if worst > WARN_MM {
                tracing::warn!(
                    "{}: slice distances differ from their median {median:.4} mm by up to \
                     {worst:.4} mm",
                    dir.display()
                );
            }
            median
        };
        if (columns as u64) * (rows as u64) * (count as u64) > crate::nifti::MAX_VOXELS {
            return Err(DicomError::TooLarge {
                path: dir.to_owned(),
                columns,
                rows,
                slices: count,
            });
        }
        let [d_row, d_col] = slices[0].pixel_spacing;
        let first = slices[0].position;
        let step = if count > 1 {
            let last = slices[count - 1].position;
            (last - first) / (count - 1) as f64
        } else {
            normal * slice_spacing
        };
        // LPS world of voxel (x, y, z): first + x·Δcol·r + (rows−1−y)·Δrow·c + z·step.
        let x_axis = row_dir * d_col;
        let y_axis = -col_dir * d_row;
        let origin = first + col_dir * ((rows - 1) as f64 * d_row);
        let mut affine = [[0.0; 4]; 4];
        for i in 0..3 {
            let sign = if i < 2 { -1.0 } else { 1.0 };
            affine[i] = [
                sign * x_axis[i],
                sign * y_axis[i],
                sign * step[i],
                sign * origin[i],
            ];
        }
        affine[3] = [0.0, 0.0, 0.0, 1.0];
        Ok(Self {
            slices,
            shape: [columns, rows, count],
            spacing: [d_col, d_row, slice_spacing],
            affine,
        })
    }
}
