//! wspush-bench: a load generator for servers that speak the wspush reference protocol (first
//! message is the uid, then `RECIPIENT:MESSAGE`, `all` broadcasts), built on the same mio loop
//! and codec as the server.
//!
//! Each scenario prints a live progress line on stderr for runs over a second and one JSON
//! summary line on stdout. With `--server-pid`, the server's CPU time and RSS are read from
//! `/proc`, and CPU figures are also given as a ratio to the physical floor (see `floor`)
//! measured in the same run. `--procs P` splits a run over P child processes (the open-files
//! limit is per process) and merges their results.
//!
//! For a cluster, `--addr` names every node (connection `i` goes to address `i % n`),
//! `--server-pid` every wspush process (or `--server-children-of` a `--workers` supervisor),
//! and `--redis-pid` the Redis servers: CPU and RSS figures are then summed over the wspush
//! processes, given per process too, and Redis's CPU apart.

mod attack;
mod fleet;
mod floor;
mod procstat;
mod report;
mod scenarios;
mod tickets;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::attack::AttackKind;
use crate::report::Latencies;
use crate::scenarios::{Broadcast, Direct, Setup, Shard};

/// Load generator for wspush and any server speaking its reference protocol.
#[derive(Debug, Parser)]
#[command(name = "wspush-bench", version, about)]
struct Cli {
    /// The server's WebSocket address. Several (repeated, or comma-separated: the nodes of a
    /// cluster) share the connections round-robin: connection i goes to address i % n.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:1234"
    )]
    addr: Vec<SocketAddr>,
    /// The server's process id: read its CPU time and RSS from /proc, and pin the floor
    /// measurement where it runs. Several (repeated, or comma-separated: every worker or node)
    /// are summed, and reported one by one too; the floor is pinned where the first runs.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Add the child processes of this pid to the server pids, as found at the start of the
    /// run: the workers of `wspush --workers N` (give the supervisor itself with --server-pid
    /// if it should count too).
    #[arg(long, global = true, value_delimiter = ',')]
    server_children_of: Vec<u32>,
    /// A Redis server's process id (repeatable): its CPU time is reported apart from the
    /// server's (`redis_cpu_ns`), and added to it in the `cluster_cpu_*` figures.
    #[arg(long, global = true, value_delimiter = ',')]
    redis_pid: Vec<u32>,
    /// Split the run over this many child processes (each holds at most ~19,000 connections).
    #[arg(long, global = true, default_value_t = 1)]
    procs: usize,
    /// Longest wait without progress before giving up.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Most handshakes in flight at once, per process.
    #[arg(long, global = true, default_value_t = 300)]
    concurrency: usize,
    /// Send each connection's login message in the same write as its upgrade request instead
    /// of after the server's 101 answer: one round trip less per connection. RFC 6455 §4.1
    /// has clients wait for the answer, so use it only with servers that accept this (wspush
    /// does).
    #[arg(long, global = true)]
    early_login: bool,
    /// Connect over wss (TLS), trusting the certificates in this PEM file (for the repo's
    /// test certificates: tests/certs/ca.pem); the server's certificate must name `localhost`.
    #[arg(long, global = true, value_name = "CA_PEM")]
    tls: Option<std::path::PathBuf>,
    /// With --tls: resume sessions with the tickets earlier connections received (TLS 1.3
    /// resumption), instead of a full handshake per connection.
    #[arg(long, global = true)]
    tls_resume: bool,
    /// Offer permessage-deflate (as Chromium does) and inflate what the server compresses.
    #[arg(long, global = true)]
    deflate: bool,
    /// Set by the parent on its children: this process's shard, as INDEX/COUNT.
    #[arg(long, global = true, hide = true)]
    shard: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Clone, Subcommand)]
