// The service map's data: client → server calls rolled up per minute and service pair, with
// a duration histogram, maintained by commit. dependencies() reads one row per minute and
// pair, never one per call, so a day of traffic is ~1440 rows per pair whatever the call rate.
//
// Histogram: durations below 64 µs have a bucket each (exact); above, 16 buckets per
// doubling. A percentile is reported as the geometric middle of its bucket: within 2.2% of
// the true duration.
import type Database from 'better-sqlite3';
import type { DependencyEdge } from './store.js';

export const MINUTE_US = 60_000_000;
const EXACT = 64;
const PER_OCTAVE = 16;

export function bucketOf(durationUs: number): number {
  const d = Math.max(0, Math.floor(durationUs));
  if (d < EXACT) return d;
  return EXACT + Math.floor((Math.log2(d) - 6) * PER_OCTAVE);
}

/** The duration a bucket stands for: itself when exact, else the geometric middle of its bounds. */
export function bucketValue(bucket: number): number {
  if (bucket < EXACT) return bucket;
  return Math.round(2 ** (6 + (bucket - EXACT + 0.5) / PER_OCTAVE));
}

/** One call between two services, or (peer) from a service to a peer that is not traced. */
export interface Call {
  startUs: number;
  parent: string;
  child: string;
  peer: boolean;
  durationUs: number;
  error: boolean;
  /** -1 takes back a call counted before: a peer call whose server span came late after all. */
  weight?: -1;
}

interface Rollup {
  minute: number;
  parent: string;
  child: string;
  peer: boolean;
  calls: number;
  errors: number;
  hist: Map<number, number>;
}

type Hist = Record<string, number>;

export function prepareEdges(db: Database.Database) {
  // edge_minutes and peer_minutes have the same shape.
  const table = (name: string, child: string) => ({
    getRow: db.prepare(`SELECT calls, errors, hist FROM ${name} WHERE minute = ? AND parent = ? AND ${child} = ?`),
    putRow: db.prepare(`INSERT OR REPLACE INTO ${name} (minute, parent, ${child}, calls, errors, hist) VALUES (?, ?, ?, ?, ?, ?)`),
    delRow: db.prepare(`DELETE FROM ${name} WHERE minute = ? AND parent = ? AND ${child} = ?`),
    rangeRows: db.prepare(`SELECT parent, ${child}, calls, errors, hist FROM ${name} WHERE minute >= ? AND minute <= ?`).raw(),
  });
  const tables = [table('edge_minutes', 'child'), table('peer_minutes', 'peer')]; // services, peers

  /** Adds calls to the rollups; runs inside the commit's transaction. */
  function record(calls: Call[]): void {
    const rollups = new Map<string, Rollup>();
    for (const c of calls) {
      const minute = Math.floor(c.startUs / MINUTE_US);
      const key = `${minute}\u0000${c.parent}\u0000${c.child}\u0000${c.peer ? 1 : 0}`;
      let r = rollups.get(key);
      if (!r) rollups.set(key, (r = { minute, parent: c.parent, child: c.child, peer: c.peer, calls: 0, errors: 0, hist: new Map() }));
      const w = c.weight ?? 1;
      r.calls += w;
      if (c.error) r.errors += w;
      const b = bucketOf(c.durationUs);
      r.hist.set(b, (r.hist.get(b) ?? 0) + w);
    }
    for (const r of rollups.values()) {
      const { getRow, putRow, delRow } = tables[r.peer ? 1 : 0];
      const old = getRow.get(r.minute, r.parent, r.child) as { calls: number; errors: number; hist: string } | undefined;
      const hist: Hist = old ? JSON.parse(old.hist) : {};
      // (never below 0: a call taken back that a database from before peers never counted)
      for (const [b, n] of r.hist) {
        const v = (hist[b] ?? 0) + n;
        if (v > 0) hist[b] = v;
        else delete hist[b];
      }
      const calls = Math.max(0, r.calls + (old?.calls ?? 0));
      if (calls === 0) delRow.run(r.minute, r.parent, r.child);
      else putRow.run(r.minute, r.parent, r.child, calls, Math.max(0, r.errors + (old?.errors ?? 0)), JSON.stringify(hist));
    }
  }

  /** Calls whose client span starts in the minutes containing [startUs, endUs]: between services, then to peers. */
  function dependencies(startUs: number, endUs: number): DependencyEdge[] {
    const out: DependencyEdge[] = [];
    for (const [k, { rangeRows }] of tables.entries()) {
      const pairs = new Map<string, { parent: string; child: string; calls: number; errors: number; hist: Map<number, number> }>();
      const rows = rangeRows.all(Math.floor(startUs / MINUTE_US), Math.floor(endUs / MINUTE_US)) as [string, string, number, number, string][];
      for (const [parent, child, calls, errors, histText] of rows) {
        const key = parent + '\u0000' + child;
        let p = pairs.get(key);
        if (!p) pairs.set(key, (p = { parent, child, calls: 0, errors: 0, hist: new Map() }));
        p.calls += calls;
        p.errors += errors;
        for (const [b, n] of Object.entries(JSON.parse(histText) as Hist)) p.hist.set(Number(b), (p.hist.get(Number(b)) ?? 0) + n);
      }
      const edges: DependencyEdge[] = [];
      for (const p of pairs.values()) {
        const buckets = [...p.hist].sort((a, b) => a[0] - b[0]);
        const e: DependencyEdge = { parent: p.parent, child: p.child, callCount: p.calls, errorCount: p.errors, p50Us: percentile(buckets, p.calls, 0.5), p99Us: percentile(buckets, p.calls, 0.99) };
        if (k === 1) e.peer = true;
        edges.push(e);
      }
      out.push(...edges.sort((a, b) => (a.parent === b.parent ? cmp(a.child, b.child) : cmp(a.parent, b.parent))));
    }
    return out;
  }

  return { record, dependencies };
}

/** The duration at position floor((n - 1) * p) of the n sorted durations. */
function percentile(buckets: [number, number][], n: number, p: number): number {
  const rank = Math.floor((n - 1) * p);
  let seen = 0;
  for (const [b, count] of buckets) {
    seen += count;
    if (seen > rank) return bucketValue(b);
  }
  return 0;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
