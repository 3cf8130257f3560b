//! DICOM series input: series written here with dicom-rs, and (when `../shared/realdata` is
//! present) a real JPEG 2000 series against its dcm2niix conversion.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ct3d_volume::Volume;
use ct3d_volume::cache::{PrepareOptions, prepare_default};
use ct3d_volume::dataset::Dataset;
use ct3d_volume::dicom::{DicomError, list_series, read_dicom_series};
use ct3d_volume::nifti_io::{self, OutputDtype};
use ct3d_volume::preprocess::PreprocessParams;
use ct3d_volume::scan::{ScanError, read_scan};
use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];

// ---------------------------------------------------------------------------------------------
// Writing DICOM slices

/// One slice to write.
#[derive(Clone)]
pub(crate) struct SliceSpec {
    rows: usize,
    columns: usize,
    position: [f64; 3],
    orientation: [f64; 6],
    /// `[row spacing, column spacing]`, DICOM order.
    pixel_spacing: [f64; 2],
    slope: Option<f64>,
    intercept: Option<f64>,
    series_uid: String,
    description: String,
    instance_number: i32,
    thickness: Option<f64>,
    frames: Option<u32>,
    /// Stored values, row by row.
    stored: Vec<i16>,
}

impl SliceSpec {
    fn new(rows: usize, columns: usize, position: [f64; 3]) -> Self {
        Self {
            rows,
            columns,
            position,
            orientation: AXIAL,
            pixel_spacing: [0.7, 0.6],
            slope: None,
            intercept: Some(-1024.0),
            series_uid: "1.2.826.0.1.3680043.2.1125.1".to_owned(),
            description: "AXIAL 2mm".to_owned(),
            instance_number: 1,
            thickness: Some(3.0),
            frames: None,
            stored: (0..rows * columns).map(|i| i as i16).collect(),
        }
    }

    /// The HU this slice should give at `(row, column)`.
    fn hu(&self, row: usize, column: usize) -> f32 {
        let v = f64::from(self.stored[row * self.columns + column]);
        (v * self.slope.unwrap_or(1.0) + self.intercept.unwrap_or(0.0)) as f32
    }

    /// RAS world position (mm) of pixel `(row, column)`.
    fn world(&self, row: usize, column: usize) -> [f64; 3] {
        let [dr, dc] = self.pixel_spacing;
        let o = self.orientation;
        let lps: [f64; 3] = std::array::from_fn(|i| {
            self.position[i] + column as f64 * dc * o[i] + row as f64 * dr * o[3 + i]
        });
        [-lps[0], -lps[1], lps[2]]
    }
}

fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|v| format!("{v}")).collect())
}

fn object_of(spec: &SliceSpec, instance: &str) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| obj.put(DataElement::new(tag, vr, value));
    put(tags::SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, instance.into());
    put(tags::MODALITY, VR::CS, "CT".into());
    put(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        spec.series_uid.as_str().into(),
    );
    put(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        spec.description.as_str().into(),
    );
    put(
        tags::INSTANCE_NUMBER,
        VR::IS,
        spec.instance_number.to_string().into(),
    );
    put(tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&spec.position));
    put(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        ds(&spec.orientation),
    );
    put(tags::PIXEL_SPACING, VR::DS, ds(&spec.pixel_spacing));
    if let Some(t) = spec.thickness {
        put(tags::SLICE_THICKNESS, VR::DS, ds(&[t]));
    }
    if let Some(s) = spec.slope {
        put(tags::RESCALE_SLOPE, VR::DS, ds(&[s]));
    }
    if let Some(i) = spec.intercept {
        put(tags::RESCALE_INTERCEPT, VR::DS, ds(&[i]));
    }
    if let Some(f) = spec.frames {
        put(tags::NUMBER_OF_FRAMES, VR::IS, f.to_string().into());
    }
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    put(tags::ROWS, VR::US, PrimitiveValue::from(spec.rows as u16));
    put(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(spec.columns as u16),
    );
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    obj
}

fn write_object(path: &Path, obj: InMemDicomObject, ts: &str, sop_class: &str, instance: &str) {
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(ts)
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(instance),
        )
        .unwrap();
    file.write_to_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Writes `spec` as an Explicit VR Little Endian int16 CT slice.
