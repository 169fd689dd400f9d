// The uwsgi request parser: requests as nginx writes them, read as uWSGI reads them (the 4-byte
// header alone, then the rest), a byte at a time, and cut short by the capture (its first bytes
// and its last 32).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_HEADERS, type Chunk, type HttpMessage, type ParserStats } from '../http/parser.js';
import { calls } from '../http/testkit.js';
import { request as fcgiRequest } from '../fcgi/testkit.js';
import { createUwsgiParser, decodeVars, looksLikeUwsgi } from './parser.js';
import { NGINX_VARS, request, vars } from './testkit.js';

function parse(chunks: Chunk[]) {
  const heads: HttpMessage[] = [], ends: HttpMessage[] = [];
  const stats: ParserStats = { parseErrors: 0, truncated: 0, chunkedLost: 0 };
  const p = createUwsgiParser({ onHead: (m) => { heads.push({ ...m }); return 0; }, onEnd: (m) => { ends.push(m); } }, undefined, stats, DEFAULT_HEADERS);
  for (const c of chunks) p.feed(c);
  return { heads, ends, stats, p };
}

const REQ = request();
const UPLOAD = request({ ...NGINX_VARS, REQUEST_METHOD: 'POST' }, Buffer.alloc(200_000, 0x61));
const CUT_VARS = request({ ...NGINX_VARS, HTTP_COOKIE: 'c'.repeat(3000) });
const cases: Array<{ name: string; b: Buffer; sizes: (n: number) => number[]; cap: number; method?: string; truncated?: boolean; endsAt?: number }> = [
  { name: 'one call', b: REQ, sizes: (n) => [n], cap: 4096 },
  { name: 'as uWSGI reads it: the 4-byte header, then the rest', b: REQ, sizes: (n) => [4, n - 4], cap: 4096 },
  { name: 'a call per byte', b: REQ, sizes: (n) => Array(n).fill(1), cap: 4096 },
  { name: 'one call, 512 bytes captured (the trace vars are past it)', b: REQ, sizes: (n) => [n], cap: 512, truncated: true },
  { name: 'a 200 KiB upload, header, vars and body in calls of 64 KiB, 1 KiB captured: the body counted through', b: UPLOAD, sizes: (n) => [4, ...Array(Math.floor((n - 4) / 65536)).fill(65536), (n - 4) % 65536], cap: 1024, method: 'POST' },
  { name: 'a 200 KiB upload, 4 KiB captured of 4 KiB calls', b: UPLOAD, sizes: (n) => [...Array(Math.floor(n / 4096)).fill(4096), n % 4096], cap: 4096, method: 'POST' },
  { name: 'a 3 KiB cookie cut by a 1 KiB capture, CONTENT_LENGTH read before it', b: CUT_VARS, sizes: (n) => [4, n - 4], cap: 1024, truncated: true },
];

for (const k of cases) {
  test(`request: ${k.name}`, () => {
    const chunks = calls(k.b, k.sizes(k.b.length), k.cap);
    const { heads, ends, stats } = parse(chunks);
    assert.equal(stats.parseErrors, 0);
    assert.equal(ends.length, 1, 'one request, complete');
    assert.equal(heads.length, 1);
    const m = ends[0];
    assert.deepEqual([m.method, m.target, m.version, m.host, m.status], [k.method ?? 'GET', '/shop/cart?x=1', '1.1', 'shop.example', 0]);
    assert.equal(m.bytes, k.b.length);
    assert.equal(m.seq, 0);
    assert.equal(m.endNs, chunks[chunks.length - 1].tsNs, 'ends with the call that moved its last byte');
    assert.equal(m.truncated, k.truncated ?? false);
    assert.equal(stats.truncated, k.truncated ? 1 : 0);
    if (!k.truncated) assert.deepEqual(m.trace, { traceparent: NGINX_VARS.HTTP_TRACEPARENT, xRequestId: 'rid-42' });
  });
}

test('request: without REQUEST_URI the target is the script path, PATH_INFO and query (Apache mod_proxy_uwsgi)', () => {
  const v = { REQUEST_METHOD: 'DELETE', SCRIPT_NAME: '/app', PATH_INFO: '/items/7', QUERY_STRING: 'force=1', SERVER_PROTOCOL: 'HTTP/1.0', HTTP_HOST: 'h' };
  const { ends } = parse(calls(request(v), [request(v).length], 4096));
  assert.deepEqual([ends[0].method, ends[0].target, ends[0].version], ['DELETE', '/app/items/7?force=1', '1.0']);
});

