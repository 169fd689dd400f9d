#!/usr/bin/env bash
# What one traced data event costs the kernel programs and the loader (docs/kernel.md, "Cost").
#   bench/kernel-event-cost.sh [rounds=5] [iterations=300000] [LOADER...]
# A C program (bench/event-cost/pingpong.c, pinned to CPU 1) makes N HTTP-sized round trips on
# one loopback connection to itself, traced by the loader (pinned to CPU 0, stdout to
# /dev/null). With kernel.bpf_stats_enabled the kernel times every program run: printed is
# the mean ns per run of sock_send and sock_recv (all runs: the traced process's and, a few,
# other processes' untraced ones; the timing itself adds ≈ 2 clock reads), and the loader's
# CPU per traced event (/proc/PID/stat, clock ticks: use ≥ 300000 iterations). Several
# LOADERs (commands, e.g. "path --batch-bytes 8192") are run alternately, round by round;
# medians at the end. Program time only: what the traced process pays besides (cache, the
# flush IPIs) is what capture-cost-toggle.sh measures. With IOV=1 the messages go through
# writev and readv (the iovec walk). With MUTE=1 both sockets are muted before the round trips
# (the loader's `mute`: what a traced process's other traffic costs once the agent muted it).
# With UNIX=1 the round trips go over a Unix stream socket pair (docs/kernel.md, "Unix sockets").
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/agent-lib.sh # cpu_ticks
ROUNDS=${1:-5}; N=${2:-300000}
shift $(($# < 2 ? $# : 2))
LOADERS=("$@")
[ ${#LOADERS[@]} -gt 0 ] || { LOADERS=(src/bpf/build/seqtrace-loader); [ -x "${LOADERS[0]}" ] || make -s -C src/bpf; }
TMP=$(mktemp -d /tmp/seqtrace-event-cost.XXXXXX)
pids=()
stats_was=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  exec 3>&- 4>&- 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled="$stats_was"
  rm -rf "$TMP"
}
trap cleanup EXIT
cc -O2 -o "$TMP/pingpong" bench/event-cost/pingpong.c
TICK_NS=$((1000000000 / $(getconf CLK_TCK)))
sysctl -qw kernel.bpf_stats_enabled=1

prog_stats() { # LOADER_PID -> "name run_time_ns run_cnt" for sock_send and sock_recv of that loader
  bpftool prog show -j | node -e '
    const all = JSON.parse(require("fs").readFileSync(0));
    for (const name of ["sock_send", "sock_recv"]) {
      const p = all.filter((x) => x.name === name && (x.pids ?? []).some((o) => o.pid === Number(process.argv[1])));
      const q = p.length ? p : all.filter((x) => x.name === name);
      console.log(name, q.reduce((s, x) => s + (x.run_time_ns ?? 0), 0), q.reduce((s, x) => s + (x.run_cnt ?? 0), 0));
    }' "$1"
}

one() { # LOADER -> "send_ns recv_ns loader_ns_per_event"
  rm -f "$TMP/cmd" "$TMP/go"; mkfifo "$TMP/cmd" "$TMP/go"
  # shellcheck disable=SC2086 # a loader is a command with arguments
  taskset -c 0 $1 --mode socket <"$TMP/cmd" >/dev/null 2>"$TMP/loader.err" &
  local L=$!; pids+=("$L")
  exec 3>"$TMP/cmd"
  rm -f "$TMP/cookies"
  COOKIES="$TMP/cookies" WAIT=1 taskset -c 1 "$TMP/pingpong" "$N" <"$TMP/go" &
  local P=$!; pids+=("$P")
  exec 4>"$TMP/go"
  sleep 1
  kill -0 "$L" 2>/dev/null || { cat "$TMP/loader.err" >&2; exit 1; }
  echo "add $P" >&3
  if [ "${MUTE:-}" = 1 ]; then
    for _ in $(seq 50); do [ -s "$TMP/cookies" ] && break; sleep 0.02; done
    for k in $(cat "$TMP/cookies"); do echo "mute $k" >&3; done
  fi
  sleep 0.3
  prog_stats "$L" >"$TMP/a"
  local c0; c0=$(cpu_ticks "$L")
  echo x >&4
  wait "$P"
  sleep 0.2 # the last write-out (every 50 ms)
  local c1; c1=$(cpu_ticks "$L")
  prog_stats "$L" >"$TMP/b"
  exec 3>&- 4>&-
  wait "$L" 2>/dev/null || true
  paste "$TMP/a" "$TMP/b" | awk -v lns=$(((c1 - c0) * TICK_NS)) -v ev=$((4 * N)) '
    { t[NR] = ($5 - $2) / ($6 - $3) } END { printf "%.0f %.0f %.0f\n", t[1], t[2], lns / ev }'
}

echo "kernel-event-cost: $ROUNDS rounds of $N round trips (4 data events each${MUTE:+; its sockets muted}${UNIX:+; over a Unix socket pair}), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A res
for r in $(seq "$ROUNDS"); do
  for i in "${!LOADERS[@]}"; do
    out=$(one "${LOADERS[$i]}")
    res[$i]+="$out;"
    read -r s v l <<<"$out"
    echo " round $r loader $i: sock_send $s ns/run, sock_recv $v ns/run, loader $l ns CPU per event"
  done
done
for i in "${!LOADERS[@]}"; do
  echo "${res[$i]}" | tr ';' '\n' | awk -v name="${LOADERS[$i]}" 'NF { s[++n] = $1; v[n] = $2; l[n] = $3 }
    function med(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    END { printf "median %s: sock_send %.0f ns/run, sock_recv %.0f ns/run, loader %.0f ns CPU per event\n", name, med(s, n), med(v, n), med(l, n) }'
done
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
