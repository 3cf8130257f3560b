//! The `ScanFormat` seam: every kind of path is recognised by exactly the expected format, and
//! every entry point (dataset listing, `predict`'s input expansion, the cache's content hash,
//! reading) agrees on what a scan is.

use std::fs;

use ct3d_volume::Volume;
use ct3d_volume::cache::hash_file;
use ct3d_volume::dataset::{DEFAULT_NEGATIVE_CLASS, DEFAULT_POSITIVE_CLASS, Dataset};
use ct3d_volume::dicom::DicomError;
use ct3d_volume::format::{
    self, FORMATS, Recognition, ScanError, ScanFiles, format_of, is_listed_scan, list_scans,
    read_scan, scan_files,
};
use ct3d_volume::nifti::{OutputDtype, ReadError, write_volume};

use crate::dicom::axial_series;

/// The format that reads `path`, by name.
fn reader(path: &std::path::Path) -> Option<&'static str> {
    format_of(path).map(|format| format.name())
}

#[test]
fn each_path_kind_is_recognised_by_one_format_and_read_accordingly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let nii = dir.join("scan.nii.gz");
    let volume = Volume::from_fn([4, 3, 2], |x, y, z| (x + 10 * y + 100 * z) as f32 - 500.0);
    write_volume(&nii, &volume, OutputDtype::F32).unwrap();
    let series = dir.join("series");
    axial_series(&series, 3, 0.0, 2.0);
    let lone = fs::read_dir(&series)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let renamed = dir.join("slice.nii");
    fs::copy(&lone, &renamed).unwrap();
    let empty = dir.join("notes");
    fs::create_dir(&empty).unwrap();
    let text = dir.join("readme.txt");
    fs::write(&text, "not a scan").unwrap();

    // Exactly one format claims each path as a whole scan, or none does.
    let scans_of = |path| {
        FORMATS
            .iter()
            .filter(|f| f.recognize(path) == Recognition::Scan)
            .count()
    };
    assert_eq!(scans_of(&nii), 1);
    assert_eq!(scans_of(&series), 1);
    for other in [&lone, &empty, &text] {
        assert_eq!(scans_of(other), 0, "{}", other.display());
    }

    assert_eq!(reader(&nii), Some("NIfTI"));
    assert_eq!(reader(&series), Some("DICOM series"));
    // Content beats names: a DICOM slice is one even when named like NIfTI.
    assert_eq!(reader(&lone), Some("DICOM series"));
    assert_eq!(reader(&renamed), Some("DICOM series"));
    // Fallbacks: a folder without DICOM files, a file of unknown kind, a missing file.
    assert_eq!(reader(&empty), Some("DICOM series"));
    assert_eq!(reader(&text), Some("NIfTI"));
    assert_eq!(reader(&dir.join("missing.nii")), Some("NIfTI"));

    assert_eq!(read_scan(&nii, None).unwrap().data(), volume.data());
    assert_eq!(read_scan(&series, None).unwrap().shape(), [5, 3, 3]);
    for part in [&lone, &renamed] {
        let err = read_scan(part, None).unwrap_err();
        assert!(matches!(err, ScanError::DicomFile { .. }), "{err}");
    }
    assert!(matches!(
        read_scan(&empty, None).unwrap_err(),
        ScanError::Dicom(DicomError::NoDicomFiles { .. })
    ));
    assert!(matches!(
        read_scan(&text, None).unwrap_err(),
        ScanError::Nifti(ReadError::NotNifti { .. })
    ));
    assert!(matches!(
        read_scan(&dir.join("missing.nii"), None).unwrap_err(),
        ScanError::Nifti(ReadError::NotFound { .. })
    ));

    // The formats the dataset names in its messages are the registered ones, in order.
    assert_eq!(
        format::listed_kinds(),
        "*.nii, *.nii.gz, *.hdr, *.nrrd, *.nhdr, *.mha, *.mhd or DICOM series folders"
    );
}

#[test]
fn listing_cache_hash_and_reading_agree_on_what_a_scan_is() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let negative = root.join(DEFAULT_NEGATIVE_CLASS);
    let positive = root.join(DEFAULT_POSITIVE_CLASS);
    axial_series(&negative.join("patient1"), 3, 0.0, 2.0);
    fs::create_dir_all(&positive).unwrap();
    let nii = positive.join("b.nii");
    let volume = Volume::from_fn([6, 5, 4], |x, y, z| (x * y + z) as f32 * 10.0 - 500.0);
    write_volume(&nii, &volume, OutputDtype::F32).unwrap();
    // Not scans: hidden names, other extensions, a folder without DICOM files, the image half
    // of a pair, a lone DICOM slice.
    write_volume(&positive.join(".hidden.nii"), &volume, OutputDtype::F32).unwrap();
    fs::write(positive.join("notes.txt"), "x").unwrap();
    fs::create_dir_all(positive.join("empty")).unwrap();
    fs::write(positive.join("pair.img"), [0u8; 8]).unwrap();
    let slice = fs::read_dir(negative.join("patient1"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::copy(&slice, negative.join("loose.dcm")).unwrap();

    let dataset =
        Dataset::from_class_folders(&root, DEFAULT_NEGATIVE_CLASS, DEFAULT_POSITIVE_CLASS).unwrap();
    let listed: Vec<_> = dataset.items().iter().map(|i| i.path.clone()).collect();
    assert_eq!(listed, vec![negative.join("patient1"), nii.clone()]);
    // The dataset lists exactly what the seam lists, and the seam reads every one of them.
    let mut by_seam = list_scans(&negative).unwrap();
    by_seam.extend(list_scans(&positive).unwrap());
    assert_eq!(by_seam, listed);
    for scan in &listed {
        assert!(is_listed_scan(scan));
        read_scan(scan, None).unwrap();
    }

    // The cache hashes what the format says the scan is made of: a series folder's DICOM files
    // (a non-DICOM file beside them changes nothing, another slice changes the hash) and a NIfTI
    // file's own bytes.
    let series = negative.join("patient1");
    let ScanFiles::Folder(files) = scan_files(&series).unwrap() else {
        panic!("a series is a folder of files");
    };
    assert_eq!(files.len(), 3);
    assert_eq!(scan_files(&nii).unwrap(), ScanFiles::Single);
    let before = hash_file(&series).unwrap();
    fs::write(series.join("README"), "notes").unwrap();
    assert_eq!(hash_file(&series).unwrap(), before);
    fs::copy(&slice, series.join("zz-copy.dcm")).unwrap();
    assert_ne!(hash_file(&series).unwrap(), before);
    use sha2::Digest;
    let own: [u8; 32] = sha2::Sha256::digest(fs::read(&nii).unwrap()).into();
    assert_eq!(hash_file(&nii).unwrap(), own);
}
