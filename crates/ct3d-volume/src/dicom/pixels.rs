//! Pass 3: decoding each slice's pixels (in parallel) through the modality LUT into Hounsfield
//! units, placed as the geometry says.

use super::*;

pub(super) fn decode(dir: &Path, geometry: Geometry<'_>) -> Result<Volume, DicomError> {
    let [nx, ny, nz] = geometry.shape;
    let plane = nx * ny;
    let mut data = vec![0f32; plane * nz];
    let results: Vec<Result<(), DicomError>> = data
        .par_chunks_mut(plane)
        .zip(&geometry.slices)
        .map(|(out, slice)| decode_slice(dir, slice, out))
        .collect();
    results.into_iter().collect::<Result<(), _>>()?;
    let datatype = geometry.slices[0].datatype;
    let mut volume = Volume::new(geometry.shape, data).expect("buffer sized from the shape");
    volume.spacing = geometry.spacing;
    volume.affine = geometry.affine;
    volume.provenance = Provenance {
        path: Some(dir.to_owned()),
        datatype: Some(format!("dicom {datatype}")),
    };
    Ok(volume)
}

/// Decodes one slice into `out` (`x` fastest, rows reversed), in Hounsfield units.
pub(super) fn decode_slice(
    dir: &Path,
    slice: &Slice<'_>,
    out: &mut [f32],
) -> Result<(), DicomError> {
    let header = slice.header;
    let decode_error = |detail: String| DicomError::Decode {
        path: dir.to_owned(),
        file: header.name.clone(),
        detail,
    };
    if !TransferSyntaxRegistry
        .get(&header.transfer_syntax)
        .is_some_and(|ts| ts.can_decode_all())
    {
        return Err(unsupported_ts(dir, &header.name, &header.transfer_syntax));
    }
    let object = dicom_object::open_file(&header.path).map_err(|e| DicomError::ReadFile {
        path: dir.to_owned(),
        file: header.name.clone(),
        detail: error_chain(&e),
    })?;
    if object
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_none()
    {
        return Err(decode_error("no PixelData".to_owned()));
    }
    let pixels = object
        .decode_pixel_data()
        .map_err(|e| decode_error(error_chain(&e)))?;
    let (rows, columns) = (pixels.rows() as usize, pixels.columns() as usize);
    if (rows, columns) != (slice.rows, slice.columns) || pixels.number_of_frames() != 1 {
        return Err(decode_error(format!(
            "decoded {columns}×{rows}×{} pixels, the header says {}×{}×1",
            pixels.number_of_frames(),
            slice.columns,
            slice.rows
        )));
    }
    let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let stored: Vec<f64> = pixels
        .to_vec_frame_with_options(0, &options)
        .map_err(|e| decode_error(error_chain(&e)))?;
    if stored.len() != rows * columns {
        return Err(decode_error(format!(
            "decoded {} values for {columns}×{rows} pixels",
            stored.len()
        )));
    }
    let (slope, intercept) = (slice.slope, slice.intercept);
    for (row, values) in stored.chunks_exact(columns).enumerate() {
        let y = rows - 1 - row;
        for (o, &v) in out[y * columns..(y + 1) * columns].iter_mut().zip(values) {
            *o = (v * slope + intercept) as f32;
        }
    }
    Ok(())
}

/// An error and its sources as one line (`a: b: c`), repeated messages dropped.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ").replace('\n', " ")
}
