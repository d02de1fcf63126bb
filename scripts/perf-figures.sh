#!/usr/bin/env bash
# Reproduces the Performance table of README.md: the server pinned to CPU 0, wspush-bench to
# CPU 1, each scenario run RUNS times (default 3) on a fresh server; prints one JSON summary per
# run and a line of medians per figure. Needs 2 CPUs and taskset (util-linux).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-3}
cargo build --release --bins -q
BENCH="taskset -c 1 target/release/wspush-bench"
OUT=${OUT:-target/perf}
mkdir -p "$OUT"

. scripts/server.sh
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true' EXIT

run() {  # name, then wspush-bench arguments
  local name=$1; shift
  for i in $(seq "$RUNS"); do
    start_server
    $BENCH --addr "$ADDR" --server-pid "$SERVER_PID" "$@" 2>/dev/null | tee -a "$OUT/$name.jsonl"
    stop_server
  done
}

rm -f "$OUT"/*.jsonl
run memory-1k connect --conns 1000
run memory-10k connect --conns 10000
run memory-19k connect --conns 19000
run broadcast-10k broadcast --conns 10000 --rounds 200
run direct-window direct --conns 1000 --senders 100 --window 16 --msgs 400000
run direct-paced direct --conns 1000 --senders 100 --msgs 200000 --msg-rate 20000 --floor-writes 0
run connect-10k connect --conns 10000
run connect-10k-early --early-login connect --conns 10000

python3 - "$OUT" <<'PY'
import json, statistics, sys, glob, os
out = sys.argv[1]
def med(name, path):
    rows = [json.loads(l) for l in open(os.path.join(out, name + ".jsonl"))]
    vals = []
    for r in rows:
        v = r
        for k in path: v = v.get(k) if isinstance(v, dict) else None
        if v is not None: vals.append(v)
    return statistics.median(vals) if vals else None, vals
for name, path, label in [
    ("memory-1k", ["server_rss_per_conn"], "RSS per idle connection, 1k (bytes)"),
    ("memory-10k", ["server_rss_per_conn"], "RSS per idle connection, 10k (bytes)"),
    ("memory-19k", ["server_rss_per_conn"], "RSS per idle connection, 19k (bytes)"),
    ("broadcast-10k", ["server_cpu_per_delivery_vs_floor"], "broadcast 10k: server CPU per delivery / floor"),
    ("broadcast-10k", ["server_cpu_us_per_delivery"], "broadcast 10k: server CPU per delivery (us)"),
    ("broadcast-10k", ["floor", "cpu_us_per_write"], "broadcast 10k: floor per write (us)"),
    ("broadcast-10k", ["time_to_last_us", "p99"], "broadcast 10k: time to last recipient p99 (us)"),
    ("direct-window", ["server_cpu_per_msg_vs_floor"], "direct window 16: server CPU per message / floor"),
    ("direct-window", ["server_cpu_us_per_msg"], "direct window 16: server CPU per message (us)"),
    ("direct-window", ["floor", "cpu_us_per_write"], "direct window 16: floor per write (us)"),
    ("direct-window", ["msgs_per_s"], "direct window 16: delivered msgs/s"),
    ("direct-paced", ["latency_us", "p99"], "direct paced 20k/s: p99 latency (us)"),
    ("direct-paced", ["latency_us", "p50"], "direct paced 20k/s: p50 latency (us)"),
    ("connect-10k", ["connects_per_s"], "connect+bind 10k: connections/s"),
    ("connect-10k", ["connect_tool_cpu_us_per_conn"], "connect+bind 10k: tool CPU per connection (us)"),
    ("connect-10k", ["connect_server_cpu_us_per_conn"], "connect+bind 10k: server CPU per connection (us)"),
    ("connect-10k-early", ["connects_per_s"], "connect+bind 10k, --early-login: connections/s"),
    ("connect-10k-early", ["connect_tool_cpu_us_per_conn"], "connect+bind 10k, --early-login: tool CPU per connection (us)"),
    ("direct-paced", ["host_steal_pct"], "direct paced 20k/s: host CPU steal (%)"),
    ("direct-window", ["host_steal_pct"], "direct window 16: host CPU steal (%)"),
]:
    m, vals = med(name, path)
    print("%-55s median %-10s runs %s" % (label, None if m is None else round(m, 3), [round(v, 3) for v in vals]))
PY
