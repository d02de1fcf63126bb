//! The vocabulary every layer above the hub speaks: connection ids, send outcomes, how a
//! connection closed, and the reactor's clock.
//!
//! Plain values with no behaviour beyond formatting and comparison. Time is never read here:
//! the reactor reads the clock once per loop iteration and passes that `now` (time since the
//! server started) down to everything that needs it, so tests can set it.

use std::fmt;
use std::time::Duration;

use crate::protocol::CloseCode;

/// Identifies one connection for its whole life.
///
/// The slot key is reused after a connection closes, but the generation is not: an id kept
/// after its connection closed never reaches the slot's next occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    key: u32,
    gen: u32,
}

impl ConnId {
    /// An id from its parts. Servers hand out ids through the callbacks; building one is
    /// only useful for tests and benchmarks (an id whose generation does not match reaches
    /// nothing).
    pub fn new(key: u32, gen: u32) -> Self {
        Self { key, gen }
    }

    pub(crate) fn key(self) -> usize {
        self.key as usize
    }

    pub(crate) fn gen(self) -> u32 {
        self.gen
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.key, self.gen)
    }
}

/// What happened to a message handed to `Context::send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// The connection keeps up: the frame goes to its socket in this loop iteration's flush.
    /// (If the socket fills during that flush, the rest waits in the queue as for `Queued`.)
    Sent,
    /// The connection is behind (its socket was full at the last write): the frame waits in its
    /// queue, within `max_send_buffer`.
    Queued,
    /// The frame was not queued: the connection is closed or closing, or its queue is full.
    Dropped,
}

/// Who started a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// The client sent a close frame, or vanished.
    Client,
    /// The server closed it: a protocol error, a timeout, a policy, a shutdown or `ctx.close`.
    Server,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code: the client's, the server's, 1005 for a close frame without a code, or
    /// 1006 when the TCP connection dropped without a close frame.
    pub code: CloseCode,
    /// The reason that went with the code, possibly empty.
    pub reason: String,
    /// Who started it.
    pub initiator: Initiator,
}

/// A moment on the reactor's clock in milliseconds, wrapping after about 49 days: what a
/// connection record stores (4 bytes instead of an `Instant`'s 16). Only differences of less
/// than 24 days are ever taken.
pub(crate) type Tick = u32;

/// `now` (time since start) as a tick.
pub(crate) fn tick(now: Duration) -> Tick {
    // Truncation is the point: ticks wrap.
    now.as_millis() as Tick
}

/// Whether `duration` has passed between the tick `since` and `now`, across wrap-around.
pub(crate) fn has_elapsed(since: Tick, now: Duration, duration: Duration) -> bool {
    tick(now).wrapping_sub(since) >= duration_ticks(duration)
}

/// A duration in ticks, capped where tick differences stay meaningful.
fn duration_ticks(duration: Duration) -> Tick {
    duration.as_millis().min(u128::from(Tick::MAX / 2)) as Tick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_time_is_measured_across_tick_wrap_around() {
        let before_wrap = Duration::from_millis(u64::from(Tick::MAX) - 5);
        let since = tick(before_wrap);
        let after_wrap = before_wrap + Duration::from_millis(20);
        assert!(tick(after_wrap) < since, "the tick wrapped");
        assert!(has_elapsed(since, after_wrap, Duration::from_millis(20)));
        assert!(!has_elapsed(since, after_wrap, Duration::from_millis(21)));
    }

    #[test]
    fn very_long_durations_are_capped_not_wrapped() {
        let now = Duration::from_secs(1);
        assert!(!has_elapsed(
            tick(now),
            now,
            Duration::from_secs(100 * 86_400)
        ));
    }
}
