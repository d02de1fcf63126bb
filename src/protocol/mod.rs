//! The sans-IO protocol core: RFC 6455 framing, masking, UTF-8 validation, close codes, the
//! opening handshake and the HTTP header reading it shares with the push API, and the
//! permessage-deflate codec and negotiation (RFC 7692), as pure functions and state machines
//! over byte slices. The bottom layer: it depends on nothing else here.
//!
//! Nothing in this module touches a socket, a clock or a global; the reactor feeds it bytes and
//! acts on what it returns. That keeps it cheap to fuzz, property-test and benchmark.

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod error;
pub mod extensions;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod mask;
pub mod message;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use decoder::{Decoder, Event, Role, MAX_MESSAGE_LIMIT};
pub use error::ProtocolError;
pub use frame::{encode_frame, encode_message, OpCode};
pub use message::Message;
