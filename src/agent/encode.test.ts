import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeSpanLine } from './encode.js';
import { encodeSpans, decodeLineProtocol } from '../span/lineprotocol.js';
import { validatePoints } from '../span/validate.js';
import { MEASUREMENT, type AttrValue, type EbpfSpan } from '../span/span.js';

// The agent's line as the string it was built as before writeSpanLine (kept here as the
// reference for the byte writer, including values the shared encoder refuses).
const NEEDS_STRING_ESCAPE = /["\\]/;
const NEEDS_NAME_ESCAPE = /[, =\\\n\r\t]/;

function str(s: string): string {
  return NEEDS_STRING_ESCAPE.test(s) ? `"${s.replace(/["\\]/g, '\\$&')}"` : `"${s}"`;
}

/** Tag values and keys: commas, spaces, equals and backslashes escaped; newlines kept visible. */
function name(s: string): string {
  if (!NEEDS_NAME_ESCAPE.test(s)) return s;
  return s.replace(/[, =\\\n\r\t]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? ' ' : '\\' + c));
}

function value(v: AttrValue): string {
  if (typeof v === 'string') return str(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Number.isInteger(v)) return `${v}i`;
  if (!Number.isFinite(v)) throw new RangeError(`line protocol cannot carry the float ${v}`);
  return String(v);
}

const INT64_MAX = '9223372036854775807';

/** u64 decimal string as a line-protocol integer: `u` above the int64 range. */
function u64(s: string): string {
  return s.length > 19 || (s.length === 19 && s > INT64_MAX) ? `${s}u` : `${s}i`;
}

const KNOWN = new Set([
  'host', 'direction', 'ebpf_span_type', 'req_seq', 'resp_seq', 'thread_trace_id', 'pid', 'tid', 'start', 'duration',
  'service', 'process_name', 'src_ip', 'src_port', 'dst_ip', 'dst_port', 'operation', 'resource', 'status',
  'http_method', 'http_route', 'http_status_code', 'app_trace_id', 'app_parent_id', 'app_span_sampled',
]);

/** The line for one span, built as a string: the oracle writeSpanLine is checked against. */
function encodeSpanLine(s: EbpfSpan): string {
  let l = `${MEASUREMENT}${s.host === '' ? '' : `,host=${name(s.host)}`} direction=${s.kind === 'entry' ? '"incoming"' : '"outgoing"'},ebpf_span_type="${s.kind}",req_seq=${s.reqSeq}i,resp_seq=${s.respSeq}i`;
  if (s.threadGroup !== '' && s.threadGroup !== '0') l += `,thread_trace_id=${u64(s.threadGroup)}`;
  l += `,pid="${s.pid}"`;
  if (s.tid) l += `,tid=${s.tid}i`;
  l += `,start=${s.startUs}i,duration=${s.durationUs}i,service=${str(s.service)}`;
  if (s.processName) l += `,process_name=${str(s.processName)}`;
  if (s.srcIp) l += `,src_ip="${s.srcIp}"`;
  if (s.srcPort) l += `,src_port="${s.srcPort}"`;
  if (s.dstIp) l += `,dst_ip="${s.dstIp}"`;
  if (s.dstPort) l += `,dst_port="${s.dstPort}"`;
  if (s.operation) l += `,operation=${str(s.operation)}`;
  if (s.resource) l += `,resource=${str(s.resource)}`;
  l += `,status="${s.status}"`;
  if (s.httpMethod) l += `,http_method=${str(s.httpMethod)}`;
  if (s.httpRoute) l += `,http_route=${str(s.httpRoute)}`;
  l += `,http_status_code=${s.httpStatusCode}i`;
  if (s.appTraceId) l += `,app_trace_id=${str(s.appTraceId)}`;
  if (s.appParentId) l += `,app_parent_id=${str(s.appParentId)}`;
  if (s.appSampled) l += `,app_span_sampled=${s.appSampled}i`;
  for (const k in s.attrs) {
    if (KNOWN.has(k)) continue;
    l += `,${name(k)}=${value(s.attrs[k])}`;
  }
  return `${l} ${s.startUs}000\n`;
}

const base: EbpfSpan = {
  host: 'web-1', kind: 'entry', reqSeq: 3735928559, respSeq: 16909060, threadGroup: '8812345678901234567', pid: 4242, tid: 4243,
  startUs: 1732500000000000, durationUs: 1500, service: 'users', processName: 'python3', srcIp: '10.0.0.2', srcPort: 8080,
  dstIp: '10.0.0.1', dstPort: 51234, resource: 'GET /users/7', operation: 'HTTP', status: 'ok', httpMethod: 'GET',
  httpRoute: '/users/7', httpStatusCode: 200, appTraceId: '0af7651916cd43dd8448eb211c80319c', appParentId: 'b7ad6b7169203331',
  appSampled: 1, attrs: { http_version: '1.1', thread_name: 'worker-1', bytes_read: 120, bytes_written: 530, tid_usr: 7, truncated: true },
};

const decode = (text: string) => {
  const { points, errors } = decodeLineProtocol(text);
  assert.deepEqual(errors, []);
  const r = validatePoints(points, { maxFieldBytes: 8192 });
  assert.deepEqual(r.errors, []);
  return r.spans;
};

