#![no_main]
//! See wishd::fuzz::rtcp.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::rtcp(data));
