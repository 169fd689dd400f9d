// Where a linker's CPU goes, stage by stage, without HTTP: the same gzip line-protocol batches
// as bench/linker.ts (traces from the shop fixture, ~1000 spans a batch) go through the
// linker's own functions, each stage timed in CPU time of this process (all threads):
//   decode   gunzip + the join fields of every span (ingest's decodeRawFields)
//   spool    SpanSpool.append of the raw body (one SQLite transaction a batch)
//   add      Joiner.addBatch of the body's join fields (the joiner keeps those, not the span)
//   emit     Joiner.flushAll (parents, ids, sampling; no LinkedSpans for sampled-out traces)
//   load     the kept traces' spans decoded again from their batch's text (createRawLoader,
//            called by flushAll once per batch; its time is taken out of emit): each body is
//            inflated again at its first load and kept while it fits in --text-cache MiB
//            (default 64), as the linker does
//   commit   TraceWriter.commit of the sampled spans and the finished batches, ~200 traces a call
// The sum is the linker's work per span apart from HTTP and the timers; its inverse is the
// ceiling of spans per CPU-second on one core.
//
//   node --expose-gc --import tsx bench/linker-stages.ts [--spans 300000] [--rounds 3] [--sampling 0.1]
// Prints each round and the median per stage (µs per span), with the load average; with
// --expose-gc also the memory held per pending span (all spans added, none emitted yet): the
// heap the GC traces, and apart the gzip'd bodies held and cached body text (the 128-byte
// span records live in a buffer the joiner reserves up front, not counted as it fills).
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { buildTrace, rng, shopTree } from '../src/linker/fixtures.js';
import { createRawLoader } from '../src/linker/decode.js';
import { decodeRawFields } from '../src/linker/ingest.js';
import { JoinBatch } from '../src/linker/link/fields.js';
import { createJoiner } from '../src/linker/link/joiner.js';
import { encodeSpans } from '../src/span/lineprotocol.js';
import type { LinkedSpan } from '../src/span/span.js';
import { openSqliteStore } from '../src/storage/sqlite.js';
import type { RawBatch } from '../src/storage/store.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}
const total = Number(arg('spans', '300000'));
const rounds = Number(arg('rounds', '3'));
const sampling = Number(arg('sampling', '0.1'));
const textCacheBytes = Number(arg('text-cache', '64')) * 1024 * 1024;
const limits = { max_body_bytes: 16 * 1024 * 1024, max_batch_spans: 50_000, max_field_bytes: 8192 };

// Batches: whole traces, ~1000 spans each (per host grouping does not change the per-span work).
const r = rng(1);
const bodies: Buffer[] = [];
let n = 0, text = '', inBatch = 0;
const t0Us = Date.now() * 1000;
while (n < total) {
  const t = buildTrace(shopTree(r), { startUs: t0Us + n * 10, random: r });
  text += encodeSpans(t.spans);
  inBatch += t.spans.length;
  n += t.spans.length;
  if (inBatch >= 1000) {
    bodies.push(gzipSync(text, { level: 1 }));
    text = '';
    inBatch = 0;
  }
}
if (inBatch) bodies.push(gzipSync(text, { level: 1 }));

const cpuUs = () => { const c = process.cpuUsage(); return c.user + c.system; };
const STAGES = ['decode', 'spool', 'add', 'emit', 'load', 'commit'] as const;
type Stage = typeof STAGES[number];

const gc = (globalThis as { gc?: () => void }).gc;
const heapNow = () => { gc!(); gc!(); return process.memoryUsage().heapUsed; };
const offHeapNow = () => process.memoryUsage().arrayBuffers;

