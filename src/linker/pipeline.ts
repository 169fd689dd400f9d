// ingest → spool → Joiner → (timer) flush → TraceWriter.commit → exporter.
//
// A batch leaves the spool only once every one of its spans has been emitted by the joiner
// (stored when sampled, dropped when not), in the same transaction that stores them; so at
// any instant each accepted span is either in the spool or in the store, never neither. On
// start the spool's pending batches are replayed into the joiner; spans of them that were
// already stored keep their deterministic ids and the writer skips them.
import type { Joiner, SpanLoader } from './joiner.js';
import type { LinkedSpan } from '../span/span.js';
import type { RawBatch, SpanSpool, TraceWriter } from '../storage/store.js';
import type { RawLoader } from './decode.js';
import type { IngestSink } from './ingest.js';
import { JoinBatch } from './link/fields.js';

/** What every stage of the linker offers the service: start, stop, counters. */
export interface Stage {
  start(): Promise<void> | void;
  stop(): Promise<void> | void;
  counters(): Record<string, number>;
}

export interface PipelineOptions {
  spool: SpanSpool;
  writer: TraceWriter;
  joiner: Joiner;
  /** How often the joiner is asked for closed traces (ms). Default 200. */
  flushIntervalMs?: number;
  /** Wall clock (ms). */
  now?: () => number;
  /**
   * The join fields of a spooled raw body's spans into `out`, for replay (ingest's
   * `decodeRawFields` with the service's limits).
   */
  decodeRaw: (raw: RawBatch, out: JoinBatch) => void;
  /**
   * Loads spans of a raw body by loc (decode.ts `createRawLoader`): the joiner holds only join
   * fields per span, the pipeline holds each raw body in memory while any of its spans is
   * pending, and the spans of kept traces are decoded again from it.
   */
  loadRaw: RawLoader;
  /** Called after a commit that stored spans (wakes the exporter). */
  onCommitted?: (storedSpans: number) => void;
  /** Called when a commit fails; it is retried on the next tick. */
  onError?: (e: Error) => void;
}

export interface PipelineCounters {
  batchesAccepted: number;
  spansAccepted: number;
  replayedBatches: number;
  replayedSpans: number;
  commits: number;
  commitFailures: number;
  /** Sampled spans handed to the writer (replayed duplicates included). */
  spansCommitted: number;
  /** Spans emitted by the joiner and dropped by sampling. */
  spansDropped: number;
  batchesDone: number;
  /** Batches with spans still held by the joiner. */
  batchesHeld: number;
  lastFlushMs: number;
}

export interface Pipeline extends Stage, IngestSink {
  /** One flush + commit now (the timer calls it); returns the number of spans emitted. */
  flush(nowMs?: number): number;
  /** Emits everything, as if every window had closed (tests, `flushAll` on demand). */
  flushAll(nowMs?: number): number;
  counters(): Record<keyof PipelineCounters, number>;
}

/**
 * The raw batch with a body that owns its memory: a body that arrived in one chunk is a slice
 * of the socket's read buffer (64 KiB or more), which would stay alive as long as the batch
 * is held (the window), whatever the body's size.
 */
function ownBytes(raw: RawBatch): RawBatch {
  const b = raw.body;
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return raw;
  return { body: Buffer.from(b), format: raw.format, encoding: raw.encoding };
}

