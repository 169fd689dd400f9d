# Sourced by the benches that drive the loader themselves (capture-cost*.sh, dispatch-cost.sh,
# conn-cost.sh, thread-event-cost.sh):
# trace_command PID BINARY prints the loader commands that trace that process: `add PID`, and
# with GO=1 also its Go offsets as the agent sends them (`go PID TLS_OFF GOID_OFF PCONN_CONN
# TCPCONN_ITAB TCPCONN_FD NETFD_SYSFD G_M M_CURG`, loader.c), so that the data path reads
# goroutine ids.
trace_command() {
  local pid=$1 bin=$2
  echo "add $pid"
  [ "${GO:-}" = 1 ] || return 0
  local off=src/agent/go/gooffsets/build/seqtrace-gooffsets
  [ -x "$off" ] || { echo "GO=1 needs $off (npm run build)" >&2; return 1; }
  "$off" "$bin" | node -e 'const j = JSON.parse(require("fs").readFileSync(0)); if (!j.ok) { console.error(j.reason); process.exit(1); }
console.log(["go", process.argv[1], j.tlsOffset, j.goidOffset, j.pconnConn, j.tcpConnItab, j.tcpConnFd, j.netFdSysfd, j.gM, j.mCurg].join(" "))' "$pid"
}

# loader_prog_ids PID: the ids of the eBPF programs the loader process PID holds (from its fds:
# other loaders may be running at the same time).
loader_prog_ids() { grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u; }

# prog_stats ID...: "ID NAME RUN_CNT RUN_TIME_NS" of each of these programs, from one bpftool
# call (two processes: a bench that counts forks must not start one per program). The counts
# grow only while kernel.bpf_stats_enabled is 1.
prog_stats() {
  bpftool -j prog show | python3 -c 'import json, sys
want = set(map(int, sys.argv[1:]))
for p in json.load(sys.stdin):
    if p["id"] in want: print(p["id"], p.get("name", ""), p.get("run_cnt", 0), p.get("run_time_ns", 0))' "$@"
}

# start_loader COMMAND...: a loader (COMMAND: its path and arguments) on CPU 0, loaded for the
# whole run, reading its commands from fd 3 (a FIFO in $TMP); its pid in LPID (and `pids`).
# Fails with its stderr when it is gone 2 s later.
start_loader() {
  rm -f "$TMP/cmd"; mkfifo "$TMP/cmd"
  taskset -c 0 "$@" <"$TMP/cmd" >/dev/null 2>"$TMP/loader.err" &
  LPID=$!; pids+=("$LPID")
  exec 3>"$TMP/cmd"
  sleep 2
  kill -0 "$LPID" 2>/dev/null || { cat "$TMP/loader.err" >&2; exit 1; }
}
