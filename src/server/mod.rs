//! The reactor: one `mio::Poll` on one thread driving every connection.
//!
//! Each loop iteration runs the same phases: wait for readiness → accept → read, decode and
//! dispatch to the handler → timers (a coarse sweep) → tell the handler about closes → flush
//! every connection with pending output (one vectored write each) → drop dead connections.
//! Anything that queues bytes marks its connection dirty, and the flush phase runs before the
//! loop can wait again, so queued output never stalls. Sockets are registered once for read and
//! write readiness (edge-triggered); what the poller reported is remembered until an operation
//! returns `WouldBlock`.
//!
//! The reactor never panics on peer input and never spins: a connection whose send queue is
//! over its high-water mark is not read (TCP pushes back on the client), accepting pauses at
//! the descriptor limit and resumes when a connection closes, and input per connection per
//! iteration is capped so one busy client cannot starve the others.

mod conn;
mod core;
mod groups;
mod limits;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;

pub(crate) use self::conn::Tick;
use self::conn::{State, IN_READY, PEER_CLOSED, READABLE};
pub(crate) use self::core::Core;
pub(crate) use self::limits::bind_listener;
use crate::api::{Api, API_TOKEN_BASE};
use crate::handler::Request;
use crate::protocol::handshake::{accept_response, parse_request, MAX_HEADERS};
use crate::protocol::Event;
use crate::{Config, Context, Handler};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const API_LISTENER: Token = Token(usize::MAX - 4);

/// Reads of the shared buffer one connection gets per loop iteration before others have a turn.
const READS_PER_TURN: usize = 4;

/// Messages read in one pass from which the loop counts as busy and reads again before
/// flushing.
const BUSY_BATCH: u64 = 64;

/// Extra read passes a busy loop iteration may make before it flushes.
const EXTRA_READ_PASSES: usize = 3;

/// Events taken from the poller per wait.
const EVENT_CAPACITY: usize = 1024;

/// A WebSocket server: a listener, a handler and the reactor that drives them.
///
/// The server and its handler live on the thread that calls `run` and are not `Send` (the uid
/// registry shares strings with `Rc`): build the server on that thread, and stop it from
/// elsewhere with a [`ServerHandle`].
pub struct Server<H> {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    /// Accepting stopped at the connection or descriptor limit; resumes when a slot frees.
    accept_paused: bool,
    core: Core,
    handler: H,
    api: Option<Api>,
    scratch: Vec<u8>,
    control: Arc<Control>,
    waker: Arc<Waker>,
    signals: Option<Signals>,
    shutdown_deadline: Option<Instant>,
}

/// Shared between the reactor and its `ServerHandle`s.
#[derive(Debug, Default)]
struct Control {
    shutdown: AtomicBool,
}

/// A cloneable, thread-safe handle that can stop a running server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    control: Arc<Control>,
    waker: Arc<Waker>,
}

impl ServerHandle {
    /// Asks the server to shut down gracefully (close 1001 to every client, then `run`
    /// returns). Returns at once.
    pub fn shutdown(&self) {
        self.control.shutdown.store(true, Ordering::SeqCst);
        if let Err(error) = self.waker.wake() {
            warn!("could not wake the reactor: {error}");
        }
    }
}

