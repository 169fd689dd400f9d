#!/usr/bin/env bash
# What the socket programs cost a process that is not traced, per socket call, on a host where
# the loader traces something (docs/kernel.md, "What attaching costs a process that is not
# traced"): bench/event-cost/eagain.c times N receives that return EAGAIN at once (pinned to
# CPU 1). One loader (CPU 0) stays loaded; in each round it traces nothing (its data path
# detached, within a second of the `del`) for one run and an idle process (attached, before
# its ACK) for the next. Printed: each round's pair, then the median of the differences.
#   bench/dispatch-cost.sh [rounds=30] [calls=500000] [LOADER]
# A hot loop: the program, its map and the kernel's dispatch stay in the caches, so this is a
# lower bound for a server, whose calls come between other work (capture-cost-toggle.sh DETACH=1).
# EVICT_KIB=K: the process reads K KiB between two calls (its caches emptied as a server's work
# empties them) and each call is timed alone: the median call is printed (use fewer calls).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-30}; N=${2:-500000}; LOADER=${3:-src/bpf/build/seqtrace-loader}
[ -x "$LOADER" ] || make -s -C src/bpf
TMP=$(mktemp -d /tmp/seqtrace-dispatch.XXXXXX)
pids=()
cleanup() { exec 3>&- 2>/dev/null || true; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
cc -O2 -o "$TMP/eagain" bench/event-cost/eagain.c
sleep 1000000 &
KEEPER=$!; pids+=("$KEEPER")
EVICT=${EVICT_KIB:-0}
echo "dispatch cost: $ROUNDS rounds of $N EAGAIN receives per state$([ "$EVICT" = 0 ] || echo ", $EVICT KiB read between calls"), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
. bench/trace-command.sh
start_loader "$LOADER" --mode socket --verbose
diffs=()
for r in $(seq "$ROUNDS"); do
  echo "del $KEEPER" >&3; sleep 1.1 # detached by the loader's once-a-second check
  off=$(taskset -c 1 "$TMP/eagain" "$N" "$EVICT")
  echo "add $KEEPER" >&3; sleep 0.05 # attached before the ACK
  on=$(taskset -c 1 "$TMP/eagain" "$N" "$EVICT")
  diffs+=("$(awk -v a="$off" -v b="$on" 'BEGIN { print b - a }')")
  echo "  round $r: detached $off ns, attached $on ns"
done
attached=$(grep -c 'data path attached' "$TMP/loader.err" || true); detached=$(grep -c 'data path detached' "$TMP/loader.err" || true)
[ "$attached" -ge "$ROUNDS" ] && [ "$detached" -ge "$ROUNDS" ] || echo "warning: the loader attached $attached and detached $detached times in $ROUNDS rounds"
sorted=$(printf '%s\n' "${diffs[@]}" | sort -g | tr '\n' ' ')
echo "attached minus detached, ns per EAGAIN receive: $(echo "$sorted" | awk '{ printf "median %s, quartiles %s / %s", (NF % 2 ? $((NF + 1) / 2) : ($(NF / 2) + $(NF / 2 + 1)) / 2), $(int(NF / 4) + 1), $(int(3 * NF / 4) + 1) }')"
