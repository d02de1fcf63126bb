//! The workloads. Each runs one shard (all of it, or this child process's share): it connects
//! and logs in its connections, calls `ready` once they are all up (the parent measures the
//! server there and releases every shard together), runs, and returns its counts as JSON for
//! the parent to merge. Every received message is checked; losses, duplicates, misroutes and
//! closes are counted, never waited on forever.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fleet::{Fleet, FleetEvent};
use crate::procstat::cpu_time;
use crate::report::{wall_nanos, Latencies, Progress};

/// This process's share of a run.
#[derive(Debug, Clone, Copy)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The part of `0..total` this shard owns.
    pub fn range(&self, total: usize) -> Range<usize> {
        let start = total * self.index / self.count;
        let end = total * (self.index + 1) / self.count;
        start..end
    }
}

/// What every scenario needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The server addresses (nodes of a cluster, or one server): connection `i` goes to
    /// `addrs[i % addrs.len()]`.
    pub addrs: Vec<SocketAddr>,
    pub shard: Shard,
    /// Longest time without progress before a wait gives up.
    pub timeout: Duration,
    /// Most handshakes in flight at once.
    pub concurrency: usize,
    /// Send each login right behind its upgrade request (see `Fleet::new`).
    pub early_login: bool,
    /// Connect over wss with this client configuration (`--tls`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Offer permessage-deflate (`--deflate`).
    pub deflate: bool,
}

/// Connections opened and logged in, by global index.
pub struct Population {
    pub fleet: Fleet,
    /// Global index of the connection at each fleet key.
    pub index_of_key: Vec<usize>,
    /// Fleet key of each local connection, in index order.
    pub keys: Vec<usize>,
    /// The global indexes this shard owns.
    pub range: Range<usize>,
    /// Connections that failed or closed, and the first reason.
    pub errors: u64,
    pub first_error: Option<String>,
    handshake: Latencies,
    bound: Latencies,
    elapsed: Duration,
    /// This process's CPU time while connecting.
    cpu: Duration,
}

