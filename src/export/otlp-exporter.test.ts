// The OTLP exporter end to end: spans committed to the real SQLite store, pulled from its
// ExportQueue, sent over HTTP to a real receiver that decodes them with the official protos.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import type { ExporterStage } from '../linker/service.js';
import type { LinkedSpan } from '../span/span.js';
import { openSqliteStore, type SqliteStore } from '../storage/sqlite.js';
import { loadExportConfig, type ExportConfig } from './config.js';
import { makeSpan } from './fixtures.js';
import { createOtlpExporter, type OtlpExporter, type OtlpExporterOptions } from './otlp-exporter.js';
import { startReceiver, type Receiver, type Respond } from './test-receiver.js';

const BIG = Number.MAX_SAFE_INTEGER;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-export-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openStore(dir: string): SqliteStore {
  const store = openSqliteStore(dir, { retentionMaxAgeMs: BIG, retentionMaxBytes: BIG, sweepIntervalMs: 0, exportQueue: true });
  let closed = false;
  const close = store.close.bind(store);
  store.close = () => {
    if (!closed) close();
    closed = true;
  };
  cleanups.push(() => store.close());
  return store;
}

async function receiver(respond?: Respond): Promise<Receiver> {
  const r = await startReceiver(respond);
  cleanups.push(() => r.close());
  return r;
}

function config(rec: Receiver, env: NodeJS.ProcessEnv = {}, over: Partial<ExportConfig> = {}): ExportConfig {
  const cfg = loadExportConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: rec.url, OTEL_BSP_SCHEDULE_DELAY: '20', ...env })!;
  return { ...cfg, retry: { initialMs: 20, maxMs: 80, maxElapsedMs: 5000 }, ...over };
}

function exporter(cfg: ExportConfig | undefined, store: SqliteStore, opts: OtlpExporterOptions = {}): OtlpExporter {
  const logs: string[] = [];
  const e = createOtlpExporter(cfg, store, { pollIntervalMs: 50, random: () => 0.5, log: (_l, m) => logs.push(m), ...opts });
  cleanups.push(() => e.stop(200));
  e.start();
  return e;
}

function commit(store: SqliteStore, n: number, over: Partial<LinkedSpan> = {}): LinkedSpan[] {
  const spans = Array.from({ length: n }, () => makeSpan(over));
  store.commit(spans, []);
  return spans;
}

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const ids = (rec: Receiver) => rec.spans().map((s) => s.span.spanId as string);

