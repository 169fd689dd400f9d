import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeLineProtocol, decodeLineProtocolAt, decodeLineProtocolBytes, encodeLineProtocol, encodePoint, encodeSpans } from './lineprotocol.js';
import { validatePoint } from './validate.js';
import type { FieldValue } from './point.js';
import type { EbpfSpan } from './span.js';

type Want = { measurement: string; tags?: Record<string, string>; fields: Record<string, FieldValue>; time?: string };

const good: [string, string, Want][] = [
  ['simple', 'm f=1i', { measurement: 'm', fields: { f: 1 } }],
  ['tags and timestamp', 'm,a=1,b=x f=1.5 123', { measurement: 'm', tags: { a: '1', b: 'x' }, fields: { f: 1.5 }, time: '123' }],
  ['escaped measurement', 'my\\ meas\\,ure f=1i', { measurement: 'my meas,ure', fields: { f: 1 } }],
  ['escaped tag key and value', 'm,k\\ e\\=y\\,=v\\ a\\,l\\=ue f=1i', { measurement: 'm', tags: { 'k e=y,': 'v a,l=ue' }, fields: { f: 1 } }],
  ['escaped field key', 'm f\\ i\\,e\\=ld=1i', { measurement: 'm', fields: { 'f i,e=ld': 1 } }],
  ['backslash kept before other chars', 'm,t=a\\b f="x"', { measurement: 'm', tags: { t: 'a\\b' }, fields: { f: 'x' } }],
  ['escaped backslash', 'm,t=a\\\\ f="x"', { measurement: 'm', tags: { t: 'a\\' }, fields: { f: 'x' } }],
  ['quoted string with escaped quote and backslash', 'm s="he said \\"hi\\" \\\\o/"', { measurement: 'm', fields: { s: 'he said "hi" \\o/' } }],
  ['quoted string with comma, space, equals', 'm s="a, b=c d",n=2i', { measurement: 'm', fields: { s: 'a, b=c d', n: 2 } }],
  ['quoted string across lines', 'm s="line1\nline2" 5', { measurement: 'm', fields: { s: 'line1\nline2' }, time: '5' }],
  ['empty string', 'm s=""', { measurement: 'm', fields: { s: '' } }],
  ['unicode', 'm,h=hôte s="日本"', { measurement: 'm', tags: { h: 'hôte' }, fields: { s: '日本' } }],
  ['negative int', 'm i=-42i', { measurement: 'm', fields: { i: -42 } }],
  ['unsigned', 'm u=42u', { measurement: 'm', fields: { u: 42 } }],
  ['int64 max stays bigint', 'm i=9223372036854775807i', { measurement: 'm', fields: { i: 9223372036854775807n } }],
  ['int64 min', 'm i=-9223372036854775808i', { measurement: 'm', fields: { i: -9223372036854775808n } }],
  ['uint64 max', 'm u=18446744073709551615u', { measurement: 'm', fields: { u: 18446744073709551615n } }],
  ['16 digits safe becomes number', 'm i=1234567890123456i', { measurement: 'm', fields: { i: 1234567890123456 } }],
  ['2^53-1 is a number, 2^53+1 stays bigint', 'm a=9007199254740991i,b=9007199254740993i,c=-9007199254740993i,d=9999999999999999u,e=0000000000000042i', {
    measurement: 'm', fields: { a: 9007199254740991, b: 9007199254740993n, c: -9007199254740993n, d: 9999999999999999n, e: 42 },
  }],
  ['floats', 'm a=1,b=-1.5,c=1e3,d=2.5E-2,e=.5', { measurement: 'm', fields: { a: 1, b: -1.5, c: 1000, d: 0.025, e: 0.5 } }],
  ['booleans', 'm a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE', {
    measurement: 'm', fields: { a: true, b: true, c: true, d: true, e: true, f: false, g: false, h: false, i: false, j: false },
  }],
  ['negative timestamp', 'm f=1i -5', { measurement: 'm', fields: { f: 1 }, time: '-5' }],
  ['trailing spaces', 'm f=1i 7   ', { measurement: 'm', fields: { f: 1 }, time: '7' }],
  ['CRLF', 'm f=1i 7\r', { measurement: 'm', fields: { f: 1 }, time: '7' }],
  ['duplicate field: last wins', 'm f=1i,f=2i', { measurement: 'm', fields: { f: 2 } }],
];

