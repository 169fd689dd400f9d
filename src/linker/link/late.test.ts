// Spans arriving after their trace was emitted, and the late index's bounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createJoiner } from './joiner.js';
import { createMemoryJoinState } from './state.js';
import { OPTS, allSpans, chain, label, makeSpan, newWorld, serve, service } from './testkit.js';
import type { EbpfSpan, LinkedSpan } from '../../span/span.js';

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

test('a retained span whose retention ends while a late span holds it frozen is released once that cluster is emitted', () => {
  const { aIn, aOut, bIn, bOut, cIn } = abc();
  const state = createMemoryJoinState({ maxLateKeys: 1000 });
  const j = createJoiner({ ...OPTS, late_retention: 5_000 }, state);
  [aIn, aOut, bIn, cIn].forEach((s, i) => j.add(s, i, NOW));
  const first = byLabel(allSpans(j.flush(NOW + 30_000)));
  const retained = state.lateCount();
  assert.ok(retained > 0);
  // b's exit arrives late (at +33 s): it pulls b's entry (and c's entry) back in, frozen.
  j.add(bOut, 5, NOW + 33_000);
  assert.equal(j.flush(NOW + 33_000).length, 0, 'held for the arrival grace');
  assert.ok(state.frozenCount() > 0);
  // Their retention (emitted at +30 s, 5 s) ends at +35 s, before the late cluster's deadline.
  j.flush(NOW + 34_999);
  assert.ok(state.frozenCount() > 0);
  const [t] = j.flush(NOW + 35_000 + OPTS.window);
  const x = t.spans[0];
  assert.equal(x.parentId, first.get(label(bIn))!.spanId);
  assert.equal(x.traceId, first.get(label(aIn))!.traceId);
  assert.equal(x.late, true);
  // Everything was released: nothing retained, nothing frozen, nothing pending.
  assert.equal(state.frozenCount(), 0);
  assert.equal(state.lateCount(), 0);
  assert.equal(j.stats().pendingSpans, 0);
  assert.equal(state.spans.used, 0, 'every record is free again');
  // A late span for b's group now starts a trace of its own.
  j.add({ ...bOut, startUs: bOut.startUs + 1, reqSeq: 99, respSeq: 98 } as EbpfSpan, 6, NOW + 60_000);
  const [u] = j.flushAll(NOW + 60_000);
  assert.equal(u.spans[0].late, false);
  assert.equal(u.spans[0].parentId, '');
});

test('retention and eviction free every record: a long run with a small late index ends empty', () => {
  const state = createMemoryJoinState({ maxLateKeys: 400 });
  const j = createJoiner({ ...OPTS, window: 1000, late_retention: 3000 }, state);
  const svcs = [0, 1, 2].map((i) => service(i));
  let now = NOW;
  let prev: EbpfSpan[] = [];
  let sawFrozen = 0;
  for (let round = 0; round < 40; round++) {
    const w = newWorld(300 + round);
    for (let i = 0; i < 50; i++) serve(w, chain(svcs), now * 1000 + i * 1000, null);
    w.spans.forEach((s, i) => j.add(s, i, now + 5));
    // every third round, exits of two rounds ago arrive again, late: they pull their emitted entries back in
    if (round % 3 === 2) prev.filter((s) => s.kind === 'exit').slice(0, 20).forEach((s, i) => j.add(s, 1000 + i, now + 5));
    sawFrozen = Math.max(sawFrozen, state.frozenCount());
    if (round % 2 === 0) prev = w.spans;
    now += 1000;
    j.flush(now);
    assert.ok(state.lateCount() <= 400);
  }
  assert.ok(sawFrozen > 0, 'late spans pulled retained spans back in');
  assert.ok(j.stats().lateSpans > 0);
  j.flushAll(now + 1);
  j.flush(now + 10_000);
  assert.equal(state.lateCount(), 0);
  assert.equal(state.frozenCount(), 0);
  assert.equal(state.spans.used, 0);
});
