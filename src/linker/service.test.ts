// End to end through HTTP: a real linker (Fastify, pipeline, joiner, SQLite store in a temp
// dir), spans with known trees posted as line protocol and JSON, gzip and not; then what the
// store holds is compared with the trees. The clock is injected so windows close on demand.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { loadConfig, type LinkerConfig } from '../config/config.js';
import { encodeSpans } from '../span/lineprotocol.js';
import { encodeJsonPoints } from '../span/json.js';
import { spanToPoint } from '../span/validate.js';
import type { EbpfSpan, LinkedSpan } from '../span/span.js';
import { openSqliteStore } from '../storage/sqlite.js';
import { buildTrace, chain, rng, spanKey, type BuiltTrace, type CallTree } from './fixtures.js';
import { startLinker, type LinkerHandle } from './service.js';

/** A Buffer as fetch's BodyInit: a Uint8Array view, no copy. */
const bytes = (b: Buffer): Uint8Array<ArrayBuffer> => new Uint8Array(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength);

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function config(over: Record<string, string> = {}): LinkerConfig {
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-linker-'));
  dirs.push(dir);
  const { linker } = loadConfig({
    env: {
      ENV_HTTP_LISTEN: '127.0.0.1:0', ENV_INPUT_EBPFTRACE_SQLITE_PATH: join(dir, 'db'), ENV_INPUT_EBPFTRACE_WINDOW: '1s',
      ENV_INPUT_EBPFTRACE_SAMPLING_RATE: '1', ...over,
    },
  });
  return linker;
}

interface Harness {
  linker: LinkerHandle;
  clock: { t: number };
  post(body: string | Buffer, headers?: Record<string, string>): Promise<{ status: number; json: any }>;
  /** Moves the clock on and flushes: every window that closed by then is committed. */
  advance(ms: number): number;
}

async function start(over: Record<string, string> = {}): Promise<Harness> {
  const clock = { t: Date.now() };
  const linker = await startLinker(config(over), { nowMs: () => clock.t, flushIntervalMs: 3_600_000, logger: false });
  return {
    linker,
    clock,
    async post(body, headers = {}) {
      const r = await fetch(`${linker.url}/v1/bpftracing`, { method: 'POST', body: typeof body === 'string' ? body : bytes(body), headers });
      return { status: r.status, json: await r.json() };
    },
    advance(ms) {
      clock.t += ms;
      return linker.pipeline.flush(clock.t);
    },
  };
}

const lp = (spans: EbpfSpan[]) => encodeSpans(spans);
const json = (spans: EbpfSpan[]) => encodeJsonPoints(spans.map(spanToPoint));

/** Every span of `built` is stored exactly once, in one trace, with the expected parents. */
async function assertLinked(h: Harness, built: BuiltTrace): Promise<LinkedSpan[]> {
  const root = built.spans.find((s) => built.parents.get(spanKey(s)) === '')!;
  const page = await h.linker.store.findTraces({ service: root.service, limit: 1000 });
  let found: LinkedSpan[] | undefined;
  for (const t of page.traces) {
    const spans = await h.linker.store.getTrace(t.traceId);
    if (spans?.some((s) => spanKey(s) === spanKey(root))) found = spans;
  }
  assert.ok(found, `no stored trace holds the root ${spanKey(root)}`);
  assert.equal(found.length, built.spans.length, 'span count of the trace');
  const byKey = new Map(found.map((s) => [spanKey(s), s]));
  assert.equal(byKey.size, found.length, 'a span is stored twice');
  for (const s of built.spans) {
    const got = byKey.get(spanKey(s));
    assert.ok(got, `span ${spanKey(s)} missing`);
    const wantParent = built.parents.get(spanKey(s))!;
    const gotParent: LinkedSpan | undefined = found.find((p) => p.spanId === got.parentId);
    assert.equal(gotParent ? spanKey(gotParent) : '', wantParent, `parent of ${spanKey(s)}`);
  }
  assert.equal(new Set(found.map((s) => s.traceId)).size, 1, 'one trace id');
  return found;
}

