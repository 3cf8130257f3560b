//! NRRD and MetaImage against their reference readers (issue 17): every scan of the corpus
//! `tools/golden/gen_formats_golden.py` writes with pynrrd, SimpleITK and by hand reads through
//! [`read_scan`] to the voxel values pynrrd / SimpleITK return and the RAS+ affine they describe;
//! the seam lists the headers and never their data files, and hashes both; and bad inputs
//! (truncated data, overflowing sizes, a missing data file, unknown encodings, lying compression
//! claims, arbitrary header damage) are one-line errors naming the file, never panics.

use std::fs;
use std::path::{Path, PathBuf};

use ct3d_volume::cache::hash_file;
use ct3d_volume::format::{
    FormatError, Recognition, ScanError, ScanFiles, format_of, is_listed_scan, list_scans,
    read_scan, scan_files,
};
use serde_json::Value;

use crate::nifti_io::largest_allocation_during;
use crate::support;

fn corpus() -> PathBuf {
    support::golden_dir().join("formats")
}

fn cases() -> Vec<Value> {
    let text = fs::read_to_string(corpus().join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    manifest["cases"].as_array().unwrap().clone()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_corpus_scan_reads_as_its_reference_readers_read_it() {
    let cases = cases();
    let count = |format: &str, writer: &str| {
        cases
            .iter()
            .filter(|c| c["format"] == format && c["writer"] == writer)
            .count()
    };
    // The corpus is what the generator writes: a shrunken manifest fails here.
    assert!(count("NRRD", "pynrrd") >= 14, "NRRD by pynrrd");
    assert!(count("NRRD", "SimpleITK") >= 3, "NRRD by SimpleITK");
    assert!(count("NRRD", "hand") >= 3, "NRRD by hand");
    assert!(
        count("MetaImage", "SimpleITK") >= 10,
        "MetaImage by SimpleITK"
    );
    assert!(count("MetaImage", "hand") >= 6, "MetaImage by hand");

    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let path = corpus().join(case["file"].as_str().unwrap());
        assert_eq!(
            format_of(&path).map(|f| f.name()),
            case["format"].as_str(),
            "{name}"
        );
        let volume = read_scan(&path, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = support::read_npy(&corpus().join(case["values"].as_str().unwrap()));
        assert_eq!(volume.shape().to_vec(), expected.shape, "{name}: shape");
        // Identical values: the reference's samples rounded once to f32.
        for (i, (&got, &want)) in volume.data().iter().zip(&expected.values).enumerate() {
            assert!(
                got.to_bits() == (want as f32).to_bits(),
                "{name}: voxel {i} (x fastest) is {got}, the reference reads {want}"
            );
        }
        let spacing = case["spacing"].as_array().unwrap();
        for k in 0..3 {
            let want = spacing[k].as_f64().unwrap();
            assert!(
                (volume.spacing[k] - want).abs() <= 1e-6,
                "{name}: spacing {:?}, reference {spacing:?}",
                volume.spacing
            );
        }
        let affine = case["affine"].as_array().unwrap();
        for r in 0..4 {
            for c in 0..4 {
                let want = affine[r][c].as_f64().unwrap();
                assert!(
                    (volume.affine[r][c] - want).abs() <= 1e-6,
                    "{name}: affine {:?}, reference {affine:?}",
                    volume.affine
                );
            }
        }
        assert_eq!(
            volume.provenance.datatype.as_deref(),
            case["datatype"].as_str(),
            "{name}: datatype"
        );
        assert_eq!(volume.provenance.path.as_deref(), Some(path.as_path()));
    }
}

#[test]
fn the_seam_lists_headers_hashes_their_data_and_refuses_data_files() {
    let cases = cases();
    let mut headers: Vec<PathBuf> = cases
        .iter()
        .map(|c| corpus().join(c["file"].as_str().unwrap()))
        .collect();
    headers.sort();
    // The folder also holds the data files and the expected .npy values: only headers are scans.
    assert_eq!(list_scans(&corpus()).unwrap(), headers);

    for case in &cases {
        let files: Vec<PathBuf> = strings(&case["files"])
            .iter()
            .map(|f| corpus().join(f))
            .collect();
        let header = &files[0];
        assert!(is_listed_scan(header), "{}", header.display());
        if files.len() == 1 {
            assert_eq!(scan_files(header).unwrap(), ScanFiles::Single);
        } else {
            assert_eq!(
                scan_files(header).unwrap(),
                ScanFiles::Files(files.clone()),
                "{}",
                header.display()
            );
        }
        for data in &files[1..] {
            assert!(!is_listed_scan(data), "{}", data.display());
            let data_name = data.file_name().unwrap().to_string_lossy().to_string();
            let header_stem = header.file_stem().unwrap().to_string_lossy().to_string();
            let named_after_header = [".raw", ".zraw", ".raw.gz"]
                .iter()
                .any(|ext| data_name == format!("{header_stem}{ext}"));
            {
                if named_after_header {
                    // The `x.raw` of an `x.mhd` / `x.nhdr`: a part, read as an error naming the
                    // header to give.
                    let claim = format_of(data)
                        .map(|f| f.recognize(data))
                        .unwrap_or(Recognition::No);
                    assert_eq!(claim, Recognition::Part, "{}", data.display());
                    let err = read_scan(data, None).unwrap_err();
                    let ScanError::Format(inner) = &err else {
                        panic!("{err}")
                    };
                    assert!(
                        matches!(
                            inner.downcast_ref::<FormatError>(),
                            Some(FormatError::DataFileGiven { .. })
                        ),
                        "{err}"
                    );
                    assert_eq!(
                        err.to_string(),
                        format!(
                            "{}: the data file of {}; give that header instead",
                            data.display(),
                            header.display()
                        )
                    );
                }
            }
        }
    }
}

#[test]
fn names_are_recognised_in_any_case_and_lone_data_files_are_no_scans() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::copy(corpus().join("s_i16_oblique.mha"), dir.join("A.MHA")).unwrap();
    fs::copy(corpus().join("p_u8_gzip_ras.nrrd"), dir.join("b.Nrrd")).unwrap();
    fs::copy(corpus().join("p_i16_raw_le_lps.nrrd"), dir.join("c.nrrd")).unwrap();
    // A .raw with no header beside it, and a header-less .zraw: nobody's part, no scans.
    fs::write(dir.join("orphan.raw"), [0u8; 16]).unwrap();
    fs::write(dir.join("c.zraw"), [0u8; 16]).unwrap();
    assert_eq!(
        list_scans(dir).unwrap(),
        vec![dir.join("A.MHA"), dir.join("b.Nrrd"), dir.join("c.nrrd")]
    );
    assert_eq!(
        format_of(&dir.join("A.MHA")).map(|f| f.name()),
        Some("MetaImage")
    );
    assert_eq!(
        format_of(&dir.join("b.Nrrd")).map(|f| f.name()),
        Some("NRRD")
    );
    for lone in ["orphan.raw", "c.zraw"] {
        // Read by the NIfTI fallback, whose error says what the file is not.
        assert_eq!(
            format_of(&dir.join(lone)).map(|f| f.name()),
            Some("NIfTI"),
            "{lone}"
        );
    }
    read_scan(&dir.join("A.MHA"), None).unwrap();
    read_scan(&dir.join("b.Nrrd"), None).unwrap();
    // A missing file says so, whatever its name.
    for gone in ["gone.nrrd", "gone.mhd"] {
        let err = read_scan(&dir.join(gone), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: no such file", dir.join(gone).display())
        );
    }
}

#[test]
fn changing_a_detached_data_file_changes_the_cache_hash() {
    let tmp = tempfile::tempdir().unwrap();
    for (header, data) in [
        ("p_i32_detached.nhdr", "p_i32_detached.raw"),
        ("s_f32.mhd", "s_f32.raw"),
        ("h_list.mhd", "h_list_03.raw"),
    ] {
        let mut files = vec![header.to_owned(), data.to_owned()];
        if header == "h_list.mhd" {
            files = (0..5).map(|z| format!("h_list_{z:02}.raw")).collect();
            files.push(header.to_owned());
        }
        for file in &files {
            fs::copy(corpus().join(file), tmp.path().join(file)).unwrap();
        }
        let header = tmp.path().join(header);
        let before = hash_file(&header).unwrap();
        let original = read_scan(&header, None).unwrap();
        let data = tmp.path().join(data);
        let mut bytes = fs::read(&data).unwrap();
        // The most significant byte of the last (little-endian) sample.
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(&data, &bytes).unwrap();
        assert_ne!(hash_file(&header).unwrap(), before, "{}", header.display());
        assert_ne!(read_scan(&header, None).unwrap().data(), original.data());
    }
    // A NIfTI `.hdr`/`.img` pair too (it used to hash the header alone).
    let nifti = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nifti");
    for file in ["pair.hdr", "pair.img"] {
        fs::copy(nifti.join(file), tmp.path().join(file)).unwrap();
    }
    let header = tmp.path().join("pair.hdr");
    let before = hash_file(&header).unwrap();
    let image = tmp.path().join("pair.img");
    let mut bytes = fs::read(&image).unwrap();
    bytes[0] ^= 0x01;
    fs::write(&image, &bytes).unwrap();
    assert_ne!(
        hash_file(&header).unwrap(),
        before,
        "the .img of a pair is hashed"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad inputs

/// Reads `path`, which must fail with a one-line message beginning with the path; returns the
/// format error.
fn format_error(path: &Path) -> FormatError {
    let err = read_scan(path, None).expect_err("a bad input must not read");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}: ", path.display())),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    match err {
        ScanError::Format(inner) => *inner.downcast::<FormatError>().expect("a FormatError"),
        other => panic!("not a format error: {other}"),
    }
}

/// A corpus file's bytes.
fn fixture(name: &str) -> Vec<u8> {
    fs::read(corpus().join(name)).unwrap()
}

/// `text` with `from` replaced by `to` (which must occur).
fn edited(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from:?} not in the header"));
    [&bytes[..at], to.as_bytes(), &bytes[at + from.len()..]].concat()
}

