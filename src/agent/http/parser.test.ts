import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import assert from 'node:assert/strict';
import { createParser, headerTable, BODY_FRAMED, BODY_NONE, PROTOCOL_SWITCH, type Chunk, type HeaderTable, type HttpMessage, MAX_HEADER_BYTES } from './parser.js';

interface Seen {
  heads: HttpMessage[];
  ends: HttpMessage[];
}

/**
 * Calls as the kernel reports them: each string is one read/write; `capture` limits the head
 * (the rest is only counted, with the last `tail` bytes kept), like capture_bytes does.
 */
function calls(parts: string[], capture = 1 << 20, tail = 0, seq0 = 1000): Chunk[] {
  let seq = seq0;
  return parts.map((p, i) => {
    const b = Buffer.from(p, 'latin1');
    const head = b.subarray(0, Math.min(capture, b.length));
    const t = b.length > capture && tail > 0 ? b.subarray(Math.max(capture, b.length - tail)) : Buffer.alloc(0);
    const c: Chunk = { seq: seq >>> 0, len: b.length, head, tail: t, tsNs: (i + 1) * 1000 };
    seq += b.length;
    return c;
  });
}

function run(isRequest: boolean, chunks: Chunk[], opts: { headRequests?: boolean; close?: number } = {}) {
  const seen: Seen = { heads: [], ends: [] };
  const p = createParser(isRequest, {
    onHead: (m) => { seen.heads.push(m); return opts.headRequests ? BODY_NONE : BODY_FRAMED; },
    onEnd: (m) => { seen.ends.push(m); },
  });
  for (const c of chunks) p.feed(c);
  const left = opts.close !== undefined ? p.close(opts.close) : null;
  return { ...seen, stats: p.stats, left, busy: p.busy() };
}

const pick = (m: HttpMessage) => ({
  method: m.method, target: m.target, status: m.status, version: m.version, seq: m.seq,
  start: Number(m.startNs), end: Number(m.endNs), bytes: m.bytes, truncated: m.truncated,
});

const GET = 'GET /users/7?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n';
const RESP = (body: string, extra = '') => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

test('requests: one call, pipelined, split anywhere, with bodies', async (t) => {
  const post = 'POST /orders HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world';
  const chunkedPost = 'POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n';
  const cases: { name: string; parts: string[]; want: Partial<ReturnType<typeof pick>>[] }[] = [
    { name: 'GET in one call', parts: [GET], want: [{ method: 'GET', target: '/users/7?x=1', version: '1.1', seq: 1000, start: 1000, end: 1000, bytes: GET.length }] },
    { name: 'pipelined: three requests in one call', parts: [GET + post + GET], want: [
      { method: 'GET', seq: 1000 }, { method: 'POST', target: '/orders', seq: 1000 + GET.length, bytes: post.length }, { method: 'GET', seq: 1000 + GET.length + post.length },
    ] },
    { name: 'headers split in the middle of CRLFCRLF', parts: [GET.slice(0, GET.length - 3), GET.slice(-3)], want: [{ method: 'GET', target: '/users/7?x=1', start: 1000, end: 2000, bytes: GET.length }] },
    { name: 'request line split over calls byte by byte', parts: [...GET].map((ch) => ch), want: [{ method: 'GET', target: '/users/7?x=1', start: 1000, end: GET.length * 1000 }] },
    { name: 'POST body by content-length in a later call', parts: [post.slice(0, 45), post.slice(45)], want: [{ method: 'POST', end: 2000, bytes: post.length }] },
    { name: 'chunked request body with extension', parts: [chunkedPost], want: [{ method: 'POST', target: '/up', bytes: chunkedPost.length }] },
    { name: 'chunked body split across calls everywhere', parts: [...chunkedPost].map((ch) => ch), want: [{ method: 'POST', end: chunkedPost.length * 1000 }] },
    { name: 'HTTP/1.0 request', parts: ['GET / HTTP/1.0\r\n\r\n'], want: [{ method: 'GET', target: '/', version: '1.0' }] },
    { name: 'stray CRLF between requests', parts: [post + '\r\n', GET], want: [{ method: 'POST' }, { method: 'GET', seq: 1000 + post.length + 2 }] },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const r = run(true, calls(c.parts));
      assert.equal(r.ends.length, c.want.length, 'messages ended');
      c.want.forEach((w, i) => assert.deepEqual({ ...pick(r.ends[i]), ...w }, pick(r.ends[i])));
      assert.equal(r.stats.parseErrors, 0);
      assert.equal(r.busy, false);
    });
  }
});

