//! NIfTI-1 reading and writing against nibabel 5.4 (fixtures from
//! `tools/golden/gen_nifti_fixtures.py`), malformed inputs, round trips and real files. NIfTI-2
//! and Analyze 7.5 are in `nifti2_io`.

use crate::support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ct3d_volume::nifti_io::{
    ByteOrder, Datatype, HeaderSummary, OutputDtype, ReadError, WriteError, orientation_codes,
    read_header, read_volume, write_volume,
};
use ct3d_volume::{Affine, Volume};
use serde_json::Value;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Largest single allocation per thread, to prove that lying headers allocate nothing big.

struct TrackingAllocator;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// Runs `f` and returns its result with the largest allocation (bytes) it made on this thread.
pub(crate) fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION.with(|l| l.set(0));
    let out = f();
    (out, LARGEST_ALLOCATION.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Golden fixtures

fn fixtures() -> PathBuf {
    support::data_dir("nifti")
}

fn expected() -> Value {
    let text = fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn affine_of(value: &Value) -> Affine {
    let rows = value.as_array().unwrap();
    std::array::from_fn(|r| std::array::from_fn(|c| rows[r][c].as_f64().unwrap()))
}

pub(crate) fn floats<const N: usize>(value: &Value) -> [f64; N] {
    std::array::from_fn(|k| value[k].as_f64().unwrap())
}

/// Affines agree to a few ulps (nibabel builds qforms in `long double`, ct3d in `f64`).
pub(crate) fn assert_affine_close(got: &Affine, want: &Affine, context: &str) {
    for r in 0..4 {
        for c in 0..4 {
            let (g, w) = (got[r][c], want[r][c]);
            assert!(
                (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                "{context}: affine[{r}][{c}] = {g}, nibabel {w}\n{got:?}\n{want:?}"
            );
        }
    }
}

pub(crate) fn codes(text: &str) -> [char; 3] {
    let c: Vec<char> = text.chars().collect();
    [c[0], c[1], c[2]]
}

#[test]
fn every_fixture_reads_as_nibabel_get_fdata() {
    let expected = expected();
    let cases = expected["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for required in [
        "dtype_uint8",
        "dtype_int8",
        "dtype_int16",
        "dtype_uint16",
        "dtype_int32",
        "dtype_uint32",
        "dtype_int64",
        "dtype_uint64",
        "dtype_float32",
        "dtype_float64",
        "u8_slope_2_5",
        "i16_inter_m1024",
        "i16_slope_0",
        "big_endian_i16",
        "pair",
        "gz",
        "qform_qfac_neg",
        "sform_and_qform",
        "no_xform",
        "dim4_1",
    ] {
        assert!(
            names.contains(&required),
            "fixture {required} missing from expected.json"
        );
    }

    for case in cases {
        let (path, volume, _) = assert_reads_as_nibabel(&fixtures(), case);
        let name = case["name"].as_str().unwrap();
        assert_eq!(
            volume.provenance.path.as_deref(),
            Some(path.as_path()),
            "{name}"
        );
    }
}

/// Reads the fixture `case` (an entry of `dir/expected.json`) and checks it against nibabel: the
/// voxels bit for bit (`dir/<name>.npy`), affine, spacing, datatype and orientation, and the
/// header summary against the volume. Returns the path, the volume and the summary for the
/// caller's own checks (shared by the NIfTI-1 and the NIfTI-2/Analyze corpora).
pub(crate) fn assert_reads_as_nibabel(
    dir: &Path,
    case: &Value,
) -> (PathBuf, Volume, HeaderSummary) {
    let name = case["name"].as_str().unwrap();
    let path = dir.join(case["file"].as_str().unwrap());
    let volume = read_volume(&path).unwrap_or_else(|e| panic!("{name}: {e}"));

    let (shape, want) = support::read_npy_f32(&dir.join(format!("{name}.npy")));
    assert_eq!(volume.shape().to_vec(), shape, "{name}: shape");
    assert_eq!(volume.data().len(), want.len(), "{name}: voxel count");
    for (k, (got, want)) in volume.data().iter().zip(&want).enumerate() {
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{name}: voxel {k} is {got:e}, nibabel {want:e}"
        );
    }

    let want_affine = affine_of(&case["affine"]);
    assert_affine_close(&volume.affine, &want_affine, name);
    assert_eq!(
        volume.spacing,
        floats::<3>(&case["spacing"]),
        "{name}: spacing"
    );
    let datatype = case["datatype"].as_str().unwrap();
    assert_eq!(
        volume.provenance.datatype.as_deref(),
        Some(datatype),
        "{name}"
    );
    assert_eq!(
        orientation_codes(&volume.affine),
        codes(case["axcodes"].as_str().unwrap()),
        "{name}: orientation"
    );

    let header = read_header(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(header.shape, volume.shape(), "{name}: header shape");
    assert_eq!(header.datatype.name(), datatype, "{name}: header datatype");
    assert_eq!(header.spacing, volume.spacing, "{name}: header spacing");
    assert_eq!(header.affine, volume.affine, "{name}: header affine");
    (path, volume, header)
}

#[test]
fn fixtures_exercise_what_they_claim() {
    let header = |name: &str| read_header(&fixtures().join(name)).unwrap();
    assert_eq!(header("big_endian_i16.nii").byte_order, ByteOrder::Big);
    assert_eq!(header("dtype_int16.nii").byte_order, ByteOrder::Little);
    let pair = header("pair.hdr");
    assert_eq!(pair.data_path, fixtures().join("pair.img"));
    assert!(header("gz_named_nii.nii").gzipped);
    assert!(!header("dtype_uint8.nii").gzipped);
    assert_eq!(header("extension.nii").vox_offset % 16, 0);
    assert!(header("extension.nii").vox_offset > 352);

    let slope0 = header("i16_slope_0.nii");
    assert_eq!(
        (slope0.scl_slope, slope0.scl_inter, slope0.scaling),
        (0.0, 7.0, None)
    );
    let ct = header("i16_inter_m1024.nii").scaling.unwrap();
    assert_eq!((ct.slope, ct.inter), (1.0, -1024.0));
    assert_eq!(header("u8_slope_2_5.nii").scaling.unwrap().slope, 2.5);
    let both = header("sform_and_qform.nii");
    assert_eq!((both.sform_code, both.qform_code), (1, 1));
    let qform = header("qform_qfac_neg.nii");
    assert_eq!((qform.sform_code, qform.qform_code), (0, 1));
    assert_eq!(header("one_slice.nii").shape, [7, 5, 1]);
    assert_eq!(header("dim4_1.nii").datatype, Datatype::I16);
}

#[test]
fn image_path_of_a_pair_finds_its_header() {
    for (hdr, img) in [
        ("pair.hdr", "pair.img"),
        ("pair_gz.hdr.gz", "pair_gz.img.gz"),
    ] {
        let from_header = read_volume(&fixtures().join(hdr)).unwrap();
        let from_image = read_volume(&fixtures().join(img)).unwrap();
        assert_eq!(from_header.data(), from_image.data(), "{img}");
        assert_eq!(from_header.affine, from_image.affine, "{img}");
    }
}

#[test]
fn orientation_codes_match_nibabel_aff2axcodes() {
    let expected = expected();
    for case in expected["orientation"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let affine = affine_of(&case["affine"]);
        assert_eq!(
            orientation_codes(&affine),
            codes(case["axcodes"].as_str().unwrap()),
            "{name}"
        );
    }
    let mut nan = ct3d_volume::volume::IDENTITY_AFFINE;
    nan[1][1] = f64::NAN;
    assert_eq!(orientation_codes(&nan), ['?'; 3]);
}

// ---------------------------------------------------------------------------------------------
// Malformed input: every error names the file, on one line, and nothing panics

/// Header field offsets in a NIfTI-1 header.
mod field {
    pub const SIZEOF_HDR: usize = 0;
    pub const DIM: usize = 40;
    pub const DATATYPE: usize = 70;
    pub const PIXDIM: usize = 76;
    pub const VOX_OFFSET: usize = 108;
    pub const SCL_SLOPE: usize = 112;
    pub const SCL_INTER: usize = 116;
    pub const XYZT_UNITS: usize = 123;
    pub const QFORM_CODE: usize = 252;
    pub const SFORM_CODE: usize = 254;
    pub const QUATERN_B: usize = 256;
    pub const MAGIC: usize = 344;
}

/// A little-endian single-file int16 fixture (7×5×3, no xform) to corrupt.
fn valid_nii() -> Vec<u8> {
    fs::read(fixtures().join("no_xform.nii")).unwrap()
}

fn put_i16(bytes: &mut [u8], at: usize, v: i16) {
    bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_f32(bytes: &mut [u8], at: usize, v: f32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Writes `bytes` as `name` in `dir`, reads it back, and checks that the error names the file on
/// one line. The same must come from [`read_header`] when `header_too`.
pub(crate) fn read_error(dir: &Path, name: &str, bytes: &[u8]) -> ReadError {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    error_for(&path)
}

pub(crate) fn error_for(path: &Path) -> ReadError {
    let err = match read_volume(path) {
        Ok(v) => panic!(
            "{}: read a {:?} volume from bad input",
            path.display(),
            v.shape()
        ),
        Err(e) => e,
    };
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string())
            || message.contains(path.file_stem().unwrap().to_str().unwrap()),
        "message does not name the file: {message}"
    );
    assert!(
        !message.contains('\n'),
        "message is not one line: {message}"
    );
    err
}

#[test]
fn missing_file_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.nii.gz");
    assert!(matches!(error_for(&missing), ReadError::NotFound { .. }));
    assert!(matches!(
        read_header(&missing),
        Err(ReadError::NotFound { .. })
    ));
    assert!(matches!(
        error_for(dir.path()),
        ReadError::IsDirectory { .. }
    ));
}

#[test]
fn not_nifti_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let random: Vec<u8> = (0..4000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    assert!(matches!(
        read_error(dir.path(), "random.nii", &random),
        ReadError::NotNifti { .. }
    ));
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x02\0\0\0\x02\0\x08\x06\0\0\0".to_vec();
    png.resize(2000, 0);
    assert!(matches!(
        read_error(dir.path(), "scan.nii", &png),
        ReadError::NotNifti { .. }
    ));
    assert!(matches!(
        read_error(dir.path(), "empty.nii", b""),
        ReadError::NotNifti { .. }
    ));
    assert!(matches!(
        read_error(dir.path(), "tiny.nii", b"abc"),
        ReadError::NotNifti { .. }
    ));
    // Gzipped garbage is still garbage.
    let err = read_error(dir.path(), "random.nii.gz", &gzip(&random));
    assert!(matches!(err, ReadError::NotNifti { .. }), "{err}");

    // An Analyze 7.5 header (no NIfTI magic) is read only as a .hdr/.img pair, as nibabel reads
    // it; as a single file nibabel does not recognise it either.
    let mut analyze = valid_nii();
    analyze[field::MAGIC..field::MAGIC + 4].fill(0);
    let err = read_error(dir.path(), "analyze.nii", &analyze);
    assert!(
        matches!(err, ReadError::NotNifti { .. }) && err.to_string().contains("Analyze"),
        "{err}"
    );
    let err = read_error(dir.path(), "analyze.hdr", &analyze);
    assert!(matches!(err, ReadError::MissingCompanion { .. }), "{err}");

    let mut dicom = vec![0u8; 600];
    dicom[128..132].copy_from_slice(b"DICM");
    let err = read_error(dir.path(), "slice.dcm", &dicom);
    assert!(
        matches!(err, ReadError::NotNifti { .. }) && err.to_string().contains("DICOM"),
        "{err}"
    );

    let mut nifti2 = valid_nii();
    nifti2[field::SIZEOF_HDR..4].copy_from_slice(&540i32.to_le_bytes());
    let err = read_error(dir.path(), "two.nii", &nifti2);
    assert!(
        matches!(err, ReadError::NotNifti { .. }) && err.to_string().contains("NIfTI-2"),
        "{err}"
    );
}

#[test]
fn truncated_header_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let nii = valid_nii();
    let err = read_error(dir.path(), "short_header.nii", &nii[..200]);
    assert!(
        matches!(err, ReadError::TruncatedHeader { found: 200, .. }),
        "{err}"
    );

    let gz = fs::read(fixtures().join("gz.nii.gz")).unwrap();
    let err = read_error(dir.path(), "cut.nii.gz", &gz[..gz.len() / 2]);
    assert!(matches!(err, ReadError::TruncatedGzip { .. }), "{err}");
    let err = read_error(dir.path(), "cut_header.nii.gz", &gz[..40]);
    assert!(matches!(err, ReadError::TruncatedGzip { .. }), "{err}");
    // Only the 8-byte trailer missing: every voxel is there but the checksum is not.
    let err = read_error(dir.path(), "no_trailer.nii.gz", &gz[..gz.len() - 8]);
    assert!(matches!(err, ReadError::TruncatedGzip { .. }), "{err}");

    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let err = read_error(dir.path(), "bad_crc.nii.gz", &bad_crc);
    assert!(matches!(err, ReadError::CorruptGzip { .. }), "{err}");

    let mut scrambled = gzip(&valid_nii());
    let middle = scrambled.len() / 2;
    scrambled[middle..middle + 8].copy_from_slice(b"\xff\xff\xff\xff\x00\x00\x00\x00");
    let err = read_error(dir.path(), "scrambled.nii.gz", &scrambled);
    assert!(
        matches!(
            err,
            ReadError::CorruptGzip { .. } | ReadError::TruncatedGzip { .. }
        ),
        "{err}"
    );
}

#[test]
fn voxel_data_missing_or_misplaced() {
    let dir = tempfile::tempdir().unwrap();
    let nii = valid_nii();
    let err = read_error(dir.path(), "short_data.nii", &nii[..nii.len() - 10]);
    assert!(matches!(err, ReadError::TruncatedData { .. }), "{err}");
    let err = read_error(dir.path(), "no_data.nii", &nii[..352]);
    assert!(matches!(err, ReadError::TruncatedData { .. }), "{err}");

    let mut far = nii.clone();
    put_f32(&mut far, field::VOX_OFFSET, 100_000.0);
    let err = read_error(dir.path(), "far.nii", &far);
    assert!(
        matches!(
            err,
            ReadError::VoxOffsetBeyondData {
                vox_offset: 100_000,
                ..
            }
        ),
        "{err}"
    );
    let err = read_error(dir.path(), "far.nii.gz", &gzip(&far));
    assert!(
        matches!(err, ReadError::VoxOffsetBeyondData { .. }),
        "{err}"
    );
    let err = read_error(
        dir.path(),
        "short_data.nii.gz",
        &gzip(&nii[..nii.len() - 10]),
    );
    assert!(matches!(err, ReadError::TruncatedGzip { .. }), "{err}");

    for (name, offset) in [
        ("zero_offset.nii", 0.0),
        ("in_header.nii", 200.0),
        ("nan_offset.nii", f32::NAN),
    ] {
        let mut bad = nii.clone();
        put_f32(&mut bad, field::VOX_OFFSET, offset);
        assert!(matches!(
            read_error(dir.path(), name, &bad),
            ReadError::InvalidVoxOffset { .. }
        ));
    }
}

#[test]
fn bad_dimensions() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, usize, i16); 4] = [
        ("zero_dim.nii", field::DIM + 4, 0),
        ("negative_dim.nii", field::DIM + 2, -7),
        ("dim0_zero.nii", field::DIM, 0),
        ("dim0_nine.nii", field::DIM, 9),
    ];
    for (name, at, value) in cases {
        let mut bad = valid_nii();
        put_i16(&mut bad, at, value);
        let err = read_error(dir.path(), name, &bad);
        assert!(
            matches!(err, ReadError::InvalidDims { .. }),
            "{name}: {err}"
        );
        assert!(matches!(
            read_header(&dir.path().join(name)),
            Err(ReadError::InvalidDims { .. })
        ));
    }

    let mut two_d = valid_nii();
    put_i16(&mut two_d, field::DIM, 2);
    let err = read_error(dir.path(), "flat.nii", &two_d);
    assert!(
        matches!(err, ReadError::NotThreeD { .. }) && err.to_string().contains("2-D 7×5"),
        "{err}"
    );

    let mut four_d = valid_nii();
    put_i16(&mut four_d, field::DIM, 4);
    put_i16(&mut four_d, field::DIM + 8, 2);
    let err = read_error(dir.path(), "series.nii", &four_d);
    assert!(
        matches!(err, ReadError::NotThreeD { .. }) && err.to_string().contains("4-D 7×5×3×2"),
        "{err}"
    );
}

