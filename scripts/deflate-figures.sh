#!/usr/bin/env bash
# The permessage-deflate figures of README.md ("Compression"): clients without and with deflate
# side by side, the server (default --compression shared) pinned to CPU 0 and wspush-bench to
# CPU 1, each scenario RUNS times (default 3) on a fresh server, alternating; prints one JSON
# summary per run and a line of medians per figure.
#   - idle RSS per bound connection at 10,000, with and without deflate negotiated
#   - broadcast of a 1 KiB JSON message to 10,000: server CPU per delivery as a ratio to the
#     write floor, and bytes on the wire per delivery
# Needs 2 CPUs and taskset (util-linux).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-3}
cargo build --release --bins -q
BENCH="taskset -c 1 target/release/wspush-bench"
OUT=${OUT:-target/perf-deflate}
mkdir -p "$OUT"

. scripts/server.sh
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true' EXIT

run() {  # name, then wspush-bench arguments
  local name=$1; shift
  start_server
  $BENCH --addr "$ADDR" --server-pid "$SERVER_PID" "$@" 2>/dev/null | tee -a "$OUT/$name.jsonl"
  stop_server
}

rm -f "$OUT"/*.jsonl
for _ in $(seq "$RUNS"); do
  run memory-plain connect --conns 10000
  run memory-deflate --deflate connect --conns 10000
  run broadcast-plain broadcast --conns 10000 --rounds 200 --size 1024 --json
  run broadcast-deflate --deflate broadcast --conns 10000 --rounds 200 --size 1024 --json
done

python3 scripts/medians.py "$OUT" <<'ROWS'
memory-plain|server_rss_per_conn|idle RSS per bound connection, 10k, no deflate (bytes)
memory-deflate|server_rss_per_conn|idle RSS per bound connection, 10k, deflate (bytes)
broadcast-plain|server_cpu_per_delivery_vs_floor|broadcast 1 KiB JSON to 10k, no deflate: CPU per delivery / floor
broadcast-deflate|server_cpu_per_delivery_vs_floor|broadcast 1 KiB JSON to 10k, deflate: CPU per delivery / floor
broadcast-plain|server_cpu_us_per_delivery|broadcast 1 KiB JSON to 10k, no deflate: CPU per delivery (us)
broadcast-deflate|server_cpu_us_per_delivery|broadcast 1 KiB JSON to 10k, deflate: CPU per delivery (us)
broadcast-plain|bytes_per_delivery|broadcast 1 KiB JSON to 10k, no deflate: bytes per delivery
broadcast-deflate|bytes_per_delivery|broadcast 1 KiB JSON to 10k, deflate: bytes per delivery
broadcast-plain|floor.cpu_us_per_write|floor per write, no-deflate runs (us)
broadcast-deflate|floor.cpu_us_per_write|floor per write, deflate runs (us)
ROWS
