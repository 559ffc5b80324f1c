#![no_main]
//! See wishd::fuzz::ice_tcp_stream.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::ice_tcp_stream(data));
