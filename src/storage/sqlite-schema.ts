// The SQLite schema. One database file holds the spool, the stored spans, the per-trace
// summaries search reads, the call edges the service map reads, and the export queue.
// Why each index exists is noted beside it: every index costs on the commit path.
import type Database from 'better-sqlite3';

export const SCHEMA_VERSION = 2;

const DDL = `
-- Accepted batches not yet linked. AUTOINCREMENT: ids never come back after the newest
-- batch is deleted, so a batch id the linker still holds can never name another batch.
CREATE TABLE IF NOT EXISTS spool (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received_at_ms INTEGER NOT NULL,
  spans TEXT NOT NULL
);

-- Stored spans, one row (a chunk) per trace and commit: data holds the spans of that trace
-- the commit stored (./codec.ts encodeChunk). A trace's chunks are listed in its summary
-- (traces.chunks), so no index on trace_id: the one random-key B-tree write per trace is the
-- summary's. AUTOINCREMENT keeps the export order (id) monotonic; a span's export row id is
-- id * 4096 + its index in the chunk (CHUNK_SPANS).
CREATE TABLE IF NOT EXISTS chunks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  data TEXT NOT NULL
);

-- Idempotent writes: every stored span's (start_us, span_id). A span is stored only if its key
-- is new (INSERT OR IGNORE). Keyed by start first so that a commit's inserts land at the
-- right edge of the B-tree (a few pages) instead of one random page each, which cost
-- ~10 µs a span with span_id first (docs/storage.md). A span id is made from the span's
-- identity, start included, so a resent or replayed span has the same key.
CREATE TABLE IF NOT EXISTS span_keys (
  start_us INTEGER NOT NULL,
  span_id TEXT NOT NULL,
  PRIMARY KEY (start_us, span_id)
) WITHOUT ROWID;

-- Chunks the exporter has not sent all of yet: left spans to send; done, when some were
-- sent, a bitmap (bit i: span i of the chunk sent), else NULL.
CREATE TABLE IF NOT EXISTS export_queue (
  chunk INTEGER PRIMARY KEY,
  count INTEGER NOT NULL,
  left INTEGER NOT NULL,
  done BLOB
);

-- One row per trace, maintained by commit; search reads only this and the two tables below.
-- A rowid table: a new trace's row is appended (ids grow), and the one random-key write per
-- trace is its entry in traces_by_key (the row itself, ~200 bytes, keyed by the trace id, cost
-- ~1.7 page writes a trace: splits of pages of few rows). trace_key is a 52-bit hash of the
-- trace id (traceKey in ./sqlite-write.ts): an index of integers is 2.5 times denser than one
-- of the 32-digit ids, so a commit's new traces land in fewer of its pages. Lookups check
-- trace_id on the row; a trace id is stored once (commit looks it up before adding it).
CREATE TABLE IF NOT EXISTS traces (
  id INTEGER PRIMARY KEY,
  trace_key INTEGER NOT NULL,
  trace_id TEXT NOT NULL,
  start_us INTEGER NOT NULL,
  end_us INTEGER NOT NULL,
  duration_us INTEGER NOT NULL,
  span_count INTEGER NOT NULL,
  error_count INTEGER NOT NULL,
  status INTEGER NOT NULL,               -- worst span status: 0 ok, 1 warning, 2 error
  late_count INTEGER NOT NULL,
  services TEXT NOT NULL,                -- JSON array, each service once
  root_service TEXT NOT NULL,
  root_operation TEXT NOT NULL,
  root_rank INTEGER NOT NULL,            -- 1: a span without parent, 0: earliest span so far
  root_start_us INTEGER NOT NULL,
  chunks TEXT NOT NULL                   -- ids of its chunks, comma-separated, oldest first
);
CREATE INDEX IF NOT EXISTS traces_by_key ON traces(trace_key);
-- Both end in the row id (implicit): search order is (start_us, id), newest first.
CREATE INDEX IF NOT EXISTS traces_by_start ON traces(start_us);          -- newest first, retention
CREATE INDEX IF NOT EXISTS traces_by_status ON traces(status, start_us); -- status=error is rare

-- Names of the services (services) and (service, operation) pairs (operations) that search
-- rows refer to by id; operations is also the UI's pick lists. Small: one row per name. A
-- row whose last_us is older than the retention age goes with the last trace using it.
CREATE TABLE IF NOT EXISTS services (
  id INTEGER PRIMARY KEY, service TEXT NOT NULL UNIQUE, last_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
  id INTEGER PRIMARY KEY, service TEXT NOT NULL, operation TEXT NOT NULL, last_us INTEGER NOT NULL,
  UNIQUE (service, operation)
);

-- Which services / operations (resource) occur in a trace, keyed in search order: a filtered
-- search walks the primary key newest first and stops after a page. Integers only (name
-- ids, start, trace row id): a commit inserts ~1.4 of these rows a span, and with the names
-- and the 32-digit trace id in the key they cost more than all the rest of a commit
-- (docs/storage.md). One B-tree each (no secondary index): rows are found for moves and
-- deletion from the trace's start_us, its services (summary) and its spans' operations (chunks).
CREATE TABLE IF NOT EXISTS trace_services (
  service INTEGER NOT NULL, start_us INTEGER NOT NULL, trace INTEGER NOT NULL,
  PRIMARY KEY (service, start_us, trace)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trace_ops (
  op INTEGER NOT NULL, start_us INTEGER NOT NULL, trace INTEGER NOT NULL,
  PRIMARY KEY (op, start_us, trace)
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

-- The same for calls to peers that are not traced: client spans with no server span, by the
-- name the client called (./sqlite-edges.ts). Apart from edge_minutes so that a peer and a
-- service of the same name stay two nodes. (New in schema 2 databases as they open.)
CREATE TABLE IF NOT EXISTS peer_minutes (
  minute INTEGER NOT NULL,
  parent TEXT NOT NULL,
  peer TEXT NOT NULL,
  calls INTEGER NOT NULL,
  errors INTEGER NOT NULL,
  hist TEXT NOT NULL,
  PRIMARY KEY (minute, parent, peer)
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
  // The version is checked before any DDL runs, so a database of another version is never touched.
  const hasMeta = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).get() !== undefined;
  const row = hasMeta ? db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as { value: number } | undefined : undefined;
  if (row && row.value !== SCHEMA_VERSION) {
    throw new Error(`database schema version ${row.value} is not the supported version ${SCHEMA_VERSION}: move the database away (or delete it) and restart; this version cannot read it`);
  }
  db.exec(DDL);
  if (!row) db.prepare(`INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)`).run(SCHEMA_VERSION);
}
