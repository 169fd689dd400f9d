// The loader's supervisor (./loader.ts) against stand-in loaders: scripts that fail the way the
// real one does. No eBPF here; capture.test.ts runs the real loader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCapture } from './loader.js';

test('a loader that fails at start: the error quotes its last words', async () => {
  // The reason is the loader's last stderr line. The supervisor once built its message at the
  // child's 'exit', which Node may emit before the pipe is read to its end: against this
  // stand-in, which exits right after writing, started four at a time, the reason was then
  // missing from 1,091 of 1,200 messages (one at a time, it rarely was).
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-fakeloader-'));
  try {
    const loader = join(dir, 'fake-loader');
    writeFileSync(loader, `#!/bin/sh
echo "libbpf: a line of the verifier's log" >&2
echo "seqtrace-loader: load failed: the reason, named (errno 1)" >&2
exit 2
`, { mode: 0o755 });
    for (let i = 0; i < 40; i++) {
      await Promise.all([0, 1, 2, 3].map((j) => assert.rejects(startCapture({ mode: 'socket', loaderPath: loader, onEvents() {}, onError() {} }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'SEQ_ERR_EBPF_UNAVAILABLE', `attempt ${i}.${j}`);
          assert.equal(e.message, 'eBPF capture could not start: seqtrace-loader: load failed: the reason, named (errno 1)', `attempt ${i}.${j}`);
          return true;
        })));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
