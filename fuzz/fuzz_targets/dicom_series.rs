//! Fuzz target: see `ct3d_volume::fuzzing::dicom_series`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ct3d_volume::fuzzing::dicom_series(data));
