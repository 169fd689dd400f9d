#!/usr/bin/env bash
# What the thread events cost (docs/kernel.md): kernel run time of the sched_process_fork
# program per thread created and of the sched_process_exit program per thread ended, for a
# traced and an untraced Python process, from the kernel's own program statistics
# (kernel.bpf_stats_enabled, switched on only for the run and restored).
#   bench/thread-event-cost.sh [rounds=3] [threads=5000]
# Each round: a Python process starts and joins N threads, once traced (--pid) and once not,
# under a socket-mode seqtrace-loader; prints ns per program run and Python's µs per thread.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; N=${2:-5000}
LOADER=${LOADER:-src/bpf/build/seqtrace-loader} # LOADER=PATH: another build, for an A/B
[ -x "$LOADER" ] || make -s -C src/bpf
TMP=$(mktemp -d /tmp/seqtrace-thread-cost.XXXXXX)
WAS=$(sysctl -n kernel.bpf_stats_enabled)
pids=()
cleanup() { exec 3>&- 2>/dev/null || true; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; sysctl -qw kernel.bpf_stats_enabled="$WAS"; rm -rf "$TMP"; }
trap cleanup EXIT
sysctl -qw kernel.bpf_stats_enabled=1
cat >"$TMP/threads.py" <<PY
import sys, threading, time
sys.stdin.readline()
t0 = time.perf_counter()
for _ in range($N):
    t = threading.Thread(target=lambda: None); t.start(); t.join()
print(f"{(time.perf_counter() - t0) / $N * 1e6:.0f}")
PY
. bench/trace-command.sh

one() { # traced|untraced
  mkfifo "$TMP/go"
  python3 -u "$TMP/threads.py" <"$TMP/go" >"$TMP/py.out" & local py=$!; pids+=("$py")
  exec 3>"$TMP/go"
  local args=(--mode socket); [ "$1" = traced ] && args+=(--pid "$py")
  "$LOADER" "${args[@]}" >/dev/null 2>"$TMP/loader.err" & local ld=$!; pids+=("$ld")
  local fork="" exit_="" progs
  for _ in $(seq 100); do
    progs=$(prog_stats $(loader_prog_ids "$ld"))
    fork=$(awk '$2 == "proc_fork" {print $1}' <<<"$progs"); exit_=$(awk '$2 == "proc_exit" {print $1}' <<<"$progs")
    [ -n "$fork" ] && [ -n "$exit_" ] && break; sleep 0.1
  done
  [ -n "$fork" ] && [ -n "$exit_" ] || { echo "loader did not start: $(cat "$TMP/loader.err")" >&2; exit 1; }
  sleep 0.5 # attached, pid added
  pick() { awk -v i="$1" '$1 == i {print $3, $4}' <<<"$2"; } # RUN_CNT RUN_TIME_NS of program $1
  local s0 s1
  s0=$(prog_stats "$fork" "$exit_")
  echo go >&3; wait "$py"; exec 3>&-
  s1=$(prog_stats "$fork" "$exit_")
  read -r c0 t0 < <(pick "$fork" "$s0"); read -r e0 u0 < <(pick "$exit_" "$s0")
  read -r c1 t1 < <(pick "$fork" "$s1"); read -r e1 u1 < <(pick "$exit_" "$s1")
  kill "$ld"; wait "$ld" || true
  rm -f "$TMP/go"
  printf '%-9s fork: runs %6d  %6.0f ns/run   exit: runs %6d  %6.0f ns/run   python %s us/thread\n' "$1" \
    $((c1 - c0)) "$(echo "($t1 - $t0) / ($c1 - $c0)" | bc -l)" $((e1 - e0)) "$(echo "($u1 - $u0) / ($e1 - $e0)" | bc -l)" "$(cat "$TMP/py.out")"
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do one traced; one untraced; done
