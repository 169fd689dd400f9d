// The query side of the SQLite store: search over the trace summaries, whole traces,
// services, operations and the service map. Every search walks one index in result order
// (newest first) and stops after a page; see docs/storage.md for the plans.
import type Database from 'better-sqlite3';
import { SeqError } from '../errors.js';
import type { LinkedSpan } from '../span/span.js';
import { decodeChunk } from './codec.js';
import { prepareEdges } from './sqlite-edges.js';
import { chunkIds, traceKey } from './sqlite-write.js';
import type { TracePage, TraceQuery, TraceSummary } from './store.js';

const STATUS_CODE = { ok: 0, warning: 1, error: 2 } as const;
export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 1000;

interface SummaryRow {
  id: number;
  trace_id: string;
  start_us: number;
  duration_us: number;
  span_count: number;
  error_count: number;
  late_count: number;
  services: string;
  root_service: string;
  root_operation: string;
}

/** A cursor: the last trace of a page, by (start_us, row id): the search order. */
export function encodeCursor(startUs: number, trace: number): string {
  return Buffer.from(JSON.stringify({ s: startUs, r: trace })).toString('base64url');
}

export function decodeCursor(cursor: string): { startUs: number; trace: number } {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Number.isSafeInteger(v?.s) && Number.isSafeInteger(v?.r)) return { startUs: v.s, trace: v.r };
  } catch {
    // fall through to the error below
  }
  throw new SeqError('SEQ_ERR_BAD_QUERY', `cursor = ${JSON.stringify(cursor)}: expected the "next" value of a previous page`, 400);
}

function toSummary(r: SummaryRow): TraceSummary {
  return {
    traceId: r.trace_id,
    rootService: r.root_service,
    rootOperation: r.root_operation,
    startUs: r.start_us,
    durationUs: r.duration_us,
    spanCount: r.span_count,
    errorCount: r.error_count,
    services: JSON.parse(r.services),
    lateCount: r.late_count,
  };
}

const COLUMNS = `t.id, t.trace_id, t.start_us, t.duration_us, t.span_count, t.error_count, t.late_count, t.services,
    t.root_service, t.root_operation`;

/** Conditions every plan shares: on the summary (t) and on the driving rows' (start_us, trace). */
function filters(q: TraceQuery, key: string, where: string[], params: unknown[]): void {
  const ref = key === 't' ? 't.id' : `${key}.trace`;
  if (q.status !== undefined) {
    where.push('t.status = ?');
    params.push(STATUS_CODE[q.status]);
  }
  if (q.minDurationUs !== undefined) {
    where.push('t.duration_us >= ?');
    params.push(q.minDurationUs);
  }
  if (q.maxDurationUs !== undefined) {
    where.push('t.duration_us <= ?');
    params.push(q.maxDurationUs);
  }
  if (q.startUs !== undefined) {
    where.push(`${key}.start_us >= ?`);
    params.push(q.startUs);
  }
  if (q.endUs !== undefined) {
    where.push(`${key}.start_us <= ?`);
    params.push(q.endUs);
  }
  if (q.cursor !== undefined) {
    const c = decodeCursor(q.cursor);
    where.push(`(${key}.start_us, ${ref}) < (?, ?)`);
    params.push(c.startUs, c.trace);
  }
}

const whereSql = (where: string[]) => (where.length ? 'WHERE ' + where.join(' AND ') : '');

/** Name ids a search needs (looked up by the reader; 0 in plan tests). */
export interface SearchIds {
  /** The service's id (services.id), with `service`. */
  service?: number;
  /** The (service, operation) id (operations.id), with both. */
  op?: number;
  /** For an operation without a service: the ids of every (service, operation) pair with it. */
  ops?: number[];
}

