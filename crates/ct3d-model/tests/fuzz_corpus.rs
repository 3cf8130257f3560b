//! Replays the committed weight-file fuzz corpora (`fuzz/corpus/weights_*/`) and every past
//! finding (`fuzz/regressions/weights_*/`) through the fuzz targets' bodies
//! (`ct3d_model::fuzzing`), on stable and without a fuzzer. An input that panics fails the test;
//! errors are the readers doing their job.

use std::fs;
use std::path::{Path, PathBuf};

use ct3d_model::fuzzing;

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
fn the_safetensors_weights_corpus_replays_without_panics() {
    replay("weights_safetensors", fuzzing::weights_safetensors, 5);
}

#[test]
fn the_pytorch_weights_corpus_replays_without_panics() {
    replay("weights_pytorch", fuzzing::weights_pytorch, 6);
}
