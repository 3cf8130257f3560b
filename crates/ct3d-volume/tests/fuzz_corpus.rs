//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every past finding
//! (`fuzz/regressions/<target>/`) through the fuzz targets' bodies (`ct3d_volume::fuzzing`), on
//! stable and without a fuzzer, so that CI checks every input the fuzzers found interesting on
//! every change. An input that panics fails the test; errors are the readers doing their job.

use std::path::Path;

use ct3d_volume::fuzzing;

fn replay(target: &str, harness: fn(&[u8]), at_least: usize) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    ct3d_volume::fuzzing::replay(&fuzz, target, harness, at_least);
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
