import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import assert from 'node:assert/strict';
import { createConnTable, type ConnTableOptions } from './conn.js';
import { createThreadGroups, INHERIT_GRACE_NS } from './threadgroup.js';
import type { DataEvent } from './capture/event.js';
import { dataEvent } from './capture/testkit.js';
import { NGINX_PARAMS, request, response } from './fcgi/testkit.js';
import { NGINX_VARS, request as uwsgiRequest } from './uwsgi/testkit.js';
import type { EbpfSpan } from '../span/span.js';

interface Ev {
  sock?: number;
  dir: 'send' | 'recv';
  data: string;
  seq: number;
  t: number; // µs
  pid?: number;
  tid?: number;
  goid?: number;
  capture?: number;
}

function ev(e: Ev): DataEvent {
  const b = Buffer.from(e.data, 'latin1');
  const cap = e.capture ?? 4096;
  return dataEvent({
    tsNs: e.t * 1000, sockId: e.sock ?? 1, pid: e.pid ?? 100, tid: e.tid ?? 101, goid: e.goid ?? 0,
    dir: e.dir, seq: e.seq >>> 0, len: b.length, head: b.subarray(0, cap),
    tail: b.length > cap ? b.subarray(b.length - 64) : Buffer.alloc(0),
  });
}

function table(over: Partial<ConnTableOptions> = {}) {
  const spans: EbpfSpan[] = [];
  const groups = createThreadGroups(1000n);
  const t = createConnTable({
    host: 'h1', convToDdtrace: false, groups,
    procs: { service: (pid) => `svc${pid}`, processName: () => 'proc', threadName: (_p, tid) => `t${tid}`, threadLinks: () => true },
    clock: { epochUs: (ns) => Math.floor(ns / 1000) },
    onSpan: (s) => spans.push(s),
    ...over,
  });
  return { t, spans, groups };
}

