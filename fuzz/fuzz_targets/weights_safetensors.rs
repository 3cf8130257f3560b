//! Fuzz target: see `ct3d_model::fuzzing::weights_safetensors`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ct3d_model::fuzzing::weights_safetensors(data));
