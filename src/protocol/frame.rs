//! Frame headers (RFC 6455 §5.2): opcodes, header parsing and header/frame encoding.
//!
//! Pure functions over byte slices. Parsing reports a header only when all of its bytes are
//! present and rejects what the RFC forbids at the header level (reserved bits without an
//! extension, reserved opcodes, oversized or fragmented control frames, a 64-bit length with its
//! top bit set). Whether masking is required depends on the side, so that is left to the decoder.

use bytes::Bytes;

use super::error::ProtocolError;
use super::mask::apply_mask;
use super::message::Message;

/// The longest possible frame header: 2 bytes, 8 of extended length and 4 of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation,
    /// Starts a UTF-8 text message.
    Text,
    /// Starts a binary message.
    Binary,
    /// Starts or answers the closing handshake.
    Close,
    /// Asks the peer for a pong.
    Ping,
    /// Answers a ping, or is sent unsolicited as a heartbeat.
    Pong,
}

impl OpCode {
    /// Maps the 4-bit opcode field to an opcode; reserved values give `None`.
    pub fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit opcode field for this opcode.
    pub fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames (close, ping, pong) may appear between the fragments of a message.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// This is the final fragment of its message.
    pub fin: bool,
    /// RSV1: with permessage-deflate negotiated, the first frame of a compressed message
    /// (RFC 7692 §6); the decoder refuses it otherwise.
    pub rsv1: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

/// Parses a frame header from the start of `buf`.
///
/// Returns `Ok(None)` while the header is incomplete, or the header and its length in bytes.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    // §5.2: "MUST be 0 unless an extension is negotiated that defines meanings for non-zero values"
    // (RSV1 is left to the decoder, which knows whether permessage-deflate was negotiated).
    if first & 0x30 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let opcode = OpCode::from_bits(first & 0x0F).ok_or(ProtocolError::ReservedOpcode)?;
    let fin = first & 0x80 != 0;
    let masked = second & 0x80 != 0;
    if opcode.is_control() {
        // §5.5: "All control frames MUST have a payload length of 125 bytes or less and MUST NOT
        // be fragmented." Checked on the 7-bit length, before any extended length arrives.
        if usize::from(second & 0x7F) > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlFrameTooLong);
        }
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
    }
    let (payload_len, mut len) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(ext) => (u64::from(u16::from_be_bytes([ext[0], ext[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(ext) => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(ext);
                (u64::from_be_bytes(bytes), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    // §5.2: "the most significant bit MUST be 0" for the 64-bit length.
    if payload_len >> 63 != 0 {
        return Err(ProtocolError::InvalidLength);
    }
    let mask = if masked {
        let Some(key) = buf.get(len..len + 4) else {
            return Ok(None);
        };
        len += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    let header = FrameHeader {
        fin,
        rsv1: first & 0x40 != 0,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, len)))
}

/// Writes a frame header into `out` and returns how many bytes it used.
pub fn encode_header(
    out: &mut [u8; MAX_HEADER_LEN],
    fin: bool,
    opcode: OpCode,
    payload_len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = (u8::from(fin) << 7) | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut len = match payload_len {
        0..=125 => {
            out[1] = mask_bit | payload_len as u8;
            2
        }
        126..=0xFFFF => {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        out[len..len + 4].copy_from_slice(&key);
        len += 4;
    }
    len
}

/// Encodes one whole frame (FIN set) into a new buffer, masking the payload if `mask` is given.
pub fn encode_frame(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(&mut header, true, opcode, payload.len(), mask);
    let mut frame = Vec::with_capacity(header_len + payload.len());
    frame.extend_from_slice(&header[..header_len]);
    frame.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut frame[header_len..], key, 0);
    }
    Bytes::from(frame)
}

/// Encodes a whole server-to-client data frame of a message compressed with permessage-deflate:
/// RSV1 set, `compressed` as `protocol::deflate::Deflater` produced it (RFC 7692 §7.2.1).
pub fn encode_compressed(opcode: OpCode, compressed: &[u8]) -> Bytes {
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(&mut header, true, opcode, compressed.len(), None);
    header[0] |= 0x40;
    let mut frame = Vec::with_capacity(header_len + compressed.len());
    frame.extend_from_slice(&header[..header_len]);
    frame.extend_from_slice(compressed);
    Bytes::from(frame)
}

/// Encodes a whole server-to-client data frame (never masked) for `message`.
pub fn encode_message(message: Message<'_>) -> Bytes {
    match message {
        Message::Text(text) => encode_frame(OpCode::Text, text.as_bytes(), None),
        Message::Binary(bytes) => encode_frame(OpCode::Binary, bytes, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rfc_unmasked_hello() {
        // RFC 6455 §5.7: a single-frame unmasked text message.
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (header, len) = decode_header(&frame).unwrap().unwrap();
        assert_eq!(len, 2);
        assert!(header.fin);
        assert_eq!(header.opcode, OpCode::Text);
        assert_eq!(header.mask, None);
        assert_eq!(header.payload_len, 5);
    }

    #[test]
    fn decodes_rfc_masked_hello() {
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (header, len) = decode_header(&frame).unwrap().unwrap();
        assert_eq!(len, 6);
        assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
    }

    #[test]
    fn decodes_rfc_256_byte_and_64_kib_lengths() {
        // RFC 6455 §5.7: "256 bytes binary message in a single unmasked frame" and 64 KiB.
        let (header, len) = decode_header(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((header.payload_len, len), (256, 4));
        let long = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let (header, len) = decode_header(&long).unwrap().unwrap();
        assert_eq!((header.payload_len, len), (65536, 10));
    }

    #[test]
    fn encodes_rfc_examples() {
        assert_eq!(
            &encode_frame(OpCode::Text, b"Hello", None)[..],
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            &encode_frame(OpCode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]))[..],
            &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // Unmasked ping and its pong, "Hello" as payload.
        assert_eq!(
            &encode_frame(OpCode::Ping, b"Hello", None)[..2],
            &[0x89, 0x05]
        );
        assert_eq!(
            &encode_frame(OpCode::Pong, b"Hello", None)[..2],
            &[0x8a, 0x05]
        );
    }

    #[test]
    fn reports_incomplete_headers() {
        for prefix in [
            &[][..],
            &[0x81],
            &[0x81, 0xFE, 0x01],
            &[0x81, 0x85, 1, 2, 3],
        ] {
            assert_eq!(decode_header(prefix), Ok(None), "{prefix:x?}");
        }
    }

    #[test]
    fn rejects_what_the_header_alone_forbids() {
        // RSV2 and RSV3 (RSV1 is the decoder's to judge: permessage-deflate).
        for first in [0xA1, 0x91] {
            assert_eq!(
                decode_header(&[first, 0x80]),
                Err(ProtocolError::ReservedBits)
            );
        }
        let (header, _) = decode_header(&[0xC1, 0x80, 1, 2, 3, 4]).unwrap().unwrap();
        assert!(header.rsv1);
        assert_eq!(
            decode_header(&[0x83, 0x80]),
            Err(ProtocolError::ReservedOpcode)
        );
        assert_eq!(
            decode_header(&[0x89, 0xFE]),
            Err(ProtocolError::ControlFrameTooLong)
        );
        assert_eq!(
            decode_header(&[0x09, 0x80]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        let huge = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_header(&huge), Err(ProtocolError::InvalidLength));
    }
}
