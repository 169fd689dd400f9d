// Topologies with known true trees, fed in shuffled order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createJoiner } from './joiner.js';
import {
  OPTS, allSpans, chain, checkTrees, label, makeSpan, newWorld, serve, service, shuffle, type CallPlan,
} from './testkit.js';
import type { EbpfSpan, LinkedSpan } from '../../span/span.js';

const T0 = 1_732_500_000_000_000; // µs
const NOW = T0 / 1000; // ms: spans "just ended" around here

function feed(spans: EbpfSpan[], opts = OPTS) {
  const j = createJoiner(opts);
  spans.forEach((s, i) => j.add(s, i, NOW + 100));
  return { j, out: allSpans(j.flushAll(NOW + 200)) };
}

const byLabel = (spans: LinkedSpan[]) => new Map(spans.map((s) => [label(s), s]));

test('a chain through five services is one trace with the true parents', () => {
  const w = newWorld(1);
  const svcs = [0, 1, 2, 3, 4].map((i) => service(i));
  serve(w, chain(svcs), T0, null);
  assert.equal(w.spans.length, 9);
  const { j, out } = feed(shuffle(w.spans, w.rand));
  assert.deepEqual(checkTrees(w, out), []);
  assert.equal(new Set(out.map((s) => s.traceId)).size, 1);
  assert.equal(out.filter((s) => s.parentId === '').length, 1);
  for (const s of out) {
    assert.match(s.traceId, /^[0-9a-f]{32}$/);
    assert.match(s.spanId, /^[0-9a-f]{16}$/);
    assert.equal(s.ebpfTraceId, s.traceId);
    assert.equal(s.late, false);
  }
  const st = j.stats();
  // retained for late spans: the five entries (each opened a thread group)
  assert.deepEqual(st, { pendingSpans: 0, openTraces: 0, linkedSpans: 9, lateSpans: 0, sampledOutSpans: 0, ambiguousSeqMatches: 0, retainedSpans: 5 });
});

test('fan-out and nested fan-out', () => {
  const w = newWorld(2);
  const s = (i: number) => service(i);
  const plan: CallPlan = {
    svc: s(0),
    calls: [
      { svc: s(1), calls: [{ svc: s(5) }, { svc: s(6) }, { svc: s(7) }] },
      { svc: s(2) }, { svc: s(3), calls: [{ svc: s(8), calls: [{ svc: s(9) }] }] }, { svc: s(4) },
      { svc: s(1), calls: [{ svc: s(5) }] },
    ],
  };
  for (let i = 0; i < 20; i++) serve(w, plan, T0 + i * 50_000, null);
  const { out } = feed(shuffle(w.spans, w.rand));
  assert.deepEqual(checkTrees(w, out), []);
  assert.equal(new Set(out.map((x) => x.traceId)).size, 20);
});

test('many concurrent identical requests between the same hosts are not mixed up', () => {
  const w = newWorld(3);
  const svcs = [service(0), service(1), service(2)];
  // 500 identical requests, all starting within the same 2 ms, on the same three processes.
  for (let i = 0; i < 500; i++) serve(w, chain(svcs), T0 + (i % 2000), null);
  const { j, out } = feed(shuffle(w.spans, w.rand));
  assert.deepEqual(checkTrees(w, out), []);
  assert.equal(new Set(out.map((x) => x.traceId)).size, 500);
  assert.equal(j.stats().ambiguousSeqMatches, 0);
});

test('a keep-alive connection carrying many exchanges (same ports, different seqs)', () => {
  const w = newWorld(4);
  const a = service(0), b = service(1), c = service(2);
  // One request to a makes 30 calls to b over one connection (same client port), and 30
  // other requests each call b over that same connection too.
  serve(w, { svc: a, calls: Array.from({ length: 30 }, () => ({ svc: b, clientPort: 41000, calls: [{ svc: c, clientPort: 42000 }] })) }, T0, null);
  for (let i = 0; i < 30; i++) serve(w, { svc: a, calls: [{ svc: b, clientPort: 41000 }] }, T0 + 1_000_000 + i * 10_000, null);
  const { out } = feed(shuffle(w.spans, w.rand));
  assert.deepEqual(checkTrees(w, out), []);
  assert.equal(new Set(out.map((x) => x.traceId)).size, 31);
});