function round(): Record<Stage, number> & { spans: number; heapPerPending: number; offHeapPerPending: number; textPerPending: number } {
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-stages-'));
  const store = openSqliteStore(dir, { retentionMaxAgeMs: 1e13, retentionMaxBytes: 1e15, sweepIntervalMs: 0, exportQueue: false });
  const joiner = createJoiner({ window: 20_000, sampling_rate: sampling, use_app_trace_id: false, keep_error_traces: true, clock_skew: 500, late_retention: 600_000, link_sampled_out: false });
  const took: Record<Stage, number> = { decode: 0, spool: 0, add: 0, emit: 0, load: 0, commit: 0 };
  const held = new Map<number, number>();
  const raws = new Map<number, RawBatch>();
  const loader = createRawLoader(limits, textCacheBytes);
  const load = (batchId: number, locs: number[]) => {
    const c = cpuUs();
    const got = loader.load(batchId, raws.get(batchId)!, locs);
    took.load += cpuUs() - c;
    return got;
  };
  let spans = 0;
  let heapPerPending = NaN, offHeapPerPending = NaN, textPerPending = NaN;
  const fields = new JoinBatch();
  try {
    const heap0 = gc ? heapNow() : 0;
    const off0 = offHeapNow();
    const now = Date.now();
    for (const body of bodies) {
      const raw: RawBatch = { body, format: 'lp', encoding: 'gzip' };
      let c = cpuUs();
      decodeRawFields(raw, limits, fields);
      let d = cpuUs(); took.decode += d - c; c = d;
      const id = store.append([], now, raw);
      d = cpuUs(); took.spool += d - c; c = d;
      held.set(id, fields.n);
      raws.set(id, raw);
      joiner.addBatch(fields, id, now);
      d = cpuUs(); took.add += d - c;
      spans += fields.n;
    }
    // The cached texts are in the heap's large-object space (never copied nor traced): apart.
    textPerPending = loader.cachedBytes() / spans;
    if (gc) heapPerPending = (heapNow() - heap0) / spans - textPerPending;
    offHeapPerPending = (offHeapNow() - off0) / spans;
    let c = cpuUs();
    const traces = joiner.flushAll(now + 60_000, load);
    let d = cpuUs(); took.emit += d - c - took.load; c = d;
    // Commits of ~200 traces, as the 200 ms flush makes at ~15k spans/s.
    for (let i = 0; i < traces.length; i += 200) {
      const sampled: LinkedSpan[] = [];
      const done: number[] = [];
      for (const t of traces.slice(i, i + 200)) {
        if (t.sampled) for (const s of t.spans) sampled.push(s);
        for (const b of t.batchIds) {
          const left = held.get(b)! - 1;
          if (left === 0) { held.delete(b); raws.delete(b); loader.forget(b); done.push(b); } else held.set(b, left);
        }
      }
      store.commit(sampled, done);
    }
    d = cpuUs(); took.commit += d - c;
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { ...took, spans, heapPerPending, offHeapPerPending, textPerPending };
}

const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(`${new Date().toISOString()}, load average ${load()}; ${bodies.length} gzip batches, sampling ${sampling}`);
const results: ReturnType<typeof round>[] = [];
for (let k = 0; k < rounds; k++) {
  const res = round();
  results.push(res);
  const per = STAGES.map((s) => `${s} ${(res[s] / res.spans).toFixed(2)}`).join(', ');
  const sum = STAGES.reduce((a, s) => a + res[s], 0) / res.spans;
  const heap = (Number.isNaN(res.heapPerPending) ? '' : `; per pending span: heap ${res.heapPerPending.toFixed(0)} B`) +
    ` + off-heap ${res.offHeapPerPending.toFixed(0)} B (gzip'd bodies) + 128 B (its record, in a buffer reserved up front) + ${res.textPerPending.toFixed(0)} B of cached body text`;
  console.log(`round ${k + 1}: ${res.spans} spans; µs per span: ${per}; total ${sum.toFixed(2)} (${Math.round(1e6 / sum)} spans per CPU-second)${heap}`);
}
const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const med = STAGES.map((s) => [s, median(results.map((x) => x[s] / x.spans))] as const);
const sum = med.reduce((a, [, v]) => a + v, 0);
console.log(`median µs per span: ${med.map(([s, v]) => `${s} ${v.toFixed(2)}`).join(', ')}; total ${sum.toFixed(2)} → ${Math.round(1e6 / sum)} spans per CPU-second without HTTP; load average ${load()}`);
