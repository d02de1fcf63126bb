//! `--tls-resume`: one pool of TLS 1.3 session tickets shared by every connection of a run.
//!
//! rustls's own client cache keeps a handful of tickets per server name, which hundreds of
//! connections opened at once use up at the start of a run; this pool keeps every ticket the
//! server hands out (up to a bound), so that after the first wave nearly every handshake can
//! resume. It stores nothing else a client could need and never blocks for long (one mutex,
//! held for a push or a pop).

use std::collections::VecDeque;
use std::sync::Mutex;

use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

/// Most tickets kept; older ones are dropped first.
const MAX_TICKETS: usize = 100_000;

/// Tickets from every connection, for any later one (all connections of a run go to servers
/// with the same certificate and ticket keys).
#[derive(Debug, Default)]
pub struct TicketPool {
    tickets: Mutex<VecDeque<Tls13ClientSessionValue>>,
    kx_hint: Mutex<Option<NamedGroup>>,
}

impl ClientSessionStore for TicketPool {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        *self.kx_hint.lock().unwrap() = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        *self.kx_hint.lock().unwrap()
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut tickets = self.tickets.lock().unwrap();
        if tickets.len() == MAX_TICKETS {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.tickets.lock().unwrap().pop_back()
    }
}
