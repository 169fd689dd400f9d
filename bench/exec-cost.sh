#!/usr/bin/env bash
# What tracing every process from its exec until the agent decides costs (docs/kernel.md, "From
# the exec on"): an untraced shell runs N execs of /bin/true while the agent traces an idle
# process (so the data path is attached), with the loader as built (PROV: --provisional-exec,
# as the agent runs it) and the same loader without that flag (OFF), alternated ROUNDS times.
# Prints per exec: the loop's wall time (fork + exec + wait of /bin/true), the agent's and the
# loader's CPU (including everything else they do meanwhile: stats, the /proc scan every
# second), and how many events of the execs the agent dropped (rejected). LOOPS shells run the
# N execs between them, in parallel (more than one: the agent gets several execs per batch).
# AGENT_JS: another compiled agent to measure (e.g. an older commit's, built with
# `npx tsc -p . --outDir dist-old` inside the checkout, so that it finds node_modules).
# WITHOUT=--exec-env: OFF is the loader without its --exec-env arguments (reading each exec's
# environment, docs/kernel.md "The environment at the exec") instead of --provisional-exec.
# Usage: bench/exec-cost.sh [ROUNDS] [N] [LOOPS]     (root; npm run build first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/agent-lib.sh # wait_agent, agent_cmd, metric, cpu_ticks
ROUNDS=${1:-3}
N=${2:-3000}
LOOPS=${3:-1}
N=$((N / LOOPS * LOOPS))
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
WITHOUT=${WITHOUT:---provisional-exec}
case "$WITHOUT" in --provisional-exec | --exec-env) ;; *) echo "WITHOUT must be --provisional-exec or --exec-env" >&2; exit 2 ;; esac
cat >"$TMP/off" <<EOF2
#!/bin/sh
# the loader as built, without $WITHOUT (--exec-env with the name after it)
skip=0
for a; do
  shift
  if [ \$skip = 1 ]; then skip=0; continue; fi
  if [ "\$a" = "$WITHOUT" ]; then [ "\$a" = --exec-env ] && skip=1; continue; fi
  set -- "\$@" "\$a"
done
exec $PWD/src/bpf/build/seqtrace-loader "\$@"
EOF2
chmod +x "$TMP/off"
OTEL_SERVICE_NAME=bench-idle sleep 100000 &
pids+=($!)
agent_cmd "${AGENT_JS:-dist}" # AGENT_JS: another build of the agent to compare
hz=$(getconf CLK_TCK)
printf '%-5s %6s %12s %12s %12s %10s\n' mode round 'µs/exec' 'agent µs' 'loader µs' 'rejected'
for r in $(seq "$ROUNDS"); do
  for mode in PROV OFF; do
    loader_env=()
    [ "$mode" = OFF ] && loader_env=(SEQTRACE_LOADER="$TMP/off")
    env ${loader_env[@]+"${loader_env[@]}"} ENV_INPUT_EBPF_TRACE_SERVER=127.0.0.1:9 ENV_INPUT_EBPF_METRICS_LISTEN=127.0.0.1:0 \
      "${AGENT_CMD[@]}" 2>"$TMP/agent.err" &
    apid=$!
    pids+=("$apid")
    wait_agent "$apid" "$TMP/agent.err"
    lpid=$(pgrep -P "$apid" -x seqtrace-loader | head -1)
    sleep 1
    a0=$(cpu_ticks "$apid"); l0=$(cpu_ticks "$lpid")
    t0=$(date +%s%N)
    loops=()
    for ((j = 0; j < LOOPS; j++)); do
      bash -c "for ((i = 0; i < $N / $LOOPS; i++)); do /bin/true; done" &
      loops+=($!)
    done
    wait "${loops[@]}"
    t1=$(date +%s%N)
    sleep 1 # the agent's decisions about the last ones
    a1=$(cpu_ticks "$apid"); l1=$(cpu_ticks "$lpid")
    rej=$(metric "$AURL" seqtrace_agent_rejected_events_total)
    awk -v m="$mode" -v r="$r" -v n="$N" -v w="$((t1 - t0))" -v a="$((a1 - a0))" -v l="$((l1 - l0))" -v hz="$hz" -v rej="$rej" \
      'BEGIN { printf "%-5s %6d %12.1f %12.1f %12.1f %10s\n", m, r, w / n / 1000, a / hz * 1e6 / n, l / hz * 1e6 / n, rej }'
    kill "$apid"
    wait "$apid" 2>/dev/null || true
  done
done
