//! Protocol violations and the close code each one earns (RFC 6455 §7.4.1).
//!
//! Every way a peer can break the framing rules is one variant here; the reactor answers it with
//! `close_code()` and a short reason, and never treats it as an error of the server itself.

use std::fmt;

use super::close::CloseCode;

/// A violation of RFC 6455 by the peer; the connection must be failed with `close_code()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame arrived without a mask (§5.1) or a server frame with one.
    BadMasking,
    /// RSV1-3 set without a negotiated extension (§5.2).
    ReservedBits,
    /// An opcode the RFC reserves (§5.2).
    ReservedOpcode,
    /// A 64-bit payload length with its most significant bit set (§5.2).
    InvalidLength,
    /// A control frame with more than 125 bytes of payload (§5.5).
    ControlFrameTooLong,
    /// A control frame without FIN (§5.5).
    FragmentedControlFrame,
    /// A continuation frame with no message to continue (§5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open (§5.4).
    ExpectedContinuation,
    /// Text that is not valid UTF-8 (§8.1).
    InvalidUtf8,
    /// A message larger than the configured limit, counted across fragments.
    MessageTooLarge,
    /// A close frame with a 1-byte payload (§5.5.1).
    InvalidClosePayload,
    /// A close code that may not be sent on the wire (§7.4).
    InvalidCloseCode,
    /// A close reason that is not valid UTF-8 (§5.5.1).
    InvalidCloseReason,
    /// A permessage-deflate message that does not inflate (RFC 7692 §8.2.3: the data is
    /// invalid, so the message payload is, too).
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code the connection is failed with.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            Self::MessageTooLarge => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason, sent in the close frame to help whoever debugs the client.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadMasking => "bad masking",
            Self::ReservedBits => "reserved bits set",
            Self::ReservedOpcode => "reserved opcode",
            Self::InvalidLength => "invalid payload length",
            Self::ControlFrameTooLong => "control frame too long",
            Self::FragmentedControlFrame => "fragmented control frame",
            Self::UnexpectedContinuation => "continuation without a message",
            Self::ExpectedContinuation => "expected a continuation frame",
            Self::InvalidUtf8 => "invalid utf-8",
            Self::MessageTooLarge => "message too large",
            Self::InvalidClosePayload => "invalid close payload",
            Self::InvalidCloseCode => "invalid close code",
            Self::InvalidCloseReason => "invalid close reason",
            Self::InvalidCompressedData => "invalid compressed data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close {})", self.reason(), self.close_code().0)
    }
}

impl std::error::Error for ProtocolError {}
