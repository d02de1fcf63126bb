#!/usr/bin/env bash
# Side by side in one run: the figures a change must not regress, for a baseline server binary
# and this checkout's, with the same load tool (this checkout's wspush-bench). Runs alternate
# (baseline, candidate, baseline, ...) on fresh servers so that drift on a noisy host hits both
# columns alike; prints the median of RUNS runs (default 3) per figure and column.
#
# usage: scripts/compare.sh BASELINE_WSPUSH_BINARY    (ONLY="direct-window ..." runs a subset)
#   e.g. git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release --bin wspush)
#        scripts/compare.sh /tmp/base/target/release/wspush
# Needs 2 CPUs and taskset: the server runs on CPU 0, the tool on CPU 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BASELINE=${1:?usage: scripts/compare.sh BASELINE_WSPUSH_BINARY}
RUNS=${RUNS:-3}
cargo build --release --bins -q
CANDIDATE=target/release/wspush
BENCH="taskset -c 1 target/release/wspush-bench"
OUT=${OUT:-target/compare}
mkdir -p "$OUT"
rm -f "$OUT"/*.jsonl

. scripts/server.sh
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true' EXIT

run() {  # name, then wspush-bench arguments
  local name=$1 i side bin; shift
  case " ${ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
  for i in $(seq "$RUNS"); do
    for side in baseline candidate; do
      if [ "$side" = baseline ]; then bin=$BASELINE; else bin=$CANDIDATE; fi
      WSPUSH_BIN=$bin start_server
      $BENCH --addr "$ADDR" --server-pid "$SERVER_PID" "$@" 2>/dev/null >>"$OUT/$name.$side.jsonl"
      stop_server
    done
  done
}

run memory-10k connect --conns 10000
run broadcast-10k broadcast --conns 10000 --rounds 200
run direct-window direct --conns 1000 --senders 100 --window 16 --msgs 400000

python3 - "$OUT" <<'PY'
import json, statistics, sys, os
out = sys.argv[1]
def med(name, side, path):
    vals = []
    for line in open(os.path.join(out, "%s.%s.jsonl" % (name, side))):
        v = json.loads(line)
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if v is not None:
            vals.append(v)
    return (round(statistics.median(vals), 3) if vals else None), [round(v, 3) for v in vals]
print("%-58s %-26s %s" % ("figure (median of runs)", "baseline", "candidate"))
done = {os.path.basename(f).split(".")[0] for f in os.listdir(out)}
for name, path, label in [
    ("memory-10k", ["server_rss_per_conn"], "RSS per idle bound connection at 10k (B)"),
    ("memory-10k", ["connects_per_s"], "connect+bind 10k: connections/s"),
    ("memory-10k", ["connect_server_cpu_us_per_conn"], "connect+bind 10k: server CPU per conn (us)"),
    ("broadcast-10k", ["server_cpu_per_delivery_vs_floor"], "broadcast 10k: server CPU per delivery / floor"),
    ("broadcast-10k", ["server_cpu_us_per_delivery"], "broadcast 10k: server CPU per delivery (us)"),
    ("direct-window", ["server_cpu_per_msg_vs_floor"], "direct 1k/100 senders/window 16: CPU per msg / floor"),
    ("direct-window", ["server_cpu_us_per_msg"], "direct 1k/100 senders/window 16: CPU per msg (us)"),
    ("direct-window", ["msgs_per_s"], "direct 1k/100 senders/window 16: msgs/s"),
]:
    if name not in done:
        continue
    b, bv = med(name, "baseline", path)
    c, cv = med(name, "candidate", path)
    print("%-58s %-26s %s" % (label, "%s %s" % (b, bv), "%s %s" % (c, cv)))
PY
