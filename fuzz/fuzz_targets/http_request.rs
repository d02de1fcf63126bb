//! The push API's HTTP/1.1 parser: the input is a split point and what a client sent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspush_fuzz::http_request(data));