impl<H: Handler> Server<H> {
    /// Binds the listener and prepares the reactor; nothing is accepted until `run`.
    ///
    /// Raises the soft open-files limit to the hard limit and derives the connection limit from
    /// it unless `config.max_connections` is set.
    pub fn bind(config: Config, handler: H) -> io::Result<Self> {
        let files = limits::raise_open_files_limit();
        let max_connections = config
            .max_connections
            .unwrap_or_else(|| files.saturating_sub(crate::config::FD_RESERVE).max(1));
        let poll = Poll::new()?;
        let mut listener = limits::bind_listener(config.listen, config.backlog)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let api = match &config.api {
            Some(api) => Some(Api::bind(api.clone(), poll.registry(), API_LISTENER)?),
            None => None,
        };
        let scratch = vec![0; config.read_buffer_size.max(4096)];
        Ok(Self {
            local_addr: listener.local_addr()?,
            poll,
            listener: Some(listener),
            accept_paused: false,
            core: Core::new(config, max_connections),
            handler,
            api,
            scratch,
            control: Arc::default(),
            waker,
            signals: None,
            shutdown_deadline: None,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the push API listens on, if it is enabled.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().and_then(|api| api.local_addr().ok())
    }

    /// The connection limit in force.
    pub fn max_connections(&self) -> usize {
        self.core.max_connections
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.core.config
    }

    /// A handle that can stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            control: Arc::clone(&self.control),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Shuts down gracefully on SIGINT or SIGTERM; a second signal exits at once.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals =
            Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs the reactor until a shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENT_CAPACITY);
        let sweep_every = sweep_interval(&self.core.config);
        let mut next_sweep = Instant::now() + sweep_every;
        loop {
            let timeout = self.poll_timeout(next_sweep);
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            self.core.tick();
            let messages_before = self.core.stats.messages_in;
            self.dispatch_events(&events);
            self.read_ready();
            // Under load, gather what else has arrived before writing: messages for the same
            // connection then leave in one write. A light load never takes this path.
            for _ in 0..EXTRA_READ_PASSES {
                if self.core.stats.messages_in - messages_before < BUSY_BATCH {
                    break;
                }
                if self.poll.poll(&mut events, Some(Duration::ZERO)).is_err() || events.is_empty() {
                    break;
                }
                self.dispatch_events(&events);
                self.read_ready();
            }
            if let Some(api) = &mut self.api {
                api.run_ready(&mut self.core, &mut self.scratch, self.poll.registry());
            }
            if Instant::now() >= next_sweep {
                self.core.sweep();
                if let Some(api) = &mut self.api {
                    api.sweep(&mut self.core, self.poll.registry());
                }
                next_sweep = Instant::now() + sweep_every;
                if self.accept_paused {
                    self.accept();
                }
            }
            self.report_closes();
            self.core.flush();
            self.report_closes();
            self.reap();
            if self.is_shutdown_complete() {
                info!("shutdown complete");
                return Ok(());
            }
        }
    }

    fn dispatch_events(&mut self, events: &Events) {
        self.core.stats.wakeups += 1;
        for event in events {
            match event.token() {
                LISTENER => self.accept(),
                WAKER => self.check_control(),
                SIGNALS => self.on_signal(),
                API_LISTENER => self.on_api_listener(),
                Token(key) if key >= API_TOKEN_BASE => self.on_api_event(key, event),
                Token(key) => self.on_conn_event(key, event),
            }
        }
    }

    fn poll_timeout(&self, next_sweep: Instant) -> Duration {
        let api_ready = self.api.as_ref().is_some_and(Api::has_ready);
        if !self.core.ready.is_empty() || !self.core.dirty.is_empty() || api_ready {
            return Duration::ZERO;
        }
        let mut deadline = next_sweep;
        if let Some(shutdown) = self.shutdown_deadline {
            deadline = deadline.min(shutdown);
        }
        deadline.saturating_duration_since(Instant::now())
    }

    fn accept(&mut self) {
        let was_paused = std::mem::replace(&mut self.accept_paused, false);
        while let Some(listener) = &self.listener {
            let over_limit = self.core.held_count() >= self.core.max_connections;
            if over_limit && self.core.overflow >= OVERFLOW_SLOTS {
                // Leave further clients in the kernel's backlog until a slot frees.
                self.accept_paused = true;
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer, over_limit),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_resource_exhausted(&e) => {
                    // Logged once per pause, not at every retry.
                    if !was_paused {
                        warn!("accept paused: {e}; resuming when a connection closes");
                    }
                    self.accept_paused = true;
                    return;
                }
                Err(e) => debug!("accept failed: {e}"),
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, peer: SocketAddr, over_limit: bool) {
        // TCP_NODELAY is inherited from the listening socket.
        let key = self.core.conns.vacant_key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            warn!("could not register a connection: {error}");
            return;
        }
        self.core.insert(stream, peer, over_limit);
    }

