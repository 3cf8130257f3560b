//! Replays the committed weight-file fuzz corpora (`fuzz/corpus/weights_*/`) and every past
//! finding (`fuzz/regressions/weights_*/`) through the fuzz targets' bodies
//! (`ct3d_model::fuzzing`), on stable and without a fuzzer. An input that panics fails the test;
//! errors are the readers doing their job.

use std::path::Path;

use ct3d_model::fuzzing;

fn replay(target: &str, harness: fn(&[u8]), at_least: usize) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    ct3d_volume::fuzzing::replay(&fuzz, target, harness, at_least);
}

#[test]
fn the_safetensors_weights_corpus_replays_without_panics() {
    replay("weights_safetensors", fuzzing::weights_safetensors, 5);
}

#[test]
fn the_pytorch_weights_corpus_replays_without_panics() {
    replay("weights_pytorch", fuzzing::weights_pytorch, 6);
}
