//! The integration tests of the `ct3d` library (the command's end-to-end tests are in
//! crates/ct3d-cli), as one test binary: every test binary links burn, which takes minutes, so
//! the areas below are modules of one crate instead of binaries of their own (add new tests to
//! the fitting module; a new file here needs a `mod` line below).
//!
//! Run one area with `cargo test -p ct3d --test tests train::`.

mod calibration;
mod explain;
mod train;
