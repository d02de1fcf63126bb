//! Command-line options of the `wspush` binary. Every option can also come from a `WSPUSH_*`
//! environment variable; defaults are those of `Config::default()`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use wspush::{ApiConfig, ClusterConfig, Config, RedisAddr, SlowConsumerPolicy};

/// wspush: a WebSocket push server.
///
/// Clients connect over WebSocket and send their uid as their first text message; every later
/// message is RECIPIENT:MESSAGE (recipient `all` broadcasts). Sizes accept B, KiB, MiB, GiB
/// suffixes; durations accept ms, s, m, h suffixes, or `off` where a feature can be disabled.
#[derive(Debug, Parser)]
#[command(name = "wspush", version, about, long_about)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "WSPUSH_LISTEN", default_value = "0.0.0.0:1234")]
    pub listen: SocketAddr,

    /// What the server does with messages: the reference push protocol, or echo them back.
    #[arg(long, env = "WSPUSH_MODE", value_enum, default_value_t = Mode::Push)]
    pub mode: Mode,

    /// Length of the queue of connections not yet accepted (capped by net.core.somaxconn).
    #[arg(long, env = "WSPUSH_BACKLOG", default_value_t = 4096)]
    pub backlog: u32,

    /// The kernel's send buffer per WebSocket connection (SO_SNDBUF; Linux doubles it).
    /// `kernel`: autotuned up to net.ipv4.tcp_wmem's maximum, outside every cap of this
    /// server; set it to bound what clients that do not read hold in the kernel.
    #[arg(long, env = "WSPUSH_SOCKET_SEND_BUFFER", default_value = "kernel", value_parser = parse_kernel_size)]
    pub socket_send_buffer: KernelSize,

    /// Most connections held at once [default: the open-files limit minus 64 minus
    /// --api-max-connections].
    #[arg(long, env = "WSPUSH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Largest message accepted, summed over its fragments (larger: close 1009); at most 1GiB.
    #[arg(long, env = "WSPUSH_MAX_MESSAGE_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// Origins allowed to connect, comma-separated (others: HTTP 403); requests without an
    /// Origin header are allowed [default: any origin].
    #[arg(long, env = "WSPUSH_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// What clients may send to others (push mode): `all` (uid:message and all:message),
    /// `uids` (no all:), or `none` (clients only receive; backends use the push API)
    /// [default: all, or none with --auth-secret].
    #[arg(long, env = "WSPUSH_CLIENT_ROUTING", value_enum)]
    pub client_routing: Option<Routing>,

    /// With --auth-secret: how a bad login URL is refused: `http` (403 and the reason) or
    /// `close` (the handshake completes, then close 4000 malformed / 4001 expired / 4003 bad
    /// signature with the reason, which a browser's WebSocket can read).
    #[arg(long, env = "WSPUSH_LOGIN_REFUSAL", value_enum, default_value_t = LoginRefusal::Http)]
    pub login_refusal: LoginRefusal,

    /// With --auth-secret: refuse login URLs that expire further ahead than this (a URL is a
    /// bearer credential, and one minted with milliseconds would last ~50,000 years).
    #[arg(long, env = "WSPUSH_AUTH_MAX_TTL", default_value = "1h", value_parser = parse_duration)]
    pub auth_max_ttl: Duration,

    /// Subprotocols the server answers, comma-separated: the first one the client offers
    /// (client's order of preference) that is listed here [default: none].
    #[arg(long, env = "WSPUSH_SUBPROTOCOLS", value_delimiter = ',')]
    pub subprotocols: Vec<String>,

    /// Require signed logins: clients connect with ?uid=&expires=&sig=<hex HMAC-SHA256(secret,
    /// "uid:expires")> (push mode). Prefer the environment variable: flags show in `ps`.
    #[arg(long, env = "WSPUSH_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// Largest opening handshake request (larger: HTTP 431).
    #[arg(long, env = "WSPUSH_MAX_HANDSHAKE_SIZE", default_value = "8KiB", value_parser = parse_size)]
    pub max_handshake_size: usize,

    /// Time a new connection has to complete its handshake (then: HTTP 408).
    #[arg(long, env = "WSPUSH_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// Time a client has to send its uid before it is closed with 1008 (push mode only).
    #[arg(long, env = "WSPUSH_LOGIN_TIMEOUT", default_value = "30s", value_parser = parse_optional_duration)]
    pub login_timeout: Switch,

    /// A silent connection gets a ping this often.
    #[arg(long, env = "WSPUSH_PING_INTERVAL", default_value = "25s", value_parser = parse_optional_duration)]
    pub ping_interval: Switch,

    /// A connection silent this long is closed with 1001.
    #[arg(long, env = "WSPUSH_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_optional_duration)]
    pub idle_timeout: Switch,

    /// Per-connection cap on queued outgoing bytes (at most 1GiB).
    #[arg(long, env = "WSPUSH_MAX_SEND_BUFFER", default_value = "1MiB", value_parser = parse_size)]
    pub max_send_buffer: usize,

    /// Cap on all connections' send queues together, counted as --max-send-buffer counts one;
    /// past it, only an empty queue takes a new message (the others drop it, counted).
    #[arg(long, env = "WSPUSH_MAX_TOTAL_SEND_BUFFER", default_value = "1GiB", value_parser = parse_size)]
    pub max_total_send_buffer: usize,

    /// What happens to a message for a connection whose send queue is full.
    #[arg(long, env = "WSPUSH_SLOW_CONSUMER", value_enum, default_value_t = SlowConsumer::Drop)]
    pub slow_consumer: SlowConsumer,

    /// Time a closing connection gets to finish the closing handshake.
    #[arg(long, env = "WSPUSH_CLOSE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub close_timeout: Duration,

    /// How long a uid keeps its groups after its last connection closes.
    #[arg(long, env = "WSPUSH_GROUP_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub group_grace: Duration,

    /// Time a shutdown (SIGINT/SIGTERM) waits for clients to acknowledge close 1001.
    #[arg(long, env = "WSPUSH_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Address of the HTTP push API, or `off`. A non-loopback address requires --api-key.
    #[arg(long, env = "WSPUSH_API_LISTEN", default_value = "127.0.0.1:5678", value_parser = parse_api_listen)]
    pub api_listen: ApiListen,

    /// Key the push API requires as `Authorization: Bearer <key>` [default: none, loopback only].
    /// Prefer the environment variable: flags show in `ps`.
    #[arg(long, env = "WSPUSH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Largest push API request body (larger: HTTP 413).
    #[arg(long, env = "WSPUSH_API_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    pub api_max_body: usize,

    /// Largest push API request head (larger: HTTP 431).
    #[arg(long, env = "WSPUSH_API_MAX_HEADER_SIZE", default_value = "8KiB", value_parser = parse_size)]
    pub api_max_header_size: usize,

    /// A push API connection idle, or stalled inside a request (then HTTP 408), this long is
    /// closed.
    #[arg(long, env = "WSPUSH_API_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub api_timeout: Duration,

    /// Most push API connections at once.
    #[arg(long, env = "WSPUSH_API_MAX_CONNECTIONS", default_value_t = 1024)]
    pub api_max_connections: usize,

    /// Browser origins allowed to call the push API, comma-separated (requests from other web
    /// pages: HTTP 403) [default: none].
    #[arg(long, env = "WSPUSH_API_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub api_allowed_origins: Vec<String>,

    /// Host names a keyless push API answers besides loopback names and its own address,
    /// comma-separated (others: HTTP 403, against DNS rebinding) [default: none].
    #[arg(long, env = "WSPUSH_API_ALLOWED_HOSTS", value_delimiter = ',')]
    pub api_allowed_hosts: Vec<String>,

    /// Most messages per second one client may send (bursts of twice that); faster clients are
    /// closed with 1008. `off` for no limit; 100 suits browser clients of a public server.
    #[arg(long, env = "WSPUSH_CLIENT_RATE", default_value = "off", value_parser = parse_rate)]
    pub client_rate: Rate,

    /// Deliveries per second one client's messages may cause beyond each one's first (a
    /// broadcast to n counts n − 1; bursts of twice that); past it the client's input waits in TCP until the allowance is back
    /// (nothing lost, nobody closed). `off` for no limit.
    #[arg(long, env = "WSPUSH_CLIENT_FANOUT_RATE", default_value = "1000", value_parser = parse_rate)]
    pub client_fanout_rate: Rate,

    /// Messages one connection may have dispatched per loop turn; the rest waits for its next
    /// turn (bounds the work one read can cause).
    #[arg(long, env = "WSPUSH_MAX_MESSAGES_PER_TURN", default_value_t = 64)]
    pub max_messages_per_turn: usize,

    /// Deliveries one connection's messages may cause per loop turn (a broadcast to n is n);
    /// the message that passes it is its last in this turn (bounds the fan-out one client
    /// causes before everyone's output is flushed).
    #[arg(long, env = "WSPUSH_MAX_DELIVERIES_PER_TURN", default_value_t = 10_000)]
    pub max_deliveries_per_turn: usize,

    /// Worker processes on this machine, sharing the ports (SO_REUSEPORT) and joined through
    /// --redis; a supervisor restarts a worker that dies and stops them all on SIGTERM.
    #[arg(long, env = "WSPUSH_WORKERS", default_value_t = 1)]
    pub workers: usize,

    /// Join a cluster through this Redis: redis://[[user]:password@]host[:port]. Every node of
    /// the cluster names the same one; a message for a uid reaches the nodes that hold it.
    /// Several spread the uids' channels over several Redis servers (every node must name
    /// the same ones, in the same order; the first also carries broadcasts).
    #[arg(long, env = "WSPUSH_REDIS", value_parser = parse_redis, value_delimiter = ',')]
    pub redis: Vec<RedisAddr>,

    /// What the cluster's channel names start with (several clusters can share one Redis).
    #[arg(long, env = "WSPUSH_CLUSTER_PREFIX", default_value = "wspush")]
    pub cluster_prefix: String,

    /// How long a uid stays subscribed after its last connection on this node closed.
    #[arg(long, env = "WSPUSH_CLUSTER_LINGER", default_value = "1s", value_parser = parse_duration)]
    pub cluster_linger: Duration,

    /// A subscription silent this long is probed (a message to this node's own channel); one
    /// whose probe does not come back within as long again is reconnected.
    #[arg(long, env = "WSPUSH_CLUSTER_PROBE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub cluster_probe_interval: Duration,

    /// permessage-deflate: `shared` accepts a client's offer (without context takeover, so one
    /// compressor per reactor serves everyone and a broadcast is compressed once), `off`
    /// declines it.
    #[arg(long, env = "WSPUSH_COMPRESSION", value_enum, default_value_t = CompressionMode::Shared)]
    pub compression: CompressionMode,

    /// Messages shorter than this go out uncompressed even where deflate was negotiated.
    #[arg(long, env = "WSPUSH_COMPRESSION_THRESHOLD", default_value = "512B", value_parser = parse_size)]
    pub compression_threshold: usize,

    /// Serve wss (TLS) on --listen with this certificate chain (PEM: the server's certificate
    /// first, then its intermediates). Reloaded, with --tls-key, on SIGHUP or POST /tls/reload.
    #[arg(long, env = "WSPUSH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, SEC1 or PKCS#1); checked to match it.
    #[arg(long, env = "WSPUSH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// TLS handshake steps processed per loop iteration (the first step of a handshake costs a
    /// signature); the rest wait for the next iteration, so a reconnect storm cannot starve
    /// established connections.
    #[arg(long, env = "WSPUSH_MAX_TLS_HANDSHAKES_PER_TURN", default_value_t = 32)]
    pub max_tls_handshakes_per_turn: usize,

    /// Size of the one read buffer shared by all connections.
    #[arg(long, env = "WSPUSH_READ_BUFFER_SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub read_buffer_size: usize,
}