for (const [name, line, want] of good) {
  test(`line protocol decodes: ${name}`, () => {
    const { points, errors } = decodeLineProtocol(line);
    assert.deepEqual(errors, []);
    assert.equal(points.length, 1);
    const p = points[0];
    assert.equal(p.measurement, want.measurement);
    assert.deepEqual(p.tags, want.tags ?? {});
    assert.deepEqual(p.fields, want.fields);
    assert.equal(p.time, want.time ?? '');
  });
}

const bad: [string, string, { reason: RegExp; field?: string; column: number }][] = [
  ['no fields', 'm', { reason: /missing fields/, column: 2 }],
  ['no fields after tags', 'm,a=b', { reason: /missing fields/, column: 6 }],
  ['tag without value', 'm,a f=1i', { reason: /tag a has no =value/, field: 'a', column: 4 }],
  ['empty tag value', 'm,a= f=1i', { reason: /tag a has an empty value/, field: 'a', column: 5 }],
  ['field without value', 'm f', { reason: /field f has no =value/, field: 'f', column: 4 }],
  ['field with empty value', 'm f=', { reason: /missing field value/, field: 'f', column: 5 }],
  ['unterminated string', 'm s="abc', { reason: /unterminated string/, field: 's', column: 5 }],
  ['bad integer', 'm i=12x3i', { reason: /only contain digits/, field: 'i', column: 10 }],
  ['negative unsigned', 'm u=-1u', { reason: /cannot be negative/, field: 'u', column: 8 }],
  ['int64 overflow', 'm i=9223372036854775808i', { reason: /int64 range/, field: 'i', column: 25 }],
  ['uint64 overflow', 'm u=18446744073709551616u', { reason: /uint64 range/, field: 'u', column: 26 }],
  ['bare word', 'm v=hello', { reason: /not a valid field value/, field: 'v', column: 10 }],
  ['hex is not a float', 'm v=0x10', { reason: /not a valid field value/, field: 'v', column: 9 }],
  ['bad timestamp', 'm f=1i 12ab', { reason: /after the timestamp/, field: 'time', column: 10 }],
  ['word as timestamp', 'm f=1i now', { reason: /timestamp must be an integer/, field: 'time', column: 8 }],
  ['trailing comma in fields', 'm f=1i,', { reason: /empty field key/, column: 8 }],
];

for (const [name, line, want] of bad) {
  test(`line protocol rejects: ${name}`, () => {
    const { points, errors } = decodeLineProtocol(line);
    assert.equal(points.length, 0);
    assert.equal(errors.length, 1);
    const e = errors[0];
    assert.match(e.reason, want.reason);
    if (want.field !== undefined) assert.equal(e.field, want.field);
    assert.equal(e.index, 0);
    assert.equal(e.line, 1);
    assert.equal(e.column, want.column, `column for ${JSON.stringify(line)}: ${JSON.stringify(e)}`);
  });
}

test('line protocol: comments, blank lines, CRLF, indices and line numbers of errors', () => {
  const body = '# a comment\r\n\r\nm f=1i 1\r\n  \n m,bad f 2\nm s="multi\nline" 3\n\t# indented comment\nm f=oops 4\nm f=2i 5';
  const { points, errors } = decodeLineProtocol(body);
  assert.deepEqual(points.map((p) => [p.index, p.time]), [[0, '1'], [2, '3'], [4, '5']]);
  assert.deepEqual(errors.map((e) => [e.index, e.line, e.column]), [[1, 5, 7], [3, 9, 9]]);
});

test('line protocol: more points than maxPoints is SEQ_ERR_BODY_TOO_LARGE', () => {
  assert.throws(() => decodeLineProtocol('m f=1i\nm f=1i\nm f=1i', { maxPoints: 2 }), (e: any) => e.code === 'SEQ_ERR_BODY_TOO_LARGE' && e.status === 413);
  assert.equal(decodeLineProtocol('m f=1i\n# c\nm f=1i\n', { maxPoints: 2 }).points.length, 2);
});