test('an exit that ties between equally good entries is not linked, and counted', () => {
  const exit = makeSpan({ host: 'a', kind: 'exit', pid: 1, reqSeq: 77, respSeq: 88, startUs: T0, durationUs: 10_000, srcIp: '10.0.0.1', srcPort: 5000, dstIp: '10.96.0.10', dstPort: 80, attrs: { label: 'x' } });
  // Behind NAT both servers see other addresses and ports; neither is better.
  const e1 = makeSpan({ host: 'b', kind: 'entry', pid: 2, reqSeq: 77, respSeq: 88, startUs: T0 + 100, durationUs: 5000, srcIp: '10.1.0.1', srcPort: 8080, dstIp: '10.2.0.1', dstPort: 33000, attrs: { label: 'e1' } });
  const e2 = makeSpan({ ...e1, host: 'c', pid: 3, srcIp: '10.1.0.2', attrs: { label: 'e2' } });
  let { j, out } = feed([exit, e1, e2]);
  let m = byLabel(out);
  assert.equal(m.get('e1')!.parentId, '');
  assert.equal(m.get('e2')!.parentId, '');
  assert.equal(new Set(out.map((s) => s.traceId)).size, 3);
  assert.equal(j.stats().ambiguousSeqMatches, 1);

  // When one of them agrees on ports, it wins.
  const e3 = makeSpan({ ...e2, srcIp: '10.96.0.10', srcPort: 80, dstIp: '10.0.0.1', dstPort: 5000, attrs: { label: 'e3' } });
  ({ j, out } = feed([e3, exit, e1].map((s) => ({ ...s }))));
  m = byLabel(out);
  assert.equal(m.get('e3')!.parentId, m.get('x')!.spanId);
  assert.equal(m.get('e1')!.parentId, '');
  assert.equal(j.stats().ambiguousSeqMatches, 0);

  // Behind NAT with a single candidate: linked though no address or port agrees.
  ({ out } = feed([{ ...exit }, { ...e1 }]));
  m = byLabel(out);
  assert.equal(m.get('e1')!.parentId, m.get('x')!.spanId);
});

test('two clients with the same seqs for one server: a tie on the server side is not linked', () => {
  const x1 = makeSpan({ host: 'a', kind: 'exit', pid: 1, reqSeq: 5, respSeq: 6, startUs: T0, durationUs: 10_000, attrs: { label: 'x1' } });
  const x2 = makeSpan({ ...x1, host: 'b', attrs: { label: 'x2' } });
  const e = makeSpan({ host: 'c', kind: 'entry', pid: 3, reqSeq: 5, respSeq: 6, startUs: T0 + 10, durationUs: 100, attrs: { label: 'e' } });
  const { j, out } = feed([x1, e, x2]);
  assert.equal(byLabel(out).get('e')!.parentId, '');
  assert.equal(j.stats().ambiguousSeqMatches, 2);
});

test('times decide: the server span must lie within the client span, widened by clock_skew', () => {
  const exit = makeSpan({ host: 'a', kind: 'exit', pid: 1, reqSeq: 1, respSeq: 2, startUs: T0, durationUs: 10_000, attrs: { label: 'x' } });
  const entry = (shiftUs: number, label: string) => makeSpan({ host: 'b', kind: 'entry', pid: 2, reqSeq: 1, respSeq: 2, startUs: T0 + shiftUs, durationUs: 9_000, attrs: { label } });
  // clock_skew 500 ms: an entry 400 ms off still fits; 2 s off does not.
  let m = byLabel(feed([{ ...exit }, entry(-400_000, 'e')]).out);
  assert.equal(m.get('e')!.parentId, m.get('x')!.spanId);
  m = byLabel(feed([{ ...exit }, entry(2_000_000, 'e')]).out);
  assert.equal(m.get('e')!.parentId, '');
  m = byLabel(feed([{ ...exit }, entry(-2_000_000, 'e')]).out);
  assert.equal(m.get('e')!.parentId, '');
  // No skew tolerated: must be strictly within.
  const strict = { ...OPTS, clock_skew: 0 };
  m = byLabel(feed([{ ...exit }, entry(500, 'e')], strict).out);
  assert.equal(m.get('e')!.parentId, m.get('x')!.spanId);
  m = byLabel(feed([{ ...exit }, entry(1500, 'e')], strict).out);
  assert.equal(m.get('e')!.parentId, '', 'ends after the client ended');
});

