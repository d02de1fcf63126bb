//! Server configuration: every limit and timeout, each with its documented default.
//!
//! One plain struct. The binary fills it from flags and environment variables; library users
//! start from `Config::default()` and change what they need.

use std::net::SocketAddr;
use std::time::Duration;

/// What happens to a message for a connection whose send queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Drop the message for that connection only and count it (default).
    #[default]
    Drop,
    /// Close that connection with 1008; other connections are unaffected. (Only for a
    /// connection over its own cap; past the total cap messages are dropped.)
    Close,
}

/// Whether the server compresses messages (permessage-deflate, RFC 7692).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Decline every client's offer: messages travel as they are.
    Off,
    /// Accept a client's permessage-deflate offer without context takeover either way, so that
    /// one compressor and one decompressor per reactor serve every connection; a message sent
    /// to many is compressed once (default).
    #[default]
    Shared,
}

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `0.0.0.0:1234`.
    pub listen: SocketAddr,
    /// Length of the kernel's queue of connections not yet accepted (capped by
    /// `net.core.somaxconn`). Default 4096.
    pub backlog: u32,
    /// The kernel's send buffer for each WebSocket connection (`SO_SNDBUF`, set on the
    /// listener and inherited by every accepted socket; Linux doubles it for its own
    /// bookkeeping and caps it at `net.core.wmem_max`, 208 KiB by default; 4 KiB to 1 GiB).
    /// `None`: the kernel sizes it (autotuning, up to `net.ipv4.tcp_wmem`'s
    /// maximum, 4 MiB on most systems), which holds what a client does not read outside every
    /// cap of this server. Default `None`.
    pub socket_send_buffer: Option<usize>,
    /// Bind the listeners (WebSocket and push API) with `SO_REUSEPORT`, so that several
    /// processes serve the same ports and the kernel spreads connections over them (the
    /// binary's `--workers`). Default `false`.
    pub reuse_port: bool,
    /// Most connections held at once; `None` means the open-files limit minus `FD_RESERVE`
    /// minus the push API's `max_connections` (so the API keeps its descriptors when the
    /// WebSocket side is full). Beyond it new connections get `503` and are closed. Default
    /// `None`.
    pub max_connections: Option<usize>,
    /// Largest message accepted, summed over its fragments; larger ones close the connection
    /// with 1009. Default 1 MiB; at most 1 GiB.
    pub max_message_size: usize,
    /// Origins allowed to open connections (exact match, any case), against cross-site
    /// WebSocket hijacking from browsers; others get `403`. Requests without an `Origin` header
    /// (non-browser clients) are allowed. Empty: any origin. Default empty.
    pub allowed_origins: Vec<String>,
    /// Subprotocols the server speaks, answered when the handler's `Accept` names none: the
    /// first one the client offers (in the client's order of preference) that is in this list.
    /// A client that offers none gets none; one that offers only others gets none, and its
    /// WebSocket library decides whether to go on. Each must be an HTTP token. Default empty.
    pub subprotocols: Vec<String>,
    /// Largest opening handshake request; larger ones get `431`. Default 8 KiB.
    pub max_handshake_size: usize,
    /// Time a new connection has to complete its handshake; then it gets `408`. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time an open connection has to bind a uid before it is closed with 1008; `None`
    /// disables the check. Default 30 s.
    pub login_timeout: Option<Duration>,
    /// A connection silent this long gets a ping; `None` disables pings. Default 25 s.
    pub ping_interval: Option<Duration>,
    /// A connection silent this long is closed with 1001; `None` disables. Default 60 s.
    pub idle_timeout: Option<Duration>,
    /// Per-connection cap on what queued outgoing frames hold in memory: their bytes plus
    /// `outbox::FRAME_OVERHEAD` (96 B) each. Reading from a connection pauses while its queue is
    /// over half of this. Default 1 MiB; at most 1 GiB (with a message of at most 1 GiB on
    /// top, a queue stays under the 4 GiB it can count).
    pub max_send_buffer: usize,
    /// Cap on the sum of every connection's queue, counted the same way (a frame shared by many
    /// queues is charged to each, so this overstates memory for big broadcasts). Past it, only
    /// a connection whose queue is empty takes a new message (every connection still gets one
    /// frame per flush); for the others it is dropped and counted, whatever
    /// `slow_consumer` says, since the total is not one connection's fault. Default 1 GiB.
    pub max_total_send_buffer: usize,
    /// What to do with a message that would overflow `max_send_buffer`. Default `Drop`.
    pub slow_consumer: SlowConsumerPolicy,
    /// Time a closing connection gets to finish the closing handshake and TCP close before it
    /// is dropped. Default 5 s.
    pub close_timeout: Duration,
    /// How long a uid keeps its group memberships after its last connection closes (and how
    /// long a uid added to a group while offline has to connect). Default 30 s.
    pub group_grace: Duration,
    /// Time shutdown waits for clients to acknowledge close 1001 before exiting. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Most data messages per second one client may send, as a token bucket holding up to
    /// twice that (a burst); a client over it is closed with 1008 `rate limit exceeded`, and
    /// the close is counted. `None`: no limit. Default `None`, since the reference protocol's
    /// own clients and load tools send far more; 100 is a sensible value for browser clients
    /// of a public server.
    pub client_rate: Option<u32>,
    /// Deliveries per second one client's messages may cause beyond each message's first, on
    /// average (a broadcast to n connections counts n − 1; a direct message to one connection
    /// nothing), as an allowance holding up to twice that. A message goes through
    /// while the allowance is positive and its fan-out is charged after it; while it is in
    /// debt, the client's input is not read (it waits in TCP: nothing is lost, nobody is
    /// closed), so a client flooding `all:` to 10,000 gets one broadcast every 10 s. `None`:
    /// no limit. Default 1,000.
    pub client_fanout_rate: Option<u32>,
    /// Messages (and pings) one connection may have dispatched per loop turn; what it sent
    /// beyond waits, undecoded, for its next turn, after everyone's output was flushed. Bounds
    /// the work one read can cause (a 64 KiB read can hold 6,553 `all:` frames). Default 64.
    pub max_messages_per_turn: usize,
    /// Deliveries one connection's messages may cause per loop turn (a broadcast to n
    /// connections is n; a message dropped for a full queue counts too). The message that
    /// passes it is the last one dispatched for that connection in this turn (the first always
    /// goes), so a client flooding `all:` gets one broadcast per turn and everyone else's
    /// output is flushed between two of them. Default 10,000.
    pub max_deliveries_per_turn: usize,
    /// Size of the single read buffer the reactor shares between all connections. Default 64 KiB.
    pub read_buffer_size: usize,
    /// permessage-deflate (`--compression`, default `shared`).
    pub compression: Compression,
    /// Messages shorter than this go out uncompressed even to connections that negotiated
    /// deflate (`--compression-threshold`, default 512 bytes): below it, compressing saves
    /// fewer bytes than it costs.
    pub compression_threshold: usize,
    /// Serve wss (TLS) on `listen` with this certificate and key (`--tls-cert`, `--tls-key`);
    /// `None` (default): plain ws.
    pub tls: Option<crate::TlsFiles>,
    /// TLS handshake steps (each read that advances a handshake: the first one verifies and
    /// signs) processed per loop iteration (`--max-tls-handshakes-per-turn`, default 32); the
    /// rest wait for the next iteration, so a reconnect storm cannot starve established
    /// connections.
    pub max_tls_handshakes_per_turn: usize,
    /// The HTTP push API; `None` disables it. Default `None` for the library; the binary
    /// enables it on `127.0.0.1:5678`.
    pub api: Option<ApiConfig>,
    /// The cluster this node joins through Redis; `None`: it runs alone. Default `None`.
    pub cluster: Option<ClusterConfig>,
}