fn write_slice(path: &Path, spec: &SliceSpec) {
    let instance = format!("1.2.826.0.1.3680043.2.1125.9.{}", unique());
    let mut obj = object_of(spec, &instance);
    let frames = spec.frames.unwrap_or(1) as usize;
    let mut words: Vec<u16> = spec.stored.iter().map(|&v| v as u16).collect();
    words = words.repeat(frames);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(words.into()),
    ));
    write_object(path, obj, EXPLICIT_VR_LE, CT_IMAGE_STORAGE, &instance);
}

fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A series of `count` axial slices at `z0 + k·dz` (k = 0..count), stored values distinct per
/// slice, per-slice rescaling, files named and numbered in an order that disagrees with the
/// geometry. Returns the specs in geometric order (k).
pub(crate) fn axial_series(dir: &Path, count: usize, z0: f64, dz: f64) -> Vec<SliceSpec> {
    fs::create_dir_all(dir).unwrap();
    // File names and instance numbers deliberately scrambled.
    let names = ["m", "c", "x", "a", "q", "f", "b", "z"];
    let mut specs = Vec::new();
    for k in 0..count {
        let mut spec = SliceSpec::new(3, 5, [-50.0, -60.0, z0 + k as f64 * dz]);
        spec.stored = (0..15).map(|i| (100 * k + i * 7) as i16 - 40).collect();
        spec.slope = Some(if k % 2 == 0 { 1.0 } else { 2.0 });
        spec.intercept = Some(-1024.0 + k as f64);
        spec.instance_number = (count - k) as i32 * 3 % 7;
        write_slice(
            &dir.join(format!("{}.dcm", names[(k * 3) % names.len()])),
            &spec,
        );
        specs.push(spec);
    }
    specs
}

/// Inverse of the affine's 3×3 part applied to `world − translation`.
fn voxel_of(volume: &Volume, world: [f64; 3]) -> [f64; 3] {
    let a = volume.affine;
    let m = [
        [a[0][0], a[0][1], a[0][2]],
        [a[1][0], a[1][1], a[1][2]],
        [a[2][0], a[2][1], a[2][2]],
    ];
    let b = [world[0] - a[0][3], world[1] - a[1][3], world[2] - a[2][3]];
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    assert!(det.abs() > 1e-9, "singular affine {a:?}");
    // Cramer's rule.
    std::array::from_fn(|col| {
        let mut mm = m;
        for row in 0..3 {
            mm[row][col] = b[row];
        }
        (mm[0][0] * (mm[1][1] * mm[2][2] - mm[1][2] * mm[2][1])
            - mm[0][1] * (mm[1][0] * mm[2][2] - mm[1][2] * mm[2][0])
            + mm[0][2] * (mm[1][0] * mm[2][1] - mm[1][1] * mm[2][0]))
            / det
    })
}

/// Every pixel of every slice is found, with its HU, at the voxel the affine maps its world
/// position to.
fn assert_world_consistent(volume: &Volume, specs: &[SliceSpec]) {
    let shape = volume.shape();
    assert_eq!(shape[2], specs.len());
    let mut seen_z = vec![false; specs.len()];
    for spec in specs {
        for row in 0..spec.rows {
            for column in 0..spec.columns {
                let v = voxel_of(volume, spec.world(row, column));
                let idx = v.map(|c| c.round());
                for (c, r) in v.iter().zip(&idx) {
                    assert!((c - r).abs() < 1e-6, "voxel {v:?} not on the grid");
                }
                let [x, y, z] = idx.map(|c| c as usize);
                assert!(
                    idx.iter()
                        .zip(&shape)
                        .all(|(&c, &n)| c >= 0.0 && (c as usize) < n)
                );
                assert_eq!(
                    volume.get(x, y, z),
                    spec.hu(row, column),
                    "({row}, {column})"
                );
                seen_z[z] = true;
            }
        }
    }
    assert!(seen_z.iter().all(|&s| s));
}

fn assert_affine_close(actual: &[[f64; 4]; 4], expected: &[[f64; 4]; 4], tol: f64) {
    for r in 0..4 {
        for c in 0..4 {
            assert!(
                (actual[r][c] - expected[r][c]).abs() <= tol,
                "affine[{r}][{c}] = {} expected {} ({actual:?})",
                actual[r][c],
                expected[r][c]
            );
        }
    }
}

fn one_line(err: &dyn std::fmt::Display) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "multi-line error: {text}");
    text
}

// ---------------------------------------------------------------------------------------------
// Synthetic series

