#!/usr/bin/env bash
# What many open connections cost the agent's memory (docs/agent.md, "Memory per connection").
#   bench/agent-conns.sh [connections=10000] [rounds=3]
# A traced Go server (bench/capture-cost-server.go, OTEL_SERVICE_NAME set) and the agent as
# bin/seqtrace runs it (its V8 flags and malloc settings), sending to bench/agent-sink.ts. Each
# round a client (node, bench/conns-client.mjs) opens N keep-alive connections, makes one request
# on each (every other head written in two pieces, so that the agent sees heads split over
# reads) and keeps them open and idle; then it closes them all. Printed per round: the agent's
# VmRSS, the anonymous part of it (node's binary is most of the rest) and the connections it
# tracks, before the client, with the N idle connections open, and after they closed.
# AGENT_JS=DIR runs another compiled tree (an A/B); default: this checkout, compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}; ROUNDS=${2:-3}
LOADER=${LOADER:-src/bpf/build/seqtrace-loader}
[ -x "$LOADER" ] || make -s -C src/bpf
command -v go >/dev/null || { echo "go is needed to build bench/capture-cost-server.go" >&2; exit 1; }
# the client and the server each hold N descriptors
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$N" -le $(( $(ulimit -n) - 200 )) ] \
  || { echo "bench/agent-conns.sh: $N connections need more open files than the limit here ($(ulimit -n))" >&2; exit 1; }
. bench/agent-lib.sh # bench_tmp, kb, metric, wait_agent, agent_cmd
bench_tmp agent-conns
unset DK_BPFTRACE_SERVICE DD_SERVICE OTEL_SERVICE_NAME

JS=${AGENT_JS:-}
if [ -z "$JS" ]; then
  # inside the checkout (build/ is ignored by git), where node finds node_modules
  JS=$PWD/bench/build/agent-conns.$$
  ON_EXIT_RM=$JS
  npx tsc -p . --outDir "$JS" --sourceMap false >"$TMP/tsc.out" 2>&1 || true
  [ -f "$JS/cli/main.js" ] || { cat "$TMP/tsc.out" >&2; exit 1; }
fi
export SEQTRACE_LOADER=$(realpath "$LOADER")
HOME=${HOME:-/root} GOCACHE=${GOCACHE:-$TMP/gocache} go build -o "$TMP/server" bench/capture-cost-server.go


# the server, traced (its port from its first line)
OTEL_SERVICE_NAME=bench-traced GOMAXPROCS=1 "$TMP/server" >"$TMP/server.out" 2>&1 &
SERVER=$!; pids+=("$SERVER")
for _ in $(seq 100); do [ -s "$TMP/server.out" ] && break; sleep 0.05; done
PORT=$(head -1 "$TMP/server.out")
[ -n "${PORT:-}" ] || { echo "server did not start:" >&2; cat "$TMP/server.out" >&2; exit 1; }

node --import tsx bench/agent-sink.ts >"$TMP/sink.out" 2>"$TMP/sink.err" &
pids+=("$!")
for _ in $(seq 300); do LURL=$(head -1 "$TMP/sink.out"); [ -n "$LURL" ] && break; sleep 0.1; done
[ -n "${LURL:-}" ] || { echo "sink did not start:" >&2; cat "$TMP/sink.err" >&2; exit 1; }

# the agent as bin/seqtrace runs it (AGENT_NODE_ARGS, AGENT_MALLOC: see agent_cmd)
agent_cmd "$JS"
ENV_INPUT_EBPF_TRACE_SERVER=$LURL ENV_INPUT_EBPF_METRICS_LISTEN=127.0.0.1:0 "${AGENT_CMD[@]}" 2>"$TMP/agent.err" &
AGENT=$!; pids+=("$AGENT")
wait_agent "$AGENT" "$TMP/agent.err"

# VmRSS MiB, of it anonymous MiB, connections tracked
state() {
  printf '%d / %d / %d' $(( $(kb "/proc/$AGENT/status" VmRSS) / 1024 )) $(( $(kb "/proc/$AGENT/status" RssAnon) / 1024 )) \
    "$(metric "$AURL" seqtrace_agent_connections_tracked)"
}
settle() { sleep 3; } # spans sent, a scavenge or two

echo "agent connections: $N idle keep-alive connections to a traced Go server, $ROUNDS rounds, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  (the agent's VmRSS MiB / of it anonymous MiB / connections tracked)"
for r in $(seq "$ROUNDS"); do
  settle
  before=$(state)
  mkfifo "$TMP/go.$r"
  node bench/conns-client.mjs "$PORT" "$N" <"$TMP/go.$r" >"$TMP/client.$r" &
  CLIENT=$!
  exec 3>"$TMP/go.$r"
  for _ in $(seq 600); do grep -q '^open' "$TMP/client.$r" && break; kill -0 "$CLIENT" 2>/dev/null || break; sleep 0.1; done
  grep -q '^open' "$TMP/client.$r" || { echo "client failed:" >&2; cat "$TMP/client.$r" >&2; exit 1; }
  settle
  open=$(state)
  exec 3>&- # the client closes its connections at EOF
  wait "$CLIENT"
  settle
  after=$(state)
  echo "  round $r: before $before | $N open $open | closed $after   ($(head -1 "$TMP/client.$r"))"
done
echo "spans: agent made $(metric "$AURL" seqtrace_agent_spans_total), sent $(metric "$AURL" seqtrace_agent_spans_sent_total); VmHWM $(( $(kb "/proc/$AGENT/status" VmHWM) / 1024 )) MiB"
