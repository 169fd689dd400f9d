#!/usr/bin/env bash
# What tracing costs a Go net/http server per request, measured by switching tracing of that
# one server on and off every PERIOD ms under constant load (docs/kernel.md, "Cost").
#   bench/capture-cost-toggle.sh [socket|syscall] [seconds=20] [period_ms=500] [LOADER...]
# LOADER: a loader command (default src/bpf/build/seqtrace-loader), several to compare them.
# GO=1: trace the server as the agent does a Go process (its offsets with every `add`, so the
# data path reads goroutine ids; this server has no HTTP client: no goroutine-start probe).
# Why: on a machine shared with other work, CPU per request drifts by ±20 % between
# benchmark phases seconds apart, more than the cost being measured. Here the server
# (bench/capture-cost-server.go, GOMAXPROCS=1, pinned to CPU 1; wrk -t1 -c32 pinned to CPU 0
# for the whole run; the loader pinned to CPU 0, loaded throughout) reports its requests and
# CPU time (getrusage, exact) every 50 ms, and the loader's `add PID` / `del PID` switch
# tracing every PERIOD ms. Each traced window is compared with the untraced windows just
# before and after it (samples straddling a switch are left out), so slow drifts cancel;
# the figure is the median over the windows of (CPU per request traced) / (untraced) - 1.
# The loader stays loaded in both states: this is the cost of tracing the process (its
# programs running for it), not of the programs being attached (see capture-cost.sh, U).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-socket}; SECS=${2:-20}; PERIOD=${3:-500}
shift $(($# < 3 ? $# : 3))
LOADERS=("$@")
[ ${#LOADERS[@]} -gt 0 ] || { LOADERS=(src/bpf/build/seqtrace-loader); [ -x "${LOADERS[0]}" ] || make -s -C src/bpf; }
command -v wrk >/dev/null || { echo "wrk is needed (scripts/install.sh --test)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/seqtrace-capture-toggle.XXXXXX)
pids=()
cleanup() { exec 3>&- 2>/dev/null || true; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
HOME=${HOME:-/root} GOCACHE=${GOCACHE:-$TMP/gocache} go build -o "$TMP/server" bench/capture-cost-server.go

STATS_MS=50 GOMAXPROCS=1 taskset -c 1 "$TMP/server" >"$TMP/server.out" 2>&1 &
S=$!; pids+=("$S")
for _ in $(seq 100); do [ -s "$TMP/server.out" ] && break; sleep 0.05; done
PORT=$(head -1 "$TMP/server.out")
. bench/trace-command.sh
ADD=$(trace_command "$S" "$TMP/server")
taskset -c 0 wrk -t1 -c32 -d2s "http://127.0.0.1:$PORT/" >/dev/null # warm up

echo "capture cost by switching tracing${GO:+ (as a Go process)}, mode $MODE, ${SECS}s per loader, switch every ${PERIOD} ms, kernel $(uname -r), $(nproc) CPUs"
for i in "${!LOADERS[@]}"; do
  echo " loader $i: ${LOADERS[$i]} (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  rm -f "$TMP/cmd"; mkfifo "$TMP/cmd"
  # shellcheck disable=SC2086 # a loader is a command with arguments
  taskset -c 0 ${LOADERS[$i]} --mode "$MODE" <"$TMP/cmd" >/dev/null 2>"$TMP/loader.err" &
  LPID=$!; pids+=("$LPID")
  exec 3>"$TMP/cmd"
  sleep 2
  kill -0 "$LPID" 2>/dev/null || { cat "$TMP/loader.err" >&2; exit 1; }
  : >"$TMP/switches"
  start_line=$(wc -l <"$TMP/server.out")
  taskset -c 0 wrk -t1 -c32 -d"$((SECS + 1))s" "http://127.0.0.1:$PORT/" >/dev/null &
  W=$!; pids+=("$W")
  sleep 0.5
  end=$(($(date +%s%N) + SECS * 1000000000))
  on=0
  while [ "$(date +%s%N)" -lt "$end" ]; do
    if [ $on = 0 ]; then echo "$ADD" >&3; on=1; else echo "del $S" >&3; on=0; fi
    echo "$(date +%s%N) $on" >>"$TMP/switches"
    sleep "$(awk -v p="$PERIOD" 'BEGIN {print p / 1000}')"
  done
  echo "del $S" >&3; echo "$(date +%s%N) 0" >>"$TMP/switches"
  wait "$W" 2>/dev/null || true
  exec 3>&-
  wait "$LPID" 2>/dev/null || true
  tail -n +"$((start_line + 1))" "$TMP/server.out" | grep '^stat ' >"$TMP/stats.$i" || true
  # windows: [switch k, switch k+1) with state on/off; a sample (t_prev, t] belongs to the window
  # holding both ends (20 ms guard for the switch to reach the kernel)
  awk -v guard=20000000 '
    NR == FNR { st[NR] = $1; on[NR] = $2; ns = NR; next }
    { t = $2; r = $3; c = $4
      if (prev_t) {
        for (k = 1; k < ns; k++) if (prev_t >= st[k] + guard && t < st[k + 1]) { R[k] += r - prev_r; C[k] += c - prev_c; break }
      }
      prev_t = t; prev_r = r; prev_c = c }
    END {
      n = 0
      for (k = 2; k < ns - 1; k++) {
        if (!on[k] || !R[k] || !R[k - 1] || !R[k + 1]) continue
        traced = C[k] / R[k]; untraced = (C[k - 1] + C[k + 1]) / (R[k - 1] + R[k + 1])
        v[++n] = traced / untraced - 1; ut += untraced; tt += traced
      }
      if (n == 0) { print "  no complete windows"; exit }
      for (a = 2; a <= n; a++) { x = v[a]; for (b = a - 1; b >= 1 && v[b] > x; b--) v[b + 1] = v[b]; v[b + 1] = x }
      med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "  %d traced windows: untraced %.3f us/request, traced %.3f us/request (means); median cost %+.1f%% (quartiles %+.1f%% / %+.1f%%)\n", \
        n, ut / n / 1000, tt / n / 1000, med * 100, v[int(n / 4) + 1] * 100, v[int(3 * n / 4) + 1] * 100
    }' "$TMP/switches" "$TMP/stats.$i"
done
echo " load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
