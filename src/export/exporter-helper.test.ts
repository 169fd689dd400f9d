// The shared retry/queue helper, on its own: batching, the bounded queue, retry verdicts,
// Retry-After, stop(). Sends go to a real HTTP server where the network matters.
import assert from 'node:assert/strict';
import http from 'node:http';
import { afterEach, describe, it } from 'node:test';
import { classifyHttpError, createExporterHelper, HttpStatusError, parseRetryAfter, withTimeout, type ExporterHelperOptions } from './exporter-helper.js';
import { startReceiver as start, type Receiver, type Respond } from './test-receiver.js';

// Receivers are closed after each test even when it fails, so a failure never hangs the run.
const open: Receiver[] = [];
async function startReceiver(respond?: Respond): Promise<Receiver> {
  const r = await start(respond);
  open.push(r);
  return r;
}
afterEach(async () => {
  for (const r of open.splice(0)) await r.close();
});

const fastRetry = { initialMs: 20, maxMs: 80, maxElapsedMs: 2000 };

function helper<T>(over: Partial<ExporterHelperOptions<T>> & Pick<ExporterHelperOptions<T>, 'send'>) {
  return createExporterHelper<T>({ maxBatch: 10, maxQueue: 100, flushIntervalMs: 30, retry: fastRetry, random: () => 0.5, ...over });
}

/** A send that waits until released: the batch stays in flight meanwhile. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

/** POSTs the batch as JSON to a URL; throws HttpStatusError for a non-2xx answer. */
async function post(url: string, batch: unknown[], signal: AbortSignal): Promise<void> {
  const res = await withTimeout(signal, 300, async (sig) => {
    const r = await fetch(url, { method: 'POST', body: JSON.stringify(batch), headers: { 'content-type': 'application/json' }, signal: sig });
    await r.arrayBuffer();
    return r;
  });
  if (res.status >= 300) throw new HttpStatusError(res.status, `HTTP ${res.status}`, parseRetryAfter(res.headers.get('retry-after')));
}

