//! Fuzz target: see `ct3d_fetch::fuzzing::zip_archive`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ct3d_fetch::fuzzing::zip_archive(data));
