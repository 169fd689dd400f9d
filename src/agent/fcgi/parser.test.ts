// The FastCGI parser: requests and responses as nginx and PHP-FPM write them, whole, split at
// every byte, and cut short by the capture (its first bytes and its last 32).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_HEADERS, headerTable, type Chunk, type HttpMessage, type ParserStats } from '../http/parser.js';
import { calls } from '../http/testkit.js';
import { createFcgiParser, decodeParams, looksLikeFastCgi } from './parser.js';
import { NGINX_PARAMS, params, request, response } from './testkit.js';

function parse(isRequest: boolean, chunks: Chunk[], headers = DEFAULT_HEADERS) {
  const heads: HttpMessage[] = [], ends: HttpMessage[] = [];
  const stats: ParserStats = { parseErrors: 0, truncated: 0, chunkedLost: 0 };
  const p = createFcgiParser(isRequest, { onHead: (m) => { heads.push({ ...m }); return 0; }, onEnd: (m) => { ends.push(m); } }, undefined, stats, headers);
  for (const c of chunks) p.feed(c);
  return { heads, ends, stats, p };
}

const REQ = request();
const cases: Array<{ name: string; b: Buffer; sizes: (n: number) => number[]; cap: number; truncated?: boolean; lost?: boolean }> = [
  { name: 'one call', b: REQ, sizes: (n) => [n], cap: 4096 },
  { name: 'one call, 1 KiB captured (the trace headers are past it)', b: REQ, sizes: (n) => [n], cap: 1024 },
  { name: 'a call per byte', b: REQ, sizes: (n) => Array(n).fill(1), cap: 4096 },
  { name: 'record headers split across calls', b: REQ, sizes: (n) => [3, 13, 100, 7, n - 123], cap: 4096 },
  { name: 'a 200 KiB upload, 1 KiB captured of each call: the end from the last bytes', b: request(NGINX_PARAMS, Buffer.alloc(200_000, 0x61)), sizes: (n) => [n - 70_000, 70_000], cap: 1024, lost: true },
  { name: 'a 200 KiB upload, 4 KiB captured of 4 KiB calls: walked record by record', b: request(NGINX_PARAMS, Buffer.alloc(200_000, 0x61)), sizes: (n) => [...Array(Math.floor(n / 4096)).fill(4096), n % 4096], cap: 4096 },
];

for (const k of cases) {
  test(`request: ${k.name}`, () => {
    const { heads, ends, stats } = parse(true, calls(k.b, k.sizes(k.b.length), k.cap));
    assert.equal(stats.parseErrors, 0);
    assert.equal(ends.length, 1, 'one request, complete');
    const m = ends[0];
    assert.equal(heads.length, 1);
    assert.deepEqual([m.method, m.target, m.version, m.host, m.status], ['GET', '/index.php?x=1', '1.1', 'shop.example:8080', 0]);
    assert.equal(m.bytes, k.b.length);
    assert.equal(m.seq, 0);
    assert.equal(m.framingLost, k.lost ?? false);
    if (k.cap >= 2048) {
      assert.equal(m.truncated, false);
      assert.deepEqual(m.trace, { traceparent: NGINX_PARAMS.HTTP_TRACEPARENT, xRequestId: 'rid-42' });
    } else {
      assert.equal(m.truncated, true, 'parameters past the capture');
    }
  });
}

test('request: a parameter of a configured request id header (request_id_headers), long values with 4-byte lengths', () => {
  const long = 'v'.repeat(300);
  const b = request({ REQUEST_METHOD: 'POST', REQUEST_URI: '/api/orders', SERVER_PROTOCOL: 'HTTP/1.0', HTTP_X_CORRELATION_ID: 'c-9', HTTP_COOKIE: long });
  const { ends } = parse(true, calls(b, [b.length], 4096), headerTable(['x-correlation-id']));
  assert.deepEqual([ends[0].method, ends[0].target, ends[0].version], ['POST', '/api/orders', '1.0']);
  assert.deepEqual(ends[0].trace, { xRequestId: 'c-9' });
  assert.equal(decodeParams(params({ A: long, B: '' })).get('A'), long);
  assert.equal(decodeParams(params({ A: long, B: '' })).get('B'), '');
});

