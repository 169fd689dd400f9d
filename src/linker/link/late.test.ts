// Spans arriving after their trace was emitted, and the late index's bounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createJoiner } from './joiner.js';
import { createMemoryJoinState } from './state.js';
import { OPTS, allSpans, chain, label, makeSpan, newWorld, serve, service } from './testkit.js';
import type { EbpfSpan, LinkedSpan } from '../../span/span.js';
import type { LateSpan } from './state.js';

const T0 = 1_732_500_000_000_000;
const NOW = T0 / 1000;
const byLabel = (spans: LinkedSpan[]) => new Map(spans.map((s) => [label(s), s]));

/** a → b → c: a.entry s0, a.exit s1, b.entry s2, b.exit s3, c.entry s4. */
function abc() {
  const w = newWorld(21);
  serve(w, chain([service(0), service(1), service(2)]), T0, null);
  const [aIn, aOut, bIn, bOut, cIn] = w.spans;
  assert.deepEqual([aIn, aOut, bIn, bOut, cIn].map((s) => s.kind), ['entry', 'exit', 'entry', 'exit', 'entry']);
  return { w, aIn, aOut, bIn, bOut, cIn };
}

test('a late entry joins its client\'s emitted trace, with the right parent, counted late', () => {
  const { aIn, aOut, bIn, bOut, cIn } = abc();
  const j = createJoiner(OPTS);
  [aIn, aOut, bIn, bOut].forEach((s, i) => j.add(s, i, NOW));
  const first = j.flush(NOW + OPTS.window + 10);
  assert.equal(first.length, 1);
  const t = first[0];
  assert.equal(j.stats().pendingSpans, 0);

  j.add(cIn, 9, NOW + 60_000);
  assert.equal(j.flush(NOW + 60_000).length, 0, 'held for the arrival grace');
  const late = j.flush(NOW + 62_000);
  assert.equal(late.length, 1);
  assert.equal(late[0].traceId, t.traceId);
  assert.equal(late[0].sampled, t.sampled);
  assert.deepEqual(late[0].batchIds, [9]);
  const [c] = late[0].spans;
  assert.equal(c.parentId, byLabel(t.spans).get(label(bOut))!.spanId);
  assert.equal(c.late, true);
  assert.equal(c.ebpfTraceId, t.spans[0].ebpfTraceId);
  assert.equal(j.stats().lateSpans, 1);
});

test('a late exit joins the emitted entry of its thread group', () => {
  const { aIn, aOut, bIn, bOut, cIn } = abc();
  const j = createJoiner(OPTS);
  [aIn, aOut, bIn, cIn].forEach((s, i) => j.add(s, i, NOW));
  const first = allSpans(j.flush(NOW + 30_000));
  // Without b's exit, c's entry was a trace of its own.
  assert.equal(new Set(first.map((s) => s.traceId)).size, 2);
  const m = byLabel(first);
  j.add(bOut, 5, NOW + 40_000);
  const [t] = j.flush(NOW + 45_000);
  const x = t.spans[0];
  assert.equal(x.parentId, m.get(label(bIn))!.spanId);
  assert.equal(x.traceId, m.get(label(aIn))!.traceId);
  assert.equal(x.late, true);
});

test('a late exit whose server entry was emitted as a root takes the server\'s trace id', () => {
  const { aOut, bIn, bOut, cIn } = abc();
  const j = createJoiner(OPTS);
  [bIn, bOut, cIn].forEach((s, i) => j.add(s, i, NOW));
  const first = allSpans(j.flush(NOW + 30_000));
  const b = byLabel(first).get(label(bIn))!;
  assert.equal(b.parentId, '');
  j.add(aOut, 5, NOW + 40_000); // a's entry never seen
  const [t] = j.flush(NOW + 45_000);
  assert.equal(t.traceId, b.traceId);
  assert.equal(t.spans[0].parentId, '');
  assert.equal(t.spans[0].late, true);
});

