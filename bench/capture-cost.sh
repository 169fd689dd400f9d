#!/usr/bin/env bash
# What the kernel side of capture costs the servers it watches (docs/kernel.md).
#   bench/capture-cost.sh [socket|syscall] [rounds=3] [seconds=5]
# Set-up of /work/shared/reference/ebpf-costs.md: two identical Go net/http servers (T, U),
# GOMAXPROCS=1, both pinned to CPU 1; wrk -t1 -c32 pinned to CPU 0, alternating T and U.
# Each round: phase "none" (no probe loaded), then phase "probe" (seqtrace-loader started,
# pinned to CPU 0, events written to /dev/null, T traced and U not; stopped after). Figure: server CPU time
# (utime+stime of /proc/PID/stat) per request served; and the loader's own CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-socket}; ROUNDS=${2:-3}; SECS=${3:-5}
LOADER=src/bpf/build/seqtrace-loader
[ -x "$LOADER" ] || make -s -C src/bpf
command -v wrk >/dev/null || { echo "wrk is needed (scripts/install.sh --test)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/seqtrace-capture-cost.XXXXXX)
pids=()
cleanup() { exec 3>&- 2>/dev/null || true; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
TICK=$(getconf CLK_TCK)

HOME=${HOME:-/root} GOCACHE=${GOCACHE:-$TMP/gocache} go build -o "$TMP/server" bench/capture-cost-server.go

start_server() { # name; sets SERVER_PID and SERVER_PORT (no subshell: cleanup must see the pid)
  local out=$TMP/server.$1
  GOMAXPROCS=1 taskset -c 1 "$TMP/server" >"$out" 2>&1 &
  SERVER_PID=$!; pids+=("$SERVER_PID")
  for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.05; done
  SERVER_PORT=$(head -1 "$out")
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# one wrk run against a server; prints µs of server CPU per request and req/s
measure() {
  local pid=$1 port=$2 before after out reqs
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${SECS}s" "http://127.0.0.1:$port/")
  after=$(cpu_ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  awk -v t=$((after - before)) -v hz="$TICK" -v n="$reqs" -v s="$SECS" \
    'BEGIN { printf "%.3f %.0f\n", t / hz * 1e6 / n, n / s }'
}

start_server T; T=$SERVER_PID; TPORT=$SERVER_PORT
start_server U; U=$SERVER_PID; UPORT=$SERVER_PORT
measure "$T" "$TPORT" >/dev/null; measure "$U" "$UPORT" >/dev/null # warm up


declare -A all
one_phase() { # phase round
  for s in T U; do
    if [ $s = T ]; then read -r us rps <<<"$(measure "$T" "$TPORT")"; else read -r us rps <<<"$(measure "$U" "$UPORT")"; fi
    echo "  round $2 $1 server $s: $us us/request, $rps req/s"
    all[$1$s]="${all[$1$s]:-} $us"
  done
}

echo "capture cost, mode $MODE, $ROUNDS rounds of ${SECS}s per server and phase, kernel $(uname -r)"
loader_ticks=0
# Phases alternate inside every round so that other load on the machine hits both alike.
for r in $(seq "$ROUNDS"); do
  one_phase none "$r"
  rm -f "$TMP/cmd"; mkfifo "$TMP/cmd"
  taskset -c 0 "$LOADER" --mode "$MODE" --pid "$T" <"$TMP/cmd" >/dev/null 2>"$TMP/loader.err" &
  LPID=$!; pids+=("$LPID")
  exec 3>"$TMP/cmd" # keeps the loader's stdin open
  sleep 2           # load and attach
  kill -0 "$LPID" 2>/dev/null || { cat "$TMP/loader.err" >&2; exit 1; }
  lb=$(cpu_ticks "$LPID")
  one_phase probe "$r"
  la=$(cpu_ticks "$LPID")
  loader_ticks=$((loader_ticks + la - lb))
  exec 3>&- # stdin EOF: the loader detaches and exits
  wait "$LPID" 2>/dev/null || true
done

median() { tr ' ' '\n' <<<"${all[$1]}" | grep . | sort -g | awk '{v[NR]=$1} END {printf "%.3f", NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%+.1f%%", (a/b-1)*100}'; }
nT=$(median noneT); nU=$(median noneU); pT=$(median probeT); pU=$(median probeU)
echo
echo "server CPU per request (median of $ROUNDS), mode $MODE:"
echo "  no probe:        T $nT us   U $nU us"
echo "  probe, T traced: T $pT us ($(pct "$pT" "$nT") vs no probe; $(pct "$pT" "$pU") vs U, same phase)"
echo "  probe, U not:    U $pU us ($(pct "$pU" "$nU") vs no probe)"
awk -v t="$loader_ticks" -v hz="$TICK" -v s="$((ROUNDS * 2 * SECS))" \
  'BEGIN { printf "  loader CPU: %.2f s over %d s of load (%.2f%% of one CPU)\n", t/hz, s, t/hz/s*100 }'
