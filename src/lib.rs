//! wspush: a WebSocket push server and library.
//!
//! One `mio` reactor on one thread owns every connection, performs the RFC 6455 handshake and
//! framing itself, and keeps a uid → connections map so applications can push to a user, a
//! group, everyone, or one connection. Applications implement [`Handler`] (Workerman-style
//! `on_open` / `on_message` / `on_close` callbacks) and act through the [`Context`] each
//! callback receives. [`PushProtocol`] is the reference protocol; [`Echo`] echoes.
//!
//! Layers, each depending only on those before it:
//! - [`protocol`]: sans-IO RFC 6455 and HTTP pieces, usable on their own;
//! - `hub`: connection state, queues, the uid [`registry`], groups, stats and timers, with no
//!   sockets and no clock;
//! - the callback API: [`Handler`], [`Context`];
//! - `net`: listeners, the accept policy and the transport bytes cross;
//! - endpoints: `ws` (WebSocket clients) and [`api`] (the HTTP push API), one phase contract;
//! - the reactor: [`Server`], the poll loop that drives the endpoints, and `memory`, which it
//!   asks to give freed memory back to the OS once a burst is over.
// One call is allowed an `unsafe` block, where a measurement justifies it: `memory`'s
// `malloc_trim` (see its `//!`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod auth;
mod cluster;
mod config;
mod context;
mod echo;
mod endpoint;
mod handler;
mod hub;
mod memory;
mod net;
pub mod protocol;
mod push;
mod reactor;
mod tls;
mod uid;
mod ws;

pub use config::{
    normalize_origin, parse_size, ApiConfig, ClusterConfig, Compression, Config, ConfigError,
    DescriptorBudget, RedisAddr, SlowConsumerPolicy, FD_RESERVE,
};
pub use context::Context;
pub use echo::Echo;
pub use handler::{Accept, Handler, Rejection, Request};
pub use hub::ids::{CloseInfo, ConnId, Initiator, SendStatus};
pub use hub::outbox::{self, Flushed, Outbox};
pub use hub::registry;
pub use hub::stats::{ClusterStats, Gauges, Stats, TlsStats};
pub use hub::Delivery;
pub use protocol::{CloseCode, Message};
pub use push::{refusal_code, ClientRouting, PushProtocol, DEFAULT_AUTH_MAX_TTL};
pub use reactor::{BindError, Server, ServerHandle};
pub use tls::{TlsError, TlsFiles};
pub use uid::{validate_uid, InvalidUid, BROADCAST_RECIPIENT, MAX_UID_LEN};

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
