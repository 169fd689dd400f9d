#!/usr/bin/env bash
# What a traced process's other traffic (not HTTP: a database's, a cache's protocol) costs the
# agent (docs/agent.md, "Parsing": a traced service's other traffic).
#   bench/other-traffic.sh [round_trips=100000] [rounds=3] [JS_DIR:LOADER ...]
# A traced C ping-pong (bench/event-cost/pingpong.c with RESP: Redis's PING / +PONG on one
# loopback connection, 4 socket calls a round trip, pinned to CPU 1) under the agent as
# bin/seqtrace runs it (its V8 flags and malloc settings; CPU 0), sending to bench/agent-sink.ts.
# Printed per run: the CPU the agent (its main process) and its loader spent while the ping-pong
# ran, per round trip, and the data events the agent received. Each JS_DIR:LOADER pair (a
# compiled tree and its loader, an A/B) runs once per round, alternately; default: this
# checkout, compiled, with src/bpf/build/seqtrace-loader.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}; ROUNDS=${2:-3}
shift $(($# < 2 ? $# : 2))
PAIRS=("$@")
. bench/agent-lib.sh # bench_tmp, cpu_ticks, metric, wait_agent, agent_cmd
bench_tmp other-traffic
unset DK_BPFTRACE_SERVICE DD_SERVICE OTEL_SERVICE_NAME
if [ ${#PAIRS[@]} -eq 0 ]; then
  [ -x src/bpf/build/seqtrace-loader ] || make -s -C src/bpf
  JS=$PWD/bench/build/other-traffic.$$
  ON_EXIT_RM=$JS
  npx tsc -p . --outDir "$JS" --sourceMap false >"$TMP/tsc.out" 2>&1 || true
  [ -f "$JS/cli/main.js" ] || { cat "$TMP/tsc.out" >&2; exit 1; }
  PAIRS=("$JS:$PWD/src/bpf/build/seqtrace-loader")
fi
cc -O2 -o "$TMP/pingpong" bench/event-cost/pingpong.c
TICK_NS=$((1000000000 / $(getconf CLK_TCK)))

node --import tsx bench/agent-sink.ts >"$TMP/sink.out" 2>"$TMP/sink.err" &
pids+=("$!")
for _ in $(seq 300); do LURL=$(head -1 "$TMP/sink.out"); [ -n "$LURL" ] && break; sleep 0.1; done
[ -n "${LURL:-}" ] || { echo "sink did not start:" >&2; cat "$TMP/sink.err" >&2; exit 1; }

one() { # JS_DIR LOADER -> "agent_ns loader_ns data_events muted" per round trip (ns)
  agent_cmd "$1"
  # a traced process keeps the data path attached while the agent starts (wait_agent)
  OTEL_SERVICE_NAME=bench-keeper sleep 1000 &
  local K=$!
  SEQTRACE_LOADER=$2 ENV_INPUT_EBPF_TRACE_SERVER=$LURL ENV_INPUT_EBPF_METRICS_LISTEN=127.0.0.1:0 \
    taskset -c 0 "${AGENT_CMD[@]}" 2>"$TMP/agent.err" &
  local A=$!
  wait_agent "$A" "$TMP/agent.err"
  local L; L=$(pgrep -P "$A" seqtrace-loader | head -1)
  rm -f "$TMP/go"; mkfifo "$TMP/go"
  OTEL_SERVICE_NAME=bench-resp RESP=1 WAIT=1 taskset -c 1 "$TMP/pingpong" "$N" <"$TMP/go" &
  local P=$!
  exec 4>"$TMP/go"
  sleep 1.5 # selected at its exec, decided by the agent
  local e0 a0 l0; e0=$(metric "$AURL" 'seqtrace_agent_events_total{kind="data"}'); a0=$(cpu_ticks "$A"); l0=$(cpu_ticks "$L")
  echo x >&4
  wait "$P"
  exec 4>&-
  sleep 1 # what was captured reaches the agent
  local a1 l1 e1; a1=$(cpu_ticks "$A"); l1=$(cpu_ticks "$L"); e1=$(metric "$AURL" 'seqtrace_agent_events_total{kind="data"}')
  local muted; muted=$(metric "$AURL" seqtrace_agent_sockets_muted_total)
  kill "$A" "$K" 2>/dev/null || true
  wait "$A" "$K" 2>/dev/null || true
  echo "$(( (a1 - a0) * TICK_NS / N )) $(( (l1 - l0) * TICK_NS / N )) $((e1 - e0)) $muted"
}

echo "other-traffic: $ROUNDS rounds of $N Redis-like round trips of a traced process, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
  for i in "${!PAIRS[@]}"; do
    read -r a l e m <<<"$(one "${PAIRS[$i]%%:*}" "${PAIRS[$i]#*:}")"
    echo "  round $r, ${PAIRS[$i]%%:*}: agent $a ns, loader $l ns CPU per round trip; $e data events reached the agent; sockets muted $m"
  done
done