test('late spans of one batch link among themselves and to the emitted trace', () => {
  const w = newWorld(22);
  serve(w, chain([0, 1, 2, 3, 4].map((i) => service(i))), T0, null);
  const early = w.spans.slice(0, 4); // a.in a.out b.in b.out
  const lateBatch = w.spans.slice(4); // c.in c.out d.in d.out e.in
  const j = createJoiner(OPTS);
  early.forEach((s, i) => j.add(s, i, NOW));
  const [t] = j.flush(NOW + 30_000);
  lateBatch.reverse().forEach((s, i) => j.add(s, 100 + i, NOW + 40_000));
  const late = j.flush(NOW + 45_000);
  assert.equal(late.length, 1);
  assert.equal(late[0].traceId, t.traceId);
  const m = byLabel([...t.spans, ...late[0].spans]);
  for (const s of lateBatch) {
    const got = m.get(label(s))!;
    assert.equal(got.late, true);
    assert.equal(got.parentId, m.get(w.parentOf.get(label(s))!)!.spanId, label(s));
  }
  assert.equal(j.stats().lateSpans, 5);
});

test('late spans follow their trace\'s sampling decision, even with an error', () => {
  const { aIn, aOut, bIn, bOut, cIn } = abc();
  // Rate so low the trace is dropped by rate (no errors in it).
  const j = createJoiner({ ...OPTS, sampling_rate: 1e-12 });
  [aIn, aOut, bIn, bOut].forEach((s, i) => j.add(s, i, NOW));
  const [t] = j.flush(NOW + 30_000);
  assert.equal(t.sampled, false);
  j.add({ ...cIn, httpStatusCode: 503, status: 'error' } as EbpfSpan, 9, NOW + 40_000);
  const [late] = j.flush(NOW + 45_000);
  assert.equal(late.traceId, t.traceId);
  assert.equal(late.sampled, false);
  assert.equal(j.stats().sampledOutSpans, 5);
});

test('once late_retention has passed, a late span no longer joins (and memory is returned)', () => {
  const { aIn, aOut, bIn, bOut, cIn } = abc();
  const state = createMemoryJoinState({ maxLateKeys: 1000 });
  const j = createJoiner({ ...OPTS, late_retention: 60_000 }, state);
  [aIn, aOut, bIn, bOut].forEach((s, i) => j.add(s, i, NOW));
  const [t] = j.flush(NOW + 30_000);
  // Remembered: both entries (groups), a's entry (no client: seq unmatched), b's exit (seq unmatched).
  assert.equal(state.lateCount(), 3);
  j.flush(NOW + 30_000 + 60_000);
  assert.equal(state.lateCount(), 0);
  j.add(cIn, 9, NOW + 100_000);
  const [u] = j.flush(NOW + 110_000);
  assert.notEqual(u.traceId, t.traceId);
  assert.equal(u.spans[0].parentId, '');
  assert.equal(u.spans[0].late, false);
  assert.equal(state.frozenCount(), 0);
});

test('the late index never holds more than its maximum, oldest evicted first', () => {
  const state = createMemoryJoinState({ maxLateKeys: 100 });
  const j = createJoiner(OPTS, state);
  for (let i = 0; i < 1000; i++) {
    j.add(makeSpan({ kind: 'entry', pid: 1, threadGroup: String(i + 1), reqSeq: i + 1, respSeq: 7, startUs: T0 + i }), i, NOW);
  }
  j.flushAll(NOW);
  assert.equal(state.lateCount(), 100);
  // The oldest were evicted: an exit of group 1 no longer joins, one of group 1000 does.
  j.add(makeSpan({ kind: 'exit', pid: 1, threadGroup: '1', startUs: T0 + 500, reqSeq: 5000, respSeq: 1 }), 0, NOW + 1);
  j.add(makeSpan({ kind: 'exit', pid: 1, threadGroup: '1000', startUs: T0 + 999 + 500, reqSeq: 5001, respSeq: 1 }), 0, NOW + 1);
  const out = allSpans(j.flushAll(NOW + 2));
  assert.deepEqual(out.map((s) => s.late).sort(), [false, true]);
});

