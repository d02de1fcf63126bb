//! The envelope every message on the bus travels in, so that other programs can publish into
//! a wspush cluster and wspush can tell its own messages from others'.
//!
//! Layout (all a publisher needs):
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | version, `1` |
//! | 1 | kind: `1` text message (UTF-8), `2` binary message, `4` probe (a node's message to itself) |
//! | 2..10 | origin node id, big-endian `u64`; `0` for a publisher that is not a wspush node |
//! | 10.. | the message's payload |
//!
//! The channel says whom it is for (see `cluster`). Owns encoding and decoding only; it must
//! never trust its input: anything malformed is an error to count, never a panic.

/// The envelope version this node writes and reads.
pub const VERSION: u8 = 1;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 10;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text message for the channel's recipients (UTF-8, checked).
    Text,
    /// A binary message for the channel's recipients.
    Binary,
    /// A node's probe of its own subscription, on its own channel.
    Probe,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Text => 1,
            Kind::Binary => 2,
            Kind::Probe => 4,
        }
    }
}

/// A decoded envelope, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that published it (`0`: outside the cluster).
    pub origin: u64,
    /// What it carries.
    pub kind: Kind,
    /// The message.
    pub payload: &'a [u8],
}

/// Why bytes on the bus are not an envelope this node can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadEnvelope {
    /// Shorter than the header.
    Truncated,
    /// A version this node does not speak.
    Version(u8),
    /// An unknown kind.
    Kind(u8),
    /// A text message that is not UTF-8.
    NotUtf8,
}

/// Appends the envelope for `payload` of `kind` from `origin` to `out`.
pub fn encode(out: &mut Vec<u8>, origin: u64, kind: Kind, payload: &[u8]) {
    out.reserve(HEADER_LEN + payload.len());
    out.push(VERSION);
    out.push(kind.byte());
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Reads an envelope.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, BadEnvelope> {
    let [version, kind, rest @ ..] = bytes else {
        return Err(BadEnvelope::Truncated);
    };
    if *version != VERSION {
        return Err(BadEnvelope::Version(*version));
    }
    let (origin, payload) = rest
        .split_first_chunk::<8>()
        .ok_or(BadEnvelope::Truncated)?;
    let kind = match *kind {
        1 => Kind::Text,
        2 => Kind::Binary,
        4 => Kind::Probe,
        other => return Err(BadEnvelope::Kind(other)),
    };
    if kind == Kind::Text && std::str::from_utf8(payload).is_err() {
        return Err(BadEnvelope::NotUtf8);
    }
    Ok(Envelope {
        origin: u64::from_be_bytes(*origin),
        kind,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn what_a_publisher_outside_the_cluster_writes_is_read() {
        let mut bytes = vec![1, 1];
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(b"hello");
        assert_eq!(
            decode(&bytes),
            Ok(Envelope {
                origin: 0,
                kind: Kind::Text,
                payload: b"hello"
            })
        );
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        assert_eq!(decode(b""), Err(BadEnvelope::Truncated));
        assert_eq!(decode(&[1, 1, 0, 0]), Err(BadEnvelope::Truncated));
        assert_eq!(
            decode(&[2, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(BadEnvelope::Version(2))
        );
        assert_eq!(
            decode(&[1, 9, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(BadEnvelope::Kind(9))
        );
        assert_eq!(
            decode(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff]),
            Err(BadEnvelope::NotUtf8)
        );
    }

    proptest! {
        #[test]
        fn any_message_round_trips(origin: u64, which in 0..3usize, payload: Vec<u8>) {
            let kind = [Kind::Text, Kind::Binary, Kind::Probe][which];
            let payload = if kind == Kind::Text {
                String::from_utf8_lossy(&payload).into_owned().into_bytes()
            } else {
                payload
            };
            let mut bytes = Vec::new();
            encode(&mut bytes, origin, kind, &payload);
            prop_assert_eq!(decode(&bytes), Ok(Envelope { origin, kind, payload: &payload }));
        }

        #[test]
        fn any_bytes_decode_without_panicking(bytes: Vec<u8>) {
            let _ = decode(&bytes);
        }
    }
}
