//! Fuzz target: `rempart::fuzzing::key_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart::fuzzing::key_file(data));
