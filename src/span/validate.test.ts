import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validatePoint, validatePoints } from './validate.js';
import { decodeJsonPoints, encodeJsonPoints } from './json.js';
import { decodeLineProtocol } from './lineprotocol.js';
import type { FieldValue, Point } from './point.js';
import type { EbpfSpan } from './span.js';

const OPTS = { maxFieldBytes: 64 };

const BASE: Record<string, FieldValue> = {
  ebpf_span_type: 'exit', req_seq: 1, resp_seq: 2, pid: '42', start: 1_000_000, duration: 10,
};

function point(fields: Record<string, FieldValue>, tags: Record<string, string> = { host: 'h1' }, time = ''): Point {
  return { index: 3, measurement: 'dketrace', tags, fields, time };
}

function span(fields: Record<string, FieldValue>, tags?: Record<string, string>, time?: string): EbpfSpan {
  const r = validatePoint(point(fields, tags, time), OPTS);
  if ('reason' in r) assert.fail(`rejected: ${JSON.stringify(r)}`);
  return r;
}

test('validate: minimal span and its defaults', () => {
  assert.deepEqual(span(BASE), {
    host: 'h1', kind: 'exit', reqSeq: 1, respSeq: 2, threadGroup: '', pid: 42, tid: 0, startUs: 1_000_000, durationUs: 10,
    service: 'unknown', processName: '', srcIp: '', srcPort: 0, dstIp: '', dstPort: 0, resource: '', operation: '', status: 'ok',
    httpMethod: '', httpRoute: '', httpStatusCode: 0, appTraceId: '', appParentId: '', appSampled: 0, attrs: {},
  });
});

// [name, extra fields, extra tags, time, expected subset]
const accepted: [string, Record<string, FieldValue>, Record<string, string>, string, Partial<EbpfSpan>][] = [
  ['pid as integer', { pid: 42 }, {}, '', { pid: 42 }],
  ['pid as string', { pid: '42' }, {}, '', { pid: 42 }],
  ['ports as strings and integers', { src_port: '8080', dst_port: 51234 }, {}, '', { srcPort: 8080, dstPort: 51234 }],
  ['seqs at u32 max', { req_seq: 4294967295, resp_seq: '0' }, {}, '', { reqSeq: 4294967295, respSeq: 0 }],
  ['seq as integral float', { req_seq: 7 }, {}, '', { reqSeq: 7 }],
  ['direction alone', { ebpf_span_type: undefined as any, direction: 'incoming' }, {}, '', { kind: 'entry' }],
  ['direction agreeing', { ebpf_span_type: 'exit', direction: 'outgoing' }, {}, '', { kind: 'exit' }],
  ['thread group bigint exact', { thread_trace_id: 18446744073709551615n }, {}, '', { threadGroup: '18446744073709551615' }],
  ['thread group digit string exact', { thread_trace_id: '8812345678901234567' }, {}, '', { threadGroup: '8812345678901234567' }],
  ['thread group small number', { thread_trace_id: 77 }, {}, '', { threadGroup: '77' }],
  ['thread group 0 is none', { thread_trace_id: 0 }, {}, '', { threadGroup: '' }],
  ['thread group negative int64 → two\'s complement', { thread_trace_id: -1 }, {}, '', { threadGroup: '18446744073709551615' }],
  ['start falls back to point time', { start: undefined as any }, {}, '1732500000123456789', { startUs: 1732500000123456 }],
  ['start wins over time', {}, {}, '5000', { startUs: 1_000_000 }],
  ['start as a 16-digit string (encodeJsonPoints writes bigints so)', { start: '1732500000123456' }, {}, '', { startUs: 1732500000123456 }],
  ['keys as tags', { pid: undefined as any }, { host: 'h1', pid: '7', service: 'svc' }, '', { pid: 7, service: 'svc' }],
  ['field wins over tag', { service: 'f' }, { host: 'h1', service: 't' }, '', { service: 'f' }],
  ['service from process_name', { process_name: 'nginx' }, {}, '', { service: 'nginx', processName: 'nginx' }],
  ['resource from method and route', { http_method: 'GET', http_route: '/a' }, {}, '', { resource: 'GET /a', operation: 'HTTP' }],
  ['status from code 503', { http_status_code: 503 }, {}, '', { status: 'error', httpStatusCode: 503 }],
  ['status from code 404', { http_status_code: '404' }, {}, '', { status: 'warning', httpStatusCode: 404 }],
  ['explicit status wins', { http_status_code: 200, status: 'ERROR' }, {}, '', { status: 'error' }],
  ['IPv6 addresses', { src_ip: '::1', dst_ip: 'fe80::2' }, {}, '', { srcIp: '::1', dstIp: 'fe80::2' }],
  ['W3C trace id lowercased', { app_trace_id: '4BF92F3577B34DA6A3CE929D0E0E4736' }, {}, '', { appTraceId: '4bf92f3577b34da6a3ce929d0e0e4736' }],
  ['Datadog decimal ids', { app_trace_id: '12345678901234567890', app_parent_id: 987 }, {}, '', { appTraceId: '12345678901234567890', appParentId: '987' }],
  ['sampled -1', { app_span_sampled: -1 }, {}, '', { appSampled: -1 }],
  ['sampled "1"', { app_span_sampled: '1' }, {}, '', { appSampled: 1 }],
  ['unknown keys kept in attrs', { http_version: '1.1', bytes_read: 5, x: true, big: 9223372036854775807n }, { host: 'h1', zone: 'a' }, '', {
    attrs: { http_version: '1.1', bytes_read: 5, x: true, big: '9223372036854775807', zone: 'a' },
  }],
  ['string at the size limit', { service: 'x'.repeat(64) }, {}, '', { service: 'x'.repeat(64) }],
];

