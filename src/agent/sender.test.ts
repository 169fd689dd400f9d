import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type IncomingMessage } from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { createSender, ingestUrl } from './sender.js';
import { decodeLineProtocol, encodeSpans } from '../span/lineprotocol.js';
import type { EbpfSpan } from '../span/span.js';

function span(i: number): EbpfSpan {
  return {
    host: 'h1', kind: 'entry', reqSeq: i, respSeq: i + 1, threadGroup: '18446744073709551615', pid: 42, tid: 43,
    startUs: 1732500000000000 + i, durationUs: 10, service: 'svc', processName: 'p', srcIp: '10.0.0.1', srcPort: 80,
    dstIp: '10.0.0.2', dstPort: 5000, resource: 'GET /x', operation: 'HTTP', status: 'ok', httpMethod: 'GET',
    httpRoute: '/x', httpStatusCode: 200, appTraceId: '', appParentId: '', appSampled: 0, attrs: { http_version: '1.1', bytes_read: 5 },
  };
}

interface Received { auth: string | undefined; encoding: string | undefined; lines: string }

/** A linker that takes gzip and brotli, or (`brotli`: the status it answers) only gzip. */
function linker(port: number, received: Received[], status = 200, brotli?: number): Promise<Server> {
  const srv = createServer((req: IncomingMessage, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const encoding = req.headers['content-encoding'];
      if (encoding === 'br' && brotli) {
        res.writeHead(brotli, { 'content-type': 'text/plain' });
        res.end('unsupported');
        return;
      }
      const lines = (encoding === 'br' ? brotliDecompressSync(body) : gunzipSync(body)).toString('utf8');
      received.push({ auth: req.headers.authorization, encoding, lines });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ accepted: 1, rejected: 0, errors: [] }));
    });
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}

