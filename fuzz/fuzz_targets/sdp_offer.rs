#![no_main]
//! See wishd::fuzz::sdp_offer.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::sdp_offer(data));