for (const [name, extra, tags, time, want] of accepted) {
  test(`validate accepts: ${name}`, () => {
    const fields = { ...BASE, ...extra };
    for (const k of Object.keys(fields)) if (fields[k] === undefined) delete fields[k];
    const s = span(fields, { host: 'h1', ...tags }, time);
    for (const [k, v] of Object.entries(want)) assert.deepEqual((s as any)[k], v, k);
  });
}

// [name, extra fields, tags, time, field, reason]
const rejected: [string, Record<string, FieldValue>, Record<string, string>, string, string, RegExp][] = [
  ['wrong measurement', {}, { host: 'h1' }, '', 'measurement', /expected "dketrace"/],
  ['no host', {}, {}, '', 'host', /missing/],
  ['no kind', { ebpf_span_type: undefined as any }, { host: 'h1' }, '', 'ebpf_span_type', /missing/],
  ['bad kind', { ebpf_span_type: 'server' }, { host: 'h1' }, '', 'ebpf_span_type', /"entry" or "exit"/],
  ['kind and direction disagree', { direction: 'incoming' }, { host: 'h1' }, '', 'direction', /disagrees/],
  ['bad direction', { direction: 'sideways', ebpf_span_type: undefined as any }, { host: 'h1' }, '', 'direction', /incoming/],
  ['seq beyond u32', { req_seq: 4294967296 }, { host: 'h1' }, '', 'req_seq', /0…4294967295/],
  ['negative seq', { resp_seq: -1 }, { host: 'h1' }, '', 'resp_seq', /0…4294967295/],
  ['fractional seq', { req_seq: 1.5 }, { host: 'h1' }, '', 'req_seq', /integer/],
  ['seq as word', { req_seq: 'abc' }, { host: 'h1' }, '', 'req_seq', /integer/],
  ['missing seq', { req_seq: undefined as any }, { host: 'h1' }, '', 'req_seq', /missing/],
  ['missing pid', { pid: undefined as any }, { host: 'h1' }, '', 'pid', /missing/],
  ['pid not digits', { pid: '42a' }, { host: 'h1' }, '', 'pid', /process id/],
  ['thread group beyond u64', { thread_trace_id: '18446744073709551616' }, { host: 'h1' }, '', 'thread_trace_id', /2\^64-1/],
  ['thread group as inexact JSON number', { thread_trace_id: 8812345678901234567 }, { host: 'h1' }, '', 'thread_trace_id', /string of digits/],
  ['no start and no time', { start: undefined as any }, { host: 'h1' }, '', 'start', /neither/],
  ['negative duration', { duration: -1 }, { host: 'h1' }, '', 'duration', /≥ 0/],
  ['missing duration', { duration: undefined as any }, { host: 'h1' }, '', 'duration', /missing/],
  ['port beyond 65535', { src_port: '70000' }, { host: 'h1' }, '', 'src_port', /0…65535/],
  ['bad IP', { dst_ip: '10.0.0.300' }, { host: 'h1' }, '', 'dst_ip', /IPv4 or IPv6/],
  ['bad status', { status: 'fine' }, { host: 'h1' }, '', 'status', /"ok", "warning" or "error"/],
  ['status code beyond 999', { http_status_code: 1000 }, { host: 'h1' }, '', 'http_status_code', /0…999/],
  ['app trace id not hex', { app_trace_id: 'xyz' }, { host: 'h1' }, '', 'app_trace_id', /hex/],
  ['app trace id too long', { app_trace_id: 'a'.repeat(33) }, { host: 'h1' }, '', 'app_trace_id', /at most 32/],
  ['bad sampled', { app_span_sampled: 2 }, { host: 'h1' }, '', 'app_span_sampled', /1 \(keep\)/],
  ['service over max_field_bytes', { service: 'é'.repeat(33) }, { host: 'h1' }, '', 'service', /max_field_bytes = 64 bytes \(66 bytes\)/],
  ['attr over max_field_bytes', { note: 'x'.repeat(65) }, { host: 'h1' }, '', 'note', /max_field_bytes/],
  ['tag attr over max_field_bytes', {}, { host: 'h1', note: 'x'.repeat(65) }, '', 'note', /max_field_bytes/],
  ['bytes_read negative', { bytes_read: -3 }, { host: 'h1' }, '', 'bytes_read', /non-negative/],
  ['service as boolean', { service: true }, { host: 'h1' }, '', 'service', /string/],
];

