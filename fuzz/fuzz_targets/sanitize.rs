//! Fuzz target: `rempart::fuzzing::sanitize` (never emits ESC, C1 or a format character).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart::fuzzing::sanitize(data));
