#!/usr/bin/env bash
# The floor under what the socket programs cost a process that is not traced: the kernel's
# dispatch to the two socket tracepoints with programs that return at once (docs/kernel.md,
# "One program on both tracepoints"). Runs capture-cost-toggle.sh ATTACH=1 (the Go server under
# wrk, never traced; each window with the programs attached against the windows around it
# with none) with bench/event-cost/empty-progs.c as its loader, in the order given:
#   bench/dispatch-floor.sh [seconds=180] [two|one|loader ...]   (default: two one loader, twice)
# two: a program on each tracepoint, as seqtrace's loader has; one: the same program on both;
# loader: seqtrace's loader tracing only an idle process (its data path attached: what a process
# that is not traced pays with the real programs, side by side with the floor).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-180}
shift $(($# < 1 ? $# : 1))
KINDS=("$@")
[ ${#KINDS[@]} -gt 0 ] || KINDS=(two one loader two one loader)
TMP=$(mktemp -d /tmp/seqtrace-dispatch-floor.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
clang -O2 -g -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c bench/event-cost/empty-progs.bpf.c -o "$TMP/empty-progs.bpf.o"
cc -O2 -Wall -o "$TMP/empty-progs" bench/event-cost/empty-progs.c -lbpf
LOADERS=()
for k in "${KINDS[@]}"; do
  case $k in
    one | two) LOADERS+=("$TMP/empty-progs $TMP/empty-progs.bpf.o $k") ;;
    loader) [ -x src/bpf/build/seqtrace-loader ] || make -s -C src/bpf; LOADERS+=(src/bpf/build/seqtrace-loader) ;;
    *) echo "dispatch-floor.sh: $k is not one, two or loader" >&2; exit 2 ;;
  esac
done
KEEP=1 ATTACH=1 bench/capture-cost-toggle.sh socket "$SECS" 1000 "${LOADERS[@]}"
