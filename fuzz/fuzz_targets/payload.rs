#![no_main]
//! See wishd::fuzz::payload.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::payload(data));
