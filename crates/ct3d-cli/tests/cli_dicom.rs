//! `ct3d` on DICOM series folders: `info`, `preprocess`, `show` and `--series`, through the real
//! binary.

use std::fs;
use std::path::Path;

use crate::support::{assert_clean_failure, assert_success, ct3d, s, stdout};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

const SERIES_A: &str = "1.2.826.0.1.3680043.2.1125.71";
const SERIES_B: &str = "1.2.826.0.1.3680043.2.1125.72";

fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|v| format!("{v}")).collect())
}

/// Writes an Explicit VR Little Endian int16 CT slice of 8 columns × 6 rows at height `z`.
fn write_slice(path: &Path, series: &str, description: &str, z: f64, instance: usize) {
    let uid = format!("1.2.826.0.1.3680043.2.1125.8.{instance}");
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag, vr, value: PrimitiveValue| obj.put(DataElement::new(tag, vr, value));
    put(
        tags::SOP_CLASS_UID,
        VR::UI,
        "1.2.840.10008.5.1.4.1.1.2".into(),
    );
    put(tags::SOP_INSTANCE_UID, VR::UI, uid.as_str().into());
    put(tags::SERIES_INSTANCE_UID, VR::UI, series.into());
    put(tags::SERIES_DESCRIPTION, VR::LO, description.into());
    put(tags::INSTANCE_NUMBER, VR::IS, "1".into());
    put(tags::IMAGE_POSITION_PATIENT, VR::DS, ds(&[-10.0, -20.0, z]));
    put(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        ds(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
    );
    put(tags::PIXEL_SPACING, VR::DS, ds(&[0.75, 0.5]));
    put(tags::RESCALE_SLOPE, VR::DS, ds(&[1.0]));
    put(tags::RESCALE_INTERCEPT, VR::DS, ds(&[-1024.0]));
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2".into(),
    );
    put(tags::ROWS, VR::US, PrimitiveValue::from(6u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(8u16));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    let pixels: Vec<u16> = (0..48).map(|i| (i * 40 + instance * 3) as u16).collect();
    put(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into()));
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax("1.2.840.10008.1.2.1")
            .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
            .media_storage_sop_instance_uid(uid.as_str()),
    )
    .unwrap()
    .write_to_file(path)
    .unwrap();
}

/// A 4-slice series 2.5 mm apart, files named against the slice order.
pub(crate) fn write_series(dir: &Path, series: &str, description: &str, prefix: &str) {
    fs::create_dir_all(dir).unwrap();
    for k in 0..4 {
        let name = format!("{prefix}{}.dcm", 3 - k);
        write_slice(
            &dir.join(name),
            series,
            description,
            5.0 + 2.5 * k as f64,
            k,
        );
    }
}

#[test]
fn info_preprocess_and_show_read_a_series_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("series");
    write_series(&dir, SERIES_A, "AXIAL", "img");
    fs::write(dir.join("notes.txt"), "not DICOM").unwrap();

    let out = ct3d(&["info", s(&dir)]);
    assert_success(&out);
    let text = stdout(&out);
    for needle in [
        "8 × 6 × 4 voxels",
        "dicom int16",
        "0.5000 × 0.7500 × 2.5000 mm",
        "LAS",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    let output = tmp.path().join("out.nii.gz");
    let out = ct3d(&["preprocess", s(&dir), "-o", s(&output), "--size", "4,4,2"]);
    assert_success(&out);
    let volume = ct3d_volume::nifti_io::read_volume(&output).unwrap();
    assert_eq!(volume.shape(), [4, 4, 2]);
    let stats = volume.stats().unwrap();
    assert!(stats.min >= 0.0 && stats.max <= 1.0 && stats.max > stats.min);

    let png = tmp.path().join("slice.png");
    let out = ct3d(&["show", s(&dir), "--raw", "--slice", "1", "-o", s(&png)]);
    assert_success(&out);
    assert!(fs::metadata(&png).unwrap().len() > 0);
}

#[test]
fn several_series_need_series_and_list_them_on_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("two");
    write_series(&dir, SERIES_A, "AXIAL", "a");
    write_series(&dir, SERIES_B, "LUNG", "b");

    let out = ct3d(&["info", s(&dir)]);
    assert_clean_failure(
        &out,
        &[
            s(&dir),
            "2 DICOM series",
            "--series",
            &format!("{SERIES_A} \"AXIAL\" (4 slices)"),
            &format!("{SERIES_B} \"LUNG\" (4 slices)"),
        ],
    );
    let output = tmp.path().join("out.nii.gz");
    let out = ct3d(&["preprocess", s(&dir), "-o", s(&output)]);
    assert_clean_failure(&out, &["2 DICOM series", SERIES_A, SERIES_B]);
    assert!(!output.exists());

    let out = ct3d(&["info", s(&dir), "--series", SERIES_B]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("8 × 6 × 4 voxels"),
        "{}",
        stdout(&out)
    );
    let out = ct3d(&[
        "preprocess",
        s(&dir),
        "--series",
        SERIES_A,
        "-o",
        s(&output),
        "--size",
        "4,4,2",
    ]);
    assert_success(&out);

    let out = ct3d(&["info", s(&dir), "--series", "1.2.3.4"]);
    assert_clean_failure(&out, &["no series 1.2.3.4", SERIES_A]);
}

#[test]
fn folders_without_dicom_files_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("empty");
    fs::create_dir(&dir).unwrap();
    let out = ct3d(&["info", s(&dir)]);
    assert_clean_failure(&out, &[s(&dir), "no DICOM files"]);
}