async function freePort(): Promise<number> {
  const s = await linker(0, []);
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

const until = async (cond: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('trace_server forms', () => {
  assert.equal(ingestUrl('10.0.0.5:9529'), 'http://10.0.0.5:9529/v1/bpftracing');
  assert.equal(ingestUrl('[::1]:9529'), 'http://[::1]:9529/v1/bpftracing');
  assert.equal(ingestUrl('https://linker.example/prefix/'), 'https://linker.example/prefix/v1/bpftracing');
  assert.equal(ingestUrl('http://l:1/v1/bpftracing'), 'http://l:1/v1/bpftracing');
  assert.throws(() => ingestUrl('linker'), /trace_server = "linker": expected host:port/);
  assert.throws(() => ingestUrl('ftp://x:1'), /SEQ_ERR_CONFIG|trace_server/);
});

test('linker down, then up: spans are retried and arrive compressed with brotli, with the token', async () => {
  const port = await freePort();
  const logs: string[] = [];
  const sender = createSender({ traceServer: `127.0.0.1:${port}`, ingestToken: 'tok', sendBufferBytes: 1 << 20, flushIntervalMs: 50, retryInitialMs: 20, retryMaxMs: 100, log: (m) => logs.push(m) });
  for (let i = 0; i < 10; i++) sender.send(span(i));
  await until(() => sender.stats().retries >= 2);
  assert.equal(sender.stats().sent, 0);
  assert.match(logs[0], /cannot reach the linker/);
  const received: Received[] = [];
  const srv = await linker(port, received);
  try {
    await until(() => sender.stats().sent === 10);
    sender.send(span(10));
    await sender.flush();
    const lines = received.map((r) => r.lines).join('');
    const batch = decodeLineProtocol(lines);
    assert.equal(batch.errors.length, 0);
    assert.equal(batch.points.length, 11);
    assert.deepEqual(received.map((r) => [r.auth, r.encoding])[0], ['Bearer tok', 'br']);
    assert.match(lines, /thread_trace_id=18446744073709551615u?i?/);
    assert.match(lines, /pid="42"/);
    assert.equal(sender.stats().dropped, 0);
  } finally {
    await sender.close();
    await new Promise((r) => srv.close(r));
  }
});

test('bounded memory: beyond send_buffer_bytes the oldest batches are dropped and their spans counted', async () => {
  const port = await freePort();
  const bound = 2000; // compressed bytes: a few batches of 10 spans
  const sender = createSender({ traceServer: `127.0.0.1:${port}`, ingestToken: '', sendBufferBytes: bound, flushIntervalMs: 10_000, maxBatchSpans: 10, retryInitialMs: 300, retryMaxMs: 300, log: () => {} });
  const received: Received[] = [];
  let srv: Server | null = null;
  try {
    for (let i = 0; i < 200; i++) sender.send(span(i));
    // Every span is accounted for at any moment; wait until all batches are compressed and queued.
    await until(() => { const s = sender.stats(); return s.dropped > 0 && s.queueDepth + s.inFlight + s.dropped === 200; });
    await new Promise((r) => setTimeout(r, 300)); // the last batches through compression
    const st = sender.stats();
    assert.equal(st.queueDepth + st.inFlight + st.dropped + st.sent, 200);
    assert.ok(st.dropped >= 100, `dropped ${st.dropped}`);
    // The compressed queue within the bound, plus the batch being built (at most `bound` bytes
    // too: a batch is never larger than send_buffer_bytes).
    assert.ok(st.queueBytes <= 2 * bound, `queue holds ${st.queueBytes} bytes, bound ${bound} + the batch being built`);
    assert.ok(st.queueDepth > 0);
    srv = await linker(port, received);
    await sender.flush();
    const got = decodeLineProtocol(received.map((r) => r.lines).join('')).points;
    // Sealing the last partial batch at flush() may push one more old batch out.
    const fin = sender.stats();
    assert.ok(fin.dropped >= st.dropped && fin.dropped <= st.dropped + 10, `dropped ${st.dropped}, then ${fin.dropped}`);
    assert.equal(got.length, 200 - fin.dropped);
    assert.equal(fin.sent, 200 - fin.dropped);
    // The newest spans were kept.
    assert.match(received.at(-1)!.lines, /req_seq=199i/);
    assert.equal(received[0].auth, undefined, 'no token configured: no Authorization header');
  } finally {
    await sender.close(100);
    if (srv) await new Promise((r) => srv!.close(r));
  }
});

test('a batch is sealed at maxBatchSpans: lines are whole and in order across batches', async () => {
  const received: Received[] = [];
  const srv = await linker(0, received);
  const port = (srv.address() as AddressInfo).port;
  const sender = createSender({ traceServer: `127.0.0.1:${port}`, ingestToken: '', sendBufferBytes: 1 << 20, flushIntervalMs: 10_000, maxBatchSpans: 7, log: () => {} });
  try {
    for (let i = 0; i < 50; i++) sender.send({ ...span(i), service: i % 2 ? 'sérvice-ü' : 'svc' });
    await sender.flush();
    assert.equal(received.length, 8);
    const pts = decodeLineProtocol(received.map((r) => r.lines).join('')).points;
    assert.equal(pts.length, 50);
    assert.deepEqual(pts.map((p) => p.fields.req_seq), Array.from({ length: 50 }, (_, i) => i));
    assert.equal(pts[1].fields.service, 'sérvice-ü');
    assert.equal(received.map((r) => r.lines).join(''), encodeSpans(Array.from({ length: 50 }, (_, i) => ({ ...span(i), service: i % 2 ? 'sérvice-ü' : 'svc' }))));
    const st = sender.stats();
    assert.equal(st.sent, 50);
    assert.equal(st.queueDepth + st.inFlight + st.queueBytes, 0);
  } finally {
    await sender.close();
    await new Promise((r) => srv.close(r));
  }
});

test('a linker that does not take brotli (415, or 400 as DataKit) gets gzip, and no span is lost', async (t) => {
  for (const answer of [415, 400]) {
    await t.test(String(answer), async () => {
      const received: Received[] = [];
      const srv = await linker(0, received, 200, answer);
      const port = (srv.address() as AddressInfo).port;
      const logs: string[] = [];
      // Batches of 5: the first four are sealed (compressed with brotli) before the first
      // answer, and the three behind the first go as gzip when their turn comes.
      const sender = createSender({ traceServer: `127.0.0.1:${port}`, ingestToken: '', sendBufferBytes: 1 << 20, flushIntervalMs: 10_000, maxBatchSpans: 5, log: (m) => logs.push(m) });
      try {
        for (let i = 0; i < 23; i++) sender.send(span(i));
        await sender.flush();
        for (let i = 23; i < 30; i++) sender.send(span(i));
        await sender.flush();
        const st = sender.stats();
        assert.equal(st.sent, 30);
        assert.equal(st.failed + st.dropped + st.rejected, 0);
        assert.deepEqual([...new Set(received.map((r) => r.encoding))], ['gzip']);
        const got = decodeLineProtocol(received.map((r) => r.lines).join('')).points;
        assert.deepEqual(got.map((p) => p.fields.req_seq), Array.from({ length: 30 }, (_, i) => i), 'every span once, in order');
        assert.equal(logs.filter((m) => /does not take brotli; sending gzip/.test(m)).length, 1);
      } finally {
        await sender.close();
        await new Promise((r) => srv.close(r));
      }
    });
  }
});

test('a 400 answer is not retried as such (it would not get better) and is counted; brotli is kept', async () => {
  const received: Received[] = [];
  const srv = await linker(0, received, 400);
  const port = (srv.address() as AddressInfo).port;
  const logs: string[] = [];
  const sender = createSender({ traceServer: `127.0.0.1:${port}`, ingestToken: '', sendBufferBytes: 1 << 20, flushIntervalMs: 10_000, maxBatchSpans: 5, log: (m) => logs.push(m) });
  try {
    for (let i = 0; i < 10; i++) sender.send(span(i));
    await sender.flush();
    const st = sender.stats();
    assert.equal(st.rejected, 10);
    assert.equal(st.sent, 0);
    assert.equal(st.retries, 0);
    // each batch tried as brotli, then once as gzip; both refused: the next batch is brotli again
    assert.deepEqual(received.map((r) => r.encoding), ['br', 'gzip', 'br', 'gzip']);
    assert.ok(!logs.some((m) => /sending gzip/.test(m)));
  } finally {
    await sender.close();
    await new Promise((r) => srv.close(r));
  }
});