const REQ = (path = '/users/7?x=1', extra = '') => `GET ${path} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`;
const RESP = (code = 200, body = 'ok') => `HTTP/1.1 ${code} X\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

test('server: request read then response written gives an entry span at once', () => {
  const { t, spans } = table();
  t.onData(ev({ dir: 'recv', data: REQ(), seq: 5000, t: 10 }));
  assert.equal(spans.length, 0);
  t.onData(ev({ dir: 'send', data: RESP(), seq: 9000, t: 25, tid: 102 }));
  assert.equal(spans.length, 1, 'sent as soon as the response is complete');
  const s = spans[0];
  assert.equal(s.kind, 'entry');
  assert.equal(s.reqSeq, 5000);
  assert.equal(s.respSeq, 9000);
  assert.equal(s.startUs, 10);
  assert.equal(s.durationUs, 15);
  assert.equal(s.tid, 101, 'the thread that read the request');
  assert.equal(s.resource, 'GET /users/7');
  assert.equal(s.httpRoute, '/users/7');
  assert.equal(s.httpStatusCode, 200);
  assert.equal(s.status, 'ok');
  assert.equal(s.service, 'svc100');
  assert.equal(s.operation, 'HTTP');
  assert.notEqual(s.threadGroup, '');
  assert.equal(s.attrs.thread_name, 't101');
  assert.equal(s.attrs.bytes_read, REQ().length);
  assert.equal(s.attrs.bytes_written, RESP().length);
  assert.equal(s.attrs.http_version, '1.1');
  assert.equal(s.attrs.http_host, 'a', 'the Host the client called');
  assert.equal(s.srcPort, 8080);
});

test('client: request written then response read gives an exit span', () => {
  const { t, spans } = table();
  t.onData(ev({ dir: 'send', data: REQ('/a'), seq: 1, t: 1 }));
  t.onData(ev({ dir: 'recv', data: RESP(404, 'no').slice(0, 20), seq: 77, t: 3 }));
  assert.equal(spans.length, 0);
  t.onData(ev({ dir: 'recv', data: RESP(404, 'no').slice(20), seq: 97, t: 4 }));
  assert.equal(spans.length, 1);
  assert.equal(spans[0].kind, 'exit');
  assert.equal(spans[0].reqSeq, 1);
  assert.equal(spans[0].respSeq, 77);
  assert.equal(spans[0].durationUs, 3);
  assert.equal(spans[0].status, 'warning');
  assert.equal(spans[0].threadGroup, '', 'no entry open on this thread');
  assert.equal(spans[0].attrs.bytes_written, REQ('/a').length);
});

test('pipelined requests are answered in order', () => {
  const { t, spans } = table();
  const two = REQ('/one') + REQ('/two');
  t.onData(ev({ dir: 'recv', data: two, seq: 100, t: 1 }));
  t.onData(ev({ dir: 'send', data: RESP(200, 'a') + RESP(500, 'bb'), seq: 900, t: 2 }));
  assert.deepEqual(spans.map((s) => [s.resource, s.reqSeq, s.respSeq, s.status]), [
    ['GET /one', 100, 900, 'ok'],
    ['GET /two', 100 + REQ('/one').length, 900 + RESP(200, 'a').length, 'error'],
  ]);
});

test('connection closed before the response: failed span', () => {
  const { t, spans, groups } = table();
  t.onData(ev({ dir: 'recv', data: REQ(), seq: 1, t: 1 }));
  t.onClose({ kind: 'close', tsNs: 9000, sockId: 1, pid: 100 });
  assert.equal(spans.length, 1);
  assert.equal(spans[0].status, 'error');
  assert.equal(spans[0].httpStatusCode, 0);
  assert.equal(spans[0].durationUs, 8);
  assert.equal(spans[0].attrs.response_incomplete, true);
  assert.equal(t.stats.failedSpans, 1);
  assert.equal(t.stats.tracked, 0);
  assert.equal(groups.openCount(), 0, 'the entry\'s group closed with it');
});

test('read-until-close response ends with its last data, at the close', () => {
  const { t, spans } = table();
  t.onData(ev({ dir: 'send', data: 'GET / HTTP/1.0\r\n\r\n', seq: 1, t: 1 }));
  t.onData(ev({ dir: 'recv', data: 'HTTP/1.0 200 OK\r\n\r\nhello', seq: 50, t: 2 }));
  t.onData(ev({ dir: 'recv', data: ' world', seq: 74, t: 5 }));
  assert.equal(spans.length, 0);
  t.onClose({ kind: 'close', tsNs: 100_000, sockId: 1, pid: 100 });
  assert.equal(spans.length, 1);
  assert.equal(spans[0].status, 'ok');
  assert.equal(spans[0].durationUs, 4);
  assert.equal(spans[0].attrs.http_version, '1.0');
});

test('100 Continue: response seq is its first byte, span ends with the final response', () => {
  const { t, spans } = table();
  t.onData(ev({ dir: 'recv', data: 'POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n', seq: 1, t: 1 }));
  t.onData(ev({ dir: 'send', data: 'HTTP/1.1 100 Continue\r\n\r\n', seq: 500, t: 2 }));
  assert.equal(spans.length, 0);
  t.onData(ev({ dir: 'recv', data: 'data', seq: 65, t: 3 }));
  t.onData(ev({ dir: 'send', data: RESP(201), seq: 525, t: 4 }));
  assert.equal(spans.length, 1);
  assert.equal(spans[0].respSeq, 500);
  assert.equal(spans[0].httpStatusCode, 201);
  assert.equal(spans[0].durationUs, 3);
  // Every byte of the answer is counted, the interim response's too.
  assert.equal(spans[0].attrs.bytes_written, 'HTTP/1.1 100 Continue\r\n\r\n'.length + RESP(201).length);
  assert.equal(spans[0].attrs.bytes_read, 'POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\ndata'.length);
});

test('a WebSocket upgrade ends with its 101, its group closed; the frames after it are not parsed', () => {
  const { t, spans, groups } = table();
  const upgrade = REQ('/ws', 'Upgrade: websocket\r\nConnection: Upgrade\r\n');
  const switched = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
  const frame = (text: string) => String.fromCharCode(0x81, text.length) + text;
  t.onData(ev({ dir: 'recv', data: upgrade, seq: 1, t: 10 }));
  t.onData(ev({ dir: 'send', data: switched + frame('hello'), seq: 500, t: 20 }));
  assert.equal(spans.length, 1, 'sent at the switch, not when the WebSocket closes');
  assert.deepEqual([spans[0].kind, spans[0].resource, spans[0].httpStatusCode, spans[0].status, spans[0].durationUs], ['entry', 'GET /ws', 101, 'ok', 10]);
  assert.equal(spans[0].attrs.bytes_written, switched.length);
  assert.equal(groups.openCount(), 0, 'the handler\'s group closed at the 101');
  // Frames both ways, some of which look like HTTP, for a minute: no span, no error.
  let recv = 1 + upgrade.length, send = 500 + switched.length + 7;
  for (let i = 0; i < 3; i++) {
    const f = frame(i === 1 ? 'GET /x HTTP/1.1\r\n\r\n' : 'ping');
    t.onData(ev({ dir: 'recv', data: f, seq: recv, t: 30 + i * 20_000_000 }));
    recv += f.length;
    const g = frame(i === 1 ? 'HTTP/1.1 200 OK\r\n\r\n' : 'pong');
    t.onData(ev({ dir: 'send', data: g, seq: send, t: 40 + i * 20_000_000 }));
    send += g.length;
  }
  t.onClose({ kind: 'close', tsNs: 61_000_000_000, sockId: 1, pid: 100 });
  assert.equal(spans.length, 1);
  assert.equal(t.stats.parse.parseErrors, 0);
  assert.equal(t.stats.orphanResponses, 0);
  assert.equal(t.stats.failedSpans, 0);
  assert.equal(t.stats.protocolSwitches, 1);
});

test('a CONNECT tunnel ends with its 2xx; a refused one and a declined upgrade leave the connection HTTP', () => {
  const { t, spans } = table();
  // A client through a proxy: CONNECT, 200, then TLS bytes (here a request-looking line).
  t.onData(ev({ dir: 'send', data: 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', seq: 1, t: 1 }));
  t.onData(ev({ dir: 'recv', data: 'HTTP/1.1 200 Connection established\r\n\r\n', seq: 900, t: 5 }));
  t.onData(ev({ dir: 'send', data: 'GET / HTTP/1.1\r\n\r\n', seq: 61, t: 6 }));
  t.onData(ev({ dir: 'recv', data: RESP(), seq: 939, t: 7 }));
  assert.deepEqual(spans.map((s) => [s.kind, s.resource, s.httpStatusCode, s.durationUs]), [['exit', 'CONNECT example.com:443', 200, 4]]);
  // Another connection: the proxy refuses (407), and an upgrade the server declines (200):
  // both stay HTTP, their next exchanges parsed.
  t.onData(ev({ sock: 2, dir: 'send', data: 'CONNECT example.com:443 HTTP/1.1\r\n\r\n', seq: 1, t: 10 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: RESP(407), seq: 900, t: 11 }));
  t.onData(ev({ sock: 2, dir: 'send', data: REQ('/ws', 'Upgrade: websocket\r\n'), seq: 39, t: 12 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: RESP(200), seq: 900 + RESP(407).length, t: 13 }));
  assert.deepEqual(spans.slice(1).map((s) => [s.resource, s.httpStatusCode]), [['CONNECT example.com:443', 407], ['GET /ws', 200]]);
  assert.equal(t.stats.protocolSwitches, 1);
});

test('a connection that begins with the HTTP/2 preface (gRPC without TLS) is left alone, not counted call after call', () => {
  const { t, spans } = table();
  const preface = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
  const settings = '\x00\x00\x00\x04\x00\x00\x00\x00\x00';
  t.onData(ev({ dir: 'send', data: preface + settings, seq: 1, t: 1 }));
  t.onData(ev({ dir: 'recv', data: settings, seq: 500, t: 2 }));
  for (let i = 0; i < 5; i++) t.onData(ev({ dir: 'send', data: settings, seq: 33 + 9 * i, t: 3 + i }));
  t.onData(ev({ sock: 2, dir: 'recv', data: preface, seq: 1, t: 10 })); // the server's side
  assert.equal(spans.length, 0);
  assert.equal(t.stats.protocolSwitches, 2);
  assert.equal(t.stats.unclassified, 0);
  assert.equal(t.stats.parse.parseErrors, 0);
});

// A traced service's other traffic (a database's, a cache's protocol) is muted in the kernel once
// seen to be such, and so is a connection that left HTTP/1 or began as HTTP/2; tracing that
// began in the middle of an HTTP exchange is not taken for another protocol.
test('connections carrying another protocol are handed to onNotHttp, again only while their calls go on a second later; one seen from the middle of an HTTP body is not', () => {
  const notHttp: number[] = [];
  const { t, spans } = table({ onNotHttp: (id) => notHttp.push(id) });
  // Redis-like exchanges on socket 1: three turns leave it alone, the fourth mutes it.
  let at = 1;
  const exchange = () => {
    t.onData(ev({ sock: 1, dir: 'send', data: '*1\r\n$4\r\nPING\r\n', seq: at, t: at }));
    t.onData(ev({ sock: 1, dir: 'recv', data: '+PONG\r\n', seq: 9000 + at, t: at + 1 }));
    at += 14;
  };
  exchange();
  exchange();
  assert.deepEqual(notHttp, [], 'three turns');
  exchange();
  assert.deepEqual(notHttp, [1], 'the fourth turn');
  exchange();
  exchange();
  assert.deepEqual(notHttp, [1], 'once (while its calls come within a second of it)');
  assert.equal(t.stats.otherProtocol, 1);
  // Socket 2, traced from the middle of a 1 MB answer: 20 reads of body, the client's next
  // request, its answer: parsed, never muted.
  for (let i = 0; i < 20; i++) t.onData(ev({ sock: 2, dir: 'recv', data: 'x'.repeat(1000), seq: 50_000 + 1000 * i, t: 1000 + i }));
  t.onData(ev({ sock: 2, dir: 'send', data: REQ('/next'), seq: 7, t: 2000 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: RESP(), seq: 70_000, t: 2001 }));
  assert.deepEqual(spans.map((s) => [s.kind, s.resource]), [['exit', 'GET /next']]);
  // A server seen from the middle of an upload: the body, its answer (one turn), the next request.
  for (let i = 0; i < 5; i++) t.onData(ev({ sock: 3, dir: 'recv', data: 'y'.repeat(1000), seq: 1000 * i, t: 3000 + i }));
  t.onData(ev({ sock: 3, dir: 'send', data: RESP(201), seq: 800, t: 3010 }));
  t.onData(ev({ sock: 3, dir: 'recv', data: REQ('/again'), seq: 5000, t: 3020 }));
  t.onData(ev({ sock: 3, dir: 'send', data: RESP(), seq: 800 + RESP(201).length, t: 3030 }));
  assert.deepEqual(spans.slice(1).map((s) => [s.kind, s.resource]), [['entry', 'GET /again']]);
  assert.deepEqual(notHttp, [1]);
  // HTTP/2 from its preface, and a WebSocket after its 101: at once.
  t.onData(ev({ sock: 4, dir: 'send', data: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', seq: 1, t: 4000 }));
  t.onData(ev({ sock: 5, dir: 'recv', data: REQ('/ws', 'Upgrade: websocket\r\nConnection: Upgrade\r\n'), seq: 1, t: 4001 }));
  assert.deepEqual(notHttp, [1, 4]);
  t.onData(ev({ sock: 5, dir: 'send', data: 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', seq: 1, t: 4002 }));
  assert.deepEqual(notHttp, [1, 4, 5]);
  // Socket 1's calls still coming a second after it was handed over (the mute did not hold: a
  // new loader, an entry pushed out of the kernel's map): handed again, at most once a second.
  const muteAt = 29; // µs: the third exchange's send
  t.onData(ev({ sock: 1, dir: 'send', data: '*1\r\n$4\r\nPING\r\n', seq: at, t: muteAt + 900_000 }));
  assert.deepEqual(notHttp, [1, 4, 5], 'within the second');
  t.onData(ev({ sock: 1, dir: 'recv', data: '+PONG\r\n', seq: 9000 + at, t: muteAt + 1_000_100 }));
  assert.deepEqual(notHttp, [1, 4, 5, 1], 'after it');
  t.onData(ev({ sock: 1, dir: 'send', data: '*1\r\n$4\r\nPING\r\n', seq: at + 14, t: muteAt + 1_500_000 }));
  assert.deepEqual(notHttp, [1, 4, 5, 1], 'not again within the next second');
  assert.equal(t.stats.otherProtocol, 1);
  assert.equal(t.stats.parse.parseErrors, 0);
});

// nginx → PHP-FPM over TCP (fastcgi_pass 127.0.0.1:9000): PHP-FPM's worker reads the request,
// calls out over HTTP while serving it, and answers.
test('FastCGI: PHP-FPM\'s entry span from the CGI parameters and Status, its HTTP call joins its group; nginx\'s exit pairs by sequence numbers', () => {
  const { t, spans } = table();
  const req = request({ ...NGINX_PARAMS, REQUEST_URI: '/cart.php?id=7' });
  const resp = response('Status: 404 Not Found\r\nContent-type: text/html\r\n\r\n', Buffer.from('none'));
  // nginx (pid 50) writes the request; PHP-FPM (pid 60) reads it, calls out, answers
  t.onData(ev({ sock: 1, dir: 'send', data: req.toString('latin1'), seq: 100, t: 1, pid: 50, tid: 50 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: req.toString('latin1'), seq: 100, t: 2, pid: 60, tid: 60 }));
  t.onData(ev({ sock: 3, dir: 'send', data: REQ('/stock/7'), seq: 1, t: 3, pid: 60, tid: 60 }));
  t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 4, pid: 60, tid: 60 }));
  t.onData(ev({ sock: 2, dir: 'send', data: resp.toString('latin1'), seq: 900, t: 5, pid: 60, tid: 60 }));
  t.onData(ev({ sock: 1, dir: 'recv', data: resp.toString('latin1'), seq: 900, t: 6, pid: 50, tid: 50 }));
  const [call, entry, exit] = spans;
  assert.deepEqual([call.kind, call.operation, call.resource], ['exit', 'HTTP', 'GET /stock/7']);
  assert.deepEqual([entry.kind, entry.operation, entry.resource, entry.httpStatusCode, entry.status], ['entry', 'FastCGI', 'GET /cart.php', 404, 'warning']);
  assert.deepEqual([exit.kind, exit.operation, exit.resource, exit.httpStatusCode], ['exit', 'FastCGI', 'GET /cart.php', 404]);
  assert.equal(call.threadGroup, entry.threadGroup, 'PHP\'s call joins the request it serves');
  assert.notEqual(entry.threadGroup, '');
  assert.deepEqual([entry.reqSeq, entry.respSeq, exit.reqSeq, exit.respSeq], [100, 900, 100, 900], 'the two ends pair as for HTTP');
  assert.equal(entry.appTraceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'the traceparent nginx passed as HTTP_TRACEPARENT');
  assert.deepEqual([entry.attrs.http_host, entry.attrs.http_request_id, entry.attrs.http_version], ['shop.example:8080', 'rid-42', '1.1']);
  assert.equal(t.stats.parse.parseErrors, 0);
});

// nginx → uWSGI over TCP (uwsgi_pass 127.0.0.1:3031): uWSGI's worker reads the packet's 4-byte
// header, then its vars; calls out over HTTP while serving it; answers in HTTP/1 without a
// length and closes.
test('uwsgi: uWSGI\'s entry span from the vars, answered in HTTP/1 until the close; its HTTP call joins its group; nginx\'s exit pairs by sequence numbers', () => {
  const { t, spans } = table();
  const req = uwsgiRequest({ ...NGINX_VARS, REQUEST_URI: '/cart?id=7' }).toString('latin1');
  const resp = 'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nbusy';
  t.onData(ev({ sock: 1, dir: 'send', data: req, seq: 100, t: 1, pid: 50, tid: 50 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: req.slice(0, 4), seq: 100, t: 2, pid: 60, tid: 61 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: req.slice(4), seq: 104, t: 3, pid: 60, tid: 61 }));
  t.onData(ev({ sock: 3, dir: 'send', data: REQ('/stock/7'), seq: 1, t: 4, pid: 60, tid: 61 }));
  t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 5, pid: 60, tid: 61 }));
  t.onData(ev({ sock: 2, dir: 'send', data: resp, seq: 900, t: 6, pid: 60, tid: 61 }));
  t.onClose({ kind: 'close', tsNs: 7000, sockId: 2, pid: 60 });
  t.onData(ev({ sock: 1, dir: 'recv', data: resp, seq: 900, t: 8, pid: 50, tid: 50 }));
  t.onClose({ kind: 'close', tsNs: 9000, sockId: 1, pid: 50 });
  const [call, entry, exit] = spans;
  assert.deepEqual([call.kind, call.operation, call.resource], ['exit', 'HTTP', 'GET /stock/7']);
  assert.deepEqual([entry.kind, entry.operation, entry.resource, entry.httpStatusCode, entry.status], ['entry', 'uwsgi', 'GET /cart', 503, 'error']);
  assert.deepEqual([exit.kind, exit.operation, exit.resource, exit.httpStatusCode], ['exit', 'uwsgi', 'GET /cart', 503]);
  assert.equal(call.threadGroup, entry.threadGroup, 'the application\'s call joins the request it serves');
  assert.notEqual(entry.threadGroup, '');
  assert.deepEqual([entry.reqSeq, entry.respSeq, exit.reqSeq, exit.respSeq], [100, 900, 100, 900], 'the two ends pair as for HTTP');
  assert.deepEqual([entry.startUs, entry.startUs + entry.durationUs, exit.startUs + exit.durationUs], [2, 6, 8], 'each ends with its last data, not at the close');
  assert.equal(entry.appTraceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'the traceparent nginx passed as HTTP_TRACEPARENT');
  assert.deepEqual([entry.attrs.http_host, entry.attrs.http_request_id, entry.attrs.http_version], ['shop.example', 'rid-42', '1.1']);
  assert.equal(t.stats.parse.parseErrors, 0);
  assert.equal(t.stats.unclassified, 0);
});

// uWSGI's thread answers until the close, closes, and takes its next request on another
// connection before the client has closed: the first answer's group must be over at uWSGI's
// FIN (the shutdown event), or the thread has two open and its next call joins neither.
test('a server\'s answer until the close ends at its FIN (shutdown): its group closes, the thread\'s next call joins the next request', () => {
  let asked = 0;
  const { t, spans, groups } = table({ onUntilClose: () => { asked++; } });
  const resp = 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst';
  const first = () => {
    t.onData(ev({ sock: 2, dir: 'recv', data: REQ('/first'), seq: 1, t: 1, tid: 61 }));
    t.onData(ev({ sock: 2, dir: 'send', data: resp, seq: 900, t: 2, tid: 61 }));
  };
  // before shutdown events were asked for: the answer ends at the socket's end
  first();
  assert.equal(spans.length, 0, 'until the close');
  t.onClose({ kind: 'close', tsNs: 3000, sockId: 2, pid: 100 });
  assert.deepEqual([spans.length, asked, groups.openCount()], [1, 1, 0], 'ended at the close; shutdown events asked for once');
  assert.equal(spans[0].durationUs, 1, 'with its last data');
  // with them: the FIN ends it while the client has not closed yet
  t.onData(ev({ sock: 4, dir: 'recv', data: REQ('/second'), seq: 1, t: 10, tid: 61 }));
  t.onData(ev({ sock: 4, dir: 'send', data: resp, seq: 900, t: 11, tid: 61 }));
  t.onShutdown({ kind: 'shutdown', tsNs: 12_000, sockId: 4, pid: 100 });
  t.onData(ev({ sock: 6, dir: 'recv', data: REQ('/third'), seq: 1, t: 13, tid: 61 }));
  t.onData(ev({ sock: 7, dir: 'send', data: REQ('/call'), seq: 1, t: 14, tid: 61 }));
  t.onData(ev({ sock: 7, dir: 'recv', data: RESP(), seq: 1, t: 15, tid: 61 }));
  t.onData(ev({ sock: 6, dir: 'send', data: RESP(), seq: 900, t: 16, tid: 61 }));
  t.onClose({ kind: 'close', tsNs: 17_000, sockId: 4, pid: 100 });
  const [, second, call, third] = spans;
  assert.deepEqual([second.resource, second.durationUs, call.resource, third.resource], ['GET /second', 1, 'GET /call', 'GET /third']);
  assert.equal(call.threadGroup, third.threadGroup, 'the call joins the request its thread serves now');
  assert.notEqual(call.threadGroup, '');
  assert.equal(asked, 1);
  assert.equal(t.stats.parse.parseErrors, 0);
});

test('HEAD response has no body even with content-length', () => {
  const { t, spans } = table();
  t.onData(ev({ dir: 'send', data: 'HEAD /f HTTP/1.1\r\n\r\n' + REQ('/g'), seq: 1, t: 1 }));
  t.onData(ev({ dir: 'recv', data: 'HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n' + RESP(), seq: 10, t: 2 }));
  assert.deepEqual(spans.map((s) => s.resource), ['HEAD /f', 'GET /g']);
});

test('thread groups across connections', async (tt) => {
  await tt.test('an exit made while serving an entry joins its group', () => {
    const { t, spans } = table();
    t.onData(ev({ sock: 1, dir: 'recv', data: REQ('/in'), seq: 1, t: 1, tid: 7 }));
    t.onData(ev({ sock: 2, dir: 'send', data: REQ('/out'), seq: 1, t: 2, tid: 7 }));
    t.onData(ev({ sock: 2, dir: 'recv', data: RESP(), seq: 1, t: 3, tid: 7 }));
    t.onData(ev({ sock: 1, dir: 'send', data: RESP(), seq: 1, t: 4, tid: 7 }));
    // After the entry's response, a new exit on the same thread joins nothing.
    t.onData(ev({ sock: 3, dir: 'send', data: REQ('/late'), seq: 1, t: 5, tid: 7 }));
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 6, tid: 7 }));
    const [exit, entry, late] = spans;
    assert.equal(exit.kind, 'exit');
    assert.equal(entry.kind, 'entry');
    assert.equal(exit.threadGroup, entry.threadGroup);
    assert.notEqual(entry.threadGroup, '');
    assert.equal(late.threadGroup, '', 'never joins a closed group');
  });
  await tt.test('goroutine: joins by goid even on another OS thread', () => {
    const { t, spans } = table();
    t.onData(ev({ sock: 1, dir: 'recv', data: REQ('/in'), seq: 1, t: 1, tid: 7, goid: 33 }));
    t.onData(ev({ sock: 2, dir: 'send', data: REQ('/out'), seq: 1, t: 2, tid: 8, goid: 33 }));
    t.onData(ev({ sock: 2, dir: 'recv', data: RESP(), seq: 1, t: 3, tid: 9, goid: 33 }));
    t.onData(ev({ sock: 1, dir: 'send', data: RESP(), seq: 1, t: 4, tid: 7, goid: 33 }));
    assert.equal(spans[0].threadGroup, spans[1].threadGroup);
    assert.equal(spans[0].attrs.tid_usr, 33);
  });
  /** An event loop (thread 7) serving /a (socket 1) and /b (socket 2) calls out (socket 3); h: their extra headers. */
  const twoOpen = (t: ReturnType<typeof table>['t'], h: { a?: string; b?: string; out: string }) => {
    t.onData(ev({ sock: 1, dir: 'recv', data: REQ('/a', h.a), seq: 1, t: 1, tid: 7 }));
    t.onData(ev({ sock: 2, dir: 'recv', data: REQ('/b', h.b), seq: 1, t: 2, tid: 7 }));
    t.onData(ev({ sock: 3, dir: 'send', data: REQ('/out', h.out), seq: 1, t: 3, tid: 7 }));
  };
  await tt.test('event loop: two entries open on one thread, the exit joins none', () => {
    const { t, spans, groups } = table();
    twoOpen(t, { out: '' });
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 4, tid: 7 }));
    assert.equal(spans[0].threadGroup, '');
    assert.equal(groups.stats.ambiguous, 1);
  });
  await tt.test('event loop: the exit carrying an open entry\'s X-Request-ID joins that entry', () => {
    const { t, spans, groups } = table();
    twoOpen(t, { a: 'X-Request-ID: rid-a\r\n', b: 'x-request-id: rid-b\r\n', out: 'X-Request-Id: rid-b\r\n' });
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 4, tid: 7 }));
    t.onData(ev({ sock: 2, dir: 'send', data: RESP(), seq: 1, t: 5, tid: 7 }));
    const [out, b] = spans;
    assert.equal(out.threadGroup, b.threadGroup, 'joined by the header (any case)');
    assert.notEqual(b.threadGroup, '');
    assert.equal(groups.stats.byRequestId, 1);
    assert.deepEqual([out.attrs.http_request_id, b.attrs.http_request_id], ['rid-b', 'rid-b'], 'on the span, to search by');
  });
  await tt.test('event loop: another request id header when configured (request_id_headers)', () => {
    const { t, spans } = table({ requestIdHeaders: ['X-Correlation-ID'] });
    twoOpen(t, { a: 'X-Correlation-ID: c-a\r\n', b: 'X-Correlation-ID: c-b\r\n', out: 'X-Correlation-ID: c-a\r\nX-Request-ID: c-b\r\n' });
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 4, tid: 7 }));
    t.onData(ev({ sock: 1, dir: 'send', data: RESP(), seq: 1, t: 5, tid: 7 }));
    const [out, a] = spans;
    assert.equal(out.threadGroup, a.threadGroup, 'by the configured header, X-Request-ID not looked at');
    assert.equal(out.attrs.http_request_id, 'c-a');
  });
  // nginx's `proxy_set_header X-Request-ID $request_id; add_header X-Request-ID $request_id;`:
  // the id is in the upstream request and the entry's response, not in the entry's request.
  const RESP_ID = (rid: string) => `HTTP/1.1 200 X\r\nX-Request-ID: ${rid}\r\nContent-Length: 2\r\n\r\nok`;
  const madeByB = { out: 'X-Request-ID: made-by-b\r\n' };
  await tt.test('event loop: an exit whose X-Request-ID an entry of its process answers with waits for it and joins it', () => {
    const { t, spans, groups } = table();
    twoOpen(t, madeByB);
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 4, tid: 7 }));
    assert.equal(spans.length, 0, 'complete, held for the answer');
    t.onData(ev({ sock: 2, dir: 'send', data: RESP_ID('made-by-b'), seq: 1, t: 5, tid: 7 }));
    const [out, b] = spans;
    assert.deepEqual([out.kind, out.httpRoute, b.kind, b.httpRoute], ['exit', '/out', 'entry', '/b']);
    assert.equal(out.threadGroup, b.threadGroup);
    assert.notEqual(b.threadGroup, '');
    assert.equal(t.stats.answeredRequestIds, 1);
    assert.equal(groups.stats.ambiguous, 1, 'its thread could not tell');
  });
  await tt.test('event loop: the answer may come first (a proxy streams the upstream\'s head on)', () => {
    const { t, spans } = table();
    twoOpen(t, madeByB);
    t.onData(ev({ sock: 2, dir: 'send', data: RESP_ID('made-by-b'), seq: 1, t: 4, tid: 7 }));
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 5, tid: 7 }));
    const [b, out] = spans;
    assert.equal(out.threadGroup, b.threadGroup);
    assert.notEqual(b.threadGroup, '');
  });
  await tt.test('event loop: an exit nobody answers for is sent without a group after a second', () => {
    const { t, spans } = table();
    twoOpen(t, madeByB);
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 4, tid: 7 }));
    t.onData(ev({ sock: 2, dir: 'send', data: RESP_ID('another'), seq: 1, t: 5, tid: 7 }));
    t.onData(ev({ sock: 1, dir: 'send', data: RESP(), seq: 1, t: 6, tid: 7 }));
    assert.deepEqual(spans.map((x) => x.httpRoute), ['/b', '/a'], 'held');
    t.onData(ev({ sock: 9, dir: 'recv', data: REQ('/later'), seq: 1, t: 1_000_004, tid: 8 }));
    assert.deepEqual(spans.map((x) => [x.httpRoute, x.threadGroup]), [['/b', spans[0].threadGroup], ['/a', spans[1].threadGroup], ['/out', '']]);
    assert.equal(t.stats.answeredRequestIds, 0);
  });
  // Varnish: the client's thread (7) reads the request and hands the backend fetch to a
  // worker thread (8), which calls out with the id the VCL made (`req.xid`); the client's
  // thread answers with it.
  await tt.test('a worker thread with no group: its exit waits for the entry answered with its id on another thread, and joins it', () => {
    const { t, spans, groups } = table();
    t.onData(ev({ sock: 1, dir: 'recv', data: REQ('/a'), seq: 1, t: 1, tid: 7 }));
    t.onData(ev({ sock: 3, dir: 'send', data: REQ('/fetch', 'X-Request-ID: 32770\r\n'), seq: 1, t: 2, tid: 8 }));
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 3, tid: 8 }));
    assert.equal(spans.length, 0, 'complete, held for the answer');
    t.onData(ev({ sock: 1, dir: 'send', data: RESP_ID('32770'), seq: 1, t: 4, tid: 7 }));
    const [out, a] = spans;
    assert.deepEqual([out.httpRoute, a.httpRoute], ['/fetch', '/a']);
    assert.equal(out.threadGroup, a.threadGroup);
    assert.notEqual(a.threadGroup, '');
    assert.equal(groups.stats.alone, 1, 'its thread had no group');
    assert.equal(t.stats.answeredRequestIds, 1);
  });
  await tt.test('a process serving nothing (a client) sends its exit with an id at once', () => {
    const { t, spans } = table();
    t.onData(ev({ sock: 1, dir: 'recv', data: REQ('/a'), seq: 1, t: 1, tid: 7, pid: 50 })); // another process serves
    t.onData(ev({ sock: 3, dir: 'send', data: REQ('/out', 'X-Request-ID: from-a-client\r\n'), seq: 1, t: 2, tid: 8 }));
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 3, tid: 8 }));
    assert.deepEqual(spans.map((x) => [x.httpRoute, x.threadGroup]), [['/out', '']]);
    // nor once its process has served and answered every request
    t.onData(ev({ sock: 4, dir: 'recv', data: REQ('/b'), seq: 1, t: 4, tid: 9 }));
    t.onData(ev({ sock: 4, dir: 'send', data: RESP(), seq: 1, t: 5, tid: 9 }));
    t.onData(ev({ sock: 5, dir: 'send', data: REQ('/later', 'X-Request-ID: after-b\r\n'), seq: 1, t: 6, tid: 8 }));
    t.onData(ev({ sock: 5, dir: 'recv', data: RESP(), seq: 1, t: 7, tid: 8 }));
    assert.deepEqual(spans.map((x) => [x.httpRoute, x.threadGroup === '']), [['/out', true], ['/b', false], ['/later', true]]);
  });
  // Caddy (a stripped Go binary, 2026-12-07): goroutines move between threads, so thread 7
  // can write one request's call while it last read another's request.
  await tt.test('a process whose threads link nothing (Go, goroutines not followed): its calls join by X-Request-ID only', () => {
    const { t, spans, groups } = table({ procs: { service: () => 'caddy', processName: () => 'caddy', threadName: () => 'caddy', threadLinks: (pid) => pid !== 100 } });
    t.onData(ev({ sock: 1, dir: 'recv', data: REQ('/a'), seq: 1, t: 1, tid: 7 }));
    t.onData(ev({ sock: 3, dir: 'send', data: REQ('/b-call'), seq: 1, t: 2, tid: 7 }));
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 3, tid: 7 }));
    assert.deepEqual(spans.map((x) => [x.httpRoute, x.threadGroup]), [['/b-call', '']], 'alone on its thread, yet not joined');
    assert.equal(groups.stats.alone, 1);
    // an id the entry's request carried
    t.onData(ev({ sock: 2, dir: 'recv', data: REQ('/c', 'X-Request-ID: rid-c\r\n'), seq: 1, t: 4, tid: 8 }));
    t.onData(ev({ sock: 4, dir: 'send', data: REQ('/c-call', 'X-Request-ID: rid-c\r\n'), seq: 1, t: 5, tid: 7 }));
    t.onData(ev({ sock: 4, dir: 'recv', data: RESP(), seq: 1, t: 6, tid: 9 }));
    // an id the entry answers with (Caddy's `header_up`/`header_down X-Request-ID {http.request.uuid}`)
    t.onData(ev({ sock: 5, dir: 'send', data: REQ('/a-call', 'X-Request-ID: made-for-a\r\n'), seq: 1, t: 7, tid: 8 }));
    t.onData(ev({ sock: 5, dir: 'recv', data: RESP(), seq: 1, t: 8, tid: 8 }));
    t.onData(ev({ sock: 1, dir: 'send', data: RESP_ID('made-for-a'), seq: 1, t: 9, tid: 8 }));
    t.onData(ev({ sock: 2, dir: 'send', data: RESP(), seq: 1, t: 10, tid: 7 }));
    const by = new Map(spans.map((x) => [x.httpRoute, x.threadGroup]));
    assert.equal(by.get('/c-call'), by.get('/c'), 'by the id of its request');
    assert.equal(by.get('/a-call'), by.get('/a'), 'by the id its entry answered with');
    assert.notEqual(by.get('/a'), by.get('/c'));
    assert.ok(by.get('/a') && by.get('/c'));
    assert.equal(t.stats.answeredRequestIds, 1);
    // another process, whose threads do link
    t.onData(ev({ sock: 6, dir: 'recv', data: REQ('/d'), seq: 1, t: 11, tid: 20, pid: 200 }));
    t.onData(ev({ sock: 7, dir: 'send', data: REQ('/d-call'), seq: 1, t: 12, tid: 20, pid: 200 }));
    t.onData(ev({ sock: 7, dir: 'recv', data: RESP(), seq: 1, t: 13, tid: 20, pid: 200 }));
    t.onData(ev({ sock: 6, dir: 'send', data: RESP(), seq: 1, t: 14, tid: 20, pid: 200 }));
    assert.equal(spans.at(-2)!.threadGroup, spans.at(-1)!.threadGroup);
    assert.notEqual(spans.at(-1)!.threadGroup, '');
  });
  await tt.test('event loop: held exits are sent when the agent stops', () => {
    const { t, spans } = table();
    twoOpen(t, madeByB);
    t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 1, t: 4, tid: 7 }));
    t.clear();
    assert.deepEqual(spans.map((x) => [x.httpRoute, x.threadGroup]), [['/out', '']]);
  });
});

test('calls before any request start on a connection are ignored until one comes', () => {
  const { t, spans } = table();
  t.onData(ev({ dir: 'recv', data: 'tail of a body we joined late', seq: 1, t: 1 }));
  t.onData(ev({ dir: 'send', data: RESP(), seq: 1, t: 2 }));
  assert.equal(t.stats.unclassified, 2);
  t.onData(ev({ dir: 'recv', data: REQ(), seq: 40, t: 3 }));
  t.onData(ev({ dir: 'send', data: RESP(), seq: 80, t: 4 }));
  assert.equal(spans.length, 1);
  assert.equal(spans[0].kind, 'entry');
});

test('bounded table: least recently active connection evicted', () => {
  const { t, spans, groups } = table({ maxConnections: 2 });
  t.onData(ev({ sock: 1, dir: 'recv', data: REQ(), seq: 1, t: 1 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: REQ(), seq: 1, t: 2, tid: 5 }));
  t.onData(ev({ sock: 1, dir: 'send', data: RESP().slice(0, 5), seq: 1, t: 3 })); // 1 is now the most recent
  t.onData(ev({ sock: 3, dir: 'recv', data: REQ(), seq: 1, t: 4, tid: 6 }));
  assert.equal(t.stats.evicted, 1);
  assert.equal(t.stats.tracked, 2);
  assert.equal(t.stats.droppedExchanges, 1);
  assert.equal(groups.openCount(), 2, 'the evicted entry closed its group');
  t.onData(ev({ sock: 1, dir: 'send', data: RESP().slice(5), seq: 6, t: 6 }));
  assert.equal(spans.length, 1, 'connection 1 was kept');
  t.onData(ev({ sock: 2, dir: 'send', data: RESP(), seq: 1, t: 7, tid: 5 }));
  assert.equal(spans.length, 1, 'connection 2 was forgotten: its response alone makes no span');
});

test('process exit ends its connections', () => {
  const { t, spans } = table();
  t.onData(ev({ sock: 1, dir: 'recv', data: REQ(), seq: 1, t: 1, pid: 100 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: REQ(), seq: 1, t: 1, pid: 200 }));
  t.onData(ev({ sock: 3, dir: 'recv', data: REQ(), seq: 1, t: 1, pid: 100 }));
  t.onData(ev({ sock: 3, dir: 'send', data: RESP(), seq: 1, t: 2, pid: 100 }));
  t.onClose({ kind: 'close', sockId: 3, pid: 100, tsNs: 3000 });
  assert.equal(spans.length, 1, 'connection 3 answered and closed');
  spans.length = 0;
  t.onProcessExit(100, 5000);
  assert.equal(spans.length, 1, 'only the open connection of pid 100 ends');
  assert.equal(spans[0].pid, 100);
  assert.equal(spans[0].status, 'error');
  assert.equal(t.stats.tracked, 1);
  t.onProcessExit(999, 5000);
  assert.equal(t.stats.tracked, 1);
});

test('trace context and conv_to_ddtrace reach the span', () => {
  const tp = 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n';
  for (const conv of [false, true]) {
    const { t, spans } = table({ convToDdtrace: conv });
    t.onData(ev({ dir: 'recv', data: REQ('/', tp), seq: 1, t: 1 }));
    t.onData(ev({ dir: 'send', data: RESP(), seq: 1, t: 2 }));
    assert.equal(spans[0].appTraceId, conv ? '9532127138774266268' : '0af7651916cd43dd8448eb211c80319c');
    assert.equal(spans[0].appSampled, -1);
  }
});

test('response beyond capture bytes: counted through the gap, next exchange still parsed', () => {
  const { t, spans } = table();
  const big = RESP(200, 'z'.repeat(100_000));
  t.onData(ev({ dir: 'recv', data: REQ(), seq: 1, t: 1 }));
  t.onData(ev({ dir: 'send', data: big, seq: 1000, t: 2, capture: 256 }));
  t.onData(ev({ dir: 'recv', data: REQ('/2'), seq: 1 + REQ().length, t: 3 }));
  t.onData(ev({ dir: 'send', data: RESP(), seq: 1000 + big.length, t: 4 }));
  assert.deepEqual(spans.map((s) => [s.httpRoute, s.respSeq]), [['/users/7', 1000], ['/2', 1000 + big.length]]);
  assert.equal(spans[0].attrs.bytes_written, big.length);
});

test('a lost event (sequence jump) is skipped by count: the next exchange still parses', () => {
  const { t, spans } = table();
  const resp = RESP(200, 'x'.repeat(3000));
  t.onData(ev({ dir: 'recv', data: REQ('/1'), seq: 1, t: 1 }));
  // The response went out in three writes; the middle one was lost in the ring buffer.
  t.onData(ev({ dir: 'send', data: resp.slice(0, 1000), seq: 5000, t: 2 }));
  t.onData(ev({ dir: 'send', data: resp.slice(2000), seq: 7000, t: 3 }));
  assert.equal(spans.length, 1);
  assert.equal(spans[0].attrs.bytes_written, resp.length);
  assert.equal(t.stats.seqGaps, 1);
  t.onData(ev({ dir: 'recv', data: REQ('/2'), seq: 1 + REQ('/1').length, t: 4 }));
  t.onData(ev({ dir: 'send', data: RESP(), seq: 5000 + resp.length, t: 5 }));
  assert.deepEqual(spans.map((s) => s.httpRoute), ['/1', '/2']);
  assert.equal(t.stats.parse.parseErrors, 0);
});

test('bytes seen twice (same sequence numbers) are fed once', () => {
  const { t, spans } = table();
  t.onData(ev({ dir: 'recv', data: REQ('/1'), seq: 1, t: 1 }));
  t.onData(ev({ dir: 'recv', data: REQ('/1'), seq: 1, t: 1 }));
  t.onData(ev({ dir: 'send', data: RESP(), seq: 100, t: 2 }));
  assert.equal(spans.length, 1);
  assert.equal(t.stats.seqRepeats, 1);
  assert.equal(t.stats.orphanResponses, 0);
});

test('request headers whose end was not captured (writev, too many iovecs) end when the response comes', () => {
  const { t, spans } = table();
  const req = `GET /p/z HTTP/1.1\r\nX-Big: ${'b'.repeat(8000)}\r\n\r\n`;
  const e = ev({ dir: 'send', data: req, seq: 1, t: 1, capture: 1024 });
  e.tail = Buffer.alloc(0);
  t.onData(e);
  t.onData(ev({ dir: 'recv', data: RESP(), seq: 500, t: 3 }));
  assert.equal(spans.length, 1);
  assert.equal(spans[0].httpRoute, '/p/z');
  assert.equal(spans[0].reqSeq, 1);
  assert.equal(spans[0].durationUs, 2);
  assert.equal(spans[0].attrs.truncated, true);
  assert.equal(t.stats.orphanResponses, 0);
});

test('idle connections expire: a lost close does not keep a connection and its waiting request forever', () => {
  const { t, spans, groups } = table({ idleMs: 1000 });
  t.onData(ev({ sock: 1, dir: 'recv', data: REQ(), seq: 1, t: 1, tid: 5 })); // its close will never come
  t.onData(ev({ sock: 2, dir: 'recv', data: REQ(), seq: 1, t: 2, tid: 6 }));
  assert.equal(t.pendingExchanges(), 2);
  assert.equal(t.expireIdle(), 0, 'nothing idle yet');
  t.onData(ev({ sock: 2, dir: 'send', data: RESP(), seq: 1, t: 1_500_000, tid: 6 }));
  assert.equal(t.expireIdle(), 1, 'connection 1 was idle for more than 1 s of kernel time');
  assert.equal(t.stats.tracked, 1);
  assert.equal(t.stats.expired, 1);
  assert.equal(t.stats.evicted, 0);
  assert.equal(t.stats.droppedExchanges, 1);
  assert.equal(t.pendingExchanges(), 0);
  assert.equal(groups.openCount(), 0, 'the expired entry closed its group');
  assert.equal(spans.length, 1);
  // A later call on it starts afresh from its next request.
  t.onData(ev({ sock: 1, dir: 'recv', data: REQ(), seq: 500, t: 1_600_000, tid: 5 }));
  t.onData(ev({ sock: 1, dir: 'send', data: RESP(), seq: 900, t: 1_600_001, tid: 5 }));
  assert.equal(spans.length, 2);
});

test('a long poll: a client waiting minutes for its answer keeps its request; a server\'s waiting request expires', () => {
  const { t, spans } = table({ idleMs: 1000, waitMs: 10_000 });
  t.onData(ev({ sock: 1, dir: 'send', data: REQ('/v1/kv/config?index=42&wait=5m'), seq: 1, t: 1, tid: 5 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: REQ('/served'), seq: 1, t: 2, tid: 6 }));
  t.onData(ev({ sock: 3, dir: 'recv', data: REQ('/other'), seq: 1, t: 5_000_000, tid: 7 })); // time passes: 5 s
  assert.equal(t.expireIdle(), 1, 'the server\'s waiting request, idle 5 s');
  assert.equal(t.stats.tracked, 2);
  t.onData(ev({ sock: 1, dir: 'recv', data: RESP(), seq: 900, t: 8_000_001 }));
  assert.deepEqual(spans.map((s) => [s.kind, s.resource, s.httpStatusCode, s.durationUs]), [['exit', 'GET /v1/kv/config', 200, 8_000_000]]);
  // Answered, the connection is idle like any: forgotten after idleMs; one waiting longer than waitMs, too.
  t.onData(ev({ sock: 4, dir: 'send', data: REQ('/never'), seq: 1, t: 8_000_002 }));
  t.onData(ev({ sock: 3, dir: 'send', data: RESP(), seq: 1, t: 19_000_000, tid: 7 }));
  assert.equal(t.expireIdle(), 2, 'connection 1 idle, connection 4 waiting for 11 s');
  assert.equal(t.stats.droppedExchanges, 2);
});

test('a response read stamped before its request was written (the writer held up after sending) still pairs with it', () => {
  const { t, spans } = table();
  const REQ = (p: string) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
  const RESP = (b: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${b.length}\r\n\r\n${b}`;
  // keep-alive client connection: the first exchange in order, the second answer first
  t.onData(ev({ sock: 7, dir: 'send', data: REQ('/one'), seq: 1, t: 100 }));
  t.onData(ev({ sock: 7, dir: 'recv', data: RESP('1'), seq: 1, t: 200 }));
  const r2 = RESP('22');
  t.onData(ev({ sock: 7, dir: 'recv', data: r2.slice(0, 20), seq: 1 + RESP('1').length, t: 300 }));
  t.onData(ev({ sock: 7, dir: 'recv', data: r2.slice(20), seq: 1 + RESP('1').length + 20, t: 301 }));
  t.onData(ev({ sock: 7, dir: 'send', data: REQ('/two'), seq: 1 + REQ('/one').length, t: 302 }));
  // a fresh connection whose first event is the answer
  t.onData(ev({ sock: 8, dir: 'recv', data: RESP('3'), seq: 9, t: 400 }));
  t.onData(ev({ sock: 8, dir: 'send', data: REQ('/three'), seq: 5, t: 401 }));
  // an answer from long before the request (a 408 before a close, say): not paired with it
  t.onData(ev({ sock: 9, dir: 'recv', data: RESP('4'), seq: 9, t: 500 }));
  t.onData(ev({ sock: 9, dir: 'send', data: REQ('/four'), seq: 5, t: 50_000 }));
  const done = spans.map((s) => `${s.resource} ${s.httpStatusCode}`);
  assert.ok(spans.some((s) => String(s.resource).includes('/one')), done.join('; '));
  const two = spans.find((s) => String(s.resource).includes('/two'));
  const three = spans.find((s) => String(s.resource).includes('/three'));
  assert.ok(two && three, done.join('; '));
  assert.equal(two.httpStatusCode, 200);
  assert.equal(three.httpStatusCode, 200);
  assert.ok(!spans.some((s) => String(s.resource).includes('/four')), 'the request whose answer came 50 ms before it is still open');
  assert.equal(t.stats.orphanResponses, 1);
});