test('line protocol: encode then decode gives the same point', () => {
  const points: { measurement: string; tags: Record<string, string>; fields: Record<string, FieldValue>; time?: string }[] = [
    { measurement: 'm e,a', tags: { 'k =,': 'v =,\\', h: 'x' }, fields: { 's =,': 'q"\\ \n x', i: 42, f: 1.25, b: true, big: 18446744073709551615n, neg: -9223372036854775808n }, time: '1732500000000000000' },
    { measurement: 'dketrace', tags: {}, fields: { only: 'x' } },
  ];
  const text = encodeLineProtocol(points);
  const { points: back, errors } = decodeLineProtocol(text);
  assert.deepEqual(errors, []);
  assert.deepEqual(back.map(({ index, ...p }) => p), points.map((p) => ({ ...p, time: p.time ?? '' })));
});

test('line protocol: a point without fields cannot be encoded; empty tags are left out', () => {
  assert.throws(() => encodePoint({ measurement: 'm', fields: {} }), /at least one field/);
  assert.equal(encodePoint({ measurement: 'm', tags: { a: '', b: 'x' }, fields: { f: 1 } }), 'm,b=x f=1i');
});

test('line protocol: spans round-trip through encodeSpans and validation, 64-bit thread group exact', () => {
  const span: EbpfSpan = {
    host: 'web-1', kind: 'exit', reqSeq: 3735928559, respSeq: 16909060, threadGroup: '18446744073709551615', pid: 4242, tid: 4243,
    startUs: 1732500000000123, durationUs: 1500, service: 'users', processName: 'node', srcIp: '10.0.0.2', srcPort: 51234,
    dstIp: 'fe80::1', dstPort: 8080, resource: 'GET /users/7', operation: 'HTTP', status: 'warning', httpMethod: 'GET',
    httpRoute: '/users/7', httpStatusCode: 404, appTraceId: '4bf92f3577b34da6a3ce929d0e0e4736', appParentId: '00f067aa0ba902b7',
    appSampled: -1, attrs: { thread_name: 'worker "1"', bytes_read: 120, http_version: '1.1' },
  };
  const { points, errors } = decodeLineProtocol(encodeSpans([span, { ...span, threadGroup: '', kind: 'entry' }]));
  assert.deepEqual(errors, []);
  assert.deepEqual(validatePoint(points[0], { maxFieldBytes: 8192 }), span);
  assert.deepEqual(validatePoint(points[1], { maxFieldBytes: 8192 }), { ...span, threadGroup: '', kind: 'entry' });
});

test('line protocol: the example of docs/span-format.md decodes and validates', () => {
  const line = 'dketrace,host=web-1 direction="incoming",ebpf_span_type="entry",req_seq=3735928559i,resp_seq=16909060i,thread_trace_id=8812345678901234567i,pid="4242",tid=4243i,start=1732500000000000i,duration=1500i,service="users",resource="GET /users/7",http_method="GET",http_route="/users/7",http_status_code=200i,src_ip="10.0.0.2",src_port="8080",dst_ip="10.0.0.1",dst_port="51234" 1732500000000000000';
  const { points } = decodeLineProtocol(line);
  const span = validatePoint(points[0], { maxFieldBytes: 8192 });
  assert.ok(!('reason' in span));
  assert.equal(span.threadGroup, '8812345678901234567');
  assert.equal(span.pid, 4242);
  assert.equal(span.srcPort, 8080);
  assert.equal(span.kind, 'entry');
});