#[test]
fn values_order_spacing_and_affine_follow_the_geometry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("series");
    let specs = axial_series(&dir, 4, 10.0, 2.5);
    let volume = read_dicom_series(&dir, None).unwrap();
    assert_eq!(volume.shape(), [5, 3, 4]);
    assert_eq!(volume.spacing, [0.6, 0.7, 2.5]);
    // dcm2niix's convention: x = column, y = row reversed, z = slice order along the normal.
    for (k, spec) in specs.iter().enumerate() {
        for row in 0..3 {
            for column in 0..5 {
                assert_eq!(volume.get(column, 2 - row, k), spec.hu(row, column));
            }
        }
    }
    // Per-slice rescaling: slice 1 has slope 2 and intercept −1023.
    assert_eq!(volume.get(0, 2, 1), (60.0 * 2.0 - 1023.0) as f32);
    let expected = [
        [-0.6, 0.0, 0.0, 50.0],
        [0.0, 0.7, 0.0, 60.0 - 2.0 * 0.7],
        [0.0, 0.0, 2.5, 10.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    assert_affine_close(&volume.affine, &expected, 1e-9);
    assert_eq!(nifti_io::orientation_codes(&volume.affine), ['L', 'A', 'S']);
    assert_world_consistent(&volume, &specs);
    assert_eq!(volume.provenance.path.as_deref(), Some(dir.as_path()));
    assert_eq!(volume.provenance.datatype.as_deref(), Some("dicom int16"));
}

#[test]
fn feet_first_series_in_reverse_order_reads_by_position() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ff");
    fs::create_dir_all(&dir).unwrap();
    // Feet-first supine: rows run to the patient's right (−x in LPS), normal r × c = −z.
    let orientation = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    let mut specs = Vec::new();
    for k in 0..5usize {
        let mut spec = SliceSpec::new(4, 2, [20.0, -30.0, 100.0 - 3.0 * k as f64]);
        spec.orientation = orientation;
        spec.pixel_spacing = [0.5, 0.8];
        spec.stored = (0..8).map(|i| (k * 10 + i) as i16).collect();
        spec.instance_number = k as i32 + 1;
        write_slice(&dir.join(format!("IM{:02}", 7 - k)), &spec);
        specs.push(spec);
    }
    let volume = read_dicom_series(&dir, None).unwrap();
    assert_eq!(volume.shape(), [2, 4, 5]);
    assert!(
        (volume.spacing[2] - 3.0).abs() < 1e-9,
        "{:?}",
        volume.spacing
    );
    // Ascending along the normal (−z): the first slice is the highest one.
    assert_eq!(volume.get(0, 3, 0), specs[0].hu(0, 0));
    assert_eq!(volume.get(0, 3, 4), specs[4].hu(0, 0));
    assert!(
        (volume.affine[2][2] + 3.0).abs() < 1e-9,
        "{:?}",
        volume.affine
    );
    assert!(
        (volume.affine[0][0] - 0.8).abs() < 1e-9,
        "{:?}",
        volume.affine
    );
    assert_world_consistent(&volume, &specs);
}

#[test]
fn oblique_series_maps_every_pixel_to_its_world_position() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oblique");
    fs::create_dir_all(&dir).unwrap();
    let (s, c) = (0.3f64.sin(), 0.3f64.cos());
    let orientation = [c, s, 0.0, 0.0, 0.0, -1.0]; // coronal-ish, tilted
    let r = [c, s, 0.0];
    let col = [0.0, 0.0, -1.0];
    let n = [
        r[1] * col[2] - r[2] * col[1],
        r[2] * col[0] - r[0] * col[2],
        r[0] * col[1] - r[1] * col[0],
    ];
    let mut specs = Vec::new();
    for k in 0..3 {
        let p = [
            5.0 + 1.5 * k as f64 * n[0],
            7.0 + 1.5 * k as f64 * n[1],
            40.0,
        ];
        let mut spec = SliceSpec::new(3, 4, p);
        spec.orientation = orientation;
        spec.stored = (0..12).map(|i| (k * 20 + i) as i16).collect();
        write_slice(&dir.join(format!("s{}", 2 - k)), &spec);
        specs.push(spec);
    }
    let volume = read_dicom_series(&dir, None).unwrap();
    assert!((volume.spacing[2] - 1.5).abs() < 1e-9);
    assert_world_consistent(&volume, &specs);
}