test('an idle connection costs little memory: two parsers of fixed fields, no closures or buffers of its own', () => {
  // The table holds up to 65,536 connections. Parsers made as closures cost 3.4 KB a connection
  // (215 MB for a full table), a head split over calls kept 8 KiB more for the connection's life.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const { t, spans } = table();
  const n = 5000;
  gc();
  const before = process.memoryUsage();
  for (let k = 1; k <= n; k++) {
    const req = REQ(`/c/${k}`);
    // every other request's head split over two reads
    if (k % 2) t.onData(ev({ sock: k, dir: 'recv', data: req, seq: 1, t: k }));
    else {
      t.onData(ev({ sock: k, dir: 'recv', data: req.slice(0, 12), seq: 1, t: k }));
      t.onData(ev({ sock: k, dir: 'recv', data: req.slice(12), seq: 13, t: k }));
    }
    t.onData(ev({ sock: k, dir: 'send', data: RESP(), seq: 100, t: k + 1 }));
  }
  spans.length = 0;
  gc();
  const after = process.memoryUsage();
  assert.equal(t.stats.tracked, n);
  const heap = (after.heapUsed - before.heapUsed) / n;
  const buffers = (after.arrayBuffers - before.arrayBuffers) / n;
  assert.ok(heap < 1500, `${heap.toFixed(0)} bytes of heap a connection`);
  assert.ok(buffers < 100, `${buffers.toFixed(0)} bytes of array buffers a connection`);
});