describe('exporter helper', { timeout: 20_000 }, () => {
  it('sends full batches at once and a partial batch after flushIntervalMs', async () => {
    const batches: number[][] = [];
    const h = helper<number>({ send: async (b) => void batches.push(b) });
    for (let i = 0; i < 25; i++) h.enqueue(i);
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(batches.map((b) => b.length).slice(0, 1), [10], 'a full batch goes without waiting');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(batches.flat(), Array.from({ length: 25 }, (_, i) => i), 'everything, in order');
    assert.equal(h.stats().sent, 25);
    await h.stop();
  });

  it('never blocks the caller and drops the oldest items when the queue is full, counting them', async () => {
    const g = gate();
    const sent: number[] = [];
    const dropped: number[] = [];
    const h = helper<number>({ maxBatch: 5, maxQueue: 20, send: async (b) => { await g.opened; sent.push(...b); }, onDrop: (n) => dropped.push(n) });
    const t0 = performance.now();
    let refused = 0;
    for (let i = 0; i < 10_000; i++) if (!h.enqueue(i)) refused++;
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < 500, `10k enqueues with the sender stuck took ${elapsed} ms`);
    const s = h.stats();
    assert.equal(s.inFlight, 5, 'one batch in flight');
    assert.equal(s.queueDepth, 20, 'the queue holds its capacity');
    assert.equal(s.dropped, 10_000 - 5 - 20);
    assert.equal(refused, s.dropped);
    assert.equal(dropped.reduce((a, b) => a + b, 0), s.dropped);
    g.open();
    await h.flush();
    assert.deepEqual(sent, [0, 1, 2, 3, 4, ...Array.from({ length: 20 }, (_, i) => 9980 + i)], 'the newest items survive');
    await h.stop();
  });

  it('keeps up to maxInFlight batches in flight at once', async () => {
    const g = gate();
    const h = helper<number>({ maxBatch: 2, maxInFlight: 3, send: async () => { await g.opened; } });
    for (let i = 0; i < 10; i++) h.enqueue(i);
    assert.equal(h.stats().inFlight, 6);
    assert.equal(h.stats().queueDepth, 4);
    g.open();
    await h.flush();
    assert.equal(h.stats().sent, 10);
    await h.stop();
  });

  it('weighs items when asked (a byte budget) and refuses one larger than the whole queue', async () => {
    const g = gate();
    const h = helper<string>({ maxBatch: 1, maxQueue: 10, weigh: (s) => s.length, send: async () => { await g.opened; } });
    h.enqueue('x'); // in flight
    assert.equal(h.enqueue('aaaa'), true);
    assert.equal(h.enqueue('bbbb'), true);
    assert.equal(h.room(), 2);
    assert.equal(h.enqueue('ccc'), false, 'the oldest (aaaa) makes room');
    assert.equal(h.stats().queueDepth, 2);
    assert.equal(h.enqueue('y'.repeat(11)), false);
    assert.equal(h.stats().dropped, 2);
    g.open();
    await h.stop();
  });

  it('retries a refused connection until the server is there', async () => {
    // A port that was listening and is closed now: connection refused; then a server comes up on it.
    const probe = await start();
    const port = Number(new URL(probe.url).port);
    await probe.close();
    const attempts: string[] = [];
    const h = helper<number>({
      send: async (b, signal) => {
        try {
          await post(`http://127.0.0.1:${port}/`, b, signal);
          attempts.push('ok');
        } catch (e) {
          attempts.push((e as { cause?: { code?: string } }).cause?.code ?? String(e));
          throw e;
        }
      },
    });
    h.enqueue(1);
    for (let i = 0; i < 300 && attempts.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(attempts.length >= 2 && attempts.every((a) => a === 'ECONNREFUSED'), `attempts: ${attempts}`);
    const server = http.createServer((_q, res) => res.end()).listen(port, '127.0.0.1');
    try {
      await h.flush();
      assert.equal(attempts.at(-1), 'ok');
      assert.equal(h.stats().sent, 1);
      assert.equal(h.stats().retries, attempts.length - 1);
      await h.stop();
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('retries 503 with growing backoff until the server accepts', async () => {
    const rec = await startReceiver((_r, n) => (n <= 3 ? { status: 503 } : { status: 200 }));
    const attempts: number[] = [];
    const h = helper<number>({ send: async (b, signal) => { attempts.push(Date.now()); await post(`${rec.url}/x`, b, signal); } });
    h.enqueue(1);
    await h.flush();
    assert.equal(attempts.length, 4);
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]);
    // jitter pinned at 1×: 20, 40, 80 ms (±scheduling)
    assert.ok(gaps[0] >= 18 && gaps[1] >= 38 && gaps[2] >= 78, `gaps ${gaps}`);
    const s = h.stats();
    assert.equal(s.retries, 3);
    assert.equal(s.sent, 1);
    assert.equal(s.failed, 0);
    await h.stop();
  });

  it('gives up once maxElapsedMs is spent, counting the items as failed', async () => {
    const rec = await startReceiver(() => ({ status: 502 }));
    const given: string[] = [];
    const h = helper<number>({
      retry: { initialMs: 20, maxMs: 40, maxElapsedMs: 800 },
      send: (b, signal) => post(rec.url, b, signal),
      onGiveUp: (_b, reason) => given.push(reason),
    });
    h.enqueue(1);
    h.enqueue(2);
    await h.flush();
    assert.deepEqual(given, ['retries-exhausted']);
    assert.equal(h.stats().failed, 2);
    assert.equal(h.stats().rejected, 0);
    assert.ok(rec.requests.length >= 2, `${rec.requests.length} attempts`);
    await h.stop();
  });

  it('does not retry a 400: the batch is dropped and counted as rejected', async () => {
    const rec = await startReceiver(() => ({ status: 400, body: 'bad payload' }));
    const h = helper<number>({ send: (b, signal) => post(rec.url, b, signal) });
    h.enqueue(1);
    await h.flush();
    assert.equal(rec.requests.length, 1);
    assert.deepEqual({ ...h.stats(), queueDepth: 0 }, { sent: 0, failed: 1, rejected: 1, dropped: 0, retries: 0, queueDepth: 0, inFlight: 0, batchesSent: 0, batchesFailed: 1 });
    await h.stop();
  });

  it('classifies: network errors and 429/502/503/504 retry, other statuses drop', () => {
    assert.equal(classifyHttpError(new TypeError('fetch failed')), 'retry');
    for (const s of [429, 502, 503, 504]) assert.equal(classifyHttpError(new HttpStatusError(s, '')), 'retry', String(s));
    for (const s of [400, 401, 403, 404, 413, 500]) assert.equal(classifyHttpError(new HttpStatusError(s, '')), 'drop', String(s));
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1)), 10_000);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(null), undefined);
  });

  it('waits at least Retry-After before retrying a 503', async () => {
    const rec = await startReceiver((_r, n) => (n === 1 ? { status: 503, headers: { 'retry-after': '1' } } : { status: 200 }));
    const h = helper<number>({ send: (b, signal) => post(rec.url, b, signal) });
    h.enqueue(1);
    await h.flush();
    assert.equal(rec.requests.length, 2);
    const gap = rec.requests[1].at - rec.requests[0].at;
    assert.ok(gap >= 990, `retried after ${gap} ms, Retry-After said 1 s`);
    assert.equal(h.stats().sent, 1);
    await h.stop();
  });

  it('retries a request that times out', async () => {
    const rec = await startReceiver((_r, n) => (n === 1 ? 'hang' : { status: 200 }));
    const h = helper<number>({ send: (b, signal) => post(rec.url, b, signal) }); // 300 ms timeout in post
    h.enqueue(1);
    await h.flush();
    assert.equal(rec.requests.length, 2);
    assert.equal(h.stats().retries, 1);
    assert.equal(h.stats().sent, 1);
    await h.stop();
  });

  it('stop() sends what is queued, then aborts what cannot go within the timeout', async () => {
    const batches: number[][] = [];
    const ok = helper<number>({ send: async (b) => void batches.push(b) });
    for (let i = 0; i < 3; i++) ok.enqueue(i);
    await ok.stop(1000);
    assert.deepEqual(batches, [[0, 1, 2]], 'stop flushes a partial batch at once');
    assert.equal(ok.enqueue(9), false, 'nothing is accepted after stop');

    const rec = await startReceiver(() => 'hang');
    const reasons: string[] = [];
    const stuck = helper<number>({ maxBatch: 2, send: (b, signal) => post(rec.url, b, signal), onGiveUp: (b, reason) => reasons.push(`${reason}:${b.length}`) });
    for (let i = 0; i < 5; i++) stuck.enqueue(i);
    const t0 = Date.now();
    await stuck.stop(150);
    assert.ok(Date.now() - t0 < 1500, 'stop is bounded');
    assert.deepEqual(reasons.sort(), ['stopped:2', 'stopped:3']);
    assert.equal(stuck.stats().failed, 5);
  });
});
