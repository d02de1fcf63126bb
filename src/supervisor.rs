//! `--workers N`: the binary's supervisor, Workerman's `count` for wspush. It reserves the
//! ports (so that `127.0.0.1:0` names one port for every worker), starts N copies of this
//! binary as workers that bind those ports with `SO_REUSEPORT` (the kernel spreads
//! connections over them) and meet in the cluster's Redis, restarts a worker that dies, and on
//! SIGTERM or SIGINT asks every worker to shut down and waits for them; SIGHUP is passed on to
//! every worker (each reloads its TLS certificate).
//!
//! Owns only the child processes and the port reservations. It never touches a connection;
//! it runs no reactor, so it polls its children and signals at a fixed pace.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socket2::{Domain, Socket, Type};

/// Set in a worker's environment: its index. Also tells the binary it is a worker.
pub const WORKER_ENV: &str = "WSPUSH_WORKER";
/// Set in a worker's environment: the WebSocket address to bind (the supervisor's choice).
pub const LISTEN_ENV: &str = "WSPUSH_WORKER_LISTEN";
/// Set in a worker's environment: the push API address to bind.
pub const API_LISTEN_ENV: &str = "WSPUSH_WORKER_API_LISTEN";
/// Set in a worker's environment: the supervisor's process id, which the worker's parent must
/// be for as long as the worker runs.
pub const SUPERVISOR_ENV: &str = "WSPUSH_WORKER_SUPERVISOR";

/// How often the supervisor looks at its children and signals.
const PACE: Duration = Duration::from_millis(50);

/// Shortest time between two starts of the same worker (a worker that dies at once is not
/// restarted in a tight loop).
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// The ports the workers share, reserved for as long as the supervisor runs.
pub struct Ports {
    pub listen: SocketAddr,
    pub api: Option<SocketAddr>,
    _reservations: Vec<Socket>,
}

/// Binds (without listening) a `SO_REUSEPORT` socket on each address, which makes a port of 0
/// concrete and keeps it for the workers: only listening sockets get connections.
pub fn reserve(listen: SocketAddr, api: Option<SocketAddr>) -> std::io::Result<Ports> {
    let mut reservations = Vec::new();
    let mut reserve_one = |addr: SocketAddr| -> std::io::Result<SocketAddr> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        let bound = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("not an IP socket"))?;
        reservations.push(socket);
        Ok(bound)
    };
    let listen = reserve_one(listen)?;
    let api = api.map(&mut reserve_one).transpose()?;
    Ok(Ports {
        listen,
        api,
        _reservations: reservations,
    })
}

/// In a worker: shuts the server down if the supervisor goes away (killed with SIGKILL, it
/// cannot stop its workers), checked at once and then twice a second on a thread of its own.
/// The supervisor is the pid it put in `SUPERVISOR_ENV`, not whatever the parent is when the
/// worker gets here: a supervisor that died while the worker was starting has already handed
/// it to another parent.
pub fn follow_parent(server: wspush::ServerHandle) {
    let supervisor = std::env::var(SUPERVISOR_ENV)
        .ok()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(std::os::unix::process::parent_id);
    std::thread::spawn(move || loop {
        if std::os::unix::process::parent_id() != supervisor {
            warn!("the supervisor (pid {supervisor}) is gone; shutting down");
            server.shutdown();
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    });
}

struct Worker {
    index: usize,
    child: Option<Child>,
    started: Instant,
}

/// Runs `count` workers on `ports` until SIGTERM or SIGINT, then stops them within
/// `shutdown_timeout` (and a second more), killing any that are still running.
pub fn supervise(count: usize, ports: &Ports, shutdown_timeout: Duration) -> Result<(), String> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let mut workers: Vec<Worker> = (0..count)
        .map(|index| Worker {
            index,
            child: None,
            started: Instant::now(),
        })
        .collect();
    for worker in &mut workers {
        start(worker, ports)?;
    }
    loop {
        let (mut stopping, mut reload) = (false, false);
        for signal in signals.pending() {
            match signal {
                SIGHUP => reload = true,
                _ => stopping = true,
            }
        }
        if stopping {
            return stop(&mut workers, shutdown_timeout);
        }
        if reload {
            // Each worker reads its TLS certificate again.
            signal_all(&workers, "-HUP");
        }
        for worker in &mut workers {
            let exited = match worker.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(e.to_string()),
                Some(Ok(None)) => None,
                None => Some(String::new()),
            };
            let Some(how) = exited else {
                continue;
            };
            if worker.child.take().is_some() {
                warn!("worker {} exited ({how}); restarting it", worker.index);
            }
            if worker.started.elapsed() >= RESTART_DELAY {
                if let Err(e) = start(worker, ports) {
                    error!("{e}");
                }
            }
        }
        std::thread::sleep(PACE);
    }
}

fn start(worker: &mut Worker, ports: &Ports) -> Result<(), String> {
    let binary = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut command = Command::new(binary);
    // Its own process group: a Ctrl-C at the terminal (or a service manager signalling the
    // group) reaches the supervisor only, which then stops each worker once, gracefully.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
        .args(std::env::args_os().skip(1))
        .env(WORKER_ENV, worker.index.to_string())
        .env(LISTEN_ENV, ports.listen.to_string())
        .env(SUPERVISOR_ENV, std::process::id().to_string());
    if let Some(api) = ports.api {
        command.env(API_LISTEN_ENV, api.to_string());
    }
    worker.started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start worker {}: {e}", worker.index))?;
    info!("worker {} started (pid {})", worker.index, child.id());
    worker.child = Some(child);
    Ok(())
}

/// Sends `signal` (as kill(1) names it) to every running worker. The standard library sends
/// only SIGKILL, so this goes through kill(1) (procps), not an unsafe call.
fn signal_all(workers: &[Worker], signal: &str) {
    for child in workers.iter().filter_map(|w| w.child.as_ref()) {
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        if !status.is_ok_and(|status| status.success()) {
            warn!("could not signal worker pid {}", child.id());
        }
    }
}

fn stop(workers: &mut [Worker], shutdown_timeout: Duration) -> Result<(), String> {
    info!("stopping {} workers", workers.len());
    // SIGTERM: each worker closes its clients with 1001, then exits.
    signal_all(workers, "-TERM");
    let deadline = Instant::now() + shutdown_timeout + Duration::from_secs(1);
    for worker in workers.iter_mut() {
        let Some(child) = worker.child.as_mut() else {
            continue;
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    warn!("worker {} did not stop in time; killing it", worker.index);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(PACE),
            }
        }
    }
    info!("all workers stopped");
    Ok(())
}
