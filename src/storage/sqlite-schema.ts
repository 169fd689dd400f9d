// The SQLite schema. One database file holds the spool, the stored spans, the per-trace
// summaries search reads, the call edges the service map reads, and the export queue.
// Why each index exists is noted beside it: every index costs on the commit path.
import type Database from 'better-sqlite3';

export const SCHEMA_VERSION = 1;

const DDL = `
-- Accepted batches not yet linked. AUTOINCREMENT: ids never come back after the newest
-- batch is deleted, so a batch id the linker still holds can never name another batch.
CREATE TABLE IF NOT EXISTS spool (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received_at_ms INTEGER NOT NULL,
  spans TEXT NOT NULL
);

-- Stored spans. data is the whole LinkedSpan (./codec.ts, what getTrace returns); the other
-- columns are what is searched. AUTOINCREMENT keeps the export order (id) monotonic.
CREATE TABLE IF NOT EXISTS spans (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  span_id TEXT NOT NULL UNIQUE,          -- idempotent writes: INSERT OR IGNORE on it
  trace_id TEXT NOT NULL,
  start_us INTEGER NOT NULL,
  data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans(trace_id, start_us); -- getTrace, retention

-- Stored spans the exporter has not sent yet (ids of spans rows).
CREATE TABLE IF NOT EXISTS export_queue (span_row INTEGER PRIMARY KEY);

-- One row per trace, maintained by commit; search reads only this and the two tables below.
CREATE TABLE IF NOT EXISTS traces (
  trace_id TEXT PRIMARY KEY,
  start_us INTEGER NOT NULL,
  end_us INTEGER NOT NULL,
  duration_us INTEGER NOT NULL,
  span_count INTEGER NOT NULL,
  error_count INTEGER NOT NULL,
  status INTEGER NOT NULL,               -- worst span status: 0 ok, 1 warning, 2 error
  late_count INTEGER NOT NULL,
  services TEXT NOT NULL,                -- JSON array, each service once
  ops TEXT NOT NULL,                     -- JSON array of [service, operation], each pair once
  root_service TEXT NOT NULL,
  root_operation TEXT NOT NULL,
  root_rank INTEGER NOT NULL,            -- 1: a span without parent, 0: earliest span so far
  root_start_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS traces_by_start ON traces(start_us, trace_id);         -- newest first, retention
CREATE INDEX IF NOT EXISTS traces_by_status ON traces(status, start_us, trace_id); -- status=error is rare

-- Which services / operations (resource) occur in a trace, keyed in search order: a filtered
-- search walks the primary key newest first and stops after a page. One B-tree each (no
-- secondary index): rows are found for moves and deletion from the trace's summary
-- (services, ops, start_us), which lists them.
CREATE TABLE IF NOT EXISTS trace_services (
  service TEXT NOT NULL, start_us INTEGER NOT NULL, trace_id TEXT NOT NULL,
  PRIMARY KEY (service, start_us, trace_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trace_ops (
  service TEXT NOT NULL, operation TEXT NOT NULL, start_us INTEGER NOT NULL, trace_id TEXT NOT NULL,
  PRIMARY KEY (service, operation, start_us, trace_id)
) WITHOUT ROWID;

-- Every service's operations, for the UI's pick lists (small: one row per pair).
CREATE TABLE IF NOT EXISTS operations (
  service TEXT NOT NULL, operation TEXT NOT NULL, last_us INTEGER NOT NULL,
  PRIMARY KEY (service, operation)
) WITHOUT ROWID;

-- Client→server calls between services per minute and pair, with a duration histogram
-- (./sqlite-edges.ts); dependencies() reads a range of minutes, never single calls.
CREATE TABLE IF NOT EXISTS edge_minutes (
  minute INTEGER NOT NULL,               -- client span start, minutes since the epoch
  parent TEXT NOT NULL,
  child TEXT NOT NULL,
  calls INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  hist TEXT NOT NULL,                    -- JSON {bucket: count}
  PRIMARY KEY (minute, parent, child)
) WITHOUT ROWID;

-- Server spans stored before the client span they name as parent (late client spans):
-- the edge is made when that client span arrives.
CREATE TABLE IF NOT EXISTS pending_edges (
  parent_span_id TEXT NOT NULL,
  child_span_id TEXT NOT NULL,
  trace_id TEXT NOT NULL,
  child_service TEXT NOT NULL,
  child_error INTEGER NOT NULL,
  created_us INTEGER NOT NULL,
  PRIMARY KEY (parent_span_id, child_span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_edges_by_trace ON pending_edges(trace_id);

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
`;

export function createSchema(db: Database.Database): void {
  db.exec(DDL);
  const row = db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: number } | undefined;
  if (!row) db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', ?)`).run(SCHEMA_VERSION);
  else if (row.value !== SCHEMA_VERSION) {
    throw new Error(`database schema version ${row.value} is not the supported version ${SCHEMA_VERSION}`);
  }
}
