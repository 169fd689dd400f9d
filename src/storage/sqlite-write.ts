// The commit path: stored spans, trace summaries, search rows, call edges and the export
// queue, all written in the caller's transaction. This is the linker's hot path, and what it
// costs is mostly B-tree pages: every page a commit changes is written to the WAL (and again
// by the checkpoint), ~10 µs a page. So a commit touches as few pages as it can:
//   - a trace's new spans are one row (a chunk, ./codec.ts), appended in id order;
//   - the idempotence keys (start_us, span_id) are appended in start order;
//   - the summary (keyed by the random trace id) is the one random page per trace;
//   - search rows are appended per service / operation in start order;
// and runs few statements: the keys and the search rows go in multi-row INSERTs. An existing
// summary is read only when a trace gets more spans after it was first stored.
import type Database from 'better-sqlite3';
import type { LinkedSpan } from '../span/span.js';
import { decodeChunk, encodeChunk } from './codec.js';
import { prepareEdges, type Call } from './sqlite-edges.js';

const STATUS_RANK = { ok: 0, warning: 1, error: 2 } as const;

/** Most spans in one chunk; a span's export row id is chunk id × CHUNK_SPANS + its index. */
export const CHUNK_SPANS = 4096;

interface SummaryRow {
  id?: number;
  trace_id: string;
  start_us: number;
  end_us: number;
  duration_us: number;
  span_count: number;
  error_count: number;
  status: number;
  late_count: number;
  services: string;
  root_service: string;
  root_operation: string;
  root_rank: number;
  root_start_us: number;
  chunks: string;
}

/** What one commit changed, applied to the store's counters after the transaction succeeded. */
export interface CommitEffect {
  storedSpans: number;
  queuedForExport: number;
}

/** traces.trace_key of a trace id: a 52-bit hash (two 32-bit FNV-1a variants, 26 bits of each). */
export function traceKey(traceId: string): number {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < traceId.length; i++) {
    const c = traceId.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  return (a >>> 6) * 0x4000000 + (b >>> 6);
}

/** Chunk ids listed in a summary's `chunks`. */
export function chunkIds(list: string): number[] {
  return list === '' ? [] : list.split(',').map(Number);
}

/**
 * `INSERT ... VALUES (?, ...), (?, ...), ...` over a flat parameter list, up to `maxRows` rows
 * a statement (statements are prepared per row count, once); returns the rows inserted.
 * One statement for 100 rows costs about half of 100 statements of one row.
 */
export function multiRow(db: Database.Database, head: string, columns: number, maxRows: number) {
  const statements: Database.Statement[] = [];
  const tuple = '(' + new Array(columns).fill('?').join(', ') + ')';
  const statement = (rows: number) => (statements[rows] ??= db.prepare(`${head} VALUES ${new Array(rows).fill(tuple).join(', ')}`));
  return (params: unknown[]): number => {
    const rows = params.length / columns;
    let changes = 0;
    for (let i = 0; i < rows; i += maxRows) {
      const n = Math.min(maxRows, rows - i);
      changes += statement(n).run(n === rows ? params : params.slice(i * columns, (i + n) * columns)).changes;
    }
    return changes;
  };
}

/** Search rows of one commit by name id: start_us, trace row id, start_us, trace row id, ... */
type SearchRows = Map<number, number[]>;

function searchRow(groups: SearchRows, id: number, startUs: number, trace: number): void {
  const g = groups.get(id);
  if (g) g.push(startUs, trace);
  else groups.set(id, [startUs, trace]);
}