export function createPipeline(opts: PipelineOptions): Pipeline {
  const { spool, writer, joiner } = opts;
  const now = opts.now ?? Date.now;
  const interval = opts.flushIntervalMs ?? 200;
  /** Spans of each batch still held by the joiner. */
  const held = new Map<number, number>();
  /** Raw bodies of the batches in `held` whose spans the joiner holds by loc. */
  const raws = new Map<number, RawBatch>();
  const loadRaw = opts.loadRaw;
  const load: SpanLoader = (batchId, locs) => {
    const raw = raws.get(batchId);
    if (raw === undefined) throw new Error(`spool batch ${batchId} is not held in memory any more`);
    return loadRaw.load(batchId, raw, locs);
  };
  const c: PipelineCounters = {
    batchesAccepted: 0, spansAccepted: 0, replayedBatches: 0, replayedSpans: 0, commits: 0, commitFailures: 0,
    spansCommitted: 0, spansDropped: 0, batchesDone: 0, batchesHeld: 0, lastFlushMs: 0,
  };
  /** A commit that failed (disk full): retried before anything new is flushed. */
  let retry: { sampled: LinkedSpan[]; done: number[] } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let stopped = false;

  /** Hands a durable batch's spans to the joiner by their join fields; its raw body is held for loading. */
  function hand(fields: JoinBatch, batchId: number, arrivalMs: number, raw: RawBatch): void {
    held.set(batchId, fields.n);
    raws.set(batchId, ownBytes(raw));
    // The decoded text is not held from ingest on: at 1e6 spans/min such texts filled the
    // cache with the newest batches while the ones being emitted were inflated again at
    // every flush (docs/linker.md); the loader caches bodies at their first load.
    joiner.addBatch(fields, batchId, arrivalMs);
  }

  function commit(sampled: LinkedSpan[], done: number[]): boolean {
    try {
      writer.commit(sampled, done);
    } catch (e) {
      c.commitFailures++;
      retry = { sampled, done };
      opts.onError?.(e as Error);
      return false;
    }
    retry = undefined;
    c.commits++;
    c.spansCommitted += sampled.length;
    c.batchesDone += done.length;
    if (sampled.length) opts.onCommitted?.(sampled.length);
    return true;
  }

  function emit(all: boolean, nowMs: number): number {
    const t0 = performance.now();
    if (retry && !commit(retry.sampled, retry.done)) return 0;
    const traces = all ? joiner.flushAll(nowMs, load) : joiner.flush(nowMs, load);
    if (traces.length === 0) return 0;
    const sampled: LinkedSpan[] = [];
    const done: number[] = [];
    let emitted = 0;
    for (const t of traces) {
      // batchIds counts every span; spans may be empty for a trace that is not sampled.
      emitted += t.batchIds.length;
      if (t.sampled) for (const s of t.spans) sampled.push(s);
      else c.spansDropped += t.batchIds.length;
      for (const b of t.batchIds) {
        const left = (held.get(b) ?? 1) - 1;
        if (left <= 0) {
          held.delete(b);
          if (raws.delete(b)) loadRaw.forget(b);
          done.push(b);
        } else held.set(b, left);
      }
    }
    commit(sampled, done);
    c.lastFlushMs = performance.now() - t0;
    return emitted;
  }

  return {
    accept(fields, receivedAtMs, raw) {
      const id = spool.append([], receivedAtMs, raw); // durable from here on
      c.batchesAccepted++;
      c.spansAccepted += fields.n;
      hand(fields, id, receivedAtMs, raw);
    },
    start() {
      if (running) return;
      running = true;
      // Replayed spans count as arriving now: what agents resend after the restart (batches
      // that got no answer) must still find them open, or a trace would be cut in two.
      const restartMs = now();
      const fields = new JoinBatch();
      for (const b of spool.pending()) {
        if (held.has(b.id)) continue;
        let n: number;
        if (b.raw === undefined) {
          // A batch spooled as spans (SpanSpool.append without a raw body: tests): held whole.
          n = b.spans.length;
          held.set(b.id, n);
          for (const s of b.spans) joiner.add(s, b.id, restartMs);
        } else {
          opts.decodeRaw(b.raw, fields);
          n = fields.n;
          hand(fields, b.id, restartMs, b.raw);
        }
        c.replayedBatches++;
        c.replayedSpans += n;
      }
      timer = setInterval(() => {
        if (!stopped) emit(false, now());
      }, interval);
      timer.unref();
    },
    stop() {
      // Only what is ready: traces still open stay in the spool and are replayed on start.
      if (stopped) return;
      stopped = true;
      if (timer) clearInterval(timer);
      emit(false, now());
    },
    flush: (nowMs = now()) => emit(false, nowMs),
    flushAll: (nowMs = now()) => emit(true, nowMs),
    counters() {
      c.batchesHeld = held.size;
      return { ...c };
    },
  };
}
