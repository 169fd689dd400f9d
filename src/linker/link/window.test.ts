// Windows follow span time, arrivals in any order, determinism across linkers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createJoiner } from './joiner.js';
import { OPTS, allSpans, chain, checkTrees, label, newWorld, serve, service, shuffle, type World } from './testkit.js';
import type { EmittedTrace } from '../joiner.js';
import type { EbpfSpan, LinkedSpan } from '../../span/span.js';

const T0 = 1_732_500_000_000_000;

/** Builds `n` traces of varied shapes starting over `spreadMs`. */
function traffic(seed: number, n: number, spreadMs: number, t0 = T0): World {
  const w = newWorld(seed);
  const svcs = Array.from({ length: 12 }, (_, i) => service(i, 4));
  for (let i = 0; i < n; i++) {
    const start = t0 + Math.floor(w.rand() * spreadMs * 1000);
    const k = Math.floor(w.rand() * 4);
    if (k === 0) serve(w, chain(svcs.slice(0, 5)), start, null);
    else if (k === 1) serve(w, { svc: svcs[5], calls: [{ svc: svcs[6] }, { svc: svcs[7], calls: [{ svc: svcs[8] }] }, { svc: svcs[9] }] }, start, null);
    else if (k === 2) serve(w, { svc: svcs[10] }, start, null);
    else serve(w, chain([svcs[11], svcs[3], svcs[4]]), start, null);
  }
  return w;
}

const endMs = (s: EbpfSpan) => (s.startUs + s.durationUs) / 1000;

interface Run {
  out: LinkedSpan[];
  emittedAt: Map<string, number>; // label → flush time
  traces: EmittedTrace[];
}

/** Feeds spans at their arrival times, flushing every `tickMs`; then a final flush far ahead. */
function replay(events: { at: number; span: EbpfSpan }[], tickMs: number, opts = OPTS): Run & { j: ReturnType<typeof createJoiner> } {
  const j = createJoiner(opts);
  events.sort((a, b) => a.at - b.at);
  const traces: EmittedTrace[] = [];
  const emittedAt = new Map<string, number>();
  let clock = Math.floor(events[0].at / tickMs) * tickMs;
  const take = (now: number, ts: EmittedTrace[]) => {
    for (const t of ts) {
      traces.push(t);
      for (const s of t.spans) emittedAt.set(label(s), now);
    }
  };
  let i = 0;
  const last = events[events.length - 1].at;
  while (i < events.length || clock <= last + 3 * opts.window) {
    while (i < events.length && events[i].at <= clock) j.add(events[i].span, i, events[i++].at);
    clock += tickMs;
    take(clock, j.flush(clock));
    if (i >= events.length && j.stats().openTraces === 0) break;
  }
  assert.equal(j.flushAll(clock).length, 0, 'flush emitted everything by itself');
  return { j, out: allSpans(traces), emittedAt, traces };
}

test('spans arriving out of order, up to 10 s after they ended, all join their trace (window 20 s)', () => {
  const w = traffic(11, 3000, 60_000);
  const events = w.spans.map((span) => ({ at: endMs(span) + Math.floor(w.rand() * 10_000), span }));
  const { j, out, emittedAt } = replay(events, 1000);
  assert.deepEqual(checkTrees(w, out), []);
  assert.equal(j.stats().lateSpans, 0);
  assert.equal(j.stats().pendingSpans, 0);
  // Emitted once no span joined for `window` of span time: never before max end + window,
  // and within one flush tick after it (arrivals were all earlier than that).
  const byRoot = new Map<string, EbpfSpan[]>();
  for (const s of w.spans) {
    const r = w.rootOf.get(label(s))!;
    byRoot.set(r, [...(byRoot.get(r) ?? []), s]);
  }
  for (const spans of byRoot.values()) {
    const due = Math.max(...spans.map(endMs)) + OPTS.window;
    const at = emittedAt.get(label(spans[0]))!;
    assert.ok(at >= due && at < due + 1000 + 1, `emitted at ${at}, due ${due}`);
  }
});