test('the agent encoder and the shared encoder produce the same spans', async (t) => {
  const cases: [string, Partial<EbpfSpan>][] = [
    ['full', {}],
    ['exit, no group, no trace', { kind: 'exit', threadGroup: '', appTraceId: '', appParentId: '', appSampled: 0 }],
    ['group above int64', { threadGroup: '18446744073709551615' }],
    ['group exactly int64 max', { threadGroup: '9223372036854775807' }],
    ['quotes and backslashes in strings', { resource: 'GET /a"b\\c', httpRoute: '/a"b\\c', service: 'svc "x"' }],
    ['host needing escapes', { host: 'web 1,a=b' }],
    ['IPv6, failed exchange', { srcIp: '::1', dstIp: 'fe80::1', status: 'error', httpStatusCode: 0, attrs: { response_incomplete: true } }],
    ['zero tid and ports', { tid: 0, srcPort: 0, dstPort: 0, processName: '' }],
  ];
  for (const [label, over] of cases) {
    await t.test(label, () => {
      const s = { ...base, ...over };
      const mine = encodeSpanLine(s);
      const shared = encodeSpans([s]);
      assert.deepEqual(decode(mine), decode(shared));
      assert.equal(mine, shared, 'byte for byte');
      assertWritesSame(s);
    });
  }
});

/** writeSpanLine must give exactly the bytes of encodeSpanLine, and respect the buffer's end. */
function assertWritesSame(s: EbpfSpan): void {
  const want = Buffer.from(encodeSpanLine(s));
  const buf = Buffer.alloc(want.length + 40, 0xaa);
  const end = writeSpanLine(buf, 20, s);
  assert.equal(end, 20 + want.length, 'length');
  assert.equal(buf.subarray(20, end).toString('latin1'), want.toString('latin1'));
  assert.ok(buf.subarray(0, 20).every((b) => b === 0xaa) && buf.subarray(end).every((b) => b === 0xaa), 'nothing written outside the line');
  // A buffer too short for it: nothing past its end, and the result says it did not fit.
  const short = Buffer.alloc(want.length - 1);
  assert.ok(writeSpanLine(short, 0, s) > short.length);
}

test('writeSpanLine writes the bytes of encodeSpanLine for unusual values', () => {
  const cases: Partial<EbpfSpan>[] = [
    { host: '' },
    { host: 'h\t\n\r\\,= x' },
    { service: 'sérvice ü', resource: 'GET /ä/€/😀', httpRoute: '/ä/€/😀', processName: 'p"q\\' },
    { resource: 'GET /lone\ud800x\udc00y\ud800', httpRoute: '/\udbff' },
    { resource: 'GET /\u0080\u00ff\u07ff\u0800\uffff' },
    { reqSeq: 0, respSeq: 4294967295, pid: 1, tid: 9007199254740991, startUs: 0, durationUs: 0 },
    { startUs: 1.5, durationUs: -3, httpStatusCode: NaN, srcPort: 1e21, dstPort: -0 },
    { tid: NaN, srcPort: NaN },
    { pid: -12, appSampled: -1, threadGroup: '0' },
    { threadGroup: '9223372036854775808' },
    { threadGroup: '1' },
    { appSampled: 0, appTraceId: '123"', appParentId: 'a\\b' },
    { attrs: {} },
    { attrs: { 'k y,=\\\n\r\t': 'v"\\', n: -7, f: 0.25, big: 1e21, neg0: -0, t: true, f2: false, 'é': 'ü', host: 'skipped', pid: 'skipped' } },
    { attrs: { 2: 'numeric key first', a: 1 } },
  ];
  for (const over of cases) assertWritesSame({ ...base, ...over, attrs: { ...base.attrs, ...over.attrs } });
  for (const over of cases) assertWritesSame({ ...base, ...over, kind: 'exit' });
  assert.throws(() => writeSpanLine(Buffer.alloc(2000), 0, { ...base, attrs: { x: Infinity } }), /cannot carry the float Infinity/);
});

test('writeSpanLine: runs remembered from earlier spans survive the reuse of the batch buffer', () => {
  const batch = Buffer.alloc(4096);
  const spans: EbpfSpan[] = [
    base,
    { ...base, resource: 'GET /other', httpRoute: '/other' },
    { ...base, httpStatusCode: 404, status: 'warning' },
    { ...base, service: 'another' },
    { ...base, srcIp: '10.9.9.9' },
  ];
  for (let round = 0; round < 3; round++) {
    for (const s of spans) {
      // twice in a row (the second copies what the first remembered), at other offsets
      for (const at of [7, 1000, 7]) {
        batch.fill(round === 1 ? 0 : 0x55);
        const end = writeSpanLine(batch, at, s);
        assert.equal(batch.toString('utf8', at, end), encodeSpanLine(s));
      }
    }
  }
});

test('writeSpanLine writes integers of every length as String() does', () => {
  const values = [0, 7, 10, 99, 100, 101, 999, 1000, 10009, 2147483647, 2147483648, 4294967295, 1000000000, 1000000007,
    999999999999, 1732500000000000, 1732500000000009, 1000000000000000, 9007199254740991, -1, -10, -2147483648, -2147483649, -9007199254740991];
  let x = 99;
  for (let i = 0; i < 200; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    values.push(x, x * 4096 + i, Math.floor(x / (1 + i)), -x);
  }
  for (const v of values) {
    assertWritesSame({ ...base, tid: v, startUs: v, durationUs: v, reqSeq: Math.abs(v) % 4294967296, attrs: { n: v } });
  }
});
