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
    /// Close that connection with 1008; other connections are unaffected.
    Close,
}

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `0.0.0.0:1234`.
    pub listen: SocketAddr,
    /// Length of the kernel's queue of connections not yet accepted (capped by
    /// `net.core.somaxconn`). Default 4096.
    pub backlog: u32,
    /// Most connections held at once; `None` means the open-files limit minus `FD_RESERVE`
    /// minus the push API's `max_connections` (so the API keeps its descriptors when the
    /// WebSocket side is full). Beyond it new connections get `503` and are closed. Default
    /// `None`.
    pub max_connections: Option<usize>,
    /// Largest message accepted, summed over its fragments; larger ones close the connection
    /// with 1009. Default 1 MiB.
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
    /// Per-connection cap on queued outgoing bytes. Default 1 MiB.
    pub max_send_buffer: usize,
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
    /// Size of the single read buffer the reactor shares between all connections. Default 64 KiB.
    pub read_buffer_size: usize,
    /// The HTTP push API; `None` disables it. Default `None` for the library; the binary
    /// enables it on `127.0.0.1:5678`.
    pub api: Option<ApiConfig>,
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
            slow_consumer: SlowConsumerPolicy::Drop,
            close_timeout: Duration::from_secs(5),
            group_grace: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            read_buffer_size: 64 << 10,
            api: None,
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

    /// Checks that the options make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(bad) = self
            .subprotocols
            .iter()
            .find(|name| !crate::protocol::http::is_token(name))
        {
            return Err(ConfigError(format!(
                "subprotocol {bad:?} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)"
            )));
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