impl Population {
    /// Counts a failed or closed connection, keeping the first reason.
    pub fn record_error(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    /// The connect-phase fields every shard report starts with.
    pub fn base_report(&self) -> Value {
        json!({
            "conns": self.keys.len(),
            "errors": self.errors,
            "first_error": self.first_error,
            "connect_elapsed_ns": self.elapsed.as_nanos() as u64,
            "connect_cpu_ns": self.cpu.as_nanos() as u64,
            "tls_resumed": self.fleet.tls_resumed(),
            "handshake_hist": self.handshake.encode(),
            "bound_hist": self.bound.encode(),
        })
    }
}

/// Opens and logs in this shard's connections `<prefix><index>`, at most `rate` per second
/// (0: unlimited); those with an index below `senders` will send.
pub fn populate(
    setup: &Setup,
    total: usize,
    prefix: &str,
    rate: f64,
    senders: usize,
) -> std::io::Result<Population> {
    let range = setup.shard.range(total);
    let mut population = Population {
        fleet: Fleet::new(
            setup.addrs.clone(),
            setup.early_login,
            setup.tls.clone(),
            setup.deflate,
        )?,
        index_of_key: Vec::new(),
        keys: Vec::new(),
        range: range.clone(),
        errors: 0,
        first_error: None,
        handshake: Latencies::new(),
        bound: Latencies::new(),
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
    };
    let wanted = range.len();
    population.fleet.prepare(wanted)?;
    let cpu_before = cpu_time(None).unwrap_or_default();
    let started = Instant::now();
    let mut next = range.start;
    let mut ready = 0usize;
    let mut last_progress = Instant::now();
    let mut progress = Progress::new();
    while ready + population.errors as usize != wanted {
        let allowed_by_rate = if rate > 0.0 {
            range.start + (started.elapsed().as_secs_f64() * rate) as usize + 1
        } else {
            range.end
        };
        while next < range.end.min(allowed_by_rate)
            && (next - range.start) - ready - (population.errors as usize) < setup.concurrency
        {
            match population
                .fleet
                .open(&format!("{prefix}{next}"), next < senders, next)
            {
                Ok(key) => {
                    if population.index_of_key.len() <= key {
                        population.index_of_key.resize(key + 1, usize::MAX);
                    }
                    population.index_of_key[key] = next;
                }
                Err(e) => population.record_error(format!("connect failed: {e}")),
            }
            next += 1;
        }
        let mut events = Vec::new();
        population
            .fleet
            .turn(Duration::from_millis(5), |event| match event {
                FleetEvent::Ready {
                    key,
                    handshake,
                    bound,
                } => events.push(Ok((key, handshake, bound))),
                FleetEvent::Closed { why, .. } => events.push(Err(why)),
                FleetEvent::Message { .. } => {}
            })?;
        for event in events {
            last_progress = Instant::now();
            match event {
                Ok((key, handshake, bound)) => {
                    ready += 1;
                    population.keys.push(key);
                    population.handshake.record(handshake);
                    population.bound.record(bound);
                }
                Err(why) => population.record_error(why),
            }
        }
        if last_progress.elapsed() > setup.timeout {
            population.record_error(format!(
                "no progress for {:?}: {} of {wanted} connections ready",
                setup.timeout, ready
            ));
            break;
        }
        progress.update(|| format!("connected {ready}/{wanted}, errors {}", population.errors));
    }
    progress.finish();
    population.elapsed = started.elapsed();
    population.cpu = cpu_time(None)
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    population
        .keys
        .sort_by_key(|&key| population.index_of_key[key]);
    Ok(population)
}

/// `connect`: open and bind connections, then hold them until the parent has measured.
pub fn connect(
    setup: &Setup,
    conns: usize,
    rate: f64,
    ready: &mut dyn FnMut(),
) -> std::io::Result<Value> {
    let population = populate(setup, conns, "c", rate, 0)?;
    ready();
    Ok(population.base_report())
}

/// The fields every direct message carries, so the receiver can check it.
pub struct Stamp {
    /// Global index of the sending connection.
    pub sender: usize,
    /// The sender's sequence number for this message.
    pub seq: u64,
    /// Global index of the connection it is addressed to.
    pub recipient: usize,
    /// Wall-clock nanoseconds when it was queued (`wall_nanos`).
    pub sent_at: u64,
}

fn encode_direct(stamp: &Stamp, size: usize) -> Vec<u8> {
    let mut payload = format!(
        "d{}:{:x}.{:x}.{:x}.{:x}.",
        stamp.recipient, stamp.sender, stamp.seq, stamp.recipient, stamp.sent_at
    )
    .into_bytes();
    let header = payload.iter().position(|&b| b == b':').map_or(0, |i| i + 1);
    let body = (payload.len() - header).max(size);
    payload.resize(header + body, b'x');
    payload
}

/// Reads the stamp off a received direct message (the text after the recipient's colon).
pub fn decode_direct(payload: &[u8]) -> Option<Stamp> {
    let mut fields = payload.split(|&b| b == b'.');
    let mut next = || {
        let field = std::str::from_utf8(fields.next()?).ok()?;
        u64::from_str_radix(field, 16).ok()
    };
    Some(Stamp {
        sender: next()? as usize,
        seq: next()?,
        recipient: next()? as usize,
        sent_at: next()?,
    })
}

/// Parameters of `direct`.
#[derive(Debug, Clone, Copy)]
pub struct Direct {
    pub conns: usize,
    pub senders: usize,
    pub msgs: u64,
    pub size: usize,
    pub window: usize,
    /// Open loop at this many messages per second (all shards together); `None`: closed loop.
    pub msg_rate: Option<f64>,
    /// Send only to connections on another address than the sender's (so, in a cluster,
    /// through Redis). Needs at least two addresses and as many connections.
    pub cross_node: bool,
}

/// A random recipient for `sender` among `conns` connections spread over `nodes` addresses
/// (connection `i` on address `i % nodes`): any connection, or with `cross_node` one on
/// another address (`nodes` ≥ 2 and `conns` ≥ `nodes`), uniformly over those.
pub fn pick_recipient(
    rng: &mut u64,
    sender: usize,
    conns: usize,
    nodes: usize,
    cross_node: bool,
) -> usize {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    if !cross_node || nodes < 2 {
        return (next() % conns as u64) as usize;
    }
    // Connections not on the sender's address: every index but those ≡ sender (mod nodes).
    let own = sender % nodes;
    let own_count = (conns + nodes - 1 - own) / nodes;
    let others = conns - own_count;
    // The k-th index whose residue differs from `own`: skip one own-residue index per full
    // group of `nodes - 1` others, and the one inside the current group if it comes first.
    let k = (next() % others.max(1) as u64) as usize;
    let (group, offset) = (k / (nodes - 1), k % (nodes - 1));
    let residue = if offset < own { offset } else { offset + 1 };
    group * nodes + residue
}

/// `direct`: senders send `uid:payload` to random uids; receivers check and time every message.
pub fn direct(setup: &Setup, params: &Direct, ready: &mut dyn FnMut()) -> std::io::Result<Value> {
    let shard = setup.shard;
    // Each shard's senders are the first connections of its own range.
    let range = shard.range(params.conns);
    let local_senders = shard.range(params.senders).len().min(range.len());
    let senders: Vec<usize> = (range.start..range.start + local_senders).collect();
    let mut population = populate(setup, params.conns, "d", 0.0, range.start + local_senders)?;
    let budget = params.msgs * (shard.index as u64 + 1) / shard.count as u64
        - params.msgs * shard.index as u64 / shard.count as u64;
    let rate = params.msg_rate.map(|r| r / shard.count as f64);
    ready();

    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ (shard.index as u64 + 1);
    let mut in_flight = vec![0usize; params.conns];
    let mut seqs = vec![0u64; params.conns];
    let mut seen: HashSet<(usize, u64)> = HashSet::new();
    let (mut sent, mut received, mut duplicates, mut misrouted) = (0u64, 0u64, 0u64, 0u64);
    let mut closes = 0u64;
    let mut latencies = Latencies::new();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut progress = Progress::new();
    let mut next_sender = 0;
    loop {
        // Top up: the window per sender (closed loop) or the schedule (open loop).
        let due = match rate {
            Some(rate) => ((started.elapsed().as_secs_f64() * rate) as u64).min(budget),
            None => budget,
        };
        let mut stalled = 0;
        while sent < due && !senders.is_empty() && stalled < senders.len() {
            let sender = senders[next_sender % senders.len()];
            next_sender += 1;
            if rate.is_none() && in_flight[sender] >= params.window {
                stalled += 1;
                continue;
            }
            stalled = 0;
            let recipient = pick_recipient(
                &mut rng,
                sender,
                params.conns,
                setup.addrs.len(),
                params.cross_node,
            );
            let stamp = Stamp {
                sender,
                seq: seqs[sender],
                recipient,
                sent_at: wall_nanos(),
            };
            seqs[sender] += 1;
            in_flight[sender] += 1;
            let key = population.keys[sender - population.range.start];
            population
                .fleet
                .send_text(key, &encode_direct(&stamp, params.size));
            sent += 1;
        }
        let finished_sending = sent == budget;
        // Open loop: the poller sleeps in whole milliseconds, so poll without sleeping while
        // messages are due, or they would leave in bursts and time each other.
        let wait = if rate.is_some() && !finished_sending {
            Duration::ZERO
        } else {
            Duration::from_millis(5)
        };
        let index_of_key = &population.index_of_key;
        population.fleet.turn(wait, |event| match event {
            FleetEvent::Message { key, payload } => {
                last_progress = Instant::now();
                let Some(stamp) = decode_direct(payload) else {
                    misrouted += 1;
                    return;
                };
                if stamp.recipient != index_of_key[key] {
                    misrouted += 1;
                } else if !seen.insert((stamp.sender, stamp.seq)) {
                    duplicates += 1;
                } else {
                    received += 1;
                    latencies.record(Duration::from_nanos(
                        wall_nanos().saturating_sub(stamp.sent_at),
                    ));
                }
                if let Some(count) = in_flight.get_mut(stamp.sender) {
                    *count = count.saturating_sub(1);
                }
            }
            FleetEvent::Closed { why, .. } => {
                closes += 1;
                population.errors += 1;
                population.first_error.get_or_insert(why);
            }
            FleetEvent::Ready { .. } => {}
        })?;
        if finished_sending {
            // One shard: done when everything arrived. Several: when quiet (others' messages
            // may still be arriving here).
            let all_here = shard.count == 1 && received + duplicates + misrouted >= sent;
            if all_here || last_progress.elapsed() > quiet_period(setup, shard) {
                break;
            }
        }
        if last_progress.elapsed() > setup.timeout {
            break;
        }
        progress.update(|| format!("sent {sent}/{budget}, received {received}"));
    }
    progress.finish();
    let elapsed = started.elapsed();
    let mut report = population.base_report();
    report["sent"] = json!(sent);
    report["received"] = json!(received);
    report["duplicates"] = json!(duplicates);
    report["misrouted"] = json!(misrouted);
    report["closes"] = json!(closes);
    report["run_ns"] = json!(elapsed.as_nanos() as u64);
    report["latency_hist"] = json!(latencies.encode());
    Ok(report)
}

/// How long to wait for stragglers once everything is sent.
pub fn quiet_period(setup: &Setup, shard: Shard) -> Duration {
    if shard.count == 1 {
        setup.timeout
    } else {
        Duration::from_secs(1).min(setup.timeout)
    }
}

/// Parameters of `broadcast`.
#[derive(Debug, Clone, Copy)]
pub struct Broadcast {
    pub conns: usize,
    pub rounds: u32,
    pub size: usize,
    /// Open loop: one round every interval (required with several processes). `None`: the next
    /// round starts when every recipient has the previous one.
    pub interval: Option<Duration>,
    /// Varied JSON filler instead of one repeated byte.
    pub json: bool,
}

/// Appends JSON items to `out` until it is `len` bytes long (the last one cut): a chat-like
/// feed whose names, numbers and words vary with `seed`, so that it compresses like real pushes
/// (about half its size with no context takeover), not like one repeated byte.
pub fn json_filler(out: &mut Vec<u8>, len: usize, seed: u64) {
    const WORDS: [&str; 16] = [
        "hello", "price", "update", "order", "shipped", "meeting", "tomorrow", "thanks", "status",
        "ready", "warning", "level", "online", "message", "photo", "reply",
    ];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    out.push(b'[');
    let mut id = 0u64;
    while out.len() < len {
        let r = next();
        let text: Vec<&str> = (0..4)
            .map(|i| WORDS[((r >> (i * 4)) & 15) as usize])
            .collect();
        let item = format!(
            r#"{{"id":{id},"user":"user-{}","room":"r-{}","text":"{}","ts":{}}},"#,
            r % 100_000,
            (r >> 20) % 1000,
            text.join(" "),
            1_764_612_345_678 + (r >> 40) % 1_000_000
        );
        out.extend_from_slice(item.as_bytes());
        id += 1;
    }
    out.truncate(len);
}

/// `broadcast`: `all:payload` rounds from connection 0; every recipient checks the rounds
/// arrive once each and in order, and records how long each took to reach it.
pub fn broadcast(
    setup: &Setup,
    params: &Broadcast,
    ready: &mut dyn FnMut(),
) -> std::io::Result<Value> {
    let mut population = populate(setup, params.conns, "b", 0.0, 1)?;
    let shard = setup.shard;
    let is_sender = shard.index == 0;
    let local = population.keys.len();
    ready();

    let rounds = params.rounds as usize;
    let bytes_before = population.fleet.bytes_in();
    let mut receipts = vec![0u64; rounds];
    let mut last_arrival = vec![0u64; rounds];
    let mut sent_at = vec![0u64; rounds];
    let mut expected_round = vec![0u32; population.index_of_key.len()];
    let (mut lost, mut duplicates, mut closes) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut progress = Progress::new();
    let mut next_round = 0usize;
    loop {
        let may_send = match params.interval {
            Some(interval) => started.elapsed() >= interval * next_round as u32,
            None => next_round == 0 || receipts[next_round - 1] >= population.fleet.live() as u64,
        };
        if is_sender && next_round < rounds && may_send {
            let now = wall_nanos();
            let mut payload = format!("all:{next_round:x}.{now:x}.").into_bytes();
            let len = 4 + params.size.max(payload.len() - 4);
            if params.json {
                json_filler(&mut payload, len, next_round as u64);
            }
            payload.resize(len, b'x');
            population.fleet.send_text(population.keys[0], &payload);
            sent_at[next_round] = now;
            next_round += 1;
        }
        population
            .fleet
            .turn(Duration::from_millis(1), |event| match event {
                FleetEvent::Message { key, payload } => {
                    last_progress = Instant::now();
                    let mut fields = payload.split(|&b| b == b'.');
                    let round = fields
                        .next()
                        .and_then(|f| std::str::from_utf8(f).ok())
                        .and_then(|f| u32::from_str_radix(f, 16).ok());
                    let stamp = fields
                        .next()
                        .and_then(|f| std::str::from_utf8(f).ok())
                        .and_then(|f| u64::from_str_radix(f, 16).ok());
                    let (Some(round), Some(stamp)) = (round, stamp) else {
                        duplicates += 1;
                        return;
                    };
                    let expected = &mut expected_round[key];
                    if round < *expected || round as usize >= rounds {
                        duplicates += 1;
                        return;
                    }
                    lost += u64::from(round - *expected);
                    *expected = round + 1;
                    receipts[round as usize] += 1;
                    let arrival = wall_nanos();
                    last_arrival[round as usize] = last_arrival[round as usize].max(arrival);
                    sent_at[round as usize] = stamp;
                }
                FleetEvent::Closed { .. } => closes += 1,
                FleetEvent::Ready { .. } => {}
            })?;
        let all_done = receipts.last().is_some_and(|&r| r >= local as u64);
        if all_done
            || last_progress.elapsed()
                > quiet_period(setup, shard).max(params.interval.unwrap_or_default() * 2)
        {
            break;
        }
        progress.update(|| format!("round {next_round}/{rounds}"));
    }
    progress.finish();
    let elapsed = started.elapsed();
    let time_to_last: Vec<u64> = (0..rounds)
        .map(|r| last_arrival[r].saturating_sub(sent_at[r]) / 1000)
        .collect();
    let mut report = population.base_report();
    report["receipts"] = json!(receipts);
    report["time_to_last_us"] = json!(time_to_last);
    // Gaps seen in the round sequence; rounds that never arrived at all are counted by the
    // parent from the receipts.
    report["gaps"] = json!(lost);
    report["duplicates"] = json!(duplicates);
    report["closes"] = json!(closes);
    report["run_ns"] = json!(elapsed.as_nanos() as u64);
    report["bytes_in"] = json!(population.fleet.bytes_in() - bytes_before);
    Ok(report)
}

/// Parameters of `push`.
#[derive(Debug, Clone, Copy)]
pub struct Push {
    pub conns: usize,
    /// The push API's address.
    pub api: SocketAddr,
    /// Keep-alive HTTP connections to the API.
    pub api_conns: usize,
    /// Requests in flight per API connection (pipelined).
    pub window: usize,
    pub requests: u64,
    pub size: usize,
}

/// One keep-alive HTTP connection to the push API.
struct ApiClient {
    stream: std::net::TcpStream,
    out: Vec<u8>,
    input: Vec<u8>,
    in_flight: usize,
}

/// `push`: `POST /send/{uid}` to random bound receivers over keep-alive connections; every
/// delivery is checked and timed from the API call to its arrival on the WebSocket.
pub fn push(setup: &Setup, params: &Push, ready: &mut dyn FnMut()) -> std::io::Result<Value> {
    use std::io::{ErrorKind, Read, Write};

    let mut population = populate(setup, params.conns, "p", 0.0, 0)?;
    let shard = setup.shard;
    let mut api: Vec<ApiClient> = Vec::new();
    for _ in 0..params.api_conns.max(1) {
        let stream = std::net::TcpStream::connect(params.api)?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        api.push(ApiClient {
            stream,
            out: Vec::new(),
            input: Vec::new(),
            in_flight: 0,
        });
    }
    let budget = params.requests * (shard.index as u64 + 1) / shard.count as u64
        - params.requests * shard.index as u64 / shard.count as u64;
    let local = population.keys.len().max(1) as u64;
    ready();

    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (shard.index as u64 + 7);
    let mut seen: HashSet<u64> = HashSet::new();
    let (mut sent, mut answered, mut failed, mut received, mut duplicates, mut misrouted) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut first_failure: Option<String> = None;
    let mut latencies = Latencies::new();
    let mut chunk = vec![0u8; 64 << 10];
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut progress = Progress::new();
    loop {
        for client in &mut api {
            while client.in_flight < params.window && sent < budget {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let recipient = population.range.start + (rng % local) as usize;
                let mut body = format!("{sent:x}.{recipient:x}.{:x}.", wall_nanos()).into_bytes();
                body.resize(body.len().max(params.size), b'x');
                client.out.extend_from_slice(
                    format!(
                        "POST /send/p{recipient} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                client.out.extend_from_slice(&body);
                client.in_flight += 1;
                sent += 1;
            }
            while !client.out.is_empty() {
                match client.stream.write(&client.out) {
                    Ok(n) => {
                        client.out.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            loop {
                match client.stream.read(&mut chunk) {
                    Ok(0) => return Err(std::io::Error::other("the API closed the connection")),
                    Ok(n) => client.input.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            while let Some((ok, len)) = take_response(&client.input) {
                client.input.drain(..len);
                client.in_flight -= 1;
                answered += 1;
                last_progress = Instant::now();
                if let Err(why) = ok {
                    failed += 1;
                    first_failure.get_or_insert(why);
                }
            }
        }
        let index_of_key = &population.index_of_key;
        population.fleet.turn(Duration::ZERO, |event| match event {
            FleetEvent::Message { key, payload } => {
                last_progress = Instant::now();
                let mut fields = payload.split(|&b| b == b'.').map(|f| {
                    std::str::from_utf8(f)
                        .ok()
                        .and_then(|f| u64::from_str_radix(f, 16).ok())
                });
                let (Some(Some(seq)), Some(Some(recipient)), Some(Some(at))) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    misrouted += 1;
                    return;
                };
                if recipient as usize != index_of_key[key] {
                    misrouted += 1;
                } else if !seen.insert(seq) {
                    duplicates += 1;
                } else {
                    received += 1;
                    latencies.record(Duration::from_nanos(wall_nanos().saturating_sub(at)));
                }
            }
            FleetEvent::Closed { why } => {
                population.errors += 1;
                population.first_error.get_or_insert(why);
            }
            FleetEvent::Ready { .. } => {}
        })?;
        if answered == budget && received + duplicates + misrouted + failed >= budget {
            break;
        }
        if last_progress.elapsed() > setup.timeout {
            break;
        }
        progress.update(|| format!("requests {answered}/{budget}, delivered {received}"));
    }
    progress.finish();
    let mut report = population.base_report();
    report["sent"] = json!(sent);
    report["answered"] = json!(answered);
    report["failed"] = json!(failed);
    report["first_failure"] = json!(first_failure);
    report["received"] = json!(received);
    report["duplicates"] = json!(duplicates);
    report["misrouted"] = json!(misrouted);
    report["run_ns"] = json!(started.elapsed().as_nanos() as u64);
    report["latency_hist"] = json!(latencies.encode());
    Ok(report)
}

/// Takes one complete HTTP response off the front of `input`: whether it reported one
/// delivery, and its length.
fn take_response(input: &[u8]) -> Option<(Result<(), String>, usize)> {
    let head_end = input.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&input[..head_end]).ok()?;
    let body_len: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|len| len.trim().parse().ok())?;
    let body = input.get(head_end..head_end + body_len)?;
    let ok = if head.starts_with("HTTP/1.1 200") && body == br#"{"connections":1}"# {
        Ok(())
    } else {
        Err(format!(
            "{} {}",
            head.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(body)
        ))
    };
    Some((ok, head_end + body_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_node_recipients_are_on_other_addresses_and_all_reachable() {
        for (conns, nodes) in [(40, 2), (10, 3), (7, 3), (3, 3), (5, 4)] {
            let mut rng = 0x2545_F491_4F6C_DD1Du64;
            for sender in 0..conns {
                let mut hit = vec![false; conns];
                for _ in 0..2000 {
                    let recipient = pick_recipient(&mut rng, sender, conns, nodes, true);
                    assert!(recipient < conns, "{recipient} of {conns}");
                    assert_ne!(recipient % nodes, sender % nodes, "{conns}/{nodes}");
                    hit[recipient] = true;
                }
                // Every connection on another address is chosen sometimes.
                for (i, &hit) in hit.iter().enumerate() {
                    assert_eq!(hit, i % nodes != sender % nodes, "{i} in {conns}/{nodes}");
                }
            }
        }
    }

    #[test]
    fn without_cross_node_any_connection_may_receive() {
        let mut rng = 1u64;
        let mut hit = [false; 10];
        for _ in 0..1000 {
            hit[pick_recipient(&mut rng, 0, 10, 2, false)] = true;
        }
        assert!(hit.iter().all(|&hit| hit));
    }
}
