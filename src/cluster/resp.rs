//! RESP2, the Redis wire protocol, sans-IO: commands are encoded here by hand (arrays of bulk
//! strings, a few lines), replies and pushed messages are decoded by `redis-protocol`.
//!
//! Owns the framing only. It must never block or read a socket, and never keep more than the
//! bytes of one incomplete reply: `Decoder::feed` callers cap what they buffer.

use redis_protocol::resp2::decode::decode;
pub use redis_protocol::resp2::types::OwnedFrame as Frame;

/// Appends one command (`args[0]` is its name) to `out`.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_header(out, b'*', args.len());
    for arg in args {
        push_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The reply or message at the start of `buf`, and its length; `None` while incomplete.
pub fn next_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    decode(buf).map_err(|error| error.to_string())
}

/// A pushed message of a subscription: `(channel, payload)`, if `frame` is one.
pub fn as_message(frame: &Frame) -> Option<(&[u8], &[u8])> {
    let Frame::Array(parts) = frame else {
        return None;
    };
    match parts.as_slice() {
        [Frame::BulkString(kind), Frame::BulkString(channel), Frame::BulkString(payload)]
            if kind.as_slice() == b"message" =>
        {
            Some((channel, payload))
        }
        _ => None,
    }
}

/// A subscription's confirmation: `(subscribed, channel)` for `subscribe` / `unsubscribe`.
pub fn as_confirmation(frame: &Frame) -> Option<(bool, &[u8])> {
    let Frame::Array(parts) = frame else {
        return None;
    };
    match parts.as_slice() {
        [Frame::BulkString(kind), Frame::BulkString(channel), Frame::Integer(_)] => {
            match kind.as_slice() {
                b"subscribe" => Some((true, channel)),
                b"unsubscribe" => Some((false, channel)),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"c", b"hi"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\nhi\r\n");
    }

    #[test]
    fn pushed_messages_and_confirmations_are_recognised() {
        let bytes = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n";
        let (first, used) = next_frame(bytes).unwrap().unwrap();
        assert_eq!(as_confirmation(&first), Some((true, &b"c"[..])));
        let (second, rest) = next_frame(&bytes[used..]).unwrap().unwrap();
        assert_eq!(as_message(&second), Some((&b"c"[..], &b"hi"[..])));
        assert_eq!(used + rest, bytes.len());
        assert_eq!(next_frame(&bytes[..5]).unwrap(), None, "incomplete");
    }
}
