//! Pass 1: the headers of every DICOM file in a folder (no pixel data), grouped by series, and
//! typed access to their attributes.

use super::*;

/// A DICOM image file's attributes, read up to (not including) its pixel data.
pub(super) struct Header {
    pub(super) path: PathBuf,
    pub(super) name: String,
    pub(super) object: DefaultDicomObject,
    pub(super) series_uid: String,
    pub(super) transfer_syntax: String,
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Every DICOM image header in `dir`, sorted by file name.
pub(super) fn read_headers(dir: &Path) -> Result<Vec<Header>, DicomError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(DicomError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DicomError::NotFound {
                path: dir.to_owned(),
            });
        }
        Err(source) => {
            return Err(DicomError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    }
    let files = dicom_files(dir).map_err(|source| DicomError::Io {
        path: dir.to_owned(),
        source,
    })?;
    if files.is_empty() {
        return Err(DicomError::NoDicomFiles {
            path: dir.to_owned(),
        });
    }
    let count = files.len();
    let read: Vec<Result<Option<Header>, DicomError>> = files
        .into_par_iter()
        .map(|path| read_header(dir, path))
        .collect();
    let mut headers = Vec::with_capacity(count);
    for result in read {
        if let Some(header) = result? {
            headers.push(header);
        }
    }
    if headers.is_empty() {
        return Err(DicomError::NoImages {
            path: dir.to_owned(),
            files: count,
        });
    }
    Ok(headers)
}

/// The header of one DICOM file, or `None` for a DICOM object that is not an image.
pub(super) fn read_header(dir: &Path, path: PathBuf) -> Result<Option<Header>, DicomError> {
    let name = file_name(&path);
    // Declared lengths are checked against the file before dicom-rs allocates them (see
    // `lengths`); a file that cannot be read here fails in the parser below with its own error.
    if let Ok(bytes) = std::fs::read(&path)
        && let Err(detail) = super::lengths::check(&bytes)
    {
        return Err(DicomError::ReadFile {
            path: dir.to_owned(),
            file: name,
            detail,
        });
    }
    let object = match OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(&path)
    {
        Ok(object) => object,
        Err(e) => {
            // Name the transfer syntax when it is what stopped the parser.
            if let Some(uid) = transfer_syntax_of(&path)
                && !TransferSyntaxRegistry
                    .get(&uid)
                    .is_some_and(|ts| ts.can_decode_dataset())
            {
                return Err(unsupported_ts(dir, &name, &uid));
            }
            return Err(DicomError::ReadFile {
                path: dir.to_owned(),
                file: name,
                detail: error_chain(&e),
            });
        }
    };
    let meta = object.meta();
    if trim_uid(meta.media_storage_sop_class_uid()) == MEDIA_STORAGE_DIRECTORY
        || object.element_opt(tags::ROWS).ok().flatten().is_none()
    {
        tracing::debug!("{}: DICOM object without an image, skipped", path.display());
        return Ok(None);
    }
    let transfer_syntax = trim_uid(meta.transfer_syntax()).to_owned();
    let series_uid = string(&object, tags::SERIES_INSTANCE_UID)
        .map(|s| trim_uid(&s).to_owned())
        .unwrap_or_default();
    Ok(Some(Header {
        path,
        name,
        object,
        series_uid,
        transfer_syntax,
    }))
}

/// The transfer syntax UID in a file's meta group, if it can be read.
pub(super) fn transfer_syntax_of(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(128)).ok()?;
    let meta = FileMetaTable::from_reader(io::BufReader::new(file)).ok()?;
    Some(trim_uid(meta.transfer_syntax()).to_owned())
}

pub(super) fn unsupported_ts(dir: &Path, file: &str, uid: &str) -> DicomError {
    let name = TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_owned())
        .unwrap_or_else(|| "unknown transfer syntax".to_owned());
    DicomError::UnsupportedTransferSyntax {
        path: dir.to_owned(),
        file: file.to_owned(),
        uid: uid.to_owned(),
        name,
    }
}

pub(super) fn trim_uid(uid: &str) -> &str {
    uid.trim_matches(|c: char| c == '\0' || c.is_whitespace())
}

/// The headers grouped by series UID (sorted), each group in file-name order.
pub(super) fn group(headers: &[Header]) -> BTreeMap<&str, Vec<&Header>> {
    let mut groups: BTreeMap<&str, Vec<&Header>> = BTreeMap::new();
    for header in headers {
        groups.entry(&header.series_uid).or_default().push(header);
    }
    groups
}

pub(super) fn info_of(members: &[&Header]) -> SeriesInfo {
    let first = members[0];
    let description = string(&first.object, tags::SERIES_DESCRIPTION)
        .map(|s| {
            s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        })
        .unwrap_or_default();
    SeriesInfo {
        uid: first.series_uid.clone(),
        description,
        slices: members.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// Attribute access

pub(super) fn string(object: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let element = object.element_opt(tag).ok()??;
    element.to_str().ok().map(|s| s.into_owned())
}

/// The attribute's numbers: `Ok(None)` when absent or empty, `Err` when unreadable.
pub(super) fn numbers(object: &DefaultDicomObject, tag: Tag) -> Result<Option<Vec<f64>>, String> {
    let Some(element) = object.element_opt(tag).ok().flatten() else {
        return Ok(None);
    };
    let values = match element.to_multi_float64() {
        Ok(values) => values,
        Err(_)
            if element
                .to_str()
                .is_ok_and(|s| s.trim_matches(|c: char| c == '\0' || c == ' ').is_empty()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(format!("unreadable {}: {e}", tag_name(tag))),
    };
    if values.iter().any(|v| !v.is_finite()) {
        return Err(format!("{} {values:?} is not finite", tag_name(tag)));
    }
    Ok((!values.is_empty()).then_some(values))
}

pub(super) fn tag_name(tag: Tag) -> &'static str {
    match tag {
        tags::ROWS => "Rows",
        tags::COLUMNS => "Columns",
        tags::IMAGE_POSITION_PATIENT => "ImagePositionPatient",
        tags::IMAGE_ORIENTATION_PATIENT => "ImageOrientationPatient",
        tags::PIXEL_SPACING => "PixelSpacing",
        tags::RESCALE_SLOPE => "RescaleSlope",
        tags::RESCALE_INTERCEPT => "RescaleIntercept",
        tags::SLICE_THICKNESS => "SliceThickness",
        tags::NUMBER_OF_FRAMES => "NumberOfFrames",
        tags::SAMPLES_PER_PIXEL => "SamplesPerPixel",
        tags::BITS_ALLOCATED => "BitsAllocated",
        _ => "attribute",
    }
}
