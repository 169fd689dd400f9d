// Pure joiner throughput: add() + flush() on pre-built spans, no decoding, no SQLite.
//   node --expose-gc --import tsx bench/link.bench.ts [spans=1000000] [window_ms=20000]
// Spans come from simulated traffic at 100,000 spans/s of span time (traces of 1–9 spans:
// chains, fan-out, single entries, keep-alive hops), each arriving 0–2 s after it ended,
// fed in arrival order with a flush every 100 ms of simulated clock.
import { createJoiner } from '../src/linker/link/joiner.js';
import { chain, newWorld, serve, service, type CallPlan } from '../src/linker/link/testkit.js';
import type { EbpfSpan } from '../src/span/span.js';

const total = Number(process.argv[2] ?? 1_000_000);
const windowMs = Number(process.argv[3] ?? 20_000);
const RATE = 100_000; // spans per second of span time
const gc = (globalThis as { gc?: () => void }).gc;
const heapMiB = () => { gc?.(); gc?.(); return process.memoryUsage().heapUsed / 2 ** 20; };

const T0 = 1_732_500_000_000_000;
const w = newWorld(2026);
const svcs = Array.from({ length: 200 }, (_, i) => service(i, 50));
const shapes: ((k: number) => CallPlan)[] = [
  (k) => chain([svcs[k % 200], svcs[(k + 1) % 200], svcs[(k + 2) % 200], svcs[(k + 3) % 200], svcs[(k + 4) % 200]]),
  (k) => ({ svc: svcs[k % 200], calls: [{ svc: svcs[(k + 7) % 200] }, { svc: svcs[(k + 8) % 200] }, { svc: svcs[(k + 9) % 200] }, { svc: svcs[(k + 10) % 200] }] }),
  (k) => ({ svc: svcs[k % 200] }),
  (k) => ({ svc: svcs[k % 200], calls: [{ svc: svcs[(k + 3) % 200], clientPort: 40000 + (k % 50) }, { svc: svcs[(k + 3) % 200], clientPort: 40000 + (k % 50) }] }),
];
let k = 0;
while (w.spans.length < total) {
  const startUs = T0 + Math.floor((w.spans.length / RATE) * 1e6);
  serve(w, shapes[k % shapes.length](k), startUs, null);
  k++;
}
const events = w.spans.map((span) => ({ at: (span.startUs + span.durationUs) / 1000 + Math.floor(w.rand() * 2000), span }));
events.sort((a, b) => a.at - b.at);
const spans: EbpfSpan[] = events.map((e) => e.span);
const arrivals = Float64Array.from(events.map((e) => e.at));
events.length = 0;
w.parentOf.clear();
w.rootOf.clear();

const before = heapMiB();
const j = createJoiner({ window: windowMs, sampling_rate: 0.1, use_app_trace_id: true, keep_error_traces: true, clock_skew: 500, late_retention: 600_000 });
let emitted = 0;
let peakPending = 0;
let clock = Math.floor(arrivals[0] / 100) * 100;
const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
for (let i = 0; i < spans.length;) {
  clock += 100;
  while (i < spans.length && arrivals[i] <= clock) { j.add(spans[i], i, arrivals[i]); i++; }
  for (const t of j.flush(clock)) emitted += t.spans.length;
  const p = j.stats().pendingSpans;
  if (p > peakPending) peakPending = p;
}
for (const t of j.flushAll(clock + windowMs + 3000)) emitted += t.spans.length;
const cpu = process.cpuUsage(cpu0);
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
const cpuSecs = (cpu.user + cpu.system) / 1e6;
const st = j.stats();
spans.length = 0;
const after = heapMiB();

console.log(JSON.stringify({
  spans: total, traces: k, window_ms: windowMs, emitted,
  wall_s: +secs.toFixed(2), cpu_s: +cpuSecs.toFixed(2),
  spans_per_s_wall: Math.round(total / secs), us_per_span_cpu: +((cpuSecs * 1e6) / total).toFixed(2),
  peak_pending_spans: peakPending, heap_mib_before: +before.toFixed(0), heap_mib_after_flush: +after.toFixed(0),
  late_index_keys_retained_mib: +(after - before).toFixed(0),
  stats: st,
}, null, 1));
