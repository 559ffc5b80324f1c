#![no_main]
//! See wishd::fuzz::authorization.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::authorization(data));