/// Whether messages are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionMode {
    /// Decline permessage-deflate.
    Off,
    /// Accept it, with one shared compressor and decompressor.
    Shared,
}

/// What the server does with messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The reference protocol: first message is the uid, then RECIPIENT:MESSAGE.
    Push,
    /// Echo every message back unchanged (for conformance suites and load tools).
    Echo,
}

/// How a bad signed login is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoginRefusal {
    /// HTTP 403 with the reason.
    Http,
    /// Complete the handshake, then close with a 4xxx code and the reason.
    Close,
}

/// What clients may send to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Routing {
    /// To any uid, and to all.
    All,
    /// To any uid, not to all.
    Uids,
    /// Nothing: clients only receive.
    None,
}

impl Routing {
    /// The library's policy.
    pub fn policy(self) -> wspush::ClientRouting {
        match self {
            Self::All => wspush::ClientRouting::All,
            Self::Uids => wspush::ClientRouting::Uids,
            Self::None => wspush::ClientRouting::None,
        }
    }
}

/// What happens to a message for a connection whose send queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlowConsumer {
    /// Drop the message for that connection and count it.
    Drop,
    /// Close that connection with 1008.
    Close,
}

impl Cli {
    /// The server configuration these options describe.
    pub fn config(&self) -> Config {
        Config {
            listen: self.listen,
            backlog: self.backlog,
            socket_send_buffer: self.socket_send_buffer.0,
            reuse_port: false,
            max_connections: self.max_connections,
            max_message_size: self.max_message_size,
            allowed_origins: self.allowed_origins.clone(),
            subprotocols: self.subprotocols.clone(),
            max_handshake_size: self.max_handshake_size,
            handshake_timeout: self.handshake_timeout,
            login_timeout: match self.mode {
                Mode::Push => self.login_timeout.0,
                Mode::Echo => None,
            },
            ping_interval: self.ping_interval.0,
            idle_timeout: self.idle_timeout.0,
            max_send_buffer: self.max_send_buffer,
            max_total_send_buffer: self.max_total_send_buffer,
            slow_consumer: match self.slow_consumer {
                SlowConsumer::Drop => SlowConsumerPolicy::Drop,
                SlowConsumer::Close => SlowConsumerPolicy::Close,
            },
            close_timeout: self.close_timeout,
            group_grace: self.group_grace,
            shutdown_timeout: self.shutdown_timeout,
            client_rate: self.client_rate.0,
            client_fanout_rate: self.client_fanout_rate.0,
            max_messages_per_turn: self.max_messages_per_turn,
            max_deliveries_per_turn: self.max_deliveries_per_turn,
            read_buffer_size: self.read_buffer_size,
            compression: match self.compression {
                CompressionMode::Off => wspush::Compression::Off,
                CompressionMode::Shared => wspush::Compression::Shared,
            },
            compression_threshold: self.compression_threshold,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(wspush::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            max_tls_handshakes_per_turn: self.max_tls_handshakes_per_turn,
            api: self.api_listen.0.map(|listen| ApiConfig {
                listen,
                key: self.api_key.clone(),
                max_body: self.api_max_body,
                max_header_size: self.api_max_header_size,
                timeout: self.api_timeout,
                max_connections: self.api_max_connections,
                allowed_origins: self.api_allowed_origins.clone(),
                allowed_hosts: self.api_allowed_hosts.clone(),
            }),
            cluster: (!self.redis.is_empty()).then(|| ClusterConfig {
                redis: self.redis.clone(),
                prefix: self.cluster_prefix.clone(),
                linger: self.cluster_linger,
                probe_interval: self.cluster_probe_interval,
            }),
        }
    }
}

fn parse_redis(text: &str) -> Result<RedisAddr, String> {
    text.parse()
}

/// The push API's address, or none when it is switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiListen(pub Option<SocketAddr>);

fn parse_api_listen(text: &str) -> Result<ApiListen, String> {
    match text.trim() {
        "off" => Ok(ApiListen(None)),
        addr => addr
            .parse()
            .map(|addr| ApiListen(Some(addr)))
            .map_err(|e| format!("'{text}': {e} (an address like 127.0.0.1:5678, or off)")),
    }
}

/// Parses a byte size such as `1048576`, `64KiB` or `1MiB` (see `wspush::parse_size`).
fn parse_size(text: &str) -> Result<usize, String> {
    wspush::parse_size(text)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("'{text}': {e} (e.g. 500ms, 10s)"))
}

