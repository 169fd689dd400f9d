#!/usr/bin/env bash
# Where the data-path programs' time goes, by source line (docs/kernel.md, "Where a traced
# event's time goes").
#   bench/prog-profile.sh [seconds=5] [LOADER]
# bench/event-cost/pingpong.c (pinned to CPU 1) makes HTTP-sized round trips on one loopback
# connection to itself, traced by LOADER (default src/bpf/build/seqtrace-loader, pinned to CPU 0);
# `perf record -C 1 -g` samples CPU 1 at 20 kHz (cpu-clock: this VM has no hardware counters).
# Printed: the share of CPU 1's samples in the tracepoint dispatch, in each program's body and in
# each helper under it; then each program's hottest source lines, from the JIT addresses of its
# line info (bench/prog-profile/jitlines.c: bpftool here has no disassembler). A sample lands on
# the instruction after a slow one: read a line as "this one or the one before it".
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
LOADER=${2:-src/bpf/build/seqtrace-loader}
[ -x "${LOADER%% *}" ] || make -s -C src/bpf
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/seqtrace-prog-profile.XXXXXX)
pids=()
cleanup() { exec 3>&- 4>&- 2>/dev/null || true; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
cc -O2 -o "$TMP/pingpong" bench/event-cost/pingpong.c
cc -O2 -o "$TMP/jitlines" bench/prog-profile/jitlines.c -lbpf

mkfifo "$TMP/cmd" "$TMP/go"
# shellcheck disable=SC2086 # a loader is a command with arguments
taskset -c 0 $LOADER --mode socket <"$TMP/cmd" >/dev/null 2>"$TMP/loader.err" &
L=$!; pids+=("$L")
exec 3>"$TMP/cmd"
WAIT=1 taskset -c 1 "$TMP/pingpong" 100000000 <"$TMP/go" &
P=$!; pids+=("$P")
exec 4>"$TMP/go"
sleep 1
kill -0 "$L" 2>/dev/null || { cat "$TMP/loader.err" >&2; exit 1; }
echo "add $P" >&3
sleep 0.3
echo x >&4
sleep 0.5
perf record -q -C 1 -F 20000 -g -o "$TMP/perf.data" -- sleep "$SECS" 2>/dev/null
for name in sock_send sock_recv; do
  id=$(bpftool prog show -j | node -e '
    const all = JSON.parse(require("fs").readFileSync(0));
    const named = all.filter((x) => x.name === process.argv[1]).sort((a, b) => b.id - a.id);
    // this loader'"'"'s, where bpftool lists the holders; else the newest of that name
    const p = named.find((x) => (x.pids ?? []).some((o) => o.pid === Number(process.argv[2]))) ?? named[0];
    if (!p) process.exit(1);
    console.log(p.id)' "$name" "$L")
  "$TMP/jitlines" "$id" >"$TMP/$name.lines"
done
kill "$P"
perf script -i "$TMP/perf.data" -F ip,sym 2>/dev/null >"$TMP/samples"
echo "prog-profile: ${SECS}s of CPU 1 under $LOADER, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
node -e '
const fs = require("fs");
const dir = process.argv[1];
const progs = ["sock_send", "sock_recv"].map((name) => {
  const lines = fs.readFileSync(`${dir}/${name}.lines`, "utf8").trim().split("\n").map((l) => {
    const [a, n, ...src] = l.split(" ");
    return { addr: BigInt("0x" + a), line: n, src: src.join(" ").trim() };
  }).sort((x, y) => (x.addr < y.addr ? -1 : 1));
  return { name, lines, hits: new Map(), body: 0 };
});
let total = 0, dispatch = 0;
const helpers = new Map(); // leaf symbol under a program -> samples
for (const s of fs.readFileSync(`${dir}/samples`, "utf8").split("\n\n")) {
  const frames = s.trim().split("\n").map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 2);
  if (!frames.length) continue;
  total++;
  const leaf = frames[0][1];
  if (leaf === "bpf_trace_run3") { dispatch++; continue; }
  const at = frames.findIndex((f) => /^bpf_prog_\w+_sock_(send|recv)$/.test(f[1]));
  if (at < 0) continue;
  const prog = progs.find((p) => frames[at][1].endsWith("_" + p.name));
  if (at > 0) { helpers.set(leaf, (helpers.get(leaf) ?? 0) + 1); continue; }
  prog.body++;
  const ip = BigInt("0x" + frames[0][0]);
  let lo = 0, hi = prog.lines.length - 1; // last line at or before ip
  while (lo < hi) { const m = (lo + hi + 1) >> 1; if (prog.lines[m].addr <= ip) lo = m; else hi = m - 1; }
  const key = `${prog.lines[lo].line} ${prog.lines[lo].src}`;
  prog.hits.set(key, (prog.hits.get(key) ?? 0) + 1);
}
const pct = (n) => (100 * n / total).toFixed(2).padStart(6) + " %";
console.log(`${total} samples of CPU 1; tracepoint dispatch (bpf_trace_run3, traced or not) ${pct(dispatch)}`);
for (const p of progs) console.log(`${p.name} body ${pct(p.body)}`);
console.log("helpers and what they call, under the programs:");
for (const [sym, n] of [...helpers].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${pct(n)}  ${sym}`);
for (const p of progs) {
  console.log(`${p.name}: hottest source lines (share of its body)`);
  for (const [k, n] of [...p.hits].sort((a, b) => b[1] - a[1]).slice(0, 10))
    console.log(`  ${(100 * n / p.body).toFixed(1).padStart(5)} %  ${k.slice(0, 110)}`);
}' "$TMP"
