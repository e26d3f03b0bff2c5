//! Fuzz target: `rempart::fuzzing::audit_log`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart::fuzzing::audit_log(data));
