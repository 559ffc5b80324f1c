#![no_main]
//! See wishd::fuzz::datagram.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::datagram(data));
