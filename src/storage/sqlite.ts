// The SQLite store: spool, traces, search and export queue in one database file
// (`<dir>/seqtrace.db`), implementing every contract of ./store.ts.
//
// Durability: WAL with synchronous=NORMAL (the default, durability 'process'). A commit is
// written to the WAL file before `append`/`commit` return, so it is in the kernel's page
// cache and survives a SIGKILL or crash of the process; only an OS crash or power loss can
// lose the last transactions (never corrupt the file). durability 'os' (synchronous=FULL)
// fsyncs the WAL on every commit and survives those too, at the cost of one fsync per
// ingest batch. See docs/storage.md.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SeqError } from '../errors.js';
import type { EbpfSpan, LinkedSpan } from '../span/span.js';
import { decodeChunk, decodeEbpfSpans, decodeRawBatch, encodeEbpfSpans, encodeRawBatch } from './codec.js';
import { createSchema } from './sqlite-schema.js';
import { prepareReader } from './sqlite-read.js';
import { prepareRetention } from './sqlite-retention.js';
import { CHUNK_SPANS, prepareWriter } from './sqlite-write.js';
import type { ExportQueue, Retention, RawBatch, SpanSpool, SpooledBatch, SweepResult, TraceReader, TraceWriter } from './store.js';

export const DB_FILE = 'seqtrace.db';
/** Page size of a new database (docs/storage.md: 4 and 8 KiB measured). */
const PAGE_SIZE = 16384;
/** Longest the periodic retention sweep holds the event loop at a time. */
const SWEEP_SLICE_MS = 50;

export interface SqliteStoreOptions {
  /** Traces whose start is older than this are deleted (LinkerConfig.retention_max_age, ms). */
  retentionMaxAgeMs: number;
  /** Oldest traces are deleted while the database uses more (LinkerConfig.retention_max_bytes). */
  retentionMaxBytes: number;
  /** Run the retention sweep this often (ms); 0 never (call `sweep()`). Default 60 000. */
  sweepIntervalMs?: number;
  /** 'process' (default): survives a process kill. 'os': also an OS crash (fsync per commit). */
  durability?: 'process' | 'os';
  /** Queue stored spans for the OTLP exporter; false when no exporter is configured. Default true. */
  exportQueue?: boolean;
  /** Wall clock in ms (tests). */
  now?: () => number;
}

export interface StoreStats {
  /** Batches in the spool (accepted, not yet linked). */
  spooledBatches: number;
  /** Spans stored by this process since it opened the store (replays not counted). */
  storedSpans: number;
  /** Stored spans not yet exported. */
  exportBacklog: number;
  /** Spans deleted by retention before the exporter sent them (since the database was created). */
  exportDroppedByRetention: number;
  /** Traces and spans deleted by retention (since the database was created). */
  retentionDeletedTraces: number;
  retentionDeletedSpans: number;
  /** Bytes of the database in use. */
  dbBytes: number;
}

export interface SqliteStore extends SpanSpool, TraceWriter, TraceReader, ExportQueue, Retention {
  readonly path: string;
  /** One retention pass now (also run every sweepIntervalMs). */
  sweep(nowMs?: number): SweepResult;
  stats(): StoreStats;
  close(): void;
}

/** Turns a SQLite failure into the user-facing error: disk full is 503, the rest 500. */
function storageError(e: unknown, what: string): SeqError {
  if (e instanceof SeqError) return e;
  const err = e as { code?: string; message?: string };
  if (err.code === 'SQLITE_FULL' || /ENOSPC|database or disk is full/i.test(err.message ?? '')) {
    return new SeqError('SEQ_ERR_STORAGE_FULL', `storage is full: cannot ${what} (${err.message}); data accepted before is kept, retry later or free disk space / lower retention_max_bytes`, 503);
  }
  return new SeqError('SEQ_ERR_STORAGE', `storage failed to ${what}: ${err.code ? err.code + ': ' : ''}${err.message}`, 500);
}

function guard<A extends unknown[], R>(what: string, fn: (...a: A) => R): (...a: A) => R {
  return (...a: A) => {
    try {
      return fn(...a);
    } catch (e) {
      throw storageError(e, what);
    }
  };
}

