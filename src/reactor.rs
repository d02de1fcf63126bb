//! The reactor: one `mio::Poll` on one thread driving every endpoint through the same phases.
//!
//! One loop iteration, in order:
//! 1. wait for readiness, no longer than the earliest deadline an endpoint asked for (not at
//!    all while an endpoint has work left);
//! 2. read the clock once: that `now` is the time for the whole iteration;
//! 3. hand each event to the endpoint its token names (the reactor keeps only the waker and
//!    the signals for itself);
//! 4. each endpoint's turn: read, decode, dispatch to the handler, answer, within its budget
//!    (a busy iteration gathers a few more rounds of events first, so that replies for the same
//!    connection leave in one write);
//! 5. each endpoint's sweep: the timeouts due at `now`;
//! 6. each endpoint's flush, the cluster's first: the only writes, then dead connections are
//!    dropped;
//! 7. during a shutdown, exit once every endpoint is drained or the shutdown timeout passed.
//!
//! After every phase the handler hears of the connections that closed in it. The reactor owns
//! the poll, the token space, the clock, the signals and the shutdown sequence; it has no
//! branch for any particular endpoint. Sockets are registered once for read and write readiness
//! (edge-triggered); what the poller reported is kept by each endpoint until an operation
//! returns `WouldBlock`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::api::Api;
use crate::cluster::Cluster;
use crate::endpoint::{decode_token, Cx, Endpoint, Slot, Tokens, REACTOR};
use crate::hub::Hub;
use crate::memory::Trimmer;
use crate::net::{self, Socket};
use crate::tls::Identity;
use crate::ws::WebSocket;
use crate::{Config, Handler};

/// The endpoints' numbers in the token space, which are also their places in phase order.
const WEBSOCKET: usize = 0;
const API: usize = 1;
const CLUSTER: usize = 2;

/// The order of the flushes. The cluster's comes first, so that whatever a turn asked of Redis
/// (a membership, a publication) is handed to Redis before any answer of that turn tells a
/// client or a backend it was done: a login on another node right after the API's answer to a
/// membership change then finds the membership in Redis.
const FLUSH_ORDER: [usize; 3] = [CLUSTER, WEBSOCKET, API];

/// The reactor's own sources.
const WAKER: Token = token_of_reactor(0);
const SIGNALS: Token = token_of_reactor(1);

const fn token_of_reactor(slot: usize) -> Token {
    Token(slot << 3 | REACTOR)
}

/// Messages read in one turn from which the iteration counts as busy and reads again before
/// flushing.
const BUSY_BATCH: u64 = 64;

/// Extra rounds of events a busy iteration may take before it flushes.
const EXTRA_READ_PASSES: usize = 3;

/// Events taken from the poller per wait.
const EVENT_CAPACITY: usize = 1024;

/// A WebSocket server: its listeners, a handler and the reactor that drives them.
///
/// The server and its handler live on the thread that calls `run` and are not `Send` (the uid
/// registry shares strings with `Rc`): build the server on that thread, and stop it from
/// elsewhere with a [`ServerHandle`].
pub struct Server<H> {
    poll: Poll,
    local_addr: SocketAddr,
    shared: Shared<H>,
    websocket: WebSocket,
    api: Option<Api>,
    cluster: Option<Cluster>,
    control: Arc<Control>,
    waker: Arc<Waker>,
    signals: Option<Signals>,
    started: Instant,
    shutdown_deadline: Option<Duration>,
    trimmer: Trimmer,
}

/// What every endpoint's phases act on.
struct Shared<H> {
    hub: Hub<Socket>,
    handler: H,
    scratch: Vec<u8>,
}

/// Shared between the reactor and its `ServerHandle`s.
#[derive(Debug, Default)]
struct Control {
    shutdown: AtomicBool,
    reload: AtomicBool,
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

    /// Asks the server to read its TLS certificate and key again, as SIGHUP does (new
    /// handshakes get the new certificate; a bad file keeps the old one, which the log says).
    /// Returns at once.
    pub fn reload_tls(&self) {
        self.control.reload.store(true, Ordering::SeqCst);
        if let Err(error) = self.waker.wake() {
            warn!("could not wake the reactor: {error}");
        }
    }
}