/** SQL and parameters of one search page; exported so tests can check its query plan. */
export function searchSql(q: TraceQuery, ids: SearchIds = {}): { sql: string; params: unknown[]; limit: number } {
  const limit = Math.min(Math.max(1, Math.floor(q.limit ?? DEFAULT_LIMIT)), MAX_LIMIT);
  const where: string[] = [];
  const params: unknown[] = [];
  if (q.operation !== undefined && q.service === undefined) {
    // One page from each (service, operation) key range, merged: at most services ×
    // (limit + 1) rows are sorted, however many traces match.
    const armWhere = ['x.op = ?'];
    const armParams: unknown[] = [];
    filters(q, 'x', armWhere, armParams);
    const arm = `SELECT * FROM (SELECT x.start_us AS start_us, x.trace AS trace
      FROM trace_ops x JOIN traces t ON t.id = x.trace ${whereSql(armWhere)}
      ORDER BY x.start_us DESC, x.trace DESC LIMIT ?)`;
    const arms = (ids.ops ?? [0]).map((op) => {
      params.push(op, ...armParams, limit + 1);
      return arm;
    });
    const sql = `SELECT ${COLUMNS} FROM (${arms.join(' UNION ')}) u JOIN traces t ON t.id = u.trace
      ORDER BY u.start_us DESC, u.trace DESC LIMIT ?`;
    params.push(limit + 1);
    return { sql, params, limit };
  }
  // The driving table is the one whose key yields rows in result order for the filter.
  let from: string;
  let key: string; // alias whose (start_us, trace) the order and the cursor use
  if (q.service !== undefined && q.operation !== undefined) {
    from = 'trace_ops x JOIN traces t ON t.id = x.trace';
    key = 'x';
    where.push('x.op = ?');
    params.push(ids.op ?? 0);
  } else if (q.service !== undefined) {
    from = 'trace_services x JOIN traces t ON t.id = x.trace';
    key = 'x';
    where.push('x.service = ?');
    params.push(ids.service ?? 0);
  } else {
    from = q.status !== undefined ? 'traces t INDEXED BY traces_by_status' : 'traces t INDEXED BY traces_by_start';
    key = 't';
  }
  filters(q, key, where, params);
  const ref = key === 't' ? 't.id' : `${key}.trace`;
  const sql = `SELECT ${COLUMNS} FROM ${from} ${whereSql(where)}
    ORDER BY ${key}.start_us DESC, ${ref} DESC LIMIT ?`;
  params.push(limit + 1);
  return { sql, params, limit };
}

export function prepareReader(db: Database.Database) {
  const statements = new Map<string, Database.Statement>();
  const cached = (sql: string) => {
    let st = statements.get(sql);
    if (!st) statements.set(sql, (st = db.prepare(sql)));
    return st;
  };
  const traceChunks = db.prepare(`SELECT chunks FROM traces WHERE trace_key = ? AND trace_id = ?`).pluck();
  const chunkData = db.prepare(`SELECT data FROM chunks WHERE id = ?`).pluck();
  const allServices = db.prepare(`SELECT DISTINCT service FROM operations ORDER BY service`).pluck();
  const serviceOps = db.prepare(`SELECT operation FROM operations WHERE service = ? ORDER BY operation`).pluck();
  const edges = prepareEdges(db);

  const serviceId = db.prepare(`SELECT id FROM services WHERE service = ?`).pluck();
  const operationId = db.prepare(`SELECT id FROM operations WHERE service = ? AND operation = ?`).pluck();
  const operationIds = db.prepare(`SELECT id FROM operations WHERE operation = ? ORDER BY id`).pluck();

  function findTraces(q: TraceQuery): TracePage {
    if (q.cursor !== undefined) decodeCursor(q.cursor); // a bad cursor is an error, even when nothing matches
    const ids: SearchIds = {};
    if (q.service !== undefined && q.operation !== undefined) {
      ids.op = operationId.get(q.service, q.operation) as number | undefined;
      if (ids.op === undefined) return { traces: [] };
    } else if (q.service !== undefined) {
      ids.service = serviceId.get(q.service) as number | undefined;
      if (ids.service === undefined) return { traces: [] };
    } else if (q.operation !== undefined) {
      ids.ops = operationIds.all(q.operation) as number[];
      if (ids.ops.length === 0) return { traces: [] };
    }
    const { sql, params, limit } = searchSql(q, ids);
    const rows = cached(sql).all(...params) as SummaryRow[];
    const page: TracePage = { traces: rows.slice(0, limit).map(toSummary) };
    if (rows.length > limit) {
      const last = rows[limit - 1];
      page.next = encodeCursor(last.start_us, last.id);
    }
    return page;
  }

  function getTrace(traceId: string): LinkedSpan[] | undefined {
    const list = traceChunks.get(traceKey(traceId), traceId) as string | undefined;
    if (list === undefined) return undefined;
    const spans: LinkedSpan[] = [];
    for (const id of chunkIds(list)) {
      const data = chunkData.get(id) as string | undefined;
      if (data !== undefined) for (const s of decodeChunk(data)) spans.push(s);
    }
    if (spans.length === 0) return undefined;
    // By start; spans that start together in the order they were stored (chunks oldest
    // first, spans in commit order): Array#sort is stable.
    return spans.sort((a, b) => a.startUs - b.startUs);
  }

  return {
    findTraces,
    getTrace,
    services: () => allServices.all() as string[],
    operations: (service: string) => serviceOps.all(service) as string[],
    dependencies: edges.dependencies,
  };
}