#[test]
fn huge_claims_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let header_only = |dims: [i16; 3]| {
        let mut bytes = valid_nii()[..352].to_vec();
        for (k, d) in dims.into_iter().enumerate() {
            put_i16(&mut bytes, field::DIM + 2 + 2 * k, d);
        }
        bytes
    };
    // 32000³ voxels: beyond the 2³¹-voxel cap.
    let beyond_cap = header_only([32000, 32000, 32000]);
    // 2000×2000×500 int16 (4 GB): under the cap, but not in a 352-byte file.
    let under_cap = header_only([2000, 2000, 500]);
    let cases: [(&str, Vec<u8>); 4] = [
        ("cap.nii", beyond_cap.clone()),
        ("cap.nii.gz", gzip(&beyond_cap)),
        ("big.nii", under_cap.clone()),
        ("big.nii.gz", gzip(&under_cap)),
    ];
    for (name, bytes) in cases {
        let (err, largest) = largest_allocation_during(|| read_error(dir.path(), name, &bytes));
        let expected_kind = match name {
            "big.nii" => matches!(err, ReadError::TruncatedData { .. }),
            _ => matches!(err, ReadError::TooLarge { .. }),
        };
        assert!(expected_kind, "{name}: {err}");
        assert!(
            largest < 1 << 20,
            "{name}: allocated {largest} bytes before refusing"
        );
    }
}

