#![no_main]
//! See wishd::fuzz::http_request.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::http_request(data));