test('steady state: nothing of emitted traces stays but the expiring late index', () => {
  const state = createMemoryJoinState({ maxLateKeys: 1_000_000 });
  const j = createJoiner({ ...OPTS, window: 1000, late_retention: 5000 }, state);
  const svcs = [0, 1, 2, 3].map((i) => service(i));
  let now = NOW;
  let sawLate = 0;
  for (let round = 0; round < 30; round++) {
    const w = newWorld(100 + round);
    for (let i = 0; i < 200; i++) serve(w, chain(svcs), now * 1000 + i * 1000, null);
    w.spans.forEach((s, i) => j.add(s, i, now + 5));
    now += 1000;
    j.flush(now);
    sawLate = Math.max(sawLate, state.lateCount());
  }
  j.flush(now + 10_000);
  assert.ok(sawLate > 0);
  assert.equal(j.stats().pendingSpans, 0);
  assert.equal(j.stats().openTraces, 0);
  assert.equal(state.frozenCount(), 0);
  j.flush(now + 20_000);
  assert.equal(state.lateCount(), 0);
});

test('late index columns: records read back exactly through growth, wrap-around, eviction and expiry', () => {
  for (const [maxKeys, keep] of [[3500, 3000], [100_000, 15_000]]) {
  const state = createMemoryJoinState({ maxLateKeys: maxKeys });
  const trace = (i: number) => ({ traceId: `t${i}`, ebpfTraceId: `e${i}`, sampled: i % 3 === 0 });
  const traces = Array.from({ length: 50 }, (_, i) => trace(i));
  const rec = (i: number): LateSpan => ({
    idA: Math.imul(0x9e3779b1, i + 1), idB: i | 0, entry: true, gkey: i + 1, gchk: (i * 2654435761) | 0, skey: i % 2 ? i + 7 : -1,
    reqSeq: (i * 40503) >>> 0, respSeq: 4294967295 - i, startUs: 1732500000000000 + i * 1.5e3, endUs: 1732500000000000 + i * 1.5e3 + 77,
    srcPort: i % 65536, dstPort: 65535 - (i % 65536), srcIpH: i % 2 ? -123456 - i : 0, dstIpH: i % 2 ? 987654 + i : 0,
    trace: traces[i % 50], seqMatched: false, expireAtMs: 1000 + i,
  });
  for (let i = 0; i < 30_000; i++) {
    state.remember(rec(i));
    // Expiring the first half moves the ring's head; then the ring must grow (when maxKeys
    // allows) with its live records wrapped around the end of the arrays.
    if (i % 1000 === 999 && i < 15_000) state.expire(1000 + i - 3000);
    if (i % 7919 === 0) {
      // Any live record reads back as it was written.
      for (const k of [i, i - 1, i - 2500]) {
        if (k < 0) continue;
        const got = state.lateGroup(k + 1);
        assert.deepEqual(got, rec(k), `record ${k} at ${i}`);
      }
    }
  }
  state.expire(1000 + 29_999 - keep);
  assert.equal(state.lateCount(), keep);
  assert.equal(state.lateGroup(30_000 - keep - 1 + 1), undefined, 'expired');
  for (let k = 30_000 - keep; k < 30_000; k += 97) assert.deepEqual(state.lateGroup(k + 1), rec(k), `record ${k} at the end`);
  // settle: no longer a seq candidate, still found by group with seqMatched set.
  const r = state.lateSeq(29_999 + 7)!;
  assert.deepEqual([r.idA, r.idB], [Math.imul(0x9e3779b1, 30_000), 29_999]);
  state.settle(r);
  assert.equal(state.lateSeq(29_999 + 7), undefined);
  assert.equal(state.lateGroup(30_000)!.seqMatched, true);
  state.expire(1e9);
  assert.equal(state.lateCount(), 0);
  }
});