test('line protocol: tokens reused from the previous line never change what a line decodes to', () => {
  const lines = [
    'm,h=a,z=1 s="abc",k=1i,t="x y" 1',
    'm,h=ab,z=1 s="abcd",k=2i,t="x y" 2',
    'm,h=a,zz=1 s="ab",kk=3i,t="x\\"y" 3',
    'mm,h=a\\ b s="abc",k=4i 4',
    'm,h=a s="abc" 5',
    ',h=a s="abc" 6',
    'm,h=a s="abc",k="" 7',
    'm,h=a s="",k="" 8',
    'm,h=a\\,b s="a\\\\c",k="x" 9',
    'm,h=a\\,b s="a\\\\c",k="x" 10',
  ];
  const together = decodeLineProtocol(lines.join('\n'));
  const alone = lines.map((l, i) => decodeLineProtocol(l));
  assert.deepEqual(together.points.map(({ index, ...p }) => p), alone.flatMap((d) => d.points.map(({ index, ...p }) => p)));
  assert.deepEqual(together.errors.map((e) => [e.index, e.reason]), [[5, 'missing measurement']]);
  assert.equal(together.points[2].fields.t, 'x"y');
  assert.deepEqual(together.points[8].tags, { h: 'a,b' });
  assert.equal(together.points[8].fields.s, 'a\\c');
});

test('decodeLineProtocolAt decodes single lines again exactly as the whole body decoded them', () => {
  const body = [
    '# a comment',
    'dketrace,host=a req_seq=1i,service="x y" 1000',
    '',
    'dketrace,host=b broken',
    'dketrace,host=a\\ b,k=v req_seq=2i,resource="GET /a\\"b",n=1.5 2000',
    '  dketrace,host=c ok=true',
    'dketrace,host=d s="multi',
    'line" 3000',
  ].join('\n');
  const starts: number[] = [];
  const all = decodeLineProtocol(body, { starts });
  assert.equal(starts.length, all.points.length + all.errors.length, 'one start per point, good or bad');
  const good = all.points.map((p) => starts[p.index]);
  // any subset, any order
  const pick = [good[3], good[0], good[2]];
  const again = decodeLineProtocolAt(body, pick);
  assert.deepEqual(again.map((p) => ({ ...p, index: 0 })), [all.points[3], all.points[0], all.points[2]].map((p) => ({ ...p, index: 0 })));
  assert.throws(() => decodeLineProtocolAt(body, [starts[all.errors[0].index]]), /no point at offset/);
});

test('decodeLineProtocolBytes decodes a large body in pieces exactly as decodeLineProtocol decodes its text', () => {
  const line = (i: number) => `dketrace,host=h${i % 7} req_seq=${i}i,service="svc ${i % 13}",resource="GET /a\\"b/${i}",n=${i}.5 ${1000 + i}`;
  const lines: string[] = [];
  for (let i = 0; i < 4000; i++) lines.push(i % 500 === 0 ? '# comment' : i % 333 === 0 ? '' : line(i));
  const clean = lines.join('\n') + '\n';
  // a string across lines (cut there, a piece would end inside it), an error line, non-ASCII
  const multi = lines.slice(0, 1500).join('\n') + '\ndketrace,host=x s="' + 'y'.repeat(70000) + '\nstill inside" 5\n' + lines.slice(1500).join('\n');
  const bad = lines.slice(0, 3000).join('\n') + '\ndketrace,host=b broken\n' + lines.slice(3000).join('\n');
  const unicode = lines.slice(0, 2000).join('\n') + '\ndketrace,host=hôte s="日本" 9\n' + lines.slice(2000).join('\n');
  for (const [name, text] of [['clean', clean], ['multi-line string', multi], ['bad line', bad], ['non-ASCII', unicode], ['small', line(1)]] as const) {
    const starts: number[] = [];
    const want = decodeLineProtocol(text, { starts });
    const gotStarts: number[] = [7]; // appended to, as decodeLineProtocol does
    const got = decodeLineProtocolBytes(Buffer.from(text), { starts: gotStarts });
    assert.deepEqual(got, want, name);
    assert.deepEqual(gotStarts, [7, ...starts], name);
    assert.ok(Buffer.byteLength(text) < 65536 || name === 'non-ASCII' || want.points.length > 1000, name);
  }
  assert.equal(decodeLineProtocol(bad).errors.length, 1);
  const all = decodeLineProtocol(clean).points.length;
  assert.throws(() => decodeLineProtocolBytes(Buffer.from(clean), { maxPoints: all - 1 }), (e: any) => e.code === 'SEQ_ERR_BODY_TOO_LARGE' && e.status === 413);
  assert.equal(decodeLineProtocolBytes(Buffer.from(clean), { maxPoints: all }).points.length, all);
});
