#![no_main]
//! See wishd::fuzz::offer_memo.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::offer_memo(data));
