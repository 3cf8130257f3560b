//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every past finding
//! (`fuzz/regressions/<target>/`) through the fuzz targets' bodies (`ct3d_volume::fuzzing`), on
//! stable and without a fuzzer, so that CI checks every input the fuzzers found interesting on
//! every change. An input that panics fails the test; errors are the readers doing their job.

use std::fs;
use std::path::{Path, PathBuf};

use ct3d_volume::fuzzing;

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, harness: fn(&[u8]), at_least: usize) {
    let corpus = inputs("corpus", target);
    assert!(
        corpus.len() >= at_least,
        "fuzz/corpus/{target} holds {} inputs, expected at least {at_least}",
        corpus.len()
    );
    for path in corpus.iter().chain(&inputs("regressions", target)) {
        let data = fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(outcome.is_ok(), "{} made the harness panic", path.display());
    }
}

#[test]
fn the_scan_file_corpus_replays_without_panics() {
    replay("scan_file", fuzzing::scan_file, 10);
}

#[test]
fn the_dicom_series_corpus_replays_without_panics() {
    replay("dicom_series", fuzzing::dicom_series, 2);
}

#[test]
fn the_manifest_corpus_replays_without_panics() {
    replay("manifest", fuzzing::manifest, 3);
}