test('a client that read no answer (it timed out) is the parent of the server span that got its request, which may end later', () => {
  // The client gave up after 300 ms; the server took a second and answered a closed connection.
  const exit = makeSpan({ host: 'a', kind: 'exit', pid: 1, reqSeq: 7, respSeq: 0, startUs: T0, durationUs: 300_000, httpStatusCode: 0, status: 'error', attrs: { label: 'x' } });
  const entry = (o: Partial<EbpfSpan>) => makeSpan({ host: 'b', kind: 'entry', pid: 2, reqSeq: 7, respSeq: 99, startUs: T0 + 150, durationUs: 1_000_000, ...o, attrs: { label: 'e' } });
  let m = byLabel(feed([{ ...exit }, entry({})]).out);
  assert.equal(m.get('e')!.parentId, m.get('x')!.spanId, 'linked though the server ended after the client');
  assert.equal(m.get('e')!.traceId, m.get('x')!.traceId);
  m = byLabel(feed([entry({ respSeq: 0, durationUs: 50 }), { ...exit }]).out);
  assert.equal(m.get('e')!.parentId, m.get('x')!.spanId, 'neither got an answer out (the server\'s write failed)');
  // the server must have got the request while the client waited (clock_skew 500 ms)
  m = byLabel(feed([{ ...exit }, entry({ startUs: T0 + 300_000 + 400_000 })]).out);
  assert.equal(m.get('e')!.parentId, m.get('x')!.spanId, 'within the skew of the client giving up');
  m = byLabel(feed([{ ...exit }, entry({ startUs: T0 + 300_000 + 600_000 })]).out);
  assert.equal(m.get('e')!.parentId, '', 'began after the client had given up');
  m = byLabel(feed([{ ...exit }, entry({ reqSeq: 8 })]).out);
  assert.equal(m.get('e')!.parentId, '', 'another request');
  // a client that did read an answer still needs the server's: the same respSeq
  const answered = { ...exit, respSeq: 5, durationUs: 2_000_000, httpStatusCode: 200, status: 'ok' as const };
  m = byLabel(feed([answered, entry({ respSeq: 6 })]).out);
  assert.equal(m.get('e')!.parentId, '', 'another answer');
  m = byLabel(feed([{ ...answered }, entry({ respSeq: 5 })]).out);
  assert.equal(m.get('e')!.parentId, m.get('x')!.spanId);
  // two servers that got the same request seq while one client waited: a tie, not linked
  const { j, out } = feed([{ ...exit }, entry({}), makeSpan({ host: 'c', kind: 'entry', pid: 3, reqSeq: 7, respSeq: 42, startUs: T0 + 200, durationUs: 10, attrs: { label: 'e2' } })]);
  for (const s of out) assert.equal(s.parentId, '');
  assert.equal(j.stats().ambiguousSeqMatches, 1);
});

test('seqs 0/0 never match; a span is never its own parent', () => {
  const x = makeSpan({ host: 'a', kind: 'exit', pid: 1, startUs: T0, durationUs: 10_000, attrs: { label: 'x' } });
  const e = makeSpan({ host: 'b', kind: 'entry', pid: 2, startUs: T0 + 10, durationUs: 100, attrs: { label: 'e' } });
  const { out } = feed([x, e]);
  for (const s of out) assert.equal(s.parentId, '');
  for (const s of out) assert.notEqual(s.parentId, s.spanId);
});

test('thread group: an exit never joins an entry that had already finished, nor another process', () => {
  const e1 = makeSpan({ host: 'a', kind: 'entry', pid: 7, threadGroup: '99', startUs: T0, durationUs: 1000, reqSeq: 1, respSeq: 2, attrs: { label: 'e1' } });
  const x1 = makeSpan({ host: 'a', kind: 'exit', pid: 7, threadGroup: '99', startUs: T0 + 500, durationUs: 100, reqSeq: 3, respSeq: 4, attrs: { label: 'x1' } });
  // Same thread group id reused by a later entry.
  const e2 = makeSpan({ ...e1, startUs: T0 + 50_000, reqSeq: 5, respSeq: 6, attrs: { label: 'e2' } });
  const x2 = makeSpan({ ...x1, startUs: T0 + 50_500, reqSeq: 7, respSeq: 8, attrs: { label: 'x2' } });
  // Finished-entry case: exit long after e2 ended.
  const x3 = makeSpan({ ...x1, startUs: T0 + 90_000, reqSeq: 9, respSeq: 10, attrs: { label: 'x3' } });
  // Same group id in another process or host.
  const x4 = makeSpan({ ...x1, pid: 8, reqSeq: 11, respSeq: 12, attrs: { label: 'x4' } });
  const x5 = makeSpan({ ...x1, host: 'b', reqSeq: 13, respSeq: 14, attrs: { label: 'x5' } });
  const { out } = feed([x3, x2, e2, x1, x4, e1, x5]);
  const m = byLabel(out);
  assert.equal(m.get('x1')!.parentId, m.get('e1')!.spanId);
  assert.equal(m.get('x2')!.parentId, m.get('e2')!.spanId);
  assert.equal(m.get('x3')!.parentId, '');
  assert.equal(m.get('x4')!.parentId, '');
  assert.equal(m.get('x5')!.parentId, '');
  // threadGroup '' or '0': no group.
  const g0 = feed([{ ...e1, threadGroup: '0' }, { ...x1, threadGroup: '0' }]).out;
  for (const s of g0) assert.equal(s.parentId, '');
});

