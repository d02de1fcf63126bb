//! A connection's queue of outgoing frames and the vectored write that drains it (sans-IO: it
//! writes to any `io::Write`).
//!
//! Frames are `Bytes`: a broadcast frame is one allocation shared by every queue it sits in.
//! Invariants: a single pending frame needs no queue allocation; a queue emptied by a write is
//! kept for the connection's next burst until `release_spare` frees it (the hub does that
//! in its timer sweep, so an idle connection owns no heap memory); `len` is always the number
//! of unwritten bytes, and `cost` what the queue holds in memory as the caps count it.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};

/// Most frames handed to one `writev` call.
const MAX_IOVECS: usize = 64;

/// What holding one frame in a queue costs beyond its bytes: its 32-byte slot in the queue, up
/// to 32 more of the queue's growth slack, and up to 32 of the allocator's rounding of a small
/// frame's buffer (glibc's smallest chunk is 32 bytes). Caps compare [`Outbox::cost`], so a queue
/// of 2-byte frames is charged at what it really holds, not at 2 bytes each.
pub const FRAME_OVERHEAD: usize = 96;

/// The most a queue of several frames holds: its total is kept in 32 bits, beside the variant's
/// tag, so that the queue takes 40 bytes of every connection's record. The caps keep queues
/// far below it (`--max-send-buffer` and `--max-message-size` are at most 1 GiB each).
pub const MAX_QUEUED: usize = u32::MAX as usize;

#[derive(Debug, Default)]
enum Frames {
    #[default]
    Empty,
    One(Bytes),
    /// `len`: the unwritten bytes of all the frames.
    Many {
        len: u32,
        queue: VecDeque<Bytes>,
    },
}

/// Outgoing bytes not yet accepted by the kernel.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: Frames,
}

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The socket is full; the rest waits for writability.
    Blocked,
}

impl Outbox {
    /// Unwritten bytes.
    pub fn len(&self) -> usize {
        match &self.frames {
            Frames::Empty => 0,
            Frames::One(frame) => frame.len(),
            Frames::Many { len, .. } => *len as usize,
        }
    }

    /// What the queue holds in memory, as caps count it: the unwritten bytes plus
    /// [`FRAME_OVERHEAD`] per frame.
    pub fn cost(&self) -> usize {
        self.len() + self.frame_count() * FRAME_OVERHEAD
    }

    /// Frames not yet completely written.
    pub fn frame_count(&self) -> usize {
        match &self.frames {
            Frames::Empty => 0,
            Frames::One(_) => 1,
            Frames::Many { queue, .. } => queue.len(),
        }
    }

    /// True when nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a frame (a refcount increment for a shared frame, never a copy). A frame that
    /// would take the queue past [`MAX_QUEUED`] is refused: false.
    #[must_use]
    pub fn push(&mut self, frame: Bytes) -> bool {
        self.insert(frame, false)
    }

    /// Puts a frame before everything queued. Only for a queue nothing has been written from
    /// yet (the handshake answer goes in front of what `on_open` sent). Refused like `push`.
    #[must_use]
    pub fn push_front(&mut self, frame: Bytes) -> bool {
        self.insert(frame, true)
    }

    fn insert(&mut self, frame: Bytes, front: bool) -> bool {
        if frame.is_empty() {
            return true;
        }
        let Some(total) = u32::try_from(self.len() + frame.len()).ok() else {
            return false;
        };
        self.frames = match std::mem::take(&mut self.frames) {
            Frames::Empty => Frames::One(frame),
            Frames::One(other) => {
                let pair = if front {
                    [frame, other]
                } else {
                    [other, frame]
                };
                Frames::Many {
                    len: total,
                    queue: VecDeque::from(pair),
                }
            }
            Frames::Many { mut queue, .. } => {
                if front {
                    queue.push_front(frame);
                } else {
                    queue.push_back(frame);
                }
                Frames::Many { len: total, queue }
            }
        };
        true
    }

