// Retention: whole traces are deleted, oldest first (by trace start), when older than the
// maximum age or while the database holds more than the maximum bytes. The spool is never
// touched: it holds accepted spans not yet linked. Spans deleted before the exporter sent
// them are counted as export drops.
import type Database from 'better-sqlite3';
import { decodeChunk } from './codec.js';
import { MINUTE_US } from './sqlite-edges.js';
import { chunkIds, traceKey } from './sqlite-write.js';
import type { SweepResult } from './store.js';

/** Traces deleted per transaction: short transactions so that ingest is never held long. */
const CHUNK = 200;
/** Size retention deletes down to this share of the maximum, so it does not run on every sweep. */
const SIZE_TARGET = 0.9;

export function prepareRetention(db: Database.Database) {
  const oldestBefore = db.prepare(`SELECT trace_id FROM traces INDEXED BY traces_by_start WHERE start_us < ? ORDER BY start_us, id LIMIT ?`).pluck();
  const oldest = db.prepare(`SELECT trace_id FROM traces INDEXED BY traces_by_start ORDER BY start_us, id LIMIT ?`).pluck();
  const summary = db.prepare(`SELECT id, start_us, services, chunks FROM traces WHERE trace_key = ? AND trace_id = ?`);
  const chunkData = db.prepare(`SELECT data FROM chunks WHERE id = ?`).pluck();
  const queued = db.prepare(`SELECT left FROM export_queue WHERE chunk = ?`).pluck();
  const unqueue = db.prepare(`DELETE FROM export_queue WHERE chunk = ?`);
  const delChunk = db.prepare(`DELETE FROM chunks WHERE id = ?`);
  const delKey = db.prepare(`DELETE FROM span_keys WHERE start_us = ? AND span_id = ?`);
  const delService = db.prepare(`DELETE FROM trace_services WHERE service = ? AND start_us = ? AND trace = ?`);
  const serviceId = db.prepare(`SELECT id FROM services WHERE service = ?`).pluck();
  const operationId = db.prepare(`SELECT id FROM operations WHERE service = ? AND operation = ?`).pluck();
  const delOp = db.prepare(`DELETE FROM trace_ops WHERE op = ? AND start_us = ? AND trace = ?`);
  const delPending = db.prepare(`DELETE FROM pending_edges WHERE trace_id = ?`);
  const delTrace = db.prepare(`DELETE FROM traces WHERE id = ?`);
  const delOldOperations = db.prepare(`DELETE FROM operations WHERE last_us < ?`);
  const delOldServices = db.prepare(`DELETE FROM services WHERE last_us < ?`);
  const delOldPending = db.prepare(`DELETE FROM pending_edges WHERE created_us < ?`);
  const delOldEdgeMinutes = db.prepare(`DELETE FROM edge_minutes WHERE minute < ?`);
  const delOldPeerMinutes = db.prepare(`DELETE FROM peer_minutes WHERE minute < ?`);
  const delOldMinutes = { run(minute: number) { delOldEdgeMinutes.run(minute); delOldPeerMinutes.run(minute); } };
  const oldestStart = db.prepare(`SELECT min(start_us) FROM traces`).pluck();
  const countTraces = db.prepare(`SELECT count(*) FROM traces`).pluck();
  const pageCount = db.prepare(`PRAGMA page_count`).pluck();
  const freePages = db.prepare(`PRAGMA freelist_count`).pluck();
  const pageSize = db.prepare(`PRAGMA page_size`).pluck().get() as number;

  const deleteTraces = db.transaction((ids: string[]): SweepResult => {
    const r: SweepResult = { deletedTraces: 0, deletedSpans: 0, exportDropped: 0 };
    for (const id of ids) {
      const t = summary.get(traceKey(id), id) as { id: number; start_us: number; services: string; chunks: string } | undefined;
      if (t) {
        // The trace's spans are in its chunks: their keys and operations come from there.
        const ops = new Set<string>();
        for (const chunk of chunkIds(t.chunks)) {
          const data = chunkData.get(chunk) as string | undefined;
          if (data === undefined) continue;
          for (const s of decodeChunk(data)) {
            delKey.run(s.startUs, s.spanId);
            const key = s.service + '\u0000' + s.resource;
            if (!ops.has(key)) {
              ops.add(key);
              const op = operationId.get(s.service, s.resource) as number | undefined;
              if (op !== undefined) delOp.run(op, t.start_us, t.id);
            }
            r.deletedSpans++;
          }
          const left = queued.get(chunk) as number | undefined;
          if (left !== undefined) {
            r.exportDropped += left;
            unqueue.run(chunk);
          }
          delChunk.run(chunk);
        }
        for (const service of JSON.parse(t.services) as string[]) {
          const sid = serviceId.get(service) as number | undefined;
          if (sid !== undefined) delService.run(sid, t.start_us, t.id);
        }
      }
      delPending.run(id);
      if (t) r.deletedTraces += delTrace.run(t.id).changes;
    }
    return r;
  });

  /** Bytes of the database in use (free pages are reused before the file grows). */
  function usedBytes(): number {
    return ((pageCount.get() as number) - (freePages.get() as number)) * pageSize;
  }

  /**
   * One retention pass. With a budget it stops after about that many milliseconds and says
   * `more`: the store's timer then continues on a later tick, so a large deletion never holds
   * the event loop (and ingest) for long.
   */
  function sweep(nowMs: number, maxAgeMs: number, maxBytes: number, budgetMs = Infinity): SweepResult & { more: boolean } {
    const deadline = performance.now() + budgetMs;
    const total = { deletedTraces: 0, deletedSpans: 0, exportDropped: 0, more: false };
    const outOfTime = () => (performance.now() > deadline ? (total.more = true) : false);
    const add = (r: SweepResult) => {
      total.deletedTraces += r.deletedTraces;
      total.deletedSpans += r.deletedSpans;
      total.exportDropped += r.exportDropped;
    };
    const cutoffUs = (nowMs - maxAgeMs) * 1000;
    for (;;) {
      const ids = oldestBefore.all(cutoffUs, CHUNK) as string[];
      if (ids.length === 0) break;
      add(deleteTraces(ids));
      if (outOfTime()) return total;
    }
    db.transaction(() => {
      delOldOperations.run(cutoffUs);
      delOldServices.run(cutoffUs);
      delOldPending.run(cutoffUs);
      delOldMinutes.run(Math.floor(cutoffUs / MINUTE_US));
    })();
    if (usedBytes() > maxBytes) {
      const target = maxBytes * SIZE_TARGET;
      let traces = countTraces.get() as number;
      for (let used = usedBytes(); used > target; used = usedBytes()) {
        // Delete about as many traces as the excess holds (average trace size), so a small
        // database is not emptied by one coarse chunk.
        if (traces <= 0) break;
        const chunk = Math.min(CHUNK, Math.max(1, Math.ceil(((used - target) / used) * traces)));
        const ids = oldest.all(chunk) as string[];
        if (ids.length === 0) break; // only the spool is left: it is never deleted
        const r = deleteTraces(ids);
        traces -= r.deletedTraces;
        add(r);
        if (outOfTime()) break;
      }
      // Call statistics go with the traces they came from (by minute: the service map's resolution).
      const firstStart = oldestStart.get() as number | null;
      delOldMinutes.run(firstStart === null ? Number.MAX_SAFE_INTEGER : Math.floor(firstStart / MINUTE_US));
    }
    return total;
  }

  return { sweep, usedBytes };
}
