//! The `attack` scenario: N healthy clients stay bound and read everything they get, a paced
//! stream of direct probe messages runs between them, and one attacker connection floods the
//! server as fast as the kernel takes its bytes, with `all:` broadcasts or empty pings, for
//! `--attack-secs`. Reports the probes' latency and losses before, during and after the attack,
//! what the attacker got out and how it ended, the server's RSS over time (before, peak, while
//! it settles) and the CPU both sides spent during the attack.
//!
//! Owns the schedule (baseline, attack, settle, each relative to the shard's own start, so that
//! shards stay in step without talking to each other), the attacker's socket and the RSS
//! timeline. Shard 0 alone runs the attacker and samples the server; every shard sends and
//! receives probes, and probes cross shards. It must never block on the attacker (its writes
//! are non-blocking and its end is the schedule's), read the attacker's socket unless asked to
//! (the server's queue for it filling up is part of the attack), or time broadcasts: they are
//! counted and checked against what the attacker sent, never timed.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Value};
use wspush::protocol::{Decoder, Event, OpCode, Role};

use crate::fleet::{next_mask, push_frame, FleetEvent};
use crate::procstat::{cpu_time, cpu_time_sum, rss_sum};
use crate::report::{wall_nanos, Latencies, Progress};
use crate::scenarios::{decode_direct, populate, quiet_period, Setup, Stamp};

/// Uid prefix of the healthy clients.
const PREFIX: &str = "h";
/// The attacker's uid (never a healthy one: those are `h<index>`).
const ATTACKER_UID: &str = "attacker";
/// Names of the probe phases, in order; receipts after the settle phase are the drain.
const PHASES: [&str; 3] = ["baseline", "attack", "settle"];
/// How often the server's RSS is read.
const RSS_EVERY: Duration = Duration::from_millis(100);
/// Most bytes the attacker writes per loop iteration, so probes and receipts keep their turn.
const WRITE_BUDGET: usize = 1 << 20;
/// Most bytes the attacker reads per look (`--attacker-reads`, or looking for a close frame).
const READ_BUDGET: u64 = 8 << 20;
/// Size of the attacker's pre-built batch of frames.
const BATCH: usize = 64 << 10;
/// Seconds after the attack at which the RSS is reported (those within the settle phase).
const RSS_POINTS: [u64; 4] = [1, 2, 5, 10];

/// What the attacker floods the server with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttackKind {
    /// Masked text frames `all:<payload>`: each one a broadcast to every bound connection.
    All,
    /// Empty masked pings: each one owes the attacker a pong.
    Ping,
}

impl AttackKind {
    fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Ping => "ping",
        }
    }
}

/// Parameters of `attack`.
#[derive(Debug, Clone)]
pub struct Attack {
    /// Healthy connections, all shards together.
    pub conns: usize,
    pub kind: AttackKind,
    /// Probes only, before the attack.
    pub baseline: Duration,
    /// How long the attacker writes.
    pub attack: Duration,
    /// Probes only, after the attacker closed.
    pub settle: Duration,
    /// Probe messages per second, all shards together.
    pub probe_rate: f64,
    /// Healthy connections that send probes (the first ones of each shard's range).
    pub probe_senders: usize,
    /// Probe message size in bytes (what recipients receive).
    pub probe_size: usize,
    /// Bytes after `all:` in each attack frame.
    pub payload: usize,
    /// Let the attacker read (and discard) what it gets, so that its own queue never pauses it.
    pub attacker_reads: bool,
    /// The server's pids (one, or every worker or node), for RSS and CPU summed over them
    /// (shard 0 reads them).
    pub server_pids: Vec<u32>,
    /// The server's push API, for `/stats` before and after (shard 0 reads them).
    pub api: Option<SocketAddr>,
}