/// How a node joins a cluster: where Redis is, and how its channels are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Redis servers every node of the cluster uses, the same on every node, in the same
    /// order: a uid's channel lives on one of them (rendezvous hashing of the uid), and
    /// broadcasts and survey answers on the first. At least one.
    pub redis: Vec<RedisAddr>,
    /// What every channel name starts with (`<prefix>:all`, `<prefix>:u:<uid>`), so that
    /// several clusters can share one Redis. Default `wspush`.
    pub prefix: String,
    /// How long a uid stays subscribed after its last connection here closed, so that a
    /// reconnecting user costs no UNSUBSCRIBE and SUBSCRIBE. Default 1 s.
    pub linger: Duration,
    /// When the subscription has delivered nothing for this long, the node publishes a probe
    /// on its own channel; if that does not come back within as long again, the subscription
    /// is reconnected. Default 10 s.
    pub probe_interval: Duration,
}

impl ClusterConfig {
    /// A cluster on one Redis with the default prefix, linger and probe interval.
    pub fn new(redis: RedisAddr) -> Self {
        Self {
            redis: vec![redis],
            prefix: "wspush".to_owned(),
            linger: Duration::from_secs(1),
            probe_interval: Duration::from_secs(10),
        }
    }
}

/// A Redis server, as `redis://[[user]:password@]host[:port][/db]` names it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAddr {
    /// Host name or address.
    pub host: String,
    /// Port; default 6379.
    pub port: u16,
    /// User for `AUTH`, with `password` (Redis 6 ACLs).
    pub user: Option<String>,
    /// Password for `AUTH`.
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "redis://{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl std::str::FromStr for RedisAddr {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("rediss://") {
            return Err(format!(
                "{url}: TLS to Redis (rediss://) is not supported; use redis:// on a trusted \
                 network or a local TLS tunnel"
            ));
        }
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{url}: a Redis URL starts with redis://"))?;
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (user, password) = match credentials.map(|c| c.split_once(':')) {
            None => (None, None),
            Some(None) => return Err(format!("{url}: credentials are user:password or :password")),
            Some(Some((user, password))) => (
                Some(user.to_owned()).filter(|user| !user.is_empty()),
                Some(password.to_owned()),
            ),
        };
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        if !db.is_empty() && db != "0" {
            return Err(format!(
                "{url}: a database other than 0 has no effect (pub/sub channels are shared by \
                 every database); leave it out"
            ));
        }
        let port_of = |port: &str| {
            port.parse::<u16>()
                .map_err(|_| format!("{url}: '{port}' is not a port"))
        };
        let (host, port) = match authority.strip_prefix('[') {
            // An IPv6 address: [addr] or [addr]:port.
            Some(bracketed) => match bracketed.split_once(']') {
                Some((host, "")) => (host, 6379),
                Some((host, rest)) => match rest.strip_prefix(':') {
                    Some(port) => (host, port_of(port)?),
                    None => return Err(format!("{url}: unexpected '{rest}' after the address")),
                },
                None => return Err(format!("{url}: unclosed '['")),
            },
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, port_of(port)?),
                None => (authority, 6379),
            },
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            user,
            password,
        })
    }
}

