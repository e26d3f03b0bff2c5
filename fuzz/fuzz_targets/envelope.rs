//! Fuzz target: `rempart::fuzzing::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart::fuzzing::envelope(data));
