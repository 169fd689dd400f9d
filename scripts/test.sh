#!/usr/bin/env bash
# The whole test suite: type check, then every *.test.ts beside the code and in test/.
# Tests that need root and eBPF run; they are skipped only with SEQTRACE_SKIP_EBPF=1.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.check.json   # src, test and bench
# bin/seqtrace runs the compiled dist/ when there is one, and the tests start it (agents, linkers,
# the least-privilege runs): build now, so that they run what src/ says, not an older build.
npm run build --silent >/dev/null
# The least-privilege tests run this checkout's bin/seqtrace as user nobody: a checkout made in
# a private directory (mktemp -d is mode 0700) must let others pass through its top directory.
# Only the top: git creates everything inside readable. (test/reliability/unprivileged.test.ts
# names any other directory on the way that shuts nobody out.)
if [ "$(id -u)" = 0 ]; then chmod o+x .; fi
mapfile -t files < <(find src test -name '*.test.ts' 2>/dev/null | sort)
if [ $# -gt 0 ]; then files=("$@"); fi
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