/// An attached NRRD header for `sizes`/`encoding`/`type` followed by `data`.
fn nrrd_bytes(fields: &str, data: &[u8]) -> Vec<u8> {
    [format!("NRRD0004\n{fields}\n").as_bytes(), data].concat()
}

#[test]
fn truncated_data_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Attached raw NRRD, one byte short.
    let full = fixture("p_i16_raw_le_lps.nrrd");
    let path = dir.join("short.nrrd");
    fs::write(&path, &full[..full.len() - 1]).unwrap();
    let err = format_error(&path);
    assert!(
        matches!(err, FormatError::Truncated { needed: 420, .. }),
        "{err}"
    );
    // Attached gzip NRRD cut in the middle of its stream.
    let full = fixture("p_i64_gzip.nrrd");
    let path = dir.join("short_gzip.nrrd");
    fs::write(&path, &full[..full.len() - 40]).unwrap();
    let err = format_error(&path);
    assert!(
        matches!(
            err,
            FormatError::TruncatedCompressed { .. } | FormatError::Corrupt { .. }
        ),
        "{err}"
    );
    // Detached raw MetaImage: the .raw one sample short; compressed .mha cut short.
    fs::write(dir.join("s_f32.mhd"), fixture("s_f32.mhd")).unwrap();
    let raw = fixture("s_f32.raw");
    fs::write(dir.join("s_f32.raw"), &raw[..raw.len() - 4]).unwrap();
    let err = format_error(&dir.join("s_f32.mhd"));
    let FormatError::Truncated { data, needed, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((data, *needed), (&dir.join("s_f32.raw"), 840));
    assert!(err.to_string().contains("s_f32.raw"), "{err}");
    let full = fixture("s_u16_c.mha");
    let path = dir.join("short_c.mha");
    fs::write(&path, &full[..full.len() - 10]).unwrap();
    // CompressedDataSize now exceeds what is left of the file.
    assert!(matches!(format_error(&path), FormatError::Truncated { .. }));
    // Without CompressedDataSize the stream itself ends early.
    let cut = edited(&full[..full.len() - 10], "CompressedDataSize", "Comment");
    fs::write(&path, cut).unwrap();
    let err = format_error(&path);
    assert!(
        matches!(
            err,
            FormatError::TruncatedCompressed { .. } | FormatError::Corrupt { .. }
        ),
        "{err}"
    );
    // A LIST slice file one byte short.
    for z in 0..5 {
        let name = format!("h_list_{z:02}.raw");
        let mut bytes = fixture(&name);
        if z == 4 {
            bytes.pop();
        }
        fs::write(dir.join(&name), bytes).unwrap();
    }
    fs::write(dir.join("h_list.mhd"), fixture("h_list.mhd")).unwrap();
    let err = format_error(&dir.join("h_list.mhd"));
    assert!(err.to_string().contains("h_list_04.raw"), "{err}");
}