for (const [name, extra, tags, time, field, reason] of rejected) {
  test(`validate rejects: ${name}`, () => {
    const fields = { ...BASE, ...extra };
    for (const k of Object.keys(fields)) if (fields[k] === undefined) delete fields[k];
    const p = point(fields, tags, time);
    if (name === 'wrong measurement') p.measurement = 'http';
    const r = validatePoint(p, OPTS);
    assert.ok('reason' in r, `accepted: ${JSON.stringify(r)}`);
    assert.equal(r.index, 3);
    assert.equal(r.field, field);
    assert.match(r.reason, reason);
  });
}

test('validate: good points of a batch are kept, bad ones reported', () => {
  const pts = [point(BASE), point({ ...BASE, req_seq: -1 }), point({ ...BASE, pid: 9 })];
  pts.forEach((p, i) => (p.index = i));
  const { spans, errors } = validatePoints(pts, OPTS);
  assert.deepEqual(spans.map((s) => s.pid), [42, 9]);
  assert.deepEqual(errors.map((e) => [e.index, e.field]), [[1, 'req_seq']]);
});

test('JSON points: decode, 64-bit ids as strings, time as string or number, errors per point', () => {
  const body = JSON.stringify([
    { measurement: 'dketrace', tags: { host: 'h' }, fields: { ...BASE, thread_trace_id: '18446744073709551615' }, time: '1732500000000000000' },
    { measurement: 'dketrace', tags: { host: 'h' }, fields: { ...BASE, start: undefined }, time: 1732500000000000000 },
    { measurement: 'dketrace', tags: { host: 'h' }, fields: 'nope' },
    { measurement: 'dketrace', tags: { host: 'h' }, fields: { ...BASE, x: { nested: 1 } } },
    { measurement: 'dketrace', tags: { host: 'h' }, fields: BASE, time: 'yesterday' },
    42,
  ]);
  const { points, errors } = decodeJsonPoints(body);
  assert.deepEqual(points.map((p) => p.index), [0, 1]);
  assert.deepEqual(errors.map((e) => [e.index, e.field]), [[2, 'fields'], [3, 'x'], [4, 'time'], [5, '']]);
  const { spans } = validatePoints(points, OPTS);
  assert.equal(spans[0].threadGroup, '18446744073709551615');
  assert.equal(spans[1].startUs, 1732500000000000);
});

