//! Fuzz target: `rempart::fuzzing::document` (issue 21: every document format's extractor and
//! the passage splitter).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rempart::fuzzing::document(data));
