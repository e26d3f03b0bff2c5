//! Fuzz target: `rempart::fuzzing::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart::fuzzing::manifest(data));
