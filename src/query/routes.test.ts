import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { BASE_US, chainTrace, linkedSpan, traceIdOf } from '../storage/conformance.js';
import { openSqliteStore, type SqliteStore } from '../storage/sqlite.js';
import type { TracePage } from '../storage/store.js';
import { queryRoutes } from './routes.js';

describe('query API over a real SQLite store', () => {
  let dir: string;
  let store: SqliteStore;
  let app: FastifyInstance;
  let base: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'seqtrace-query-'));
    store = openSqliteStore(dir, { retentionMaxAgeMs: Number.MAX_SAFE_INTEGER, retentionMaxBytes: Number.MAX_SAFE_INTEGER, sweepIntervalMs: 0 });
    // Traces 1..12 start 1 ms apart at BASE_US; client time n ms; every 4th has an error.
    for (let n = 1; n <= 12; n++) store.commit(chainTrace(n, BASE_US + n * 1000, { clientUs: n * 1000, error: n % 4 === 0 }), []);
    store.commit([linkedSpan({ traceId: traceIdOf(0xabc), spanId: '00000000000abc01', service: 'my svc', resource: 'GET /a b' })], []);
    app = Fastify();
    await app.register(queryRoutes(store, { now: () => BASE_US / 1000 + 60_000 }));
    base = await app.listen({ port: 0, host: '127.0.0.1' });
  });

  after(async () => {
    await app.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = async (path: string) => {
    const res = await fetch(base + path);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    return { status: res.status, body: (await res.json()) as any };
  };
  const traceIds = (body: TracePage) => {
    if (!body.traces) throw new Error(`not a page: ${JSON.stringify(body)}`);
    return body.traces.map((t) => t.traceId);
  };
  const t = (...n: number[]) => n.map(traceIdOf);

  it('searches with every filter', async () => {
    let r = await get('/api/traces?service=cart&status=error');
    assert.equal(r.status, 200);
    assert.deepEqual(traceIds(r.body), t(12, 8, 4));
    r = await get('/api/traces?service=cart&operation=' + encodeURIComponent('POST /cart') + '&minDuration=5ms&maxDuration=8000');
    assert.deepEqual(traceIds(r.body), t(7, 6, 5, 4), 'trace duration = n ms + 1 ms');
    r = await get('/api/traces?minDuration=10.5ms');
    assert.deepEqual(traceIds(r.body), t(12, 11, 10));
    r = await get('/api/traces?maxDuration=3000us&service=frontend');
    assert.deepEqual(traceIds(r.body), t(2, 1));
    r = await get('/api/traces?minDuration=0.012s');
    assert.deepEqual(traceIds(r.body), t(12, 11));
    const iso = (us: number) => new Date(us / 1000).toISOString();
    r = await get(`/api/traces?start=${iso(BASE_US + 3000)}&end=${BASE_US + 5000}`);
    assert.deepEqual(traceIds(r.body), t(5, 4, 3));
    r = await get(`/api/traces?start=${encodeURIComponent('2024-11-25T03:00:00.003001+01:00')}&end=${BASE_US + 5000}`);
    assert.equal(BASE_US, Date.parse('2024-11-25T02:00:00Z') * 1000, 'BASE_US is 2024-11-25T02:00:00Z');
    assert.deepEqual(traceIds(r.body), t(5, 4), 'RFC 3339 with offset and µs: ' + JSON.stringify(r.body));
    r = await get('/api/traces?operation=' + encodeURIComponent('GET /a b') + '&service=');
    assert.deepEqual(traceIds(r.body), t(0xabc), 'an empty parameter counts as absent');
    const [summary] = (await get('/api/traces?limit=1&service=frontend')).body.traces;
    assert.deepEqual(summary, {
      traceId: traceIdOf(12), rootService: 'frontend', rootOperation: 'GET /checkout', startUs: BASE_US + 12_000, durationUs: 13_000,
      spanCount: 5, errorCount: 1, services: ['frontend', 'cart', 'db'], lateCount: 0,
    });
  });

  it('pages with limit and cursor', async () => {
    const seen: string[] = [];
    let path = '/api/traces?service=db&limit=5';
    for (;;) {
      const r = await get(path);
      assert.equal(r.status, 200);
      assert.ok(r.body.traces.length <= 5);
      seen.push(...traceIds(r.body));
      if (!r.body.next) break;
      path = `/api/traces?service=db&limit=5&cursor=${encodeURIComponent(r.body.next)}`;
    }
    assert.deepEqual(seen, t(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1));
  });

  it('answers 400 SEQ_ERR_BAD_QUERY naming the parameter and the value', async () => {
    const cases: [string, RegExp][] = [
      ['/api/traces?minDuration=fast', /^minDuration = "fast": expected a duration/],
      ['/api/traces?maxDuration=-5ms', /^maxDuration = "-5ms"/],
      ['/api/traces?minDuration=2s&maxDuration=1s', /^minDuration = "2s": expected at most maxDuration \(1s\)/],
      ['/api/traces?start=yesterday', /^start = "yesterday": expected microseconds since the epoch .* RFC 3339/],
      ['/api/traces?end=2024-11-25', /^end = "2024-11-25"/],
      ['/api/traces?start=20&end=10', /^start = "20": expected not after end \(10\)/],
      ['/api/traces?status=bad', /^status = "bad": expected ok, warning or error/],
      ['/api/traces?limit=0', /^limit = "0": expected an integer from 1 to 1000/],
      ['/api/traces?limit=1001', /^limit = "1001"/],
      ['/api/traces?limit=ten', /^limit = "ten"/],
      ['/api/traces?cursor=garbage', /^cursor = "garbage": expected the "next" value/],
      ['/api/traces?servce=cart', /^unknown parameter servce = "cart": accepted parameters are service, operation/],
      ['/api/traces?service=a&service=b', /^service = \["a","b"\]: expected the parameter once/],
      ['/api/traces/not-hex', /^traceId = "not-hex": expected a trace id of up to 32 hex digits/],
      ['/api/dependencies?start=soon', /^start = "soon"/],
      ['/api/dependencies?start=200&end=100', /^start = "200": expected not after end/],
    ];
    for (const [path, message] of cases) {
      const r = await get(path);
      assert.equal(r.status, 400, path);
      assert.equal(r.body.code, 'SEQ_ERR_BAD_QUERY', path);
      assert.match(r.body.message, message, path);
    }
  });

  it('returns one trace, its spans exactly as stored; 404 for an unknown one', async () => {
    const r = await get(`/api/traces/${traceIdOf(3)}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.traceId, traceIdOf(3));
    assert.deepEqual(r.body.spans, await store.getTrace(traceIdOf(3)));
    assert.equal(r.body.spans.length, 5);
    const upper = await get(`/api/traces/ABC`);
    assert.equal(upper.status, 200, 'short upper-case id is padded and lower-cased');
    assert.equal(upper.body.traceId, traceIdOf(0xabc));
    const missing = await get(`/api/traces/${'f'.repeat(32)}`);
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, 'SEQ_ERR_NOT_FOUND');
    assert.match(missing.body.message, /f{32}/);
  });

  it('lists services and operations', async () => {
    assert.deepEqual((await get('/api/services')).body, { services: ['cart', 'db', 'frontend', 'my svc'] });
    assert.deepEqual((await get('/api/services/cart/operations')).body, { operations: ['GET /item', 'POST /cart'] });
    assert.deepEqual((await get('/api/services/my%20svc/operations')).body, { operations: ['GET /a b'] });
    assert.deepEqual((await get('/api/services/nobody/operations')).body, { operations: [] });
  });

  it('computes dependencies for a range, by default the last hour', async () => {
    const all = await get('/api/dependencies');
    assert.equal(all.status, 200);
    assert.deepEqual(all.body.edges.map((e: any) => [e.parent, e.child, e.callCount, e.errorCount]), [['cart', 'db', 12, 0], ['frontend', 'cart', 12, 3]]);
    const fc = all.body.edges[1];
    assert.ok(Math.abs(fc.p50Us - 6000) <= 6000 * 0.022 && Math.abs(fc.p99Us - 11_000) <= 11_000 * 0.022, JSON.stringify(fc));
    const iso = new Date(BASE_US / 1000).toISOString();
    const same = await get(`/api/dependencies?start=${iso}&end=${BASE_US + 1}`);
    assert.deepEqual(same.body.edges.map((e: any) => e.callCount), [12, 12]);
    const none = await get(`/api/dependencies?start=0&end=${BASE_US - 60_000_000}`);
    assert.deepEqual(none.body, { edges: [] });
  });
});