#[test]
fn missing_rescale_means_slope_one_intercept_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raw");
    fs::create_dir_all(&dir).unwrap();
    for k in 0..2 {
        let mut spec = SliceSpec::new(2, 2, [0.0, 0.0, k as f64]);
        spec.slope = None;
        spec.intercept = None;
        spec.stored = vec![-5, 7, 300, -2000];
        write_slice(&dir.join(format!("{k}")), &spec);
    }
    let volume = read_dicom_series(&dir, None).unwrap();
    // Rows reversed: the second stored row comes first.
    assert_eq!(&volume.data()[..4], &[300.0, -2000.0, -5.0, 7.0]);
}

#[test]
fn several_series_are_listed_and_one_can_be_chosen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("two");
    axial_series(&dir, 3, 0.0, 2.0);
    for k in 0..2 {
        let mut spec = SliceSpec::new(3, 5, [-50.0, -60.0, 1.0 + 5.0 * k as f64]);
        spec.series_uid = "1.2.826.0.1.3680043.2.1125.2".to_owned();
        spec.description = "LUNG 5mm".to_owned();
        write_slice(&dir.join(format!("other{k}.dcm")), &spec);
    }
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(
        matches!(err, DicomError::SeveralSeries { count: 2, .. }),
        "{text}"
    );
    for needle in [
        dir.to_str().unwrap(),
        "choose one by its UID",
        "1.2.826.0.1.3680043.2.1125.1 \"AXIAL 2mm\" (3 slices)",
        "1.2.826.0.1.3680043.2.1125.2 \"LUNG 5mm\" (2 slices)",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    let series = list_series(&dir).unwrap();
    assert_eq!(series.len(), 2);
    assert_eq!(series[1].description, "LUNG 5mm");
    assert_eq!(series[1].slices, 2);

    let chosen = read_dicom_series(&dir, Some("1.2.826.0.1.3680043.2.1125.2")).unwrap();
    assert_eq!(chosen.shape(), [5, 3, 2]);
    assert_eq!(chosen.spacing[2], 5.0);
    let chosen = read_scan(&dir, Some("1.2.826.0.1.3680043.2.1125.1")).unwrap();
    assert_eq!(chosen.shape(), [5, 3, 3]);

    let err = read_dicom_series(&dir, Some("9.9.9")).unwrap_err();
    let text = one_line(&err);
    assert!(matches!(err, DicomError::SeriesNotFound { .. }), "{text}");
    assert!(
        text.contains("9.9.9") && text.contains("LUNG 5mm"),
        "{text}"
    );
}

#[test]
fn a_missing_slice_is_an_error_and_small_jitter_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gap");
    fs::create_dir_all(&dir).unwrap();
    for (i, z) in [0.0, 2.0, 4.0, 8.0, 10.0, 12.0].iter().enumerate() {
        write_slice(
            &dir.join(format!("{i}")),
            &SliceSpec::new(2, 2, [0.0, 0.0, *z]),
        );
    }
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(matches!(err, DicomError::Gap { .. }), "{text}");
    assert!(
        text.starts_with(&dir.display().to_string()) && text.contains("missing"),
        "{text}"
    );

    let dir = tmp.path().join("jitter");
    fs::create_dir_all(&dir).unwrap();
    for (i, z) in [0.0, 2.004, 4.0, 5.997, 8.0].iter().enumerate() {
        write_slice(
            &dir.join(format!("{i}")),
            &SliceSpec::new(2, 2, [0.0, 0.0, *z]),
        );
    }
    let volume = read_dicom_series(&dir, None).unwrap();
    assert_eq!(volume.shape()[2], 5);
    assert!((volume.spacing[2] - 2.0).abs() < 0.005);
}

#[test]
fn duplicate_positions_are_an_error_naming_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dup");
    fs::create_dir_all(&dir).unwrap();
    for (name, z) in [("one", 0.0), ("two", 2.0), ("three", 2.0), ("four", 4.0)] {
        write_slice(&dir.join(name), &SliceSpec::new(2, 2, [0.0, 0.0, z]));
    }
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(
        matches!(err, DicomError::DuplicatePosition { .. }),
        "{text}"
    );
    assert!(text.contains("two") && text.contains("three"), "{text}");
}

