//! The permessage-deflate codec (RFC 7692 §7.2) without per-connection state: one [`Deflater`]
//! and one [`Inflater`] per reactor, shared by every connection that negotiated the extension.
//!
//! This module owns the compression contexts and the RFC 7692 payload transformation: raw
//! DEFLATE with a sync flush and the trailing `00 00 ff ff` removed on the way out, the same
//! four octets appended on the way in. Every message is compressed and inflated from a freshly
//! reset context, which is what `server_no_context_takeover; client_no_context_takeover` (the
//! only answer `extensions` gives) promises both sides, so no message ever depends on another
//! and the contexts can be shared by interleaved connections.
//!
//! It must never keep anything from one message to the next (a context is reset after every
//! call, an error included), never inflate past the caller's limit (the output space it hands
//! zlib is capped at the limit plus one byte, so the work a message can cause is bounded by
//! that limit, whatever its compression ratio), and never touch frames, sockets or
//! connections: the decoder concatenates a message's frame payloads and the hub frames what
//! [`Deflater::compress`] returns.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The four octets a DEFLATE sync flush ends with (`LEN = 0`, `NLEN = 0xffff` of an empty
/// stored block). RFC 7692 §7.2.1 removes them from every compressed message; §7.2.2 appends
/// them back before inflating.
pub const SYNC_FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest LZ77 window, as base-2 logarithm, the compressor can use. RFC 7692 allows 8,
/// but zlib cannot produce a raw stream with a 256-byte window, so negotiation declines it.
pub const MIN_WINDOW_BITS: u8 = 9;

/// The largest LZ77 window (32 KiB), the default of RFC 7692 when nothing limits it.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The zlib compression level of every compressor: 2.
///
/// Chosen with `benches/deflate.rs` (JSON pushes of 64 B to 16 KiB, window 15, every message
/// from a reset context; 2-core VM, `--quick`). Compressing and framing one push took, at
/// levels 1 / 2 / 6 / 9: 9.9 / 17.6 / 21.9 / 26.8 µs at 1 KiB and 74 / 136 / 246 / 365 µs at
/// 16 KiB; the frames came out at 64 / 49 / 48 / 48 % of the payload at 1 KiB and 46 / 35 /
/// 33 / 32 % at 16 KiB. Level 2 gives level 6's sizes within 2 % up to 1 KiB (5 % at 4 KiB,
/// 6.5 % at 16 KiB) in about the same time up to 1 KiB and 55-60 % of it above; 9 costs more
/// still for 1 % less. Level 1 is zlib-rs's `deflate_quick`, which emits only fixed Huffman
/// codes: about half the time of level 2, but frames a third larger, and it saves almost
/// nothing below 512 B (9 % at 256 B, against 28 % for level 2). About 5 µs of every message,
/// whatever the level, is resetting the context (zlib-rs clears a 128 KiB hash table).
pub const COMPRESSION_LEVEL: u32 = 2;

/// The payload size below which a message should go out uncompressed (a recommendation for
/// whoever calls [`Deflater::compress`]; nothing here enforces it).
///
/// Measured as for [`COMPRESSION_LEVEL`], at level 2: a 64 B push does not shrink at all, and
/// 128 B / 256 B ones save 22 / 72 bytes of frame for 14 / 15 µs of CPU, about three times
/// what delivering a message costs the reactor (5-6 µs per write, README); from 512 B on
/// compression saves 41 % (211 bytes for 13 µs), from 1 KiB on about half or more, at 30 or
/// more bytes per µs. The cost is per message and the saving per recipient, so a broadcast
/// to many connections could use a lower threshold (128 B, where savings start).
pub const COMPRESSION_THRESHOLD: usize = 512;

/// The first output step of [`Inflater::inflate`], in bytes; later steps double what the
/// message has produced so far, so the output grows geometrically, never beyond the limit.
const MIN_INFLATE_STEP: usize = 1024;