test('old spans (replayed, span time long past) arriving over 1.5 s still join: the arrival grace', () => {
  const w = traffic(12, 500, 1000, T0 - 3600_000_000);
  const now = T0 / 1000;
  const events = shuffle(w.spans, w.rand).map((span) => ({ at: now + Math.floor(w.rand() * 1500), span }));
  const { j, out } = replay(events, 100);
  assert.deepEqual(checkTrees(w, out), []);
  assert.equal(j.stats().lateSpans, 0);
});

test('with a short window, a subtree arriving late joins its emitted trace with the right ids and parents', () => {
  // Window 1 s (grace 1 s). In every trace one non-root entry and everything below it (a
  // slow agent's batch, say) arrives 3–5 s after the rest, when the rest was emitted.
  const opts = { ...OPTS, window: 1000 };
  const w = traffic(13, 400, 20_000);
  const children = new Map<string, string[]>();
  for (const [l, parent] of w.parentOf) if (parent !== '') children.set(parent, [...(children.get(parent) ?? []), l]);
  const byRoot = new Map<string, string[]>();
  for (const s of w.spans) if (s.kind === 'entry' && w.parentOf.get(label(s)) !== '') byRoot.set(w.rootOf.get(label(s))!, [...(byRoot.get(w.rootOf.get(label(s))!) ?? []), label(s)]);
  const delayed = new Set<string>();
  for (const entries of byRoot.values()) {
    const todo = [entries[Math.floor(w.rand() * entries.length)]];
    while (todo.length) {
      const l = todo.pop()!;
      delayed.add(l);
      todo.push(...(children.get(l) ?? []));
    }
  }
  const spanOf = new Map(w.spans.map((s) => [label(s), s]));
  const events = w.spans.map((span) => {
    const l = label(span);
    // A delayed subtree arrives together, at one time per subtree.
    let top = l;
    while (delayed.has(w.parentOf.get(top)!)) top = w.parentOf.get(top)!;
    return { at: delayed.has(l) ? endMs(spanOf.get(top)!) + 3000 + (top.length * 997) % 2000 : endMs(span) + Math.floor(w.rand() * 300), span };
  });
  const { j, out } = replay(events, 250, opts);
  assert.equal(j.stats().lateSpans, delayed.size);
  assert.deepEqual(checkTrees(w, out), []);
  for (const s of out) assert.equal(s.late, delayed.has(label(s)), label(s));
});

function idsOf(out: LinkedSpan[]) {
  return new Map(out.map((s) => [label(s), `${s.spanId} ${s.traceId} ${s.parentId} ${s.ebpfTraceId}`]));
}

test('determinism: two joiners fed the same spans in different orders and at different times agree', () => {
  const w = traffic(14, 2000, 30_000);
  const a = replay(w.spans.map((span) => ({ at: endMs(span) + Math.floor(w.rand() * 8000), span: { ...span } })), 1000);
  const b = replay(shuffle(w.spans, w.rand).map((span) => ({ at: endMs(span) + Math.floor(w.rand() * 3000), span: { ...span } })), 700);
  const j = createJoiner(OPTS);
  shuffle(w.spans, w.rand).forEach((span, i) => j.add({ ...span }, i, T0 / 1000));
  const c = allSpans(j.flushAll(T0 / 1000));
  assert.deepEqual(checkTrees(w, a.out), []);
  assert.deepEqual(idsOf(a.out), idsOf(b.out));
  assert.deepEqual(idsOf(a.out), idsOf(c));
});

test('a new joiner (a restart) gives the same spans the same ids', () => {
  const w = traffic(15, 200, 5000);
  const run = () => {
    const j = createJoiner(OPTS);
    w.spans.forEach((span, i) => j.add({ ...span }, i, T0 / 1000));
    return idsOf(allSpans(j.flushAll(T0 / 1000)));
  };
  assert.deepEqual(run(), run());
});

test('no id repeats across 100,000 spans', () => {
  const w = traffic(16, 25_000, 600_000);
  const j = createJoiner(OPTS);
  w.spans.forEach((span, i) => j.add(span, i, T0 / 1000));
  const out = allSpans(j.flushAll(T0 / 1000));
  assert.ok(out.length >= 100_000, `${out.length} spans`);
  assert.equal(new Set(out.map((s) => s.spanId)).size, out.length);
  assert.equal(new Set(out.map((s) => s.traceId)).size, 25_000);
  assert.deepEqual(checkTrees(w, out), []);
});
