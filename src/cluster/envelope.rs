//! The envelope every message on the bus travels in, so that other programs can publish into
//! a wspush cluster and wspush can tell its own messages from others'.
//!
//! Layout (all a publisher needs):
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 0 | version, `1` |
//! | 1 | kind (below) |
//! | 2..10 | origin node id, big-endian `u64`; `0` for a publisher that is not a wspush node |
//! | 10.. | the kind's body |
//!
//! | kind | body | on |
//! | --- | --- | --- |
//! | `1` | a text message (UTF-8) for the channel's recipients | `<prefix>:u:<uid>`, `<prefix>:all` |
//! | `2` | a binary message | same |
//! | `3` | close the uid's connections: code (big-endian `u16`), then the reason (UTF-8) | `<prefix>:u:<uid>` |
//! | `4` | a node's probe of its own subscription (empty) | `<prefix>:n:<node>` |
//! | `5`–`7` | kinds 1–3 with a survey: a big-endian `u64` survey id, then their body | `<prefix>:u:<uid>` |
//! | `8` | how many connections has the uid: a survey id | `<prefix>:u:<uid>` |
//! | `9` | a survey's answer: its id, then connections and dropped (big-endian `u32` each) | `<prefix>:n:<origin>` |
//! | `10` | the uid joined a group: the group's name | `<prefix>:u:<uid>` |
//! | `11` | the uid left a group: the group's name | `<prefix>:u:<uid>` |
//! | `12` | the group was deleted (empty) | `<prefix>:g:<group>` |
//! | `13` | a message for the group's members: the excluded uids (a big-endian `u16` count, then each as a `u16` length and its bytes), then `1` (text) or `2` (binary), then the message | `<prefix>:g:<group>` |
//!
//! A node answers a survey on the origin's channel, `<prefix>:n:<origin as 16 hex digits>`.
//! Owns encoding and decoding only; it must never trust its input: anything malformed is an
//! error to count, never a panic.

/// The envelope version this node writes and reads.
pub const VERSION: u8 = 1;

/// Bytes before the body.
pub const HEADER_LEN: usize = 10;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text message for the channel's recipients (UTF-8, checked).
    Text,
    /// A binary message for the channel's recipients.
    Binary,
    /// Close the uid's connections; the body is the code and the reason.
    Close,
    /// A node's probe of its own subscription, on its own channel.
    Probe,
    /// How many connections the uid has here (always surveyed).
    Presence,
    /// A node's answer to a survey: connections and dropped.
    Answer,
    /// The channel's uid joined the group named in the body.
    Join,
    /// The channel's uid left the group named in the body.
    Leave,
    /// The channel's group was deleted.
    DeleteGroup,
    /// A message for the channel's group (see `group_message_body`).
    GroupMessage,
}

/// A decoded envelope, borrowing its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that published it (`0`: outside the cluster).
    pub origin: u64,
    /// What it carries.
    pub kind: Kind,
    /// The survey the sender wants answered (kinds 5–9).
    pub survey: Option<u64>,
    /// The body, after the survey id.
    pub body: &'a [u8],
}

/// Why bytes on the bus are not an envelope this node can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadEnvelope {
    /// Shorter than its kind needs.
    Truncated,
    /// A version this node does not speak.
    Version(u8),
    /// An unknown kind.
    Kind(u8),
    /// Text (a message or a close reason) that is not UTF-8.
    NotUtf8,
}

fn kind_byte(kind: Kind, surveyed: bool) -> u8 {
    match (kind, surveyed) {
        (Kind::Text, false) => 1,
        (Kind::Binary, false) => 2,
        (Kind::Close, false) => 3,
        (Kind::Probe, _) => 4,
        (Kind::Text, true) => 5,
        (Kind::Binary, true) => 6,
        (Kind::Close, true) => 7,
        (Kind::Presence, _) => 8,
        (Kind::Answer, _) => 9,
        (Kind::Join, _) => 10,
        (Kind::Leave, _) => 11,
        (Kind::DeleteGroup, _) => 12,
        (Kind::GroupMessage, _) => 13,
    }
}