/// What [`Inflater::inflate`] feeds after a message: the four octets RFC 7692 §7.2.2 appends
/// (they complete the empty stored block a sync-flushed message ends with), then `03 00`, an
/// empty final block with fixed Huffman codes (BFINAL = 1, BTYPE = 01, end-of-block), which
/// ends the DEFLATE stream. zlib then reports the end of the stream exactly when the message
/// ended on a block boundary, so a truncated message is caught instead of passing as a
/// shorter one.
const INFLATE_END: [u8; 6] = [0x00, 0x00, 0xff, 0xff, 0x03, 0x00];

/// How many octets of [`INFLATE_END`] are its tail part ([`SYNC_FLUSH_TAIL`]).
const TAIL_LEN: usize = SYNC_FLUSH_TAIL.len();

/// The shared compressor side: one raw-DEFLATE context per window size in use (9..=15), each
/// created on the first message that needs it and reset after every message.
///
/// A context takes one allocation of about 370 KiB in zlib-rs at window 15 (240 KiB at 9: the
/// 128 KiB hash table and 112 KiB of block buffers do not shrink with the window), so only the
/// sizes clients actually negotiate are allocated; browsers all use the default, 15.
#[derive(Debug)]
pub struct Deflater {
    /// `[bits - MIN_WINDOW_BITS]`: the context for that window, once used.
    by_window: [Option<Compress>; (MAX_WINDOW_BITS - MIN_WINDOW_BITS + 1) as usize],
    level: u32,
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflater {
    /// A deflater at [`COMPRESSION_LEVEL`], with no context allocated yet.
    pub fn new() -> Self {
        Self::with_level(COMPRESSION_LEVEL)
    }

    /// A deflater at zlib level `level` (0 stores, 1 is fastest, 9 compresses most), for
    /// measurements; the server uses [`Deflater::new`].
    ///
    /// # Panics
    ///
    /// If `level` is above 9.
    pub fn with_level(level: u32) -> Self {
        assert!(level <= 9, "zlib levels are 0..=9, not {level}");
        Self {
            by_window: Default::default(),
            level,
        }
    }

    /// How many compression contexts exist (one per window size used so far).
    pub fn contexts(&self) -> usize {
        self.by_window.iter().flatten().count()
    }

    /// Appends to `out` the RFC 7692 payload of a message whose uncompressed payload is
    /// `payload`, compressed with a `window_bits` LZ77 window: raw DEFLATE ended by a sync
    /// flush, its trailing `00 00 ff ff` removed (§7.2.1). An empty payload gives the single
    /// octet `00` (§7.2.3.6: the header of an empty stored block, which the receiver's
    /// appended tail completes).
    ///
    /// The context is reset afterwards, so the next message does not refer to this one
    /// (no context takeover). `out` grows as the output needs it; nothing is reserved for the
    /// whole payload up front.
    ///
    /// # Panics
    ///
    /// If `window_bits` is outside `9..=15`: negotiation never produces such a value.
    pub fn compress(&mut self, window_bits: u8, payload: &[u8], out: &mut Vec<u8>) {
        assert!(
            (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&window_bits),
            "window_bits {window_bits} outside {MIN_WINDOW_BITS}..={MAX_WINDOW_BITS}"
        );
        let slot = &mut self.by_window[usize::from(window_bits - MIN_WINDOW_BITS)];
        let level = self.level;
        let context = slot.get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::new(level), false, window_bits)
        });
        let start = out.len();
        // Pushes compress to a fraction of their size; the first step covers that, later ones
        // let `Vec` grow geometrically.
        let step = payload.len() / 2 + 64;
        let mut input = payload;
        loop {
            // More than 6 bytes of room, so that a flush marker never has to be split (zlib's
            // advice for a sync flush).
            if out.capacity() - out.len() < 64 {
                out.reserve(step);
            }
            let before = context.total_in();
            context
                .compress_vec(input, out, FlushCompress::Sync)
                .expect("raw deflate into free output space cannot fail");
            let consumed = usize::try_from(context.total_in() - before)
                .expect("consumed no more than the input");
            input = &input[consumed..];
            // The flush is complete when zlib returns with output space left over.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        context.reset();
        debug_assert!(
            out[start..].ends_with(&SYNC_FLUSH_TAIL),
            "a sync flush ends so"
        );
        if out[start..].ends_with(&SYNC_FLUSH_TAIL) {
            out.truncate(out.len() - TAIL_LEN);
        }
        if out.len() == start {
            // zlib writes `00 00 00 ff ff` for an empty message; should a backend ever write
            // only the tail, the empty stored block's header still has to go out (§7.2.3.6).
            out.push(0x00);
        }
    }
}

