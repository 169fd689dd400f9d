// LinkedSpan → OTLP, checked by decoding the bytes with the official definitions.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LinkedSpan } from '../span/span.js';
import { makeSpan } from './fixtures.js';
import { encodeJsonRequest, encodeProtobufRequest } from './otlp-encode.js';
import { toExportRequest } from './otlp.js';
import { attrMap, decodeProtobuf, officialTypes } from './test-receiver.js';

function decodeSpans(spans: LinkedSpan[]): { span: any; attrs: Record<string, unknown>; resource: Record<string, unknown> }[] {
  const req = decodeProtobuf(encodeProtobufRequest(spans).body);
  const out: { span: any; attrs: Record<string, unknown>; resource: Record<string, unknown> }[] = [];
  for (const rs of req.resourceSpans) {
    assert.equal(rs.scopeSpans.length, 1);
    assert.equal(rs.scopeSpans[0].scope.name, 'seqtrace');
    for (const span of rs.scopeSpans[0].spans) out.push({ span, attrs: attrMap(span.attributes), resource: attrMap(rs.resource.attributes) });
  }
  return out;
}

const one = (s: LinkedSpan) => decodeSpans([s])[0];

describe('OTLP conversion', () => {
  it('writes protobuf that decodes, with the official types, to what protobufjs makes of the same message', () => {
    const spans = [
      makeSpan(),
      makeSpan({ kind: 'exit', parentId: '00f067aa0ba902b7', service: 'gateway', httpStatusCode: 404, status: 'warning' }),
      makeSpan({ httpStatusCode: 503, status: 'error', attrs: { ratio: 0.25, big: 2 ** 60, flag: true, 'ünïcode': 'ça' } }),
      makeSpan({ pid: 7, processName: '', resource: '', httpMethod: 'PURGE', httpRoute: '/cache/x?k=v', appTraceId: 'abc', appParentId: 'def' }),
    ];
    const { Request } = officialTypes();
    const reference = Request.encode(Request.fromObject(toExportRequest(spans))).finish();
    assert.deepEqual(decodeProtobuf(encodeProtobufRequest(spans).body), decodeProtobuf(reference));
    assert.equal(Request.verify(Request.decode(encodeProtobufRequest(spans).body)), null);
  });

  it('groups spans into one ResourceSpans per service, host and process', () => {
    const spans = [
      makeSpan({ service: 'users', host: 'a', pid: 1 }),
      makeSpan({ service: 'orders', host: 'a', pid: 2, processName: 'java' }),
      makeSpan({ service: 'users', host: 'a', pid: 1 }),
      makeSpan({ service: 'users', host: 'b', pid: 1 }),
      makeSpan({ service: 'orders', host: 'a', pid: 2, processName: 'java' }),
    ];
    const req = decodeProtobuf(encodeProtobufRequest(spans).body);
    const groups = req.resourceSpans.map((rs: any) => ({ resource: attrMap(rs.resource.attributes), n: rs.scopeSpans[0].spans.length }));
    assert.deepEqual(groups, [
      { resource: { 'service.name': 'users', 'host.name': 'a', 'process.pid': 1, 'process.executable.name': 'node' }, n: 2 },
      { resource: { 'service.name': 'orders', 'host.name': 'a', 'process.pid': 2, 'process.executable.name': 'java' }, n: 2 },
      { resource: { 'service.name': 'users', 'host.name': 'b', 'process.pid': 1, 'process.executable.name': 'node' }, n: 1 },
    ]);
  });

  it('makes entry spans SERVER and exit spans CLIENT, with ids as bytes from hex and exact ns times', () => {
    const entry = makeSpan({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', parentId: 'a3ce929d0e0e4736',
      startUs: 1732500000123457, durationUs: 2500,
    });
    const exit = makeSpan({ kind: 'exit', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: 'b7ad6b7169203331', parentId: '00f067aa0ba902b7' });
    const root = makeSpan({ parentId: '' });
    const [e, x, r] = decodeSpans([entry, exit, root]).map((d) => d.span);
    assert.equal(e.kind, 2);
    assert.equal(x.kind, 3);
    assert.equal(e.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(e.spanId, '00f067aa0ba902b7');
    assert.equal(e.parentSpanId, 'a3ce929d0e0e4736');
    assert.equal(x.parentSpanId, '00f067aa0ba902b7');
    assert.equal(r.parentSpanId, undefined, 'a root has no parent_span_id');
    assert.equal(e.startTimeUnixNano, '1732500000123457000');
    assert.equal(e.endTimeUnixNano, '1732500000125957000');
    // sampled; parent known remote for a server span, local for a client span
    assert.equal(e.flags, 0x301);
    assert.equal(x.flags, 0x101);
    assert.equal(r.flags, 0x01);
  });

  it('names the span by its resource, falling back to the method', () => {
    assert.equal(one(makeSpan({ resource: 'GET /users/{id}' })).span.name, 'GET /users/{id}');
    assert.equal(one(makeSpan({ resource: '', httpMethod: 'POST' })).span.name, 'POST');
    assert.equal(one(makeSpan({ resource: '', httpMethod: '', operation: 'HTTP' })).span.name, 'HTTP');
  });

  it('applies the HTTP semconv status rule: 5xx is an error, 4xx only on the client side', () => {
    const cases: [Partial<LinkedSpan>, number, string | undefined][] = [
      [{ kind: 'entry', httpStatusCode: 200, status: 'ok' }, 0, undefined],
      [{ kind: 'entry', httpStatusCode: 404, status: 'warning' }, 0, undefined],
      [{ kind: 'exit', httpStatusCode: 404, status: 'warning' }, 2, '404'],
      [{ kind: 'entry', httpStatusCode: 500, status: 'error' }, 2, '500'],
      [{ kind: 'exit', httpStatusCode: 503, status: 'error' }, 2, '503'],
      [{ kind: 'entry', httpStatusCode: 0, status: 'error' }, 2, '_OTHER'],
      [{ kind: 'exit', httpStatusCode: 0, status: 'ok' }, 0, undefined],
    ];
    for (const [over, code, errType] of cases) {
      const d = one(makeSpan(over));
      assert.equal(d.span.status?.code ?? 0, code, JSON.stringify(over));
      assert.equal(d.attrs['error.type'], errType, JSON.stringify(over));
      assert.equal(d.span.status?.message, undefined, 'no description when the status code says it');
    }
  });

  it('sets the HTTP semantic-convention attributes of a server span', () => {
    const d = one(makeSpan({
      kind: 'entry', srcIp: '10.0.0.2', srcPort: 8080, dstIp: '10.0.0.1', dstPort: 51234,
      httpMethod: 'get', httpRoute: '/users/{id}', httpStatusCode: 200, attrs: { http_version: 'HTTP/1.1', http_path: '/users/7?debug=1' },
    }));
    const a = d.attrs;
    assert.equal(a['http.request.method'], 'GET');
    assert.equal(a['http.response.status_code'], 200);
    assert.equal(a['http.route'], '/users/{id}');
    assert.equal(a['url.path'], '/users/7', 'the query string is left out');
    assert.equal(a['network.protocol.name'], 'http');
    assert.equal(a['network.protocol.version'], '1.1');
    assert.equal(a['server.address'], '10.0.0.2');
    assert.equal(a['server.port'], 8080);
    assert.equal(a['client.address'], '10.0.0.1');
    assert.equal(a['client.port'], 51234);
    assert.equal(a['network.peer.address'], '10.0.0.1');
    assert.equal(a['network.peer.port'], 51234);
    assert.equal(a['network.local.address'], '10.0.0.2');
    assert.equal(a['network.local.port'], 8080);
  });

  for (const [operation, name] of [['FastCGI', 'fastcgi'], ['uwsgi', 'uwsgi']]) {
    it(`a ${operation} span (nginx → ${operation === 'uwsgi' ? 'uWSGI' : 'PHP-FPM'}) says ${name} as its protocol, without the HTTP version it relays`, () => {
      const a = one(makeSpan({ kind: 'entry', operation, httpMethod: 'GET', httpRoute: '/index.php', httpStatusCode: 404, attrs: { http_version: '1.1' } })).attrs;
      assert.equal(a['network.protocol.name'], name);
      assert.equal(a['network.protocol.version'], undefined);
      assert.equal(a['http.request.method'], 'GET');
      assert.equal(a['ebpf.operation'], operation);
    });
  }

  it('sets the HTTP semantic-convention attributes of a client span', () => {
    const d = one(makeSpan({
      kind: 'exit', srcIp: '10.0.0.1', srcPort: 51234, dstIp: '10.0.0.9', dstPort: 80,
      httpMethod: 'PURGE', httpRoute: '/cache/7', httpStatusCode: 204, attrs: {},
    }));
    const a = d.attrs;
    assert.equal(a['http.request.method'], '_OTHER');
    assert.equal(a['http.request.method_original'], 'PURGE');
    assert.equal(a['url.path'], '/cache/7');
    assert.equal(a['http.route'], undefined, 'a concrete path is no route');
    assert.equal(a['server.address'], '10.0.0.9');
    assert.equal(a['server.port'], 80);
    assert.equal(a['client.address'], undefined);
    assert.equal(a['network.peer.address'], '10.0.0.9');
    assert.equal(a['network.local.port'], 51234);
    assert.equal(a['network.protocol.version'], undefined, 'unknown when the agent did not send http_version');
  });

  it('names the server as the client called it: the request\'s Host, its address kept in network.peer.*', () => {
    const cases: [string, string, number][] = [
      ['api.internal:8443', 'api.internal', 8443],
      ['api.internal', 'api.internal', 80],
      ['[fd00::2]:9000', 'fd00::2', 9000],
      ['api.internal:http', 'api.internal', 80],
    ];
    for (const [host, name, port] of cases) {
      const a = one(makeSpan({ kind: 'exit', dstIp: '10.0.0.9', dstPort: 80, attrs: { http_host: host } })).attrs;
      assert.deepEqual([a['server.address'], a['server.port'], a['network.peer.address'], a['network.peer.port'], a.http_host], [name, port, '10.0.0.9', 80, undefined], host);
    }
    const e = one(makeSpan({ kind: 'entry', srcIp: '10.0.0.2', srcPort: 8080, attrs: { http_host: 'shop.example:80' } })).attrs;
    assert.deepEqual([e['server.address'], e['server.port'], e['network.local.address']], ['shop.example', 80, '10.0.0.2']);
  });

  it('a span over a Unix socket: transport unix, the socket\'s path where an address would be', () => {
    const path = '/run/php/php8.2-fpm.sock';
    const x = one(makeSpan({ kind: 'exit', srcIp: '', srcPort: 0, dstIp: '', dstPort: 0, attrs: { unix_path: path } })).attrs;
    assert.deepEqual([x['network.transport'], x['server.address'], x['server.port'], x['network.peer.address'], x.unix_path], ['unix', path, undefined, path, undefined]);
    const e = one(makeSpan({ kind: 'entry', srcIp: '', srcPort: 0, dstIp: '', dstPort: 0, attrs: { unix_path: path, http_host: 'shop.example' } })).attrs;
    assert.deepEqual([e['network.transport'], e['server.address'], e['client.address'], e['network.local.address']], ['unix', 'shop.example', undefined, undefined]);
    assert.equal(one(makeSpan({ kind: 'exit', attrs: {} })).attrs['network.transport'], 'tcp');
  });

  it('a span over TLS (HTTPS): url.scheme https, and no tls attribute of its own', () => {
    const x = one(makeSpan({ kind: 'entry', attrs: { tls: true } })).attrs;
    assert.deepEqual([x['url.scheme'], x.tls, x['network.transport']], ['https', undefined, 'tcp']);
    assert.equal(one(makeSpan({ kind: 'entry', attrs: {} })).attrs['url.scheme'], undefined);
  });

  it('carries the eBPF fields under ebpf., the app context under app., and every attrs entry', () => {
    const d = one(makeSpan({
      host: 'web-9', pid: 4242, tid: 4243, reqSeq: 4294967295, respSeq: 7, threadGroup: '18446744073709551615',
      ebpfTraceId: '0af7651916cd43dd8448eb211c80319c', late: true, appTraceId: '4bf92f3577b34da6a3ce929d0e0e4736', appParentId: '00f067aa0ba902b7',
      attrs: { bytes_read: 312, ratio: 0.5, keep: false, thread_name: 'worker-1', 'ebpf.pid': 'spoofed' },
    }));
    const a = d.attrs;
    assert.equal(a['ebpf.host'], 'web-9');
    assert.equal(a['ebpf.pid'], 4242, 'an attrs entry never overrides one seqtrace sets');
    assert.equal(a['ebpf.tid'], 4243);
    assert.equal(a['ebpf.req_seq'], 4294967295);
    assert.equal(a['ebpf.resp_seq'], 7);
    assert.equal(a['ebpf.thread_group'], '18446744073709551615', 'a u64 keeps every digit');
    assert.equal(a['ebpf.trace_id'], '0af7651916cd43dd8448eb211c80319c');
    assert.equal(a['ebpf.late'], true);
    assert.equal(a['app.trace_id'], '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(a['app.parent_id'], '00f067aa0ba902b7');
    assert.equal(a.bytes_read, 312);
    assert.equal(a.ratio, 0.5);
    assert.equal(a.keep, false);
    assert.equal(a.thread_name, 'worker-1');
    const keys = d.span.attributes.map((kv: any) => kv.key);
    assert.equal(new Set(keys).size, keys.length, 'attribute keys are unique');
    const ints = d.span.attributes.filter((kv: any) => kv.value.intValue !== undefined).map((kv: any) => kv.key);
    assert.ok(ints.includes('ebpf.req_seq') && ints.includes('http.response.status_code') && ints.includes('bytes_read'));
    assert.equal(d.span.attributes.find((kv: any) => kv.key === 'ratio').value.doubleValue, 0.5);
    const noApp = one(makeSpan({ appTraceId: '', appParentId: '', threadGroup: '0' })).attrs;
    assert.equal(noApp['app.trace_id'], undefined);
    assert.equal(noApp['ebpf.thread_group'], undefined);
  });

  it('leaves out (and counts) a span whose id is not hex of the right length', () => {
    const spans = [makeSpan(), makeSpan({ spanId: 'xyz' }), makeSpan({ traceId: 'abcd' }), makeSpan({ parentId: '00f067aa0ba902bZ' })];
    const res = encodeProtobufRequest(spans);
    assert.equal(res.invalid, 3);
    assert.equal(decodeProtobuf(res.body).resourceSpans[0].scopeSpans[0].spans.length, 1);
    assert.equal(encodeJsonRequest(spans).invalid, 3);
  });

  it('writes OTLP/JSON: hex ids, enum integers, 64-bit integers as strings, official field names', () => {
    const span = makeSpan({ kind: 'exit', parentId: '00f067aa0ba902b7', startUs: 1732500000123457, durationUs: 10, httpStatusCode: 502, status: 'error' });
    const json = JSON.parse(encodeJsonRequest([span]).body);
    const s = json.resourceSpans[0].scopeSpans[0].spans[0];
    assert.equal(s.traceId, span.traceId);
    assert.equal(s.spanId, span.spanId);
    assert.equal(s.parentSpanId, '00f067aa0ba902b7');
    assert.equal(s.kind, 3);
    assert.equal(s.status.code, 2);
    assert.equal(s.startTimeUnixNano, '1732500000123457000');
    assert.equal(s.endTimeUnixNano, '1732500000123467000');
    const status = s.attributes.find((kv: any) => kv.key === 'http.response.status_code');
    assert.deepEqual(status.value, { intValue: '502' });
    assert.deepEqual(json.resourceSpans[0].resource.attributes.find((kv: any) => kv.key === 'process.pid').value, { intValue: String(span.pid) });
    // Every field name is one of the official message's: with ids turned back into bytes the
    // official type (which ignores unknown names) encodes the same request as the protobuf path.
    const { Request } = officialTypes();
    const asBytes = JSON.parse(JSON.stringify(json), (k, v) => (['traceId', 'spanId', 'parentSpanId'].includes(k) ? Buffer.from(v, 'hex') : v));
    assert.deepEqual(decodeProtobuf(Request.encode(Request.fromObject(asBytes)).finish()), decodeProtobuf(encodeProtobufRequest([span]).body));
  });
});
