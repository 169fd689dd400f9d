// TraceWriter.commit cost alone, as the linker calls it: the LinkedSpans of whole traces the
// joiner emits (shop traces of ~15 spans, src/linker/fixtures.ts, linked by the real joiner),
// committed in flush-sized groups together with the ids of the spool batches that are done,
// on a database that already holds --prefill stored spans (so index depths are real).
//
//   flock /tmp/seqtrace-bench.lock node --import tsx bench/storage-commit.ts \
//     [--prefill 1000000] [--spans 200000] [--rate 100000] [--sampling 0.1] [--batch 1000]
//     [--lag 10] [--late 0.02] [--rounds 3] [--export both|on|off] [--dir DIR [--reuse]]
//
// At --rate ingested spans/s and a 200 ms flush, a commit holds rate × 0.2 × sampling stored
// spans (2000 by default, ~135 traces) and the batches of rate × 0.2 / batch ingested spans
// (20) become done; a batch is done --lag flushes after it was appended (the joiner's window).
// --late: share of traces whose last span comes late, 3 flushes after its trace, marked late.
// The stored traces are spaced as at that rate (10,000 stored spans/s), newest last.
//
// The prefilled database is built once (commits of the same shape), closed, and copied for
// every measurement, so that each one starts from the same file. With --dir it is kept in
// DIR/template, and --reuse takes it from there instead of building it again (same schema
// only). Export queue on and off alternate. Printed per measurement and as medians: CPU µs per stored span of commit (its
// whole transaction: spans, summaries, search rows, edges, export queue, spool deletes), the
// same per ingested span at --sampling, and the spool append of the raw bodies (one
// transaction per batch, as ingest does) per ingested span. Results: docs/storage.md.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { buildTrace, rng, shopTree } from '../src/linker/fixtures.js';
import { createJoiner } from '../src/linker/link/joiner.js';
import { encodeSpans } from '../src/span/lineprotocol.js';
import type { EbpfSpan, LinkedSpan } from '../src/span/span.js';
import { DB_FILE, openSqliteStore, type SqliteStore } from '../src/storage/sqlite.js';

const { values: args } = parseArgs({
  options: {
    prefill: { type: 'string', default: '1000000' },
    spans: { type: 'string', default: '200000' },
    rate: { type: 'string', default: '100000' },
    sampling: { type: 'string', default: '0.1' },
    batch: { type: 'string', default: '1000' },
    lag: { type: 'string', default: '10' },
    late: { type: 'string', default: '0.02' },
    rounds: { type: 'string', default: '3' },
    export: { type: 'string', default: 'both' },
    dir: { type: 'string' },
    reuse: { type: 'boolean', default: false },
  },
});
const PREFILL = Number(args.prefill);
const MEASURE = Number(args.spans);
const RATE = Number(args.rate);
const SAMPLING = Number(args.sampling);
const BATCH = Number(args.batch);
const LAG = Number(args.lag);
const LATE = Number(args.late);
const ROUNDS = Number(args.rounds);
const FLUSH_MS = 200;
const STORED_PER_COMMIT = Math.round(RATE * (FLUSH_MS / 1000) * SAMPLING);
const BATCHES_PER_COMMIT = Math.max(1, Math.round((RATE * (FLUSH_MS / 1000)) / BATCH));
const MODES = args.export === 'both' ? [true, false] : [args.export === 'on'];

const T0_US = 1_764_000_000_000_000;
/** Stored spans per second at RATE and SAMPLING; traces are spaced accordingly. */
const STORED_PER_S = RATE * SAMPLING;

/**
 * Linked traces, generated and linked by the joiner in chunks (one joiner each, so memory
 * stays bounded). `from` is the index of the first trace: the times continue across calls.
 */
function* linkedTraces(seed: number, from: number): Generator<LinkedSpan[]> {
  const r = rng(seed);
  let k = from;
  const gapUs = Math.round(1e6 / (STORED_PER_S / 14.5));
  for (;;) {
    const joiner = createJoiner({ window: 20_000, sampling_rate: 1, use_app_trace_id: false, keep_error_traces: true, clock_skew: 500, late_retention: 600_000, link_sampled_out: false });
    const now = Date.now();
    for (let i = 0; i < 2000; i++, k++) {
      const t = buildTrace(shopTree(r), { startUs: T0_US + k * gapUs, random: r });
      // 2% of the requests fail in one service: error traces.
      if (r() < 0.02) t.spans[t.spans.length - 1].status = 'error';
      for (const s of t.spans) joiner.add(s, 1, now);
    }
    const traces = joiner.flushAll(now + 60_000);
    for (const t of traces) yield t.spans;
  }
}

/** Commit groups of whole traces, ~STORED_PER_COMMIT spans each; LATE of the traces lose their last span to a group 3 later. */
function groups(gen: Generator<LinkedSpan[]>, total: number, late: number, r: () => number): LinkedSpan[][] {
  const out: LinkedSpan[][] = [];
  const held = new Map<number, LinkedSpan[]>();
  let n = 0;
  while (n < total) {
    const g: LinkedSpan[] = held.get(out.length) ?? [];
    held.delete(out.length);
    while (g.length < STORED_PER_COMMIT) {
      const spans = gen.next().value as LinkedSpan[];
      if (late > 0 && spans.length > 2 && r() < late) {
        const last = spans.pop()!;
        const at = out.length + 3;
        const list = held.get(at) ?? [];
        list.push({ ...last, late: true });
        held.set(at, list);
      }
      for (const s of spans) g.push(s);
    }
    n += g.length;
    out.push(g);
  }
  return out;
}