#[test]
fn sizes_that_overflow_or_exceed_the_limit_are_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let nrrd_sizes = [
        "18446744073709551615 18446744073709551615 2", // product overflows u64
        "4294967296 4294967296 1",                     // 2^64: overflows
        "2048 2048 1024",                              // 2^32 voxels: over ct3d's limit
    ];
    for (k, sizes) in nrrd_sizes.iter().enumerate() {
        let path = dir.join(format!("huge{k}.nrrd"));
        let header =
            format!("type: short\ndimension: 3\nsizes: {sizes}\nendian: little\nencoding: raw\n");
        fs::write(&path, nrrd_bytes(&header, &[0u8; 64])).unwrap();
        let (err, largest) = largest_allocation_during(|| format_error(&path));
        assert!(matches!(err, FormatError::TooLarge { .. }), "{err}");
        assert!(largest < 1 << 21, "{sizes}: allocated {largest} bytes");
    }
    // Within the limit but not in the file: truncated, before allocating 1.6 GB.
    let path = dir.join("lying.nrrd");
    let header = "type: float\ndimension: 3\nsizes: 1024 1024 400\nendian: little\nencoding: raw\n";
    fs::write(&path, nrrd_bytes(header, &[0u8; 64])).unwrap();
    let (err, largest) = largest_allocation_during(|| format_error(&path));
    assert!(matches!(err, FormatError::Truncated { .. }), "{err}");
    assert!(largest < 1 << 21, "allocated {largest} bytes");
    // A size too large to be a number at all.
    let path = dir.join("nan.nrrd");
    let header = "type: short\ndimension: 3\nsizes: 99999999999999999999999 2 2\nendian: little\nencoding: raw\n";
    fs::write(&path, nrrd_bytes(header, &[0u8; 64])).unwrap();
    assert!(matches!(format_error(&path), FormatError::BadHeader { .. }));

    for (k, dims) in [
        "18446744073709551615 3 3",
        "65536 65536 65536",
        "4096 4096 4096",
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("huge{k}.mha"));
        let header = format!(
            "ObjectType = Image\nNDims = 3\nDimSize = {dims}\nElementType = MET_DOUBLE\nElementDataFile = LOCAL\n"
        );
        fs::write(&path, [header.as_bytes(), &[0u8; 64]].concat()).unwrap();
        let (err, largest) = largest_allocation_during(|| format_error(&path));
        assert!(matches!(err, FormatError::TooLarge { .. }), "{err}");
        assert!(largest < 1 << 21, "{dims}: allocated {largest} bytes");
    }
}

