import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupKey, groupKeyAt, ipHash, ipHashAt, newIdentityParts, normaliseAppTraceId, seqKey, spanIdentity, spanIdentityAt, traceIdOf, type SpanIdentity } from './ids.js';
import { makeSpan, rng } from './testkit.js';

const ident = (): SpanIdentity => ({ a: 0, b: 0, c: 0, d: 0, spanId: '' });

test('span id: 16 lowercase hex, from the identity only', () => {
  const s = makeSpan({ host: 'web-1', pid: 42, tid: 43, kind: 'exit', reqSeq: 7, respSeq: 9, startUs: 1_732_500_000_123_456, srcIp: '10.0.0.1', srcPort: 5000, dstIp: '10.0.0.2', dstPort: 80 });
  const x = ident(), y = ident();
  spanIdentity(s, x);
  assert.match(x.spanId, /^[0-9a-f]{16}$/);
  // Fields outside the identity (service name, status, attrs) do not change it.
  spanIdentity({ ...s, service: 'other', status: 'error', attrs: { a: 1 } }, y);
  assert.equal(y.spanId, x.spanId);
  // Every identity field does.
  const variants: Partial<typeof s>[] = [
    { host: 'web-2' }, { pid: 41 }, { tid: 44 }, { kind: 'entry' }, { reqSeq: 8 }, { respSeq: 10 },
    { startUs: s.startUs + 1 }, { startUs: s.startUs + 2 ** 32 }, { srcIp: '10.0.0.3' }, { srcPort: 5001 }, { dstIp: '10.0.0.4' }, { dstPort: 81 },
  ];
  const seen = new Set([x.spanId]);
  for (const v of variants) {
    spanIdentity({ ...s, ...v }, y);
    assert.ok(!seen.has(y.spanId), `changing ${JSON.stringify(v)} must change the span id`);
    seen.add(y.spanId);
  }
});

test('span ids do not collide over 200,000 spans, and trace ids over 200,000 roots', () => {
  const rand = rng(7);
  const ids = new Set<string>();
  const traces = new Set<string>();
  const x = ident();
  for (let i = 0; i < 200_000; i++) {
    // Deliberately similar spans: same host and process, consecutive seqs and times.
    spanIdentity(makeSpan({ host: 'h', pid: 1, tid: i & 7, reqSeq: i, respSeq: i + 1, startUs: 1_732_500_000_000_000 + i, srcPort: Math.floor(rand() * 65536) }), x);
    ids.add(x.spanId);
    traces.add(traceIdOf(x.a, x.b, x.c, x.d));
    assert.notEqual(x.spanId, '0000000000000000');
  }
  assert.equal(ids.size, 200_000);
  assert.equal(traces.size, 200_000);
  for (const t of traces) { assert.match(t, /^[0-9a-f]{32}$/); break; }
});

test('group key: numeric pid, the same for the same (host, pid, thread group)', () => {
  const a = { key: 0, check: 0 }, b = { key: 0, check: 0 };
  groupKey(makeSpan({ host: 'h', pid: 42, threadGroup: '8812345678901234567' }), a);
  groupKey(makeSpan({ host: 'h', pid: Number('42'), threadGroup: '8812345678901234567', kind: 'exit', tid: 9 }), b);
  assert.deepEqual(a, b);
  groupKey(makeSpan({ host: 'h', pid: 43, threadGroup: '8812345678901234567' }), b);
  assert.notDeepEqual(a, b);
  assert.ok(Number.isInteger(a.key) && a.key >= 0 && a.key < 2 ** 30);
});

