#!/usr/bin/env bash
# The TLS figures of README.md ("TLS"): plain ws and wss side by side in one run, the server
# pinned to CPU 0 and wspush-bench to CPU 1, each scenario RUNS times (default 3) on a fresh
# server, alternating ws and wss; prints one JSON summary per run and a line of medians per figure.
#   - idle RSS per bound connection at 10,000 (ws, wss)
#   - connect+bind 10,000: server CPU per connection, full and resumed handshakes, ECDSA and RSA
#   - broadcast to 10,000: server CPU per delivery as a ratio to the write floor (ws, wss)
# Needs 2 CPUs and taskset (util-linux).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-3}
cargo build --release --bins -q
BENCH="taskset -c 1 target/release/wspush-bench"
OUT=${OUT:-target/perf-tls}
CA=tests/certs/ca.pem
mkdir -p "$OUT"

. scripts/server.sh
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true' EXIT

tls_args() { echo "--tls-cert tests/certs/$1.pem --tls-key tests/certs/$1.key"; }

run() {  # name, server arguments, then wspush-bench arguments
  local name=$1 args=$2; shift 2
  SERVER_ARGS=$args start_server
  $BENCH --addr "$ADDR" --server-pid "$SERVER_PID" "$@" 2>/dev/null | tee -a "$OUT/$name.jsonl"
  stop_server
}

rm -f "$OUT"/*.jsonl
for _ in $(seq "$RUNS"); do
  run memory-ws "" connect --conns 10000
  run memory-wss "$(tls_args ecdsa)" --tls $CA connect --conns 10000
  run connect-ecdsa-full "$(tls_args ecdsa)" --tls $CA connect --conns 10000
  run connect-ecdsa-resumed "$(tls_args ecdsa)" --tls $CA --tls-resume connect --conns 10000
  run connect-rsa-full "$(tls_args rsa)" --tls $CA connect --conns 10000
  run connect-rsa-resumed "$(tls_args rsa)" --tls $CA --tls-resume connect --conns 10000
  run broadcast-ws "" broadcast --conns 10000 --rounds 200
  run broadcast-wss "$(tls_args ecdsa)" --tls $CA broadcast --conns 10000 --rounds 200
done

python3 scripts/medians.py "$OUT" <<'ROWS'
memory-ws|server_rss_per_conn|idle RSS per bound connection, 10k, ws (bytes)
memory-wss|server_rss_per_conn|idle RSS per bound connection, 10k, wss (bytes)
memory-ws|connect_server_cpu_us_per_conn|connect+bind, ws: server CPU per connection (us)
connect-ecdsa-full|connect_server_cpu_us_per_conn|connect+bind, wss ECDSA full: server CPU per connection (us)
connect-ecdsa-resumed|connect_server_cpu_us_per_conn|connect+bind, wss ECDSA resumed: server CPU per connection (us)
connect-rsa-full|connect_server_cpu_us_per_conn|connect+bind, wss RSA full: server CPU per connection (us)
connect-rsa-resumed|connect_server_cpu_us_per_conn|connect+bind, wss RSA resumed: server CPU per connection (us)
connect-ecdsa-resumed|tls_resumed_handshakes|connect+bind, wss ECDSA resumed: handshakes resumed of 10,000
connect-ecdsa-full|connects_per_s|connect+bind, wss ECDSA full: connections/s (tool-bound)
broadcast-ws|server_cpu_per_delivery_vs_floor|broadcast 10k, ws: server CPU per delivery / floor
broadcast-wss|server_cpu_per_delivery_vs_floor|broadcast 10k, wss: server CPU per delivery / floor
broadcast-ws|server_cpu_us_per_delivery|broadcast 10k, ws: server CPU per delivery (us)
broadcast-wss|server_cpu_us_per_delivery|broadcast 10k, wss: server CPU per delivery (us)
ROWS
echo "handshakes per second of one core: 1e6 / (server CPU per connection); the TLS part alone:"
echo "1e6 / (that minus the ws figure)"
