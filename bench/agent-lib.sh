# Shell helpers of the benches that run the whole agent (bench/agent-overhead.sh,
# bench/agent-conns.sh, bench/exec-cost.sh, bench/other-traffic.sh), and cpu_ticks for every
# bench that reads a process's CPU time; sourced.

# bench_tmp NAME: TMP (a new directory /tmp/seqtrace-NAME.*), pids=() and ON_EXIT_RM= for the
# bench to fill, and traps: at exit every process in pids is ended (TERM, then KILL after 0.5 s)
# and TMP, ON_EXIT_RM and an empty bench/build are removed; INT and TERM exit with 130.
bench_tmp() {
  TMP=$(mktemp -d "/tmp/seqtrace-$1.XXXXXX")
  pids=()
  ON_EXIT_RM=
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}
bench_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP" ${ON_EXIT_RM:+"$ON_EXIT_RM"}
  rmdir bench/build 2>/dev/null || true
}

# cpu_ticks PID (or PID/task/TID): user + system CPU time of the process so far, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# kb FILE KEY: the kB figure of a /proc status or smaps_rollup line "KEY: N kB" (0 when absent)
kb() { awk -v k="$2:" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$1" 2>/dev/null || echo 0; }

# metric URL NAME: sum of the samples of one metric (0 when absent)
metric() {
  { curl -s "$1" || true; } | awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%.0f\n", s}'
}

# wait_agent PID ERRFILE: waits until the agent at PID serves /metrics (on the port it chose,
# ENV_INPUT_EBPF_METRICS_LISTEN=127.0.0.1:0) and traces at least one process; sets AURL to its
# /metrics. Exits with the agent's stderr if it stops or does not get there in 30 s.
wait_agent() {
  local pid=$1 err=$2 port
  AURL=
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { echo "agent exited:" >&2; cat "$err" >&2; exit 1; }
    port=$(ss -ltnpH 2>/dev/null | awk -v p="pid=$pid," 'index($0, p) { n = split($4, a, ":"); print a[n]; exit }')
    if [ -n "$port" ]; then
      AURL=http://127.0.0.1:$port/metrics
      [ "$(metric "$AURL" seqtrace_agent_traced_processes)" -ge 1 ] && return 0
    fi
    sleep 0.1
  done
  echo "agent did not start tracing:" >&2; cat "$err" >&2; exit 1
}

# agent_cmd JS: sets AGENT_CMD to run the compiled agent in JS as bin/seqtrace runs it: its V8
# flags (AGENT_NODE_FLAGS there) and its malloc settings (AGENT_MALLOC_ENV there), unless
# AGENT_NODE_ARGS or AGENT_MALLOC is set (then those; "" for node's or glibc's defaults).
agent_cmd() {
  local extra=() malloc_env=()
  read -ra extra <<<"${AGENT_NODE_ARGS-$(sed -n 's/^AGENT_NODE_FLAGS="\(.*\)"$/\1/p' bin/seqtrace)}"
  read -ra malloc_env <<<"${AGENT_MALLOC-$(sed -n 's/^AGENT_MALLOC_ENV="\(.*\)"$/\1/p' bin/seqtrace)}"
  AGENT_CMD=(env ${malloc_env[@]+"${malloc_env[@]}"} node ${extra[@]+"${extra[@]}"} "$1/cli/main.js" agent)
}
