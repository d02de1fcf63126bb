//! `wspush-bench` keeps working: each scenario runs at small scale against the real server and
//! its JSON summary must report every message delivered, none lost, duplicated or misrouted.
//! (Figures are not checked here: speed is measured by running the tool, not by tests.)
//! Against two cluster nodes on a real Redis, `direct --cross-node` must deliver every message
//! through Redis and sum both nodes' figures.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::*;
use serde_json::Value;

/// Runs `wspush-bench` with `args` against `server`; returns its JSON summary.
fn bench(server: &BinaryServer, args: &[&str]) -> Value {
    let (addr, pid) = (server.addr.to_string(), server.pid().to_string());
    let mut all = vec!["--addr", &addr, "--server-pid", &pid];
    all.extend_from_slice(args);
    run_bench(&all)
}

/// Runs `wspush-bench` with `args` (which name the servers); returns its JSON summary.
fn run_bench(args: &[&str]) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wspush-bench"))
        .args(["--timeout", "5s"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wspush-bench");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wspush-bench {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "wspush-bench {args:?} failed: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn push_server() -> BinaryServer {
    BinaryServer::start(&["--ping-interval", "off", "--idle-timeout", "off"])
}

fn assert_clean(summary: &Value, conns: u64) {
    assert_eq!(summary["conns"], conns, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    for field in ["lost", "duplicates", "misrouted"] {
        if !summary[field].is_null() {
            assert_eq!(summary[field], 0, "{field} in {summary}");
        }
    }
}

#[test]
fn connect_opens_binds_and_measures_server_memory() {
    let server = push_server();
    let summary = bench(&server, &["connect", "--conns", "200"]);
    assert_eq!(summary["scenario"], "connect");
    assert_clean(&summary, 200);
    assert!(summary["connects_per_s"].as_f64().unwrap() > 0.0);
    assert!(summary["server_rss_per_conn"].is_number(), "{summary}");
    assert!(summary["handshake_us"]["p50"].is_u64(), "{summary}");
    // Both sides' CPU per connection while connecting, to show which one limits the rate.
    assert!(
        summary["connect_tool_cpu_us_per_conn"].is_number(),
        "{summary}"
    );
    assert!(
        summary["connect_server_cpu_us_per_conn"].is_number(),
        "{summary}"
    );
}

#[test]
fn connect_with_early_login_binds_every_connection() {
    let server = push_server();
    let summary = bench(&server, &["--early-login", "connect", "--conns", "200"]);
    assert_clean(&summary, 200);
}

#[test]
fn connect_splits_over_processes_and_sums_them() {
    let server = push_server();
    let summary = bench(&server, &["--procs", "2", "connect", "--conns", "300"]);
    assert_eq!(summary["procs"], 2);
    assert_clean(&summary, 300);
}

#[test]
fn direct_closed_loop_delivers_every_message_once() {
    let server = push_server();
    let summary = bench(
        &server,
        &[
            "direct",
            "--conns",
            "50",
            "--senders",
            "10",
            "--window",
            "4",
            "--msgs",
            "2000",
            "--floor-writes",
            "2000",
        ],
    );
    assert_clean(&summary, 50);
    assert_eq!(
        (summary["sent"].as_u64(), summary["delivered"].as_u64()),
        (Some(2000), Some(2000))
    );
    assert!(summary["latency_us"]["p99"].is_u64(), "{summary}");
    assert!(
        summary["floor"]["cpu_us_per_write"].is_number(),
        "{summary}"
    );
    assert!(summary["server_cpu_us_per_msg"].is_number(), "{summary}");
}

#[test]
fn direct_open_loop_over_two_processes_delivers_every_message_once() {
    let server = push_server();
    let summary = bench(
        &server,
        &[
            "--procs",
            "2",
            "direct",
            "--conns",
            "40",
            "--senders",
            "10",
            "--msgs",
            "2000",
            "--msg-rate",
            "4000",
            "--floor-writes",
            "0",
        ],
    );
    assert_clean(&summary, 40);
    assert_eq!(
        (summary["sent"].as_u64(), summary["delivered"].as_u64()),
        (Some(2000), Some(2000))
    );
}

#[test]
fn broadcast_reaches_every_recipient_every_round() {
    let server = push_server();
    let summary = bench(
        &server,
        &[
            "broadcast",
            "--conns",
            "100",
            "--rounds",
            "20",
            "--floor-writes",
            "2000",
        ],
    );
    assert_clean(&summary, 100);
    assert_eq!(summary["deliveries"], 2000, "{summary}");
    assert!(summary["time_to_last_us"]["p99"].is_u64(), "{summary}");
    assert!(
        summary["server_cpu_us_per_delivery"].is_number(),
        "{summary}"
    );
    assert_eq!(summary["floor"]["writes"], 2000, "{summary}");
}

#[test]
fn push_delivers_every_api_request_to_its_recipient() {
    let server = push_server();
    let api = server.api.unwrap().to_string();
    let summary = bench(
        &server,
        &[
            "push",
            "--api",
            &api,
            "--conns",
            "50",
            "--requests",
            "1000",
            "--window",
            "4",
        ],
    );
    assert_clean(&summary, 50);
    assert_eq!(
        (summary["requests"].as_u64(), summary["delivered"].as_u64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(summary["failed"], 0, "{summary}");
}

#[test]
fn floor_reports_cpu_per_write() {
    let server = push_server();
    let summary = bench(&server, &["floor", "--conns", "20", "--writes", "5000"]);
    assert_eq!(summary["floor"]["writes"], 5000, "{summary}");
    assert!(
        summary["floor"]["cpu_us_per_write"].is_number(),
        "{summary}"
    );
}

/// Checks what every `attack` summary must hold, whatever the machine's speed.
fn assert_attack_report(summary: &Value, conns: u64, kind: &str) {
    assert_eq!(summary["scenario"], "attack", "{summary}");
    assert_eq!(summary["attack"], kind, "{summary}");
    assert_clean(summary, conns);
    let probes = &summary["probes"];
    // Before the attack nothing may be lost; later phases report their losses, whatever they are.
    let baseline = &probes["baseline"];
    assert!(baseline["sent"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(baseline["lost"], 0, "{summary}");
    assert!(baseline["latency_us"]["p99"].is_u64(), "{summary}");
    for phase in ["attack", "settle"] {
        let sent = probes[phase]["sent"].as_u64().unwrap();
        let received = probes[phase]["received"].as_u64().unwrap();
        assert!(sent > 0 && received <= sent, "{phase} in {summary}");
    }
    assert_eq!(probes["duplicates"], 0, "{summary}");
    assert_eq!(probes["misrouted"], 0, "{summary}");
    assert_eq!(summary["unexpected"], 0, "{summary}");
    let attacker = &summary["attacker"];
    assert!(
        attacker["frames_written"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(attacker["end"], "schedule", "{summary}");
    for field in [
        "rss_before",
        "rss_peak",
        "rss_growth_peak",
        "rss_after_settle",
        "rss_after_minus_before",
    ] {
        assert!(summary[field].is_number(), "{field} in {summary}");
    }
    assert!(summary["rss_after_attack"]["1s"].is_u64(), "{summary}");
    assert!(
        summary["server_cpu_attack"]["attack_ms"].is_u64(),
        "{summary}"
    );
    assert!(summary["server_stats"]["messages_in"].is_u64(), "{summary}");
}

#[test]
fn attack_floods_all_over_two_processes_and_reports_probes_memory_and_the_attacker() {
    let server = push_server();
    let api = server.api.unwrap().to_string();
    let summary = bench(
        &server,
        &[
            "--procs",
            "2",
            "attack",
            "--conns",
            "50",
            "--attack",
            "all",
            "--baseline-secs",
            "1",
            "--attack-secs",
            "1",
            "--settle-secs",
            "1",
            "--probe-rate",
            "200",
            "--probe-senders",
            "10",
            "--cap-bytes",
            "64MiB",
            "--api",
            &api,
        ],
    );
    assert_attack_report(&summary, 50, "all");
    // Healthy clients got the attacker's broadcasts (checked against its payload), and the
    // server says it read attack frames.
    assert!(
        summary["broadcast_deliveries"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(
        summary["attack_frames_read_by_server"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_eq!(summary["cap_bytes"], 64 << 20, "{summary}");
    assert!(summary["rss_growth_peak_vs_cap"].is_number(), "{summary}");
}

#[test]
fn attack_floods_pings_and_reports_what_the_attacker_got_out() {
    let server = push_server();
    let api = server.api.unwrap().to_string();
    let summary = bench(
        &server,
        &[
            "attack",
            "--conns",
            "50",
            "--attack",
            "ping",
            "--baseline-secs",
            "1",
            "--attack-secs",
            "1",
            "--settle-secs",
            "1",
            "--probe-rate",
            "200",
            "--probe-senders",
            "10",
            "--api",
            &api,
        ],
    );
    assert_attack_report(&summary, 50, "ping");
    assert_eq!(summary["broadcast_deliveries"], 0, "{summary}");
    // An empty masked ping: 2 header bytes and the masking key.
    assert_eq!(summary["attacker"]["frame_bytes"], 6, "{summary}");
}

fn cluster_node(redis: &RedisServer) -> BinaryServer {
    common::redis::cluster_node(&redis.url(), &[])
}

/// The pid of `redis`, from `INFO server`.
fn redis_pid(redis: &RedisServer) -> String {
    let info = redis.command(&["INFO", "server"]).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .unwrap_or_else(|| panic!("no process_id in {info}"))
        .trim()
        .to_owned()
}

#[test]
fn direct_cross_node_delivers_every_message_through_redis_and_sums_both_nodes() {
    let redis = RedisServer::start();
    let (one, two) = (cluster_node(&redis), cluster_node(&redis));
    let (addr_one, addr_two) = (one.addr.to_string(), two.addr.to_string());
    let pids = format!("{},{}", one.pid(), two.pid());
    let redis_pid = redis_pid(&redis);
    let summary = run_bench(&[
        "--addr",
        &addr_one,
        "--addr",
        &addr_two,
        "--server-pid",
        &pids,
        "--redis-pid",
        &redis_pid,
        "direct",
        "--conns",
        "40",
        "--senders",
        "10",
        "--cross-node",
        "--window",
        "4",
        "--msgs",
        "1000",
        "--floor-writes",
        "0",
    ]);
    assert_clean(&summary, 40);
    assert_eq!(summary["addrs"], 2, "{summary}");
    assert_eq!(summary["cross_node"], true, "{summary}");
    assert_eq!(
        (summary["sent"].as_u64(), summary["delivered"].as_u64()),
        (Some(1000), Some(1000)),
        "{summary}"
    );
    assert!(summary["latency_us"]["p99"].is_u64(), "{summary}");
    // Both nodes' figures one by one and summed, and Redis's apart.
    let procs = summary["server_procs"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "{summary}");
    let rss: u64 = procs
        .iter()
        .map(|p| p["rss_connected"].as_u64().unwrap())
        .sum();
    assert_eq!(summary["server_rss_total"], rss, "{summary}");
    assert!(summary["server_cpu_ns_total"].is_u64(), "{summary}");
    assert!(summary["redis_cpu_ns"].is_u64(), "{summary}");
    assert!(summary["server_rss_per_conn"].is_number(), "{summary}");
}
