//! The body of the `zip_archive` fuzz target (`fuzz/`), kept here so that plain `cargo test`
//! replays its committed corpus on stable (`tests/fuzz_corpus.rs` of this crate).
//!
//! Not part of the stable API.

use std::path::Path;

use crate::{ExtractLimits, extract_class_archive};

/// Unpacks `data` as a class archive (`archive.zip` → `CT-0/`) in a private temporary folder
/// (on `/dev/shm` where it exists), with limits small enough for a fuzzer (16 MiB in all, 1,000
/// entries) and the default compression-ratio bound. An error is the extractor refusing the
/// input; a panic, a hang, an escape from the folder or a write beyond the limits is a finding.
pub fn zip_archive(data: &[u8]) {
    let dir = tempfile::Builder::new()
        .prefix("ct3d-fuzz-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir());
    let Ok(dir) = dir else {
        return;
    };
    let archive = dir.path().join("archive.zip");
    if std::fs::write(&archive, data).is_err() {
        return;
    }
    let limits = ExtractLimits {
        max_total_bytes: 16 << 20,
        max_entries: 1000,
        ..ExtractLimits::default()
    };
    let dest = dir.path().join("out").join("CT-0");
    let _ = std::fs::create_dir_all(dest.parent().unwrap_or(Path::new(".")));
    let _ = extract_class_archive(&archive, &dest, &limits, false, &());
    // Nothing may land outside the destination's folder (zip-slip).
    if let Ok(entries) = std::fs::read_dir(dir.path()) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            assert!(
                name == "archive.zip" || name == "out",
                "the archive wrote {name:?} outside its destination"
            );
        }
    }
}