/// Why `Server::bind` failed, naming what could not be set up.
#[derive(Debug)]
pub struct BindError {
    what: String,
    source: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl BindError {
    /// The kind of the underlying I/O error (`InvalidInput` for a refused configuration).
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<BindError> for io::Error {
    fn from(error: BindError) -> Self {
        io::Error::new(error.source.kind(), error.to_string())
    }
}

fn context(what: impl Into<String>) -> impl FnOnce(io::Error) -> BindError {
    let what = what.into();
    move |source| BindError { what, source }
}

impl<H: Handler> Server<H> {
    /// Binds the listeners and prepares the reactor; nothing is accepted until `run`.
    ///
    /// Raises the soft open-files limit to the hard limit and derives the connection limit from
    /// it unless `config.max_connections` is set.
    pub fn bind(config: Config, handler: H) -> Result<Self, BindError> {
        let config = config.checked().map_err(|error| BindError {
            what: "invalid configuration".to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, error),
        })?;
        let budget = config.descriptor_budget(net::raise_open_files_limit());
        if budget.fits() {
            info!("{budget}");
        } else {
            warn!("{budget}: more than the limit; accepting pauses when descriptors run out");
        }
        let max_connections = budget.websocket;
        let poll = Poll::new().map_err(context("cannot create the poller"))?;
        let listen = config.listen;
        let mut listener = net::bind_listener(
            listen,
            config.backlog,
            config.socket_send_buffer,
            config.reuse_port,
        )
        .map_err(context(format!("cannot listen on {listen}")))?;
        let tokens = Tokens::of(WEBSOCKET);
        poll.registry()
            .register(
                &mut listener,
                tokens.token(Slot::Listener),
                Interest::READABLE,
            )
            .map_err(context("cannot register the listener"))?;
        let local_addr = listener
            .local_addr()
            .map_err(context("cannot read the listening address"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(context("cannot create a waker"))?;
        let api = match &config.api {
            Some(api) => Some(
                Api::bind(
                    api.clone(),
                    poll.registry(),
                    Tokens::of(API),
                    config.reuse_port,
                )
                .map_err(context(format!(
                    "cannot serve the push API on {}",
                    api.listen
                )))?,
            ),
            None => None,
        };
        let cluster = match &config.cluster {
            Some(cluster) => Some(
                Cluster::new(cluster.clone(), Tokens::of(CLUSTER), config.group_grace)
                    .map_err(context(format!("cannot find Redis at {:?}", cluster.redis)))?,
            ),
            None => None,
        };
        let identity = match &config.tls {
            Some(files) => {
                let identity = Identity::load(files).map_err(|error| BindError {
                    what: "cannot set up TLS".to_owned(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, error),
                })?;
                info!("serving wss: {}", identity.summary());
                Some(identity)
            }
            None => None,
        };
        let websocket = WebSocket::new(tokens, Some(listener), &config);
        let scratch = vec![0; config.read_buffer_size];
        let mut hub = Hub::new(config, max_connections);
        hub.tls = identity;
        if cluster.is_some() {
            hub.bus = Some(Default::default());
        }
        Ok(Self {
            poll,
            local_addr,
            shared: Shared {
                hub,
                handler,
                scratch,
            },
            websocket,
            api,
            cluster,
            control: Arc::default(),
            waker: Arc::new(waker),
            signals: None,
            started: Instant::now(),
            shutdown_deadline: None,
            trimmer: Trimmer::default(),
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the push API listens on, if it is enabled.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(Api::local_addr)
    }

    /// The connection limit in force.
    pub fn max_connections(&self) -> usize {
        self.shared.hub.max_connections
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.shared.hub.config
    }

    /// A handle that can stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            control: Arc::clone(&self.control),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Shuts down gracefully on SIGINT or SIGTERM (a second one exits at once); reloads the TLS
    /// certificate on SIGHUP.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs the reactor until a shutdown completes. The only reader of the clock.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENT_CAPACITY);
        loop {
            let timeout = self.poll_timeout(self.started.elapsed());
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            let now = self.started.elapsed();
            let messages_before = self.shared.hub.stats.messages_in;
            self.dispatch(&events, now);
            self.phase(now, |endpoint, cx| endpoint.turn(cx));
            // Under load, gather what else has arrived before writing: messages for the same
            // connection then leave in one write. A light load never takes this path.
            for _ in 0..EXTRA_READ_PASSES {
                if self.shared.hub.stats.messages_in - messages_before < BUSY_BATCH {
                    break;
                }
                if self.poll.poll(&mut events, Some(Duration::ZERO)).is_err() || events.is_empty() {
                    break;
                }
                self.dispatch(&events, now);
                self.phase(now, |endpoint, cx| endpoint.turn(cx));
            }
            self.phase(now, |endpoint, cx| endpoint.sweep(cx));
            self.phase_in(FLUSH_ORDER, now, |endpoint, cx| endpoint.flush(cx));
            self.trimmer.observe(self.shared.hub.held_bytes(), now);
            if self.is_shutdown_complete(now) {
                info!("shutdown complete");
                return Ok(());
            }
        }
    }

    /// Runs one phase for every endpoint in token order, telling the handler about closes after
    /// each.
    fn phase(&mut self, now: Duration, run: impl FnMut(&mut dyn Endpoint<H>, &mut Cx<'_, H>)) {
        self.phase_in([WEBSOCKET, API, CLUSTER], now, run);
    }

    /// Runs one phase for every endpoint in `order`, telling the handler about closes after
    /// each.
    fn phase_in(
        &mut self,
        order: [usize; 3],
        now: Duration,
        mut run: impl FnMut(&mut dyn Endpoint<H>, &mut Cx<'_, H>),
    ) {
        let (mut cx, endpoints) = self.parts(now);
        let mut endpoints = endpoints.map(Some);
        for index in order {
            if let Some(endpoint) = endpoints[index].take() {
                run(endpoint, &mut cx);
                cx.report_closes();
            }
        }
    }

    /// Hands each event to the endpoint its token names.
    fn dispatch(&mut self, events: &Events, now: Duration) {
        self.shared.hub.stats.wakeups += 1;
        for event in events {
            match decode_token(event.token()) {
                (REACTOR, _) if event.token() == WAKER => self.check_control(now),
                (REACTOR, _) => self.on_signal(now),
                (endpoint, slot) => {
                    let (mut cx, endpoints) = self.parts(now);
                    // Sporadic events for tokens nobody owns are harmless.
                    if let Some(target) = endpoints.into_iter().nth(endpoint) {
                        target.on_event(slot, event, &mut cx);
                    }
                }
            }
        }
    }

    /// What a phase works with: the shared state, and the endpoints in their token order
    /// (`WEBSOCKET`, `API`, `CLUSTER`; `endpoints` lists them the same way).
    fn parts(&mut self, now: Duration) -> (Cx<'_, H>, [&mut dyn Endpoint<H>; 3]) {
        let Self {
            poll,
            shared,
            websocket,
            api,
            cluster,
            ..
        } = self;
        let cx = Cx {
            hub: &mut shared.hub,
            handler: &mut shared.handler,
            registry: poll.registry(),
            scratch: &mut shared.scratch,
            now,
        };
        (cx, [websocket, api, cluster])
    }

    /// The endpoints, read-only, in token order as `parts` gives them.
    fn endpoints(&self) -> [&dyn Endpoint<H>; 3] {
        [&self.websocket, &self.api, &self.cluster]
    }

    /// How long the poller may wait: not at all while an endpoint has work, else until the
    /// earliest deadline an endpoint (or the shutdown) asked for.
    fn poll_timeout(&self, now: Duration) -> Duration {
        let hub = &self.shared.hub;
        let endpoints = self.endpoints();
        if endpoints.iter().any(|endpoint| endpoint.has_work(hub)) {
            return Duration::ZERO;
        }
        endpoints
            .iter()
            .filter_map(|endpoint| endpoint.next_deadline())
            .chain(self.shutdown_deadline)
            .min()
            .map_or(Duration::from_secs(1), |deadline| {
                deadline.saturating_sub(now)
            })
    }

    fn check_control(&mut self, now: Duration) {
        if self.control.reload.swap(false, Ordering::SeqCst) {
            self.reload_tls();
        }
        if self.control.shutdown.load(Ordering::SeqCst) {
            self.begin_shutdown(now);
        }
    }

    fn reload_tls(&mut self) {
        if self.shared.hub.reload_tls().is_none() {
            info!("TLS reload asked for, but this server has no certificate (--tls-cert)");
        }
    }

    fn on_signal(&mut self, now: Duration) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        let (mut stop, mut reload) = (false, false);
        for signal in signals.pending() {
            match signal {
                SIGHUP => reload = true,
                _ => stop = true,
            }
        }
        if reload {
            self.reload_tls();
        }
        if !stop {
            return;
        }
        if self.shutdown_deadline.is_some() {
            info!("second signal: exiting without waiting for clients");
            self.shutdown_deadline = Some(now);
        } else {
            info!("signal received: shutting down");
            self.begin_shutdown(now);
        }
    }

    fn begin_shutdown(&mut self, now: Duration) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(now + self.shared.hub.config.shutdown_timeout);
        self.phase(now, |endpoint, cx| endpoint.begin_drain(cx));
    }

    fn is_shutdown_complete(&self, now: Duration) -> bool {
        let Some(deadline) = self.shutdown_deadline else {
            return false;
        };
        let hub = &self.shared.hub;
        let endpoints = self.endpoints();
        now >= deadline || endpoints.iter().all(|endpoint| endpoint.is_drained(hub))
    }
}
