#!/usr/bin/env bash
# Counts what the kernel does on the server's behalf during one wspush-bench run, per unit of
# work (message, delivery or connection): system calls by name, TCP segments sent from the
# server's context (data and ACKs), inter-processor interrupts and task wake-ups it caused.
# CPU time on a shared VM drifts from run to run; these counts do not, so they show where the
# time goes when `perf` is unavailable. Needs root and tracefs; the server on CPU 0 and the
# tool on CPU 1, as in scripts/perf-figures.sh.
#
#   scripts/kernel-events.sh                    # direct, 1,000 connections, window 16
#   scripts/kernel-events.sh broadcast --conns 10000 --rounds 50 --floor-writes 0
#   scripts/kernel-events.sh connect --conns 10000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -gt 0 ] || set -- direct --conns 1000 --senders 100 --window 16 --msgs 200000 --floor-writes 0
T=/sys/kernel/tracing
[ -d "$T/events" ] || mount -t tracefs nodev "$T"
cargo build --release --bins -q
OUT=${OUT:-target/perf}
mkdir -p "$OUT"

. scripts/server.sh
start_server
trap 'kill "$SERVER_PID" 2>/dev/null || true; echo 0 > "$T/tracing_on"; echo 0 > "$T/events/enable"' EXIT

EVENTS="raw_syscalls/sys_enter net/net_dev_xmit ipi/ipi_send_cpu ipi/ipi_send_cpumask sched/sched_wakeup"
echo 0 > "$T/tracing_on"
echo 0 > "$T/events/enable"
echo > "$T/trace"
echo 65536 > "$T/buffer_size_kb"
for event in $EVENTS; do
  echo "common_pid == $SERVER_PID" > "$T/events/$event/filter"
  echo 1 > "$T/events/$event/enable"
done
echo 1 > "$T/tracing_on"
taskset -c 1 target/release/wspush-bench --addr "$ADDR" --server-pid "$SERVER_PID" "$@" \
  2>/dev/null > "$OUT/kernel-events.json"
echo 0 > "$T/tracing_on"
for event in $EVENTS; do
  echo 0 > "$T/events/$event/enable"
  echo 0 > "$T/events/$event/filter"
done
cat "$T/trace" > "$OUT/kernel-events.trace"
echo > "$T/trace"

python3 - "$OUT" <<'PY'
import collections, json, re, sys
out = sys.argv[1]
summary = json.load(open(out + "/kernel-events.json"))
for unit in ("delivered", "deliveries", "conns"):
    if summary.get(unit):
        units = summary[unit]
        break
names = {0: "read", 1: "write", 20: "writev", 232: "epoll_wait", 233: "epoll_ctl",
         281: "epoll_pwait", 288: "accept4", 44: "sendto", 45: "recvfrom", 48: "shutdown",
         3: "close", 46: "sendmsg", 47: "recvmsg", 19: "readv"}
counts = collections.Counter()
lost = False
for line in open(out + "/kernel-events.trace"):
    if line.startswith("#"):
        lost |= "LOST" in line
        continue
    match = re.search(r"\s(\w+): (.*)", line)
    if not match:
        continue
    event, fields = match.groups()
    if event == "sys_enter":
        nr = int(re.search(r"NR (\d+)", fields).group(1))
        counts["syscall " + names.get(nr, "nr %d" % nr)] += 1
    elif event == "net_dev_xmit":
        counts["TCP segments sent"] += 1
    elif event.startswith("ipi_send"):
        counts["IPIs sent"] += 1
    elif event == "sched_wakeup":
        counts["tasks woken"] += 1
print("scenario %s: %d units (%s); server CPU figures from the run: %s" % (
    summary["scenario"], units, unit,
    {k: round(v, 3) for k, v in summary.items() if k.startswith("server_cpu") and isinstance(v, float)}))
for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
    print("  %-24s %10d  %8.3f per unit" % (name, n, n / units))
if lost:
    print("  (the trace buffer overflowed: counts are low; use a shorter run)")
PY