const NOW_US = () => Date.now() * 1000 - 60_000_000; // a minute ago: span times never hold a window open

describe('linker over HTTP', () => {
  let h: Harness;
  after(async () => h?.linker.close());

  test('a chain through 5 services, line protocol, plain', async () => {
    h = await start();
    const built = buildTrace(chain(['a', 'b', 'c', 'd', 'e']), { startUs: NOW_US(), random: rng(1) });
    assert.equal(built.spans.length, 9);
    const r = await h.post(lp(built.spans));
    assert.deepEqual(r, { status: 200, json: { accepted: 9, rejected: 0, errors: [] } });
    assert.equal(h.advance(100), 0, 'nothing is emitted before the window closes');
    assert.equal(h.advance(5000), 9);
    const stored = await assertLinked(h, built);
    // the same trace through the query API on the same port
    const api = await (await fetch(`${h.linker.url}/api/traces/${stored[0].traceId}`)).json();
    assert.equal(JSON.stringify(api).includes(stored[0].spanId), true);
    const services = await (await fetch(`${h.linker.url}/api/services`)).json();
    assert.ok(JSON.stringify(services).includes('"e"'));
    assert.equal((await fetch(`${h.linker.url}/`)).headers.get('content-type'), 'text/html; charset=utf-8');
  });

  test('fan-out and keep-alive, JSON gzip', async () => {
    const tree: CallTree = {
      service: 'gw', calls: [
        { service: 'users', calls: [{ service: 'db' }, { service: 'db' }, { service: 'db' }] },
        { service: 'orders', calls: [{ service: 'db' }, { service: 'cache' }] },
        { service: 'users' },
      ],
    };
    const built = buildTrace(tree, { startUs: NOW_US(), random: rng(2) });
    const r = await h.post(gzipSync(json(built.spans)), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(r.status, 200);
    assert.equal(r.json.accepted, built.spans.length);
    h.advance(5000);
    const stored = await assertLinked(h, built);
    // keep-alive: the three users → db calls share one client port
    const dbExits = stored.filter((s) => s.service === 'users' && s.kind === 'exit');
    assert.equal(new Set(dbExits.map((s) => s.srcPort)).size, 1);
    assert.equal(dbExits.length, 3);
  });

  test('line protocol gzip and brotli; out of order across windows; a late span joins the emitted trace', async () => {
    const built = buildTrace(chain(['p', 'q', 'r']), { startUs: NOW_US(), random: rng(3) });
    const [rootEntry, ...rest] = built.spans;
    const last = rest.pop()!;
    // children first, the root 800 ms later (inside the window of the first arrival)
    assert.equal((await h.post(gzipSync(lp(rest.reverse())), { 'content-encoding': 'gzip', 'content-type': 'text/plain; charset=utf-8' })).status, 200);
    h.advance(800);
    assert.equal((await h.post(brotliCompressSync(lp([rootEntry])), { 'content-encoding': 'br' })).status, 200);
    h.advance(5000);
    const partial = await h.linker.store.getTrace((await h.linker.store.findTraces({ service: 'p' })).traces[0].traceId);
    assert.equal(partial?.length, 4);
    // the leaf arrives after its trace was emitted: stored late, same trace id
    assert.equal((await h.post(lp([last]))).status, 200);
    h.advance(5000);
    const stored = await assertLinked(h, built);
    assert.equal(stored.find((s) => spanKey(s) === spanKey(last))!.late, true);
  });

  test('an application trace id seen mid-chain names the whole trace', async () => {
    const tree = chain(['m1', 'm2', 'm3', 'm4']);
    tree.calls![0].calls![0].appTraceId = '4bf92f3577b34da6a3ce929d0e0e4736'; // m3 and below carry it
    const built = buildTrace(tree, { startUs: NOW_US(), random: rng(4) });
    assert.equal((await h.post(lp(built.spans))).status, 200);
    h.advance(5000);
    const stored = await assertLinked(h, built);
    assert.ok(stored.every((s) => s.traceId === '4bf92f3577b34da6a3ce929d0e0e4736'));
    assert.ok(stored.every((s) => s.ebpfTraceId !== s.traceId && /^[0-9a-f]{32}$/.test(s.ebpfTraceId)));
  });

  test('malformed spans: reasons returned, good spans kept', async () => {
    const built = buildTrace(chain(['ok1', 'ok2']), { startUs: NOW_US(), random: rng(5) });
    const lines = lp(built.spans).trimEnd().split('\n');
    const body = [
      lines[0],
      'dketrace,host=x ebpf_span_type="exit",req_seq=99999999999i,resp_seq=1i,pid=1i,start=1i,duration=1i',
      lines[1],
      'dketrace,host=x this is not line protocol',
      'dketrace,host=x ebpf_span_type="exit",req_seq=1i,resp_seq=1i,pid=1i,start=1i,duration=1i,src_port="http"',
      lines[2],
    ].join('\n');
    const r = await h.post(body);
    assert.equal(r.status, 200);
    assert.equal(r.json.accepted, 3);
    assert.equal(r.json.rejected, 3);
    assert.deepEqual(r.json.errors.map((e: any) => [e.index, e.field]), [[1, 'req_seq'], [3, 'this'], [4, 'src_port']]);
    assert.match(r.json.errors[0].reason, /0…4294967295/);
    assert.equal(r.json.errors[1].line, 4);
    h.advance(5000);
    await assertLinked(h, built);

    const allBad = await h.post('dketrace,host=x f=1i\n');
    assert.equal(allBad.status, 400);
    assert.equal(allBad.json.code, 'SEQ_ERR_BAD_BODY');
    assert.equal(allBad.json.rejected, 1);
    assert.equal(allBad.json.errors[0].field, 'ebpf_span_type');
  });

  test('whole-body refusals: media type, encoding, bad gzip or brotli, empty, unknown route', async () => {
    const span = lp(buildTrace({ service: 'z' }, { startUs: NOW_US(), random: rng(6) }).spans);
    const cases: [Record<string, string>, string | Buffer, number, string][] = [
      [{ 'content-type': 'application/xml' }, span, 415, 'SEQ_ERR_UNSUPPORTED_MEDIA'],
      [{ 'content-encoding': 'deflate' }, span, 415, 'SEQ_ERR_UNSUPPORTED_MEDIA'],
      [{ 'content-encoding': 'gzip' }, span, 400, 'SEQ_ERR_BAD_BODY'],
      [{ 'content-encoding': 'br' }, span, 400, 'SEQ_ERR_BAD_BODY'],
      [{ 'content-type': 'application/json' }, '{"not": "points"', 400, 'SEQ_ERR_BAD_BODY'],
      [{}, '', 400, 'SEQ_ERR_BAD_BODY'],
    ];
    for (const [headers, body, status, code] of cases) {
      const r = await h.post(body, headers);
      assert.equal(r.status, status, JSON.stringify(headers));
      assert.equal(r.json.code, code);
      assert.ok(r.json.message.length > 10);
    }
    const nf = await fetch(`${h.linker.url}/v1/nothing`);
    assert.equal(nf.status, 404);
    assert.equal((await nf.json()).code, 'SEQ_ERR_NOT_FOUND');
  });

  test('/metrics and /healthz', async () => {
    const m = await (await fetch(`${h.linker.url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(m)?.[1]);
    assert.ok(value('seqtrace_spans_accepted_total') >= 20);
    assert.equal(value('seqtrace_spans_rejected_total'), 4);
    assert.ok(value('seqtrace_spans_linked_total') >= 20);
    assert.ok(value('seqtrace_spans_late_total') >= 1);
    assert.equal(value('seqtrace_spans_sampled_out_total'), 0);
    assert.ok(value('seqtrace_ingest_failed_requests_total') >= 6);
    assert.match(m, /^seqtrace_export_backlog \d+$/m);
    assert.match(m, /^seqtrace_joiner_pending_spans \d+$/m);
    assert.match(m, /^seqtrace_joiner_retained_spans \d+$/m);
    // the suite's line-protocol bodies went through the scanner; the malformed ones whole to the reference
    assert.ok(Number(/^seqtrace_ingest_scanned_points_total\{path="fast"\} (\d+)$/m.exec(m)?.[1]) > 0);
    assert.ok(value('seqtrace_ingest_reference_bodies_total') >= 1);
    assert.match(m, /^process_resident_memory_bytes \d+$/m);
    assert.deepEqual(await (await fetch(`${h.linker.url}/healthz`)).json(), { status: 'ok' });
  });
});

describe('linker limits and tokens', () => {
  test('ingest token, max_body_bytes, gzip bomb, max_batch_spans', async () => {
    const h = await start({ ENV_INPUT_EBPFTRACE_INGEST_TOKEN: 's3cret', ENV_INPUT_EBPFTRACE_MAX_BODY_BYTES: '64KiB', ENV_INPUT_EBPFTRACE_MAX_BATCH_SPANS: '20' });
    try {
      const built = buildTrace(chain(['t1', 't2']), { startUs: NOW_US(), random: rng(7) });
      const body = lp(built.spans);
      for (const auth of [undefined, 'Bearer nope', 's3cret', 'Bearer s3cretx', 'Basic s3cret']) {
        const r = await h.post(body, auth ? { authorization: auth } : {});
        assert.equal(r.status, 401, String(auth));
        assert.equal(r.json.code, 'SEQ_ERR_UNAUTHORIZED');
        assert.ok(!r.json.message.includes('s3cret'), 'the token is never echoed');
      }
      const auth = { authorization: 'Bearer s3cret' };
      assert.equal((await h.post(body, { authorization: 'bearer s3cret' })).status, 200, 'the scheme is case-insensitive');

      const big = await h.post('#'.repeat(70 * 1024), auth);
      assert.equal(big.status, 413);
      assert.equal(big.json.code, 'SEQ_ERR_BODY_TOO_LARGE');

      // 64 MiB of zeros gzip to ~64 KiB... make it fit the raw limit and inflate far beyond it
      const bomb = gzipSync(Buffer.alloc(32 * 1024 * 1024, 0x20), { level: 9 });
      assert.ok(bomb.length < 64 * 1024);
      const rssBefore = process.memoryUsage().rss;
      const b = await h.post(bomb, { ...auth, 'content-encoding': 'gzip' });
      assert.equal(b.status, 413);
      assert.equal(b.json.code, 'SEQ_ERR_BODY_TOO_LARGE');
      assert.match(b.json.message, /inflates beyond max_body_bytes/);
      assert.ok(process.memoryUsage().rss - rssBefore < 16 * 1024 * 1024, 'the bomb was not inflated in memory');
      // the same through brotli, which packs 32 MiB into a few bytes
      const brBomb = brotliCompressSync(Buffer.alloc(32 * 1024 * 1024, 0x20));
      const bb = await h.post(brBomb, { ...auth, 'content-encoding': 'br' });
      assert.equal(bb.status, 413);
      assert.match(bb.json.message, /the br body inflates beyond max_body_bytes/);
      assert.ok(process.memoryUsage().rss - rssBefore < 16 * 1024 * 1024, 'the brotli bomb was not inflated in memory');

      const many = buildTrace({ service: 'w', calls: Array.from({ length: 12 }, () => ({ service: 'v' })) }, { startUs: NOW_US(), random: rng(8) });
      const r = await h.post(lp(many.spans), auth);
      assert.equal(r.status, 413);
      assert.match(r.json.message, /max_batch_spans = 20/);

      h.advance(5000);
      assert.equal((await h.linker.store.findTraces({})).traces.length, 1, 'only the accepted batch was stored');
    } finally {
      await h.linker.close();
    }
  });

  // Issue #5: a body over max_body_bytes used to get its 413 with the connection closed while
  // the client was still sending; the unread upload made the kernel reset the connection and
  // about one client in ten saw EPIPE/ECONNRESET instead of the answer. Many rounds, because
  // it is a race.
  test('oversized bodies: every client reads its 413 naming the limit and the size (Content-Length, chunked)', async () => {
    const h = await start({ ENV_INPUT_EBPFTRACE_MAX_BODY_BYTES: '1MiB' });
    try {
      const cut: string[] = [];
      for (let i = 0; i < 150; i++) {
        const size = 1024 * 1024 + 1 + i * 9000;
        try {
          const r = await h.post(Buffer.alloc(size, 'x'), { 'content-type': 'text/plain' });
          assert.equal(r.status, 413, `round ${i}`);
          assert.equal(r.json.code, 'SEQ_ERR_BODY_TOO_LARGE');
          assert.match(r.json.message, new RegExp(`the body is ${size} bytes, over max_body_bytes = 1048576 bytes`));
        } catch (e) {
          cut.push(`${i} (${size} B): ${String((e as Error & { cause?: unknown }).cause ?? e)}`);
        }
      }
      assert.deepEqual(cut, [], `${cut.length} of 150 clients got no 413`);

      // Chunked (no Content-Length): the size is only known once read.
      const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(`${h.linker.url}/v1/bpftracing`, { method: 'POST', headers: { 'content-type': 'text/plain' } }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        for (let k = 0; k < 110; k++) req.write(Buffer.alloc(10_000, 'y'));
        req.end();
      });
      assert.equal(chunked.status, 413);
      assert.match(JSON.parse(chunked.body).message, /the body is 1100000 bytes, over max_body_bytes = 1048576 bytes/);

      // A body of exactly the limit still goes through to decoding (400: not line protocol).
      const edge = await h.post(Buffer.alloc(1024 * 1024, 'x'), { 'content-type': 'text/plain' });
      assert.equal(edge.status, 400);
      assert.equal((await fetch(`${h.linker.url}/healthz`)).status, 200);
    } finally {
      await h.linker.close();
    }
  });

  test('Expect: 100-continue with a Content-Length over max_body_bytes is refused before the body is sent', async () => {
    const h = await start({ ENV_INPUT_EBPFTRACE_MAX_BODY_BYTES: '64KiB' });
    try {
      const ask = (length: number) => new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
        let continued = false;
        const req = httpRequest(`${h.linker.url}/v1/bpftracing`, {
          method: 'POST', headers: { 'content-type': 'text/plain', 'content-length': String(length), expect: '100-continue' },
        }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve({ status: res.statusCode!, body, continued }));
        });
        req.on('continue', () => {
          continued = true;
          req.end(Buffer.alloc(length, 'x'));
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      const big = await ask(200_000);
      assert.equal(big.status, 413);
      assert.equal(big.continued, false, 'refused before the body');
      const e = JSON.parse(big.body);
      assert.equal(e.code, 'SEQ_ERR_BODY_TOO_LARGE');
      assert.match(e.message, /the body is 200000 bytes, over max_body_bytes = 65536 bytes/);
      const small = await ask(100);
      assert.equal(small.continued, true, 'a body within the limit is asked for');
      assert.equal(small.status, 400, small.body); // 100 x's are not line protocol
    } finally {
      await h.linker.close();
    }
  });

  test('query_listen serves the query API and UI apart, guarded by query_token; ingest stays on http_listen', async () => {
    const h = await start({ ENV_INPUT_EBPFTRACE_QUERY_LISTEN: '127.0.0.1:0', ENV_INPUT_EBPFTRACE_QUERY_TOKEN: 'q-token' });
    try {
      assert.notEqual(h.linker.queryUrl, h.linker.url);
      assert.equal((await fetch(`${h.linker.url}/api/services`)).status, 404, 'no query API on the ingest port');
      const denied = await fetch(`${h.linker.queryUrl}/api/services`);
      assert.equal(denied.status, 401);
      assert.equal((await denied.json()).code, 'SEQ_ERR_UNAUTHORIZED');
      assert.equal((await fetch(`${h.linker.queryUrl}/api/services`, { headers: { authorization: 'Bearer q-token' } })).status, 200);
      assert.equal((await fetch(`${h.linker.queryUrl}/api/status`)).status, 401, 'the linker status is guarded too');
      assert.equal((await fetch(`${h.linker.queryUrl}/api/status`, { headers: { authorization: 'Bearer q-token' } })).status, 200);
      assert.equal((await fetch(`${h.linker.url}/api/status`)).status, 404, 'and served with the query API only');
      assert.equal((await fetch(`${h.linker.queryUrl}/`)).status, 200, 'the UI shell holds no data and needs no token');
      assert.equal((await fetch(`${h.linker.queryUrl}/v1/bpftracing`, { method: 'POST', body: 'x' })).status, 404);
    } finally {
      await h.linker.close();
    }
  });

  test('sampling keeps or drops whole traces at about the configured rate', async () => {
    const h = await start({ ENV_INPUT_EBPFTRACE_SAMPLING_RATE: '0.3', ENV_INPUT_EBPFTRACE_KEEP_ERROR_TRACES: 'false' });
    try {
      const r = rng(9);
      const traces: BuiltTrace[] = [];
      let body = '';
      for (let i = 0; i < 400; i++) {
        const t = buildTrace(chain(['s1', 's2', 's3']), { startUs: NOW_US() + i * 1000, random: r });
        traces.push(t);
        body += lp(t.spans);
      }
      assert.equal((await h.post(gzipSync(body), { 'content-encoding': 'gzip' })).json.accepted, 2000);
      // What the UI says when a search finds nothing yet: spans waiting, then spans sampled out.
      const status = async () => (await fetch(`${h.linker.url}/api/status`)).json();
      assert.deepEqual(await status(), {
        samplingRate: 0.3, keepErrorTraces: false, windowMs: 1000, spans: { accepted: 2000, pending: 2000, sampledOut: 0, stored: 0 },
      });
      h.advance(5000);
      const stored = new Map<string, number>();
      let cursor: string | undefined;
      do {
        const page = await h.linker.store.findTraces({ limit: 1000, cursor });
        for (const t of page.traces) stored.set(t.traceId, t.spanCount);
        cursor = page.next;
      } while (cursor);
      assert.ok([...stored.values()].every((n) => n === 5), 'a stored trace is whole');
      const share = stored.size / traces.length;
      assert.ok(share > 0.22 && share < 0.38, `kept ${stored.size} of ${traces.length}`);
      const m = await (await fetch(`${h.linker.url}/metrics`)).text();
      assert.equal(Number(/^seqtrace_spans_sampled_out_total (\d+)$/m.exec(m)![1]), (traces.length - stored.size) * 5);
      assert.deepEqual((await status()).spans, {
        accepted: 2000, pending: 0, sampledOut: (traces.length - stored.size) * 5, stored: stored.size * 5,
      });
    } finally {
      await h.linker.close();
    }
  });

  test('restart replays the spool: spans accepted but not yet linked are linked after a clean stop', async () => {
    const cfg = config();
    const clock = { t: Date.now() };
    let linker = await startLinker(cfg, { nowMs: () => clock.t, flushIntervalMs: 3_600_000, logger: false });
    const built = buildTrace(chain(['r1', 'r2', 'r3']), { startUs: NOW_US(), random: rng(10) });
    const r = await fetch(`${linker.url}/v1/bpftracing`, { method: 'POST', body: lp(built.spans) });
    assert.equal(r.status, 200);
    await linker.close(); // the window is still open: nothing emitted, the batch stays spooled
    const store = openSqliteStore(cfg.sqlite_path, { retentionMaxAgeMs: 1e12, retentionMaxBytes: 1e12, sweepIntervalMs: 0 });
    assert.equal((await store.findTraces({})).traces.length, 0);
    store.close();
    linker = await startLinker(cfg, { nowMs: () => clock.t, flushIntervalMs: 3_600_000, logger: false });
    try {
      assert.equal(linker.pipeline.counters().replayedSpans, 5);
      clock.t += 5000;
      linker.pipeline.flush(clock.t);
      await assertLinked({ linker } as Harness, built);
    } finally {
      await linker.close();
    }
  });
});