/// A duration that can be switched off, for timers that are optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch(pub Option<Duration>);

/// A buffer size, or `kernel` to let the kernel size it.
#[derive(Debug, Clone, Copy)]
pub struct KernelSize(pub Option<usize>);

/// Parses a size such as `64KiB`, or `kernel`.
fn parse_kernel_size(text: &str) -> Result<KernelSize, String> {
    match text.trim() {
        "kernel" => Ok(KernelSize(None)),
        size => parse_size(size).map(|size| KernelSize(Some(size))),
    }
}

/// A message rate per second, or none.
#[derive(Debug, Clone, Copy)]
pub struct Rate(pub Option<u32>);

/// Parses a rate such as `100`, or `off`.
fn parse_rate(text: &str) -> Result<Rate, String> {
    match text.trim() {
        "off" => Ok(Rate(None)),
        number => number
            .parse()
            .map(|rate| Rate(Some(rate)))
            .map_err(|_| format!("'{text}' is not a rate: a number per second, or off")),
    }
}

/// Parses a duration, where `off` or `0` disables the feature.
fn parse_optional_duration(text: &str) -> Result<Switch, String> {
    match text.trim() {
        "off" | "0" => Ok(Switch(None)),
        other => parse_duration(other).map(|d| Switch(Some(d))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_library_defaults() {
        let config = Cli::try_parse_from(["wspush"]).unwrap().config();
        // The binary enables the push API, with the library's API defaults.
        assert_eq!(config.api, Some(ApiConfig::default()));
        let from_cli = format!(
            "{:?}",
            Config {
                api: None,
                ..config
            }
        );
        let library = format!("{:?}", Config::default());
        assert_eq!(from_cli, library);
    }

    #[test]
    fn api_can_be_switched_off() {
        let cli = Cli::try_parse_from(["wspush", "--api-listen", "off"]).unwrap();
        assert_eq!(cli.config().api, None);
    }

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1XB").is_err());
        assert_eq!(parse_optional_duration("off"), Ok(Switch(None)));
        assert_eq!(
            parse_optional_duration("250ms"),
            Ok(Switch(Some(Duration::from_millis(250))))
        );
    }

    #[test]
    fn echo_mode_disables_the_login_timeout() {
        let cli = Cli::try_parse_from(["wspush", "--mode", "echo"]).unwrap();
        assert_eq!(cli.config().login_timeout, None);
    }
}