test('responses: framing cases', async (t) => {
  const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n0\r\nX-Trailer: 1\r\n\r\n';
  const cases: { name: string; parts: string[]; head?: boolean; close?: number; want: Partial<ReturnType<typeof pick>>[]; left?: boolean }[] = [
    { name: 'content-length', parts: [RESP('hello')], want: [{ status: 200, bytes: RESP('hello').length }] },
    { name: 'chunked with trailer', parts: [chunked], want: [{ status: 200, bytes: chunked.length }] },
    { name: 'chunked, split', parts: [chunked.slice(0, 50), chunked.slice(50, 52), chunked.slice(52)], want: [{ status: 200, end: 3000 }] },
    { name: '204 has no body', parts: ['HTTP/1.1 204 No Content\r\n\r\n'], want: [{ status: 204 }] },
    { name: '304 has no body even with content-length', parts: ['HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n'], want: [{ status: 304 }] },
    { name: 'HEAD response has no body', parts: ['HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n'], head: true, want: [{ status: 200 }] },
    { name: '100 Continue then final', parts: ['HTTP/1.1 100 Continue\r\n\r\n', RESP('ok')], want: [{ status: 100, seq: 1000 }, { status: 200, seq: 1025 }] },
    { name: 'read until close', parts: ['HTTP/1.0 200 OK\r\n\r\nabc', 'def'], close: 9000, want: [{ status: 200, end: 2000, version: '1.0' }] },
    { name: 'cut at close mid-body', parts: ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'], close: 9000, want: [], left: true },
    { name: 'two responses on a keep-alive connection', parts: [RESP('a'), RESP('bb')], want: [{ status: 200, end: 1000 }, { status: 200, end: 2000, seq: 1000 + RESP('a').length }] },
    { name: 'status 500', parts: ['HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n'], want: [{ status: 500 }] },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const r = run(false, calls(c.parts), { headRequests: c.head, close: c.close });
      assert.equal(r.ends.length, c.want.length, 'messages ended');
      c.want.forEach((w, i) => assert.deepEqual({ ...pick(r.ends[i]), ...w }, pick(r.ends[i])));
      assert.equal(!!r.left, !!c.left, 'unfinished message at close');
    });
  }
});

test('a protocol switch ends the message with its head; nothing after it is parsed', async (t) => {
  // A WebSocket server's 101, then its frames: one in the same write, then a text frame whose
  // payload is an HTTP response, then a request-looking one (all to be ignored, without errors).
  const upgrade = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n';
  const frame = (text: string) => String.fromCharCode(0x81, text.length) + text;
  const cases: { name: string; isRequest: boolean; parts: string[]; leave?: boolean; want: number }[] = [
    { name: 'switch in the head\'s own call, frames after it in that call and later', isRequest: false, parts: [upgrade + frame('hi'), frame('HTTP/1.1 200 OK\r\n\r\n'), frame('GET / HTTP/1.1\r\n\r\n')], want: 1 },
    { name: 'switch split over calls', isRequest: false, parts: [upgrade.slice(0, 20), upgrade.slice(20) + RESP('not http any more')], want: 1 },
    { name: 'the other direction left: a request-looking frame is ignored', isRequest: true, parts: ['GET /a HTTP/1.1\r\n\r\n'], leave: true, want: 0 },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const ends: HttpMessage[] = [];
      const p = createParser(c.isRequest, { onHead: (m) => (m.status === 101 ? PROTOCOL_SWITCH : BODY_FRAMED), onEnd: (m) => { ends.push(m); } });
      if (c.leave) p.leave();
      for (const ch of calls(c.parts)) p.feed(ch);
      p.skip(100, 9000); // a lost event later: nothing to count either
      assert.equal(ends.length, c.want);
      if (c.want) {
        assert.equal(ends[0].status, 101);
        assert.equal(ends[0].bytes, upgrade.length, 'the message is its head');
        assert.equal(Number(ends[0].endNs), c.parts.length > 2 ? 1000 : 2000);
      }
      assert.equal(p.stats.parseErrors, 0);
      assert.equal(p.busy(), false);
      assert.equal(p.close(10_000), null);
    });
  }
});