    /// Drops all frames but the first, which may be partly written already: cutting it would
    /// corrupt the stream.
    pub fn keep_only_head(&mut self) {
        if let Frames::Many { len, queue } = &mut self.frames {
            queue.truncate(1);
            // The head is part of the total, which fits in 32 bits.
            *len = queue.front().map_or(0, |head| head.len() as u32);
        }
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Writes as much as the socket takes, returning the bytes written, how it ended, and how
    /// many write calls it made.
    pub fn write_to<W: Write>(&mut self, socket: &mut W) -> io::Result<(usize, Flushed, u64)> {
        let mut written = 0;
        let mut calls = 0;
        while !self.is_empty() {
            calls += 1;
            let result = match &self.frames {
                Frames::Empty => break,
                Frames::One(frame) => socket.write(frame),
                Frames::Many { queue, .. } => {
                    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                    let count = queue.len().min(MAX_IOVECS);
                    for (slice, frame) in slices.iter_mut().zip(queue.iter()) {
                        *slice = IoSlice::new(frame);
                    }
                    socket.write_vectored(&slices[..count])
                }
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.advance(n);
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((written, Flushed::Blocked, calls))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((written, Flushed::All, calls))
    }

    /// The unwritten bytes of each frame, front first (a TLS session encrypts from these).
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> {
        let (one, many) = match &self.frames {
            Frames::Empty => (None, None),
            Frames::One(frame) => (Some(frame.as_ref()), None),
            Frames::Many { queue, .. } => (None, Some(queue.iter().map(Bytes::as_ref))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Counts `n` bytes from the front as sent (they were encrypted and handed on).
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.advance(n.min(self.len()));
    }

    /// `n` is at most `len()`.
    fn advance(&mut self, mut n: usize) {
        match &mut self.frames {
            Frames::Empty => {}
            Frames::One(frame) => {
                frame.advance(n);
                if frame.is_empty() {
                    self.frames = Frames::Empty;
                }
            }
            Frames::Many { len, queue } => {
                // At most the total, which fits in 32 bits.
                *len -= n as u32;
                while n > 0 {
                    let Some(front) = queue.front_mut() else {
                        break;
                    };
                    if n >= front.len() {
                        n -= front.len();
                        queue.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
            }
        }
    }

    /// Frees a queue allocation kept from an earlier burst, if nothing is waiting in it.
    pub fn release_spare(&mut self) {
        if self.is_empty() {
            self.frames = Frames::Empty;
        }
    }

    /// Whether an empty queue allocation is being kept.
    pub fn has_spare(&self) -> bool {
        self.is_empty() && matches!(self.frames, Frames::Many { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `limit` bytes per call, then reports WouldBlock when full.
    struct Trickle {
        written: Vec<u8>,
        limit: usize,
        capacity: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.capacity - self.written.len();
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.limit).min(room);
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_frames_in_order_across_partial_writes() {
        let mut outbox = Outbox::default();
        for frame in [&b"abc"[..], b"defg", b"h"] {
            assert!(outbox.push(Bytes::copy_from_slice(frame)));
        }
        let mut socket = Trickle {
            written: Vec::new(),
            limit: 2,
            capacity: 5,
        };
        assert_eq!(
            outbox.write_to(&mut socket).unwrap(),
            (5, Flushed::Blocked, 4)
        );
        assert_eq!(outbox.len(), 3);
        socket.capacity = 100;
        assert_eq!(outbox.write_to(&mut socket).unwrap(), (3, Flushed::All, 2));
        assert_eq!(socket.written, b"abcdefgh");
        assert!(outbox.has_spare());
        outbox.release_spare();
        assert!(matches!(outbox.frames, Frames::Empty));
    }

    #[test]
    fn shares_one_frame_between_queues() {
        let frame = Bytes::from(vec![1u8; 100]);
        let mut a = Outbox::default();
        let mut b = Outbox::default();
        assert!(a.push(frame.clone()));
        assert!(b.push(frame.clone()));
        let Frames::One(queued) = &a.frames else {
            panic!("one frame")
        };
        assert_eq!(queued.as_ptr(), frame.as_ptr());
        assert_eq!(a.len() + b.len(), 200);
    }

    #[test]
    fn cost_charges_every_frame_its_overhead() {
        let mut outbox = Outbox::default();
        for _ in 0..3 {
            assert!(outbox.push(Bytes::from_static(b"\x8a\x00")));
        }
        assert_eq!((outbox.len(), outbox.cost()), (6, 6 + 3 * FRAME_OVERHEAD));
        let mut sink = Vec::new();
        outbox.write_to(&mut sink).unwrap();
        assert_eq!(outbox.cost(), 0);
    }

    #[test]
    fn push_front_puts_a_frame_before_the_queue() {
        let mut outbox = Outbox::default();
        assert!(outbox.push(Bytes::from_static(b"b")));
        assert!(outbox.push(Bytes::from_static(b"c")));
        assert!(outbox.push_front(Bytes::from_static(b"a")));
        let mut sink = Vec::new();
        outbox.write_to(&mut sink).unwrap();
        assert_eq!(sink, b"abc");
    }

    #[test]
    fn the_queue_takes_40_bytes_of_every_record() {
        assert_eq!(std::mem::size_of::<Outbox>(), 40);
    }

    #[test]
    fn a_queue_refuses_what_would_take_it_to_4_gib_and_stays_exact() {
        // Zeroed pages are never touched: this costs address space, not memory.
        let gib = Bytes::from(vec![0u8; 1 << 30]);
        let mut outbox = Outbox::default();
        for _ in 0..3 {
            assert!(outbox.push(gib.clone()));
        }
        assert!(outbox.push(gib.slice(..(1 << 30) - 1)));
        assert_eq!(outbox.len(), MAX_QUEUED);
        assert!(!outbox.push(Bytes::from_static(b"x")));
        assert!(!outbox.push_front(Bytes::from_static(b"x")));
        assert_eq!((outbox.len(), outbox.frame_count()), (MAX_QUEUED, 4));
        outbox.consume(1 << 30);
        assert_eq!(outbox.len(), MAX_QUEUED - (1 << 30));
        assert!(outbox.push(Bytes::from_static(b"x")));
        outbox.keep_only_head();
        assert_eq!((outbox.len(), outbox.frame_count()), (1 << 30, 1));
    }
}
