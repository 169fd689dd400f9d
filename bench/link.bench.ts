// Pure joiner throughput: addBatch() + flush(), no decoding, no SQLite.
//   node --expose-gc --import tsx bench/link.bench.ts [spans=1000000] [window_ms=20000] [warmup_spans=0]
// Simulated traffic at 100,000 spans/s of span time (traces of 1–7 spans: chains of five
// services, fan-out, single entries, keep-alive hops), each span arriving 0–2 s after it ended.
// Spans are generated as the simulated clock advances (so the heap holds what a linker would
// hold, not the whole run); every 100 ms tick's arrivals are one batch, its join fields made
// beforehand (ingest's work), and only the time spent in addBatch() and flush() is counted.
import { JoinBatch, joinFieldsOf } from '../src/linker/link/fields.js';
import { createJoiner } from '../src/linker/link/joiner.js';
import { chain, newWorld, serve, service, type CallPlan } from '../src/linker/link/testkit.js';
import type { EbpfSpan } from '../src/span/span.js';

const total = Number(process.argv[2] ?? 1_000_000);
const windowMs = Number(process.argv[3] ?? 20_000);
// Spans added before the clock starts: the tables and the late index grow to their steady size
// meanwhile (at 100,000 spans/s the late index reaches its 1,000,000 records after ~1.7 M spans).
const warmup = Number(process.argv[4] ?? 0);
const RATE = 100_000; // spans per second of span time
const TICK = 100; // ms between flushes
const gc = (globalThis as { gc?: () => void }).gc;
const heapMiB = () => { gc?.(); gc?.(); return process.memoryUsage().heapUsed / 2 ** 20; };

const T0_MS = 1_732_500_000_000;
const svcs = Array.from({ length: 200 }, (_, i) => service(i, 50));
const shapes: ((k: number) => CallPlan)[] = [
  (k) => chain([svcs[k % 200], svcs[(k + 1) % 200], svcs[(k + 2) % 200], svcs[(k + 3) % 200], svcs[(k + 4) % 200]]),
  (k) => ({ svc: svcs[k % 200], calls: [{ svc: svcs[(k + 7) % 200] }, { svc: svcs[(k + 8) % 200] }, { svc: svcs[(k + 9) % 200] }] }),
  (k) => ({ svc: svcs[k % 200] }),
  (k) => ({ svc: svcs[k % 200], calls: [{ svc: svcs[(k + 3) % 200], clientPort: 40000 + (k % 50) }, { svc: svcs[(k + 3) % 200], clientPort: 40000 + (k % 50) }] }),
];

// Arrival buckets, one per tick.
const buckets = new Map<number, { span: EbpfSpan; at: number }[]>();
let generated = 0;
let k = 0;
let genUntilMs = T0_MS;
function generate(untilMs: number): void {
  while (genUntilMs < untilMs && generated < total) {
    const w = newWorld(k + 1);
    const startUs = genUntilMs * 1000;
    serve(w, shapes[k % shapes.length](k), startUs, null);
    k++;
    for (const span of w.spans) {
      const at = (span.startUs + span.durationUs) / 1000 + Math.floor(w.rand() * 2000);
      const b = Math.floor(at / TICK);
      let list = buckets.get(b);
      if (!list) buckets.set(b, (list = []));
      list.push({ span, at });
    }
    generated += w.spans.length;
    genUntilMs += (w.spans.length / RATE) * 1000;
  }
}

const before = heapMiB();
const j = createJoiner({ window: windowMs, sampling_rate: 0.1, use_app_trace_id: true, keep_error_traces: true, clock_skew: 500, late_retention: 600_000, link_sampled_out: false });
const batch = new JoinBatch();
// The kept spans are "loaded" as one stand-in span: the linker holds gzip'd bodies, not span
// objects, and holding the generated spans here would make the garbage collector's work
// (tracing them) part of the joiner's figure.
let stand: EbpfSpan | undefined;
const load = (_batchId: number, locs: number[]) => locs.map(() => stand!);
let emitted = 0;
let added = 0;
let peakPending = 0;
let joinNs = 0n;
let joinCpuUs = 0;
let measured = 0; // spans added after the warm-up
let tick = Math.floor(T0_MS / TICK);
while (added < generated || generated < total) {
  generate((tick + 1) * TICK);
  const list = buckets.get(tick) ?? [];
  buckets.delete(tick);
  const now = (tick + 1) * TICK;
  batch.clear();
  let arrival = 0;
  for (let i = 0; i < list.length; i++) {
    joinFieldsOf(list[i].span, batch, i);
    if (list[i].at > arrival) arrival = list[i].at;
  }
  if (list.length > 0) stand ??= list[0].span;
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  j.addBatch(batch, tick, arrival);
  for (const t of j.flush(now, load)) emitted += t.batchIds.length;
  const c = process.cpuUsage(c0);
  if (added >= warmup) {
    joinCpuUs += c.user + c.system;
    joinNs += process.hrtime.bigint() - t0;
    measured += list.length;
  }
  added += list.length;
  const p = j.stats().pendingSpans;
  if (p > peakPending) peakPending = p;
  tick++;
}
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
for (const t of j.flushAll(tick * TICK + windowMs + 3000, load)) emitted += t.batchIds.length;
joinNs += process.hrtime.bigint() - t0;
const c1 = process.cpuUsage(c0);
joinCpuUs += c1.user + c1.system;
const secs = Number(joinNs) / 1e9;
const st = j.stats();
const after = heapMiB();

console.log(JSON.stringify({
  spans: added, measured, traces: k, window_ms: windowMs, emitted,
  // wall: time in addBatch()+flush() after the warm-up (and the final flushAll); cpu: process
  // CPU time meanwhile (includes V8's GC helper threads).
  joiner_wall_s: +secs.toFixed(2), spans_per_s_wall: Math.round(measured / secs), us_per_span_wall: +((secs * 1e6) / measured).toFixed(2),
  joiner_cpu_s: +(joinCpuUs / 1e6).toFixed(2), spans_per_s_cpu: Math.round(measured / (joinCpuUs / 1e6)), us_per_span_cpu: +(joinCpuUs / measured).toFixed(2),
  peak_pending_spans: peakPending, heap_mib_before: +before.toFixed(0), heap_mib_after: +after.toFixed(0),
  stats: st,
}, null, 1));
