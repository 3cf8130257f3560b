//! The bodies of the coverage-guided fuzz targets (`fuzz/`, run with `cargo +nightly fuzz run
//! TARGET`), kept here so that plain `cargo test` on stable replays the committed corpus through
//! exactly the same code (`tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes, turns them into the files a user could hand to ct3d, and
//! reads them through the public entry points. A returned error is fine (that is the reader
//! refusing bad input); a panic, an abort, a hang or an allocation beyond the documented limits
//! is a finding. The readers take paths, so the bytes are written to a private temporary folder
//! (on `/dev/shm` where it exists, so that a fuzzer's millions of writes stay in memory).
//!
//! Not part of the stable API: the input encodings may change with the harnesses.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::format::read_scan;
use crate::nifti::read_header;

/// The file names [`scan_file`] gives its bytes, chosen by the input's first byte (modulo the
/// count), so that every format recognised by its name is reached; each with the name of its
/// separate data file, if the format has one (a detached header must name it `scan.raw`).
pub const SCAN_NAMES: &[(&str, Option<&str>)] = &[
    ("scan.nii", None),
    ("scan.nii.gz", None),
    ("scan.hdr", Some("scan.img")),
    ("scan.nrrd", None),
    ("scan.nhdr", Some("scan.raw")),
    ("scan.mha", None),
    ("scan.mhd", Some("scan.raw")),
];

/// A folder for one harness call: `/dev/shm` when it exists (tmpfs), else the system's temporary
/// folder. Removed when dropped.
fn scratch() -> Option<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new()
        .prefix("ct3d-fuzz-")
        .tempdir_in(shm);
    builder.or_else(|_| tempfile::tempdir()).ok()
}

fn write(path: &Path, bytes: &[u8]) -> Option<()> {
    let mut file = fs::File::create(path).ok()?;
    file.write_all(bytes).ok()
}

/// One scan file: byte 0 picks the name from [`SCAN_NAMES`]; for a format with a separate data
/// file the rest is split at the first `0xFF 0x00 0xFF 0x00` marker into the header and the data
/// file (no marker: no data file). Reads the NIfTI header summary (which refuses other formats)
/// and the whole volume through the format seam.
pub fn scan_file(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Some(dir) = scratch() else {
        return;
    };
    let (name, data_name) = SCAN_NAMES[usize::from(pick) % SCAN_NAMES.len()];
    let path = dir.path().join(name);
    let (main, companion) = match data_name {
        Some(_) => split_once(rest, &[0xFF, 0x00, 0xFF, 0x00]),
        None => (rest, None),
    };
    if write(&path, main).is_none() {
        return;
    }
    if let (Some(data_name), Some(bytes)) = (data_name, companion)
        && write(&dir.path().join(data_name), bytes).is_none()
    {
        return;
    }
    let _ = read_header(&path);
    let _ = read_scan(&path, None);
}

/// A DICOM series folder: the bytes are split at every `0xFF 0x00 0xFF 0x00` marker into up to
/// 16 files `0000.dcm`, `0001.dcm`, …, and the folder is read as a scan.
pub fn dicom_series(data: &[u8]) {
    let Some(dir) = scratch() else {
        return;
    };
    let mut rest = data;
    for index in 0..16 {
        let (part, next) = split_once(rest, &[0xFF, 0x00, 0xFF, 0x00]);
        let path: PathBuf = dir.path().join(format!("{index:04}.dcm"));
        if write(&path, part).is_none() {
            return;
        }
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    let _ = read_scan(dir.path(), None);
}

/// A CSV manifest (`manifest.csv`) with its rows' scans absent: reads it as a dataset with the
/// class names `CT-0` and `CT-23`.
pub fn manifest(data: &[u8]) {
    let Some(dir) = scratch() else {
        return;
    };
    let path = dir.path().join("manifest.csv");
    if write(&path, data).is_none() {
        return;
    }
    let _ = Dataset::from_manifest(&path, "CT-0", "CT-23");
}

/// `bytes` before and after the first `marker`, or all of it and `None`.
fn split_once<'a>(bytes: &'a [u8], marker: &[u8]) -> (&'a [u8], Option<&'a [u8]>) {
    match bytes.windows(marker.len()).position(|w| w == marker) {
        Some(at) => (&bytes[..at], Some(&bytes[at + marker.len()..])),
        None => (bytes, None),
    }
}

/// Replays `fuzz_dir/corpus/<target>/` and `fuzz_dir/regressions/<target>/` through `harness`
/// (the stable-toolchain check every crate's tests run over its fuzz targets' corpora), panicking
/// with the file's name when an input panics, or when the corpus holds fewer than `at_least`
/// inputs (a lost corpus would otherwise pass silently).
pub fn replay(fuzz_dir: &Path, target: &str, harness: fn(&[u8]), at_least: usize) {
    let inputs = |kind: &str| -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(fuzz_dir.join(kind).join(target)) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    };
    let corpus = inputs("corpus");
    assert!(
        corpus.len() >= at_least,
        "fuzz/corpus/{target} holds {} inputs, expected at least {at_least}",
        corpus.len()
    );
    for path in corpus.iter().chain(&inputs("regressions")) {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(outcome.is_ok(), "{} made the harness panic", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_split_at_the_marker() {
        assert_eq!(
            split_once(b"ab\xFF\x00\xFF\x00cd", &[0xFF, 0, 0xFF, 0]).1,
            Some(&b"cd"[..])
        );
        assert_eq!(split_once(b"abc", &[0xFF, 0, 0xFF, 0]), (&b"abc"[..], None));
    }

    #[test]
    fn harnesses_take_any_bytes() {
        for data in [
            &b""[..],
            b"\x00",
            b"\x01\x1f\x8b",
            b"\x02abc\xFF\x00\xFF\x00def",
        ] {
            scan_file(data);
            dicom_series(data);
            manifest(data);
        }
    }
}