describe('OTLP exporter', { timeout: 30_000 }, () => {
  it('exports stored spans as OTLP/HTTP protobuf with the configured headers, then marks them exported', async () => {
    const rec = await receiver();
    const store = openStore(tempDir());
    const spans = commit(store, 25);
    const e = exporter(config(rec, { OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=k%3D1,x-tenant=acme' }), store);
    await until('all spans exported', () => store.backlog() === 0);
    assert.deepEqual(ids(rec).sort(), spans.map((s) => s.spanId).sort());
    const req = rec.requests[0];
    assert.equal(req.method, 'POST');
    assert.equal(req.url, '/v1/traces');
    assert.equal(req.headers['content-type'], 'application/x-protobuf');
    assert.equal(req.headers['x-api-key'], 'k=1');
    assert.equal(req.headers['x-tenant'], 'acme');
    assert.match(String(req.headers['user-agent']), /^seqtrace\//);
    const s = e.stats();
    assert.equal(s.enabled, 1);
    assert.equal(s.exported, 25);
    assert.equal(s.backlog, 0);
    assert.equal(s.exportFailures, 0);
    assert.equal(rec.spans()[0].resource['service.name'], 'users');
  });

  it('sends OTLP/JSON, gzip-compressed, when so configured', async () => {
    const rec = await receiver();
    const store = openStore(tempDir());
    const spans = commit(store, 3, { kind: 'exit', parentId: '00f067aa0ba902b7' });
    exporter(config(rec, { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' }), store);
    await until('all spans exported', () => store.backlog() === 0);
    const req = rec.requests[0];
    assert.equal(req.headers['content-type'], 'application/json');
    assert.equal(req.headers['content-encoding'], 'gzip');
    const got = rec.spans().map((x) => x.span);
    assert.deepEqual(got.map((s) => s.spanId).sort(), spans.map((s) => s.spanId).sort());
    assert.equal(got[0].kind, 3);
    assert.equal(got[0].parentSpanId, '00f067aa0ba902b7');
    assert.equal(typeof got[0].startTimeUnixNano, 'string');
  });

  it('exports spans committed later when notified, without waiting for the poll', async () => {
    const rec = await receiver();
    const store = openStore(tempDir());
    const e = exporter(config(rec), store, { pollIntervalMs: 60_000 });
    await new Promise((r) => setTimeout(r, 50));
    const spans = commit(store, 4);
    e.notify();
    await until('notified spans exported', () => store.backlog() === 0, 2000);
    assert.deepEqual(ids(rec).sort(), spans.map((s) => s.spanId).sort());
  });

  it('resumes from the backlog after a restart and exports nothing twice', async () => {
    const dir = tempDir();
    const rec = await receiver((_r, n) => (n === 1 ? { status: 200 } : 'hang'));
    let store = openStore(dir);
    const spans = commit(store, 30);
    const cfg = config(rec, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '10' });
    const first = exporter(cfg, store);
    await rec.waitFor(2);
    // "Crash" while the second request hangs: stop aborts it; its spans stay unexported.
    await first.stop(50);
    assert.equal(store.backlog(), 20);
    store.close();

    rec.respond = () => ({ status: 200 });
    store = openStore(dir);
    assert.equal(store.backlog(), 20, 'the backlog survives the restart');
    const second = exporter(cfg, store);
    await until('backlog exported', () => store.backlog() === 0);
    const exported = ids(rec);
    assert.equal(exported.length, 30, 'each span exported exactly once');
    assert.deepEqual([...new Set(exported)].sort(), spans.map((s) => s.spanId).sort());
    assert.equal(second.stats().exported, 20);
  });

  it('retries failed requests (503 twice) and then exports everything once', async () => {
    const rec = await receiver((_r, n) => (n <= 2 ? { status: 503 } : { status: 200 }));
    const store = openStore(tempDir());
    const spans = commit(store, 5);
    const e = exporter(config(rec), store);
    await until('exported', () => store.backlog() === 0);
    assert.equal(rec.requests.length, 3);
    assert.deepEqual(ids(rec).sort(), spans.map((s) => s.spanId).sort());
    assert.equal(e.stats().retries, 2);
    assert.equal(e.stats().exportFailures, 0);
  });

  it('honours Retry-After on a 429/503', async () => {
    const rec = await receiver((_r, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }));
    const store = openStore(tempDir());
    commit(store, 2);
    exporter(config(rec), store);
    await until('exported', () => store.backlog() === 0);
    const gap = rec.requests[1].at - rec.requests[0].at;
    assert.ok(gap >= 990, `retried after ${gap} ms; Retry-After said 1 s`);
  });

  it('does not retry a 400: counts the spans as rejected, leaves them in the backlog, and goes on', async () => {
    const rec = await receiver((_r, n) => (n === 1 ? { status: 400, body: 'cannot decode' } : { status: 200 }));
    const store = openStore(tempDir());
    const logs: string[] = [];
    commit(store, 10);
    const cfg = config(rec, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '5' });
    const e = exporter(cfg, store, { log: (_l, m) => logs.push(m) });
    await until('two requests', () => e.stats().exported === 5 && e.stats().rejected === 5);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(rec.requests.length, 2, 'the rejected batch is not sent again');
    const s = e.stats();
    assert.equal(s.exportFailures, 5);
    assert.equal(s.backlog, 5, 'rejected spans stay in the store for a corrected configuration');
    assert.match(logs.join('\n'), /SEQ_ERR_EXPORT|HTTP 400: cannot decode/);
  });

  it('times out a request that hangs and retries it', async () => {
    const rec = await receiver((_r, n) => (n === 1 ? 'hang' : { status: 200 }));
    const store = openStore(tempDir());
    commit(store, 3);
    const e = exporter(config(rec, { OTEL_EXPORTER_OTLP_TIMEOUT: '200' }), store);
    await until('exported', () => store.backlog() === 0);
    assert.equal(rec.requests.length, 2);
    assert.equal(e.stats().retries, 1);
  });

  it('pulls the rows of a batch again, once, after its retries ran out', async () => {
    let down = true;
    const rec = await receiver(() => (down ? { status: 503 } : { status: 200 }));
    const store = openStore(tempDir());
    const spans = commit(store, 12);
    const logs: string[] = [];
    const cfg = config(rec, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '5' }, { retry: { initialMs: 20, maxMs: 50, maxElapsedMs: 150 } });
    const e = exporter(cfg, store, { log: (_l, m) => logs.push(m) });
    await until('a batch given up on', () => e.stats().exportFailures > 0);
    down = false;
    await until('everything exported', () => store.backlog() === 0);
    await e.flush();
    const exported = ids(rec);
    assert.equal(exported.length, 12, `exported ${exported.length} spans for 12`);
    assert.deepEqual([...new Set(exported)].sort(), spans.map((s) => s.spanId).sort());
    assert.match(logs.join('\n'), /retrying in/);
  });

  it('never blocks the linker and holds at most maxQueue spans in memory while the endpoint hangs', async () => {
    const rec = await receiver(() => 'hang');
    const store = openStore(tempDir());
    const cfg = config(rec, { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '10', OTEL_BSP_MAX_QUEUE_SIZE: '50' });
    const e = exporter(cfg, store);
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) {
      commit(store, 25);
      e.notify();
    }
    const notifyMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 200));
    const s = e.stats();
    assert.ok(s.queueDepth <= 50, `queue depth ${s.queueDepth}`);
    assert.equal(s.inFlight, 20, 'two requests of 10 in flight (maxInFlight 2)');
    assert.equal(s.dropped, 0, 'the store is the buffer: nothing is dropped');
    assert.equal(s.backlog, 500);
    assert.ok(notifyMs < 2000, `commits with notify took ${notifyMs} ms`);
  });

  it('is a no-op that reports disabled when no endpoint is configured', async () => {
    const store = openStore(tempDir());
    commit(store, 2);
    const e = exporter(undefined, store);
    const asStage: ExporterStage = e; // what startLinker({ exporter }) takes
    asStage.notify();
    await e.flush();
    assert.deepEqual({ enabled: e.stats().enabled, exported: e.stats().exported, backlog: e.stats().backlog }, { enabled: 0, exported: 0, backlog: 2 });
  });
});
