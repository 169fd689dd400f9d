# Sourced by the paced-latency benches (capture-cost-latency.sh, latency-disturb.sh; for the
# kdamond_* helpers at its end, agent-overhead.sh too):
#   latency_setup NAME [VAR=VALUE...]
# makes $TMP (removed at exit with every process in `pids` killed), builds the paced client
# ($TMP/paced) and the Go server, and starts the server alone on CPU 1 (GOMAXPROCS=1; the
# VAR=VALUE pairs added to its environment): its pid in S, its port in PORT. Then warms both up.
# KDAMOND_CPU=N: the kernel's DAMON threads (kdamond.*, proactive reclaim where the host set it
# up, as on this VM) run on CPU N only for the bench, their masks restored at its end; they run
# 0.5–4 ms at a time without preemption, and on the server's CPU they stall it (docs/agent.md).
latency_setup() {
  TMP=$(mktemp -d "/tmp/seqtrace-$1.XXXXXX"); shift
  pids=()
  kdamonds=()
  trap latency_cleanup EXIT
  kdamond_from_env
  HOME=${HOME:-/root} GOCACHE=${GOCACHE:-$TMP/gocache} go build -o "$TMP/server" bench/capture-cost-server.go
  cc -O2 -o "$TMP/paced" bench/latency/paced.c
  env "$@" GOMAXPROCS=1 taskset -c 1 "$TMP/server" >"$TMP/server.out" 2>&1 &
  S=$!; pids+=("$S")
  for _ in $(seq 100); do [ -s "$TMP/server.out" ] && break; sleep 0.05; done
  PORT=$(head -1 "$TMP/server.out")
  chrt -f 50 taskset -c 0 "$TMP/paced" "$PORT" "${RATE:-10000}" 1 8 >/dev/null
}

latency_cleanup() {
  exec 3>&- 2>/dev/null || true
  kdamond_restore
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}

# kdamond_pin CPU: every kdamond thread onto CPU (their masks kept in `kdamonds`);
# kdamond_restore: the masks back; kdamond_from_env: kdamond_pin $KDAMOND_CPU when it is set.
kdamond_from_env() {
  [ -n "${KDAMOND_CPU:-}" ] || return 0
  kdamond_pin "$KDAMOND_CPU"
  echo "kdamond threads on CPU $KDAMOND_CPU for the bench: ${#kdamonds[@]}"
}

kdamond_pin() {
  local k
  for k in $(pgrep '^kdamond'); do
    kdamonds+=("$k:$(taskset -p "$k" | sed 's/.*: //')")
    taskset -p -c "$1" "$k" >/dev/null
  done
}

kdamond_restore() {
  local k
  for k in "${kdamonds[@]}"; do taskset -p "${k#*:}" "${k%%:*}" >/dev/null 2>&1 || true; done
  kdamonds=()
}