/// `attack`: runs one shard of the scenario and returns its counts (and, on shard 0, the
/// attacker's and the server's figures) as JSON for `summarize`.
pub fn attack(setup: &Setup, params: &Attack, ready: &mut dyn FnMut()) -> io::Result<Value> {
    let shard = setup.shard;
    let range = shard.range(params.conns);
    let local_senders = shard.range(params.probe_senders).len().min(range.len());
    let senders: Vec<usize> = (range.start..range.start + local_senders).collect();
    let mut population = populate(
        setup,
        params.conns,
        PREFIX,
        0.0,
        range.start + local_senders,
    )?;
    let lead = shard.index == 0;
    let mut attacker = if lead {
        Some(Attacker::login(&mut population.fleet, setup, params)?)
    } else {
        None
    };
    let server_pids: &[u32] = if lead { &params.server_pids } else { &[] };
    let api = params.api.filter(|_| lead);
    let rate = if params.probe_senders == 0 {
        0.0
    } else {
        params.probe_rate * local_senders as f64 / params.probe_senders as f64
    };
    let expected = match params.kind {
        AttackKind::All => Some(vec![b'#'; params.payload]),
        AttackKind::Ping => None,
    };
    ready();
    // Every shard is connected now.
    let stats_before = api.and_then(|api| fetch_stats(api, setup.timeout));

    let started = Instant::now();
    let attack_start = params.baseline;
    let attack_end = attack_start + params.attack;
    let settle_end = attack_end + params.settle;
    let mut rss_timeline = RssTimeline {
        pids: server_pids,
        samples: Vec::new(),
        last: None,
    };
    let mut marks: [Option<Mark>; 3] = [None, None, None];
    let mut probes = Probes::new(params.conns);
    let mut rng = 0xD1B5_4A32_D192_ED03u64 ^ (shard.index as u64 + 1);
    let mut seqs = vec![0u64; senders.len()];
    let mut next_sender = 0usize;
    let mut progress = Progress::new();
    // The longest time between two loop iterations, by phase: a stall of this tool shows here
    // (and in the probes' latency), not in the server's figures.
    let mut max_gap = [Duration::ZERO; 3];
    let mut previous = Duration::ZERO;
    loop {
        let now = started.elapsed();
        if now >= settle_end {
            break;
        }
        let phase = if now < attack_start {
            0
        } else if now < attack_end {
            1
        } else {
            2
        };
        max_gap[phase] = max_gap[phase].max(now - previous);
        previous = now;
        if phase >= 1 && marks[0].is_none() {
            marks[0] = Some(Mark::take(server_pids, now));
            rss_timeline.sample(now);
        }
        if phase >= 2 && marks[1].is_none() {
            if let Some(attacker) = &mut attacker {
                attacker.stop(now.saturating_sub(attack_start));
            }
            marks[1] = Some(Mark::take(server_pids, now));
            rss_timeline.sample(now);
        }
        // Probes due by now, round-robin over this shard's senders, to random other clients.
        let due = (now.as_secs_f64() * rate) as u64;
        while probes.sent_total() < due && !senders.is_empty() && params.conns > 1 {
            let slot = next_sender % senders.len();
            next_sender += 1;
            let sender = senders[slot];
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut recipient = (rng % params.conns as u64) as usize;
            if recipient == sender {
                recipient = (recipient + 1) % params.conns;
            }
            let stamp = Stamp {
                sender,
                seq: seqs[slot],
                recipient,
                sent_at: wall_nanos(),
            };
            seqs[slot] += 1;
            let key = population.keys.get(sender - range.start).copied();
            if let Some(key) = key {
                population
                    .fleet
                    .send_text(key, &encode_probe(&stamp, phase, params.probe_size));
            }
            probes.sent[phase] += 1;
        }
        let mut wait = Duration::from_millis(1);
        if phase == 1 {
            if let Some(attacker) = &mut attacker {
                attacker.pump(now - attack_start, setup.timeout);
                if attacker.can_write() {
                    // As fast as it can: do not sleep while the attacker's socket takes bytes.
                    wait = Duration::ZERO;
                }
            }
        }
        rss_timeline.maybe_sample(now);
        probes.turn(&mut population, expected.as_deref(), phase, now, wait)?;
        progress.update(|| {
            let frames = attacker.as_ref().map_or(0, |a| a.frames());
            format!(
                "{} {:.0}s: probes sent {}, received {}; broadcasts {}; attack frames {frames}",
                PHASES[phase],
                now.as_secs_f64(),
                probes.sent_total(),
                probes.received_total(),
                probes.broadcasts.iter().sum::<u64>()
            )
        });
    }
    let now = started.elapsed();
    // A run without a settle phase ends right after the attack (or even without one).
    for mark in marks.iter_mut() {
        if mark.is_none() {
            *mark = Some(Mark::take(server_pids, now));
        }
    }
    if let Some(attacker) = &mut attacker {
        attacker.stop(now.saturating_sub(attack_start));
    }
    rss_timeline.sample(now);
    // Now, while every shard still holds its connections (they end at about the same time).
    let stats_after = api.and_then(|api| fetch_stats(api, setup.timeout));

    // Drain: no more probes; wait for those in flight (bounded by the timeout).
    let mut last_progress = Instant::now();
    loop {
        let before = probes.events;
        probes.turn(
            &mut population,
            expected.as_deref(),
            3,
            started.elapsed(),
            Duration::from_millis(5),
        )?;
        if probes.events != before {
            last_progress = Instant::now();
        }
        let all_here = shard.count == 1 && probes.accounted() >= probes.sent_total();
        if all_here
            || last_progress.elapsed() > quiet_period(setup, shard)
            || last_progress.elapsed() > setup.timeout
        {
            break;
        }
    }
    progress.finish();

    let mut report = population.base_report();
    probes.report(&mut report);
    let marks = marks.map(|mark| mark.expect("every mark is taken"));
    report["tool_cpu_attack_ns"] =
        json!(marks[1].tool.saturating_sub(marks[0].tool).as_nanos() as u64);
    report["run_ns"] = json!(started.elapsed().as_nanos() as u64);
    report["tool_max_loop_gap_us"] = json!(max_gap.map(|gap| gap.as_micros() as u64));
    if let Some(attacker) = &attacker {
        report["attacker"] = attacker.report();
    }
    if lead {
        report["rss"] = rss_timeline.report(&marks, attack_start, attack_end);
        report["server_cpu"] = server_cpu(&marks);
        if let (Some(before), Some(after)) = (&stats_before, &stats_after) {
            report["server_stats"] = stats_delta(before, after);
        }
    }
    Ok(report)
}

