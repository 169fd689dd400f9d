// Whole-trace sampling and the application trace id rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createJoiner, type JoinerOptions } from './joiner.js';
import { keptByRate, rateThreshold } from './sampling.js';
import { OPTS, allSpans, chain, checkTrees, label, newWorld, serve, service, shuffle, type CallPlan, type World } from './testkit.js';
import type { EmittedTrace } from '../joiner.js';

const T0 = 1_732_500_000_000_000;
const NOW = T0 / 1000;
const svcs = [0, 1, 2, 3, 4].map((i) => service(i));

function run(w: World, opts: JoinerOptions = OPTS): EmittedTrace[] {
  const j = createJoiner(opts);
  shuffle(w.spans, w.rand).forEach((s, i) => j.add(s, i, NOW));
  return j.flushAll(NOW);
}

/** `n` traces a → b → c built from `plan(i)`. */
function many(n: number, plan: (i: number) => CallPlan, seed = 31): World {
  const w = newWorld(seed);
  for (let i = 0; i < n; i++) serve(w, plan(i), T0 + i * 10, null);
  return w;
}

/** Every tree is emitted whole in one EmittedTrace: returns the share of trees kept. */
function keptShare(w: World, traces: EmittedTrace[]): number {
  assert.deepEqual(checkTrees(w, allSpans(traces)), []);
  const roots = new Map<string, boolean>();
  for (const t of traces) {
    const rs = new Set(t.spans.map((s) => w.rootOf.get(label(s))));
    assert.equal(rs.size, 1, 'one tree per emitted trace');
    const r = [...rs][0]!;
    assert.ok(!roots.has(r), 'a tree is emitted once');
    roots.set(r, t.sampled);
  }
  return [...roots.values()].filter(Boolean).length / roots.size;
}

test('rate sampling keeps whole traces, at the configured ratio, over 10,000 traces', () => {
  for (const rate of [0.1, 0.5]) {
    const w = many(10_000, () => chain(svcs.slice(0, 3)));
    const share = keptShare(w, run(w, { ...OPTS, sampling_rate: rate }));
    // 10,000 Bernoulli draws: σ ≤ 0.005; allow 5σ.
    assert.ok(Math.abs(share - rate) < 0.025, `rate ${rate}: kept ${share}`);
  }
});

test('the rate decision is a function of the trace id (two linkers agree)', () => {
  const th = rateThreshold(0.3);
  const id = '4bf92f3577b34da6a3ce929d0e0e4736';
  assert.equal(keptByRate(id, th), keptByRate(id, th));
  assert.equal(keptByRate(id, rateThreshold(1)), true);
  // Knuth's hash as Datadog computes it: (id × 1111111111111111111) mod 2^64 < rate × 2^64.
  const low = 0xa3ce929d0e0e4736n;
  const h = (low * 1111111111111111111n) % (1n << 64n);
  assert.equal(keptByRate(id, th), h < BigInt(Math.floor(0.3 * 2 ** 64)));
});

test('application flags: keep (1) and drop (-1) override the rate, for the whole trace', () => {
  // The flag sits on the middle service's entry (b), as when a header arrives mid-chain.
  const flagged = (flag: 1 | -1) => (i: number): CallPlan => ({ svc: svcs[0], calls: [{ svc: svcs[1], appSampled: i % 2 ? flag : 0, calls: [{ svc: svcs[2] }] }] });
  let w = many(2000, flagged(1));
  let traces = run(w, { ...OPTS, sampling_rate: 1e-9 });
  let flaggedKept = 0, unflaggedKept = 0;
  for (const t of traces) {
    const has = t.spans.some((s) => s.appSampled === 1);
    if (t.sampled) has ? flaggedKept++ : unflaggedKept++;
  }
  assert.equal(flaggedKept, 1000);
  assert.equal(unflaggedKept, 0);
  assert.deepEqual(checkTrees(w, allSpans(traces)), []);

  w = many(2000, flagged(-1));
  traces = run(w, { ...OPTS, sampling_rate: 1 });
  assert.equal(traces.filter((t) => t.sampled).length, 1000);
  for (const t of traces) assert.equal(t.sampled, !t.spans.some((s) => s.appSampled === -1));
});

