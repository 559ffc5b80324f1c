#![no_main]
//! See wishd::fuzz::config.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::config(data));