#[test]
fn differing_sizes_or_orientations_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sizes");
    fs::create_dir_all(&dir).unwrap();
    write_slice(&dir.join("a"), &SliceSpec::new(2, 2, [0.0, 0.0, 0.0]));
    write_slice(&dir.join("b"), &SliceSpec::new(2, 3, [0.0, 0.0, 1.0]));
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(matches!(err, DicomError::Inconsistent { .. }), "{text}");
    assert!(text.contains("3×2") && text.contains("2×2"), "{text}");

    let dir = tmp.path().join("orientation");
    fs::create_dir_all(&dir).unwrap();
    write_slice(&dir.join("a"), &SliceSpec::new(2, 2, [0.0, 0.0, 0.0]));
    let mut tilted = SliceSpec::new(2, 2, [0.0, 0.0, 1.0]);
    tilted.orientation = [1.0, 0.0, 0.0, 0.0, 0.8, 0.6];
    write_slice(&dir.join("b"), &tilted);
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(
        matches!(err, DicomError::Inconsistent { .. }) && text.contains("ImageOrientationPatient"),
        "{text}"
    );

    let dir = tmp.path().join("spacing");
    fs::create_dir_all(&dir).unwrap();
    write_slice(&dir.join("a"), &SliceSpec::new(2, 2, [0.0, 0.0, 0.0]));
    let mut other = SliceSpec::new(2, 2, [0.0, 0.0, 1.0]);
    other.pixel_spacing = [0.7, 0.9];
    write_slice(&dir.join("b"), &other);
    let text = one_line(&read_dicom_series(&dir, None).unwrap_err());
    assert!(text.contains("PixelSpacing"), "{text}");
}

#[test]
fn non_dicom_files_hidden_files_and_dicomdir_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mixed");
    let specs = axial_series(&dir, 3, 0.0, 2.0);
    fs::write(dir.join("README.txt"), "not a scan").unwrap();
    fs::write(dir.join("empty"), "").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    write_slice(
        &dir.join("sub/deeper.dcm"),
        &SliceSpec::new(3, 5, [0.0, 0.0, 50.0]),
    );
    // A hidden DICOM slice that would otherwise be a duplicate position.
    write_slice(
        &dir.join(".hidden.dcm"),
        &SliceSpec::new(3, 5, [-50.0, -60.0, 2.0]),
    );
    // A DICOMDIR: a DICOM file without an image.
    let mut dicomdir = InMemDicomObject::new_empty();
    dicomdir.put(DataElement::new(
        tags::FILE_SET_ID,
        VR::CS,
        PrimitiveValue::from("SET"),
    ));
    write_object(
        &dir.join("DICOMDIR"),
        dicomdir,
        EXPLICIT_VR_LE,
        "1.2.840.10008.1.3.10",
        "1.2.3.4",
    );
    let volume = read_dicom_series(&dir, None).unwrap();
    assert_eq!(volume.shape(), [5, 3, 3]);
    assert_world_consistent(&volume, &specs);
    assert_eq!(list_series(&dir).unwrap().len(), 1);
}

#[test]
fn empty_missing_and_non_dicom_folders_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = read_dicom_series(&empty, None).unwrap_err();
    assert!(matches!(err, DicomError::NoDicomFiles { .. }), "{err}");
    assert_eq!(
        one_line(&err),
        format!("{}: no DICOM files in the folder", empty.display())
    );

    fs::write(empty.join("notes.txt"), "x".repeat(500)).unwrap();
    let err = read_dicom_series(&empty, None).unwrap_err();
    assert!(matches!(err, DicomError::NoDicomFiles { .. }), "{err}");

    let missing = tmp.path().join("missing");
    let err = read_dicom_series(&missing, None).unwrap_err();
    assert!(matches!(err, DicomError::NotFound { .. }), "{err}");
    let file = empty.join("notes.txt");
    let err = read_dicom_series(&file, None).unwrap_err();
    assert!(matches!(err, DicomError::NotADirectory { .. }), "{err}");
}