/// Why a compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The message inflates to more than the limit; inflating stopped at the limit.
    TooBig,
    /// The data is not a valid RFC 7692 message: corrupt DEFLATE data, a message that ends
    /// inside a block, or data after a final block.
    Invalid,
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TooBig => "the message inflates beyond the size limit",
            Self::Invalid => "invalid compressed data",
        })
    }
}

impl std::error::Error for InflateError {}

/// The shared decompressor side: one raw-DEFLATE context with a 15-bit window, which inflates
/// whatever window a client compressed with, reset after every message.
#[derive(Debug)]
pub struct Inflater {
    context: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// An inflater ready for its first message.
    pub fn new() -> Self {
        Self {
            context: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
        }
    }

    /// Inflates one whole message, `compressed` being the concatenation of its frames'
    /// payloads, and appends the result to `out`: at most `max_len` bytes.
    ///
    /// The RFC 7692 §7.2.2 tail (`00 00 ff ff`) is fed after `compressed` without copying it,
    /// followed by an empty final block, so that zlib reports the end of the stream exactly
    /// when the message ended on a block boundary: a message that stops inside a block is
    /// `Invalid`, not a shorter message.
    ///
    /// What is accepted:
    /// - a message ended by a sync flush with its tail removed (§7.2.1; every browser);
    /// - a message ended by a final block (§7.2.3.4), followed by nothing, by the `00` octet
    ///   §7.2.3.4 shows, or by that empty stored block whole (`00 00 00 ff ff`);
    /// - a message whose sender left the tail on (it ends with `00 00 ff ff`), which is not
    ///   appended twice: unambiguous, since a message with the tail removed ends with the
    ///   header bits of an empty stored block and zero padding, so its last octet's top bit
    ///   is always 0;
    /// - an empty `compressed`, taken as an empty message, as zlib-based receivers do.
    ///
    /// Anything else after a final block is `Invalid`. RFC 7692 §7.2.1 lets further blocks
    /// follow a final one ("The next DEFLATE block follows the padded data if any"), but no
    /// known client sends that, and inflating them here would mean re-seeding the shared
    /// window once per final block, a cost a peer could multiply at will.
    ///
    /// Fails with `TooBig` as soon as the output would exceed `max_len`, having produced no
    /// more than `max_len + 1` bytes; `out` grows in steps that double what the message has
    /// produced, never to more than `max_len + 1` bytes of room. On either error `out` is
    /// truncated back to its length on entry. The context is reset before returning, whatever
    /// the outcome.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        max_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let start = out.len();
        let result = if compressed.is_empty() {
            Ok(())
        } else {
            self.inflate_pieces(compressed, max_len, out, start)
        };
        self.context.reset(false);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Feeds `compressed`, then its end (see [`INFLATE_END`]), until the stream ends or fails.
    fn inflate_pieces(
        &mut self,
        compressed: &[u8],
        max_len: usize,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), InflateError> {
        let end = if compressed.ends_with(&SYNC_FLUSH_TAIL) {
            &INFLATE_END[TAIL_LEN..]
        } else {
            &INFLATE_END[..]
        };
        let mut pieces = [compressed, end];
        let mut piece = 0;
        loop {
            let produced = out.len() - start;
            // One byte of room beyond `max_len`: filling it proves the message too big.
            let room = (max_len - produced)
                .saturating_add(1)
                .min(produced.max(MIN_INFLATE_STEP));
            let filled = out.len();
            out.reserve_exact(room);
            out.resize(filled + room, 0);
            let (in_before, out_before) = (self.context.total_in(), self.context.total_out());
            let status =
                self.context
                    .decompress(pieces[piece], &mut out[filled..], FlushDecompress::None);
            let consumed = usize::try_from(self.context.total_in() - in_before)
                .expect("consumed no more than the input");
            let written = usize::try_from(self.context.total_out() - out_before)
                .expect("wrote no more than the room");
            out.truncate(filled + written);
            pieces[piece] = &pieces[piece][consumed..];
            if out.len() - start > max_len {
                return Err(InflateError::TooBig);
            }
            match status {
                Err(_) => return Err(InflateError::Invalid),
                Ok(Status::StreamEnd) => {
                    return if Self::may_end(piece == 0, pieces[piece], end.len()) {
                        Ok(())
                    } else {
                        Err(InflateError::Invalid)
                    };
                }
                Ok(Status::Ok | Status::BufError) => {}
            }
            if written == room {
                // The output is full: more may be pending whatever input is left.
                continue;
            }
            if !pieces[piece].is_empty() {
                // zlib stops only for lack of input or output; never loop on a stall.
                return Err(InflateError::Invalid);
            }
            piece += 1;
            if piece == pieces.len() {
                // Even the empty final block did not end the stream: the message ended inside
                // a block.
                return Err(InflateError::Invalid);
            }
        }
    }

