//! The integration tests of `ct3d-model`, as one test binary: every test binary links burn,
//! which takes minutes, so each former test file is a module (a new file here needs a `mod`
//! line below).
//!
//! Run one area with `cargo test -p ct3d-model --test tests fused_cpu::`.

mod common;

mod explain;
mod fused_cpu;
mod fuzz_corpus;
mod maxpool_and_conv;
mod model;
mod optimizer_and_loss;
mod overfit;
mod resnet;
mod weights;