test('an exit of a thread its handler started waits for the handler\'s request: kept if the thread ended, sent without the group if it lives on', () => {
  const { t, spans, groups } = table();
  const kinds = () => spans.map((s) => `${s.kind} ${s.resource} ${s.threadGroup === '' ? 'no group' : s.threadGroup === spans.find((x) => x.kind === 'entry')?.threadGroup ? 'its entry\'s group' : 'another group'}`).sort();
  t.onData(ev({ sock: 1, dir: 'recv', data: REQ('/in'), seq: 10, t: 10, tid: 101 }));
  groups.inherit(101, 201, 100); // started for this request
  groups.inherit(101, 301, 100); // a pool's worker, started by this request's submit
  t.onData(ev({ sock: 2, dir: 'send', data: REQ('/own'), seq: 20, t: 11, tid: 201 }));
  t.onData(ev({ sock: 2, dir: 'recv', data: RESP(), seq: 30, t: 12, tid: 201 }));
  t.onData(ev({ sock: 3, dir: 'send', data: REQ('/pool'), seq: 40, t: 13, tid: 301 }));
  t.onData(ev({ sock: 3, dir: 'recv', data: RESP(), seq: 50, t: 14, tid: 301 }));
  assert.deepEqual(spans, [], 'both complete, both held');
  groups.threadExit(201, 15_000);
  t.onData(ev({ sock: 1, dir: 'send', data: RESP(), seq: 60, t: 16, tid: 101 }));
  assert.deepEqual(kinds(), ['entry GET /in its entry\'s group', 'exit GET /own its entry\'s group']);
  groups.advance(16_000 + INHERIT_GRACE_NS);
  assert.deepEqual(kinds(), ['entry GET /in its entry\'s group', 'exit GET /own its entry\'s group', 'exit GET /pool no group']);
  assert.equal(groups.stats.pooled, 1);
});

