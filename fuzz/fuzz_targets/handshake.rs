//! Opening-handshake parser: the input is the raw bytes a client sent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wspush_fuzz::handshake(data));