/// The HTTP push API's listener and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Address to listen on; a non-loopback address requires `key`. Default `127.0.0.1:5678`.
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <key>`, or it gets 401.
    /// Default `None`.
    pub key: Option<String>,
    /// Largest request body; larger ones get 413. Default 1 MiB.
    pub max_body: usize,
    /// Largest request line plus headers; larger ones get 431. Default 8 KiB.
    pub max_header_size: usize,
    /// An API connection idle, or stalled inside a request (then 408), this long is closed.
    /// Default 30 s.
    pub timeout: Duration,
    /// Most API connections at once; beyond it new ones wait in the kernel's backlog.
    /// Default 1024.
    pub max_connections: usize,
    /// Browser origins allowed to call the API. A request that carries an `Origin` header (or
    /// `Sec-Fetch-Site: cross-site`/`same-site`), which only browsers send, gets 403 unless its
    /// origin is listed: a web page must not be able to push to users through a loopback API.
    /// Default empty: no browser may.
    pub allowed_origins: Vec<String>,
    /// Host names a keyless API answers besides loopback names and addresses (`localhost`,
    /// `127.0.0.1`, `[::1]`) and its own address; a request naming another `Host` gets 403,
    /// which stops DNS rebinding. Not checked when `key` is set. Default empty.
    pub allowed_hosts: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5678)),
            key: None,
            max_body: 1 << 20,
            max_header_size: 8 << 10,
            timeout: Duration::from_secs(30),
            max_connections: 1024,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// File descriptors kept free below the open-files limit when `max_connections` is derived
/// from it, besides the push API's: for the listeners, the poller, the waker and signals, logs,
/// and the `503` answers past the limit.
pub const FD_RESERVE: usize = 64;

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1234)),
            backlog: 4096,
            socket_send_buffer: None,
            reuse_port: false,
            max_connections: None,
            max_message_size: 1 << 20,
            allowed_origins: Vec::new(),
            subprotocols: Vec::new(),
            max_handshake_size: 8 << 10,
            handshake_timeout: Duration::from_secs(10),
            login_timeout: Some(Duration::from_secs(30)),
            ping_interval: Some(Duration::from_secs(25)),
            idle_timeout: Some(Duration::from_secs(60)),
            max_send_buffer: 1 << 20,
            max_total_send_buffer: 1 << 30,
            slow_consumer: SlowConsumerPolicy::Drop,
            close_timeout: Duration::from_secs(5),
            group_grace: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            client_rate: None,
            client_fanout_rate: Some(1_000),
            max_messages_per_turn: 64,
            max_deliveries_per_turn: 10_000,
            read_buffer_size: 64 << 10,
            compression: Compression::Shared,
            compression_threshold: 512,
            tls: None,
            max_tls_handshakes_per_turn: 32,
            api: None,
            cluster: None,
        }
    }
}

/// A configuration that cannot work, refused by `Server::bind` before anything starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// How the open-files limit `files` is split: WebSocket connections, push API
    /// connections, and the fixed reserve.
    pub fn descriptor_budget(&self, files: usize) -> DescriptorBudget {
        let api = self.api.as_ref().map_or(0, |api| api.max_connections);
        DescriptorBudget {
            files,
            websocket: self
                .max_connections
                .unwrap_or_else(|| files.saturating_sub(FD_RESERVE + api).max(1)),
            api,
            reserve: FD_RESERVE,
        }
    }

    /// Defaults with every connection timer off, so that a unit test turns on only the one it
    /// is about.
    #[cfg(test)]
    pub(crate) fn timers_off() -> Self {
        Self {
            login_timeout: None,
            ping_interval: None,
            idle_timeout: None,
            ..Self::default()
        }
    }

    /// Checks that the options make sense together; the first problem found is the error,
    /// naming the option (by its command-line flag) and what would work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.clone().checked().map(drop)
    }

    /// The configuration as the server runs it: validated, with the allowed origins in the
    /// form browsers send (see [`crate::normalize_origin`]).
    pub fn checked(mut self) -> Result<Self, ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        let positive = |value: Duration, flag: &str, off: bool| {
            if value.is_zero() {
                let hint = if off {
                    " (use `off` to disable it)"
                } else {
                    ""
                };
                Err(ConfigError(format!("{flag} must be longer than 0{hint}")))
            } else {
                Ok(())
            }
        };
        if !(1..=MAX_MESSAGE_SIZE).contains(&self.max_message_size) {
            return fail(
                "--max-message-size must be between 1 byte and 1 GiB (a message is held whole \
                 in memory)"
                    .into(),
            );
        }
        if self.max_connections == Some(0) {
            return fail("--max-connections must be at least 1 (leave it unset to derive it from the open-files limit)".into());
        }
        if self.backlog == 0 {
            return fail("--backlog must be at least 1".into());
        }
        if self
            .socket_send_buffer
            .is_some_and(|size| !(MIN_SOCKET_BUFFER..=MAX_SOCKET_BUFFER).contains(&size))
        {
            return fail(format!(
                "--socket-send-buffer must be between {MIN_SOCKET_BUFFER} bytes and 1 GiB (or \
                 kernel)"
            ));
        }
        if self.max_handshake_size < MIN_HANDSHAKE_SIZE {
            return fail(format!(
                "--max-handshake-size must be at least {MIN_HANDSHAKE_SIZE} bytes: browsers send \
                 400-700 byte upgrade requests"
            ));
        }
        if self.max_send_buffer < MIN_SEND_BUFFER {
            return fail(format!(
                "--max-send-buffer must be at least {MIN_SEND_BUFFER} bytes, or even the login \
                 answer may not fit"
            ));
        }
        if self.max_send_buffer > MAX_SEND_BUFFER {
            return fail("--max-send-buffer must be at most 1 GiB".into());
        }
        if self.client_rate == Some(0) {
            return fail("--client-rate must be at least 1 message per second (or off)".into());
        }
        if self.client_fanout_rate == Some(0) {
            return fail(
                "--client-fanout-rate must be at least 1 delivery per second (or off)".into(),
            );
        }
        if self.max_messages_per_turn == 0 {
            return fail("--max-messages-per-turn must be at least 1".into());
        }
        if self.max_deliveries_per_turn == 0 {
            return fail("--max-deliveries-per-turn must be at least 1".into());
        }
        if let Some(cluster) = &self.cluster {
            if cluster.redis.is_empty() {
                return fail("a cluster needs at least one --redis".into());
            }
            if cluster.probe_interval.is_zero() {
                return fail("--cluster-probe-interval must be longer than 0".into());
            }
            let prefix = &cluster.prefix;
            if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return fail(format!(
                    "--cluster-prefix {prefix:?} must be a non-empty name without spaces or \
                     control characters"
                ));
            }
        }
        if self.max_total_send_buffer < self.max_send_buffer {
            return fail(
                "--max-total-send-buffer must be at least --max-send-buffer (one connection's \
                 queue)"
                    .into(),
            );
        }
        if self.read_buffer_size < MIN_READ_BUFFER {
            return fail(format!(
                "--read-buffer-size must be at least {MIN_READ_BUFFER} bytes"
            ));
        }
        if self.tls.is_some() && self.read_buffer_size < MIN_TLS_READ_BUFFER {
            return fail(format!(
                "--read-buffer-size must be at least {MIN_TLS_READ_BUFFER} bytes with TLS (two \
                 full TLS records)"
            ));
        }
        if self.max_tls_handshakes_per_turn == 0 {
            return fail("--max-tls-handshakes-per-turn must be at least 1".into());
        }
        positive(self.handshake_timeout, "--handshake-timeout", false)?;
        positive(self.close_timeout, "--close-timeout", false)?;
        for (value, flag) in [
            (self.login_timeout, "--login-timeout"),
            (self.ping_interval, "--ping-interval"),
            (self.idle_timeout, "--idle-timeout"),
        ] {
            if let Some(value) = value {
                positive(value, flag, true)?;
            }
        }
        if let (Some(ping), Some(idle)) = (self.ping_interval, self.idle_timeout) {
            if ping >= idle {
                return fail(format!(
                    "--ping-interval ({}) must be shorter than --idle-timeout ({}): a silent \
                     client would be closed before it is ever pinged",
                    humane(ping),
                    humane(idle)
                ));
            }
        }
        if let Some(bad) = self
            .subprotocols
            .iter()
            .find(|name| !crate::protocol::http::is_token(name))
        {
            return fail(format!(
                "--subprotocols: {bad:?} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)"
            ));
        }
        self.allowed_origins = self
            .allowed_origins
            .iter()
            .map(|origin| normalize_origin(origin))
            .collect::<Result<_, _>>()?;
        if let Some(api) = &mut self.api {
            api.check()?;
            api.allowed_origins = api
                .allowed_origins
                .iter()
                .map(|origin| {
                    normalize_origin(origin).map_err(|e| {
                        ConfigError(e.0.replace("--allowed-origins", "--api-allowed-origins"))
                    })
                })
                .collect::<Result<_, _>>()?;
            api.allowed_hosts = api
                .allowed_hosts
                .iter()
                .map(|host| host.trim().to_ascii_lowercase())
                .collect();
        }
        Ok(self)
    }
}

impl ApiConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        match self.key.as_deref() {
            Some("") => {
                return fail(
                    "--api-key is empty: set a real key, or leave it unset (then the API \
                     listens on loopback only)"
                        .into(),
                )
            }
            None if !self.listen.ip().is_loopback() => {
                return fail(format!(
                    "refusing to serve the push API on non-loopback {} without an API key \
                     (--api-key)",
                    self.listen
                ))
            }
            _ => {}
        }
        if self.max_connections == 0 {
            return fail("--api-max-connections must be at least 1 (or --api-listen off)".into());
        }
        if self.max_header_size < MIN_HANDSHAKE_SIZE {
            return fail(format!(
                "--api-max-header-size must be at least {MIN_HANDSHAKE_SIZE} bytes"
            ));
        }
        if self.timeout.is_zero() {
            return fail("--api-timeout must be longer than 0".into());
        }
        Ok(())
    }
}

/// Smallest `max_handshake_size` (and API head size) accepted.
const MIN_HANDSHAKE_SIZE: usize = 512;
/// Smallest `max_send_buffer` accepted.
const MIN_SEND_BUFFER: usize = 4096;
/// Largest `max_send_buffer` accepted.
const MAX_SEND_BUFFER: usize = 1 << 30;
/// Smallest `socket_send_buffer` accepted: a few segments.
const MIN_SOCKET_BUFFER: usize = 4096;
/// Largest `socket_send_buffer` accepted (the kernel takes an `int`, and doubles it).
const MAX_SOCKET_BUFFER: usize = 1 << 30;
/// The largest `--max-message-size`: far below what the decoder can count
/// ([`crate::protocol::MAX_MESSAGE_LIMIT`]), even compressed.
const MAX_MESSAGE_SIZE: usize = 1 << 30;
/// Smallest `read_buffer_size` accepted.
const MIN_READ_BUFFER: usize = 4096;

/// Smallest `read_buffer_size` accepted with TLS: a record is up to 16 KiB and a bit, and the
/// start of the next one may be held over in front of a read.
const MIN_TLS_READ_BUFFER: usize = 40 << 10;

fn humane(duration: Duration) -> String {
    format!("{duration:?}")
}

/// An allowed origin in the form a browser sends it: `scheme://host[:port]`, lowercase, without
/// a trailing slash, and without the scheme's default port (`:443` for https, `:80` for http).
/// Anything with a path, query, user or other shape is refused, since it could never match.
pub fn normalize_origin(origin: &str) -> Result<String, ConfigError> {
    let refuse = |why: &str| {
        Err(ConfigError(format!(
            "--allowed-origins: {origin:?} {why}; write origins as a browser sends them, \
             e.g. https://app.example or http://localhost:8080"
        )))
    };
    let lower = origin.trim().to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return refuse("has no scheme");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return refuse("is not scheme://host[:port]");
    }
    let default_port = match scheme {
        "https" | "wss" => ":443",
        "http" | "ws" => ":80",
        _ => "",
    };
    let authority = match authority.strip_suffix(default_port) {
        Some(host) if !default_port.is_empty() && !host.is_empty() => host,
        _ => authority,
    };
    Ok(format!("{scheme}://{authority}"))
}