#[test]
fn a_compression_bomb_claim_is_refused_before_inflating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // 1000×1000×1000 int16 (2 GB) claimed from a few hundred bytes of gzip: more than deflate's
    // 1032:1 could ever give.
    let compressed = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&[0u8; 100_000]).unwrap();
        encoder.finish().unwrap()
    };
    let path = dir.join("bomb.nrrd");
    let header =
        "type: short\ndimension: 3\nsizes: 1000 1000 1000\nendian: little\nencoding: gzip\n";
    fs::write(&path, nrrd_bytes(header, &compressed)).unwrap();
    let (err, largest) = largest_allocation_during(|| format_error(&path));
    assert!(matches!(err, FormatError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("decompress"), "{err}");
    assert!(largest < 1 << 21, "allocated {largest} bytes");

    let zlib = {
        use std::io::Write;
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&[0u8; 100_000]).unwrap();
        encoder.finish().unwrap()
    };
    let path = dir.join("bomb.mha");
    let header = format!(
        "NDims = 3\nCompressedData = True\nCompressedDataSize = {}\nDimSize = 1000 1000 1000\n\
         ElementType = MET_SHORT\nElementDataFile = LOCAL\n",
        zlib.len()
    );
    fs::write(&path, [header.as_bytes(), &zlib].concat()).unwrap();
    let (err, largest) = largest_allocation_during(|| format_error(&path));
    assert!(matches!(err, FormatError::TooLarge { .. }), "{err}");
    assert!(largest < 1 << 21, "allocated {largest} bytes");

    // A claim the ratio allows but the stream does not hold: inflating stops at its end.
    let path = dir.join("short_stream.nrrd");
    let header = "type: short\ndimension: 3\nsizes: 100 100 6\nendian: little\nencoding: gzip\n";
    fs::write(&path, nrrd_bytes(header, &compressed)).unwrap();
    let err = format_error(&path);
    assert!(
        matches!(
            err,
            FormatError::TruncatedCompressed {
                needed: 120_000,
                found: 100_000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_missing_detached_data_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for header in ["p_u16_detached_gzip_be.nhdr", "s_f64_c.mhd", "h_list.mhd"] {
        fs::write(dir.join(header), fixture(header)).unwrap();
        let path = dir.join(header);
        let err = format_error(&path);
        let FormatError::MissingDataFile { data, .. } = &err else {
            panic!("{err}")
        };
        assert!(data.starts_with(dir), "{}", data.display());
        assert!(err.to_string().ends_with("does not exist"), "{err}");
        // Nothing to hash but the header; reading reports the missing file.
        assert_eq!(scan_files(&path).unwrap(), ScanFiles::Single);
    }
}

#[test]
fn unsupported_encodings_and_layouts_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = fixture("p_i16_raw_le_lps.nrrd");
    let nrrd_cases: &[(&str, &str, &str)] = &[
        ("encoding: raw", "encoding: ascii", "encoding \"ascii\""),
        ("encoding: raw", "encoding: bzip2", "encoding \"bzip2\""),
        ("encoding: raw", "encoding: zstd", "encoding \"zstd\""),
        ("encoding: raw", "encoding: hex", "encoding \"hex\""),
        ("type: int16", "type: block", "type \"block\""),
        ("type: int16", "type: complex", "malformed \"type\""),
        ("dimension: 3", "dimension: 2", "\"sizes\""),
        (
            "space: left-posterior-superior",
            "space: 3D-right-handed",
            "space",
        ),
        (
            "space: left-posterior-superior",
            "space dimension: 2",
            "space dimension 2",
        ),
        ("endian: little", "endian: middle", "malformed \"endian\""),
        ("endian: little", "# no endian", "no \"endian\" field"),
        ("sizes: 7 6 5", "sizes: 7 0 5", "positive whole numbers"),
        ("sizes: 7 6 5", "sizes: 7 6 5\nsizes: 7 6 5", "given twice"),
        ("type: int16", "type int16", "is not `field: value`"),
        (
            "encoding: raw",
            "encoding: raw\nbyte skip: -2",
            "malformed \"byte skip\"",
        ),
        (
            "encoding: raw",
            "encoding: raw\ndata file: LIST",
            "several files",
        ),
        (
            "encoding: raw",
            "encoding: raw\ndata file: slice%03d.raw 0 4 1",
            "several files",
        ),
        ("NRRD0005", "NRRD0009", "not an NRRD file"),
    ];
    for (k, (from, to, says)) in nrrd_cases.iter().enumerate() {
        let path = dir.join(format!("case{k}.nrrd"));
        fs::write(&path, edited(&base, from, to)).unwrap();
        let err = format_error(&path);
        assert!(err.to_string().contains(says), "{to}: {err}");
    }
    // Dimensions: 2-D, 4-D with a real fourth axis, 4-D whose size-1 axis has a direction.
    let header = |dimension: &str, sizes: &str, extra: &str| {
        format!("type: uint8\ndimension: {dimension}\nsizes: {sizes}\nencoding: raw\n{extra}\n")
    };
    for (k, head) in [
        header("2", "7 6", ""),
        header("4", "7 6 5 2", ""),
        header(
            "4",
            "1 7 6 5",
            "space: RAS\nspace directions: (1,0,0) (1,0,0) (0,1,0) (0,0,1)",
        ),
        header("5", "7 6 5 1 1", ""),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("dims{k}.nrrd"));
        fs::write(&path, nrrd_bytes(head, &[0u8; 420])).unwrap();
        let err = format_error(&path);
        assert!(
            matches!(err, FormatError::Unsupported { .. }),
            "{head}: {err}"
        );
    }
    // Geometry that places nothing: a zero, a NaN or a missing direction.
    for (k, directions) in [
        "(1,0,0) (0,0,0) (0,0,1)",
        "(1,0,0) (0,nan,0) (0,0,1)",
        "(1,0,0) none (0,0,1)",
        "(1,0,0) (2,0,0) (0,0,1)",
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("geometry{k}.nrrd"));
        let head = header(
            "3",
            "7 6 5",
            &format!("space: LPS\nspace directions: {directions}"),
        );
        fs::write(&path, nrrd_bytes(&head, &[0u8; 210])).unwrap();
        let err = format_error(&path);
        assert!(
            matches!(err, FormatError::InvalidGeometry { .. }),
            "{directions}: {err}"
        );
    }
    // The skips: past the end of the file, and -1 with gzip data.
    let path = dir.join("skips.nrrd");
    let head = header("3", "7 6 5", "byte skip: 1");
    fs::write(&path, nrrd_bytes(&head, &[0u8; 210])).unwrap();
    assert!(matches!(format_error(&path), FormatError::Truncated { .. }));
    let head = header("3", "7 6 5", "line skip: 3");
    fs::write(&path, nrrd_bytes(&head, b"one\ntwo\n")).unwrap();
    assert!(format_error(&path).to_string().contains("line skip 3"));
    let head = "type: uint8\ndimension: 3\nsizes: 7 6 5\nencoding: gzip\nbyte skip: -1\n";
    fs::write(&path, nrrd_bytes(head, &[0x1f, 0x8b, 0, 0])).unwrap();
    assert!(
        format_error(&path)
            .to_string()
            .contains("only works for raw")
    );
    // An attached header that never ends.
    fs::write(
        &path,
        b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 7 6 5\nencoding: raw\n",
    )
    .unwrap();
    assert!(format_error(&path).to_string().contains("no blank line"));

    let base = fixture("s_i16_oblique.mha");
    let meta_cases: &[(&str, &str, &str)] = &[
        ("NDims = 3", "NDims = 2", "NDims = 2"),
        (
            "NDims = 3",
            "NDims = 3\nElementNumberOfChannels = 3",
            "ElementNumberOfChannels = 3",
        ),
        (
            "ElementType = MET_SHORT",
            "ElementType = MET_FLOAT_ARRAY",
            "MET_FLOAT_ARRAY",
        ),
        (
            "ElementType = MET_SHORT",
            "ElementType = MET_ASCII_CHAR",
            "MET_ASCII_CHAR",
        ),
        ("BinaryData = True", "BinaryData = False", "ASCII data"),
        (
            "ObjectType = Image",
            "ObjectType = Mesh",
            "ObjectType \"Mesh\"",
        ),
        ("DimSize = 7 6 5", "DimSize = 7 6", "not 3 positive"),
        (
            "DimSize = 7 6 5",
            "DimSize = 7 6 5\nDimSize = 7 6 5",
            "given twice",
        ),
        (
            "ElementSpacing = 0.5 0.75 2",
            "ElementSpacing = 0.5 0 2",
            "zero spacing",
        ),
        (
            "0.87758256189037276 0.47942553860420301 0 ",
            "0 0 0 ",
            "do not span",
        ),
        (
            "Offset = 10 -20 30.5",
            "Offset = 10 -20 inf",
            "not all finite",
        ),
        (
            "BinaryDataByteOrderMSB = False",
            "BinaryDataByteOrderMSB = Maybe",
            "malformed",
        ),
        (
            "ElementDataFile = LOCAL",
            "ElementDataFile = slice%03d.raw 1 5 1",
            "pattern",
        ),
        (
            "ElementDataFile = LOCAL",
            "ElementDataFile = LIST 3D",
            "LIST 3D",
        ),
        (
            "ElementDataFile = LOCAL",
            "ElementDataFiles = LOCAL",
            "binary data before any ElementDataFile line",
        ),
        (
            "ObjectType = Image",
            "ObjectType Image",
            "not a MetaImage header",
        ),
    ];
    for (k, (from, to, says)) in meta_cases.iter().enumerate() {
        let path = dir.join(format!("case{k}.mha"));
        fs::write(&path, edited(&base, from, to)).unwrap();
        let err = format_error(&path);
        assert!(err.to_string().contains(says), "{to}: {err}");
    }
    // MetaImage compressed data must be zlib, as SimpleITK reads it; a gzip stream is corrupt.
    let values = [0u8; 210];
    let gzip = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&values).unwrap();
        encoder.finish().unwrap()
    };
    let path = dir.join("gzip.mha");
    let header = "NDims = 3\nCompressedData = True\nDimSize = 7 6 5\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n";
    fs::write(&path, [header.as_bytes(), &gzip].concat()).unwrap();
    assert!(matches!(format_error(&path), FormatError::Corrupt { .. }));
    // A LIST naming fewer files than slices.
    let path = dir.join("list.mhd");
    let header = "NDims = 3\nDimSize = 7 6 5\nElementType = MET_UCHAR\nElementDataFile = LIST\na.raw\nb.raw\n";
    fs::write(&path, header).unwrap();
    assert!(format_error(&path).to_string().contains("names 2 files"));
}

