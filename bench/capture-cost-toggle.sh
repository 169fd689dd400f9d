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
# programs running for it), not of the programs being attached.
# ATTACH=1: the cost for processes that are not traced instead: the loader (tracing nothing)
# started and killed every PERIOD ms (PERIOD >= 1000: it takes ~0.35 s to load), each window
# with its programs attached against the windows without any loader around it. The loading
# itself (on CPU 0, with wrk) is in neither window. With KEEP=1 the loader traces another
# (idle) process meanwhile: the server is then untraced on a host where something is traced
# (the loader detaches its data path while nothing is).
# DETACH=1: the same question without loading anything during the run: the loader stays
# loaded and traces an idle process in every other window, so that its data path is attached
# (the idle process traced) or detached (nothing traced); the server, never traced, is compared
# between the two. The loader detaches within a second of the `del` (its once-a-second check):
# the 1.1 s after each `del` are in neither window.
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
sleep 1000000 &
KEEPER=$!; pids+=("$KEEPER")
ADD=$(trace_command "$S" "$TMP/server")
taskset -c 0 wrk -t1 -c32 -d2s "http://127.0.0.1:$PORT/" >/dev/null # warm up

if [ "${ATTACH:-}" = 1 ]; then WHAT="attaching the loader (tracing $([ -n "${KEEP:-}" ] && echo "only another process" || echo nothing))"; ON=attached; OFF="no loader"
elif [ "${DETACH:-}" = 1 ]; then WHAT="tracing only another, idle process or nothing (the loader's data path attached or detached)"; ON=attached; OFF=detached; else
  WHAT="switching tracing${GO:+ (as a Go process)}"; ON=traced; OFF=untraced; fi