/// How the process's descriptors are shared out, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// The open-files limit.
    pub files: usize,
    /// WebSocket connections held at most (`Config::max_connections`, or derived).
    pub websocket: usize,
    /// Push API connections at most.
    pub api: usize,
    /// Kept for everything else.
    pub reserve: usize,
}

impl DescriptorBudget {
    /// Whether the limits fit in the open-files limit; if not, accepting pauses at descriptor
    /// exhaustion instead of at the configured limit.
    pub fn fits(&self) -> bool {
        self.websocket + self.api + self.reserve <= self.files
    }
}

impl std::fmt::Display for DescriptorBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "open-files limit {}: up to {} WebSocket connections, {} push API connections, {} \
             kept in reserve",
            self.files, self.websocket, self.api, self.reserve
        )
    }
}

/// Parses a byte size as every size option takes it: a number of bytes, optionally followed
/// by `B`, `KiB`, `MiB` or `GiB` (`K`, `KB` and so on mean the same powers of 1024), such as
/// `1048576`, `64KiB` or `1MiB`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 65536, 64KiB or 1MiB"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use B, KiB, MiB or GiB)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_are_read_with_their_credentials_and_refused_when_they_cannot_work() {
        let addr: RedisAddr = "redis://:secret@db.example:6380".parse().unwrap();
        assert_eq!(
            (
                addr.host.as_str(),
                addr.port,
                addr.user,
                addr.password.as_deref()
            ),
            ("db.example", 6380, None, Some("secret"))
        );
        let addr: RedisAddr = "redis://app:pw@[::1]/0".parse().unwrap();
        assert_eq!((addr.host.as_str(), addr.port), ("::1", 6379));
        assert_eq!(addr.user.as_deref(), Some("app"));
        assert!(
            !format!("{addr} {addr:?}").contains("pw"),
            "never the password"
        );
        for bad in [
            "rediss://h",
            "http://h",
            "redis://",
            "redis://h:x",
            "redis://h/2",
        ] {
            assert!(bad.parse::<RedisAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn origins_are_normalised_to_what_browsers_send() {
        let normal = |o: &str| normalize_origin(o).unwrap();
        assert_eq!(normal(" https://App.Example/ "), "https://app.example");
        assert_eq!(normal("https://app.example:443"), "https://app.example");
        assert_eq!(normal("http://localhost:80"), "http://localhost");
        assert_eq!(normal("http://localhost:8080"), "http://localhost:8080");
        assert!(normalize_origin("app.example").is_err());
        assert!(normalize_origin("https://app.example/path").is_err());
        assert!(normalize_origin("https://").is_err());
        let config = Config {
            allowed_origins: vec!["https://a.example".into(), " https://b.example".into()],
            ..Config::default()
        };
        assert_eq!(
            config.checked().unwrap().allowed_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn nonsensical_configurations_are_refused_naming_the_option() {
        let refused = |config: Config| config.validate().unwrap_err().to_string();
        let base = Config::default;
        assert!(refused(Config {
            max_message_size: 0,
            ..base()
        })
        .contains("--max-message-size"));
        assert!(refused(Config {
            max_message_size: (1 << 30) + 1,
            ..base()
        })
        .contains("--max-message-size must be between 1 byte and 1 GiB"));
        assert!(Config {
            max_message_size: 1 << 30,
            ..base()
        }
        .validate()
        .is_ok());
        assert!(refused(Config {
            max_send_buffer: (1 << 30) + 1,
            max_total_send_buffer: 2 << 30,
            ..base()
        })
        .contains("--max-send-buffer must be at most 1 GiB"));
        assert!(refused(Config {
            max_connections: Some(0),
            ..base()
        })
        .contains("--max-connections"));
        let no_ping = Config {
            ping_interval: Some(Duration::ZERO),
            ..base()
        };
        assert!(refused(no_ping).contains("use `off`"));
        let late_ping = Config {
            ping_interval: Some(Duration::from_secs(60)),
            idle_timeout: Some(Duration::from_secs(60)),
            ..base()
        };
        assert!(refused(late_ping).contains("shorter than --idle-timeout"));
        assert!(refused(Config {
            max_send_buffer: 100,
            ..base()
        })
        .contains("--max-send-buffer"));
        assert!(refused(Config {
            read_buffer_size: 1,
            ..base()
        })
        .contains("--read-buffer-size"));
        let empty_key = Config {
            api: Some(ApiConfig {
                key: Some(String::new()),
                ..ApiConfig::default()
            }),
            ..base()
        };
        assert!(refused(empty_key).contains("--api-key is empty"));
        assert!(Config::default().validate().is_ok());
        assert!(Config {
            api: Some(ApiConfig::default()),
            ..base()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn derived_connection_limit_leaves_the_api_its_descriptors() {
        let config = Config {
            api: Some(ApiConfig::default()),
            ..Config::default()
        };
        let budget = config.descriptor_budget(20_000);
        assert_eq!(budget.websocket, 20_000 - 64 - 1024);
        assert!(budget.fits());
        let explicit = Config {
            max_connections: Some(19_990),
            ..config
        };
        assert!(!explicit.descriptor_budget(20_000).fits());
    }
}
