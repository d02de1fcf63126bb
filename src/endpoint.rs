//! The phase contract every endpoint implements, what the reactor hands an endpoint for one
//! phase, and the token space the endpoints share.
//!
//! An endpoint is one kind of peer (WebSocket clients, push API clients, later a Redis bus):
//! it owns its listener and its connections' I/O, and acts on the hub and the handler only
//! through the [`Cx`] it is given. It never reaches into another endpoint, never reads the
//! clock (`cx.now` is the time), and writes only in `flush`.

use std::time::Duration;

use mio::event::Event;
use mio::Token;

use crate::hub::Hub;
use crate::net::Socket;
use crate::{Context, Handler};

/// What an endpoint may use during one phase of one loop iteration.
pub(crate) struct Cx<'a, H, T = Socket> {
    /// The connections' state.
    pub(crate) hub: &'a mut Hub<T>,
    /// The application.
    pub(crate) handler: &'a mut H,
    /// Where transports are registered for readiness.
    pub(crate) registry: &'a mio::Registry,
    /// The reactor's one read buffer, shared by every connection of every endpoint.
    pub(crate) scratch: &'a mut [u8],
    /// The time, as read by the reactor at the top of this iteration.
    pub(crate) now: Duration,
}

impl<H: Handler, T: 'static> Cx<'_, H, T> {
    /// The callback API's view of the hub at this iteration's time.
    pub(crate) fn context(&mut self) -> Context<'_> {
        Context::new(self.hub, self.now)
    }

    /// Tells the handler about every connection that left the open state (`on_close` may
    /// close others, which are reported in the same call).
    pub(crate) fn report_closes(&mut self) {
        while !self.hub.closed.is_empty() {
            let closed = std::mem::take(&mut self.hub.closed);
            for (id, info) in &closed {
                self.handler
                    .on_close(&mut Context::new(self.hub, self.now), *id, info);
            }
        }
    }
}

/// When an endpoint's timer sweep is next due: every `every`, from the start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SweepTimer {
    every: Duration,
    next: Duration,
}

impl SweepTimer {
    /// Sweeps a quarter of `shortest` apart (the shortest timeout the endpoint applies), within
    /// 10 ms – 1 s: a timeout fires at most a quarter late, and an idle server wakes at most
    /// once a second.
    pub(crate) fn quarter_of(shortest: Option<Duration>) -> Self {
        let every = shortest
            .map_or(Duration::from_secs(1), |shortest| shortest / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        Self { every, next: every }
    }

    /// Whether a sweep is due at `now`; if so, the next one is scheduled.
    pub(crate) fn is_due(&mut self, now: Duration) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.every;
        true
    }

    /// When the next sweep is due.
    pub(crate) fn next(&self) -> Duration {
        self.next
    }
}

/// Which of an endpoint's sources a readiness event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Its listening socket.
    Listener,
    /// Its connection with this slab key.
    Conn(usize),
}

/// Bits of a token that name its endpoint; the rest is the slot (0 for the listener, key + 1
/// for a connection). Works on 32-bit targets too: 2^29 slots per endpoint.
const ENDPOINT_BITS: u32 = 3;

/// The endpoint index the reactor keeps for its own sources (waker, signals).
pub(crate) const REACTOR: usize = (1 << ENDPOINT_BITS) - 1;

/// One endpoint's share of the token space.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokens {
    endpoint: usize,
}

impl Tokens {
    /// The tokens of endpoint number `endpoint` (below [`REACTOR`]).
    pub(crate) const fn of(endpoint: usize) -> Self {
        assert!(endpoint < REACTOR);
        Self { endpoint }
    }

    /// The token for `slot`.
    pub(crate) fn token(self, slot: Slot) -> Token {
        let slot = match slot {
            Slot::Listener => 0,
            Slot::Conn(key) => key + 1,
        };
        Token(slot << ENDPOINT_BITS | self.endpoint)
    }
}

/// The endpoint and slot a token was made for.
pub(crate) fn decode_token(token: Token) -> (usize, Slot) {
    let endpoint = token.0 & REACTOR;
    let slot = match token.0 >> ENDPOINT_BITS {
        0 => Slot::Listener,
        n => Slot::Conn(n - 1),
    };
    (endpoint, slot)
}