test('request: no REQUEST_URI: SCRIPT_NAME and QUERY_STRING', () => {
  const b = request({ REQUEST_METHOD: 'GET', SCRIPT_NAME: '/a.php', QUERY_STRING: 'q=2' });
  assert.equal(parse(true, calls(b, [b.length], 4096)).ends[0].target, '/a.php?q=2');
});

test('requests one after another on a kept connection (fastcgi_keep_conn)', () => {
  const b = Buffer.concat([request(), request({ ...NGINX_PARAMS, REQUEST_URI: '/second' })]);
  const { ends } = parse(true, calls(b, [REQ.length, b.length - REQ.length], 4096));
  assert.deepEqual(ends.map((m) => [m.target, m.seq]), [['/index.php?x=1', 0], ['/second', REQ.length]]);
});

const rcases: Array<{ name: string; b: Buffer; sizes: (n: number) => number[]; cap: number; status: number; rid?: string }> = [
  { name: 'PHP\'s 200: no Status header', b: response('X-Powered-By: PHP/8.2.7\r\nContent-type: text/html; charset=UTF-8\r\n\r\n', Buffer.from('<p>hi</p>')), sizes: (n) => [n], cap: 1024, status: 200 },
  { name: 'a 404 with a warning on STDERR first', b: response('Status: 404 Not Found\r\nContent-type: text/html\r\n\r\n', Buffer.from('no'), 'PHP Warning: x'), sizes: (n) => [n], cap: 1024, status: 404 },
  { name: 'a 503 split at every byte', b: response('Status: 503 Service Unavailable\r\nX-Request-ID: made-here\r\n\r\n'), sizes: (n) => Array(n).fill(1), cap: 1024, status: 503, rid: 'made-here' },
  { name: 'a 300 KiB page, 1 KiB captured: the end from the last bytes', b: response('Content-type: text/html\r\n\r\n', Buffer.alloc(300_000, 0x62)), sizes: (n) => [65536, 65536, n - 131072], cap: 1024, status: 200 },
];
for (const k of rcases) {
  test(`response: ${k.name}`, () => {
    const { heads, ends, stats } = parse(false, calls(k.b, k.sizes(k.b.length), k.cap));
    assert.equal(stats.parseErrors, 0);
    assert.equal(ends.length, 1);
    assert.equal(heads.length, 1);
    assert.equal(ends[0].status, k.status);
    assert.equal(ends[0].bytes, k.b.length);
    assert.equal(ends[0].trace?.xRequestId, k.rid);
  });
}

test('not FastCGI: a parse error, and the next record start is taken again', () => {
  const { ends, stats, p } = parse(false, [{ seq: 0, len: 17, head: Buffer.from('HTTP/1.1 200 OK\r\n'), tail: Buffer.alloc(0), tsNs: 1 }]);
  assert.equal(stats.parseErrors, 1);
  assert.equal(ends.length, 0);
  const b = response('\r\n');
  p.feed({ seq: 17, len: b.length, head: b, tail: Buffer.alloc(0), tsNs: 2 });
  assert.equal(ends.length, 1);
});

test('a connection closed mid-response leaves the message unfinished', () => {
  const b = response('Content-type: text/plain\r\n\r\n', Buffer.alloc(100, 0x63));
  const { ends, p } = parse(false, calls(b.subarray(0, 60), [60], 1024));
  assert.equal(ends.length, 0);
  assert.equal(p.busy(), true);
  const m = p.close(99);
  assert.equal(m?.endNs, 99);
  assert.equal(p.busy(), false);
});

test('looksLikeFastCgi: the BEGIN_REQUEST record a web server opens with; not HTTP, TLS or other bytes', () => {
  assert.equal(looksLikeFastCgi(REQ), true);
  assert.equal(looksLikeFastCgi(Buffer.from('GET / HTTP/1.1\r\n\r\n')), false);
  assert.equal(looksLikeFastCgi(Buffer.from('160301020001000001fc0303', 'hex')), false);
  assert.equal(looksLikeFastCgi(response('\r\n')), false, 'a response does not open a connection');
  assert.equal(looksLikeFastCgi(REQ.subarray(0, 8)), true, 'PHP-FPM reads the record header alone first');
  assert.equal(looksLikeFastCgi(REQ.subarray(0, 7)), false, 'too short to tell');
  assert.equal(looksLikeFastCgi(Buffer.from([1, 1, 0, 1, 0, 8, 0, 0, 0, 9])), false, 'no such role');
});
