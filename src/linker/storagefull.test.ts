// A real full disk: the store on a 2 MiB tmpfs. Ingest must answer 503 SEQ_ERR_STORAGE_FULL
// (nothing of that batch kept, senders retry) and go on serving; needs root to mount.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../config/config.js';
import { encodeSpans } from '../span/lineprotocol.js';
import type { EbpfSpan } from '../span/span.js';
import { buildTrace, rng, shopTree } from './fixtures.js';
import { startLinker } from './service.js';

test('a full disk answers 503 SEQ_ERR_STORAGE_FULL and the linker keeps serving', async (t) => {
  if (process.getuid?.() !== 0) assert.fail('this test mounts a tmpfs and needs root');
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
  t.after(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  const { linker: cfg } = loadConfig({ env: { ENV_HTTP_LISTEN: '127.0.0.1:0', ENV_INPUT_EBPFTRACE_SQLITE_PATH: join(dir, 'db'), ENV_INPUT_EBPFTRACE_WINDOW: '1s' } });
  const linker = await startLinker(cfg, { logger: false, flushIntervalMs: 3_600_000 });
  try {
    const r = rng(11);
    let accepted = 0;
    let full: { status: number; json: any } | undefined;
    for (let i = 0; i < 50 && !full; i++) {
      const spans: EbpfSpan[] = [];
      while (spans.length < 1000) spans.push(...buildTrace(shopTree(r), { startUs: Date.now() * 1000, random: r }).spans);
      const res = await fetch(`${linker.url}/v1/bpftracing`, { method: 'POST', body: encodeSpans(spans) });
      const json = await res.json();
      if (res.status === 200) accepted += json.accepted;
      else full = { status: res.status, json };
    }
    assert.ok(full, 'the 2 MiB disk never filled');
    assert.equal(full.status, 503);
    assert.equal(full.json.code, 'SEQ_ERR_STORAGE_FULL');
    assert.match(full.json.message, /storage is full/);
    assert.ok(accepted > 0, 'batches before the disk filled were accepted');
    assert.equal((await fetch(`${linker.url}/healthz`)).status, 200);
    const m = await (await fetch(`${linker.url}/metrics`)).text();
    assert.match(m, new RegExp(`^seqtrace_spans_accepted_total ${accepted}$`, 'm'));
  } finally {
    await linker.close();
  }
});
