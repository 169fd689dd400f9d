// Export benchmark: how many spans/s the OTLP exporter turns into protobuf and sends.
//   node --import tsx bench/export.ts [--spans 200000] [--batch 512] [--protocol http/protobuf|http/json] [--gzip]
// 1. encode: LinkedSpans → ExportTraceServiceRequest bytes (the fast writer, and protobufjs
//    encoding the same message as objects, for comparison), spans per CPU-second of this process.
// 2. send: encode + POST through the exporter helper to a receiver in another process that
//    reads each body and answers 200 (wall-clock spans/s).
// 3. store → endpoint: the whole exporter draining a SQLite backlog of --spans spans
//    (unexported rows read and parsed, encoded, sent, marked exported).
// Results and the machine are recorded in docs/export.md.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LinkedSpan } from '../src/span/span.js';
import { openSqliteStore } from '../src/storage/sqlite.js';
import { loadExportConfig, type ExportConfig } from '../src/export/config.js';
import { createExporterHelper } from '../src/export/exporter-helper.js';
import { makeSpan } from '../src/export/fixtures.js';
import { encodeRequest } from '../src/export/otlp-encode.js';
import { createOtlpExporter, postOtlp } from '../src/export/otlp-exporter.js';
import { toExportRequest } from '../src/export/otlp.js';
import { otlpTypes } from '../src/export/proto.js';

const { values: args } = parseArgs({
  options: {
    spans: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '512' },
    protocol: { type: 'string', default: 'http/protobuf' },
    gzip: { type: 'boolean', default: false },
  },
});
const N = Number(args.spans);
const BATCH = Number(args.batch);

const SERVICES = ['frontend', 'cart', 'payments', 'users', 'inventory', 'search', 'shipping', 'auth'];
const ROUTES = ['GET /users/{id}', 'POST /cart/{id}', 'GET /items', 'PUT /orders/{id}', 'GET /health'];

function spanAt(i: number): LinkedSpan {
  const route = ROUTES[i % ROUTES.length];
  return makeSpan({
    service: SERVICES[i % SERVICES.length],
    pid: 1000 + (i % SERVICES.length),
    host: `node-${i % 3}`,
    kind: i % 2 ? 'exit' : 'entry',
    parentId: i % 4 ? '00f067aa0ba902b7' : '',
    resource: route,
    httpMethod: route.split(' ')[0],
    httpRoute: route.split(' ')[1],
    httpStatusCode: i % 50 === 0 ? 503 : 200,
    status: i % 50 === 0 ? 'error' : 'ok',
  });
}

function cpuSeconds(fn: () => void): number {
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

/** A receiver in a child process: reads each body, answers 200, counts bytes. */
async function startSink(): Promise<{ url: string; stop(): void }> {
  const code = `
    const http = require('node:http');
    const s = http.createServer((req, res) => { req.on('data', () => {}); req.on('end', () => { res.writeHead(200); res.end(); }); });
    s.keepAliveTimeout = 60000;
    s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill() };
}

function line(label: string, spans: number, seconds: number, extra = ''): void {
  console.log(`${label.padEnd(44)} ${Math.round(spans / seconds).toLocaleString('en-US').padStart(10)} spans/s${extra}`);
}

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${cpus().length} × ${cpus()[0]?.model}; ${N} spans, batches of ${BATCH}, ${args.protocol}${args.gzip ? ' + gzip' : ''}`);
  const batches: LinkedSpan[][] = [];
  for (let i = 0; i < N; i += BATCH) batches.push(Array.from({ length: Math.min(BATCH, N - i) }, (_, j) => spanAt(i + j)));
  const protocol = args.protocol as 'http/protobuf' | 'http/json';

  // 1. encoding alone
  let bytes = 0;
  for (const b of batches.slice(0, 20)) encodeRequest(b, protocol); // warm-up
  const enc = cpuSeconds(() => {
    for (const b of batches) bytes += encodeRequest(b, protocol).body.length;
  });
  line(`encode (${protocol})`, N, enc, `  (${Math.round(bytes / N)} bytes/span)`);
  if (protocol === 'http/protobuf') {
    const { ExportTraceServiceRequest: T } = otlpTypes();
    const some = batches.slice(0, Math.max(1, Math.ceil(batches.length / 4)));
    const count = some.reduce((a, b) => a + b.length, 0);
    const ref = cpuSeconds(() => {
      for (const b of some) T.encode(toExportRequest(b)).finish();
    });
    line('encode via protobufjs objects (reference)', count, ref);
  }

  // 2. encode + send through the helper
  const sink = await startSink();
  const cfg: ExportConfig = {
    ...loadExportConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${sink.url}/v1/traces`, OTEL_EXPORTER_OTLP_PROTOCOL: protocol, OTEL_EXPORTER_OTLP_COMPRESSION: args.gzip ? 'gzip' : 'none' })!,
    maxBatch: BATCH,
    maxQueue: N,
  };
  try {
    const flat = batches.flat();
    const helper = createExporterHelper<LinkedSpan>({
      maxBatch: BATCH, maxQueue: N, flushIntervalMs: 50, retry: cfg.retry, maxInFlight: cfg.maxInFlight,
      send: async (b, signal) => void (await postOtlp(cfg, encodeRequest(b, protocol).body, signal)),
    });
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (const s of flat) helper.enqueue(s);
    await helper.flush();
    const wall = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    line('encode + POST (helper → local receiver)', N, wall, `  (exporter CPU ${(((c.user + c.system) / 1e6 / wall) * 100).toFixed(0)}% of a core)`);
    await helper.stop();

    // 3. SQLite backlog → endpoint
    const dir = mkdtempSync(join(tmpdir(), 'seqtrace-bench-export-'));
    try {
      const store = openSqliteStore(dir, { retentionMaxAgeMs: Number.MAX_SAFE_INTEGER, retentionMaxBytes: Number.MAX_SAFE_INTEGER, sweepIntervalMs: 0, exportQueue: true });
      for (const b of batches) store.commit(b, []);
      const exporter = createOtlpExporter(cfg, store, { pollIntervalMs: 1000 });
      const t1 = performance.now();
      const c1 = process.cpuUsage();
      exporter.start();
      while (store.backlog() > 0) await new Promise((r) => setTimeout(r, 5));
      const wall2 = (performance.now() - t1) / 1000;
      const c2 = process.cpuUsage(c1);
      line('SQLite backlog → endpoint (whole exporter)', N, wall2, `  (CPU ${(((c2.user + c2.system) / 1e6 / wall2) * 100).toFixed(0)}% of a core)`);
      await exporter.stop();
      store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    sink.stop();
  }
}

await main();