// ---- Unix stream sockets: both ends on this host, paired by the agent (unixpairs.ts) ----

/** A Unix socket's call at end `sock` (peer `peer`), its seq this end's own byte count. */
function unixEv(e: Ev & { peer: number; path?: string }): DataEvent {
  return { ...ev(e), family: 'unix', srcIp: '', srcPort: 0, dstIp: '', dstPort: 0, peerId: e.peer, unixPath: e.path ?? '/run/app.sock' };
}

test('Unix socket: the client\'s exit and the server\'s entry carry the same ids for request and response, whichever end reports first', () => {
  const { t, spans } = table();
  const C = 11, S = 12, path = '/run/php/php-fpm.sock';
  const req = REQ('/u/1'), resp = RESP(200, 'hello');
  // exchange 1: the client's write first, its peer not named yet (the server not seen)
  t.onData(unixEv({ sock: C, peer: 0, path, dir: 'send', data: req, seq: 0, t: 10, pid: 100 }));
  t.onData(unixEv({ sock: S, peer: C, path, dir: 'recv', data: req.slice(0, 8), seq: 0, t: 12, pid: 200 }));
  t.onData(unixEv({ sock: S, peer: C, path, dir: 'recv', data: req.slice(8), seq: 8, t: 13, pid: 200 }));
  t.onData(unixEv({ sock: S, peer: C, path, dir: 'send', data: resp, seq: 0, t: 20, pid: 200 }));
  t.onData(unixEv({ sock: C, peer: S, path, dir: 'recv', data: resp, seq: 0, t: 22, pid: 100 }));
  // exchange 2: the server's read reported before the client's write, the answer read before it was reported written
  const req2 = REQ('/u/2');
  t.onData(unixEv({ sock: S, peer: C, path, dir: 'recv', data: req2, seq: req.length, t: 31, pid: 200 }));
  t.onData(unixEv({ sock: C, peer: S, path, dir: 'send', data: req2, seq: req.length, t: 30, pid: 100 }));
  t.onData(unixEv({ sock: C, peer: S, path, dir: 'recv', data: resp, seq: resp.length, t: 41, pid: 100 }));
  t.onData(unixEv({ sock: S, peer: C, path, dir: 'send', data: resp, seq: resp.length, t: 40, pid: 200 }));
  const entries = spans.filter((s) => s.kind === 'entry');
  const exits = spans.filter((s) => s.kind === 'exit');
  assert.equal(entries.length, 2);
  assert.equal(exits.length, 2);
  for (let i = 0; i < 2; i++) {
    assert.equal(entries[i].httpRoute, `/u/${i + 1}`);
    assert.equal(exits[i].httpRoute, `/u/${i + 1}`);
    assert.equal(exits[i].reqSeq, entries[i].reqSeq, `exchange ${i + 1}: the request's id`);
    assert.equal(exits[i].respSeq, entries[i].respSeq, `exchange ${i + 1}: the response's id`);
    assert.ok(exits[i].reqSeq > 0 && exits[i].respSeq > 0);
  }
  assert.notEqual(exits[0].reqSeq, exits[1].reqSeq);
  assert.notEqual(exits[0].respSeq, exits[1].respSeq);
  for (const s of spans) {
    assert.equal(s.attrs.unix_path, path);
    assert.deepEqual([s.srcIp, s.srcPort, s.dstIp, s.dstPort], ['', 0, '', 0]);
  }
  assert.equal(t.stats.unix.paired, 4);
  assert.equal(t.stats.seqGaps + t.stats.seqRepeats, 0, 'each end\'s counts follow on');
});