    /// Whether the stream may end where it did, `rest` being what was left unread of the
    /// message (`in_message`) or of the `end_len` octets fed after it.
    fn may_end(in_message: bool, rest: &[u8], end_len: usize) -> bool {
        if in_message {
            // A final block inside the message: followed by nothing, by the header of an
            // empty stored block (§7.2.3.4), or by that block whole.
            rest.is_empty() || rest == [0x00] || rest == [0x00, 0x00, 0x00, 0xff, 0xff]
        } else {
            // Ended by the final block fed after the message (the usual case), or by the tail:
            // the message ended with the header of an empty stored block with BFINAL set.
            rest.is_empty() || (end_len == INFLATE_END.len() && rest.len() == end_len - TAIL_LEN)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 7692 §7.2.3.1: "Hello" in one compressed DEFLATE block, tail removed.
    const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

    fn compress(window_bits: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Deflater::new().compress(window_bits, payload, &mut out);
        out
    }

    fn inflate(compressed: &[u8], max_len: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        Inflater::new()
            .inflate(compressed, max_len, &mut out)
            .map(|()| out)
    }

    /// `len` bytes of JSON-like text: compressible, but not trivially.
    fn json(len: usize, seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 100);
        let mut n = seed;
        while out.len() < len {
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let line = format!(
                r#"{{"type":"chat","room":"r-{}","from":"user-{}","text":"message {}","ts":{}}}"#,
                n % 10_000,
                (n >> 16) % 100_000,
                n >> 40,
                1_764_612_345_678 + (n >> 50),
            );
            out.extend_from_slice(line.as_bytes());
        }
        out.truncate(len);
        out
    }

    /// A raw DEFLATE stream of `payload` flushed with `flush` after each of `cuts` (offsets,
    /// sorted), ending with a sync flush and its tail removed, as a sender that fragments a
    /// message while compressing it writes it.
    fn compress_in_pieces(payload: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut context = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut out = Vec::with_capacity(payload.len() * 2 + 1024);
        let mut from = 0;
        for &cut in cuts.iter().chain([&payload.len()]) {
            let mut input = &payload[from..cut];
            loop {
                let before = context.total_in();
                out.reserve(input.len() + 1024);
                context
                    .compress_vec(input, &mut out, FlushCompress::Sync)
                    .unwrap();
                input = &input[(context.total_in() - before) as usize..];
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
            }
            from = cut;
        }
        assert!(out.ends_with(&SYNC_FLUSH_TAIL));
        out.truncate(out.len() - 4);
        out
    }

    /// A raw DEFLATE stream ended with a final block (zlib's `Z_FINISH`), then `suffix`.
    fn compress_finished(payload: &[u8], suffix: &[u8]) -> Vec<u8> {
        let mut context = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let mut out = Vec::with_capacity(payload.len() * 2 + 1024);
        let status = context
            .compress_vec(payload, &mut out, FlushCompress::Finish)
            .unwrap();
        assert_eq!(status, Status::StreamEnd);
        out.extend_from_slice(suffix);
        out
    }

    #[test]
    fn compresses_the_rfc_hello_example() {
        // §7.2.3.1: "0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00" for "Hello", whatever the window.
        for bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
            assert_eq!(compress(bits, b"Hello"), HELLO, "window {bits}");
        }
    }