/// The probe payload: `h<recipient>:<phase>.` followed by the direct scenario's stamp, padded.
fn encode_probe(stamp: &Stamp, phase: usize, size: usize) -> Vec<u8> {
    let mut payload = format!(
        "{PREFIX}{}:{phase}.{:x}.{:x}.{:x}.{:x}.",
        stamp.recipient, stamp.sender, stamp.seq, stamp.recipient, stamp.sent_at
    )
    .into_bytes();
    let header = payload.iter().position(|&b| b == b':').map_or(0, |i| i + 1);
    let body = (payload.len() - header).max(size);
    payload.resize(header + body, b'x');
    payload
}

/// The phase and stamp of a received probe.
fn decode_probe(payload: &[u8]) -> Option<(usize, Stamp)> {
    let (&phase, rest) = payload.split_first()?;
    let phase = usize::from(phase.checked_sub(b'0')?);
    let rest = rest.strip_prefix(b".")?;
    (phase < PHASES.len()).then_some(())?;
    Some((phase, decode_direct(rest)?))
}

/// What the healthy clients of one shard sent and received.
struct Probes {
    sent: [u64; 3],
    received: [u64; 3],
    latencies: [Latencies; 3],
    seen: HashSet<(usize, u64)>,
    duplicates: u64,
    misrouted: u64,
    /// Broadcasts received that match the attacker's payload, by the phase they arrived in
    /// (the fourth is the drain after the settle phase).
    broadcasts: [u64; 4],
    /// `error: …` answers from the server (for example "not keeping up: message dropped").
    server_errors: u64,
    first_server_error: Option<String>,
    /// Anything else.
    unexpected: u64,
    first_unexpected: Option<String>,
    closes: u64,
    /// Events seen, to tell progress.
    events: u64,
    /// The largest probe latency received in each second since the shard started (µs).
    max_by_second: Vec<u64>,
}

impl Probes {
    fn new(conns: usize) -> Self {
        Self {
            sent: [0; 3],
            received: [0; 3],
            latencies: [Latencies::new(), Latencies::new(), Latencies::new()],
            seen: HashSet::with_capacity(conns.min(1 << 16)),
            duplicates: 0,
            misrouted: 0,
            broadcasts: [0; 4],
            server_errors: 0,
            first_server_error: None,
            unexpected: 0,
            first_unexpected: None,
            closes: 0,
            events: 0,
            max_by_second: Vec::new(),
        }
    }

    fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    fn received_total(&self) -> u64 {
        self.received.iter().sum()
    }

    /// Probes whose fate is known here: received, duplicated, misrouted, or refused by the
    /// server with an `error:` answer.
    fn accounted(&self) -> u64 {
        self.received_total() + self.duplicates + self.misrouted + self.server_errors
    }

