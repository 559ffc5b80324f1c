#![no_main]
//! See wishd::fuzz::recorded_pictures.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::recorded_pictures(data));
