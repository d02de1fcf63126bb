//! wspush: a WebSocket push server and library.
//!
//! One `mio` reactor on one thread owns every connection, performs the RFC 6455 handshake and
//! framing itself, and keeps a uid → connections map so applications can push to a user, to
//! everyone, or to one connection. Applications implement [`Handler`] (Workerman-style
//! `on_open` / `on_message` / `on_close` callbacks) and act through the [`Context`] each
//! callback receives. [`PushProtocol`] is the reference protocol; [`Echo`] echoes.
//!
//! The sans-IO protocol core lives in [`protocol`] and can be used on its own.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod auth;
mod config;
mod context;
mod echo;
mod handler;
pub mod outbox;
pub mod protocol;
mod push;
pub mod registry;
mod server;
mod stats;
mod uid;

pub use config::{ApiConfig, Config, SlowConsumerPolicy, FD_RESERVE};
pub use context::{ConnId, Context, SendStatus};
pub use echo::Echo;
pub use handler::{CloseInfo, Handler, Initiator, Rejection, Request};
pub use outbox::{Flushed, Outbox};
pub use protocol::{CloseCode, Message};
pub use push::PushProtocol;
pub use server::{Server, ServerHandle};
pub use stats::{Gauges, Stats};
pub use uid::{validate_uid, InvalidUid, BROADCAST_RECIPIENT, MAX_UID_LEN};

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