echo "capture cost by $WHAT, mode $MODE, ${SECS}s per loader, switch every ${PERIOD} ms, kernel $(uname -r), $(nproc) CPUs"
PERIOD_S=$(awk -v p="$PERIOD" 'BEGIN {print p / 1000}')
# start_wrk SECONDS: the load on the server (W), then `end`: when the switching stops.
start_wrk() {
  taskset -c 0 wrk -t1 -c32 -d"$1s" "http://127.0.0.1:$PORT/" >/dev/null &
  W=$!; pids+=("$W")
  sleep 0.5
  end=$(($(date +%s%N) + SECS * 1000000000))
}
for i in "${!LOADERS[@]}"; do
  echo " loader $i: ${LOADERS[$i]} (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  : >"$TMP/switches"
  start_line=$(wc -l <"$TMP/server.out")
  if [ "${ATTACH:-}" = 1 ]; then
    # switch states: 1 attached, 0 no loader, 2 loading (in no window)
    rm -f "$TMP/cmd"; mkfifo "$TMP/cmd"; exec 3<>"$TMP/cmd" # held open: the loaders never read its end
    start_wrk $((SECS + 3))
    while [ "$(date +%s%N)" -lt "$end" ]; do
      echo "$(date +%s%N) 2" >>"$TMP/switches"
      : >"$TMP/loader.out"
      # shellcheck disable=SC2086 # a loader is a command with arguments
      taskset -c 0 ${LOADERS[$i]} --mode "$MODE" ${KEEP:+--pid $KEEPER} <"$TMP/cmd" >"$TMP/loader.out" 2>"$TMP/loader.err" &
      LPID=$!
      for _ in $(seq 1000); do [ -s "$TMP/loader.out" ] && break; kill -0 "$LPID" 2>/dev/null || break; sleep 0.005; done
      [ -s "$TMP/loader.out" ] || { cat "$TMP/loader.err" >&2; exit 1; } # its ready event: attached
      echo "$(date +%s%N) 1" >>"$TMP/switches"
      sleep "$PERIOD_S"
      kill "$LPID"; wait "$LPID" 2>/dev/null || true # its programs are detached when it has exited
      echo "$(date +%s%N) 0" >>"$TMP/switches"
      sleep "$PERIOD_S"
    done
    echo "$(date +%s%N) 2" >>"$TMP/switches"
    wait "$W" 2>/dev/null || true
    exec 3>&-
  elif [ "${DETACH:-}" = 1 ]; then
    # shellcheck disable=SC2086 # a loader is a command with arguments
    start_loader ${LOADERS[$i]} --mode "$MODE" --verbose
    start_wrk $((SECS + 2))
    cycles=0
    while [ "$(date +%s%N)" -lt "$end" ]; do
      echo "add $KEEPER" >&3; echo "$(date +%s%N) 1" >>"$TMP/switches" # attached before its ACK
      sleep "$PERIOD_S"
      echo "del $KEEPER" >&3; echo "$(date +%s%N) 2" >>"$TMP/switches"
      sleep 1.1
      echo "$(date +%s%N) 0" >>"$TMP/switches"
      sleep "$PERIOD_S"
      cycles=$((cycles + 1))
    done
    echo "$(date +%s%N) 2" >>"$TMP/switches"
    wait "$W" 2>/dev/null || true
    exec 3>&-
    wait "$LPID" 2>/dev/null || true
    detached=$(grep -c 'data path detached' "$TMP/loader.err" || true)
    [ "$detached" -ge "$cycles" ] || echo "  warning: the loader detached its data path $detached times in $cycles cycles: some detached windows were attached"
  else
    # shellcheck disable=SC2086 # a loader is a command with arguments
    start_loader ${LOADERS[$i]} --mode "$MODE"
    echo "add $KEEPER" >&3 # traced throughout: the data path stays attached (the loader detaches it when nothing is)
    start_wrk $((SECS + 1))
    on=0
    while [ "$(date +%s%N)" -lt "$end" ]; do
      if [ $on = 0 ]; then echo "$ADD" >&3; on=1; else echo "del $S" >&3; on=0; fi
      echo "$(date +%s%N) $on" >>"$TMP/switches"
      sleep "$PERIOD_S"
    done
    echo "del $S" >&3; echo "$(date +%s%N) 0" >>"$TMP/switches"
    wait "$W" 2>/dev/null || true
    exec 3>&-
    wait "$LPID" 2>/dev/null || true
  fi
  tail -n +"$((start_line + 1))" "$TMP/server.out" | grep '^stat ' >"$TMP/stats.$i" || true
  # windows: [switch k, switch k+1) with state on/off; a sample (t_prev, t] belongs to the window
  # holding both ends (20 ms guard for the switch to reach the kernel)
  awk -v guard=20000000 -v ON="$ON" -v OFF="$OFF" '
    NR == FNR { st[NR] = $1; on[NR] = $2; ns = NR; next }
    { t = $2; r = $3; c = $4
      if (prev_t) {
        for (k = 1; k < ns; k++) if (prev_t >= st[k] + guard && t < st[k + 1]) { R[k] += r - prev_r; C[k] += c - prev_c; break }
      }
      prev_t = t; prev_r = r; prev_c = c }
    END {
      n = 0
      for (k = 2; k < ns - 1; k++) {
        if (on[k] != 1 || !R[k]) continue
        for (a = k - 1; a > 0 && on[a] != 0; a--) ;
        for (b = k + 1; b < ns && on[b] != 0; b++) ;
        if (a < 1 || b >= ns || !R[a] || !R[b]) continue
        traced = C[k] / R[k]; untraced = (C[a] + C[b]) / (R[a] + R[b])
        v[++n] = traced / untraced - 1; ut += untraced; tt += traced
      }
      if (n == 0) { print "  no complete windows"; exit }
      for (a = 2; a <= n; a++) { x = v[a]; for (b = a - 1; b >= 1 && v[b] > x; b--) v[b + 1] = v[b]; v[b + 1] = x }
      med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "  %d %s windows: %s %.3f us/request, %s %.3f us/request (means); median cost %+.1f%% (quartiles %+.1f%% / %+.1f%%)\n", \
        n, ON, OFF, ut / n / 1000, ON, tt / n / 1000, med * 100, v[int(n / 4) + 1] * 100, v[int(3 * n / 4) + 1] * 100
    }' "$TMP/switches" "$TMP/stats.$i"
done
echo " load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
