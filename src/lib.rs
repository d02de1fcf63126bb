//! wspush: a WebSocket push server and library.
#![forbid(unsafe_code)]

pub mod protocol;
