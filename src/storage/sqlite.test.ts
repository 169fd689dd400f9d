import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { SeqError } from '../errors.js';
import { BASE_US, chainTrace, ebpfSpan, storeConformance, traceIdOf, type ConformanceTarget } from './conformance.js';
import { openSqliteStore, DB_FILE } from './sqlite.js';
import { searchSql } from './sqlite-read.js';
import { bucketOf, bucketValue } from './sqlite-edges.js';
import type { TraceQuery } from './store.js';

const BIG = Number.MAX_SAFE_INTEGER;
const limits = { retentionMaxAgeMs: BIG, retentionMaxBytes: BIG, sweepIntervalMs: 0 };

function sqliteTarget(): ConformanceTarget {
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-store-'));
  return {
    open: (l) => openSqliteStore(join(dir, 'db'), { ...limits, ...l }),
    destroy: () => rmSync(dir, { recursive: true, force: true }),
  };
}

storeConformance('sqlite', sqliteTarget);

describe('sqlite store', () => {
  it('keeps every acknowledged append and commit when the process is killed with SIGKILL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqtrace-kill-'));
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'sqlite-kill-child.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
      const appended: { id: number; n: number }[] = [];
      const committed = new Map<number, string>();
      let buf = '';
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${code} ${signal}`))));
        child.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const [kind, id, arg] = buf.slice(0, nl).split(' ');
            buf = buf.slice(nl + 1);
            if (kind === 'A') appended.push({ id: Number(id), n: Number(arg) });
            else committed.set(Number(id), arg);
          }
          if (committed.size >= 300 && child.exitCode === null && !child.killed) child.kill('SIGKILL');
        });
      });
      const store = openSqliteStore(dir, limits);
      try {
        const pending = new Set([...store.pending()].map((b) => b.id));
        for (const { id, n } of appended) {
          if (committed.has(id)) assert.ok(!pending.has(id), `batch ${id} was committed done but is still pending`);
          else if (!pending.has(id)) {
            // Killed after a commit returned and before it was printed: then the commit is whole.
            assert.ok(n % 2 === 0 && (await store.getTrace(traceIdOf(n)))?.length === 5, `acknowledged batch ${id} lost`);
          }
        }
        for (const traceId of committed.values()) assert.equal((await store.getTrace(traceId))?.length, 5, `trace ${traceId} lost`);
        assert.ok(appended.length >= 300);
      } finally {
        store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers SEQ_ERR_STORAGE_FULL (503) on a full filesystem and keeps what was accepted', async () => {
    const mnt = mkdtempSync(join(tmpdir(), 'seqtrace-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
    try {
      const dir = join(mnt, 'store');
      const filler = join(mnt, 'filler');
      // Freed later: space coming back (a commit writes a 16 KiB page per table it touches).
      writeFileSync(filler, Buffer.alloc(1024 * 1024));
      let store = openSqliteStore(dir, limits);
      const batch = Array.from({ length: 20 }, () => ebpfSpan({ attrs: { pad: 'p'.repeat(200) } }));
      const accepted: number[] = [];
      let full: unknown;
      for (let i = 0; i < 10_000 && !full; i++) {
        try {
          accepted.push(store.append(batch, i));
        } catch (e) {
          full = e;
        }
      }
      assert.ok(full instanceof SeqError, `expected a SeqError, got ${full}`);
      assert.equal(full.code, 'SEQ_ERR_STORAGE_FULL');
      assert.equal(full.status, 503);
      assert.match(full.message, /full/);
      assert.ok(accepted.length > 10, `only ${accepted.length} batches fit`);
      // A commit on the full disk fails as a whole: no span of it is stored, the batch stays.
      const spans = Array.from({ length: 200 }, (_, n) => chainTrace(n + 1, BASE_US + n)).flat();
      assert.throws(() => store.commit(spans, [accepted[0]]), (e: SeqError) => e.code === 'SEQ_ERR_STORAGE_FULL' && e.status === 503);
      assert.equal(await store.getTrace(traceIdOf(1)), undefined);
      // Still readable and consistent in this process and after a reopen.
      assert.deepEqual([...store.pending()].map((b) => b.id), accepted);
      // Once space is freed the same store accepts writes again, without a restart.
      rmSync(filler);
      accepted.push(store.append(batch, -1));
      store.commit(chainTrace(1, BASE_US), [accepted[0]]);
      accepted.shift();
      assert.equal((await store.getTrace(traceIdOf(1)))?.length, 5);
      store.close();
      store = openSqliteStore(dir, limits);
      try {
        const pending = [...store.pending()];
        assert.deepEqual(pending.map((b) => b.id), accepted);
        assert.deepEqual(pending[0].spans, batch);
      } finally {
        store.close();
      }
    } finally {
      execFileSync('umount', [mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });

  it('every search uses an index in result order (EXPLAIN QUERY PLAN)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqtrace-plan-'));
    const store = openSqliteStore(dir, limits);
    const db = new Database(join(dir, DB_FILE), { readonly: true });
    try {
      const cursor = Buffer.from(JSON.stringify({ s: BASE_US, r: 1 })).toString('base64url');
      const queries: TraceQuery[] = [
        {}, { cursor }, { service: 'a' }, { service: 'a', cursor }, { service: 'a', operation: 'GET /', cursor },
        { status: 'error' }, { status: 'error', cursor }, { minDurationUs: 5, maxDurationUs: 10, startUs: 1, endUs: 2 },
        { service: 'a', status: 'ok', minDurationUs: 5, startUs: 1, endUs: 2 },
      ];
      for (const q of queries) {
        const { sql, params } = searchSql(q, { service: 1, op: 1 });
        const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail);
        const text = plan.join(' | ');
        assert.ok(!/TEMP B-TREE|AUTOMATIC/.test(text), `${JSON.stringify(q)} sorts: ${text}`);
        assert.ok(/^(SEARCH|SCAN) (t USING INDEX (traces_by_start|traces_by_status)|x USING PRIMARY KEY)/.test(plan[0]), `${JSON.stringify(q)}: ${text}`);
        assert.ok(!plan.some((p) => /^SCAN (?!t USING)/.test(p)), `${JSON.stringify(q)} scans a table: ${text}`);
      }
      // An operation without a service: one key-range walk per (service, operation) that has
      // it, then a sort of at most services × (limit + 1) rows.
      const { sql, params } = searchSql({ operation: 'GET /', status: 'error', cursor }, { ops: [1, 2] });
      const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail);
      const text = plan.join(' | ');
      assert.equal(plan.filter((p) => /^SEARCH x USING PRIMARY KEY \(op=\?/.test(p)).length, 2, text);
      assert.ok(!/AUTOMATIC|SCAN (?!u\b|\(subquery)/.test(text), text);
    } finally {
      db.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('creates its folder and refuses a folder it cannot use with SEQ_ERR_STORAGE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqtrace-open-'));
    try {
      const store = openSqliteStore(join(dir, 'a', 'b'), limits);
      store.close();
      writeFileSync(join(dir, 'plain-file'), 'not a folder');
      assert.throws(() => openSqliteStore(join(dir, 'plain-file'), limits), (e: SeqError) => e.code === 'SEQ_ERR_STORAGE' && e.message.includes('plain-file'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a database of another schema version with a clear error, and leaves it as it was', () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqtrace-version-'));
    try {
      const old = new Database(join(dir, DB_FILE));
      old.exec(`CREATE TABLE spans (id INTEGER PRIMARY KEY, span_id TEXT UNIQUE, data TEXT);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO meta VALUES ('schema_version', 1);`);
      old.close();
      assert.throws(() => openSqliteStore(dir, limits), (e: SeqError) =>
        e.code === 'SEQ_ERR_STORAGE' && /schema version 1 is not the supported version 2/.test(e.message) && e.message.includes(dir));
      const again = new Database(join(dir, DB_FILE), { readonly: true });
      try {
        assert.deepEqual(again.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).pluck().all(), ['meta', 'spans']);
      } finally {
        again.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('service-map histogram buckets: exact below 64 µs, within 2.2% above', () => {
    for (let d = 0; d < 64; d++) assert.equal(bucketValue(bucketOf(d)), d);
    let last = -1;
    for (let d = 64; d < 5e9; d = Math.ceil(d * 1.013) + 1) {
      const b = bucketOf(d);
      assert.ok(b >= last, `buckets grow with durations (${d})`);
      last = b;
      const v = bucketValue(b);
      assert.ok(Math.abs(v - d) <= d * 0.022 + 0.5, `${d} µs reported as ${v}`);
    }
  });

  it('sweeps on its own timer, in slices, until retention holds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqtrace-sweep-'));
    const nowMs = BASE_US / 1000 + 2 * 3600_000;
    const store = openSqliteStore(dir, { retentionMaxAgeMs: 3600_000, retentionMaxBytes: BIG, sweepIntervalMs: 20, now: () => nowMs });
    try {
      const old = Array.from({ length: 3000 }, (_, n) => chainTrace(n + 1, BASE_US + n)).flat();
      store.commit(old, []); // all two hours old
      store.commit(chainTrace(9999, (nowMs - 60_000) * 1000), []);
      for (let i = 0; i < 500 && (await store.findTraces({ limit: 2 })).traces.length > 1; i++) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual((await store.findTraces({})).traces.map((t) => t.traceId), [traceIdOf(9999)]);
      assert.equal(store.stats().retentionDeletedTraces, 3000);
      assert.equal(store.stats().exportDroppedByRetention, 15_000);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