    /// One fleet turn: checks and counts everything received; `phase` is the one receipts
    /// fall in (3: the drain), `now` the time since the shard started.
    fn turn(
        &mut self,
        population: &mut crate::scenarios::Population,
        expected: Option<&[u8]>,
        phase: usize,
        now: Duration,
        wait: Duration,
    ) -> io::Result<()> {
        let index_of_key = &population.index_of_key;
        let second = now.as_secs() as usize;
        if self.max_by_second.len() <= second {
            self.max_by_second.resize(second + 1, 0);
        }
        let mut closed = Vec::new();
        population.fleet.turn(wait, |event| match event {
            FleetEvent::Message { key, payload } => {
                self.events += 1;
                if expected == Some(payload) {
                    self.broadcasts[phase] += 1;
                } else if let Some((sent_in, stamp)) = decode_probe(payload) {
                    if index_of_key.get(key) != Some(&stamp.recipient) {
                        self.misrouted += 1;
                    } else if !self.seen.insert((stamp.sender, stamp.seq)) {
                        self.duplicates += 1;
                    } else {
                        self.received[sent_in] += 1;
                        let latency =
                            Duration::from_nanos(wall_nanos().saturating_sub(stamp.sent_at));
                        self.latencies[sent_in].record(latency);
                        let slot = &mut self.max_by_second[second];
                        *slot = (*slot).max(latency.as_micros() as u64);
                    }
                } else if payload.starts_with(b"error: ") {
                    self.server_errors += 1;
                    self.first_server_error
                        .get_or_insert_with(|| excerpt(payload));
                } else {
                    self.unexpected += 1;
                    self.first_unexpected
                        .get_or_insert_with(|| excerpt(payload));
                }
            }
            FleetEvent::Closed { why } => {
                self.events += 1;
                self.closes += 1;
                closed.push(why);
            }
            FleetEvent::Ready { .. } => {}
        })?;
        for why in closed {
            population.record_error(why);
        }
        Ok(())
    }

    fn report(&self, report: &mut Value) {
        report["probe_sent"] = json!(self.sent);
        report["probe_received"] = json!(self.received);
        report["probe_hist"] = json!(self
            .latencies
            .iter()
            .map(Latencies::encode)
            .collect::<Vec<_>>());
        report["probe_duplicates"] = json!(self.duplicates);
        report["probe_misrouted"] = json!(self.misrouted);
        report["broadcasts"] = json!(self.broadcasts);
        report["server_errors"] = json!(self.server_errors);
        report["first_server_error"] = json!(self.first_server_error);
        report["unexpected"] = json!(self.unexpected);
        report["first_unexpected"] = json!(self.first_unexpected);
        report["closes"] = json!(self.closes);
        report["probe_max_us_by_second"] = json!(self.max_by_second);
    }
}

/// The start of a received message, for a report.
fn excerpt(payload: &[u8]) -> String {
    String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned()
}

/// The attacker: one logged-in connection taken out of the fleet, written to from a pre-built
/// batch of whole frames whenever its socket takes bytes, and (unless `reads`) never read.
struct Attacker {
    kind: AttackKind,
    stream: Option<TcpStream>,
    poll: Poll,
    events: Events,
    /// Whole frames, written cyclically: any prefix of the endless repetition is whole frames
    /// plus at most one partial one.
    batch: Vec<u8>,
    frame_len: usize,
    offset: usize,
    bytes_written: u64,
    writes: u64,
    would_blocks: u64,
    blocked: bool,
    /// Since the attack started: the last write that took bytes, and the attacker's end.
    last_write: Option<Duration>,
    ended_at: Option<Duration>,
    /// Why it ended: "schedule", or what the server did.
    end: Option<String>,
    reads: bool,
    /// A read stopped at its budget, before the socket was empty.
    unread: bool,
    decoder: Decoder,
    scratch: Vec<u8>,
    bytes_read: u64,
    messages_read: u64,
    close_code: Option<u16>,
    close_reason: Option<String>,
}