#[test]
fn undecodable_transfer_syntaxes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    // JPEG-LS: dicom-rs parses the data set but ct3d is built without a JPEG-LS decoder.
    let dir = tmp.path().join("jpegls");
    fs::create_dir_all(&dir).unwrap();
    let spec = SliceSpec::new(2, 2, [0.0, 0.0, 0.0]);
    let mut obj = object_of(&spec, "1.2.3.4.5");
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        Value::PixelSequence(PixelFragmentSequence::new(
            Vec::<u32>::new(),
            vec![vec![0xFFu8, 0xD8, 0xFF, 0xF7, 0, 0]],
        )),
    ));
    write_object(
        &dir.join("ls.dcm"),
        obj,
        JPEG_LS_LOSSLESS,
        CT_IMAGE_STORAGE,
        "1.2.3.4.5",
    );
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(
        matches!(err, DicomError::UnsupportedTransferSyntax { .. }),
        "{text}"
    );
    assert!(
        text.contains(JPEG_LS_LOSSLESS) && text.contains("ls.dcm") && text.contains("JPEG-LS"),
        "{text}"
    );

    // A made-up transfer syntax UID (same length as Explicit VR Little Endian's, patched in).
    let dir = tmp.path().join("unknown");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("odd.dcm");
    write_slice(&path, &spec);
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes
        .windows(EXPLICIT_VR_LE.len())
        .position(|w| w == EXPLICIT_VR_LE.as_bytes())
        .unwrap();
    let made_up = "1.2.840.99999.9.9.9";
    assert_eq!(made_up.len(), EXPLICIT_VR_LE.len());
    bytes[at..at + made_up.len()].copy_from_slice(made_up.as_bytes());
    fs::write(&path, bytes).unwrap();
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(
        matches!(err, DicomError::UnsupportedTransferSyntax { .. })
            && text.contains(made_up)
            && text.contains("unknown transfer syntax"),
        "{text}"
    );
}

#[test]
fn multi_frame_images_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mf");
    fs::create_dir_all(&dir).unwrap();
    let mut spec = SliceSpec::new(2, 2, [0.0, 0.0, 0.0]);
    spec.frames = Some(3);
    write_slice(&dir.join("frames.dcm"), &spec);
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(
        matches!(err, DicomError::Unsupported { .. }) && text.contains("multi-frame"),
        "{text}"
    );
}

#[test]
fn a_one_slice_series_takes_its_thickness_as_spacing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("single");
    fs::create_dir_all(&dir).unwrap();
    let spec = SliceSpec::new(3, 5, [1.0, 2.0, 3.0]);
    write_slice(&dir.join("only"), &spec);
    let volume = read_dicom_series(&dir, None).unwrap();
    assert_eq!(volume.shape(), [5, 3, 1]);
    assert_eq!(volume.spacing, [0.6, 0.7, 3.0]);
    assert!((volume.affine[2][2] - 3.0).abs() < 1e-12);
    assert_world_consistent(&volume, &[spec]);
}

#[test]
fn damaged_files_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bad");
    fs::create_dir_all(&dir).unwrap();
    // DICM magic followed by junk.
    let mut junk = vec![0u8; 128];
    junk.extend_from_slice(b"DICM");
    junk.extend((0..400).map(|i| (i * 37 % 251) as u8));
    fs::write(dir.join("junk.dcm"), &junk).unwrap();
    let err = read_dicom_series(&dir, None).unwrap_err();
    let text = one_line(&err);
    assert!(text.contains("junk.dcm"), "{text}");

    // A slice truncated inside its pixel data, at many lengths.
    let good = tmp.path().join("good");
    fs::create_dir_all(&good).unwrap();
    write_slice(&good.join("s"), &SliceSpec::new(8, 8, [0.0, 0.0, 0.0]));
    let bytes = fs::read(good.join("s")).unwrap();
    let cut = tmp.path().join("cut");
    fs::create_dir_all(&cut).unwrap();
    for len in (132..bytes.len()).step_by(7) {
        fs::write(cut.join("s"), &bytes[..len]).unwrap();
        if let Err(err) = read_dicom_series(&cut, None) {
            one_line(&err);
        }
    }
    // A missing ImagePositionPatient.
    let spec = SliceSpec::new(2, 2, [0.0, 0.0, 0.0]);
    let mut obj = object_of(&spec, "1.2.3");
    obj.remove_element(tags::IMAGE_POSITION_PATIENT);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(vec![0u16; 4].into()),
    ));
    let nopos = tmp.path().join("nopos");
    fs::create_dir_all(&nopos).unwrap();
    write_object(
        &nopos.join("p"),
        obj,
        EXPLICIT_VR_LE,
        CT_IMAGE_STORAGE,
        "1.2.3",
    );
    let text = one_line(&read_dicom_series(&nopos, None).unwrap_err());
    assert!(text.contains("ImagePositionPatient"), "{text}");
}

