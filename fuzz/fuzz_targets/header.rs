//! Fuzz target: `rempart::fuzzing::header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart::fuzzing::header(data));