#[test]
fn damaged_headers_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for (name, ext) in [
        ("p_f64_raw_be_oblique.nrrd", "nrrd"),
        ("p_u8_gzip_ras.nrrd", "nrrd"),
        ("h_skips.nhdr", "nhdr"),
        ("s_i16_oblique.mha", "mha"),
        ("s_u64_c.mha", "mha"),
        ("h_msb.mhd", "mhd"),
    ] {
        let bytes = fixture(name);
        if ext == "nhdr" || ext == "mhd" {
            for data in ["h_skips.dat", "h_msb.raw"] {
                fs::write(dir.join(data), fixture(data)).unwrap();
            }
        }
        let header_len = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .or_else(|| {
                bytes
                    .windows(16)
                    .position(|w| w.starts_with(b"ElementDataFile"))
                    .map(|at| at + 30)
            })
            .unwrap_or(bytes.len())
            .min(bytes.len());
        let path = dir.join(format!("damaged.{ext}"));
        let check = |candidate: &[u8]| {
            fs::write(&path, candidate).unwrap();
            if let Err(err) = read_scan(&path, None) {
                let message = err.to_string();
                assert!(
                    message.starts_with(&path.display().to_string()) && !message.contains('\n'),
                    "{message}"
                );
            }
        };
        // Every truncation of the header and the first data bytes.
        for cut in 0..(header_len + 40).min(bytes.len()) {
            check(&bytes[..cut]);
        }
        // Every header byte replaced by a few troublesome ones.
        for at in 0..header_len {
            for replacement in [b'9', b'-', b' ', b'\n', b'(', b',', 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] = replacement;
                check(&damaged);
            }
        }
    }
}