impl Attacker {
    /// Connects and logs in as the attacker through the fleet (bounded by the timeout), then
    /// takes its socket.
    fn login(fleet: &mut crate::fleet::Fleet, setup: &Setup, params: &Attack) -> io::Result<Self> {
        let key = fleet.open(ATTACKER_UID, true, 0)?;
        let started = Instant::now();
        let mut outcome: Option<Result<(), String>> = None;
        while outcome.is_none() {
            if started.elapsed() > setup.timeout {
                return Err(io::Error::other("the attacker's login timed out"));
            }
            fleet.turn(Duration::from_millis(5), |event| match event {
                FleetEvent::Ready { key: ready, .. } if ready == key => outcome = Some(Ok(())),
                FleetEvent::Closed { why } => outcome = Some(Err(why)),
                _ => {}
            })?;
        }
        if let Some(Err(why)) = outcome {
            return Err(io::Error::other(format!(
                "the attacker's login failed: {why}"
            )));
        }
        let mut stream = fleet
            .detach(key)
            .ok_or_else(|| io::Error::other("the attacker's connection vanished"))?;
        let poll = Poll::new()?;
        poll.registry().register(
            &mut stream,
            Token(0),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let (opcode, payload) = match params.kind {
            AttackKind::All => {
                let mut payload = b"all:".to_vec();
                payload.resize(4 + params.payload, b'#');
                (OpCode::Text, payload)
            }
            AttackKind::Ping => (OpCode::Ping, Vec::new()),
        };
        // Each frame its own masking key; the batch is whole frames, at least `BATCH` bytes.
        let mut mask_state = 0xA076_1D64_78BD_642Fu64;
        let mut batch = Vec::new();
        push_frame(&mut batch, opcode, &payload, next_mask(&mut mask_state));
        let frame_len = batch.len();
        while batch.len() < BATCH {
            push_frame(&mut batch, opcode, &payload, next_mask(&mut mask_state));
        }
        Ok(Self {
            kind: params.kind,
            stream: Some(stream),
            poll,
            events: Events::with_capacity(8),
            batch,
            frame_len,
            offset: 0,
            bytes_written: 0,
            writes: 0,
            would_blocks: 0,
            blocked: false,
            last_write: None,
            ended_at: None,
            end: None,
            reads: params.attacker_reads,
            unread: false,
            decoder: Decoder::new(Role::Client),
            scratch: vec![0; 256 << 10],
            bytes_read: 0,
            messages_read: 0,
            close_code: None,
            close_reason: None,
        })
    }

    /// Whole frames the kernel took.
    fn frames(&self) -> u64 {
        self.bytes_written / self.frame_len as u64
    }

    /// Whether the socket may take more bytes right now.
    fn can_write(&self) -> bool {
        self.stream.is_some() && !self.blocked
    }

    /// Writes what the socket takes (at most `WRITE_BUDGET`); `at` is the time since the
    /// attack started. Notices the server ending the connection.
    fn pump(&mut self, at: Duration, timeout: Duration) {
        if self.stream.is_none() {
            return;
        }
        let mut gone = None;
        let mut readable = false;
        if self
            .poll
            .poll(&mut self.events, Some(Duration::ZERO))
            .is_ok()
        {
            for event in self.events.iter() {
                if event.is_writable() {
                    self.blocked = false;
                }
                readable |= event.is_readable();
                if event.is_error() {
                    gone = Some("the connection failed (reset)".to_owned());
                }
            }
        }
        if (readable || self.unread) && self.reads {
            if let Some(why) = self.read_all(READ_BUDGET) {
                gone = Some(why);
            }
        }
        if let Some(why) = gone {
            return self.server_ended(why, at, timeout);
        }
        let Some(stream) = &mut self.stream else {
            return;
        };
        let mut budget = WRITE_BUDGET;
        while !self.blocked && budget > 0 {
            let end = self.batch.len().min(self.offset + budget);
            match stream.write(&self.batch[self.offset..end]) {
                Ok(0) => return self.server_ended("write returned 0".into(), at, timeout),
                Ok(n) => {
                    self.writes += 1;
                    self.bytes_written += n as u64;
                    self.offset = (self.offset + n) % self.batch.len();
                    budget = budget.saturating_sub(n);
                    self.last_write = Some(at);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.would_blocks += 1;
                    self.blocked = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.server_ended(format!("write failed: {e}"), at, timeout),
            }
        }
    }

    /// Reads (and decodes, to catch a close) what is available, at most about `limit` bytes
    /// (then `unread` says that more may be waiting: no new readiness edge will say so); the
    /// reason if the connection ended.
    fn read_all(&mut self, limit: u64) -> Option<String> {
        let stream = self.stream.as_mut()?;
        let stop_at = self.bytes_read + limit;
        self.unread = false;
        loop {
            if self.bytes_read >= stop_at {
                self.unread = true;
                return None;
            }
            match stream.read(&mut self.scratch) {
                Ok(0) => return Some("the server closed the TCP connection".into()),
                Ok(n) => {
                    self.bytes_read += n as u64;
                    let (mut messages, mut close) = (0u64, None);
                    let decoded = self
                        .decoder
                        .decode(&mut self.scratch[..n], 16 << 20, |event| match event {
                            Event::Close(frame) => {
                                close = Some(frame.map(|f| (f.code.0, f.reason.to_owned())));
                                ControlFlow::Break(())
                            }
                            _ => {
                                messages += 1;
                                ControlFlow::Continue(())
                            }
                        });
                    self.messages_read += messages;
                    if let Some(close) = close {
                        self.close_code = close.as_ref().map(|c| c.0);
                        self.close_reason = close.map(|c| c.1);
                        return Some("the server sent a close frame".into());
                    }
                    if let Err(e) = decoded {
                        return Some(format!("protocol error from the server: {e}"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(format!("read failed: {e}")),
            }
        }
    }

    /// The server ended the attack: look for its close frame among what it sent (bounded by
    /// time and bytes), then drop the socket.
    fn server_ended(&mut self, why: String, at: Duration, timeout: Duration) {
        let deadline = Instant::now() + timeout.min(Duration::from_secs(2));
        let limit = self.bytes_read + (256 << 20);
        while self.close_code.is_none() && Instant::now() < deadline && self.bytes_read < limit {
            if self.read_all(READ_BUDGET).is_some() {
                break;
            }
            if !self.unread {
                let _ = self
                    .poll
                    .poll(&mut self.events, Some(Duration::from_millis(10)));
            }
        }
        self.end = Some(why);
        self.ended_at = Some(at);
        self.stream = None;
    }

    /// The attack's time is up: one look at what the kernel holds for the attacker, for a
    /// close frame the server may have sent (without waiting for more), then the socket is
    /// dropped (a reset, since it holds unread bytes).
    fn stop(&mut self, at: Duration) {
        if self.stream.is_some() {
            if self.close_code.is_none() {
                let _ = self.read_all(READ_BUDGET);
            }
            self.stream = None;
            self.end = Some("schedule".into());
            self.ended_at = Some(at);
        }
    }

    fn report(&self) -> Value {
        let active = self.ended_at.unwrap_or_default().as_secs_f64();
        json!({
            "kind": self.kind.name(),
            "frame_bytes": self.frame_len,
            "bytes_written": self.bytes_written,
            "frames_written": self.frames(),
            "frames_per_s": if active > 0.0 { self.frames() as f64 / active } else { 0.0 },
            "writes": self.writes,
            "would_blocks": self.would_blocks,
            "last_write_ms": self.last_write.map(|t| t.as_millis() as u64),
            "end": self.end,
            "ended_at_ms": self.ended_at.map(|t| t.as_millis() as u64),
            "close_code": self.close_code,
            "close_reason": self.close_reason,
            "reads": self.reads,
            "bytes_read": self.bytes_read,
            "messages_read": self.messages_read,
        })
    }
}

/// CPU times and the moment they were read.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Duration,
    server: Option<Duration>,
    tool: Duration,
}

impl Mark {
    fn take(server_pids: &[u32], at: Duration) -> Self {
        Self {
            at,
            server: cpu_time_sum(server_pids),
            tool: cpu_time(None).unwrap_or_default(),
        }
    }
}

/// The server's CPU during the attack and the settle phase, from the marks at attack start,
/// attack end and settle end.
fn server_cpu(marks: &[Mark; 3]) -> Value {
    let (Some(start), Some(end), Some(settled)) =
        (marks[0].server, marks[1].server, marks[2].server)
    else {
        return Value::Null;
    };
    let attack = end.saturating_sub(start);
    let wall = marks[1].at.saturating_sub(marks[0].at).as_secs_f64();
    json!({
        "attack_ms": attack.as_millis() as u64,
        "attack_pct": if wall > 0.0 { 100.0 * attack.as_secs_f64() / wall } else { 0.0 },
        "settle_ms": settled.saturating_sub(end).as_millis() as u64,
    })
}

/// The server's RSS (summed over its pids) every `RSS_EVERY`, and at each phase change.
struct RssTimeline<'a> {
    pids: &'a [u32],
    /// (time since the shard started, bytes)
    samples: Vec<(Duration, u64)>,
    last: Option<Duration>,
}

impl RssTimeline<'_> {
    fn sample(&mut self, now: Duration) {
        if let Some(bytes) = rss_sum(self.pids) {
            self.samples.push((now, bytes));
        }
        self.last = Some(now);
    }

    fn maybe_sample(&mut self, now: Duration) {
        if !self.pids.is_empty() && self.last.map_or(true, |last| now >= last + RSS_EVERY) {
            self.sample(now);
        }
    }

    /// The first sample at or after `at`.
    fn at(&self, at: Duration) -> Option<(Duration, u64)> {
        self.samples.iter().find(|(t, _)| *t >= at).copied()
    }

    fn report(&self, marks: &[Mark; 3], attack_start: Duration, attack_end: Duration) -> Value {
        if self.samples.is_empty() {
            return Value::Null;
        }
        let before = self.at(marks[0].at).map(|(_, b)| b);
        let after = self.at(marks[2].at).map(|(_, b)| b);
        let peak = self
            .samples
            .iter()
            .filter(|(t, _)| *t >= marks[0].at)
            .max_by_key(|(_, b)| *b)
            .copied();
        let settle_end = marks[2].at;
        let mut after_attack = serde_json::Map::new();
        for secs in RSS_POINTS {
            let at = attack_end + Duration::from_secs(secs);
            if at <= settle_end {
                after_attack.insert(format!("{secs}s"), json!(self.at(at).map(|(_, b)| b)));
            }
        }
        // Every half second, as [seconds since the attack started, MiB].
        let mut timeline = Vec::new();
        let mut next = Duration::ZERO;
        for &(t, bytes) in &self.samples {
            if t >= next {
                let since = t.as_secs_f64() - attack_start.as_secs_f64();
                let mib = bytes as f64 / (1 << 20) as f64;
                timeline.push(json!([
                    (since * 10.0).round() / 10.0,
                    (mib * 10.0).round() / 10.0
                ]));
                next = t + Duration::from_millis(500);
            }
        }
        json!({
            "before": before,
            "peak": peak.map(|(_, b)| b),
            "peak_at_ms": peak.map(|(t, _)| t.saturating_sub(attack_start).as_millis() as u64),
            "after_settle": after,
            "after_attack": after_attack,
            "timeline_mib": timeline,
        })
    }
}

/// The server's `/stats`, read over a plain blocking connection (bounded by `timeout`).
fn fetch_stats(api: SocketAddr, timeout: Duration) -> Option<Value> {
    let mut stream = std::net::TcpStream::connect_timeout(&api, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut input = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        if let Some(head_end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&input[..head_end]).ok()?;
            let len: usize = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })?;
            if let Some(body) = input.get(head_end + 4..head_end + 4 + len) {
                return serde_json::from_slice(body).ok();
            }
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        input.extend_from_slice(&chunk[..n]);
    }
}

/// What changed in the server's `/stats` from before the baseline to the end of the settle
/// phase, and its queues then.
fn stats_delta(before: &Value, after: &Value) -> Value {
    let diff = |path: &[&str]| {
        let get = |v: &Value| path.iter().fold(v, |v, key| &v[*key]).as_u64();
        match (get(before), get(after)) {
            (Some(b), Some(a)) => json!(a.saturating_sub(b)),
            _ => Value::Null,
        }
    };
    let mut closes = serde_json::Map::new();
    if let Some(after_closes) = after["closes_by_code"].as_object() {
        for (code, count) in after_closes {
            let was = before["closes_by_code"][code].as_u64().unwrap_or(0);
            let now = count.as_u64().unwrap_or(0);
            if now > was {
                closes.insert(code.clone(), json!(now - was));
            }
        }
    }
    json!({
        "messages_in": diff(&["messages", "in"]),
        "messages_out": diff(&["messages", "out"]),
        "dropped": diff(&["messages", "dropped"]),
        "rate_limited_clients": diff(&["messages", "rate_limited_clients"]),
        "closes_by_code": closes,
        "queued_bytes_after_settle": after["queued_bytes"],
    })
}

/// Merges the shards' reports into the summary `out`; `cap` is what the user says the
/// server's send-queue caps allow, for the RSS growth ratio.
pub fn summarize(out: &mut Value, shards: &[Value], cap: Option<u64>) {
    let sum = |field: &str, i: usize| -> u64 {
        shards
            .iter()
            .map(|s| s[field][i].as_u64().unwrap_or(0))
            .sum()
    };
    let total =
        |field: &str| -> u64 { shards.iter().map(|s| s[field].as_u64().unwrap_or(0)).sum() };
    let first = |field: &str| -> Value {
        shards
            .iter()
            .find(|s| s[field].is_string())
            .map_or(Value::Null, |s| s[field].clone())
    };
    let lead = shards.first().cloned().unwrap_or(Value::Null);
    let attacker = lead["attacker"].clone();
    out["attack"] = attacker["kind"].clone();
    let floods_all = attacker["kind"] == "all";
    let mut probes = serde_json::Map::new();
    for (i, phase) in PHASES.iter().enumerate() {
        let (sent, received) = (sum("probe_sent", i), sum("probe_received", i));
        let mut hist = Latencies::new();
        for shard in shards {
            if let Some(h) = shard["probe_hist"][i].as_str().and_then(Latencies::decode) {
                hist.merge(&h);
            }
        }
        probes.insert(
            (*phase).to_owned(),
            json!({
                "sent": sent,
                "received": received,
                "lost": sent.saturating_sub(received),
                "latency_us": hist.summary(),
            }),
        );
    }
    probes.insert("duplicates".into(), json!(total("probe_duplicates")));
    probes.insert("misrouted".into(), json!(total("probe_misrouted")));
    // When in the run the slow probes arrived: the largest latency in each second since the
    // start (the attack starts at --baseline-secs), in milliseconds.
    let seconds = shards
        .iter()
        .map(|s| s["probe_max_us_by_second"].as_array().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    let by_second: Vec<u64> = (0..seconds)
        .map(|i| {
            let us = shards
                .iter()
                .map(|s| s["probe_max_us_by_second"][i].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0);
            us / 1000
        })
        .collect();
    probes.insert("max_ms_by_second".into(), json!(by_second));
    out["probes"] = Value::Object(probes);
    let gaps: Vec<u64> = (0..PHASES.len())
        .map(|i| {
            shards
                .iter()
                .map(|s| s["tool_max_loop_gap_us"][i].as_u64().unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    out["tool_max_loop_gap_ms"] = json!({
        "baseline": gaps[0] as f64 / 1e3, "attack": gaps[1] as f64 / 1e3, "settle": gaps[2] as f64 / 1e3,
    });
    let by_phase: Vec<u64> = (0..4).map(|i| sum("broadcasts", i)).collect();
    let deliveries: u64 = by_phase.iter().sum();
    out["broadcast_deliveries"] = json!(deliveries);
    out["broadcast_deliveries_by_phase"] = json!({
        "baseline": by_phase[0], "attack": by_phase[1], "settle": by_phase[2], "drain": by_phase[3],
    });
    // The attack frames the server dispatched, as each healthy client saw them (frames the
    // kernel took from the attacker may never have been read by the server).
    let conns = total("conns");
    if floods_all && conns > 0 {
        out["broadcasts_per_healthy_conn"] = json!(deliveries as f64 / conns as f64);
    }
    out["server_errors"] = json!(total("server_errors"));
    out["first_server_error"] = first("first_server_error");
    out["unexpected"] = json!(total("unexpected"));
    out["first_unexpected"] = first("first_unexpected");
    out["closes"] = json!(total("closes"));
    out["attacker"] = attacker;

    let rss = &lead["rss"];
    let before = rss["before"].as_u64();
    let peak = rss["peak"].as_u64();
    let after = rss["after_settle"].as_u64();
    out["rss_before"] = json!(before);
    out["rss_peak"] = json!(peak);
    out["rss_peak_at_ms"] = rss["peak_at_ms"].clone();
    let growth = before.zip(peak).map(|(b, p)| p.saturating_sub(b));
    out["rss_growth_peak"] = json!(growth);
    out["rss_after_attack"] = rss["after_attack"].clone();
    out["rss_after_settle"] = json!(after);
    let after_minus_before = before.zip(after).map(|(b, a)| a as i64 - b as i64);
    out["rss_after_minus_before"] = json!(after_minus_before);
    out["rss_timeline_mib"] = rss["timeline_mib"].clone();
    out["cap_bytes"] = json!(cap);
    let vs_cap = growth
        .zip(cap.filter(|&c| c > 0))
        .map(|(g, c)| g as f64 / c as f64);
    out["rss_growth_peak_vs_cap"] = json!(vs_cap);
    out["server_cpu_attack"] = lead["server_cpu"].clone();
    out["tool_cpu_attack_ms"] = json!(total("tool_cpu_attack_ns") / 1_000_000);
    if !lead["server_stats"].is_null() {
        let stats = &lead["server_stats"];
        if floods_all {
            // Messages the server took in, less the probes: the attack frames it read.
            let probes: u64 = (0..PHASES.len()).map(|i| sum("probe_sent", i)).sum();
            out["attack_frames_read_by_server"] = json!(stats["messages_in"]
                .as_u64()
                .map(|n| n.saturating_sub(probes)));
        }
        out["server_stats"] = stats.clone();
    }
    // The targets, as read from these figures (null: not measured).
    let attack_p99 = out["probes"]["attack"]["latency_us"]["p99"].as_u64();
    out["targets"] = json!({
        "rss_growth_within_cap_plus_10pct": vs_cap.map(|r| r <= 1.1),
        "attack_probe_p99_le_50ms": attack_p99.map(|p| p <= 50_000),
        "rss_after_settle_within_10mib": after_minus_before.map(|d| d.unsigned_abs() <= 10 << 20),
    });
}

/// Parses a byte size such as `1048576`, `64KiB` or `1GiB`, as the server's options take it.
pub fn parse_size(text: &str) -> Result<u64, String> {
    wspush::parse_size(text).map(|size| size as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trips_with_its_phase() {
        let stamp = Stamp {
            sender: 7,
            seq: 42,
            recipient: 1234,
            sent_at: 99,
        };
        let payload = encode_probe(&stamp, 1, 64);
        let body = &payload[payload.iter().position(|&b| b == b':').unwrap() + 1..];
        assert_eq!(body.len(), 64);
        let (phase, back) = decode_probe(body).unwrap();
        assert_eq!(
            (phase, back.sender, back.seq, back.recipient, back.sent_at),
            (1, 7, 42, 1234, 99)
        );
        assert!(decode_probe(b"########").is_none());
        assert!(decode_probe(b"").is_none());
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1XB").is_err());
    }
}
