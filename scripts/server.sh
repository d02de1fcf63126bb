# Sourced by the measurement scripts: starts and stops a release wspush pinned to CPU 0, the way
# every published figure is taken. Needs $OUT (a directory for the server's log); WSPUSH_BIN picks
# another server binary (default target/release/wspush); SERVER_ARGS adds options (e.g. --tls-cert).

# Starts the server; sets SERVER_PID, ADDR (WebSocket) and API (push API).
start_server() {
  # The load tools send broadcasts back to back, far past the default fan-out allowance per
  # client; given as the environment, so that a baseline binary without the option ignores it.
  WSPUSH_CLIENT_FANOUT_RATE=off RUST_LOG=info taskset -c 0 "${WSPUSH_BIN:-target/release/wspush}" --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 \
    --ping-interval off --idle-timeout off ${SERVER_ARGS:-} 2>"$OUT/server.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    ADDR=$(sed -n 's/.* listening on \([0-9.:]*\) .*/\1/p' "$OUT/server.log" 2>/dev/null)
    API=$(sed -n 's#.*push API listening on http://\([0-9.:]*\).*#\1#p' "$OUT/server.log" 2>/dev/null)
    [ -n "$ADDR" ] && [ -n "$API" ] && return
    sleep 0.05
  done
  echo "server did not start" >&2; exit 1
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