    fn on_api_listener(&mut self) {
        if let Some(api) = &mut self.api {
            api.accept(self.poll.registry(), self.core.now);
        }
    }

    fn on_api_event(&mut self, token: usize, event: &mio::event::Event) {
        if let Some(api) = &mut self.api {
            let registry = self.poll.registry();
            api.on_event(
                token - API_TOKEN_BASE,
                event,
                &mut self.core,
                &mut self.scratch,
                registry,
            );
        }
    }

    fn on_conn_event(&mut self, key: usize, event: &mio::event::Event) {
        // Events for a slot that was freed are harmless: readiness is only a hint.
        if !self.core.conns.contains(key) {
            return;
        }
        if event.is_writable() {
            self.core.writable(key);
        }
        if event.is_read_closed() || event.is_error() {
            self.core.conns[key].set(PEER_CLOSED);
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.core.conns[key].set(READABLE);
            self.core.mark_ready(key);
        }
    }

    /// Reads from every connection with input, within each one's per-iteration budget.
    fn read_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.core.ready);
        for &key in &ready {
            if let Some(conn) = self.core.conns.get_mut(key) {
                conn.clear(IN_READY);
                self.read_conn(key);
                self.report_closes();
            }
        }
        ready.clear();
        if self.core.ready.is_empty() {
            self.core.ready = ready;
        }
    }

    fn read_conn(&mut self, key: usize) {
        for _ in 0..READS_PER_TURN {
            let conn = &mut self.core.conns[key];
            if conn.state == State::Dead || !conn.has(READABLE) {
                return;
            }
            if conn.state == State::Open && self.core.should_pause_reading(key) {
                return;
            }
            let conn = &mut self.core.conns[key];
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.core.vanish(key);
                    return;
                }
                Ok(n) => {
                    self.core.record_read(key, n);
                    self.on_bytes(key, n);
                    // A short read emptied the receive queue; data arriving later raises a new
                    // edge, so skip the read that would only say `WouldBlock` (one syscall per
                    // read event). Not after a FIN: that raises no further edge.
                    let conn = &mut self.core.conns[key];
                    if n < self.scratch.len() && !conn.has(PEER_CLOSED) {
                        conn.clear(READABLE);
                        return;
                    }
                }
                Err(error) => {
                    if !self.core.read_failed(key, &error) {
                        return;
                    }
                }
            }
        }
        // Budget spent with input possibly left: continue next iteration.
        if self.core.conns[key].has(READABLE) {
            self.core.mark_ready(key);
        }
    }

    fn on_bytes(&mut self, key: usize, n: usize) {
        match self.core.conns[key].state {
            State::Handshake => self.on_handshake_bytes(key, n),
            State::Open => {
                let Self {
                    core,
                    handler,
                    scratch,
                    ..
                } = self;
                decode_and_dispatch(core, handler, key, &mut scratch[..n]);
            }
            // Closing or draining: input is read only to see the peer's close; discard it.
            _ => {}
        }
    }

    fn on_handshake_bytes(&mut self, key: usize, n: usize) {
        let max_len = self.core.config.max_handshake_size;
        let Some(mut head) = self.core.conns[key].head.take() else {
            return;
        };
        head.request.extend_from_slice(&self.scratch[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let request = match parse_request(&head.request, max_len, &mut headers) {
            Ok(Some(request)) => request,
            Ok(None) => {
                self.core.conns[key].head = Some(head);
                return;
            }
            Err(error) => {
                debug!("{}: handshake refused: {error}", self.core.id_of(key));
                self.core.reject(key, error.status, error.reason);
                return;
            }
        };
        if !is_origin_allowed(&self.core.config.allowed_origins, request.headers) {
            debug!("{}: origin refused", self.core.id_of(key));
            self.core.reject(key, 403, "origin not allowed");
            return;
        }
        let peer = head.peer;
        let request_len = request.len;
        self.core.open(key);
        self.core.conns[key]
            .outbox
            .push(accept_response(&request.accept).into());
        self.core.mark_dirty(key);
        let id = self.core.id_of(key);
        let view = Request::new(request.target, request.headers, peer);
        if let Err(rejection) = self
            .handler
            .on_open(&mut Context::new(&mut self.core), id, &view)
        {
            debug!("{id}: refused by handler: {}", rejection.status);
            self.core.unopen(key);
            self.core.reject(key, rejection.status, &rejection.reason);
            return;
        }
        // Frames pipelined right behind the request.
        if head.request.len() > request_len && self.core.conns[key].state == State::Open {
            decode_and_dispatch(
                &mut self.core,
                &mut self.handler,
                key,
                &mut head.request[request_len..],
            );
        }
    }

    /// Tells the handler about every connection that left the open state.
    fn report_closes(&mut self) {
        while !self.core.closed.is_empty() {
            let closed = std::mem::take(&mut self.core.closed);
            for (id, info) in &closed {
                self.handler
                    .on_close(&mut Context::new(&mut self.core), *id, info);
            }
        }
    }

    fn reap(&mut self) {
        let freed = !self.core.dead.is_empty();
        for key in std::mem::take(&mut self.core.dead) {
            if let Some(mut stream) = self.core.remove(key) {
                let _ = self.poll.registry().deregister(&mut stream);
            }
        }
        if freed && self.accept_paused {
            self.accept();
        }
    }

    fn check_control(&mut self) {
        if self.control.shutdown.load(Ordering::SeqCst) {
            self.begin_shutdown();
        }
    }

    fn on_signal(&mut self) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let received = signals.pending().count();
        if received == 0 {
            return;
        }
        if self.shutdown_deadline.is_some() {
            info!("second signal: exiting without waiting for clients");
            self.shutdown_deadline = Some(Instant::now());
        } else {
            info!("signal received: shutting down");
            self.begin_shutdown();
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.shutdown_deadline = Some(Instant::now() + self.core.config.shutdown_timeout);
        self.core.close_all();
    }

    fn is_shutdown_complete(&self) -> bool {
        self.shutdown_deadline
            .is_some_and(|deadline| self.core.conns.is_empty() || Instant::now() >= deadline)
    }
}

/// Connections accepted past the limit and answered 503 at once; beyond this many, new
/// clients wait in the kernel's backlog.
const OVERFLOW_SLOTS: usize = 32;

/// Decodes `input` for an open connection and dispatches what it contains.
fn decode_and_dispatch<H: Handler>(core: &mut Core, handler: &mut H, key: usize, input: &mut [u8]) {
    let id = core.id_of(key);
    let max_message = core.config.max_message_size;
    let mut decoder = std::mem::take(&mut core.conns[key].decoder);
    let result = decoder.decode(input, max_message, |event| match event {
        Event::Message(message) => {
            core.stats.messages_in += 1;
            handler.on_message(&mut Context::new(core), id, message);
            if core.conns[key].state == State::Open {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        }
        Event::Ping(payload) => {
            core.pong(key, payload);
            ControlFlow::Continue(())
        }
        Event::Pong(_) => ControlFlow::Continue(()),
        Event::Close(frame) => {
            core.peer_closed(key, frame);
            ControlFlow::Break(())
        }
    });
    if let Err(error) = result {
        core.fail(key, error);
        // The stream is unusable after a violation; nothing more is decoded from it.
        return;
    }
    if core.conns[key].state == State::Open {
        core.conns[key].decoder = decoder;
    }
}

/// How often the timer sweep runs: a quarter of the shortest timeout, within 10 ms – 1 s.
fn sweep_interval(config: &Config) -> Duration {
    [
        Some(config.handshake_timeout),
        config.login_timeout,
        config.ping_interval,
        config.idle_timeout,
        Some(config.close_timeout),
        config.api.as_ref().map(|api| api.timeout),
    ]
    .into_iter()
    .flatten()
    .min()
    .map_or(Duration::from_secs(1), |shortest| shortest / 4)
    .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Whether the request's `Origin` (if any) is in `allowed` (empty: all are).
fn is_origin_allowed(allowed: &[String], headers: &[httparse::Header<'_>]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(origin) = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"))
    else {
        return true;
    };
    allowed
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.value.trim_ascii()))
}

fn is_resource_exhausted(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