/// Appends the envelope for `body` of `kind` from `origin` to `out`, with `survey` if the
/// kind takes one (presence and answers always do: pass it).
pub fn encode(out: &mut Vec<u8>, origin: u64, kind: Kind, survey: Option<u64>, body: &[u8]) {
    out.reserve(HEADER_LEN + 8 + body.len());
    out.push(VERSION);
    out.push(kind_byte(kind, survey.is_some()));
    out.extend_from_slice(&origin.to_be_bytes());
    let surveyed = matches!(
        kind,
        Kind::Text | Kind::Binary | Kind::Close | Kind::Presence | Kind::Answer
    );
    if surveyed {
        if let Some(id) = survey {
            out.extend_from_slice(&id.to_be_bytes());
        }
    }
    out.extend_from_slice(body);
}

/// The body of a survey's answer.
pub fn answer_body(connections: u64, dropped: u64) -> [u8; 8] {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    let mut body = [0; 8];
    body[..4].copy_from_slice(&clamp(connections));
    body[4..].copy_from_slice(&clamp(dropped));
    body
}

/// Reads an answer's body: connections and dropped.
pub fn read_answer(body: &[u8]) -> Result<(u64, u64), BadEnvelope> {
    let (connections, rest) = body
        .split_first_chunk::<4>()
        .ok_or(BadEnvelope::Truncated)?;
    let dropped = rest.first_chunk::<4>().ok_or(BadEnvelope::Truncated)?;
    Ok((
        u64::from(u32::from_be_bytes(*connections)),
        u64::from(u32::from_be_bytes(*dropped)),
    ))
}

/// The body of a close: code and reason.
pub fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason.as_bytes());
    body
}

/// Reads a close's body: code and reason.
pub fn read_close(body: &[u8]) -> Result<(u16, &str), BadEnvelope> {
    let (code, reason) = body
        .split_first_chunk::<2>()
        .ok_or(BadEnvelope::Truncated)?;
    let reason = std::str::from_utf8(reason).map_err(|_| BadEnvelope::NotUtf8)?;
    Ok((u16::from_be_bytes(*code), reason))
}

/// The body of a group message: the excluded uids, whether it is text, the message.
pub fn group_message_body(exclude: &[String], text: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(3 + payload.len());
    let count = u16::try_from(exclude.len()).unwrap_or(u16::MAX);
    body.extend_from_slice(&count.to_be_bytes());
    for uid in exclude.iter().take(usize::from(count)) {
        // Uids are at most 128 bytes (`MAX_UID_LEN`).
        let len = u16::try_from(uid.len()).unwrap_or(u16::MAX);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&uid.as_bytes()[..usize::from(len)]);
    }
    body.push(if text { 1 } else { 2 });
    body.extend_from_slice(payload);
    body
}

/// Reads a group message's body: the excluded uids, whether it is text, the message (text
/// checked to be UTF-8).
pub fn read_group_message(body: &[u8]) -> Result<(Vec<&str>, bool, &[u8]), BadEnvelope> {
    let (count, mut rest) = body
        .split_first_chunk::<2>()
        .ok_or(BadEnvelope::Truncated)?;
    let mut exclude = Vec::new();
    for _ in 0..u16::from_be_bytes(*count) {
        let (len, after) = rest
            .split_first_chunk::<2>()
            .ok_or(BadEnvelope::Truncated)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let uid = after.get(..len).ok_or(BadEnvelope::Truncated)?;
        exclude.push(std::str::from_utf8(uid).map_err(|_| BadEnvelope::NotUtf8)?);
        rest = &after[len..];
    }
    let (kind, payload) = rest.split_first().ok_or(BadEnvelope::Truncated)?;
    let text = match kind {
        1 => true,
        2 => false,
        other => return Err(BadEnvelope::Kind(*other)),
    };
    if text && std::str::from_utf8(payload).is_err() {
        return Err(BadEnvelope::NotUtf8);
    }
    Ok((exclude, text, payload))
}

