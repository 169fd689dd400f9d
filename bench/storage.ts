// Storage benchmark: spool append and commit throughput (spans/s), then search, trace and
// service-map latency with N traces stored.
//   node --import tsx bench/storage.ts [--traces 100000] [--batch 1000] [--dir /tmp/x]
// Results and the machine are recorded in docs/storage.md.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { encodeSpans } from '../src/span/lineprotocol.js';
import type { EbpfSpan, LinkedSpan } from '../src/span/span.js';
import { openSqliteStore, DB_FILE } from '../src/storage/sqlite.js';
import type { TraceQuery } from '../src/storage/store.js';

const { values: args } = parseArgs({
  options: {
    traces: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '1000' },
    dir: { type: 'string' },
    durability: { type: 'string', default: 'process' },
  },
});
const TRACES = Number(args.traces);
const BATCH = Number(args.batch);
const START_US = 1_732_500_000_000_000;
const DAY_US = 86_400_000_000;
const SPACING_US = Math.floor(DAY_US / TRACES);
const SERVICES = ['frontend', 'cart', 'payments', 'users', 'inventory', 'search', 'shipping', 'auth'];
const ROUTES = ['GET /users/{id}', 'POST /cart/{id}', 'GET /items', 'PUT /orders/{id}', 'GET /health', 'DELETE /sessions/{id}'];

const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');

function ebpf(i: number, over: Partial<EbpfSpan>): EbpfSpan {
  return {
    host: `host-${i % 4}`, kind: 'entry', reqSeq: (i * 2654435761) >>> 0, respSeq: (i * 40503) >>> 0, threadGroup: String(1e15 + i),
    pid: 1000 + (i % 50), tid: 2000 + (i % 200), startUs: START_US, durationUs: 1000, service: 'frontend', processName: 'node',
    srcIp: '10.0.0.2', srcPort: 8080, dstIp: '10.0.0.1', dstPort: 40000 + (i % 20000), resource: 'GET /', operation: 'HTTP',
    status: 'ok', httpMethod: 'GET', httpRoute: '/', httpStatusCode: 200, appTraceId: '', appParentId: '', appSampled: 0,
    attrs: { bytes_read: 512, bytes_written: 2048, http_version: '1.1' },
    ...over,
  };
}

/** Trace n: a → exit → b → exit → c, three services, 5 spans; 2% errors. The traces span one day. */
function trace(n: number): LinkedSpan[] {
  const traceId = hex(n, 32);
  const start = START_US + n * SPACING_US;
  const a = SERVICES[n % 8], b = SERVICES[(n + 3) % 8], c = SERVICES[(n + 5) % 8];
  const ra = ROUTES[n % 6], rb = ROUTES[(n >> 1) % 6], rc = ROUTES[(n >> 2) % 6];
  const dur = 500 + ((n * 7919) % 20_000);
  const err = n % 50 === 0;
  const id = (k: number) => hex(n * 8 + k, 16);
  const mk = (k: number, parentId: string, o: Partial<EbpfSpan>): LinkedSpan =>
    ({ ...ebpf(n * 8 + k, o), traceId, spanId: id(k), parentId, ebpfTraceId: traceId, late: false });
  return [
    mk(1, '', { service: a, resource: ra, startUs: start, durationUs: dur + 400 }),
    mk(2, id(1), { kind: 'exit', service: a, resource: rb, startUs: start + 100, durationUs: dur }),
    mk(3, id(2), { service: b, resource: rb, startUs: start + 150, durationUs: dur - 100, status: err ? 'error' : 'ok', httpStatusCode: err ? 500 : 200 }),
    mk(4, id(3), { kind: 'exit', service: b, resource: rc, startUs: start + 200, durationUs: 300 }),
    mk(5, id(4), { service: c, resource: rc, startUs: start + 220, durationUs: 250 }),
  ];
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)];
}

async function timeIt(label: string, runs: number, fn: (i: number) => Promise<unknown> | unknown) {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn(i);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((x, y) => x - y);
  console.log(`${label.padEnd(58)} p50 ${percentile(ms, 0.5).toFixed(2)} ms  p99 ${percentile(ms, 0.99).toFixed(2)} ms`);
}

