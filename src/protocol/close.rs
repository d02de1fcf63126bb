//! Close codes and close-frame payloads (RFC 6455 §5.5.1, §7.4).
//!
//! Knows which codes may travel on the wire and how a close payload is laid out. Pure; the only
//! allocation is the encoded payload of an outgoing close frame.

use super::error::ProtocolError;
use super::frame::MAX_CONTROL_PAYLOAD;

/// A close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, idle timeout).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: Self = Self(1003);
    /// 1005: no code was present (never sent; reported to `on_close`).
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection dropped without a close frame (never sent; reported to `on_close`).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a text message that is not valid UTF-8.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: the peer broke a policy (login timeout, slow consumer).
    pub const POLICY: Self = Self(1008);
    /// 1009: a message over the size limit.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the server is restarting; reconnect (IANA registry, after RFC 6455).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);

    /// Whether this code is accepted in a close frame from a client (§7.4.1, §7.4.2): the codes
    /// RFC 6455 defines for the wire and the registered and private ranges. 1012–1014 were
    /// registered after the RFC and conformance suites expect a server to refuse them from a
    /// client, so they are not accepted here.
    pub fn is_accepted(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }

    /// Whether the server may send this code: what it accepts, plus 1012 (service restart),
    /// 1013 (try again later) and 1014 (bad gateway), which browsers understand.
    pub fn is_sendable(self) -> bool {
        self.is_accepted() || matches!(self.0, 1012..=1014)
    }
}

/// A parsed close frame payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The UTF-8 reason, possibly empty.
    pub reason: &'a str,
}

/// Parses and validates a close payload; an empty payload gives `None` (no status code).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [high, low, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*high, *low]));
            if !code.is_accepted() {
                return Err(ProtocolError::InvalidCloseCode);
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// Encodes a close payload, truncating the reason at a character boundary to fit 125 bytes.
pub fn encode_close_payload(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.0.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_wire_codes_and_may_also_send_restart_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(CloseCode(code).is_accepted(), "{code}");
            assert!(CloseCode(code).is_sendable(), "{code}");
        }
        for code in [1012, 1013, 1014] {
            assert!(!CloseCode(code).is_accepted(), "{code}");
            assert!(CloseCode(code).is_sendable(), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(code).is_accepted(), "{code}");
            assert!(!CloseCode(code).is_sendable(), "{code}");
        }
    }

    #[test]
    fn parses_and_validates_close_payloads() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(
            parse_close_payload(b"\x03\xe8bye"),
            Ok(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: "bye"
            }))
        );
        assert_eq!(
            parse_close_payload(b"\x03"),
            Err(ProtocolError::InvalidClosePayload)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xed"),
            Err(ProtocolError::InvalidCloseCode)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8\xff"),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn truncates_long_reasons_at_a_char_boundary() {
        let payload = encode_close_payload(CloseCode::NORMAL, &"é".repeat(100));
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
