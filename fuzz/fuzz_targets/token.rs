#![no_main]
//! See wishd::fuzz::token.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::token(data));