test('Unix socket: the end of the stream completes an answer that ran until the close and ends both ends', () => {
  const { t, spans } = table();
  const C = 21, S = 22;
  const req = REQ('/until-close');
  const resp = 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it';
  t.onData(unixEv({ sock: C, peer: S, dir: 'send', data: req, seq: 0, t: 10, pid: 100 }));
  t.onData(unixEv({ sock: S, peer: C, dir: 'recv', data: req, seq: 0, t: 11, pid: 200 }));
  t.onData(unixEv({ sock: S, peer: C, dir: 'send', data: resp, seq: 0, t: 20, pid: 200 }));
  t.onData(unixEv({ sock: C, peer: S, dir: 'recv', data: resp, seq: 0, t: 21, pid: 100 }));
  assert.equal(spans.length, 0, 'the answer runs until the close');
  // the server closed (no event for that); the client's read of 0 bytes is the close event
  t.onClose({ kind: 'close', tsNs: 30_000, sockId: C, pid: 100 });
  assert.deepEqual(spans.map((s) => [s.kind, s.httpStatusCode, s.status]).sort(), [['entry', 200, 'ok'], ['exit', 200, 'ok']]);
  const [entry, exit] = [spans.find((s) => s.kind === 'entry')!, spans.find((s) => s.kind === 'exit')!];
  assert.equal(exit.durationUs, 11, 'the client\'s: until the last bytes it read');
  assert.equal(entry.reqSeq, exit.reqSeq);
  assert.equal(entry.respSeq, exit.respSeq);
  assert.equal(t.stats.tracked, 0, 'both ends ended');
});