test('JSON points: whole-body failures and the batch limit', () => {
  assert.throws(() => decodeJsonPoints('[{'), (e: any) => e.code === 'SEQ_ERR_BAD_BODY' && e.status === 400);
  assert.throws(() => decodeJsonPoints('"x"'), (e: any) => e.code === 'SEQ_ERR_BAD_BODY');
  assert.throws(() => decodeJsonPoints('[{},{},{}]', { maxPoints: 2 }), (e: any) => e.code === 'SEQ_ERR_BODY_TOO_LARGE' && e.status === 413);
  assert.equal(decodeJsonPoints(JSON.stringify({ measurement: 'm', fields: { a: 1 } })).points.length, 1);
});

test('JSON points: encode → decode keeps bigint ids exact; same spans as line protocol', () => {
  const pts = [{ measurement: 'dketrace', tags: { host: 'h' }, fields: { ...BASE, thread_trace_id: 8812345678901234567n }, time: '1732500000000000000' }];
  const fromJson = validatePoints(decodeJsonPoints(encodeJsonPoints(pts)).points, OPTS).spans;
  const lp = 'dketrace,host=h ebpf_span_type="exit",req_seq=1i,resp_seq=2i,pid="42",start=1000000i,duration=10i,thread_trace_id=8812345678901234567i 1732500000000000000';
  const fromLp = validatePoints(decodeLineProtocol(lp).points, OPTS).spans;
  assert.deepEqual(fromJson, fromLp);
  assert.equal(fromJson[0].threadGroup, '8812345678901234567');
});

test('keys named like Object.prototype members are attributes like any other, in line protocol and JSON', () => {
  const lp = 'dketrace,host=h,constructor=c1,__proto__=p1 ebpf_span_type="exit",req_seq=1i,resp_seq=2i,pid="42",start=1000000i,duration=10i,toString="t1",hasOwnProperty=3i 1732500000000000000';
  const [fromLp] = validatePoints(decodeLineProtocol(lp).points, OPTS).spans;
  // (pairs, not an object literal: `__proto__: ...` in a literal sets the prototype)
  const want: [string, string | number][] = [['constructor', 'c1'], ['__proto__', 'p1'], ['toString', 't1'], ['hasOwnProperty', 3]];
  for (const [k, v] of want) {
    assert.ok(Object.hasOwn(fromLp.attrs, k), `line protocol: attribute ${k} kept`);
    assert.equal(fromLp.attrs[k], v);
  }
  assert.equal(Object.getPrototypeOf(fromLp.attrs), Object.prototype, 'no prototype replaced');
  const json = '[{"measurement":"dketrace","tags":{"host":"h","constructor":"c1","__proto__":"p1"},"fields":{"ebpf_span_type":"exit","req_seq":1,"resp_seq":2,"pid":"42","start":1000000,"duration":10,"toString":"t1","hasOwnProperty":3},"time":1732500000000000000}]';
  const [fromJson] = validatePoints(decodeJsonPoints(json).points, OPTS).spans;
  for (const [k, v] of want) assert.equal(Object.hasOwn(fromJson.attrs, k) ? fromJson.attrs[k] : undefined, v, `JSON: attribute ${k} kept`);
  // a tag of such a name is checked like any other value
  const long = lp.replace('constructor=c1', `constructor=${'x'.repeat(9000)}`);
  const { errors } = validatePoints(decodeLineProtocol(long).points, OPTS);
  assert.equal(errors[0]?.field, 'constructor');
});
