//! The integration tests of `ct3d-volume`, as one test binary (one link instead of one per
//! file); each former test file is a module (a new file here needs a `mod` line below).
//!
//! Run one area with `cargo test -p ct3d-volume --test tests nifti_io::`.

mod support;

mod augment_parity;
mod dataset_cache;
mod dicom;
mod format;
mod formats_peer;
mod fuzz_corpus;
mod manifest;
mod nifti2_io;
mod nifti_io;
mod parity;
mod synth;