/// The phases of one loop iteration, as one endpoint takes part in them. Every iteration the
/// reactor calls `on_event` for each of the endpoint's events, then `turn` (up to four times
/// when busy), `sweep` and `flush`, for every endpoint in a fixed order; it asks `has_work` and
/// `next_deadline` before waiting, and calls `begin_drain` once at shutdown, then `is_drained`
/// after every iteration.
pub(crate) trait Endpoint<H: Handler> {
    /// Records the readiness the poller reported for one of this endpoint's tokens (and
    /// accepts, for its listener). No reads or writes of connection data here.
    fn on_event(&mut self, slot: Slot, event: &Event, cx: &mut Cx<'_, H>);

    /// Reads, decodes and answers what has arrived, within this turn's budget; work left over
    /// makes `has_work` true.
    fn turn(&mut self, cx: &mut Cx<'_, H>);

    /// Applies the timeouts due at `cx.now`.
    fn sweep(&mut self, cx: &mut Cx<'_, H>);

    /// Writes pending output (the only writes), then drops connections that are gone.
    fn flush(&mut self, cx: &mut Cx<'_, H>);

    /// When this endpoint next needs a turn without any I/O (its timer sweep, a reconnect
    /// backoff); the reactor waits no longer than the earliest.
    fn next_deadline(&self) -> Option<Duration>;

    /// Whether input or output is left over for the next iteration, so the reactor must not
    /// block.
    fn has_work(&self, hub: &Hub<Socket>) -> bool;

    /// Starts the shutdown: stop taking new work (or, for an endpoint that must keep answering,
    /// say so to every peer) and start closing the current connections.
    fn begin_drain(&mut self, cx: &mut Cx<'_, H>);

    /// Whether everything this endpoint owes its peers is done, so the process may exit.
    fn is_drained(&self, hub: &Hub<Socket>) -> bool;
}

/// An optional endpoint (the push API can be off) takes part when present.
impl<H: Handler, E: Endpoint<H>> Endpoint<H> for Option<E> {
    fn on_event(&mut self, slot: Slot, event: &Event, cx: &mut Cx<'_, H>) {
        if let Some(endpoint) = self {
            endpoint.on_event(slot, event, cx);
        }
    }
    fn turn(&mut self, cx: &mut Cx<'_, H>) {
        if let Some(endpoint) = self {
            endpoint.turn(cx);
        }
    }
    fn sweep(&mut self, cx: &mut Cx<'_, H>) {
        if let Some(endpoint) = self {
            endpoint.sweep(cx);
        }
    }
    fn flush(&mut self, cx: &mut Cx<'_, H>) {
        if let Some(endpoint) = self {
            endpoint.flush(cx);
        }
    }
    fn next_deadline(&self) -> Option<Duration> {
        self.as_ref().and_then(Endpoint::<H>::next_deadline)
    }
    fn has_work(&self, hub: &Hub<Socket>) -> bool {
        self.as_ref()
            .is_some_and(|endpoint| Endpoint::<H>::has_work(endpoint, hub))
    }
    fn begin_drain(&mut self, cx: &mut Cx<'_, H>) {
        if let Some(endpoint) = self {
            endpoint.begin_drain(cx);
        }
    }
    fn is_drained(&self, hub: &Hub<Socket>) -> bool {
        self.as_ref()
            .map_or(true, |endpoint| Endpoint::<H>::is_drained(endpoint, hub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_are_a_quarter_of_the_shortest_timeout_apart_within_bounds() {
        let mut timer = SweepTimer::quarter_of(Some(Duration::from_millis(400)));
        assert!(!timer.is_due(Duration::from_millis(99)));
        assert!(timer.is_due(Duration::from_millis(100)));
        assert_eq!(timer.next(), Duration::from_millis(200));
        assert_eq!(SweepTimer::quarter_of(None).next(), Duration::from_secs(1));
        let fast = SweepTimer::quarter_of(Some(Duration::from_millis(1)));
        assert_eq!(fast.next(), Duration::from_millis(10));
    }

    #[test]
    fn tokens_name_their_endpoint_and_slot() {
        for endpoint in [0, 1, REACTOR - 1] {
            let tokens = Tokens::of(endpoint);
            for slot in [Slot::Listener, Slot::Conn(0), Slot::Conn(123_456)] {
                assert_eq!(decode_token(tokens.token(slot)), (endpoint, slot));
            }
        }
    }
}