test('Unix socket: a server that read the end with a request still to answer (a client that shut its sending side) answers it', () => {
  const { t, spans } = table();
  const C = 31, S = 32;
  t.onData(unixEv({ sock: C, peer: S, dir: 'send', data: REQ('/half'), seq: 0, t: 10, pid: 100 }));
  t.onData(unixEv({ sock: S, peer: C, dir: 'recv', data: REQ('/half'), seq: 0, t: 11, pid: 200 }));
  t.onClose({ kind: 'close', tsNs: 12_000, sockId: S, pid: 200 });
  assert.equal(spans.length, 0);
  t.onData(unixEv({ sock: S, peer: C, dir: 'send', data: RESP(), seq: 0, t: 20, pid: 200 }));
  t.onData(unixEv({ sock: C, peer: S, dir: 'recv', data: RESP(), seq: 0, t: 21, pid: 100 }));
  assert.deepEqual(spans.map((s) => [s.kind, s.status]), [['entry', 'ok'], ['exit', 'ok']]);
});

test('a stream that only ever goes one way without a request (a log to journald) is handed to onNotHttp after 64 calls', () => {
  const muted: number[] = [];
  const { t } = table({ onNotHttp: (id) => muted.push(id) });
  let seq = 0;
  for (let i = 0; i < 64; i++) {
    const line = `2026-12-07 13:00:00 INFO line ${i}\n`;
    t.onData(unixEv({ sock: 41, peer: 0, path: '/run/systemd/journal/stdout', dir: 'send', data: line, seq, t: 10 + i }));
    seq += line.length;
    assert.equal(muted.length, i < 63 ? 0 : 1, `after ${i + 1} calls`);
  }
  assert.deepEqual(muted, [41]);
  assert.equal(t.stats.otherProtocol, 1);
});