test('seq key is a small integer and separates different requests', () => {
  for (const a of [4294967295, 0, 1, 123456789]) {
    const k = seqKey(a, 1);
    assert.ok(Number.isInteger(k) && k >= 0 && k < 2 ** 30);
    assert.equal(seqKey(a, 0), a === 0 ? -1 : k, 'the answer\'s seq is not hashed');
  }
  assert.notEqual(seqKey(1, 0), seqKey(2, 0));
  const keys = new Set<number>();
  for (let a = 0; a < 100_000; a++) keys.add(seqKey((a * 2654435761) >>> 0, 1));
  assert.ok(keys.size > 99_980, `${100_000 - keys.size} collisions in 100,000 request seqs`);
});

test('app trace ids are normalised to 32 hex', () => {
  assert.equal(normaliseAppTraceId('4BF92F3577B34DA6A3CE929D0E0E4736'), '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(normaliseAppTraceId('a3ce929d0e0e4736'), '0000000000000000a3ce929d0e0e4736');
  // Datadog decimal 64-bit
  assert.equal(normaliseAppTraceId('12345678901234567890'), '0000000000000000ab54a98ceb1f0ad2');
  assert.equal(normaliseAppTraceId('18446744073709551615'), '0000000000000000ffffffffffffffff');
  assert.equal(normaliseAppTraceId('18446744073709551616'), '', 'above 2^64-1');
  assert.equal(normaliseAppTraceId('1234'), '000000000000000000000000000004d2');
  assert.equal(normaliseAppTraceId('00000000000000000000000000000000'), '');
  assert.equal(normaliseAppTraceId('0'), '');
  assert.equal(normaliseAppTraceId('not-an-id'), '');
  assert.equal(normaliseAppTraceId(''), '');
});

test('identity, group key and address hash from byte ranges equal those from strings', () => {
  const s = makeSpan({ host: 'web-01.example', pid: 4242, tid: 4243, kind: 'exit', reqSeq: 3735928559, respSeq: 16909060, startUs: 1_732_500_000_123_456, srcIp: '10.0.0.2', srcPort: 51234, dstIp: 'fe80::1', dstPort: 8080, threadGroup: '8812345678901234567' });
  const text = `x${s.host}|${s.srcIp}|${s.dstIp}|${s.threadGroup}|`;
  const b = Buffer.from(text, 'latin1');
  const at = (v: string) => text.indexOf(v);
  const p = newIdentityParts();
  p.hostStart = at(s.host); p.hostEnd = p.hostStart + s.host.length;
  p.pid = s.pid; p.tid = s.tid; p.entry = false; p.reqSeq = s.reqSeq; p.respSeq = s.respSeq; p.startUs = s.startUs;
  p.srcIpStart = at(s.srcIp); p.srcIpEnd = p.srcIpStart + s.srcIp.length; p.srcPort = s.srcPort;
  p.dstIpStart = at(s.dstIp); p.dstIpEnd = p.dstIpStart + s.dstIp.length; p.dstPort = s.dstPort;
  p.groupStart = at(s.threadGroup); p.groupEnd = p.groupStart + s.threadGroup.length;
  const x: SpanIdentity = { a: 0, b: 0, c: 0, d: 0, spanId: '' };
  const y = { a: 0, b: 0, c: 0, d: 0 };
  spanIdentity(s, x);
  spanIdentityAt(b, p, y);
  assert.deepEqual(y, { a: x.a, b: x.b, c: x.c, d: x.d });
  const g1 = { key: 0, check: 0 }, g2 = { key: 0, check: 0 };
  groupKey(s, g1);
  groupKeyAt(b, p, g2);
  assert.deepEqual(g2, g1);
  assert.equal(ipHashAt(b, p.srcIpStart, p.srcIpEnd), ipHash(s.srcIp));
  assert.equal(ipHashAt(b, 0, 0), ipHash(''));
  // an empty address hashes as the empty string in the identity too
  const s2 = { ...s, srcIp: '' };
  spanIdentity(s2, x);
  p.srcIpEnd = p.srcIpStart;
  spanIdentityAt(b, p, y);
  assert.deepEqual(y, { a: x.a, b: x.b, c: x.c, d: x.d });
});
