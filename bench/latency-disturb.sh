#!/usr/bin/env bash
# What one thing beside the paced client on CPU 0 does to the latency of a Go server alone on
# CPU 1 (docs/agent.md, "In the steady state"): the whole agent, and the suspects for its p99
# one at a time. The server is traced only in the states that say so.
#   bench/latency-disturb.sh [rounds=6] [seconds=3] STATE...
# STATE, alternated round by round (default: none loader loader-nobatch faults:10000 faults:100000):
#   none             nothing else
#   loader           the eBPF loader tracing an idle process (data path attached, flushing every
#                    CPU's batch every 50 ms: an IPI to CPU 1)
#   loader-nobatch   the same with --batch-bytes 0 (no batches: no flush, no IPI)
#   loader-traced    the loader tracing the measured server, its events to /dev/null
#   loader-pipe      the same, its events through a pipe to cat (on CPU 0, to /dev/null)
#   loader-node      the same, the pipe read by a node process that only counts the bytes
#   faults:N         bench/latency/memload.c: N page faults a second on CPU 0
#   stream:N         N pages a second written of memory it keeps (no faults)
#   random:N         N bytes a second written at random in 256 MiB it keeps (cache and TLB misses)
#   random-huge:N    the same on transparent huge pages (few TLB misses)
#   switches:N       bench/latency/pingpong.c: N round trips a second between two processes on
#                    CPU 0 (2N switches between address spaces)
#   agent            the whole agent (bin/seqtrace agent, as installed: npm run build) tracing the
#                    measured server (it has OTEL_SERVICE_NAME), sending to bench/agent-sink.ts
#                    on CPU 0; started anew for the round and warmed by 2 s of the same load
#                    before the measured window: the steady state, with no backlog of a
#                    saturating load behind it (unlike bench/agent-overhead.sh's paced rounds)
#   agent-rawsink    the agent state with a sink that does not inflate what it receives (the
#                    linker's work on each second's batch off CPU 0: the agent's share alone)
#   agent-idle       the same agent tracing nothing (trace_envset no process has)
#                    (AGENT_CMD="node FLAGS dist/cli/main.js agent": another command for the agent states)
#   kd0:STATE        STATE with the kernel's kdamond threads on CPU 0 for the round (restored
#                    after it): DAMON reclaim, where the host set it up, runs 0.5–4 ms at a time
#                    without preemption, on the server's CPU unless kept off it (docs/agent.md);
#                    KDAMOND_CPU=N keeps them on CPU N for the whole bench (bench/latency/setup.sh)
# The client is bench/latency/paced.c (SCHED_FIFO, RATE requests a second over 8 connections);
# printed per round and as medians per state: server latency p50/p99/p99.9/max, client p99 (µs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-6}; SECS=${2:-3}; RATE=${RATE:-10000}
shift $(($# < 2 ? $# : 2))
STATES=("$@")
[ ${#STATES[@]} -gt 0 ] || STATES=(none loader loader-nobatch faults:10000 faults:100000)
LOADER=src/bpf/build/seqtrace-loader
[ -x "$LOADER" ] || make -s -C src/bpf
. bench/latency/setup.sh
unset DK_BPFTRACE_SERVICE DD_SERVICE OTEL_SERVICE_NAME
latency_setup latency-disturb OTEL_SERVICE_NAME=disturb-server # traced only by the agent state
cc -O2 -o "$TMP/memload" bench/latency/memload.c
cc -O2 -o "$TMP/pingpong" bench/latency/pingpong.c
sleep 1000000 &
KEEPER=$!; pids+=("$KEEPER")
mkfifo "$TMP/cmd"; exec 3<>"$TMP/cmd" # the loaders' stdin, held open
# start_sink NAME [--no-inflate]: a bench/agent-sink.ts on CPU 0; its URL in $NAME
start_sink() {
  taskset -c 0 node --import tsx bench/agent-sink.ts "${@:2}" >"$TMP/$1.out" 2>"$TMP/$1.err" &
  pids+=("$!")
  local url=
  for _ in $(seq 300); do url=$(head -1 "$TMP/$1.out"); [ -n "$url" ] && break; sleep 0.1; done
  [ -n "$url" ] || { cat "$TMP/$1.err" >&2; exit 1; }
  printf -v "$1" %s "$url"
}
if [[ " ${STATES[*]} " == *"agent"* ]]; then
  [ -f dist/cli/main.js ] || npm run build --silent >/dev/null
  start_sink SINK
  [[ " ${STATES[*]} " == *"agent-rawsink "* ]] && start_sink RAWSINK --no-inflate
fi
# start_agent ENVSET [SINK_URL]: the agent on CPU 0, returned once it traces what it should (pid in D)
start_agent() {
  ENV_INPUT_EBPF_TRACE_SERVER=${2:-$SINK} ENV_INPUT_EBPF_TRACE_ENVSET=$1 ENV_INPUT_EBPF_METRICS_LISTEN=127.0.0.1:0 \
    taskset -c 0 ${AGENT_CMD:-bin/seqtrace agent} 2>"$TMP/agent.err" &
  D=$!
  local want; want=$([ "$1" = OTEL_SERVICE_NAME ] && echo 1 || echo 0)
  for _ in $(seq 300); do grep -q "($want now)" "$TMP/agent.err" && return 0; kill -0 "$D" 2>/dev/null || break; sleep 0.1; done
  echo "the agent did not start tracing $want process(es):" >&2; cat "$TMP/agent.err" >&2; exit 1
}

echo "latency beside a disturber: $ROUNDS rounds of ${SECS}s per state, $RATE requests/s, kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$TMP/results"
for r in $(seq "$ROUNDS"); do
  for state in "${STATES[@]}"; do
    D=
    base=${state#kd0:}
    [ "$base" != "$state" ] && [ -z "${KDAMOND_CPU:-}" ] && kdamond_pin 0
    case $base in
      none) sleep 0.3 ;;
      loader | loader-nobatch | loader-traced | loader-pipe | loader-node)
        extra=(--pid "$KEEPER"); out=/dev/null
        case $base in
          loader-nobatch) extra+=(--batch-bytes 0) ;;
          loader-traced | loader-pipe | loader-node) extra=(--pid "$S") ;;
        esac
        if [ "$base" = loader-pipe ] || [ "$base" = loader-node ]; then # a reader on CPU 0, gone at the loader's EOF
          reader=(cat); [ "$base" = loader-node ] && reader=(node -e 'let n = 0; process.stdin.on("data", (d) => { n += d.length; });')
          rm -f "$TMP/events"; mkfifo "$TMP/events"; out=$TMP/events
          taskset -c 0 "${reader[@]}" <"$TMP/events" >/dev/null &
        fi
        taskset -c 0 "$LOADER" --mode socket "${extra[@]}" <"$TMP/cmd" >"$out" 2>"$TMP/loader.err" &
        D=$!
        sleep 1
        kill -0 "$D" 2>/dev/null || { cat "$TMP/loader.err" >&2; exit 1; } ;;
      faults:* | stream:* | random:* | random-huge:*) # the random areas take ≈ 0.2 s to fill first
        taskset -c 0 "$TMP/memload" "${base%%:*}" $((SECS + 2)) "${base#*:}" & D=$!; sleep 1 ;;
      switches:*) taskset -c 0 "$TMP/pingpong" $((SECS + 1)) "${base#switches:}" & D=$!; sleep 0.3 ;;
      agent | agent-idle | agent-rawsink)
        case $base in
          agent) start_agent OTEL_SERVICE_NAME ;;
          agent-idle) start_agent SEQTRACE_NO_SUCH_VARIABLE ;;
          agent-rawsink) start_agent OTEL_SERVICE_NAME "$RAWSINK" ;;
        esac
        chrt -f 50 taskset -c 0 "$TMP/paced" "$PORT" "$RATE" 2 8 >/dev/null ;;
      *) echo "unknown state $state" >&2; exit 2 ;;
    esac
    out=$(chrt -f 50 taskset -c 0 "$TMP/paced" "$PORT" "$RATE" "$SECS" 8)
    echo " round $r $state: $out"
    echo "$state $out" >>"$TMP/results"
    if [ -n "$D" ]; then kill "$D" 2>/dev/null || true; wait "$D" 2>/dev/null || true; fi
    [ "$base" != "$state" ] && [ -z "${KDAMOND_CPU:-}" ] && kdamond_restore
  done
done
awk -v states="${STATES[*]}" '
  function med(s,   a, n, k, j, x) { n = split(s, a, " "); for (k = 2; k <= n; k++) { x = a[k]; for (j = k - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  { for (k = 2; k <= NF; k++) { split($k, kv, "="); v[$1, kv[1]] = v[$1, kv[1]] " " kv[2] } }
  END { n = split(states, st, " ")
    for (i = 1; i <= n; i++) printf "median %s: server latency p50 %.1f, p99 %.1f, p99.9 %.1f, max %.1f us; client p99 %.1f us\n", st[i], med(v[st[i], "p50"]), med(v[st[i], "p99"]), med(v[st[i], "p999"]), med(v[st[i], "max"]), med(v[st[i], "client_p99"]) }' "$TMP/results"
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