#[test]
fn read_scan_dispatches_on_folder_or_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("series");
    axial_series(&dir, 2, 0.0, 1.0);
    assert_eq!(read_scan(&dir, None).unwrap().shape(), [5, 3, 2]);

    let nii = tmp.path().join("scan.nii.gz");
    let volume = Volume::from_fn([3, 2, 2], |x, y, z| (x + y + z) as f32);
    nifti_io::write_volume(&nii, &volume, OutputDtype::F32).unwrap();
    assert_eq!(read_scan(&nii, None).unwrap().data(), volume.data());
    let err = read_scan(&nii, Some("1.2.3")).unwrap_err();
    assert!(matches!(err, ScanError::SeriesOnFile { .. }), "{err}");

    let single = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let err = read_scan(&single, None).unwrap_err();
    assert!(matches!(err, ScanError::DicomFile { .. }), "{err}");
    let err = read_scan(&tmp.path().join("nope.nii"), None).unwrap_err();
    assert!(matches!(err, ScanError::Nifti(_)), "{err}");
}

#[test]
fn datasets_list_series_folders_and_prepare_hashes_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    axial_series(&root.join("CT-0/patient1"), 3, 0.0, 2.0);
    let nii = root.join("CT-23/b.nii.gz");
    fs::create_dir_all(nii.parent().unwrap()).unwrap();
    let volume = Volume::from_fn([6, 5, 4], |x, y, z| (x * y + z) as f32 * 10.0 - 500.0);
    nifti_io::write_volume(&nii, &volume, OutputDtype::F32).unwrap();
    // A folder without DICOM files is not a scan.
    fs::create_dir_all(root.join("CT-23/notes")).unwrap();
    fs::write(root.join("CT-23/notes/a.txt"), "x").unwrap();
    // Old enough for the cache index to remember them.
    let series = root.join("CT-0/patient1");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for entry in fs::read_dir(&series).unwrap() {
        let file = fs::File::options().write(true).open(entry.unwrap().path());
        file.unwrap().set_modified(an_hour_ago).unwrap();
    }
    fs::File::open(&series)
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();
    let dataset = Dataset::from_class_folders(&root, "CT-0", "CT-23").unwrap();
    let paths: Vec<&Path> = dataset.items().iter().map(|i| i.path.as_path()).collect();
    assert_eq!(
        paths,
        [root.join("CT-0/patient1").as_path(), nii.as_path()],
        "{paths:?}"
    );

    let options = PrepareOptions {
        config: PreprocessParams {
            size: [4, 4, 2],
            ..PreprocessParams::default()
        }
        .check()
        .unwrap(),
        ..PrepareOptions::default()
    };
    let cache = tmp.path().join("cache");
    let prepared = prepare_default(&dataset, &cache, &options, &()).unwrap();
    assert_eq!(prepared.items.len(), 2);
    let first_hash = prepared.items[0].sha256.clone();
    assert_eq!(prepared.items[0].load().unwrap().shape(), [4, 4, 2]);

    // The unchanged series is known from the index (only the fresh NIfTI file is hashed again).
    let again = prepare_default(&dataset, &cache, &options, &()).unwrap();
    assert_eq!(again.items[0].sha256, first_hash);
    assert_eq!(again.stats.hashed, 1);
    assert_eq!(again.stats.hits, 2);
    // Renaming a file changes the series' hash; so does changing one slice's bytes.
    fs::rename(series.join("a.dcm"), series.join("a2.dcm")).unwrap();
    let renamed = prepare_default(&dataset, &cache, &options, &()).unwrap();
    assert_ne!(renamed.items[0].sha256, first_hash);
    fs::rename(series.join("a2.dcm"), series.join("a.dcm")).unwrap();
    let mut bytes = fs::read(series.join("a.dcm")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(series.join("a.dcm"), bytes).unwrap();
    let changed = prepare_default(&dataset, &cache, &options, &()).unwrap();
    assert_ne!(changed.items[0].sha256, first_hash);

    // A class folder whose series folder holds two series: a per-item error naming the folder.
    let mut spec = SliceSpec::new(3, 5, [0.0, 0.0, 99.0]);
    spec.series_uid = "1.2.3.999".to_owned();
    write_slice(&series.join("zz_other_series.dcm"), &spec);
    let options = PrepareOptions {
        skip_bad: true,
        ..options
    };
    let failed = prepare_default(&dataset, &cache, &options, &()).unwrap();
    assert_eq!(failed.failures.len(), 1);
    assert!(
        failed.failures[0].error.contains("2 DICOM series"),
        "{}",
        failed.failures[0].error
    );
}

