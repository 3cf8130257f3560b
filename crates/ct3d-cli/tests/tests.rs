//! The end-to-end tests of the `ct3d` command, as one test binary: every test binary links burn, which
//! takes minutes, so the areas below are modules of one crate instead of binaries of their own
//! (add new tests to the fitting module; a new file here needs a `mod` line below).
//!
//! Run one area with `cargo test -p ct3d-cli --test tests cli_model::`.

mod support;

mod cli_augment;
mod cli_dataset;
mod cli_dicom;
mod cli_explain;
mod cli_export;
mod cli_fetch;
mod cli_model;
mod cli_pictures;
mod cli_serve;
mod cli_sweep;
mod cli_volume;
