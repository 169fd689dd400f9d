// ingest → spool → Joiner → (timer) flush → TraceWriter.commit → exporter.
//
// A batch leaves the spool only once every one of its spans has been emitted by the joiner
// (stored when sampled, dropped when not), in the same transaction that stores them; so at
// any instant each accepted span is either in the spool or in the store, never neither. On
// start the spool's pending batches are replayed into the joiner; spans of them that were
// already stored keep their deterministic ids and the writer skips them.
import type { Joiner, SpanLoader } from './joiner.js';
import type { EbpfSpan, LinkedSpan } from '../span/span.js';
import type { RawBatch, SpanSpool, TraceWriter } from '../storage/store.js';
import type { DecodedSpans, IngestSink, RawLoader, SpanLocations } from './ingest.js';

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
   * The spans of a spooled raw body (`accept` with `raw`) and their locs, for replay; required
   * when the spool holds raw bodies. The service passes ingest's `decodeRawBatch` with its limits.
   */
  decodeRaw?: (raw: RawBatch) => Pick<DecodedSpans, 'spans' | 'locs'>;
  /**
   * Loads spans of a raw body by loc (ingest's `createRawLoader`). With it (and decodeRaw), the
   * joiner holds only join metadata per span, the pipeline holds each raw body in memory while
   * any of its spans is pending, and the spans of kept traces are decoded again from it.
   */
  loadRaw?: RawLoader;
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
  return { body: Buffer.from(b), format: raw.format, gzip: raw.gzip };
}

export function createPipeline(opts: PipelineOptions): Pipeline {
  const { spool, writer, joiner } = opts;
  const now = opts.now ?? Date.now;
  const interval = opts.flushIntervalMs ?? 200;
  /** Spans of each batch still held by the joiner. */
  const held = new Map<number, number>();
  /** Raw bodies of the batches in `held` whose spans the joiner holds by loc. */
  const raws = new Map<number, RawBatch>();
  const loadRaw = opts.decodeRaw ? opts.loadRaw : undefined;
  const load: SpanLoader = (batchId, locs) => {
    const raw = raws.get(batchId);
    if (raw === undefined) throw new Error(`spool batch ${batchId} is not held in memory any more`);
    return loadRaw!.load(batchId, raw, locs);
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

  /** With `raw` and `locs` (and loadRaw) the joiner holds the spans by loc, not the spans. */
  function hand(spans: EbpfSpan[], batchId: number, arrivalMs: number, raw?: RawBatch, at?: Partial<SpanLocations>): void {
    held.set(batchId, spans.length);
    const locs = at?.locs;
    if (raw !== undefined && locs !== undefined && loadRaw !== undefined && locs.length === spans.length) {
      raws.set(batchId, ownBytes(raw));
      // The decoded text is not held from ingest on: at 1e6 spans/min such texts filled the
      // cache with the newest batches while the ones being emitted were inflated again at
      // every flush (docs/linker.md); the loader caches bodies at their first load.
      for (let i = 0; i < spans.length; i++) joiner.add(spans[i], batchId, arrivalMs, locs[i]);
    } else for (let i = 0; i < spans.length; i++) joiner.add(spans[i], batchId, arrivalMs);
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
          if (raws.delete(b)) loadRaw!.forget(b);
          done.push(b);
        } else held.set(b, left);
      }
    }
    commit(sampled, done);
    c.lastFlushMs = performance.now() - t0;
    return emitted;
  }

  return {
    accept(spans, receivedAtMs, raw, at) {
      // Without a decoder for replay the spool must keep the spans themselves.
      const keepRaw = opts.decodeRaw ? raw : undefined;
      const id = spool.append(spans, receivedAtMs, keepRaw); // durable from here on
      c.batchesAccepted++;
      c.spansAccepted += spans.length;
      hand(spans, id, receivedAtMs, keepRaw, at);
    },
    start() {
      if (running) return;
      running = true;
      // Replayed spans count as arriving now: what agents resend after the restart (batches
      // that got no answer) must still find them open, or a trace would be cut in two.
      const restartMs = now();
      for (const b of spool.pending()) {
        if (held.has(b.id)) continue;
        let spans: EbpfSpan[];
        if (b.raw === undefined) {
          spans = b.spans;
          hand(spans, b.id, restartMs);
        } else if (opts.decodeRaw) {
          const d = opts.decodeRaw(b.raw);
          spans = d.spans;
          hand(spans, b.id, restartMs, b.raw, d);
        } else throw new Error(`spool batch ${b.id} holds a raw body and the pipeline has no decodeRaw`);
        c.replayedBatches++;
        c.replayedSpans += spans.length;
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