// ---------------------------------------------------------------------------------------------
// Real files (when ../shared/realdata is present)

/// `<checkout>/../shared/realdata/<sub>`, or `None` (after a notice) when absent.
fn realdata(test: &str, sub: &str) -> Option<PathBuf> {
    support::realdata(test).map(|root| root.join(sub))
}

#[test]
fn real_jpeg2000_series_equals_its_dcm2niix_conversion() {
    let Some(root) = realdata(
        "real_jpeg2000_series_equals_its_dcm2niix_conversion",
        "totalsegmentator_ct",
    ) else {
        return;
    };
    let series = read_dicom_series(&root.join("example_ct_dicom"), None).unwrap();
    let reference =
        nifti_io::read_volume(&root.join("dcm2niix_converted/ts_example_ct_dicom_dcm2niix.nii.gz"))
            .unwrap();
    assert_eq!(series.shape(), [512, 512, 20]);
    assert_eq!(series.shape(), reference.shape());
    let max_diff = series
        .data()
        .iter()
        .zip(reference.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("max |HU difference| vs dcm2niix: {max_diff}");
    assert_eq!(max_diff, 0.0);
    for k in 0..3 {
        assert!(
            (series.spacing[k] - reference.spacing[k]).abs() < 1e-3,
            "{:?} vs {:?}",
            series.spacing,
            reference.spacing
        );
    }
    let affine_diff = (0..16)
        .map(|i| (series.affine[i / 4][i % 4] - reference.affine[i / 4][i % 4]).abs())
        .fold(0.0f64, f64::max);
    println!("max |affine difference| vs dcm2niix: {affine_diff:e} mm");
    assert_affine_close(&series.affine, &reference.affine, 1e-3);
    assert!(
        (series.spacing[2] - 2.0).abs() < 1e-6,
        "{:?}",
        series.spacing
    );
    let stats = series.stats().unwrap();
    assert_eq!((stats.min, stats.max), (-1024.0, 1839.0));
    assert!((stats.mean - -624.126).abs() < 1e-3, "{}", stats.mean);
    assert_eq!(series.provenance.datatype.as_deref(), Some("dicom uint16"));
}

#[test]
fn real_single_slice_reads_as_a_one_slice_series() {
    let Some(file) = realdata(
        "real_single_slice_reads_as_a_one_slice_series",
        "pydicom_ct/CT_small.dcm",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("one");
    fs::create_dir(&dir).unwrap();
    fs::copy(&file, dir.join("CT_small.dcm")).unwrap();
    let volume = read_dicom_series(&dir, None).unwrap();
    assert_eq!(volume.shape(), [128, 128, 1]);
    let stats = volume.stats().unwrap();
    println!("CT_small: spacing {:?}, HU {stats:?}", volume.spacing);
    assert!(stats.min >= -1024.0 && stats.max > 0.0, "{stats:?}");
    // A one-slice series takes SliceThickness as its slice spacing.
    assert!(volume.spacing[2] > 0.0);
    assert!((volume.affine[2][2].abs() - volume.spacing[2]).abs() < 1e-6);
    // The file itself is refused with a hint to give its folder.
    let err = read_scan(&file, None).unwrap_err();
    assert!(matches!(err, ScanError::DicomFile { .. }), "{err}");
}

/// Writes the DICOM seeds of the `dicom_series` fuzz target (`fuzz/corpus/dicom_series/`): a
/// three-slice series joined with the harness's file marker, and one lone slice. Run by hand
/// when the writer changes: `cargo test -p ct3d-volume --test tests write_dicom_fuzz_seeds --
/// --ignored`.
#[test]
#[ignore = "writes fuzz seeds into fuzz/corpus; run by hand"]
fn write_dicom_fuzz_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("series");
    axial_series(&dir, 3, 10.0, 2.5);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut joined = Vec::new();
    for (i, path) in names.iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(&[0xFF, 0x00, 0xFF, 0x00]);
        }
        joined.extend(fs::read(path).unwrap());
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dicom_series");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("seed_series_3"), &joined).unwrap();
    fs::write(out.join("seed_slice_1"), fs::read(&names[0]).unwrap()).unwrap();
}