test('error traces are kept whatever the rate and over a drop flag; precedence error > flag > rate', () => {
  const plan = (status: number, flag: 1 | 0 | -1): CallPlan => ({ svc: svcs[0], appSampled: flag, calls: [{ svc: svcs[1], calls: [{ svc: svcs[2], status }] }] });
  const cases: [number, 1 | 0 | -1, boolean, boolean][] = [
    // status, flag, keep_error_traces, expected kept (rate ~0)
    [500, 0, true, true],
    [500, -1, true, true],
    [200, -1, true, false],
    [200, 1, true, true],
    [500, 0, false, false],
    [500, -1, false, false],
    [500, 1, false, true],
    [0, 0, true, true], // no response at all: a failed exchange
  ];
  for (const [status, flag, keepErrors, want] of cases) {
    const w = many(50, () => plan(status, flag));
    const traces = run(w, { ...OPTS, sampling_rate: 1e-9, keep_error_traces: keepErrors });
    assert.equal(traces.length, 50);
    for (const t of traces) assert.equal(t.sampled, want, `status ${status} flag ${flag} keep_error_traces ${keepErrors}`);
  }
});

test('conflicting app flags: the one closest to the root decides', () => {
  const w = many(20, () => ({ svc: svcs[0], appSampled: -1, calls: [{ svc: svcs[1], appSampled: 1 }] }));
  for (const t of run(w)) assert.equal(t.sampled, false);
  const v = many(20, () => ({ svc: svcs[0], appSampled: 1, calls: [{ svc: svcs[1], appSampled: -1 }] }));
  for (const t of run(v, { ...OPTS, sampling_rate: 1e-9 })) assert.equal(t.sampled, true);
});

test('an app trace id in the middle of a chain names the whole trace', () => {
  const app = '4bf92f3577b34da6a3ce929d0e0e4736';
  const w = newWorld(41);
  // a → b → c(app id) → d → e
  serve(w, { svc: svcs[0], calls: [{ svc: svcs[1], calls: [{ svc: svcs[2], appTraceId: app.toUpperCase(), calls: [{ svc: svcs[3], calls: [{ svc: svcs[4] }] }] }] }] }, T0, null);
  const out = allSpans(run(w));
  assert.equal(out.length, 9);
  assert.deepEqual(checkTrees(w, out), []);
  for (const s of out) {
    assert.equal(s.traceId, app);
    assert.notEqual(s.ebpfTraceId, app);
    assert.match(s.ebpfTraceId, /^[0-9a-f]{32}$/);
  }
  assert.equal(new Set(out.map((s) => s.ebpfTraceId)).size, 1);
  // The span keeps its own app id field.
  assert.equal(out.filter((s) => s.appTraceId !== '').length, 1);

  // use_app_trace_id = false: the linker's own id.
  const w2 = newWorld(41);
  serve(w2, { svc: svcs[0], calls: [{ svc: svcs[1], appTraceId: app }] }, T0, null);
  for (const s of allSpans(run(w2, { ...OPTS, use_app_trace_id: false }))) assert.equal(s.traceId, s.ebpfTraceId);
});

test('Datadog decimal app ids become 128-bit hex; several ids: the one closest to the root wins', () => {
  const w = newWorld(42);
  serve(w, { svc: svcs[0], calls: [{ svc: svcs[1], appTraceId: '12345678901234567890', calls: [{ svc: svcs[2], appTraceId: 'ffffffffffffffffffffffffffffffff' }] }] }, T0, null);
  for (const s of allSpans(run(w))) assert.equal(s.traceId, '0000000000000000ab54a98ceb1f0ad2');
  // Two at the same depth (fan-out): the smaller normalised id.
  const v = newWorld(43);
  serve(v, { svc: svcs[0], calls: [{ svc: svcs[1], appTraceId: 'b'.repeat(32) }, { svc: svcs[2], appTraceId: 'a'.repeat(32) }] }, T0, null);
  for (const s of allSpans(run(v))) assert.equal(s.traceId, 'a'.repeat(32));
});

test('link_sampled_out: false emits the same traces and decisions, a batch id per span, with no spans for dropped traces', () => {
  const w = many(2_000, () => chain(svcs.slice(0, 3)));
  const opts = { ...OPTS, sampling_rate: 0.1 };
  // run() shuffles with the world's generator: compare by trace id, not by position.
  const byId = (a: EmittedTrace, b: EmittedTrace) => (a.traceId < b.traceId ? -1 : a.traceId > b.traceId ? 1 : 0);
  const full = run(w, opts).sort(byId);
  const lean = run(w, { ...opts, link_sampled_out: false }).sort(byId);
  assert.equal(lean.length, full.length);
  let dropped = 0;
  for (let i = 0; i < full.length; i++) {
    const f = full[i], l = lean[i];
    assert.equal(l.traceId, f.traceId);
    assert.equal(l.sampled, f.sampled);
    // Batch ids are positions in each run's shuffle: one per span either way.
    assert.equal(l.batchIds.length, f.batchIds.length);
    if (f.sampled) assert.deepEqual(l.spans, f.spans);
    else {
      assert.deepEqual(l.spans, []);
      dropped += f.spans.length;
    }
  }
  assert.ok(dropped > 0);
});