#[test]
fn unsupported_datatypes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (code, name) in [
        (32, "complex64"),
        (128, "RGB24"),
        (1, "binary"),
        (1536, "float128"),
        (1792, "complex128"),
        (2304, "RGBA32"),
        (77, "unknown"),
    ] {
        let mut bytes = valid_nii();
        put_i16(&mut bytes, field::DATATYPE, code);
        let err = read_error(dir.path(), &format!("type{code}.nii"), &bytes);
        assert!(
            matches!(err, ReadError::UnsupportedDatatype { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn bad_scaling_and_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let mut inf_inter = valid_nii();
    put_f32(&mut inf_inter, field::SCL_SLOPE, 1.0);
    put_f32(&mut inf_inter, field::SCL_INTER, f32::INFINITY);
    let err = read_error(dir.path(), "inf_inter.nii", &inf_inter);
    assert!(matches!(err, ReadError::InvalidScaling { .. }), "{err}");

    // A NaN voxel size passes through, as nibabel's get_zooms() reports it.
    let mut nan_pixdim = valid_nii();
    put_f32(&mut nan_pixdim, field::PIXDIM + 8, f32::NAN);
    let path = dir.path().join("nan_pixdim.nii");
    fs::write(&path, &nan_pixdim).unwrap();
    let volume = read_volume(&path).unwrap();
    assert!(
        volume.spacing[1].is_nan() && volume.spacing[0] == 0.75,
        "{:?}",
        volume.spacing
    );

    let mut bad_quaternion = valid_nii();
    put_i16(&mut bad_quaternion, field::QFORM_CODE, 1);
    put_i16(&mut bad_quaternion, field::SFORM_CODE, 0);
    put_f32(&mut bad_quaternion, field::QUATERN_B, 0.9);
    put_f32(&mut bad_quaternion, field::QUATERN_B + 4, 0.9);
    let err = read_error(dir.path(), "bad_quaternion.nii", &bad_quaternion);
    assert!(matches!(err, ReadError::InvalidGeometry { .. }), "{err}");
}

#[test]
fn pair_halves_missing() {
    let dir = tempfile::tempdir().unwrap();
    let header = dir.path().join("lonely.hdr");
    fs::copy(fixtures().join("pair.hdr"), &header).unwrap();
    let err = error_for(&header);
    assert!(matches!(err, ReadError::MissingCompanion { .. }), "{err}");
    assert!(err.to_string().contains("lonely.img"), "{err}");

    let image = dir.path().join("orphan.img");
    fs::copy(fixtures().join("pair.img"), &image).unwrap();
    let err = error_for(&image);
    assert!(matches!(err, ReadError::MissingCompanion { .. }), "{err}");
    assert!(err.to_string().contains("orphan.hdr"), "{err}");

    // A truncated image file.
    let short = dir.path().join("short.hdr");
    fs::copy(fixtures().join("pair.hdr"), &short).unwrap();
    let img = fs::read(fixtures().join("pair.img")).unwrap();
    fs::write(dir.path().join("short.img"), &img[..img.len() - 2]).unwrap();
    let err = error_for(&short);
    assert!(
        matches!(err, ReadError::TruncatedData { .. }) && err.to_string().contains("short.img"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A 9×6×4 volume with an oblique, flipped, f32-exact affine and distinctive values.
fn sample_volume() -> Volume {
    let mut v = Volume::from_fn([9, 6, 4], |x, y, z| {
        (x as f32 * 37.25 - y as f32 * 101.5 + z as f32 * 250.0 - 600.0)
            * if (x + y) % 3 == 0 { -1.0 } else { 1.0 }
    });
    v.spacing = [0.625, 1.25, 2.5];
    // Columns 0.625 * (0.6, 0.8, 0), 1.25 * (0.8, -0.6, 0), 2.5 * (0, 0, 1): an oblique rotation
    // with a flip (determinant < 0), every entry exact in f32.
    v.affine = [
        [0.375, 1.0, 0.0, -12.5],
        [0.5, -0.75, 0.0, 40.0],
        [0.0, 0.0, 2.5, 7.25],
        [0.0, 0.0, 0.0, 1.0],
    ];
    v
}

#[test]
fn f32_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut volume = sample_volume();
    volume.data_mut()[5] = f32::NAN;
    volume.data_mut()[6] = f32::NEG_INFINITY;
    volume.data_mut()[7] = -0.0;
    for name in ["out.nii", "out.nii.gz", "OUT.NII.GZ"] {
        let path = dir.path().join(name);
        write_volume(&path, &volume, OutputDtype::F32).unwrap();
        let back = read_volume(&path).unwrap();
        assert_eq!(back.shape(), volume.shape(), "{name}");
        let bits = |v: &Volume| v.data().iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&volume), "{name}");
        assert_eq!(back.spacing, volume.spacing, "{name}");
        assert_eq!(back.affine, volume.affine, "{name}");
        assert_eq!(back.provenance.datatype.as_deref(), Some("float32"));
        let header = read_header(&path).unwrap();
        assert_eq!(
            (header.sform_code, header.qform_code),
            (2, 0),
            "{name}: nibabel's codes"
        );
        assert_eq!(
            header.gzipped,
            name.to_lowercase().ends_with(".gz"),
            "{name}"
        );
        assert_eq!(header.vox_offset, 352);
    }
}

#[test]
fn written_header_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fields.nii");
    write_volume(&path, &sample_volume(), OutputDtype::F32).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 352 + 9 * 6 * 4 * 4);
    assert_eq!(
        bytes[field::XYZT_UNITS],
        2,
        "xyzt_units must say millimetres"
    );
    assert_eq!(&bytes[field::MAGIC..field::MAGIC + 4], b"n+1\0");
    let pixdim0 = f32::from_le_bytes(bytes[field::PIXDIM..field::PIXDIM + 4].try_into().unwrap());
    assert_eq!(pixdim0, -1.0, "qfac of a flipped affine");

    // The quaternion written with qform code 0 must describe the same affine: switch to it.
    put_i16(&mut bytes, field::QFORM_CODE, 1);
    put_i16(&mut bytes, field::SFORM_CODE, 0);
    let qform_path = dir.path().join("qform.nii");
    fs::write(&qform_path, &bytes).unwrap();
    let from_qform = read_volume(&qform_path).unwrap();
    let want = sample_volume().affine;
    for r in 0..3 {
        for c in 0..4 {
            assert!(
                (from_qform.affine[r][c] - want[r][c]).abs() < 1e-6,
                "{:?} vs {want:?}",
                from_qform.affine
            );
        }
    }
}

#[test]
fn i16_output_rounds_half_away_and_saturates() {
    let dir = tempfile::tempdir().unwrap();
    let values = [
        2.5,
        -2.5,
        0.49,
        -0.5,
        1e6,
        -1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1024.0,
        32767.4,
    ];
    let mut volume = Volume::new([values.len(), 1, 1], values.to_vec()).unwrap();
    volume.spacing = [0.7, 0.7, 5.0];
    let path = dir.path().join("ct.nii.gz");
    write_volume(&path, &volume, OutputDtype::I16).unwrap();
    let back = read_volume(&path).unwrap();
    assert_eq!(
        back.data(),
        &[
            3.0, -3.0, 0.0, -1.0, 32767.0, -32768.0, 32767.0, -32768.0, -1024.0, 32767.0
        ]
    );
    assert_eq!(back.provenance.datatype.as_deref(), Some("int16"));
    assert_eq!(back.spacing, [f64::from(0.7f32), f64::from(0.7f32), 5.0]);
}

#[test]
fn uint8_writing_rounds_saturates_and_refuses_nan() {
    let dir = tempfile::tempdir().unwrap();
    let values = [0.0f32, 1.0, 0.49, 0.5, -3.0, 254.6, 300.0, f32::INFINITY];
    let mut volume = Volume::new([values.len(), 1, 1], values.to_vec()).unwrap();
    volume.spacing = [0.7, 0.7, 8.0];
    let path = dir.path().join("mask.nii.gz");
    write_volume(&path, &volume, OutputDtype::U8).unwrap();
    assert_eq!(read_header(&path).unwrap().datatype, Datatype::U8);
    let back = read_volume(&path).unwrap();
    assert_eq!(back.data(), &[0.0, 1.0, 0.0, 1.0, 0.0, 255.0, 255.0, 255.0]);
    assert_eq!(back.provenance.datatype.as_deref(), Some("uint8"));

    volume.data_mut()[2] = f32::NAN;
    let err = write_volume(&path, &volume, OutputDtype::U8).unwrap_err();
    assert!(
        matches!(
            err,
            WriteError::NanInInteger {
                index: [2, 0, 0],
                dtype: "uint8",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("uint8 cannot store"), "{err}");
}

#[test]
fn write_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let volume = sample_volume();
    let check = |err: WriteError, path: &Path| {
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()) && !message.contains('\n'),
            "{message}"
        );
        assert!(
            !path.exists(),
            "{}: written despite the error",
            path.display()
        );
        err
    };

    for name in ["scan.hdr", "scan.img", "scan.txt", "scan.gz"] {
        let path = dir.path().join(name);
        let err = check(
            write_volume(&path, &volume, OutputDtype::F32).unwrap_err(),
            &path,
        );
        assert!(matches!(err, WriteError::UnsupportedName { .. }), "{err}");
    }

    let mut with_nan = volume.clone();
    let nan_index = with_nan.index(4, 2, 3);
    with_nan.data_mut()[nan_index] = f32::NAN;
    let path = dir.path().join("nan.nii.gz");
    let err = check(
        write_volume(&path, &with_nan, OutputDtype::I16).unwrap_err(),
        &path,
    );
    assert!(
        matches!(
            err,
            WriteError::NanInInteger {
                index: [4, 2, 3],
                ..
            }
        ),
        "{err}"
    );

    let wide = Volume::filled([40_000, 1, 1], 0.0);
    let path = dir.path().join("wide.nii");
    let err = check(
        write_volume(&path, &wide, OutputDtype::F32).unwrap_err(),
        &path,
    );
    assert!(matches!(err, WriteError::ShapeNotStorable { .. }), "{err}");

    let mut flat = volume.clone();
    flat.affine[0][0] = 0.0;
    flat.affine[1][0] = 0.0;
    let path = dir.path().join("flat.nii");
    let err = check(
        write_volume(&path, &flat, OutputDtype::F32).unwrap_err(),
        &path,
    );
    assert!(matches!(err, WriteError::InvalidGeometry { .. }), "{err}");

    let mut no_spacing = volume.clone();
    no_spacing.spacing[2] = 0.0;
    let path = dir.path().join("no_spacing.nii");
    let err = check(
        write_volume(&path, &no_spacing, OutputDtype::F32).unwrap_err(),
        &path,
    );
    assert!(matches!(err, WriteError::InvalidGeometry { .. }), "{err}");

    let path = dir.path().join("missing_dir/out.nii");
    let err = write_volume(&path, &volume, OutputDtype::F32).unwrap_err();
    assert!(
        matches!(err, WriteError::Io { .. }) && err.to_string().contains("missing_dir"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real files (when ../shared/realdata is present)

fn sha256_of(volume: &Volume) -> String {
    let mut hasher = Sha256::new();
    for v in volume.data() {
        hasher.update(v.to_le_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn real_files_match_nibabel() {
    let Some(root) = support::realdata("real_files_match_nibabel") else {
        return;
    };
    let text = fs::read_to_string(fixtures().join("realdata_expected.json")).unwrap();
    let expected: BTreeMap<String, Value> = serde_json::from_str(&text).unwrap();
    assert!(expected.contains_key("totalsegmentator_ct/example_ct.nii.gz"));
    assert!(expected.keys().any(|k| k.contains("dcm2niix")));
    for (rel, want) in &expected {
        let volume = read_volume(&root.join(rel)).unwrap_or_else(|e| panic!("{e}"));
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(volume.shape().to_vec(), shape, "{rel}");
        assert_eq!(
            volume.provenance.datatype.as_deref(),
            want["datatype"].as_str(),
            "{rel}"
        );
        let stats = volume.stats().unwrap();
        assert_eq!(
            f64::from(stats.min),
            want["min"].as_f64().unwrap(),
            "{rel}: min"
        );
        assert_eq!(
            f64::from(stats.max),
            want["max"].as_f64().unwrap(),
            "{rel}: max"
        );
        let mean = want["mean"].as_f64().unwrap();
        assert!(
            (stats.mean - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "{rel}: mean {} vs {mean}",
            stats.mean
        );
        assert_eq!(
            sha256_of(&volume),
            want["sha256_f32"].as_str().unwrap(),
            "{rel}: voxel bytes differ from nibabel"
        );
        assert_affine_close(&volume.affine, &affine_of(&want["affine"]), rel);
        assert_eq!(
            volume.spacing,
            floats::<3>(&want["spacing"]),
            "{rel}: spacing"
        );
        assert_eq!(
            orientation_codes(&volume.affine),
            codes(want["axcodes"].as_str().unwrap()),
            "{rel}"
        );
    }
    // The CT files the brief names, by their documented numbers.
    let ct = read_header(&root.join("totalsegmentator_ct/example_ct.nii.gz")).unwrap();
    assert_eq!(
        (ct.datatype, ct.sform_code, ct.qform_code),
        (Datatype::I32, 2, 0)
    );
    let dcm = read_header(
        &root.join("totalsegmentator_ct/dcm2niix_converted/ts_example_ct_dicom_dcm2niix.nii.gz"),
    )
    .unwrap();
    assert_eq!(
        (dcm.datatype, dcm.scaling.map(|s| s.inter)),
        (Datatype::I16, Some(-1024.0))
    );
    assert_eq!(dcm.orientation(), ['L', 'A', 'S']);
}

#[test]
fn real_analyze_style_pair_reads_from_either_half() {
    let Some(root) = support::realdata("real_analyze_style_pair_reads_from_either_half") else {
        return;
    };
    let dir = root.join("nifti_corpus/niivue");
    let from_hdr = read_volume(&dir.join("ras.hdr")).unwrap();
    let from_img = read_volume(&dir.join("ras.img")).unwrap();
    assert_eq!(from_hdr.shape(), [62, 41, 34]);
    assert_eq!(from_hdr, {
        let mut v = from_img;
        v.provenance = from_hdr.provenance.clone();
        v
    });
}

#[test]
fn real_unsupported_files_are_refused_by_name() {
    let Some(root) = support::realdata("real_unsupported_files_are_refused_by_name") else {
        return;
    };
    let dir = root.join("nifti_corpus/niivue");
    let err = error_for(&dir.join("complex.nii.gz"));
    assert!(
        matches!(err, ReadError::UnsupportedDatatype { .. })
            && err.to_string().contains("complex64"),
        "{err}"
    );
    // Despite its name, ct_perfusion.nii.gz is a 3-D RGB24 image (256×286×15).
    let err = error_for(&dir.join("ct_perfusion.nii.gz"));
    assert!(
        matches!(err, ReadError::UnsupportedDatatype { .. }) && err.to_string().contains("RGB24"),
        "{err}"
    );
}

/// Reorders `volume` to RAS+ axis order by whole-voxel flips and permutations (nibabel's
/// `as_closest_canonical` for an affine that is a signed permutation times voxel sizes).
fn to_ras(volume: &Volume) -> (Vec<f32>, [usize; 3]) {
    let shape = volume.shape();
    let mut world_axis = [0usize; 3];
    let mut flipped = [false; 3];
    for axis in 0..3 {
        let column = [0, 1, 2].map(|r| volume.affine[r][axis]);
        let dominant = (0..3)
            .max_by(|&a, &b| column[a].abs().total_cmp(&column[b].abs()))
            .unwrap();
        let others: f64 = (0..3)
            .filter(|&r| r != dominant)
            .map(|r| column[r].abs())
            .sum();
        assert!(
            others < 1e-6 * column[dominant].abs(),
            "not a permutation affine: {:?}",
            volume.affine
        );
        world_axis[axis] = dominant;
        flipped[axis] = column[dominant] < 0.0;
    }
    let mut out_shape = [0usize; 3];
    for axis in 0..3 {
        out_shape[world_axis[axis]] = shape[axis];
    }
    let mut out = vec![0.0f32; volume.len()];
    for z in 0..shape[2] {
        for y in 0..shape[1] {
            for x in 0..shape[0] {
                let mut o = [0usize; 3];
                for (axis, i) in [x, y, z].into_iter().enumerate() {
                    o[world_axis[axis]] = if flipped[axis] {
                        shape[axis] - 1 - i
                    } else {
                        i
                    };
                }
                out[o[0] + out_shape[0] * (o[1] + out_shape[1] * o[2])] = volume.get(x, y, z);
            }
        }
    }
    (out, out_shape)
}

#[test]
fn real_48_axis_orders_agree_in_world_space() {
    let Some(root) = support::realdata("real_48_axis_orders_agree_in_world_space") else {
        return;
    };
    let dir = root.join("nifti_corpus/niivue/nifti_space");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".nii.gz"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 48);
    let mut reference: Option<(Vec<f32>, [usize; 3], PathBuf)> = None;
    for path in files {
        let volume = read_volume(&path).unwrap();
        let stem = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".nii.gz");
        assert_eq!(
            orientation_codes(&volume.affine),
            codes(stem),
            "{}",
            path.display()
        );
        let (ras, shape) = to_ras(&volume);
        match &reference {
            None => reference = Some((ras, shape, path)),
            Some((want, want_shape, first)) => {
                assert_eq!(
                    shape,
                    *want_shape,
                    "{} vs {}",
                    path.display(),
                    first.display()
                );
                assert!(
                    ras == *want,
                    "{} differs from {} in world space",
                    path.display(),
                    first.display()
                );
            }
        }
    }
}
