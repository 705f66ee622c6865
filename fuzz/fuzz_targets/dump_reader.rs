//! Arbitrary bytes as a dump: reader, classification, inventory and verify.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ankus::backup::fuzz::dump_reader(data));
