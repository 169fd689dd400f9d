// The commit path: stored spans, trace summaries, search rows, call edges and the export
// queue, all written in the caller's transaction. This is the linker's hot path: statements
// are prepared once, summaries are merged in memory, an existing summary is read only when
// a trace gets more spans after it was first stored.
import type Database from 'better-sqlite3';
import type { LinkedSpan } from '../span/span.js';
import { decodeLinkedSpan, encodeLinkedSpan } from './codec.js';
import { prepareEdges, type Call } from './sqlite-edges.js';

const STATUS_RANK = { ok: 0, warning: 1, error: 2 } as const;

interface SummaryRow {
  trace_id: string;
  start_us: number;
  end_us: number;
  duration_us: number;
  span_count: number;
  error_count: number;
  status: number;
  late_count: number;
  services: string;
  ops: string;
  root_service: string;
  root_operation: string;
  root_rank: number;
  root_start_us: number;
}

/** What one commit changed, applied to the store's counters after the transaction succeeded. */
export interface CommitEffect {
  storedSpans: number;
  queuedForExport: number;
}

export function prepareWriter(db: Database.Database, exportEnabled: boolean) {
  const insertSpan = db.prepare(`INSERT OR IGNORE INTO spans (span_id, trace_id, start_us, data) VALUES (?, ?, ?, ?)`);
  const queueSpan = db.prepare(`INSERT INTO export_queue (span_row) VALUES (?)`);
  const getSummary = db.prepare(`SELECT * FROM traces WHERE trace_id = ?`);
  const putSummary = db.prepare(`INSERT OR REPLACE INTO traces VALUES
    (@trace_id, @start_us, @end_us, @duration_us, @span_count, @error_count, @status, @late_count,
     @services, @ops, @root_service, @root_operation, @root_rank, @root_start_us)`);
  const addService = db.prepare(`INSERT OR IGNORE INTO trace_services (service, start_us, trace_id) VALUES (?, ?, ?)`);
  const addOp = db.prepare(`INSERT OR IGNORE INTO trace_ops (service, operation, start_us, trace_id) VALUES (?, ?, ?, ?)`);
  const moveService = db.prepare(`UPDATE trace_services SET start_us = ? WHERE service = ? AND start_us = ? AND trace_id = ?`);
  const moveOp = db.prepare(`UPDATE trace_ops SET start_us = ? WHERE service = ? AND operation = ? AND start_us = ? AND trace_id = ?`);
  const touchOperation = db.prepare(`INSERT INTO operations (service, operation, last_us) VALUES (?, ?, ?)
    ON CONFLICT (service, operation) DO UPDATE SET last_us = max(last_us, excluded.last_us)`);
  const spanData = db.prepare(`SELECT data FROM spans WHERE span_id = ?`).pluck();
  const edges = prepareEdges(db);
  const addPending = db.prepare(`INSERT OR IGNORE INTO pending_edges VALUES (?, ?, ?, ?, ?, ?)`);
  const takePending = db.prepare(`SELECT child_span_id, child_service, child_error FROM pending_edges WHERE parent_span_id = ?`);
  const dropPending = db.prepare(`DELETE FROM pending_edges WHERE parent_span_id = ?`);
  const hasPending = db.prepare(`SELECT EXISTS (SELECT 1 FROM pending_edges) AS x`).pluck();
  const deleteBatch = db.prepare(`DELETE FROM spool WHERE id = ?`);

  /** Runs inside a transaction. */
  function commit(sampled: LinkedSpan[], doneBatchIds: number[]): CommitEffect {
    const fresh: LinkedSpan[] = [];
    let queued = 0;
    for (const s of sampled) {
      const r = insertSpan.run(s.spanId, s.traceId, s.startUs, encodeLinkedSpan(s));
      if (r.changes === 0) continue; // already stored: a replayed or resent span
      fresh.push(s);
      if (exportEnabled) {
        queueSpan.run(r.lastInsertRowid);
        queued++;
      }
    }
    if (fresh.length > 0) {
      summarize(fresh);
      linkEdges(fresh, sampled);
    }
    for (const id of doneBatchIds) deleteBatch.run(id);
    return { storedSpans: fresh.length, queuedForExport: queued };
  }

  function summarize(fresh: LinkedSpan[]): void {
    // Spans of one trace usually come together; group without sorting.
    const byTrace = new Map<string, LinkedSpan[]>();
    const ops = new Map<string, [string, string, number]>();
    for (const s of fresh) {
      const list = byTrace.get(s.traceId);
      if (list) list.push(s);
      else byTrace.set(s.traceId, [s]);
      const key = s.service + '\u0000' + s.resource;
      const op = ops.get(key);
      if (!op) ops.set(key, [s.service, s.resource, s.startUs]);
      else if (s.startUs > op[2]) op[2] = s.startUs;
    }
    for (const [traceId, spans] of byTrace) summarizeTrace(traceId, spans);
    for (const [service, operation, lastUs] of ops.values()) touchOperation.run(service, operation, lastUs);
  }

  function summarizeTrace(traceId: string, spans: LinkedSpan[]): void {
    const old = getSummary.get(traceId) as SummaryRow | undefined;
    const row: SummaryRow = old ? { ...old } : {
      trace_id: traceId, start_us: Infinity, end_us: -Infinity, duration_us: 0, span_count: 0, error_count: 0,
      status: 0, late_count: 0, services: '[]', ops: '[]', root_service: '', root_operation: '', root_rank: -1, root_start_us: 0,
    };
    const services: string[] = old ? JSON.parse(old.services) : [];
    const ops: [string, string][] = old ? JSON.parse(old.ops) : [];
    const oldServiceCount = services.length;
    const oldOpCount = ops.length;
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
      if (!ops.some((o) => o[1] === s.resource && o[0] === s.service)) ops.push([s.service, s.resource]);
    }
    row.duration_us = row.end_us - row.start_us;
    if (services.length !== oldServiceCount) row.services = JSON.stringify(services);
    if (ops.length !== oldOpCount) row.ops = JSON.stringify(ops);
    putSummary.run(row);
    // A late span that starts earlier moves the trace; its search rows move with it.
    if (old && row.start_us !== old.start_us) {
      for (let i = 0; i < oldServiceCount; i++) moveService.run(row.start_us, services[i], old.start_us, traceId);
      for (let i = 0; i < oldOpCount; i++) moveOp.run(row.start_us, ops[i][0], ops[i][1], old.start_us, traceId);
    }
    for (let i = oldServiceCount; i < services.length; i++) addService.run(services[i], row.start_us, traceId);
    for (let i = oldOpCount; i < ops.length; i++) addOp.run(ops[i][0], ops[i][1], row.start_us, traceId);
  }

  /** An edge is a client (exit) span whose child is a server (entry) span of another service. */
  function linkEdges(fresh: LinkedSpan[], sampled: LinkedSpan[]): void {
    const calls: Call[] = [];
    let byId: Map<string, LinkedSpan> | undefined;
    let pendingKnown: boolean | undefined;
    for (const s of fresh) {
      if (s.kind === 'entry' && s.parentId !== '') {
        if (!byId) {
          byId = new Map();
          for (const x of sampled) byId.set(x.spanId, x);
        }
        let parent = byId.get(s.parentId);
        if (!parent) {
          const data = spanData.get(s.parentId) as string | undefined;
          if (data) parent = decodeLinkedSpan(data);
        }
        if (parent) {
          if (parent.kind === 'exit' && parent.service !== s.service) {
            calls.push({ startUs: parent.startUs, parent: parent.service, child: s.service, durationUs: parent.durationUs, error: parent.status === 'error' || s.status === 'error' });
          }
        } else {
          addPending.run(s.parentId, s.spanId, s.traceId, s.service, s.status === 'error' ? 1 : 0, s.startUs);
          pendingKnown = true;
        }
      } else if (s.kind === 'exit') {
        // Most exits have their child in the same commit; skip the probe when nothing waits.
        if (pendingKnown === undefined) pendingKnown = hasPending.get() === 1;
        if (!pendingKnown) continue;
        const waiting = takePending.all(s.spanId) as { child_span_id: string; child_service: string; child_error: number }[];
        if (waiting.length === 0) continue;
        for (const w of waiting) {
          if (w.child_service !== s.service) {
            calls.push({ startUs: s.startUs, parent: s.service, child: w.child_service, durationUs: s.durationUs, error: s.status === 'error' || w.child_error === 1 });
          }
        }
        dropPending.run(s.spanId);
      }
    }
    if (calls.length > 0) edges.record(calls);
  }

  return { commit };
}