test('request: a body without CONTENT_LENGTH in the captured vars is not read; nothing after it becomes a request', () => {
  // the vars cut before CONTENT_LENGTH (it is put last here), a body after them
  const v = { REQUEST_METHOD: 'POST', REQUEST_URI: '/up', HTTP_COOKIE: 'c'.repeat(3000), CONTENT_LENGTH: '5000' };
  const b = Buffer.concat([request(v).subarray(0, 4 + vars(v).length), Buffer.alloc(5000, 0x41)]);
  const { ends, stats } = parse(calls(b, [4, b.length - 4 - 5000, 1000, 4000], 1024));
  assert.equal(ends.length, 1);
  assert.equal(ends[0].truncated, true);
  assert.equal(ends[0].method, 'POST');
  assert.equal(stats.parseErrors, 0, 'the body is not taken for a packet header');
});

test('request: the answer came while the vars were cut: endCutHead ends it', () => {
  const { p, ends, heads } = parse(calls(CUT_VARS.subarray(0, 1500), [4, 1496], 1024));
  assert.equal(ends.length, 0);
  assert.equal(p.busy(), true);
  assert.equal(p.endCutHead(), true);
  assert.equal(heads.length, 1);
  assert.equal(ends.length, 1);
  assert.equal(ends[0].truncated, true);
  assert.equal(p.busy(), false);
});

test('request: not a request packet where one was due: a parse error, the rest of the connection ignored', () => {
  const b = Buffer.concat([REQ, Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), REQ]);
  const { ends, stats } = parse(calls(b, [REQ.length, b.length - REQ.length], 4096));
  assert.equal(ends.length, 1);
  assert.equal(stats.parseErrors, 1);
});

test('request: two requests on one connection, one after the other', () => {
  const post = request({ ...NGINX_VARS, REQUEST_METHOD: 'POST' }, Buffer.from('{"a":1}'));
  const b = Buffer.concat([REQ, post]);
  const { ends, stats } = parse(calls(b, [REQ.length + 10, post.length - 10], 4096));
  assert.equal(stats.parseErrors, 0);
  assert.deepEqual(ends.map((m) => [m.method, m.seq, m.bytes]), [['GET', 0, REQ.length], ['POST', REQ.length, post.length]]);
});

test('looksLikeUwsgi: request packets, their header alone; not HTTP, FastCGI, TLS or other binary', () => {
  const yes = [REQ, REQ.subarray(0, 4), REQ.subarray(0, 9), request(NGINX_VARS, Buffer.alloc(0), 5)];
  const no = [
    Buffer.from('GET / HTTP/1.1\r\n\r\n'), fcgiRequest(), Buffer.from([0x16, 3, 1, 0, 0xc8, 1, 0, 0, 0xc4]), // TLS ClientHello
    Buffer.from([0, 2, 0, 0]), // vars too short for one pair
    Buffer.from([0, 100, 0, 1, 5, 0, 65, 66]), // modifier2 not 0
    Buffer.from([0, 100, 0, 0, 5, 0, 97, 98, 99]), // a lower-case key
    Buffer.from([0, 100, 0, 0, 0, 1, 65]), // a key of 256 bytes
    Buffer.from([0, 100, 0]), // less than a header
  ];
  for (const b of yes) assert.equal(looksLikeUwsgi(b), true, b.toString('hex'));
  for (const b of no) assert.equal(looksLikeUwsgi(b), false, b.subarray(0, 16).toString('hex'));
});

test('decodeVars: pairs up to the first one cut short', () => {
  const b = vars({ A: '1', BB: '22', CCC: '333' });
  assert.deepEqual([...decodeVars(b)], [['A', '1'], ['BB', '22'], ['CCC', '333']]);
  assert.deepEqual([...decodeVars(b.subarray(0, b.length - 1))], [['A', '1'], ['BB', '22']]);
  assert.deepEqual([...decodeVars(Buffer.alloc(0))], []);
});
