#!/usr/bin/env bash
# What tracing a Go net/http server does to its latency, kernel side only (docs/kernel.md, "Cost").
#   bench/capture-cost-latency.sh [rounds=3] [seconds=5] [LOADER...]
# The server (bench/capture-cost-server.go, GOMAXPROCS=1) alone on CPU 1; the loader (stdout to
# /dev/null) and the client on CPU 0; the loader attached throughout, tracing of the server
# switched off and on round by round (GO=1: as the agent traces a Go process, offsets given).
# The client is bench/latency/paced.c: open loop, RATE requests a second (default 10000, about
# a sixth of what the server can do: not saturated) over 8 keep-alive connections, SCHED_FIFO.
# Its "server" latency runs from the request's write to the kernel's receive timestamp of the
# answer (taken on loopback in the server's own write, on CPU 1), so the client's own
# scheduling is not in it. Printed per round: p50/p99/p99.9 (and the client-side p99); at the
# end the medians per loader and state and the p99 difference (goal: traced ≤ untraced + 50 µs).
# The whole agent's effect on latency is measured by bench/agent-overhead.sh (docs/agent.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; SECS=${2:-5}; RATE=${RATE:-10000}
shift $(($# < 2 ? $# : 2))
LOADERS=("$@")
[ ${#LOADERS[@]} -gt 0 ] || { LOADERS=(src/bpf/build/seqtrace-loader); [ -x "${LOADERS[0]}" ] || make -s -C src/bpf; }
. bench/latency/setup.sh
latency_setup capture-latency
. bench/trace-command.sh
sleep 1000000 &
KEEPER=$!; pids+=("$KEEPER")
ADD=$(trace_command "$S" "$TMP/server")

echo "capture latency${GO:+ (as a Go process)}: $ROUNDS rounds of ${SECS}s per state, $RATE requests/s, kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$TMP/results"
for i in "${!LOADERS[@]}"; do
  # shellcheck disable=SC2086 # a loader is a command with arguments
  start_loader ${LOADERS[$i]} --mode socket
  echo "add $KEEPER" >&3 # traced throughout: the data path stays attached (the loader detaches it when nothing is)
  for r in $(seq "$ROUNDS"); do
    for state in off on; do
      if [ $state = on ]; then echo "$ADD" >&3; else echo "del $S" >&3; fi
      sleep 0.3
      out=$(chrt -f 50 taskset -c 0 "$TMP/paced" "$PORT" "$RATE" "$SECS" 8)
      echo " loader $i round $r tracing $state: $out"
      echo "$i $state $out" >>"$TMP/results"
    done
  done
  echo "del $S" >&3
  exec 3>&-
  wait "$LPID" 2>/dev/null || true
done
for i in "${!LOADERS[@]}"; do
  awk -v i="$i" -v name="${LOADERS[$i]}" '
    function med(s,   a, n, k, j, x) { n = split(s, a, " "); for (k = 2; k <= n; k++) { x = a[k]; for (j = k - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    $1 == i { for (k = 3; k <= NF; k++) { split($k, kv, "="); v[$2, kv[1]] = v[$2, kv[1]] " " kv[2] } }
    END {
      for (s = 0; s < 2; s++) { st = s ? "on" : "off"
        printf "median %s, tracing %s: server latency p50 %.1f, p99 %.1f, p99.9 %.1f us; client p99 %.1f us\n", name, st, med(v[st, "p50"]), med(v[st, "p99"]), med(v[st, "p999"]), med(v[st, "client_p99"]) }
      printf "median %s: p99 %+.1f us traced against untraced (goal <= +50 us)\n", name, med(v["on", "p99"]) - med(v["off", "p99"])
    }' "$TMP/results"
done
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