/** The parameters of all rows (id, start_us, trace): in key order, so that consecutive inserts land next to each other. */
function inKeyOrder(groups: SearchRows): number[] {
  const ids = [...groups.keys()].sort((a, b) => a - b);
  const out: number[] = [];
  for (const id of ids) {
    const rows = groups.get(id)!;
    let sorted = true;
    for (let i = 2; i < rows.length && sorted; i += 2) {
      if (rows[i] < rows[i - 2] || (rows[i] === rows[i - 2] && rows[i + 1] < rows[i - 1])) sorted = false;
    }
    if (sorted) {
      for (let i = 0; i < rows.length; i += 2) out.push(id, rows[i], rows[i + 1]);
    } else {
      const order: number[] = [];
      for (let i = 0; i < rows.length; i += 2) order.push(i);
      order.sort((a, b) => rows[a] - rows[b] || rows[a + 1] - rows[b + 1]);
      for (const i of order) out.push(id, rows[i], rows[i + 1]);
    }
  }
  return out;
}

/** Ids of the service and (service NUL operation) names of one commit. */
interface Names {
  services: Map<string, number>;
  ops: Map<string, number>;
}
interface Search {
  services: SearchRows;
  ops: SearchRows;
}

export function prepareWriter(db: Database.Database, exportEnabled: boolean) {
  const addKeys = multiRow(db, `INSERT OR IGNORE INTO span_keys (start_us, span_id)`, 2, 100);
  const addKey = db.prepare(`INSERT OR IGNORE INTO span_keys (start_us, span_id) VALUES (?, ?)`);
  const savepoint = db.prepare(`SAVEPOINT span_keys`);
  const rollbackTo = db.prepare(`ROLLBACK TO span_keys`);
  const release = db.prepare(`RELEASE span_keys`);
  const insertChunk = db.prepare(`INSERT INTO chunks (data) VALUES (?)`);
  const queueChunk = db.prepare(`INSERT INTO export_queue (chunk, count, left, done) VALUES (?, ?, ?, NULL)`);
  const chunkData = db.prepare(`SELECT data FROM chunks WHERE id = ?`).pluck();
  const getSummary = db.prepare(`SELECT * FROM traces WHERE trace_key = ? AND trace_id = ?`);
  const addSummary = db.prepare(`INSERT INTO traces (start_us, end_us, duration_us, span_count, error_count, status, late_count,
    services, root_service, root_operation, root_rank, root_start_us, chunks, trace_key, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const updateSummary = db.prepare(`UPDATE traces SET start_us = ?, end_us = ?, duration_us = ?, span_count = ?, error_count = ?,
    status = ?, late_count = ?, services = ?, root_service = ?, root_operation = ?, root_rank = ?, root_start_us = ?, chunks = ?
    WHERE id = ?`);
  const addServices = multiRow(db, `INSERT OR IGNORE INTO trace_services (service, start_us, trace)`, 3, 150);
  const addOps = multiRow(db, `INSERT OR IGNORE INTO trace_ops (op, start_us, trace)`, 3, 150);
  const moveService = db.prepare(`UPDATE trace_services SET start_us = ? WHERE service = ? AND start_us = ? AND trace = ?`);
  const moveOp = db.prepare(`UPDATE trace_ops SET start_us = ? WHERE op = ? AND start_us = ? AND trace = ?`);
  const touchService = db.prepare(`INSERT INTO services (service, last_us) VALUES (?, ?)
    ON CONFLICT (service) DO UPDATE SET last_us = max(last_us, excluded.last_us) RETURNING id`).pluck();
  const touchOperation = db.prepare(`INSERT INTO operations (service, operation, last_us) VALUES (?, ?, ?)
    ON CONFLICT (service, operation) DO UPDATE SET last_us = max(last_us, excluded.last_us) RETURNING id`).pluck();
  const serviceId = db.prepare(`SELECT id FROM services WHERE service = ?`).pluck();
  const operationId = db.prepare(`SELECT id FROM operations WHERE service = ? AND operation = ?`).pluck();
  const edges = prepareEdges(db);
  const addPending = db.prepare(`INSERT OR IGNORE INTO pending_edges VALUES (?, ?, ?, ?, ?, ?)`);
  const takePending = db.prepare(`SELECT child_span_id, child_service, child_error FROM pending_edges WHERE parent_span_id = ?`);
  const dropPending = db.prepare(`DELETE FROM pending_edges WHERE parent_span_id = ?`);
  const hasPending = db.prepare(`SELECT EXISTS (SELECT 1 FROM pending_edges) AS x`).pluck();
  const deleteBatch = db.prepare(`DELETE FROM spool WHERE id = ?`);

  /** The spans stored in chunks `ids`, oldest chunk first. */
  function storedSpans(ids: number[]): LinkedSpan[] {
    const out: LinkedSpan[] = [];
    for (const id of ids) {
      const data = chunkData.get(id) as string | undefined;
      if (data !== undefined) for (const s of decodeChunk(data)) out.push(s);
    }
    return out;
  }

  /** The spans of `sampled` whose key is new, in order; their keys are stored. */
  function freshSpans(sampled: LinkedSpan[]): LinkedSpan[] {
    const params: unknown[] = new Array(sampled.length * 2);
    for (let i = 0; i < sampled.length; i++) {
      params[2 * i] = sampled[i].startUs;
      params[2 * i + 1] = sampled[i].spanId;
    }
    savepoint.run();
    if (addKeys(params) === sampled.length) {
      release.run();
      return sampled; // the usual case: no key was there
    }
    // Replayed or resent spans (or one span twice in this commit): again one by one, to know which.
    rollbackTo.run();
    const fresh: LinkedSpan[] = [];
    for (const s of sampled) if (addKey.run(s.startUs, s.spanId).changes === 1) fresh.push(s);
    release.run();
    return fresh;
  }

  /** Runs inside a transaction. */
  function commit(sampled: LinkedSpan[], doneBatchIds: number[]): CommitEffect {
    let queued = 0;
    const fresh = sampled.length > 0 ? freshSpans(sampled) : sampled;
    if (fresh.length > 0) {
      const stored = summarize(fresh);
      queued = stored.queued;
      linkEdges(fresh, sampled, stored.oldChunks);
    }
    for (const id of doneBatchIds) deleteBatch.run(id);
    return { storedSpans: fresh.length, queuedForExport: queued };
  }

  /** Chunks, summaries, search rows and the names of the fresh spans. */
  function summarize(fresh: LinkedSpan[]): { queued: number; oldChunks: Map<string, number[]> } {
    // Spans of one trace usually come together; group without sorting.
    const byTrace = new Map<string, LinkedSpan[]>();
    const services = new Map<string, number>(); // service → latest start, then its id
    const ops = new Map<string, [string, string, number]>(); // service NUL operation → [service, operation, latest start]
    for (const s of fresh) {
      const list = byTrace.get(s.traceId);
      if (list) list.push(s);
      else byTrace.set(s.traceId, [s]);
      const last = services.get(s.service);
      if (last === undefined || s.startUs > last) services.set(s.service, s.startUs);
      const key = s.service + '\u0000' + s.resource;
      const op = ops.get(key);
      if (!op) ops.set(key, [s.service, s.resource, s.startUs]);
      else if (s.startUs > op[2]) op[2] = s.startUs;
    }
    const names: Names = { services: new Map(), ops: new Map() };
    for (const [service, lastUs] of services) names.services.set(service, touchService.get(service, lastUs) as number);
    for (const [key, [service, operation, lastUs]] of ops) names.ops.set(key, touchOperation.get(service, operation, lastUs) as number);
    const rows: Search = { services: new Map(), ops: new Map() };
    const oldChunks = new Map<string, number[]>();
    let queued = 0;
    for (const [traceId, spans] of byTrace) queued += storeTrace(traceId, spans, names, rows, oldChunks);
    // In key order: consecutive inserts then land next to each other in the B-tree.
    addServices(inKeyOrder(rows.services));
    addOps(inKeyOrder(rows.ops));
    return { queued, oldChunks };
  }

  /** One trace's new spans: its chunk(s), export queue entries, summary and search rows. */
  function storeTrace(traceId: string, spans: LinkedSpan[], names: Names, search: Search, oldChunks: Map<string, number[]>): number {
    let chunks = '';
    let queued = 0;
    for (let i = 0; i < spans.length; i += CHUNK_SPANS) {
      const part = spans.length <= CHUNK_SPANS ? spans : spans.slice(i, i + CHUNK_SPANS);
      const id = Number(insertChunk.run(encodeChunk(traceId, part)).lastInsertRowid);
      chunks = chunks === '' ? String(id) : chunks + ',' + id;
      if (exportEnabled) {
        queueChunk.run(id, part.length, part.length);
        queued += part.length;
      }
    }
    const key = traceKey(traceId);
    const old = getSummary.get(key, traceId) as SummaryRow | undefined;
    const row: SummaryRow = old ? { ...old } : {
      trace_id: traceId, start_us: Infinity, end_us: -Infinity, duration_us: 0, span_count: 0, error_count: 0,
      status: 0, late_count: 0, services: '[]', root_service: '', root_operation: '', root_rank: -1, root_start_us: 0, chunks: '',
    };
    const services: string[] = old ? JSON.parse(old.services) : [];
    const oldServiceCount = services.length;
    // Ids of the (service, operation) pairs of these spans, each once.
    const pairs: number[] = [];
    for (const s of spans) {
      if (s.startUs < row.start_us) row.start_us = s.startUs;
      const end = s.startUs + s.durationUs;
      if (end > row.end_us) row.end_us = end;
      row.span_count++;
      const rank = STATUS_RANK[s.status] ?? 0;
      if (rank === 2) row.error_count++;
      if (rank > row.status) row.status = rank;
      if (s.late) row.late_count++;
      const rootRank = s.parentId === '' ? 1 : 0;
      if (rootRank > row.root_rank || (rootRank === row.root_rank && s.startUs < row.root_start_us)) {
        row.root_rank = rootRank;
        row.root_start_us = s.startUs;
        row.root_service = s.service;
        row.root_operation = s.resource;
      }
      if (!services.includes(s.service)) services.push(s.service);
      const op = names.ops.get(s.service + '\u0000' + s.resource)!;
      if (!pairs.includes(op)) pairs.push(op);
    }
    row.duration_us = row.end_us - row.start_us;
    if (services.length !== oldServiceCount) row.services = JSON.stringify(services);
    row.chunks = old && old.chunks !== '' ? old.chunks + ',' + chunks : chunks;
    const values = [row.start_us, row.end_us, row.duration_us, row.span_count, row.error_count, row.status, row.late_count,
      row.services, row.root_service, row.root_operation, row.root_rank, row.root_start_us, row.chunks];
    let trace: number;
    if (old) {
      trace = old.id!;
      updateSummary.run(values, trace);
      const before = chunkIds(old.chunks);
      oldChunks.set(traceId, before);
      // A late span that starts earlier moves the trace; its search rows move with it (the
      // operations of its stored spans are in its chunks).
      if (row.start_us !== old.start_us) {
        for (let i = 0; i < oldServiceCount; i++) {
          const id = serviceId.get(services[i]) as number | undefined;
          if (id !== undefined) moveService.run(row.start_us, id, old.start_us, trace);
        }
        const moved = new Set<number>();
        for (const s of storedSpans(before)) {
          const id = operationId.get(s.service, s.resource) as number | undefined;
          if (id === undefined || moved.has(id)) continue;
          moved.add(id);
          moveOp.run(row.start_us, id, old.start_us, trace);
        }
      }
    } else trace = Number(addSummary.run(values, key, traceId).lastInsertRowid);
    for (let i = oldServiceCount; i < services.length; i++) searchRow(search.services, names.services.get(services[i])!, row.start_us, trace);
    // A pair the trace had already is ignored (same key).
    for (const op of pairs) searchRow(search.ops, op, row.start_us, trace);
    return queued;
  }

  /**
   * An edge is a client (exit) span whose child is a server (entry) span of another service; a
   * client span with no server span at all is a call to a peer that is not traced (sqlite-edges.ts).
   */
  function linkEdges(fresh: LinkedSpan[], sampled: LinkedSpan[], oldChunks: Map<string, number[]>): void {
    const calls: Call[] = [];
    let byId: Map<string, LinkedSpan> | undefined;
    let answered: Set<string> | undefined; // exits of this commit with a server span in it
    let stored: Set<LinkedSpan> | undefined; // spans of earlier commits read into byId
    let pendingKnown: boolean | undefined;
    /** Traces stored before this commit whose stored spans were read into byId. */
    const read = new Set<string>();
    for (const s of fresh) {
      if (s.kind === 'entry' && s.parentId !== '') {
        if (!byId) {
          byId = new Map();
          for (const x of sampled) byId.set(x.spanId, x);
        }
        let parent = byId.get(s.parentId);
        if (!parent) {
          // A parent stored by an earlier commit is in its trace's chunks (a span's parent is
          // of the same trace).
          const before = oldChunks.get(s.traceId);
          if (before && !read.has(s.traceId)) {
            read.add(s.traceId);
            for (const x of storedSpans(before)) if (!byId.has(x.spanId)) { byId.set(x.spanId, x); (stored ??= new Set()).add(x); }
            parent = byId.get(s.parentId);
          }
        }
        if (parent) {
          // A client span stored before had no server span then: counted as a call to a peer.
          if (parent.kind === 'exit' && stored?.has(parent)) {
            calls.push({ startUs: parent.startUs, parent: parent.service, child: peerOf(parent), peer: true, durationUs: parent.durationUs, error: parent.status === 'error', weight: -1 });
          }
          if (parent.kind === 'exit' && parent.service !== s.service) {
            calls.push({ startUs: parent.startUs, parent: parent.service, child: s.service, peer: false, durationUs: parent.durationUs, error: parent.status === 'error' || s.status === 'error' });
          }
        } else {
          addPending.run(s.parentId, s.spanId, s.traceId, s.service, s.status === 'error' ? 1 : 0, s.startUs);
          pendingKnown = true;
        }
      } else if (s.kind === 'exit') {
        // Most exits have their child in the same commit (the entry's branch counts the call).
        if (!answered) {
          answered = new Set();
          for (const x of sampled) if (x.kind === 'entry' && x.parentId !== '') answered.add(x.parentId);
        }
        if (answered.has(s.spanId)) continue;
        // Else a server span stored before it (pending), or none: a peer not traced. (A server
        // span that comes later still, late, takes that call back: the entry's branch above.)
        if (pendingKnown === undefined) pendingKnown = hasPending.get() === 1;
        const waiting = pendingKnown ? takePending.all(s.spanId) as { child_span_id: string; child_service: string; child_error: number }[] : [];
        if (waiting.length === 0) {
          calls.push({ startUs: s.startUs, parent: s.service, child: peerOf(s), peer: true, durationUs: s.durationUs, error: s.status === 'error' });
          continue;
        }
        for (const w of waiting) {
          if (w.child_service !== s.service) {
            calls.push({ startUs: s.startUs, parent: s.service, child: w.child_service, peer: false, durationUs: s.durationUs, error: s.status === 'error' || w.child_error === 1 });
          }
        }
        dropPending.run(s.spanId);
      }
    }
    if (calls.length > 0) edges.record(calls);
  }

  return { commit };
}

/** What a client span with no server span called: the request's Host, else the address (a Unix socket's path). */
function peerOf(s: LinkedSpan): string {
  const host = s.attrs.http_host;
  if (typeof host === 'string' && host !== '') return host;
  if (!s.dstIp) return typeof s.attrs.unix_path === 'string' && s.attrs.unix_path !== '' ? `unix:${s.attrs.unix_path}` : 'unknown';
  return s.dstIp.includes(':') ? `[${s.dstIp}]:${s.dstPort}` : `${s.dstIp}:${s.dstPort}`;
}
