//! Fuzz target: see `ct3d_model::fuzzing::weights_pytorch`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ct3d_model::fuzzing::weights_pytorch(data));
