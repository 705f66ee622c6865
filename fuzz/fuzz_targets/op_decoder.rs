//! Arbitrary bytes as one `admin.Op`: classify, decode, JSON view and edit.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ankus::backup::fuzz::op_decoder(data));
