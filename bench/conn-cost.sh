#!/usr/bin/env bash
# What the per-socket programs cost processes that are not traced (docs/kernel.md, "Per
# connection"): a Go net/http server (bench/capture-cost-server.go, GOMAXPROCS=1, CPU 1) under
# wrk with a new connection per request (Connection: close; wrk -t1 -c8 on CPU 0), neither
# traced, while the loader traces an idle process (its data path attached). Prints, per loader
# and round, the requests a second (server and client together on the host's two CPUs), the
# server's CPU per request (getrusage; its sockets' softirq work runs partly on wrk's CPU) and,
# from the kernel's own program statistics (kernel.bpf_stats_enabled, on only for the run),
# the runs and time of each of that loader's socket programs per connection.
#   bench/conn-cost.sh [rounds=3] [seconds=8] [LOADER...]
# LOADER: a loader binary (default src/bpf/build/seqtrace-loader); several alternate per round.
# SHUTDOWNS=1: the loader is asked for shutdown events first (`shutdowns`, as the agent does once
# a traced server answered until the close), which attaches sock_state to every state change.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; SECS=${2:-8}
shift $(($# < 2 ? $# : 2))
LOADERS=("$@")
[ ${#LOADERS[@]} -gt 0 ] || { LOADERS=(src/bpf/build/seqtrace-loader); [ -x "${LOADERS[0]}" ] || make -s -C src/bpf; }
command -v wrk >/dev/null || { echo "wrk is needed (scripts/install.sh --test)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/seqtrace-conn-cost.XXXXXX)
WAS=$(sysctl -n kernel.bpf_stats_enabled)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled="$WAS"; rm -rf "$TMP"; }
trap cleanup EXIT
HOME=${HOME:-/root} GOCACHE=${GOCACHE:-$TMP/gocache} go build -o "$TMP/server" bench/capture-cost-server.go
STATS_MS=100 GOMAXPROCS=1 taskset -c 1 "$TMP/server" >"$TMP/server.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$TMP/server.out" ] && break; sleep 0.05; done
PORT=$(head -1 "$TMP/server.out")
sleep 1000000 &
IDLE=$!; pids+=("$IDLE")
. bench/trace-command.sh

echo "per-socket programs, untraced Go server under wrk -H 'Connection: close', ${SECS}s, kernel $(uname -r), $(nproc) CPUs"
taskset -c 0 wrk -t1 -c8 -d2s -H 'Connection: close' "http://127.0.0.1:$PORT/" >/dev/null # warm up
sysctl -qw kernel.bpf_stats_enabled=1
for r in $(seq "$ROUNDS"); do
  for L in "${LOADERS[@]}"; do
    start_loader "$L" --mode socket --pid "$IDLE"
    if [ "${SHUTDOWNS:-}" = 1 ]; then echo shutdowns >&3; sleep 0.5; fi
    socks=$(prog_stats $(loader_prog_ids "$LPID") | awk '$2 ~ /^sock_/ {print $1}')
    before=$(prog_stats $socks)
    s0=$(tail -1 "$TMP/server.out")
    rps=$(taskset -c 0 wrk -t1 -c8 -d"${SECS}s" -H 'Connection: close' "http://127.0.0.1:$PORT/" | awk '/Requests\/sec/{print $2}')
    s1=$(tail -1 "$TMP/server.out")
    after=$(prog_stats $socks)
    exec 3>&-
    wait "$LPID" 2>/dev/null || true
    python3 - "$L" "$r" "$rps" "$SECS" "$before" "$after" "$s0" "$s1" <<'PY'
import sys
loader, r, rps, secs, before, after, s0, s1 = sys.argv[1:]
(_, _, q0, c0), (_, _, q1, c1) = s0.split(), s1.split()
cpu_us = (int(c1) - int(c0)) / max(int(q1) - int(q0), 1) / 1000
def parse(s): return {l.split()[1]: (int(l.split()[2]), int(l.split()[3])) for l in s.splitlines() if l.strip()}
b, a = parse(before), parse(after)
conns = float(rps) * float(secs)
parts = []
for name in sorted(a):
    n = a[name][0] - b.get(name, (0, 0))[0]
    t = a[name][1] - b.get(name, (0, 0))[1]
    if n: parts.append(f"{name} {n / conns:.1f} runs x {t / n:.0f} ns")
print(f"{loader} round {r}: {float(rps):,.0f} requests/s, server {cpu_us:.2f} µs CPU a request; per connection: {', '.join(parts) or 'no socket program ran'}")
PY
  done
done