export function openSqliteStore(dir: string, opts: SqliteStoreOptions): SqliteStore {
  const now = opts.now ?? Date.now;
  const path = join(dir, DB_FILE);
  let db: Database.Database;
  try {
    mkdirSync(dir, { recursive: true });
    db = new Database(path);
    // 16 KiB pages (a new database only; before WAL mode): what a commit costs is mostly
    // pages written (each a WAL frame, again at the checkpoint: a few system calls each), and
    // a chunk or a spooled body takes a quarter of the pages it takes with 4 KiB ones.
    db.pragma(`page_size = ${PAGE_SIZE}`);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${opts.durability === 'os' ? 'FULL' : 'NORMAL'}`);
    // Keep the WAL from staying large after a burst, and give readers page cache.
    db.pragma('journal_size_limit = 67108864');
    db.pragma('cache_size = -65536'); // KiB
    db.pragma('temp_store = MEMORY');
    createSchema(db);
  } catch (e) {
    throw storageError(e, `open the database ${path}`);
  }

  const writer = prepareWriter(db, opts.exportQueue !== false);
  const reader = prepareReader(db);
  const retention = prepareRetention(db);

  const insertBatch = db.prepare(`INSERT INTO spool (received_at_ms, spans) VALUES (?, ?)`);
  const pendingPage = db.prepare(`SELECT id, received_at_ms, spans FROM spool WHERE id > ? ORDER BY id LIMIT 64`);
  const countSpool = db.prepare(`SELECT count(*) FROM spool`).pluck();
  const queuedChunks = db.prepare(`SELECT q.chunk, q.done, c.data FROM export_queue q JOIN chunks c ON c.id = q.chunk
    WHERE q.chunk >= ? ORDER BY q.chunk LIMIT ?`).raw();
  const queueRow = db.prepare(`SELECT count, left, done FROM export_queue WHERE chunk = ?`);
  const unqueue = db.prepare(`DELETE FROM export_queue WHERE chunk = ?`);
  const markQueue = db.prepare(`UPDATE export_queue SET left = ?, done = ? WHERE chunk = ?`);
  const countQueue = db.prepare(`SELECT coalesce(sum(left), 0) FROM export_queue`).pluck();
  const getCounter = db.prepare(`SELECT value FROM meta WHERE key = ?`).pluck();
  const addCounter = db.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value`);

  let backlog = countQueue.get() as number;
  let storedSpans = 0;

  const commitTx = db.transaction(writer.commit);
  /** Marks spans (export row ids) sent; returns how many were not marked before. */
  const markTx = db.transaction((ids: number[]) => {
    const byChunk = new Map<number, number[]>();
    for (const id of ids) {
      const chunk = Math.floor(id / CHUNK_SPANS);
      const list = byChunk.get(chunk);
      if (list) list.push(id % CHUNK_SPANS);
      else byChunk.set(chunk, [id % CHUNK_SPANS]);
    }
    let n = 0;
    for (const [chunk, indexes] of byChunk) {
      const q = queueRow.get(chunk) as { count: number; left: number; done: Buffer | null } | undefined;
      if (!q) continue;
      const done = q.done ?? Buffer.alloc((q.count + 7) >> 3);
      let left = q.left;
      for (const i of indexes) {
        if (i >= q.count || done[i >> 3] & (1 << (i & 7))) continue;
        done[i >> 3] |= 1 << (i & 7);
        left--;
        n++;
      }
      if (left === 0) unqueue.run(chunk);
      else if (left !== q.left) markQueue.run(left, done, chunk);
    }
    return n;
  });

  /** Up to `limit` queued spans after export row id `after`, oldest first. */
  function unexported(after: number, limit: number): { rowId: number; span: LinkedSpan }[] {
    const out: { rowId: number; span: LinkedSpan }[] = [];
    let chunk = Math.max(0, Math.floor(after / CHUNK_SPANS));
    while (out.length < limit) {
      const rows = queuedChunks.all(chunk, 64) as [number, Buffer | null, string][];
      for (const [id, done, data] of rows) {
        const spans = decodeChunk(data);
        for (let i = 0; i < spans.length && out.length < limit; i++) {
          const rowId = id * CHUNK_SPANS + i;
          if (rowId <= after || (done && done[i >> 3] & (1 << (i & 7)))) continue;
          out.push({ rowId, span: spans[i] });
        }
        if (out.length >= limit) break;
      }
      if (rows.length < 64) break;
      chunk = rows[rows.length - 1][0] + 1;
    }
    return out;
  }

  const append = guard('append a batch to the spool', (spans: EbpfSpan[], receivedAtMs: number, raw?: RawBatch): number => {
    // A raw body is stored as a BLOB (the column's TEXT affinity leaves BLOBs alone), encoded
    // spans as TEXT: pending() tells them apart by type, so old spools still replay.
    const data = raw ? encodeRawBatch(raw) : encodeEbpfSpans(spans);
    return Number(insertBatch.run(receivedAtMs, data).lastInsertRowid);
  });

  function* pending(): Iterable<SpooledBatch> {
    // Pages, not one open iterator: the connection stays usable while the caller replays.
    let after = 0;
    for (;;) {
      const rows = guard('read the spool', () => pendingPage.all(after) as { id: number; received_at_ms: number; spans: string | Buffer }[])();
      for (const r of rows) {
        if (typeof r.spans === 'string') yield { id: r.id, receivedAtMs: r.received_at_ms, spans: decodeEbpfSpans(r.spans) };
        else yield { id: r.id, receivedAtMs: r.received_at_ms, raw: decodeRawBatch(r.spans) };
      }
      if (rows.length < 64) return;
      after = rows[rows.length - 1].id;
    }
  }

  const commit = guard('store linked spans', (sampled: LinkedSpan[], doneBatchIds: number[]): void => {
    const effect = commitTx(sampled, doneBatchIds);
    storedSpans += effect.storedSpans;
    backlog += effect.queuedForExport;
  });

  const sweepFor = guard('apply retention', (nowMs: number, budgetMs: number) => {
    const r = retention.sweep(nowMs, opts.retentionMaxAgeMs, opts.retentionMaxBytes, budgetMs);
    if (r.deletedTraces > 0) {
      db.transaction(() => {
        addCounter.run('retention_deleted_traces', r.deletedTraces);
        addCounter.run('retention_deleted_spans', r.deletedSpans);
        addCounter.run('export_dropped_by_retention', r.exportDropped);
      })();
      backlog -= r.exportDropped;
    }
    return r;
  });
  const sweep = (nowMs: number = now()): SweepResult => {
    const { more: _more, ...r } = sweepFor(nowMs, Infinity);
    return r;
  };

  // The periodic sweep works in slices of SWEEP_SLICE_MS with the event loop free in between.
  const interval = opts.sweepIntervalMs ?? 60_000;
  let sweeping = false;
  let closed = false;
  const slice = () => {
    if (closed) return;
    try {
      if (sweepFor(now(), SWEEP_SLICE_MS).more) {
        setTimeout(slice, 5).unref();
        return;
      }
    } catch (e) {
      // A full disk must not stop the process; the next sweep retries.
      process.emitWarning(`seqtrace retention sweep failed: ${(e as Error).message}`);
    }
    sweeping = false;
  };
  const timer = interval > 0 ? setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    slice();
  }, interval) : undefined;
  timer?.unref();

  const read = <A extends unknown[], R>(what: string, fn: (...a: A) => R) => {
    const g = guard(what, fn);
    return (...a: A): Promise<R> => {
      try {
        return Promise.resolve(g(...a));
      } catch (e) {
        return Promise.reject(e);
      }
    };
  };

  return {
    path,
    append,
    pending,
    commit,
    findTraces: read('search traces', reader.findTraces),
    getTrace: read('read a trace', reader.getTrace),
    services: read('list services', reader.services),
    operations: read('list operations', reader.operations),
    dependencies: read('compute dependencies', reader.dependencies),
    unexported: guard('read the export queue', unexported),
    markExported: guard('mark spans exported', (rowIds: number[]) => {
      backlog -= markTx(rowIds);
    }),
    backlog: () => backlog,
    sweep,
    stats: guard('read statistics', (): StoreStats => ({
      spooledBatches: countSpool.get() as number,
      storedSpans,
      exportBacklog: backlog,
      exportDroppedByRetention: (getCounter.get('export_dropped_by_retention') as number | undefined) ?? 0,
      retentionDeletedTraces: (getCounter.get('retention_deleted_traces') as number | undefined) ?? 0,
      retentionDeletedSpans: (getCounter.get('retention_deleted_spans') as number | undefined) ?? 0,
      dbBytes: retention.usedBytes(),
    })),
    close() {
      closed = true;
      if (timer) clearInterval(timer);
      if (db.open) db.close();
    },
  };
}
