#![no_main]
//! See wishd::fuzz::keyframe_cache.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wishd::fuzz::keyframe_cache(data));
