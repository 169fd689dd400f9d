#!/usr/bin/env bash
# What the kernel side of capture costs the servers it watches (docs/kernel.md).
#   bench/capture-cost.sh [socket|syscall] [rounds=3] [seconds=5] [LOADER...]
# LOADER: a loader command, e.g. "src/bpf/build/seqtrace-loader" (the default) or
# "/tmp/old/seqtrace-loader --ringbuf-bytes 1048576" (one quoted word each): every round
# measures each of them, so one run compares designs under the same load.
# Set-up of /work/shared/reference/ebpf-costs.md: two identical Go net/http servers (T, U),
# GOMAXPROCS=1, both pinned to CPU 1; wrk -t1 -c32 pinned to CPU 0, alternating T and U.
# Each round: phase "none" (no probe loaded), then one phase per LOADER (started pinned to
# CPU 0, events to /dev/null, T traced and U not; stopped after). Figures:
#  - server CPU time per request served (sum of the threads' run time in ns from
#    /proc/PID/task/*/schedstat: exact, where utime+stime are sampled at clock ticks),
#    median of rounds;
#  - the same with T and U loaded at the same time (two wrk -t1 -c16, both on CPU 0) so that
#    whatever else runs on the machine hits both alike: the ratio T/U of a probe phase over
#    the ratio T/U of the no-probe phase is the cost of tracing T, and stays readable on a
#    busy machine where the sequential figures drift by ±20 % between phases;
#  - kernel run time of the loader's data-path programs (sock_send/sock_recv, or the syscall
#    ones) per request: kernel.bpf_stats_enabled switched on for an extra 2 s wrk run of T and
#    one of U, then restored. These programs run for every process's sockets, so the U figure
#    (untraced: what wrk and everything else on the machine cost them meanwhile) is taken off
#    T's; less noisy than server CPU on a shared machine, but busy neighbours still show;
#  - the loader's own CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-socket}; ROUNDS=${2:-3}; SECS=${3:-5}
shift $(($# < 3 ? $# : 3))
LOADERS=("$@")
[ ${#LOADERS[@]} -gt 0 ] || { LOADERS=(src/bpf/build/seqtrace-loader); [ -x "${LOADERS[0]}" ] || make -s -C src/bpf; }
command -v wrk >/dev/null || { echo "wrk is needed (scripts/install.sh --test)" >&2; exit 1; }
command -v bpftool >/dev/null || { echo "bpftool is needed (scripts/install.sh)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/seqtrace-capture-cost.XXXXXX)
pids=()
. bench/trace-command.sh # start_loader
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  exec 3>&- 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
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
. bench/agent-lib.sh # cpu_ticks
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }

# one wrk run against a server; prints µs of server CPU per request, req/s, requests
measure() {
  local pid=$1 port=$2 secs=${3:-$SECS} before after out reqs
  before=$(cpu_ns "$pid")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" "http://127.0.0.1:$port/")
  after=$(cpu_ns "$pid")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  awk -v t=$((after - before)) -v n="$reqs" -v s="$secs" \
    'BEGIN { printf "%.3f %.0f %d\n", t / 1e3 / n, n / s, n }'
}

# T and U loaded at once; prints µs of server CPU per request of T and of U
measure_both() {
  local bt bu at au ot ou nt nu
  bt=$(cpu_ns "$T"); bu=$(cpu_ns "$U")
  taskset -c 0 wrk -t1 -c16 -d"${SECS}s" "http://127.0.0.1:$TPORT/" >"$TMP/wrk.T" &
  local w1=$!
  taskset -c 0 wrk -t1 -c16 -d"${SECS}s" "http://127.0.0.1:$UPORT/" >"$TMP/wrk.U" &
  local w2=$!
  wait $w1 $w2
  at=$(cpu_ns "$T"); au=$(cpu_ns "$U")
  nt=$(awk '/requests in/ {print $1}' "$TMP/wrk.T"); nu=$(awk '/requests in/ {print $1}' "$TMP/wrk.U")
  awk -v t=$((at - bt)) -v u=$((au - bu)) -v nt="$nt" -v nu="$nu" \
    'BEGIN { printf "%.3f %.3f\n", t / 1e3 / nt, u / 1e3 / nu }'
}

# total run_time_ns and run_cnt of the data-path eBPF programs a process holds
prog_run() {
  prog_stats $(loader_prog_ids "$1") | awk '$2 ~ /^(sock_send|sock_recv|sys_enter_|sys_exit_)/ {t += $4; c += $3} END {print t + 0, c + 0}'
}

start_server T; T=$SERVER_PID; TPORT=$SERVER_PORT
start_server U; U=$SERVER_PID; UPORT=$SERVER_PORT
measure "$T" "$TPORT" >/dev/null; measure "$U" "$UPORT" >/dev/null # warm up

declare -A all
one_phase() { # phase round
  local us rps n
  for s in T U; do
    if [ $s = T ]; then read -r us rps n <<<"$(measure "$T" "$TPORT")"; else read -r us rps n <<<"$(measure "$U" "$UPORT")"; fi
    echo "  round $2 $1 server $s: $us us/request, $rps req/s"
    all[$1$s]="${all[$1$s]:-} $us"
  done
  local bt bu
  read -r bt bu <<<"$(measure_both)"
  echo "  round $2 $1 T and U at once: T $bt, U $bu us/request, T/U $(awk -v a="$bt" -v b="$bu" 'BEGIN {printf "%.4f", a/b}')"
  all[$1ratio]="${all[$1ratio]:-} $(awk -v a="$bt" -v b="$bu" 'BEGIN {printf "%.4f", a/b}')"
}

echo "capture cost, mode $MODE, $ROUNDS rounds of ${SECS}s per server and phase, kernel $(uname -r), $(nproc) CPUs"
for i in "${!LOADERS[@]}"; do echo "  loader $i: ${LOADERS[$i]}"; done
declare -A loader_ticks
# Phases alternate inside every round so that other load on the machine hits all alike.
for r in $(seq "$ROUNDS"); do
  echo " round $r, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  one_phase none "$r"
  for i in "${!LOADERS[@]}"; do
    # shellcheck disable=SC2086 # a loader is a command with arguments
    start_loader ${LOADERS[$i]} --mode "$MODE" --pid "$T" # fd 3 keeps its stdin open; 2 s to load and attach
    lb=$(cpu_ticks "$LPID")
    one_phase "probe$i" "$r"
    la=$(cpu_ticks "$LPID")
    loader_ticks[$i]=$(( ${loader_ticks[$i]:-0} + la - lb ))
    # kernel run time per request of T and of U, with bpf_stats on for these runs only
    sysctl -qw kernel.bpf_stats_enabled=1
    read -r t0 c0 <<<"$(prog_run "$LPID")"
    read -r _ _ n <<<"$(measure "$T" "$TPORT" 2)"
    read -r t1 c1 <<<"$(prog_run "$LPID")"
    read -r _ _ nu <<<"$(measure "$U" "$UPORT" 2)"
    read -r t2 c2 <<<"$(prog_run "$LPID")"
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS"
    nsT=$(awk -v t=$((t1 - t0)) -v n="$n" 'BEGIN {printf "%.0f", t / n}')
    nsU=$(awk -v t=$((t2 - t1)) -v n="$nu" 'BEGIN {printf "%.0f", t / n}')
    ns=$((nsT - nsU))
    echo "  round $r probe$i bpf run time: T $nsT - U $nsU = $ns ns/request ($(((c1 - c0) / (n > 0 ? n : 1))) / $(((c2 - c1) / (nu > 0 ? nu : 1))) program runs/request)"
    all[run$i]="${all[run$i]:-} $ns"
    exec 3>&- # stdin EOF: the loader detaches and exits
    wait "$LPID" 2>/dev/null || true
  done
done

median() { tr ' ' '\n' <<<"${all[$1]}" | grep . | sort -g | awk '{v[NR]=$1} END {printf "%.3f", NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%+.1f%%", (a/b-1)*100}'; }
nT=$(median noneT); nU=$(median noneU)
echo
echo "server CPU per request (median of $ROUNDS), mode $MODE, load average now $(cut -d' ' -f1-3 /proc/loadavg):"
echo "  no probe:        T $nT us   U $nU us"
for i in "${!LOADERS[@]}"; do
  pT=$(median "probe${i}T"); pU=$(median "probe${i}U")
  echo " loader $i: ${LOADERS[$i]}"
  echo "  probe, T traced: T $pT us ($(pct "$pT" "$nT") vs no probe; $(pct "$pT" "$pU") vs U, same phase)"
  echo "  probe, U not:    U $pU us ($(pct "$pU" "$nU") vs no probe)"
  echo "  T and U at once: T/U $(median "probe${i}ratio") vs $(median noneratio) without probe: tracing costs T $(pct "$(median "probe${i}ratio")" "$(median noneratio)")"
  echo "  eBPF run time:   $(median "run$i" | cut -d. -f1) ns per request of T over U (bpf_stats, data path, median)"
  awk -v t="${loader_ticks[$i]}" -v hz="$TICK" -v s="$((ROUNDS * 3 * SECS))" \
    'BEGIN { printf "  loader CPU:      %.2f s over %d s of load (%.2f%% of one CPU)\n", t/hz, s, t/hz/s*100 }'
done
