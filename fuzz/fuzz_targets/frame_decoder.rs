//! Streaming frame decoder, both roles, whole input vs. split input vs. byte at a time.
//! Input layout: see `wspush_fuzz::frame_decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspush_fuzz::frame_decoder(data));