/// Reads an envelope.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, BadEnvelope> {
    let [version, kind, rest @ ..] = bytes else {
        return Err(BadEnvelope::Truncated);
    };
    if *version != VERSION {
        return Err(BadEnvelope::Version(*version));
    }
    let (origin, rest) = rest
        .split_first_chunk::<8>()
        .ok_or(BadEnvelope::Truncated)?;
    let (kind, surveyed) = match *kind {
        1 => (Kind::Text, false),
        2 => (Kind::Binary, false),
        3 => (Kind::Close, false),
        4 => (Kind::Probe, false),
        5 => (Kind::Text, true),
        6 => (Kind::Binary, true),
        7 => (Kind::Close, true),
        8 => (Kind::Presence, true),
        9 => (Kind::Answer, true),
        10 => (Kind::Join, false),
        11 => (Kind::Leave, false),
        12 => (Kind::DeleteGroup, false),
        13 => (Kind::GroupMessage, false),
        other => return Err(BadEnvelope::Kind(other)),
    };
    let (survey, body) = if surveyed {
        let (id, body) = rest
            .split_first_chunk::<8>()
            .ok_or(BadEnvelope::Truncated)?;
        (Some(u64::from_be_bytes(*id)), body)
    } else {
        (None, rest)
    };
    if kind == Kind::Text && std::str::from_utf8(body).is_err() {
        return Err(BadEnvelope::NotUtf8);
    }
    Ok(Envelope {
        origin: u64::from_be_bytes(*origin),
        kind,
        survey,
        body,
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
                survey: None,
                body: b"hello"
            })
        );
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        assert_eq!(decode(b""), Err(BadEnvelope::Truncated));
        assert_eq!(decode(&[1, 1, 0, 0]), Err(BadEnvelope::Truncated));
        let header = |kind| [1, kind, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode(&[2, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(BadEnvelope::Version(2))
        );
        assert_eq!(decode(&header(42)), Err(BadEnvelope::Kind(42)));
        assert_eq!(
            decode(&header(8)),
            Err(BadEnvelope::Truncated),
            "no survey id"
        );
        let mut bad_text = header(1).to_vec();
        bad_text.push(0xff);
        assert_eq!(decode(&bad_text), Err(BadEnvelope::NotUtf8));
        assert_eq!(read_answer(&[0; 7]), Err(BadEnvelope::Truncated));
        assert_eq!(read_close(&[3]), Err(BadEnvelope::Truncated));
        assert_eq!(read_close(&[3, 232, 0xff]), Err(BadEnvelope::NotUtf8));
    }

    #[test]
    fn group_messages_round_trip_and_malformed_ones_are_errors() {
        let exclude = vec!["alice".to_owned(), "bob".to_owned()];
        let body = group_message_body(&exclude, true, b"hi");
        assert_eq!(
            read_group_message(&body),
            Ok((vec!["alice", "bob"], true, &b"hi"[..]))
        );
        assert_eq!(read_group_message(&body[..5]), Err(BadEnvelope::Truncated));
        assert_eq!(read_group_message(&[0, 0, 7]), Err(BadEnvelope::Kind(7)));
        assert_eq!(
            read_group_message(&[0, 0, 1, 0xff]),
            Err(BadEnvelope::NotUtf8)
        );
    }

    #[test]
    fn answers_and_closes_round_trip() {
        assert_eq!(read_answer(&answer_body(3, 1)), Ok((3, 1)));
        assert_eq!(read_close(&close_body(4000, "bye")), Ok((4000, "bye")));
    }

    proptest! {
        #[test]
        fn any_envelope_round_trips(
            origin: u64,
            which in 0..10usize,
            survey: Option<u64>,
            body: Vec<u8>,
        ) {
            let kind = [Kind::Text, Kind::Binary, Kind::Close, Kind::Probe, Kind::Presence,
                Kind::Answer, Kind::Join, Kind::Leave, Kind::DeleteGroup,
                Kind::GroupMessage][which];
            let survey = match kind {
                Kind::Probe | Kind::Join | Kind::Leave | Kind::DeleteGroup
                | Kind::GroupMessage => None,
                Kind::Presence | Kind::Answer => Some(survey.unwrap_or(7)),
                _ => survey,
            };
            let body = if kind == Kind::Text {
                String::from_utf8_lossy(&body).into_owned().into_bytes()
            } else {
                body
            };
            let mut bytes = Vec::new();
            encode(&mut bytes, origin, kind, survey, &body);
            prop_assert_eq!(decode(&bytes), Ok(Envelope { origin, kind, survey, body: &body }));
        }

        #[test]
        fn any_bytes_decode_without_panicking(bytes: Vec<u8>) {
            let _ = decode(&bytes);
        }
    }
}