test('Unix socket: a server thread reading its next request ends the answer it wrote until the close on another socket; its call joins the new request', () => {
  const { t, spans } = table();
  const resp = 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst answer';
  // thread 201 of the server (pid 200) answers A until A's close; nginx has not read A's end yet
  t.onData(unixEv({ sock: 51, peer: 61, dir: 'recv', data: REQ('/a'), seq: 0, t: 10, pid: 200, tid: 201 }));
  t.onData(unixEv({ sock: 51, peer: 61, dir: 'send', data: resp, seq: 0, t: 20, pid: 200, tid: 201 }));
  assert.equal(spans.length, 0);
  // the same thread takes connection B and calls out while serving it
  t.onData(unixEv({ sock: 52, peer: 62, dir: 'recv', data: REQ('/b'), seq: 0, t: 30, pid: 200, tid: 201 }));
  assert.deepEqual(spans.map((s) => [s.kind, s.httpRoute, s.durationUs]), [['entry', '/a', 10]], 'A\'s answer is over');
  t.onData(ev({ sock: 70, dir: 'send', data: REQ('/down'), seq: 1, t: 35, pid: 200, tid: 201 }));
  t.onData(ev({ sock: 70, dir: 'recv', data: RESP(), seq: 1, t: 40, pid: 200, tid: 201 }));
  t.onData(unixEv({ sock: 52, peer: 62, dir: 'send', data: RESP(), seq: 0, t: 45, pid: 200, tid: 201 }));
  const [b, call] = [spans.find((s) => s.httpRoute === '/b')!, spans.find((s) => s.httpRoute === '/down')!];
  assert.notEqual(call.threadGroup, '', 'the call joined a group');
  assert.equal(call.threadGroup, b.threadGroup, 'B\'s');
  // A's client reads the end later: nothing more of A
  t.onClose({ kind: 'close', tsNs: 50_000, sockId: 61, pid: 100 });
  assert.equal(spans.filter((s) => s.httpRoute === '/a').length, 1);
});

test('Unix socket: a server that closed without answering: the client reads the end, both spans fail', () => {
  const { t, spans } = table();
  t.onData(unixEv({ sock: 81, peer: 82, dir: 'send', data: REQ('/dropped'), seq: 0, t: 10, pid: 100 }));
  t.onData(unixEv({ sock: 82, peer: 81, dir: 'recv', data: REQ('/dropped'), seq: 0, t: 11, pid: 200 }));
  t.onClose({ kind: 'close', tsNs: 50_000, sockId: 81, pid: 100 });
  assert.deepEqual(spans.map((s) => [s.kind, s.status, s.httpStatusCode, s.attrs.response_incomplete]).sort(), [['entry', 'error', 0, true], ['exit', 'error', 0, true]]);
  assert.equal(t.stats.tracked, 0);
});

test('Unix socket: an end whose own events never name its peer learns it from the peer\'s', () => {
  const { t, spans } = table();
  const C = 91, S = 92;
  // the client's calls all name no peer (its first before the server was seen, its last after the server closed)
  t.onData(unixEv({ sock: C, peer: 0, dir: 'send', data: REQ('/learn'), seq: 0, t: 10, pid: 100 }));
  t.onData(unixEv({ sock: S, peer: C, dir: 'recv', data: REQ('/learn'), seq: 0, t: 11, pid: 200 }));
  t.onData(unixEv({ sock: S, peer: C, dir: 'send', data: RESP(), seq: 0, t: 20, pid: 200 }));
  t.onData(unixEv({ sock: C, peer: 0, dir: 'recv', data: RESP(), seq: 0, t: 21, pid: 100 }));
  const [entry, exit] = [spans.find((s) => s.kind === 'entry')!, spans.find((s) => s.kind === 'exit')!];
  assert.equal(exit.reqSeq, entry.reqSeq);
  assert.equal(exit.respSeq, entry.respSeq, 'the answer read by the client is the one the server wrote');
  assert.equal(t.stats.unix.unpaired, 0);
});

// HTTPS (DataEvent.tls, src/bpf/tls.bpf.h): each event's seq names the TLS record it came in,
// not a byte position; the socket's close (its id without TLS_ID) ends the plaintext's stream.
test('TLS plaintext: seqs name records (no gaps counted), messages take their first event\'s, the socket\'s close ends it', () => {
  const { t, spans } = table();
  const TLS = 2 ** 51;
  const tls = (e: Ev) => ({ ...ev({ ...e, sock: TLS + 7 }), tls: true });
  const body = 'x'.repeat(30000);
  const post = `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`;
  // a request in two records, read in three calls (the last two from the second record)
  t.onData(tls({ dir: 'recv', data: post + body.slice(0, 16000), seq: 20_000, t: 10 }));
  t.onData(tls({ dir: 'recv', data: body.slice(16000, 20000), seq: 36_500, t: 11 }));
  t.onData(tls({ dir: 'recv', data: body.slice(20000), seq: 36_500, t: 12 }));
  t.onData(tls({ dir: 'send', data: RESP(201), seq: 70_000, t: 20 }));
  // the next request, then the socket closes before the answer
  t.onData(tls({ dir: 'recv', data: REQ('/next'), seq: 36_900, t: 30 }));
  assert.equal(spans.length, 1);
  assert.deepEqual([spans[0].reqSeq, spans[0].respSeq, spans[0].httpStatusCode, spans[0].attrs.bytes_read, spans[0].attrs.tls], [20_000, 70_000, 201, post.length + body.length, true]);
  assert.equal(t.stats.seqGaps + t.stats.seqRepeats, 0, 'record numbers are no gaps');
  t.onClose({ kind: 'close', sockId: 7, pid: 100, tsNs: 40_000 });
  assert.equal(spans.length, 2, 'the close of socket 7 ended its TLS stream');
  assert.deepEqual([spans[1].reqSeq, spans[1].resource, spans[1].status], [36_900, 'GET /next', 'error']);
});

test('a TLS handshake in the clear (OpenSSL\'s probes not on the process) is muted at once and reported', () => {
  const handshakes: number[] = [];
  const muted: number[] = [];
  const { t, spans } = table({ onTlsHandshake: (pid) => handshakes.push(pid), onNotHttp: (id) => muted.push(id) });
  const hello = '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' + 'r'.repeat(32);
  t.onData(ev({ sock: 3, dir: 'send', data: hello, seq: 1, t: 1, pid: 42 }));
  t.onData(ev({ sock: 3, dir: 'recv', data: '\x16\x03\x03\x00\x7a\x02', seq: 1, t: 2, pid: 42 }));
  assert.deepEqual([handshakes, muted, t.stats.tlsUnseen, t.stats.unclassified, spans.length], [[42], [3], 1, 0, 0]);
});