test('captures cut short: head truncated, body beyond capture', async (t) => {
  const body = 'x'.repeat(5000);
  await t.test('large content-length body: counted through the gap', () => {
    const r = run(false, calls([RESP(body), RESP('z')], 128, 64));
    assert.equal(r.ends.length, 2);
    assert.equal(r.ends[0].bytes, RESP(body).length);
    assert.equal(r.ends[1].seq, 1000 + RESP(body).length);
    assert.equal(r.ends[0].truncated, false);
  });
  await t.test('chunk boundary in uncaptured bytes: end found from the tail, counted', () => {
    const resp = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + '100\r\n' + 'y'.repeat(256) + '\r\n' + '200\r\n' + 'y'.repeat(512) + '\r\n0\r\n\r\n';
    const r = run(false, calls([resp, RESP('next')], 128, 64));
    assert.equal(r.ends.length, 2);
    assert.equal(r.ends[0].framingLost, true);
    assert.equal(r.stats.chunkedLost, 1);
    assert.equal(r.ends[0].bytes, resp.length);
    assert.equal(r.ends[1].status, 200);
  });
  await t.test('chunked body lost, ends in a later call', () => {
    const first = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + '300\r\n' + 'y'.repeat(400);
    const second = 'y'.repeat(368) + '\r\n0\r\n\r\n';
    const r = run(false, calls([first, second], 128, 16));
    assert.equal(r.ends.length, 1);
    assert.equal(Number(r.ends[0].endNs), 2000);
  });
  await t.test('long request line: span still made, marked truncated', () => {
    const req = `GET /${'a'.repeat(3000)} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const r = run(true, calls([req, GET], 256, 64));
    assert.equal(r.ends.length, 2);
    assert.equal(r.ends[0].method, 'GET');
    assert.equal(r.ends[0].truncated, true);
    assert.ok(r.ends[0].target.startsWith('/aaaa'));
    assert.equal(r.ends[1].seq, 1000 + req.length);
    assert.equal(r.stats.truncated, 1);
  });
  await t.test('response headers cut with no framing seen: ends with the call', () => {
    const resp = `HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(2000)}\r\nContent-Length: 3\r\n\r\nabc`;
    const r = run(false, calls([resp, RESP('n')], 128, 32));
    assert.equal(r.ends.length, 2);
    assert.equal(r.ends[0].truncated, true);
    assert.equal(r.ends[1].seq, 1000 + resp.length);
  });
  await t.test('writev whose last iovec is the blank line: the tail "\\r\\n" ends the headers', () => {
    const head = `GET /p/x HTTP/1.1\r\nHost: b\r\nX-Big: ${'b'.repeat(8000)}\r\n`;
    const b = Buffer.from(head + '\r\n', 'latin1');
    // The capture's tail holds only the last iovec's own bytes: "\r\n".
    const c: Chunk = { seq: 1, len: b.length, head: b.subarray(0, 1024), tail: b.subarray(b.length - 2), tsNs: 1000 };
    const r = run(true, [c, ...calls([GET], 1 << 20, 0, 1 + b.length).map((x) => ({ ...x, tsNs: 2000 }))]);
    assert.equal(r.ends.length, 2);
    assert.equal(r.ends[0].target, '/p/x');
    assert.equal(r.ends[0].truncated, true);
    assert.equal(r.ends[0].endNs, 1000);
    assert.equal(r.ends[1].seq, 1 + b.length);
  });
  await t.test('headers whose end was never captured end when the next message starts', () => {
    const b = Buffer.from(`GET /p/y HTTP/1.1\r\nX-Big: ${'b'.repeat(8000)}\r\n\r\n`, 'latin1');
    const c: Chunk = { seq: 1, len: b.length, head: b.subarray(0, 1024), tail: Buffer.alloc(0), tsNs: 1000 };
    const r = run(true, [c, ...calls([GET], 1 << 20, 0, 1 + b.length).map((x) => ({ ...x, tsNs: 2000 }))]);
    assert.equal(r.ends.length, 2);
    assert.equal(r.ends[0].target, '/p/y');
    assert.equal(r.ends[0].endNs, 1000);
    assert.equal(r.ends[1].method, 'GET');
    assert.equal(r.ends[1].seq, 1 + b.length);
  });
  await t.test('headers longer than the cap are not kept whole', () => {
    const req = `GET / HTTP/1.1\r\n${'X-A: 1\r\n'.repeat(MAX_HEADER_BYTES / 4)}traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n`;
    const parts: string[] = [];
    for (let i = 0; i < req.length; i += 500) parts.push(req.slice(i, i + 500));
    const r = run(true, calls([...parts, GET]));
    assert.equal(r.ends.length, 2);
    assert.equal(r.ends[0].truncated, true);
    assert.equal(r.ends[1].seq, 1000 + req.length);
  });
  await t.test('garbage where a start line is due is counted and skipped', () => {
    const r = run(true, calls(['\x16\x03\x01 tls hello', GET]));
    assert.equal(r.ends.length, 1);
    assert.equal(r.stats.parseErrors, 1);
  });
});

test('trace headers are found case-insensitively; others are not kept', () => {
  const req = 'GET / HTTP/1.1\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-B3-TraceId:  abc \r\nAuthorization: Bearer secret\r\nX-DATADOG-TRACE-ID: 42\r\n\r\n';
  const r = run(true, calls([req.slice(0, 30), req.slice(30)]));
  assert.deepEqual(r.ends[0].trace, { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', xB3TraceId: 'abc', ddTraceId: '42' });
});

test('a request\'s Host is kept (any case, trimmed), a response\'s is not', () => {
  const r = run(true, calls(['GET / HTTP/1.1\r\nhOST:  api.internal:8443 \r\nDate: x\r\n\r\n', 'GET / HTTP/1.0\r\n\r\n']));
  assert.deepEqual(r.ends.map((m) => m.host), ['api.internal:8443', '']);
  assert.equal(r.ends[0].trace, null, 'no trace headers: nothing allocated for them');
  assert.equal(run(false, calls(['HTTP/1.1 200 OK\r\nHost: x\r\nContent-Length: 0\r\n\r\n'])).ends[0].host, '');
});

test('request id headers: X-Request-ID by default, those of request_id_headers when configured', () => {
  const req = 'GET / HTTP/1.1\r\nx-request-id: r-1\r\nX-Correlation-ID: c-1\r\n\r\n';
  const parse = (headers?: HeaderTable) => {
    const ends: HttpMessage[] = [];
    const p = createParser(true, { onHead: () => BODY_FRAMED, onEnd: (m) => { ends.push(m); } }, undefined, undefined, headers);
    for (const c of calls([req])) p.feed(c);
    return ends[0].trace;
  };
  assert.deepEqual(parse(), { xRequestId: 'r-1' });
  assert.deepEqual(parse(headerTable(['X-Correlation-ID'])), { xRequestId: 'c-1' });
  assert.equal(parse(headerTable([])), null, 'none configured');
});

test('sequence numbers wrap at 2^32', () => {
  const r = run(true, calls([GET, GET], 1 << 20, 0, 0xffffffff - 10));
  assert.equal(r.ends[0].seq, 0xffffffff - 10);
  assert.equal(r.ends[1].seq, (0xffffffff - 10 + GET.length) >>> 0);
});

test('Connection: close and HTTP/1.0 are noted', () => {
  const r = run(false, calls(['HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n', 'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n', 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n']));
  assert.deepEqual(r.ends.map((m) => m.close), [true, true, false]);
});

/**
 * `rounds` random splits of `stream` into calls (every third into pieces of at most 8 bytes),
 * from a seeded PRNG: a failure can be replayed.
 */
function* partitions(stream: string, seed: number, rounds: number, maxPiece: number): Generator<[number, string[]]> {
  let x = seed;
  const rnd = (n: number) => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x % n;
  };
  for (let round = 0; round < rounds; round++) {
    const parts: string[] = [];
    for (let i = 0; i < stream.length;) {
      const n = 1 + rnd(round % 3 === 0 ? 8 : maxPiece);
      parts.push(stream.slice(i, i + n));
      i += n;
    }
    yield [round, parts];
  }
}

test('any split of a stream into calls gives the same messages as one call (random partitions)', () => {
  const stream = [
    'HTTP/1.1 100 Continue\r\n\r\n',
    RESP('hello'),
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n',
    'HTTP/1.1 204 No Content\r\n\r\n',
    'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n1;x=y\r\nz\r\n0\r\nT: 1\r\n\r\n',
    RESP('x'.repeat(300)),
  ].join('');
  const whole = run(false, calls([stream]));
  const shape = (ms: HttpMessage[]) => ms.map((m) => [m.status, m.seq, m.bytes, m.truncated]);
  assert.equal(whole.ends.length, 6);
  for (const [round, parts] of partitions(stream, 12345, 300, 120)) {
    const r = run(false, calls(parts));
    assert.deepEqual(shape(r.ends), shape(whole.ends), `partition ${round}: ${JSON.stringify(parts.map((p) => p.length))}`);
    assert.equal(r.stats.parseErrors, 0);
  }
});

test('requests: any split gives the same heads as one call (random partitions)', () => {
  // The one-call path parses a head where it lies; a split one is kept and parsed whole later.
  // Both must find the same start line, framing, trace headers and Connection.
  const stream = [
    'GET /a?b=c HTTP/1.1\r\nHost: h\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Odd-Line\r\n\r\n',
    'POST /p HTTP/1.1\r\nContent-Length: 4\r\nB3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\nConnection: close\r\n\r\nbody',
    'PUT /q HTTP/1.0\r\nconnection: Keep-Alive\r\nTransfer-Encoding: chunked\r\nsw8:  1-abc-def \r\n\r\n2\r\nhi\r\n0\r\n\r\n',
    `DELETE /r HTTP/1.1\r\nCookie: ${'c'.repeat(700)}\r\nX-Datadog-Trace-Id: 9\r\n:no-name\r\n\r\n`,
    'HEAD / HTTP/1.0\r\n\r\n',
  ].join('');
  const shape = (ms: HttpMessage[]) => ms.map((m) => [m.method, m.target, m.version, m.seq, m.bytes, m.truncated, m.close, m.trace]);
  const whole = run(true, calls([stream]));
  assert.deepEqual(whole.ends.map((m) => [m.method, m.close, m.trace && Object.keys(m.trace)]), [
    ['GET', false, ['traceparent']], ['POST', true, ['b3']], ['PUT', false, ['sw8']], ['DELETE', false, ['ddTraceId']], ['HEAD', true, null],
  ]);
  assert.equal(whole.ends[2].trace!.sw8, '1-abc-def');
  for (const [round, parts] of partitions(stream, 777, 300, 200)) {
    const r = run(true, calls(parts));
    assert.deepEqual(shape(r.ends), shape(whole.ends), `partition ${round}: ${JSON.stringify(parts.map((p) => p.length))}`);
    assert.equal(r.stats.parseErrors, 0);
  }
});

test('a head split over calls borrows its buffer only until it is complete', () => {
  // Many connections' parsers, each with a head split over two calls, interleaved (all n heads
  // incomplete at once, each lent a buffer): every head is parsed from its own bytes, and the
  // buffers go back. Before, each parser kept its 8 KiB for its life (2,000 connections: 16 MiB).
  const head = (k: number) => `GET /conn/${k} HTTP/1.1\r\nHost: h${k}\r\ntraceparent: 00-${String(k).padStart(32, '0')}-${'b'.repeat(16)}-01\r\n\r\n`;
  const n = 2000;
  const ends: HttpMessage[][] = [];
  const parsers = Array.from({ length: n }, (_, k) => {
    ends.push([]);
    return createParser(true, { onHead: () => BODY_FRAMED, onEnd: (m) => { ends[k].push(m); } });
  });
  const piece = (k: number, from: number, to?: number): Chunk => {
    const b = Buffer.from(head(k).slice(from, to), 'latin1');
    return { seq: from, len: b.length, head: b, tail: Buffer.alloc(0), tsNs: from + 1 };
  };
  setFlagsFromString('--expose-gc'); // a new context then has gc()
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().arrayBuffers;
  for (let k = 0; k < n; k++) parsers[k].feed(piece(k, 0, 20 + (k % 40)));
  for (let k = 0; k < n; k++) parsers[k].feed(piece(k, 20 + (k % 40)));
  for (let k = 0; k < n; k++) {
    assert.deepEqual(ends[k].map((m) => [m.target, m.trace?.traceparent?.slice(3, 35)]), [[`/conn/${k}`, String(k).padStart(32, '0')]], `parser ${k}`);
    assert.equal(parsers[k].busy(), false);
  }
  gc();
  const kept = process.memoryUsage().arrayBuffers - before;
  assert.ok(kept < 64 * MAX_HEADER_BYTES, `${n} idle parsers keep ${kept} bytes of array buffers`);
  assert.equal(parsers.length, n); // the parsers live until here
});