enum Scenario {
    /// Open and bind N connections; report the connect+bind rate, handshake latency, and the
    /// server's RSS growth per idle connection.
    Connect {
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Connections per second (0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// Senders send `uid:payload` to random uids; report delivered msgs/s, latency and server
    /// CPU per delivered message.
    Direct {
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        #[arg(long, default_value_t = 100)]
        senders: usize,
        /// Messages to send in all.
        #[arg(long, default_value_t = 200_000)]
        msgs: u64,
        /// Message size in bytes (what recipients receive).
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages in flight per sender (closed loop).
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Open loop at this many messages per second instead of a window.
        #[arg(long)]
        msg_rate: Option<f64>,
        /// Writes for the floor measurement (0: skip it).
        #[arg(long, default_value_t = 500_000)]
        floor_writes: u64,
        /// Send only to connections on another address than the sender's (needs two or more
        /// distinct --addr): with cluster nodes, every message goes through Redis.
        #[arg(long)]
        cross_node: bool,
    },
    /// `all:payload` rounds; report time to last recipient, deliveries/s and server CPU per
    /// delivery.
    Broadcast {
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        #[arg(long, default_value_t = 100)]
        rounds: u32,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// One round every interval (open loop; required with --procs > 1). Default: the next
        /// round when every recipient has the previous one.
        #[arg(long, value_parser = humantime::parse_duration)]
        interval: Option<Duration>,
        /// Fill each message with varied JSON (as a push would carry; compresses about as
        /// real pushes do) instead of one repeated byte.
        #[arg(long)]
        json: bool,
        /// Writes for the floor measurement (0: skip it).
        #[arg(long, default_value_t = 1_000_000)]
        floor_writes: u64,
    },
    /// POST /send/{uid} to the push API over keep-alive connections; report requests/s and
    /// the latency from API call to WebSocket delivery.
    Push {
        #[arg(long, default_value_t = 1000)]
        conns: usize,
        /// The push API's address.
        #[arg(long, default_value = "127.0.0.1:5678")]
        api: SocketAddr,
        /// Keep-alive connections to the API.
        #[arg(long, default_value_t = 1)]
        api_conns: usize,
        /// Requests in flight per API connection (pipelined).
        #[arg(long, default_value_t = 1)]
        window: usize,
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// N healthy clients bound and reading while one attacker floods the server as fast as it
    /// can (`all:` broadcasts or empty pings, never reading what it gets back); report the
    /// latency of paced probe messages between healthy clients before, during and after the
    /// attack, the server's RSS (before, peak, after settling) and CPU during the attack.
    /// Shard 0 runs the attacker and reads the server's figures.
    Attack {
        /// Healthy connections.
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// What the attacker sends: `all` (masked text frames `all:<payload>`) or `ping`
        /// (empty masked pings).
        #[arg(long, value_enum, default_value = "all")]
        attack: AttackKind,
        /// Seconds the attacker writes.
        #[arg(long, default_value_t = 10.0)]
        attack_secs: f64,
        /// Seconds of probes after the attacker closed (the server's RSS is watched).
        #[arg(long, default_value_t = 10.0)]
        settle_secs: f64,
        /// Seconds of probes before the attack (the baseline latency).
        #[arg(long, default_value_t = 2.0)]
        baseline_secs: f64,
        /// Probe messages per second, in all.
        #[arg(long, default_value_t = 1000.0)]
        probe_rate: f64,
        /// Healthy connections that send probes (to random other healthy connections).
        #[arg(long, default_value_t = 100)]
        probe_senders: usize,
        /// Probe message size in bytes (what recipients receive).
        #[arg(long, default_value_t = 64)]
        probe_size: usize,
        /// Bytes after `all:` in each attack frame (`all` only).
        #[arg(long, default_value_t = 8)]
        payload: usize,
        /// Let the attacker read and discard what it gets, so that the server never pauses
        /// reading it for its own full queue: a sustained flood.
        #[arg(long)]
        attacker_reads: bool,
        /// What the server's configured caps allow its queues to hold (e.g. its
        /// --max-total-send-buffer, or conns × --max-send-buffer), like 64MiB: the report
        /// gives the peak RSS growth as a ratio to it.
        #[arg(long, value_parser = attack::parse_size)]
        cap_bytes: Option<u64>,
        /// The server's push API: read /stats before and after (messages in, dropped, closes).
        #[arg(long)]
        api: Option<SocketAddr>,
    },
    /// The physical floor: CPU per write of a small frame to N connected loopback sockets.
    Floor {
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        #[arg(long, default_value_t = 1_000_000)]
        writes: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// The floor's writer process (started by `floor`).
    #[command(hide = true)]
    FloorWriter {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        conns: usize,
        #[arg(long)]
        writes: u64,
        #[arg(long)]
        size: usize,
    },
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match resolve_pids(&mut cli).and_then(|()| run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wspush-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Expands `--server-children-of` into `--server-pid`s (without repeats, in order).
fn resolve_pids(cli: &mut Cli) -> Result<(), String> {
    for &parent in &cli.server_children_of {
        let children = procstat::children(parent);
        if children.is_empty() {
            return Err(format!("--server-children-of {parent}: no child processes"));
        }
        cli.server_pid.extend(children);
    }
    let mut seen = std::collections::HashSet::new();
    cli.server_pid.retain(|pid| seen.insert(*pid));
    let mut seen = std::collections::HashSet::new();
    cli.redis_pid.retain(|pid| seen.insert(*pid));
    Ok(())
}

/// Refuses options that cannot work together.
fn check(cli: &Cli) -> Result<(), String> {
    if let Scenario::Direct {
        cross_node: true,
        conns,
        ..
    } = cli.scenario
    {
        let distinct: std::collections::HashSet<_> = cli.addr.iter().collect();
        if distinct.len() < 2 || distinct.len() != cli.addr.len() {
            return Err("--cross-node needs two or more distinct --addr".into());
        }
        if conns < cli.addr.len() {
            return Err("--cross-node needs at least one connection per address".into());
        }
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<(), String> {
    check(cli)?;
    if let Scenario::FloorWriter {
        target,
        conns,
        writes,
        size,
    } = cli.scenario
    {
        return floor::write(target, conns, writes, size).map_err(|e| format!("floor writer: {e}"));
    }
    if let Scenario::Floor {
        conns,
        writes,
        size,
    } = cli.scenario
    {
        let report = floor::measure(conns, writes, size, cli.server_pid.first().copied())
            .map_err(|e| e.to_string())?;
        println!("{}", json!({ "scenario": "floor", "floor": report }));
        return Ok(());
    }
    if let Some(shard) = &cli.shard {
        return run_child(cli, parse_shard(shard)?);
    }
    run_parent(cli)
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let (index, count) = text.split_once('/').ok_or("--shard is INDEX/COUNT")?;
    Ok(Shard {
        index: index.parse().map_err(|_| "bad shard index")?,
        count: count.parse().map_err(|_| "bad shard count")?,
    })
}

fn setup(cli: &Cli, shard: Shard) -> Result<Setup, String> {
    Ok(Setup {
        addrs: cli.addr.clone(),
        shard,
        timeout: cli.timeout,
        concurrency: cli.concurrency,
        early_login: cli.early_login,
        deflate: cli.deflate,
        tls: match &cli.tls {
            Some(ca) => Some(tls_client(ca, cli.tls_resume)?),
            None => None,
        },
    })
}

/// A TLS client configuration trusting the certificates in `ca`, with session resumption
/// only if `resume`.
fn tls_client(
    ca: &std::path::Path,
    resume: bool,
) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("--tls {}: {e}", ca.display()))?
    {
        let cert = cert.map_err(|e| format!("--tls {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls {}: {e}", ca.display()))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = if resume {
        rustls::client::Resumption::store(std::sync::Arc::new(tickets::TicketPool::default()))
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(std::sync::Arc::new(config))
}

/// Runs this process's shard; `ready` is called once its connections are up.
fn run_shard(cli: &Cli, shard: Shard, ready: &mut dyn FnMut()) -> Result<Value, String> {
    let setup = setup(cli, shard)?;
    let result = match cli.scenario {
        Scenario::Connect { conns, rate } => scenarios::connect(&setup, conns, rate, ready),
        Scenario::Direct {
            conns,
            senders,
            msgs,
            size,
            window,
            msg_rate,
            cross_node,
            ..
        } => {
            let params = Direct {
                conns,
                senders: senders.min(conns),
                msgs,
                size,
                window,
                msg_rate,
                cross_node,
            };
            scenarios::direct(&setup, &params, ready)
        }
        Scenario::Broadcast {
            conns,
            rounds,
            size,
            interval,
            json,
            ..
        } => scenarios::broadcast(
            &setup,
            &Broadcast {
                conns,
                rounds,
                size,
                interval,
                json,
            },
            ready,
        ),
        Scenario::Push {
            conns,
            api,
            api_conns,
            window,
            requests,
            size,
        } => {
            let params = scenarios::Push {
                conns,
                api,
                api_conns,
                window,
                requests,
                size,
            };
            scenarios::push(&setup, &params, ready)
        }
        Scenario::Attack {
            conns,
            attack,
            attack_secs,
            settle_secs,
            baseline_secs,
            probe_rate,
            probe_senders,
            probe_size,
            payload,
            attacker_reads,
            api,
            ..
        } => {
            let params = attack::Attack {
                conns,
                kind: attack,
                baseline: Duration::from_secs_f64(baseline_secs),
                attack: Duration::from_secs_f64(attack_secs),
                settle: Duration::from_secs_f64(settle_secs),
                probe_rate,
                probe_senders: probe_senders.min(conns),
                probe_size,
                payload,
                attacker_reads,
                server_pids: cli.server_pid.clone(),
                api,
            };
            attack::attack(&setup, &params, ready)
        }
        Scenario::Floor { .. } | Scenario::FloorWriter { .. } => unreachable!("handled in run"),
    };
    result.map_err(|e| format!("{e}"))
}

/// A child: report "ready", wait for "go", run, report the result.
fn run_child(cli: &Cli, shard: Shard) -> Result<(), String> {
    let mut ready = || {
        println!("ready");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    };
    let report = run_shard(cli, shard, &mut ready)?;
    println!("{report}");
    Ok(())
}

/// Server (and Redis) resource use, and the machine's stolen CPU time, at one moment.
#[derive(Debug, Clone, Default)]
struct ServerSample {
    /// RSS and CPU time of each server pid, in `--server-pid` order.
    server: Vec<(Option<u64>, Option<Duration>)>,
    /// CPU time of each Redis pid, in `--redis-pid` order.
    redis: Vec<Option<Duration>>,
    machine: Option<(u64, u64)>,
}

impl ServerSample {
    /// RSS summed over the server pids.
    fn rss(&self) -> Option<u64> {
        total(self.server.iter().map(|(rss, _)| *rss))
    }

    /// CPU time summed over the server pids.
    fn cpu(&self) -> Option<Duration> {
        total(self.server.iter().map(|(_, cpu)| *cpu))
    }

    /// CPU time summed over the Redis pids.
    fn redis_cpu(&self) -> Option<Duration> {
        total(self.redis.iter().copied())
    }
}

/// The sum of `values`: `None` if there are none or one is missing (a process that exited).
fn total<T: std::iter::Sum<T>>(values: impl Iterator<Item = Option<T>>) -> Option<T> {
    let values: Vec<Option<T>> = values.collect();
    if values.is_empty() {
        return None;
    }
    values.into_iter().sum()
}

fn sample(cli: &Cli) -> ServerSample {
    ServerSample {
        server: cli
            .server_pid
            .iter()
            .map(|&pid| (procstat::rss(pid), procstat::cpu_time(Some(pid))))
            .collect(),
        redis: cli
            .redis_pid
            .iter()
            .map(|&pid| procstat::cpu_time(Some(pid)))
            .collect(),
        machine: procstat::machine_cpu(),
    }
}

fn run_parent(cli: &Cli) -> Result<(), String> {
    if cli.procs > 1 {
        match cli.scenario {
            Scenario::Direct { msg_rate: None, .. } => {
                return Err(
                    "direct with --procs > 1 needs --msg-rate (a window needs one process)".into(),
                )
            }
            Scenario::Broadcast { interval: None, .. } => {
                return Err("broadcast with --procs > 1 needs --interval".into())
            }
            _ => {}
        }
    }
    let floor = match cli.scenario {
        Scenario::Direct {
            conns,
            size,
            floor_writes,
            ..
        }
        | Scenario::Broadcast {
            conns,
            size,
            floor_writes,
            ..
        } if floor_writes > 0 => {
            eprintln!("measuring the floor: {floor_writes} writes over {conns} sockets");
            Some(
                floor::measure(conns, floor_writes, size, cli.server_pid.first().copied())
                    .map_err(|e| format!("floor: {e}"))?,
            )
        }
        _ => None,
    };
    let before = sample(cli);
    let mut at_ready = ServerSample::default();
    let mut ready_at = Instant::now();
    let shards = if cli.procs <= 1 {
        let mut ready = || {
            at_ready = sample(cli);
            ready_at = Instant::now();
        };
        vec![run_shard(cli, Shard { index: 0, count: 1 }, &mut ready)?]
    } else {
        let mut children = spawn_children(cli)?;
        at_ready = sample(cli);
        ready_at = Instant::now();
        for (child, _) in &mut children {
            let stdin = child.stdin.as_mut().expect("piped stdin");
            let _ = writeln!(stdin, "go");
        }
        collect_children(children)?
    };
    let after = sample(cli);
    let wall = ready_at.elapsed();
    let summary = summarize(cli, &shards, &[before, at_ready, after], wall, floor);
    println!("{summary}");
    Ok(())
}

fn spawn_children(cli: &Cli) -> Result<Vec<(Child, BufReader<std::process::ChildStdout>)>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut children = Vec::new();
    for index in 0..cli.procs {
        let mut child = Command::new(&exe)
            .args(&args)
            .args(["--shard", &format!("{index}/{}", cli.procs)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn child: {e}"))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        children.push((child, stdout));
    }
    for (index, (_, stdout)) in children.iter_mut().enumerate() {
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err(format!(
                "child {index} failed before it was ready: {line:?}"
            ));
        }
    }
    Ok(children)
}

fn collect_children(
    children: Vec<(Child, BufReader<std::process::ChildStdout>)>,
) -> Result<Vec<Value>, String> {
    let mut reports = Vec::new();
    for (index, (mut child, mut stdout)) in children.into_iter().enumerate() {
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let _ = child.wait();
        let report = serde_json::from_str(line.trim())
            .map_err(|e| format!("child {index} report: {e}: {line:?}"))?;
        reports.push(report);
    }
    Ok(reports)
}

fn sum(shards: &[Value], field: &str) -> u64 {
    shards.iter().map(|s| s[field].as_u64().unwrap_or(0)).sum()
}

fn max(shards: &[Value], field: &str) -> u64 {
    shards
        .iter()
        .map(|s| s[field].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0)
}

fn merged_hist(shards: &[Value], field: &str) -> Latencies {
    let mut all = Latencies::new();
    for shard in shards {
        if let Some(hist) = shard[field].as_str().and_then(Latencies::decode) {
            all.merge(&hist);
        }
    }
    all
}

/// CPU time from `start` to `end`, when both were read.
fn elapsed_cpu(start: Option<Duration>, end: Option<Duration>) -> Option<Duration> {
    Some(end?.saturating_sub(start?))
}

fn nanos(cpu: Option<Duration>) -> Option<u64> {
    cpu.map(|cpu| cpu.as_nanos() as u64)
}

/// Merges the shards' reports; `samples` are the server's figures before connecting, once
/// connected (the run starts) and after the run.
fn summarize(
    cli: &Cli,
    shards: &[Value],
    samples: &[ServerSample; 3],
    wall: Duration,
    floor: Option<Value>,
) -> Value {
    let [before, at_ready, after] = samples;
    let conns = sum(shards, "conns");
    let errors = sum(shards, "errors");
    let connect_s = max(shards, "connect_elapsed_ns") as f64 / 1e9;
    let first_error = shards
        .iter()
        .find_map(|s| s["first_error"].as_str().map(str::to_owned));
    let mut out = json!({
        "scenario": scenario_name(&cli.scenario),
        "procs": cli.procs,
        "addrs": cli.addr.len(),
        "conns": conns,
        "errors": errors,
        "first_error": first_error,
        "connects_per_s": if connect_s > 0.0 { conns as f64 / connect_s } else { 0.0 },
        "handshake_us": merged_hist(shards, "handshake_hist").summary(),
        "bind_us": merged_hist(shards, "bound_hist").summary(),
    });
    if cli.tls.is_some() {
        out["tls_resumed_handshakes"] = json!(sum(shards, "tls_resumed"));
    }
    if conns > 0 {
        // Who limits the connect rate: both sides' CPU per connection while connecting.
        let tool_cpu_ns = sum(shards, "connect_cpu_ns");
        out["connect_tool_cpu_us_per_conn"] = json!(tool_cpu_ns as f64 / 1e3 / conns as f64);
        if let Some(cpu) = elapsed_cpu(before.cpu(), at_ready.cpu()) {
            out["connect_server_cpu_us_per_conn"] = json!(cpu.as_secs_f64() * 1e6 / conns as f64);
        }
        if let Some(cpu) = elapsed_cpu(before.redis_cpu(), at_ready.redis_cpu()) {
            out["connect_redis_cpu_us_per_conn"] = json!(cpu.as_secs_f64() * 1e6 / conns as f64);
        }
    }
    // Summed over the server pids: in a cluster each connection is on one of them.
    if let (Some(rss_before), Some(rss_ready)) = (before.rss(), at_ready.rss()) {
        out["server_rss_before"] = json!(rss_before);
        out["server_rss_connected"] = json!(rss_ready);
        if conns > 0 {
            out["server_rss_per_conn"] =
                json!(rss_ready.saturating_sub(rss_before) as f64 / conns as f64);
        }
    }
    let server_cpu = elapsed_cpu(at_ready.cpu(), after.cpu());
    let redis_cpu = elapsed_cpu(at_ready.redis_cpu(), after.redis_cpu());
    let floor_us = floor.as_ref().and_then(|f| f["cpu_us_per_write"].as_f64());
    let per_unit = |out: &mut Value, units: u64, name: &str| {
        let mut figures = |prefix: &str, cpu: Duration| {
            let us = cpu.as_secs_f64() * 1e6 / units as f64;
            out[format!("{prefix}_cpu_us_per_{name}")] = json!(us);
            // A floor too short to register a clock tick gives no ratio.
            if let Some(floor) = floor_us.filter(|&floor| floor > 0.0) {
                out[format!("{prefix}_cpu_per_{name}_vs_floor")] = json!(us / floor);
            }
        };
        if let Some(cpu) = server_cpu.filter(|_| units > 0) {
            figures("server", cpu);
            // The whole cluster's cost: every wspush process and Redis.
            if let Some(redis) = redis_cpu {
                figures("cluster", cpu + redis);
            }
            out["server_cpu_ms"] = json!(cpu.as_millis() as u64);
        }
    };
    match &cli.scenario {
        Scenario::Direct { .. } => {
            let sent = sum(shards, "sent");
            let received = sum(shards, "received");
            let run_s = max(shards, "run_ns") as f64 / 1e9;
            out["sent"] = json!(sent);
            out["delivered"] = json!(received);
            out["lost"] = json!(sent.saturating_sub(received));
            out["duplicates"] = json!(sum(shards, "duplicates"));
            out["misrouted"] = json!(sum(shards, "misrouted"));
            out["closes"] = json!(sum(shards, "closes"));
            out["cross_node"] = json!(matches!(
                cli.scenario,
                Scenario::Direct {
                    cross_node: true,
                    ..
                }
            ));
            out["msgs_per_s"] = json!(received as f64 / run_s.max(1e-9));
            out["latency_us"] = merged_hist(shards, "latency_hist").summary();
            per_unit(&mut out, received, "msg");
        }
        Scenario::Broadcast { rounds, .. } => {
            let rounds = *rounds as usize;
            let mut receipts = vec![0u64; rounds];
            let mut time_to_last = vec![0u64; rounds];
            for shard in shards {
                for r in 0..rounds {
                    receipts[r] += shard["receipts"][r].as_u64().unwrap_or(0);
                    time_to_last[r] =
                        time_to_last[r].max(shard["time_to_last_us"][r].as_u64().unwrap_or(0));
                }
            }
            let deliveries: u64 = receipts.iter().sum();
            let mut completed: Vec<u64> = (0..rounds)
                .filter(|&r| receipts[r] > 0)
                .map(|r| time_to_last[r])
                .collect();
            completed.sort_unstable();
            let pick = |q: f64| {
                completed
                    .get(
                        ((completed.len() as f64 * q) as usize)
                            .min(completed.len().saturating_sub(1)),
                    )
                    .copied()
            };
            let run_s = max(shards, "run_ns") as f64 / 1e9;
            out["rounds"] = json!(rounds);
            out["deliveries"] = json!(deliveries);
            out["lost"] = json!((rounds as u64 * conns).saturating_sub(deliveries));
            out["duplicates"] = json!(sum(shards, "duplicates"));
            out["closes"] = json!(sum(shards, "closes"));
            out["time_to_last_us"] =
                json!({ "p50": pick(0.5), "p99": pick(0.99), "max": completed.last() });
            out["deliveries_per_s"] = json!(deliveries as f64 / run_s.max(1e-9));
            if deliveries > 0 {
                out["bytes_per_delivery"] =
                    json!(sum(shards, "bytes_in") as f64 / deliveries as f64);
            }
            per_unit(&mut out, deliveries, "delivery");
        }
        Scenario::Push { .. } => {
            let answered = sum(shards, "answered");
            let received = sum(shards, "received");
            let run_s = max(shards, "run_ns") as f64 / 1e9;
            out["requests"] = json!(answered);
            out["failed"] = json!(sum(shards, "failed"));
            out["first_failure"] = json!(shards
                .iter()
                .find_map(|s| s["first_failure"].as_str().map(str::to_owned)));
            out["delivered"] = json!(received);
            out["lost"] = json!(sum(shards, "sent").saturating_sub(received));
            out["duplicates"] = json!(sum(shards, "duplicates"));
            out["misrouted"] = json!(sum(shards, "misrouted"));
            out["requests_per_s"] = json!(answered as f64 / run_s.max(1e-9));
            out["latency_us"] = merged_hist(shards, "latency_hist").summary();
            per_unit(&mut out, answered, "request");
        }
        Scenario::Attack { cap_bytes, .. } => attack::summarize(&mut out, shards, *cap_bytes),
        _ => {}
    }
    if !cli.server_pid.is_empty() {
        // Each process over the connect phase and over the run, then the totals.
        let procs: Vec<Value> = cli
            .server_pid
            .iter()
            .enumerate()
            .map(|(i, pid)| {
                let at = |sample: &ServerSample| sample.server.get(i).copied().unwrap_or_default();
                let ((rss_before, cpu_before), (rss_ready, cpu_ready), (rss_after, cpu_after)) =
                    (at(before), at(at_ready), at(after));
                json!({
                    "pid": pid,
                    "connect_cpu_ns": nanos(elapsed_cpu(cpu_before, cpu_ready)),
                    "cpu_ns": nanos(elapsed_cpu(cpu_ready, cpu_after)),
                    "rss_before": rss_before,
                    "rss_connected": rss_ready,
                    "rss_after": rss_after,
                })
            })
            .collect();
        out["server_procs"] = json!(procs);
        out["connect_server_cpu_ns_total"] =
            json!(nanos(elapsed_cpu(before.cpu(), at_ready.cpu())));
        out["server_cpu_ns_total"] = json!(nanos(server_cpu));
        out["server_rss_total"] = json!(at_ready.rss());
    }
    if !cli.redis_pid.is_empty() {
        let procs: Vec<Value> = cli
            .redis_pid
            .iter()
            .enumerate()
            .map(|(i, pid)| {
                let at = |sample: &ServerSample| sample.redis.get(i).copied().flatten();
                json!({
                    "pid": pid,
                    "connect_cpu_ns": nanos(elapsed_cpu(at(before), at(at_ready))),
                    "cpu_ns": nanos(elapsed_cpu(at(at_ready), at(after))),
                })
            })
            .collect();
        out["redis_procs"] = json!(procs);
        out["connect_redis_cpu_ns"] =
            json!(nanos(elapsed_cpu(before.redis_cpu(), at_ready.redis_cpu())));
        out["redis_cpu_ns"] = json!(nanos(redis_cpu));
    }
    if let Some(floor) = floor {
        out["floor"] = floor;
    }
    if let (Some((all0, steal0)), Some((all1, steal1))) = (at_ready.machine, after.machine) {
        let all = all1.saturating_sub(all0).max(1);
        out["host_steal_pct"] = json!(100.0 * steal1.saturating_sub(steal0) as f64 / all as f64);
    }
    out["wall_s"] = json!(wall.as_secs_f64());
    out
}

fn scenario_name(scenario: &Scenario) -> &'static str {
    match scenario {
        Scenario::Connect { .. } => "connect",
        Scenario::Direct { .. } => "direct",
        Scenario::Broadcast { .. } => "broadcast",
        Scenario::Push { .. } => "push",
        Scenario::Attack { .. } => "attack",
        Scenario::Floor { .. } | Scenario::FloorWriter { .. } => "floor",
    }
}
