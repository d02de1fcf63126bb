//! One message's frames as its recipients need them: plain, or compressed with permessage-deflate
//! for the window size a connection negotiated. Each variant is encoded once, on first need, and
//! shared by every queue it goes to, so a broadcast is compressed once per window size in use,
//! never once per recipient.
//!
//! Owns nothing beyond one message's frames. It never compresses a message below the threshold,
//! one nobody who negotiated deflate receives, or keeps a compressed frame that came out no
//! smaller than the plain one (RFC 7692 lets any message go uncompressed, RSV1 clear).

use bytes::Bytes;

use crate::protocol::deflate::Deflater;
use crate::protocol::frame::encode_compressed;
use crate::protocol::{encode_message, Message, OpCode};

/// Window sizes a connection may have negotiated: 9 to 15 bits.
const WINDOWS: usize = 7;

/// What compressing needs, shared by every message of a reactor.
#[derive(Default)]
pub(crate) struct Compressor {
    deflater: Deflater,
    scratch: Vec<u8>,
}

impl Compressor {
    /// How many compressors exist (one per window size used so far).
    #[cfg(test)]
    pub(crate) fn contexts(&self) -> usize {
        self.deflater.contexts()
    }

    /// Drops a scratch buffer grown by a large message.
    pub(crate) fn shrink(&mut self) {
        if self.scratch.capacity() > 64 << 10 {
            self.scratch = Vec::new();
        }
    }
}

/// The frames of one message.
pub(crate) struct Frames<'m> {
    message: Message<'m>,
    plain: Option<Bytes>,
    /// By window bits − 9; `None` until someone needs it.
    deflated: [Option<Bytes>; WINDOWS],
    /// Long enough to compress (`Config::compression_threshold`).
    compressible: bool,
}

impl<'m> Frames<'m> {
    /// The frames of `message`; compressed variants only if it is at least `threshold` bytes.
    pub(crate) fn new(message: Message<'m>, threshold: usize) -> Self {
        Self {
            message,
            plain: None,
            deflated: Default::default(),
            compressible: payload(message).len() >= threshold,
        }
    }

    /// The plain frame (RSV1 clear).
    pub(crate) fn plain(&mut self) -> Bytes {
        self.plain
            .get_or_insert_with(|| encode_message(self.message))
            .clone()
    }

    /// The frame for a connection that negotiated a window of `window_bits` (0: no deflate).
    #[inline]
    pub(crate) fn for_conn(&mut self, window_bits: u8, compressor: &mut Compressor) -> Bytes {
        if window_bits == 0 || !self.compressible {
            return self.plain();
        }
        let slot = slot(window_bits);
        if let Some(frame) = &self.deflated[slot] {
            return frame.clone();
        }
        let frame = self.compress(window_bits, compressor);
        self.deflated[slot] = Some(frame.clone());
        frame
    }

    /// The frame for the last recipient: what is kept is handed over, not shared, so a message
    /// for one connection costs no reference count (and no allocation to hold one).
    pub(crate) fn into_frame(mut self, window_bits: u8, compressor: &mut Compressor) -> Bytes {
        if window_bits == 0 || !self.compressible {
            return self
                .plain
                .take()
                .unwrap_or_else(|| encode_message(self.message));
        }
        let slot = slot(window_bits);
        match self.deflated[slot].take() {
            Some(frame) => frame,
            None => self.compress(window_bits, compressor),
        }
    }

    fn compress(&mut self, window_bits: u8, compressor: &mut Compressor) -> Bytes {
        let payload = payload(self.message);
        compressor.scratch.clear();
        compressor
            .deflater
            .compress(window_bits, payload, &mut compressor.scratch);
        if compressor.scratch.len() >= payload.len() {
            // Nothing gained: the plain frame costs the client less.
            return self.plain();
        }
        let opcode = match self.message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        };
        encode_compressed(opcode, &compressor.scratch)
    }
}

/// Where the frame for a window of `window_bits` (9–15) is kept.
fn slot(window_bits: u8) -> usize {
    usize::from(window_bits.clamp(9, 15) - 9)
}

fn payload(message: Message<'_>) -> &[u8] {
    match message {
        Message::Text(text) => text.as_bytes(),
        Message::Binary(bytes) => bytes,
    }
}