const dir = args.dir ?? mkdtempSync(join(tmpdir(), 'seqtrace-bench-'));
const store = openSqliteStore(dir, {
  retentionMaxAgeMs: 3600_000, retentionMaxBytes: Number.MAX_SAFE_INTEGER, sweepIntervalMs: 0,
  durability: args.durability === 'os' ? 'os' : 'process',
});
try {
  console.log(`traces ${TRACES} (5 spans each), ${BATCH} spans per append/commit, durability ${args.durability}, node ${process.version}`);

  // 1. Spool: what ingest does before answering 2xx.
  const spoolBatch = trace(1).concat(trace(2)).map((s) => ebpf(1, s));
  const batchSpans: EbpfSpan[] = [];
  while (batchSpans.length < BATCH) batchSpans.push(...spoolBatch);
  batchSpans.length = BATCH;
  const appendIds: number[] = [];
  let t0 = performance.now();
  let cpu0 = process.cpuUsage();
  const cpuS = () => {
    const c = process.cpuUsage(cpu0);
    return (c.user + c.system) / 1e6;
  };
  const APPENDS = Math.max(20, Math.round((TRACES * 5) / BATCH / 5));
  for (let i = 0; i < APPENDS; i++) appendIds.push(store.append(batchSpans, Date.now()));
  let s = (performance.now() - t0) / 1000;
  console.log(`spool append: ${Math.round((APPENDS * BATCH) / s).toLocaleString('en')} spans/s wall, ${Math.round((APPENDS * BATCH) / cpuS()).toLocaleString('en')} spans/s CPU (${((s / APPENDS) * 1000).toFixed(2)} ms per ${BATCH}-span batch)`);
  // 1b. Spool of the raw body as received (what the linker does): gzip'd line protocol.
  const rawBody = gzipSync(encodeSpans(batchSpans));
  t0 = performance.now();
  cpu0 = process.cpuUsage();
  for (let i = 0; i < APPENDS; i++) appendIds.push(store.append(batchSpans, Date.now(), { body: rawBody, format: 'lp', encoding: 'gzip' }));
  s = (performance.now() - t0) / 1000;
  console.log(`spool append raw (gzip LP, ${(rawBody.length / BATCH).toFixed(0)} B/span): ${Math.round((APPENDS * BATCH) / s).toLocaleString('en')} spans/s wall, ${Math.round((APPENDS * BATCH) / cpuS()).toLocaleString('en')} spans/s CPU (${((s / APPENDS) * 1000).toFixed(2)} ms per ${BATCH}-span batch)`);

  // 2. Commit: linked spans stored, summaries, search rows, edges, export queue; done batches leave the spool.
  // The traces are made beforehand so that only storage is measured.
  const made: LinkedSpan[][] = [];
  let chunk: LinkedSpan[] = [];
  for (let n = 1; n <= TRACES; n++) {
    chunk.push(...trace(n));
    if (chunk.length >= BATCH || n === TRACES) {
      made.push(chunk);
      chunk = [];
    }
  }
  t0 = performance.now();
  cpu0 = process.cpuUsage();
  let spans = 0;
  let next = 0;
  for (const batch of made) {
    const done = next < appendIds.length ? [appendIds[next++]] : [];
    store.commit(batch, done);
    spans += batch.length;
  }
  s = (performance.now() - t0) / 1000;
  console.log(`commit: ${Math.round(spans / s).toLocaleString('en')} spans/s wall, ${Math.round(spans / cpuS()).toLocaleString('en')} spans/s CPU (${spans.toLocaleString('en')} spans in ${made.length} commits, ${s.toFixed(1)} s)`);
  t0 = performance.now();
  cpu0 = process.cpuUsage();
  const replay = made.slice(0, 20);
  for (const batch of replay) store.commit(batch, []);
  console.log(`replayed commit (spans already stored): ${Math.round((replay.length * BATCH) / ((performance.now() - t0) / 1000)).toLocaleString('en')} spans/s wall`);

  const st = store.stats();
  console.log(`database: ${(st.dbBytes / 1024 ** 2).toFixed(0)} MiB in use, file ${(statSync(join(dir, DB_FILE)).size / 1024 ** 2).toFixed(0)} MiB, ${Math.round(st.dbBytes / spans)} bytes per span`);

  // 3. Reads with TRACES traces stored.
  const endUs = START_US + (TRACES + 1) * SPACING_US;
  const queries: [string, TraceQuery][] = [
    ['findTraces {} (newest 20)', {}],
    ['findTraces service', { service: 'payments' }],
    ['findTraces service+operation', { service: 'cart', operation: 'GET /items' }],
    ['findTraces status=error', { status: 'error' }],
    ['findTraces service+status=error', { service: 'users', status: 'error' }],
    ['findTraces minDuration=19ms (rare)', { minDurationUs: 19_000 }],
    ['findTraces service+minDuration=15ms, time range', { service: 'search', minDurationUs: 15_000, startUs: START_US, endUs: endUs / 2 + START_US / 2 }],
    ['findTraces operation only', { operation: 'PUT /orders/{id}' }],
    ['findTraces service, limit 1000', { service: 'frontend', limit: 1000 }],
  ];
  for (const [label, q] of queries) await timeIt(label, 200, () => store.findTraces(q));
  const page = await store.findTraces({ service: 'payments', limit: 50 });
  await timeIt('findTraces service, page 2 (cursor)', 200, () => store.findTraces({ service: 'payments', limit: 50, cursor: page.next }));
  await timeIt('getTrace', 2000, (i) => store.getTrace(hex(1 + ((i * 7919) % TRACES), 32)));
  await timeIt('services', 200, () => store.services());
  await timeIt('operations', 200, () => store.operations('cart'));
  await timeIt(`dependencies, last hour (${Math.round((TRACES / 24) * 2).toLocaleString('en')} calls)`, 50, () => store.dependencies(endUs - 3_600_000_000, endUs));
  await timeIt(`dependencies, everything (${(TRACES * 2).toLocaleString('en')} calls)`, 10, () => store.dependencies(0, endUs));
  await timeIt('unexported(0, 1000) + markExported', 50, () => {
    const rows = store.unexported(0, 1000);
    store.markExported(rows.map((r) => r.rowId));
  });
  t0 = performance.now();
  // "now" one hour (the maximum age) after the middle trace: the older half is deleted.
  const r = store.sweep((START_US + (TRACES / 2) * SPACING_US) / 1000 + 3600_000);
  s = (performance.now() - t0) / 1000;
  console.log(`retention sweep by age: ${r.deletedTraces.toLocaleString('en')} traces, ${r.deletedSpans.toLocaleString('en')} spans in ${s.toFixed(2)} s (${Math.round(r.deletedSpans / s).toLocaleString('en')} spans/s)`);
} finally {
  store.close();
  if (!args.dir) rmSync(dir, { recursive: true, force: true });
}
