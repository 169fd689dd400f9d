# Sourced by the paced-latency benches (capture-cost-latency.sh, latency-disturb.sh):
#   latency_setup NAME [VAR=VALUE...]
# makes $TMP (removed at exit with every process in `pids` killed), builds the paced client
# ($TMP/paced) and the Go server, and starts the server alone on CPU 1 (GOMAXPROCS=1; the
# VAR=VALUE pairs added to its environment): its pid in S, its port in PORT. Then warms both up.
latency_setup() {
  TMP=$(mktemp -d "/tmp/seqtrace-$1.XXXXXX"); shift
  pids=()
  trap latency_cleanup EXIT
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
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
