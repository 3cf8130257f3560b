//! NIfTI-2 and Analyze 7.5 reading against nibabel 5.4 (fixtures from
//! `tools/golden/gen_nifti2_fixtures.py`, where `nib.load` picks `Nifti2Image`, `Nifti2Pair` or
//! `Spm2AnalyzeImage`), and malformed NIfTI-2 / Analyze input.

use crate::nifti_io::{
    assert_reads_as_nibabel, error_for, gzip, largest_allocation_during, read_error,
};
use crate::support;

use std::fs;
use std::path::PathBuf;

use ct3d_volume::nifti_io::{ByteOrder, Datatype, Format, ReadError, read_header, read_volume};
use serde_json::Value;

fn fixtures() -> PathBuf {
    support::data_dir("nifti2")
}

fn expected() -> Value {
    let text = fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn nifti2_and_analyze_fixtures_read_as_nibabel_get_fdata() {
    let expected = expected();
    let cases = expected["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for required in [
        "n2_uint8",
        "n2_int16",
        "n2_float32",
        "n2_float64",
        "n2_big_endian_i16",
        "n2_big_endian_f64_qform",
        "n2_qform_qfac_neg",
        "n2_qform_small_w",
        "n2_sform_and_qform",
        "n2_no_xform",
        "n2_slope_inter",
        "n2_dim4_1",
        "n2_extension",
        "n2_gz",
        "n2_pair",
        "n2_pair_gz",
        "an_plain",
        "an_funused1",
        "an_funused1_inter",
        "an_gl_cal",
        "an_origin",
        "an_origin_far",
        "an_big_endian",
        "an_gz",
        "an_from_img",
    ] {
        assert!(
            names.contains(&required),
            "fixture {required} missing from expected.json"
        );
    }

    for case in cases {
        let (_, _, header) = assert_reads_as_nibabel(&fixtures(), case);
        let name = case["name"].as_str().unwrap();
        let format = match case["class"].as_str().unwrap() {
            "Nifti2Image" | "Nifti2Pair" => Format::Nifti2,
            "Spm2AnalyzeImage" => Format::Analyze,
            other => panic!("{name}: nibabel class {other} not expected here"),
        };
        assert_eq!(header.format, format, "{name}: format");
    }
}

#[test]
fn nifti2_and_analyze_fixtures_exercise_what_they_claim() {
    let header = |name: &str| read_header(&fixtures().join(name)).unwrap();
    assert_eq!(header("n2_int16.nii").byte_order, ByteOrder::Little);
    assert_eq!(header("n2_int16.nii").vox_offset, 544);
    assert_eq!(header("n2_big_endian_i16.nii").byte_order, ByteOrder::Big);
    assert_eq!(header("n2_pair_gz.hdr.gz").byte_order, ByteOrder::Big);
    assert!(header("n2_gz.nii.gz").gzipped);
    assert!(header("n2_extension.nii").vox_offset > 544);
    assert_eq!(
        header("n2_pair.hdr").data_path,
        fixtures().join("n2_pair.img")
    );
    assert_eq!(header("n2_dim4_1.nii").shape, [7, 5, 3]);

    // NIfTI-2 stores scaling and geometry in float64: values float32 cannot hold survive.
    let scaled = header("n2_slope_inter.nii");
    assert_eq!((scaled.scl_slope, scaled.scl_inter), (0.1, -1024.3));
    assert_eq!(scaled.scaling.unwrap().slope, 0.1);
    assert_eq!(header("n2_slope_0.nii").scaling, None);
    let fine = header("n2_int16.nii");
    assert_eq!((fine.sform_code, fine.qform_code), (1, 0));
    assert_eq!(fine.affine[0][3], 90.123456789);
    assert_eq!(fine.affine[1][2], 1.0 / 3.0);
    let qform = header("n2_qform_qfac_neg.nii");
    assert_eq!((qform.sform_code, qform.qform_code), (0, 2));
    assert_eq!(header("n2_bad_sform_code.nii").sform_code, 7);

    // Analyze: SPM2's funused1 slope and funused2 intercept; the glmax/cal_max fallback.
    for name in ["an_plain.hdr", "an_no_slope.hdr"] {
        assert_eq!(header(name).format, Format::Analyze, "{name}");
        assert_eq!(header(name).scaling, None, "{name}");
    }
    assert_eq!(
        header("an_plain.hdr").data_path,
        fixtures().join("an_plain.img")
    );
    assert_eq!(
        header("an_funused1.hdr").scaling.unwrap().slope,
        f64::from(0.37f32)
    );
    let inter = header("an_funused1_inter.hdr").scaling.unwrap();
    assert_eq!((inter.slope, inter.inter), (2.5, -1024.0));
    let nan = header("an_funused2_nan.hdr").scaling.unwrap();
    assert_eq!((nan.slope, nan.inter), (3.0, 0.0));
    let gl = header("an_gl_cal.hdr").scaling.unwrap();
    let range = f64::from(3071.3f32 - -1024.7f32);
    assert_eq!(gl.slope, range / 4100.0);
    assert_eq!(gl.inter, f64::from(-1024.7f32) + gl.slope * 5.0);
    assert_eq!(header("an_big_endian.hdr").byte_order, ByteOrder::Big);
    assert!(header("an_gz.hdr.gz").gzipped);
    assert_eq!(header("an_vox_offset.hdr").vox_offset, 32);
    assert_eq!(header("an_int32.hdr").datatype, Datatype::I32);
    // The SPM origin (3, 4, 2) puts voxel (2, 3, 1) at the world origin; nibabel computes the
    // translation as int16 * float32, so in float32.
    let origin = header("an_origin.hdr").affine;
    let y = f64::from(-3.0f32 * 0.8f32);
    assert_ne!(y, -3.0 * f64::from(0.8f32));
    assert_eq!([origin[0][3], origin[1][3], origin[2][3]], [1.5, y, -2.5]);
}

#[test]
fn pairs_read_from_either_half() {
    for (hdr, img) in [
        ("n2_pair.hdr", "n2_pair.img"),
        ("n2_pair_gz.hdr.gz", "n2_pair_gz.img.gz"),
        ("an_plain.hdr", "an_plain.img"),
        ("an_gz.hdr.gz", "an_gz.img.gz"),
    ] {
        let from_header = read_volume(&fixtures().join(hdr)).unwrap();
        let from_image = read_volume(&fixtures().join(img)).unwrap();
        assert_eq!(from_header.data(), from_image.data(), "{img}");
        assert_eq!(from_header.affine, from_image.affine, "{img}");
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed NIfTI-2: one-line errors naming the file, no panics, nothing big allocated

/// Header field offsets in a NIfTI-2 header.
mod field2 {
    pub const MAGIC: usize = 4;
    pub const EOL: usize = 8;
    pub const DATATYPE: usize = 12;
    pub const DIM: usize = 16;
    pub const VOX_OFFSET: usize = 168;
    pub const SCL_SLOPE: usize = 176;
    pub const SCL_INTER: usize = 184;
    pub const QFORM_CODE: usize = 344;
    pub const SFORM_CODE: usize = 348;
    pub const QUATERN_B: usize = 352;
}

/// A little-endian single-file int16 NIfTI-2 (7×5×3, sform, voxels at 544) to corrupt.
fn valid_nii2() -> Vec<u8> {
    fs::read(fixtures().join("n2_int16.nii")).unwrap()
}

fn put_i64(bytes: &mut [u8], at: usize, v: i64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_f64(bytes: &mut [u8], at: usize, v: f64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = valid_nii2();
    edit(&mut bytes);
    bytes
}

#[test]
fn nifti2_truncated_header() {
    let dir = tempfile::tempdir().unwrap();
    let nii = valid_nii2();
    for cut in [400, 300, 540 - 1] {
        let err = read_error(dir.path(), &format!("cut{cut}.nii"), &nii[..cut]);
        assert!(
            matches!(err, ReadError::TruncatedHeader { found, expected: 540, .. } if found == cut as u64),
            "{cut}: {err}"
        );
        assert!(err.to_string().contains("NIfTI-2"), "{err}");
    }
    let err = read_error(dir.path(), "cut.nii.gz", &gzip(&nii[..500]));
    assert!(
        matches!(err, ReadError::TruncatedHeader { found: 500, .. }),
        "{err}"
    );
    // A header alone, no voxels.
    let err = read_error(dir.path(), "header_only.nii", &nii[..544]);
    assert!(matches!(err, ReadError::TruncatedData { .. }), "{err}");
    let err = read_error(dir.path(), "short_data.nii", &nii[..nii.len() - 10]);
    assert!(matches!(err, ReadError::TruncatedData { .. }), "{err}");
}

#[test]
fn nifti2_bad_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let negative = with(|b| put_i64(b, field2::DIM + 16, -5));
    let err = read_error(dir.path(), "negative.nii", &negative);
    assert!(
        matches!(&err, ReadError::InvalidDims { dim, .. } if dim[2] == -5)
            && err.to_string().contains("dim[2] is -5"),
        "{err}"
    );
    assert!(matches!(
        read_header(&dir.path().join("negative.nii")),
        Err(ReadError::InvalidDims { .. })
    ));
    let zero = with(|b| put_i64(b, field2::DIM + 8, 0));
    let err = read_error(dir.path(), "zero.nii", &zero);
    assert!(matches!(err, ReadError::InvalidDims { .. }), "{err}");
    // dim[0] that is a dimension count in neither byte order.
    let ndim = with(|b| put_i64(b, field2::DIM, 9));
    let err = read_error(dir.path(), "ndim.nii", &ndim);
    assert!(matches!(err, ReadError::InvalidDims { .. }), "{err}");
    let two_d = with(|b| put_i64(b, field2::DIM, 2));
    let err = read_error(dir.path(), "two_d.nii", &two_d);
    assert!(matches!(err, ReadError::NotThreeD { .. }), "{err}");
    let four_d = with(|b| {
        put_i64(b, field2::DIM, 4);
        put_i64(b, field2::DIM + 32, 2);
    });
    let err = read_error(dir.path(), "four_d.nii", &four_d);
    assert!(matches!(err, ReadError::NotThreeD { .. }), "{err}");
}

/// Which error a case expects.
type ErrorKind = fn(&ReadError) -> bool;

#[test]
fn nifti2_dims_overflowing_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let dims = |d: [i64; 3]| {
        with(|b| {
            b.truncate(544);
            for (k, v) in d.into_iter().enumerate() {
                put_i64(b, field2::DIM + 8 * (k + 1), v);
            }
        })
    };
    let cases: [(&str, Vec<u8>, ErrorKind); 6] = [
        // The product overflows 64 bits.
        ("max.nii", dims([i64::MAX; 3]), |e| {
            matches!(e, ReadError::TooLarge { .. })
        }),
        ("pow40.nii", dims([1 << 40, 1 << 40, 1 << 40]), |e| {
            matches!(e, ReadError::TooLarge { .. })
        }),
        // Beyond NIfTI-1's 32767 per axis but under the voxel cap: refused as not in the file.
        ("wide.nii", dims([1 << 20, 1 << 10, 1]), |e| {
            matches!(e, ReadError::TruncatedData { .. })
        }),
        ("wide.nii.gz", gzip(&dims([1 << 20, 1 << 10, 1])), |e| {
            matches!(e, ReadError::TooLarge { .. })
        }),
        ("cap.nii.gz", gzip(&dims([1 << 40, 1, 1])), |e| {
            matches!(e, ReadError::TooLarge { .. })
        }),
        ("big.nii", dims([2000, 2000, 500]), |e| {
            matches!(e, ReadError::TruncatedData { .. })
        }),
    ];
    for (name, bytes, expected_kind) in cases {
        let (err, largest) = largest_allocation_during(|| read_error(dir.path(), name, &bytes));
        assert!(expected_kind(&err), "{name}: {err}");
        assert!(
            largest < 1 << 20,
            "{name}: allocated {largest} bytes before refusing"
        );
    }
}

#[test]
fn nifti2_bad_vox_offset() {
    let dir = tempfile::tempdir().unwrap();
    let beyond = with(|b| put_i64(b, field2::VOX_OFFSET, 1_000_000));
    let err = read_error(dir.path(), "beyond.nii", &beyond);
    assert!(
        matches!(
            err,
            ReadError::VoxOffsetBeyondData {
                vox_offset: 1_000_000,
                ..
            }
        ),
        "{err}"
    );
    let huge = with(|b| put_i64(b, field2::VOX_OFFSET, i64::MAX));
    let err = read_error(dir.path(), "huge.nii", &huge);
    assert!(
        matches!(err, ReadError::VoxOffsetBeyondData { .. }),
        "{err}"
    );
    let err = read_error(dir.path(), "huge.nii.gz", &gzip(&huge));
    assert!(matches!(err, ReadError::TooLarge { .. }), "{err}");
    // Inside the 540-byte header (+4 extension flag bytes): nibabel refuses 1..=543.
    for offset in [352, 540, 543] {
        let inside = with(|b| put_i64(b, field2::VOX_OFFSET, offset));
        let err = read_error(dir.path(), &format!("inside{offset}.nii"), &inside);
        assert!(
            matches!(err, ReadError::InvalidVoxOffset { .. }) && err.to_string().contains("544"),
            "{offset}: {err}"
        );
    }
    let negative = with(|b| put_i64(b, field2::VOX_OFFSET, -16));
    let err = read_error(dir.path(), "negative_offset.nii", &negative);
    assert!(matches!(err, ReadError::InvalidVoxOffset { .. }), "{err}");
}

#[test]
fn nifti2_bad_magic_datatype_scaling_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let magic = with(|b| b[field2::MAGIC..field2::MAGIC + 4].copy_from_slice(b"n+3\0"));
    let err = read_error(dir.path(), "magic.nii", &magic);
    assert!(
        matches!(err, ReadError::NotNifti { .. }) && err.to_string().contains("magic"),
        "{err}"
    );
    // Line endings rewritten by a text-mode transfer (nibabel refuses at error level 40).
    let eol = with(|b| b[field2::EOL..field2::EOL + 4].copy_from_slice(b"\r\n\x1a\r"));
    let err = read_error(dir.path(), "eol.nii", &eol);
    assert!(
        matches!(err, ReadError::NotNifti { .. }) && err.to_string().contains("end-of-line"),
        "{err}"
    );
    for (code, name) in [
        (32i16, "complex64"),
        (128, "RGB24"),
        (1536, "float128"),
        (3, "unknown"),
    ] {
        let bytes = with(|b| {
            b[field2::DATATYPE..field2::DATATYPE + 2].copy_from_slice(&code.to_le_bytes())
        });
        let err = read_error(dir.path(), &format!("dtype{code}.nii"), &bytes);
        assert!(
            matches!(err, ReadError::UnsupportedDatatype { .. }) && err.to_string().contains(name),
            "{code}: {err}"
        );
    }
    let scaling = with(|b| {
        put_f64(b, field2::SCL_SLOPE, 2.0);
        put_f64(b, field2::SCL_INTER, f64::INFINITY);
    });
    let err = read_error(dir.path(), "scaling.nii", &scaling);
    assert!(matches!(err, ReadError::InvalidScaling { .. }), "{err}");
    let quaternion = with(|b| {
        b[field2::SFORM_CODE..field2::SFORM_CODE + 4].copy_from_slice(&0i32.to_le_bytes());
        b[field2::QFORM_CODE..field2::QFORM_CODE + 4].copy_from_slice(&1i32.to_le_bytes());
        put_f64(b, field2::QUATERN_B, 0.8);
        put_f64(b, field2::QUATERN_B + 8, 0.8);
    });
    let err = read_error(dir.path(), "quaternion.nii", &quaternion);
    assert!(matches!(err, ReadError::InvalidGeometry { .. }), "{err}");
    // A pair header whose image is missing.
    let pair_header = fs::read(fixtures().join("n2_pair.hdr")).unwrap();
    let err = read_error(dir.path(), "lonely.hdr", &pair_header);
    assert!(matches!(err, ReadError::MissingCompanion { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Analyze 7.5: what nibabel refuses, and what ct3d cannot match

/// Copies the `an_plain` pair into `dir` as `name.hdr` / `name.img`, editing the header.
fn analyze_pair(dir: &std::path::Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut header = fs::read(fixtures().join("an_plain.hdr")).unwrap();
    edit(&mut header);
    let hdr = dir.join(format!("{name}.hdr"));
    fs::write(&hdr, header).unwrap();
    fs::copy(
        fixtures().join("an_plain.img"),
        dir.join(format!("{name}.img")),
    )
    .unwrap();
    hdr
}

#[test]
fn analyze_refusals() {
    let dir = tempfile::tempdir().unwrap();
    // NIfTI-only datatypes are unknown to nibabel's Analyze reader.
    for (code, name) in [
        (256i16, "unknown"),
        (512, "unknown"),
        (32, "complex64"),
        (1, "binary"),
    ] {
        let hdr = analyze_pair(dir.path(), &format!("dtype{code}"), |b| {
            b[70..72].copy_from_slice(&code.to_le_bytes());
        });
        let err = error_for(&hdr);
        assert!(
            matches!(err, ReadError::UnsupportedDatatype { .. }) && err.to_string().contains(name),
            "{code}: {err}"
        );
    }
    // nibabel takes the affine from an SPM .mat file; ct3d cannot read MATLAB files.
    let hdr = analyze_pair(dir.path(), "with_mat", |_| {});
    fs::write(dir.path().join("with_mat.mat"), b"MATLAB 5.0 MAT-file").unwrap();
    let err = error_for(&hdr);
    assert!(
        matches!(err, ReadError::Unsupported { .. }) && err.to_string().contains(".mat"),
        "{err}"
    );
    assert!(matches!(
        read_header(&hdr),
        Err(ReadError::Unsupported { .. })
    ));
    // An empty .mat is ignored by nibabel too.
    let hdr = analyze_pair(dir.path(), "empty_mat", |_| {});
    fs::write(dir.path().join("empty_mat.mat"), b"").unwrap();
    let plain = read_volume(&fixtures().join("an_plain.hdr")).unwrap();
    assert_eq!(read_volume(&hdr).unwrap().data(), plain.data());
    // The image too short for the header's dimensions.
    let hdr = analyze_pair(dir.path(), "short", |_| {});
    let img = dir.path().join("short.img");
    let bytes = fs::read(&img).unwrap();
    fs::write(&img, &bytes[..bytes.len() - 2]).unwrap();
    assert!(matches!(error_for(&hdr), ReadError::TruncatedData { .. }));
    // Negative dimension.
    let hdr = analyze_pair(dir.path(), "negative", |b| {
        b[44..46].copy_from_slice(&(-7i16).to_le_bytes());
    });
    assert!(matches!(error_for(&hdr), ReadError::InvalidDims { .. }));
}