/** Raw ingest bodies (gzip line protocol, as agents send them): BATCHES_PER_COMMIT distinct ones, reused. */
function rawBodies(sample: LinkedSpan[][]): Buffer[] {
  const spans: EbpfSpan[] = [];
  for (const g of sample) for (const s of g) spans.push(s);
  const out: Buffer[] = [];
  for (let b = 0; b < BATCHES_PER_COMMIT; b++) {
    const part: EbpfSpan[] = [];
    for (let i = 0; i < BATCH; i++) part.push(spans[(b * BATCH + i) % spans.length]);
    out.push(gzipSync(encodeSpans(part), { level: 1 }));
  }
  return out;
}

const cpuUs = () => {
  const c = process.cpuUsage();
  return c.user + c.system;
};
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const open = (dir: string, exportQueue: boolean): SqliteStore =>
  openSqliteStore(dir, { retentionMaxAgeMs: 1e13, retentionMaxBytes: 1e15, sweepIntervalMs: 0, exportQueue });

const base = args.dir ?? mkdtempSync(join(tmpdir(), 'seqtrace-commit-'));
const template = join(base, 'template');
try {
  console.log(`${new Date().toISOString()}, load average ${load()}, node ${process.version}`);
  console.log(`prefill ${PREFILL.toLocaleString('en')} spans; measured ${MEASURE.toLocaleString('en')} spans; ${STORED_PER_COMMIT} stored spans and ${BATCHES_PER_COMMIT} done batches of ${BATCH} per commit (ingest ${RATE.toLocaleString('en')} spans/s, sampling ${SAMPLING}, flush ${FLUSH_MS} ms); late ${LATE}`);

  // 1. The prefilled database: the same kind of commits, no export queue (a working exporter keeps it short).
  const gen = linkedTraces(1, 0);
  const r = rng(7);
  const t0 = performance.now();
  const reuse = args.reuse && existsSync(join(template, DB_FILE));
  {
    const store = reuse ? undefined : open(template, false);
    let stored = 0;
    while (stored < PREFILL) {
      const [g] = groups(gen, 1, 0, r);
      store?.commit(g, []);
      stored += g.length;
    }
    store?.close();
  }
  console.log(`prefill${reuse ? ' (reused)' : ''}: ${((performance.now() - t0) / 1000).toFixed(1)} s, ${(statSync(join(template, DB_FILE)).size / 1024 ** 2).toFixed(0)} MiB`);

  // 2. The measured commits: the traces that follow the prefilled ones.
  const measured = groups(gen, MEASURE, LATE, r);
  const bodies = rawBodies(measured.slice(0, 5));
  const storedTotal = measured.reduce((a, g) => a + g.length, 0);
  const lateTotal = measured.reduce((a, g) => a + g.filter((s) => s.late).length, 0);
  console.log(`measured: ${measured.length} commits, ${storedTotal.toLocaleString('en')} spans (${lateTotal} late), raw bodies ${(bodies.reduce((a, b) => a + b.length, 0) / bodies.length / BATCH).toFixed(0)} B/span`);

  const results = new Map<boolean, { commit: number; wall: number; spool: number; bytes: number }[]>();
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? MODES : [...MODES].reverse();
    for (const exportQueue of order) {
      const dir = join(base, 'run');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      copyFileSync(join(template, DB_FILE), join(dir, DB_FILE));
      const store = open(dir, exportQueue);
      let commitCpu = 0, commitWall = 0, spoolCpu = 0;
      const appended: number[][] = [];
      try {
        for (let i = 0; i < measured.length; i++) {
          let c = cpuUs();
          const ids: number[] = [];
          for (const body of bodies) ids.push(store.append([], Date.now(), { body, format: 'lp', encoding: 'gzip' }));
          let d = cpuUs();
          spoolCpu += d - c;
          appended.push(ids);
          const done = i >= LAG ? appended[i - LAG] : [];
          const w = performance.now();
          c = cpuUs();
          store.commit(measured[i], done);
          d = cpuUs();
          commitWall += performance.now() - w;
          commitCpu += d - c;
        }
      } finally {
        store.close();
      }
      const bytes = statSync(join(dir, DB_FILE)).size;
      rmSync(dir, { recursive: true, force: true });
      const res = { commit: commitCpu / storedTotal, wall: (commitWall * 1000) / storedTotal, spool: spoolCpu / (measured.length * bodies.length * BATCH), bytes };
      if (!results.has(exportQueue)) results.set(exportQueue, []);
      results.get(exportQueue)!.push(res);
      console.log(`round ${round + 1} export ${exportQueue ? 'on ' : 'off'}: commit ${res.commit.toFixed(2)} µs CPU (${res.wall.toFixed(2)} wall) per stored span = ${(res.commit * SAMPLING).toFixed(3)} per ingested span; spool append ${res.spool.toFixed(3)} µs per ingested span; file ${(bytes / 1024 ** 2).toFixed(0)} MiB; load ${load()}`);
    }
  }
  const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [exportQueue, rs] of results) {
    const c = median(rs.map((x) => x.commit));
    console.log(`median export ${exportQueue ? 'on ' : 'off'} (${rs.length} runs): commit ${c.toFixed(2)} µs CPU per stored span (wall ${median(rs.map((x) => x.wall)).toFixed(2)}), ${(c * SAMPLING).toFixed(3)} µs per ingested span at sampling ${SAMPLING}; spool append ${median(rs.map((x) => x.spool)).toFixed(3)} µs per ingested span`);
  }
  console.log(`${new Date().toISOString()}, load average ${load()}`);
} finally {
  if (!args.dir) rmSync(base, { recursive: true, force: true });
}
