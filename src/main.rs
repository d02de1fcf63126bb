//! The `wspush` binary: the server on the reference push protocol (or echo), configured from
//! flags and `WSPUSH_*` environment variables.

mod cli;
mod supervisor;

use std::process::ExitCode;

use clap::Parser;
use log::{error, info};
use wspush::{Config, Echo, Handler, PushProtocol, Server};

use crate::cli::{Cli, LoginRefusal, Mode};

fn main() -> ExitCode {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Ok(index) = std::env::var(supervisor::WORKER_ENV) {
        // A worker's lines say which worker wrote them.
        logger.format(move |out, record| {
            use std::io::Write;
            writeln!(
                out,
                "[{} {:<5} worker {index} {}] {}",
                out.timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    logger.init();
    let cli = Cli::parse();
    let config = match worker_config(cli.config()) {
        Ok(config) => config,
        Err(message) => {
            error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let workers = cli.workers;
    let result = match (cli.mode, cli.auth_secret.as_deref()) {
        _ if workers == 0 => Err("--workers must be at least 1".to_owned()),
        _ if workers > 1 && config.cluster.is_none() => Err(format!(
            "--workers {workers} needs --redis: workers share their users through the cluster"
        )),
        (_, Some("")) => Err(
            "--auth-secret (WSPUSH_AUTH_SECRET) is empty: anyone could sign \
             any uid with it; set a real secret or unset it"
                .to_owned(),
        ),
        (Mode::Push, Some(_)) if cli.auth_max_ttl.is_zero() => Err("--auth-max-ttl must be \
             longer than 0: no login URL could be valid"
            .to_owned()),
        (Mode::Echo, Some(_)) => Err("--auth-secret has no effect in echo mode, which has no \
             logins; use --mode push or drop the secret"
            .to_owned()),
        (Mode::Echo, None) if cli.client_routing.is_some() => Err("--client-routing is for \
             the push protocol; echo mode sends nothing to others"
            .to_owned()),
        (Mode::Push, secret) => {
            let mut handler = secret.map_or_else(PushProtocol::new, |secret| {
                PushProtocol::with_auth_secret(secret.as_bytes())
                    .with_auth_max_ttl(cli.auth_max_ttl)
            });
            if let Some(routing) = cli.client_routing {
                handler = handler.with_routing(routing.policy());
            }
            if cli.login_refusal == LoginRefusal::Close {
                handler = handler.with_login_refusal_by_close();
            }
            let routing = handler.routing().describe();
            let logins = match secret {
                Some(_) => format!(
                    "signed logins (URLs valid at most {} ahead)",
                    humantime::format_duration(cli.auth_max_ttl)
                ),
                None => "uids taken on trust (no --auth-secret)".to_owned(),
            };
            serve(
                config,
                handler,
                &format!("push, {logins}, {routing}"),
                workers,
            )
        }
        (Mode::Echo, None) => serve(config, Echo, "echo", workers),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// In a worker started by the supervisor: the ports it chose, shared with `SO_REUSEPORT`.
fn worker_config(mut config: Config) -> Result<Config, String> {
    if std::env::var_os(supervisor::WORKER_ENV).is_none() {
        return Ok(config);
    }
    let addr = |name: &str| -> Result<Option<std::net::SocketAddr>, String> {
        std::env::var(name)
            .ok()
            .map(|value| value.parse().map_err(|e| format!("{name}={value}: {e}")))
            .transpose()
    };
    if let Some(listen) = addr(supervisor::LISTEN_ENV)? {
        config.listen = listen;
    }
    if let (Some(api), Some(listen)) = (config.api.as_mut(), addr(supervisor::API_LISTEN_ENV)?) {
        api.listen = listen;
    }
    config.reuse_port = true;
    Ok(config)
}

/// Serves `config` with `handler` in this process, or, with several workers, supervises them.
fn serve<H: Handler>(config: Config, handler: H, mode: &str, workers: usize) -> Result<(), String> {
    if workers > 1 && std::env::var_os(supervisor::WORKER_ENV).is_none() {
        return supervise(config, mode, workers);
    }
    let mut server = Server::bind(config, handler).map_err(|e| e.to_string())?;
    server
        .handle_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    if std::env::var_os(supervisor::WORKER_ENV).is_some() {
        supervisor::follow_parent(server.handle());
    }
    info!("{}", startup_line(&server, mode));
    let origins = &server.config().allowed_origins;
    if origins.is_empty() {
        info!("browsers from any origin may connect (no --allowed-origins)");
    } else {
        info!("browsers may connect only from: {}", origins.join(", "));
    }
    match (server.api_addr(), server.config().api.as_ref()) {
        (Some(addr), Some(api)) => {
            let protection = if api.key.is_some() {
                "every request needs the API key"
            } else {
                "no API key: loopback clients only"
            };
            info!("push API listening on http://{addr} ({protection})");
        }
        _ => info!("push API off"),
    }
    server.run().map_err(|e| format!("server failed: {e}"))
}

/// The supervisor's side of `--workers`: reserves the ports, says where it listens (as a
/// single process would), and runs the workers.
fn supervise(config: Config, mode: &str, workers: usize) -> Result<(), String> {
    let config = config.checked().map_err(|e| e.to_string())?;
    let ports = supervisor::reserve(config.listen, config.api.as_ref().map(|api| api.listen))
        .map_err(|e| format!("cannot reserve the ports for the workers: {e}"))?;
    let redis = config.cluster.as_ref().map_or(String::new(), |cluster| {
        let servers: Vec<String> = cluster.redis.iter().map(ToString::to_string).collect();
        servers.join(", ")
    });
    info!(
        "wspush {} listening on {} (mode {mode}; {workers} workers sharing the port, cluster on \
         {redis})",
        env!("CARGO_PKG_VERSION"),
        ports.listen
    );
    match (ports.api, config.api.as_ref()) {
        (Some(addr), Some(api)) => {
            let protection = if api.key.is_some() {
                "every request needs the API key"
            } else {
                "no API key: loopback clients only"
            };
            info!("push API listening on http://{addr} ({protection}; shared by the workers)");
        }
        _ => info!("push API off"),
    }
    supervisor::supervise(workers, &ports, config.shutdown_timeout)
}

fn startup_line<H: Handler>(server: &Server<H>, mode: &str) -> String {
    let c = server.config();
    let optional = |d: Option<std::time::Duration>| {
        d.map_or("off".to_owned(), |d| {
            humantime::format_duration(d).to_string()
        })
    };
    format!(
        "wspush {} listening on {} ({}; mode {mode}; max connections {}, max message {} B, \
         max handshake {} B, send buffer {} B ({} on overflow), handshake timeout {}, \
         login timeout {}, ping every {}, idle timeout {}, close timeout {}, shutdown timeout {})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        if c.tls.is_some() { "wss" } else { "ws" },
        server.max_connections(),
        c.max_message_size,
        c.max_handshake_size,
        c.max_send_buffer,
        match c.slow_consumer {
            wspush::SlowConsumerPolicy::Drop => "drop the message",
            wspush::SlowConsumerPolicy::Close => "close the connection",
        },
        humantime::format_duration(c.handshake_timeout),
        optional(c.login_timeout),
        optional(c.ping_interval),
        optional(c.idle_timeout),
        humantime::format_duration(c.close_timeout),
        humantime::format_duration(c.shutdown_timeout),
    )
}