test('a span sent twice keeps one id, links like the first copy, and is not ambiguous', () => {
  const w = newWorld(5);
  serve(w, chain([service(0), service(1), service(2)]), T0, null);
  const twice = [...w.spans, ...w.spans.map((s) => ({ ...s, attrs: { ...s.attrs } }))];
  const j = createJoiner(OPTS);
  shuffle(twice, w.rand).forEach((s, i) => j.add(s, i, NOW));
  const out = allSpans(j.flushAll(NOW + 1));
  assert.equal(out.length, 10);
  const groups = new Map<string, LinkedSpan[]>();
  for (const s of out) groups.set(label(s), [...(groups.get(label(s)) ?? []), s]);
  for (const [, [a, b]] of groups) {
    assert.equal(a.spanId, b.spanId);
    assert.equal(a.parentId, b.parentId);
    assert.equal(a.traceId, b.traceId);
  }
  assert.deepEqual(checkTrees(w, [...groups.values()].map((g) => g[0])), []);
  assert.equal(j.stats().ambiguousSeqMatches, 0);
});

test('batch ids travel with their spans', () => {
  const w = newWorld(6);
  serve(w, chain([service(0), service(1)]), T0, null);
  const j = createJoiner(OPTS);
  w.spans.forEach((s, i) => j.add(s, 100 + i, NOW));
  const [t] = j.flushAll(NOW);
  assert.equal(t.spans.length, 3);
  for (let i = 0; i < 3; i++) assert.equal(t.batchIds[i], 100 + w.spans.findIndex((s) => label(s) === label(t.spans[i])));
});

test('the tree checker itself catches a wrong parent, a split trace and a merged trace', () => {
  const w = newWorld(7);
  serve(w, chain([service(0), service(1), service(2)]), T0, null);
  serve(w, chain([service(0), service(1)]), T0 + 5000, null);
  const { out } = feed(w.spans.slice());
  assert.deepEqual(checkTrees(w, out), []);
  const wrongParent = out.map((s) => ({ ...s }));
  wrongParent[1].parentId = wrongParent[3].spanId;
  assert.ok(checkTrees(w, wrongParent).some((p) => p.includes('parent')));
  const split = out.map((s) => ({ ...s }));
  split[2].traceId = 'f'.repeat(32);
  assert.ok(checkTrees(w, split).length > 0);
  const merged = out.map((s) => ({ ...s, traceId: out[0].traceId }));
  assert.ok(checkTrees(w, merged).some((p) => p.includes('shared')));
  assert.ok(checkTrees(w, out.slice(1)).some((p) => p.includes('not emitted')));
});

test('contradictory keys that would make a cycle are cut, the same way in any order', () => {
  // An exit and an entry of one thread group that also match each other by seqs: each would
  // be the other's parent.
  const e = makeSpan({ host: 'a', kind: 'entry', pid: 1, threadGroup: '5', reqSeq: 9, respSeq: 10, startUs: T0, durationUs: 1000, attrs: { label: 'e' } });
  const x = makeSpan({ host: 'a', kind: 'exit', pid: 1, threadGroup: '5', reqSeq: 9, respSeq: 10, startUs: T0, durationUs: 1000, attrs: { label: 'x' } });
  const one = feed([{ ...e }, { ...x }]).out;
  const two = feed([{ ...x }, { ...e }]).out;
  for (const out of [one, two]) {
    assert.equal(out.filter((s) => s.parentId === '').length, 1);
    assert.equal(new Set(out.map((s) => s.traceId)).size, 1);
  }
  assert.deepEqual(one.map((s) => [s.spanId, s.parentId]).sort(), two.map((s) => [s.spanId, s.parentId]).sort());
});
