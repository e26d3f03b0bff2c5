//! Fuzz target: `rempart::fuzzing::gguf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart::fuzzing::gguf(data));
