// SIGKILL durability: the real command (`bin/seqtrace linker`) as a child process, batches
// posted concurrently, `kill -9` while some are in flight. Every span answered 2xx must end
// up linked and stored exactly once after a restart; batches that got no answer are resent
// (as an agent does) and must not be stored twice.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeSpans } from '../span/lineprotocol.js';
import type { EbpfSpan, LinkedSpan } from '../span/span.js';
import { openSqliteStore } from '../storage/sqlite.js';
import { buildTrace, chain, rng, spanKey, type BuiltTrace } from './fixtures.js';

const SEQTRACE = fileURLToPath(new URL('../../bin/seqtrace', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'seqtrace-kill-'));
const children = new Set<ChildProcess>();
after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const conf = join(dir, 'seqtrace.toml');
writeFileSync(conf, `[[inputs.ebpftrace]]\nsqlite_path = "${join(dir, 'db')}"\nwindow = "2s"\nsampling_rate = 1\n`);

async function startChild(): Promise<{ proc: ChildProcess; url: string; exited: Promise<number | null> }> {
  const proc = spawn(SEQTRACE, ['linker', '--config', conf], { env: { ...process.env, ENV_HTTP_LISTEN: '127.0.0.1:0' }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => {
    children.delete(proc);
    resolve(code);
  }));
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`linker not ready in 20 s:\n${out}`)), 20_000);
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = /ingest on (http:\/\/[^\s/]+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    proc.stderr!.on('data', onData);
    proc.stdout!.on('data', onData);
    proc.on('close', (code) => reject(new Error(`linker exited (${code}) before it was ready:\n${out}`)));
  });
  return { proc, url, exited };
}

async function post(url: string, spans: EbpfSpan[]): Promise<number> {
  try {
    const r = await fetch(`${url}/v1/bpftracing`, { method: 'POST', body: encodeSpans(spans) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0; // connection reset by the kill
  }
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
}

test('kill -9 after 2xx: every acknowledged span is linked and stored exactly once after restart', { timeout: 120_000 }, async () => {
  const r = rng(42);
  const traces: BuiltTrace[] = [];
  const all: EbpfSpan[] = [];
  for (let i = 0; i < 80; i++) {
    const t = buildTrace(chain(['k1', 'k2', 'k3']), { startUs: Date.now() * 1000 - 30_000_000 + i * 100, random: r });
    traces.push(t);
    all.push(...t.spans);
  }
  // Shuffle so that every trace straddles several batches.
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  const batches: EbpfSpan[][] = [];
  for (let i = 0; i < all.length; i += 10) batches.push(all.slice(i, i + 10));

  const first = await startChild();
  const status = new Array<number>(batches.length).fill(0);
  let answered = 0;
  let next = 0;
  let killed = false;
  // Four concurrent senders; kill -9 once a third of the batches are acknowledged.
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (!killed && next < batches.length) {
      const i = next++;
      status[i] = await post(first.url, batches[i]);
      if (status[i] === 200 && ++answered >= batches.length / 3 && !killed) {
        killed = true;
        first.proc.kill('SIGKILL');
      }
    }
  }));
  await first.exited;
  const acked = batches.filter((_, i) => status[i] === 200);
  assert.ok(acked.length >= batches.length / 3, `${acked.length} batches acknowledged before the kill`);

  const second = await startChild();
  // An agent resends what was not acknowledged (some of it may have been stored already).
  // They must arrive within the window of the replayed spans to join them (a resend later than
  // that is a late span: it joins the trace id, not the parent link of an emitted span).
  const resend = batches.filter((_, i) => status[i] !== 200);
  assert.deepEqual(await Promise.all(resend.map((b) => post(second.url, b))), resend.map(() => 200));
  // Wait until every window has closed and every batch left the spool.
  const deadline = Date.now() + 30_000;
  while ((await metric(second.url, 'seqtrace_spool_batches_held')) > 0 || (await metric(second.url, 'seqtrace_joiner_pending_spans')) > 0) {
    assert.ok(Date.now() < deadline, 'the linker did not emit every trace');
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.ok((await metric(second.url, 'seqtrace_replayed_spans_total')) > 0, 'the spool was replayed');
  second.proc.kill('SIGTERM');
  assert.equal(await second.exited, 0, 'clean exit on SIGTERM');

  const store = openSqliteStore(join(dir, 'db'), { retentionMaxAgeMs: 1e13, retentionMaxBytes: 1e13, sweepIntervalMs: 0 });
  try {
    const stored: LinkedSpan[] = [];
    let cursor: string | undefined;
    do {
      const page = await store.findTraces({ limit: 1000, cursor, startUs: 0 });
      for (const t of page.traces) stored.push(...(await store.getTrace(t.traceId))!);
      cursor = page.next;
    } while (cursor);
    const byKey = new Map<string, LinkedSpan>();
    for (const s of stored) {
      assert.ok(!byKey.has(spanKey(s)), `span ${spanKey(s)} stored twice`);
      byKey.set(spanKey(s), s);
    }
    assert.equal(stored.length, all.length, 'every span stored once');
    assert.equal(new Set(stored.map((s) => s.spanId)).size, stored.length);
    for (const t of traces) {
      const ids = new Set<string>();
      for (const s of t.spans) {
        const got = byKey.get(spanKey(s))!;
        ids.add(got.traceId);
        const want = t.parents.get(spanKey(s))!;
        const parent = stored.find((p) => p.spanId === got.parentId);
        assert.equal(parent ? spanKey(parent) : '', want, `parent of ${spanKey(s)}`);
      }
      assert.equal(ids.size, 1, 'a trace keeps one id across the crash');
    }
  } finally {
    store.close();
  }
});