    #[test]
    fn inflates_the_rfc_examples() {
        // §7.2.3.1: one compressed block.
        assert_eq!(inflate(&HELLO, 5).unwrap(), b"Hello");
        // §7.2.3.3: one block with no compression, then the header of the empty one.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate(&stored, 5).unwrap(), b"Hello");
        // §7.2.3.4: a block with BFINAL set, then a `00` octet.
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate(&bfinal, 5).unwrap(), b"Hello");
        // The same final block without the `00` octet (a sender that skipped §7.2.1 step 2).
        assert_eq!(inflate(&bfinal[..7], 5).unwrap(), b"Hello");
        // §7.2.3.5: two blocks in one message.
        let two = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate(&two, 5).unwrap(), b"Hello");
    }

    #[test]
    fn tolerates_a_tail_left_on() {
        // A sender that did not remove the sync-flush tail: appending it again would open a
        // stored block that never ends.
        let hello = [&HELLO[..], &SYNC_FLUSH_TAIL].concat();
        assert_eq!(inflate(&hello, 5).unwrap(), b"Hello");
        let payload = json(3000, 7);
        let whole = [&compress(15, &payload)[..], &SYNC_FLUSH_TAIL].concat();
        assert_eq!(inflate(&whole, payload.len()).unwrap(), payload);
        // A final block followed by the whole empty stored block of §7.2.1 step 2.
        let bfinal = [
            0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        assert_eq!(inflate(&bfinal, 5).unwrap(), b"Hello");
        // The message is then `00 00 ff ff` alone: an empty message.
        assert_eq!(inflate(&[0x00, 0x00, 0x00, 0xff, 0xff], 0).unwrap(), b"");
    }

    #[test]
    fn an_empty_payload_is_the_single_octet_of_rfc_7692_7_2_3_6() {
        // §7.2.3.6: "The single octet 0x00 contains the header bits with "BFINAL" set to 0 and
        // "BTYPE" set to 00, and 5 padding bits of 0." With the tail it is an empty stored
        // block, so it inflates to nothing.
        for bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
            assert_eq!(compress(bits, b""), [0x00], "window {bits}");
        }
        assert_eq!(inflate(&[0x00], 0).unwrap(), b"");
        // The use §7.2.3.6 describes: a last fragment `00` after fragments that kept their
        // sync-flush tails (`00 00 00 ff ff` before it: an empty stored block, whole).
        assert_eq!(
            inflate(&[0x00, 0x00, 0x00, 0xff, 0xff, 0x00], 0).unwrap(),
            b""
        );
        let hello_then_empty = [&HELLO[..], &SYNC_FLUSH_TAIL, &[0x00]].concat();
        assert_eq!(inflate(&hello_then_empty, 5).unwrap(), b"Hello");
        // An empty final block with no compression: `01` plus the tail.
        assert_eq!(inflate(&[0x01], 0).unwrap(), b"");
        // No payload at all is taken as an empty message.
        assert_eq!(inflate(&[], 0).unwrap(), b"");
    }

    #[test]
    fn refuses_what_is_not_a_whole_message() {
        let payload = json(4000, 1);
        let compressed = compress(15, &payload);
        // Cut inside a block: the stream cannot end where the message does.
        for cut in [1, compressed.len() / 2, compressed.len() - 1] {
            assert_eq!(
                inflate(&compressed[..cut], 1 << 20),
                Err(InflateError::Invalid),
                "cut at {cut}"
            );
        }
        // Corrupt data: a reserved block type (BTYPE = 11).
        assert_eq!(inflate(&[0x07, 0x00], 100), Err(InflateError::Invalid));
        // Data after a final block, beyond the one `00` octet §7.2.3.4 adds.
        let finished = compress_finished(&payload, &[]);
        for garbage in [&[0x00, 0x00][..], &[0x01], &[0xff; 9], &HELLO] {
            let message = [&finished[..], garbage].concat();
            assert_eq!(
                inflate(&message, 1 << 20),
                Err(InflateError::Invalid),
                "{garbage:x?}"
            );
        }
        // A stored block whose lengths disagree.
        assert_eq!(
            inflate(&[0x00, 0x05, 0x00, 0x00, 0x00], 100),
            Err(InflateError::Invalid)
        );
    }

    #[test]
    fn enforces_the_limit_at_exactly_one_byte_over() {
        let payload = json(10_000, 2);
        let compressed = compress(15, &payload);
        assert_eq!(inflate(&compressed, payload.len()).unwrap(), payload);
        assert_eq!(
            inflate(&compressed, payload.len() - 1),
            Err(InflateError::TooBig)
        );
        assert_eq!(inflate(&compressed, 0), Err(InflateError::TooBig));
        assert_eq!(inflate(&HELLO, 4), Err(InflateError::TooBig));
    }

    #[test]
    fn stops_a_compression_bomb_at_the_limit() {
        // 64 copies of a sync-flushed block of 1 MiB of zeros: every copy refers only to the
        // byte before it, so together they are one valid message of 64 MiB.
        let block = {
            let mut block = compress_in_pieces(&vec![0; 1 << 20], &[]);
            block.extend_from_slice(&SYNC_FLUSH_TAIL);
            block
        };
        let mut bomb: Vec<u8> = block.repeat(64);
        bomb.truncate(bomb.len() - 4);
        assert!(bomb.len() < 80 << 10, "{} bytes", bomb.len());
        let max_len = 1 << 20;
        let mut out = b"kept".to_vec();
        let mut inflater = Inflater::new();
        assert_eq!(
            inflater.inflate(&bomb, max_len, &mut out),
            Err(InflateError::TooBig)
        );
        // Truncated back, and never given more room than the limit allows: zlib cannot write
        // (nor so work) beyond the room it is given.
        assert_eq!(out, b"kept");
        assert!(out.capacity() <= 4 + max_len + 1, "{}", out.capacity());
        // The same bytes with room for all of it do inflate, so the limit is what stopped it.
        let mut all = Vec::new();
        inflater.inflate(&bomb, 64 << 20, &mut all).unwrap();
        assert_eq!(all.len(), 64 << 20);
        assert!(all.iter().all(|&b| b == 0));
    }

    #[test]
    fn keeps_the_output_it_was_given_and_appends() {
        let mut out = b"prefix:".to_vec();
        let mut inflater = Inflater::new();
        inflater.inflate(&HELLO, 5, &mut out).unwrap();
        assert_eq!(out, b"prefix:Hello");
        let mut compressed = b"header".to_vec();
        Deflater::new().compress(15, b"Hello", &mut compressed);
        assert_eq!(&compressed[6..], HELLO);
    }

    #[test]
    fn resets_after_an_error() {
        let mut inflater = Inflater::new();
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate(&HELLO[..3], 100, &mut out),
            Err(InflateError::Invalid)
        );
        assert_eq!(
            inflater.inflate(&[0x07, 0x00], 100, &mut out),
            Err(InflateError::Invalid)
        );
        assert_eq!(
            inflater.inflate(&HELLO, 4, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.is_empty());
        inflater.inflate(&HELLO, 5, &mut out).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn creates_one_context_per_window_in_use() {
        let mut deflater = Deflater::new();
        assert_eq!(deflater.contexts(), 0);
        let mut out = Vec::new();
        deflater.compress(15, b"a", &mut out);
        deflater.compress(15, b"b", &mut out);
        assert_eq!(deflater.contexts(), 1);
        deflater.compress(10, b"c", &mut out);
        assert_eq!(deflater.contexts(), 2);
    }

    #[test]
    #[should_panic(expected = "window_bits 8")]
    fn refuses_an_8_bit_window() {
        Deflater::new().compress(8, b"x", &mut Vec::new());
    }

    fn payload_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..65_536),
            (0..65_536usize, any::<u64>()).prop_map(|(len, seed)| json(len, seed)),
            (0..65_536usize, any::<u8>()).prop_map(|(len, byte)| vec![byte; len]),
            proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b')], 0..2000),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn every_window_round_trips(payload in payload_strategy()) {
            let mut deflater = Deflater::new();
            let mut inflater = Inflater::new();
            for bits in MIN_WINDOW_BITS..=MAX_WINDOW_BITS {
                let mut compressed = Vec::new();
                deflater.compress(bits, &payload, &mut compressed);
                prop_assert!(!compressed.is_empty());
                prop_assert!(!compressed.ends_with(&SYNC_FLUSH_TAIL) || payload.is_empty());
                let mut out = Vec::new();
                inflater.inflate(&compressed, payload.len(), &mut out).unwrap();
                prop_assert!(out == payload, "window {}", bits);
            }
        }

        #[test]
        fn shared_contexts_leak_nothing_between_connections(
            messages in proptest::collection::vec(
                (any::<bool>(), 9..=15u8, payload_strategy()), 1..8),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // Two "connections" interleave through one deflater and one inflater, and a
            // third sends garbage in between; each message must come out exactly as it does
            // from fresh contexts.
            let mut deflater = Deflater::new();
            let mut inflater = Inflater::new();
            for (first_connection, bits, payload) in &messages {
                let bits = if *first_connection { 15 } else { *bits };
                let mut shared = Vec::new();
                deflater.compress(bits, payload, &mut shared);
                prop_assert_eq!(&shared, &compress(bits, payload));
                let _ = inflater.inflate(&garbage, 1 << 20, &mut Vec::new());
                let mut out = Vec::new();
                inflater.inflate(&shared, payload.len(), &mut out).unwrap();
                prop_assert!(&out == payload);
            }
        }

        #[test]
        fn a_message_compressed_in_pieces_inflates_whole(
            payload in payload_strategy(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            finish in any::<bool>(),
        ) {
            // Frames are concatenated before inflating, so what matters is the blocks the
            // pieces leave: sync flushes inside the message, then a sync flush or a final
            // block at its end.
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
            cuts.sort_unstable();
            let compressed = if let (true, Some((&last, inner))) = (finish, cuts.split_last()) {
                // Sync-flushed pieces up to the last cut, then a final block from a fresh
                // compressor (no back-reference crosses into it), then the `00` of §7.2.3.4.
                let mut head = compress_in_pieces(&payload[..last], inner);
                head.extend_from_slice(&SYNC_FLUSH_TAIL);
                head.extend(compress_finished(&payload[last..], &[0x00]));
                head
            } else if finish {
                compress_finished(&payload, &[0x00])
            } else {
                compress_in_pieces(&payload, &cuts)
            };
            prop_assert_eq!(inflate(&compressed, payload.len()), Ok(payload));
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_exceed_the_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            max_len in 0..10_000usize,
        ) {
            let mut inflater = Inflater::new();
            let mut out = Vec::new();
            match inflater.inflate(&bytes, max_len, &mut out) {
                Ok(()) => prop_assert!(out.len() <= max_len),
                Err(_) => prop_assert!(out.is_empty()),
            }
            // And it still works afterwards.
            let mut again = Vec::new();
            inflater.inflate(&HELLO, 5, &mut again).unwrap();
            prop_assert_eq!(again, b"Hello");
        }
    }
}
