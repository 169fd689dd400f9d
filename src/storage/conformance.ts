// The one conformance suite for stores: every statement of ./store.ts, checked against an
// implementation. `storeConformance(name, newTarget)` registers node:test suites; a store's
// test file calls it with a factory (see ./sqlite.test.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { EbpfSpan, LinkedSpan } from '../span/span.js';
import type { ExportQueue, RawBatch, Retention, SpanSpool, TraceReader, TraceSummary, TraceWriter } from './store.js';

export type Stores = SpanSpool & TraceWriter & TraceReader & ExportQueue & Retention & { close(): void };

export interface RetentionLimits {
  retentionMaxAgeMs: number;
  retentionMaxBytes: number;
}

/** One storage location (a folder, a database). `open` again after `close` sees the same data. */
export interface ConformanceTarget {
  open(limits?: Partial<RetentionLimits>): Stores;
  /** Removes the location and everything in it. */
  destroy(): void;
}

const HOUR_US = 3_600_000_000;
const MINUTE_US = 60_000_000;

/** Service-map percentiles may be approximate: within 2.2% (docs/storage.md). */
function near(actual: number, expected: number): void {
  assert.ok(Math.abs(actual - expected) <= expected * 0.022, `${actual} is not within 2.2% of ${expected}`);
}
/** A fixed "now" well after every test span, so age retention is deterministic. */
export const BASE_US = 1_732_500_000_000_000;

let seq = 0;
const hex = (n: number, width: number) => n.toString(16).padStart(width, '0');

export function ebpfSpan(over: Partial<EbpfSpan> = {}): EbpfSpan {
  seq++;
  return {
    host: 'web-1', kind: 'entry', reqSeq: (seq * 7919) >>> 0, respSeq: (seq * 104729) >>> 0, threadGroup: String(1000 + seq),
    pid: 4242, tid: 4243, startUs: BASE_US, durationUs: 1000, service: 'frontend', processName: 'node',
    srcIp: '10.0.0.2', srcPort: 8080, dstIp: '10.0.0.1', dstPort: 51234, resource: 'GET /', operation: 'HTTP',
    status: 'ok', httpMethod: 'GET', httpRoute: '/', httpStatusCode: 200, appTraceId: '', appParentId: '', appSampled: 0,
    attrs: { bytes_read: 512, tls: false, 'http.user_agent': 'curl/8 "quoted" ✓' },
    ...over,
  };
}

export function linkedSpan(over: Partial<LinkedSpan> & { traceId: string }): LinkedSpan {
  const base = ebpfSpan(over);
  return { spanId: 'f' + hex(seq, 15), parentId: '', ebpfTraceId: over.traceId, late: false, ...base, ...over } as LinkedSpan;
}

export const traceIdOf = (n: number) => hex(n, 32);

/**
 * A three-service trace: frontend (entry, root) → exit → cart (entry) → exit → db (entry).
 * Client spans last `clientUs`; `error` makes the cart server span an error.
 */
export function chainTrace(n: number, startUs: number, opts: { clientUs?: number; error?: boolean; late?: boolean } = {}): LinkedSpan[] {
  const traceId = traceIdOf(n);
  const id = (k: number) => hex(n * 16 + k, 16);
  const clientUs = opts.clientUs ?? 2000;
  return [
    linkedSpan({ traceId, spanId: id(1), parentId: '', kind: 'entry', service: 'frontend', resource: 'GET /checkout', startUs, durationUs: clientUs + 1000 }),
    linkedSpan({ traceId, spanId: id(2), parentId: id(1), kind: 'exit', service: 'frontend', resource: 'POST /cart', startUs: startUs + 100, durationUs: clientUs }),
    linkedSpan({
      traceId, spanId: id(3), parentId: id(2), kind: 'entry', service: 'cart', resource: 'POST /cart', startUs: startUs + 150,
      durationUs: clientUs - 100, status: opts.error ? 'error' : 'ok', httpStatusCode: opts.error ? 500 : 200, late: opts.late ?? false,
    }),
    linkedSpan({ traceId, spanId: id(4), parentId: id(3), kind: 'exit', service: 'cart', resource: 'GET /item', startUs: startUs + 200, durationUs: 300 }),
    linkedSpan({ traceId, spanId: id(5), parentId: id(4), kind: 'entry', service: 'db', resource: 'GET /item', startUs: startUs + 220, durationUs: 250 }),
  ];
}

async function allPages(r: TraceReader, q: Parameters<TraceReader['findTraces']>[0]): Promise<TraceSummary[]> {
  const out: TraceSummary[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 10_000; i++) {
    const page = await r.findTraces({ ...q, cursor });
    out.push(...page.traces);
    if (!page.next) return out;
    cursor = page.next;
  }
  throw new Error('pagination did not end');
}

const ids = (ts: TraceSummary[]) => ts.map((t) => t.traceId);

export function storeConformance(name: string, newTarget: () => ConformanceTarget): void {
  /** Runs `fn` with a fresh location and store, closing and removing both afterwards. */
  const withStore = (fn: (s: Stores, target: ConformanceTarget) => Promise<void> | void, limits?: Partial<RetentionLimits>) => async () => {
    const target = newTarget();
    const s = target.open(limits);
    try {
      await fn(s, target);
    } finally {
      s.close();
      target.destroy();
    }
  };

  describe(`${name}: SpanSpool`, () => {
    it('append returns increasing ids and pending returns the batches oldest first, as appended', withStore((s) => {
      const a = [ebpfSpan(), ebpfSpan({ kind: 'exit', attrs: { x: 1.5, y: 'z' } })];
      const b = [ebpfSpan({ service: 'cart' })];
      const ia = s.append(a, 1000);
      const ib = s.append(b, 2000);
      const ie = s.append([], 3000);
      assert.ok(ia < ib && ib < ie, `ids ${ia}, ${ib}, ${ie} must increase`);
      assert.deepEqual([...s.pending()], [
        { id: ia, receivedAtMs: 1000, spans: a },
        { id: ib, receivedAtMs: 2000, spans: b },
        { id: ie, receivedAtMs: 3000, spans: [] },
      ]);
    }));

    it('appended batches survive closing and reopening', withStore((s, target) => {
      const batches = Array.from({ length: 200 }, (_, i) => [ebpfSpan({ startUs: BASE_US + i })]);
      const appended = batches.map((b, i) => s.append(b, i));
      s.close();
      const again = target.open();
      try {
        const p = [...again.pending()];
        assert.deepEqual(p.map((x) => x.id), appended);
        assert.deepEqual(p.map((x) => x.spans), batches);
      } finally {
        again.close();
      }
    }));

    it('a batch appended with its raw body comes back as its spans or as that body, byte for byte, after reopening', withStore((s, target) => {
      const spans = [ebpfSpan(), ebpfSpan({ kind: 'exit' })];
      const raws: RawBatch[] = [
        { body: Buffer.from([0x1f, 0x8b, 0, 1, 2, 255, 0]), format: 'lp', encoding: 'gzip' },
        { body: Buffer.from('[{"measurement":"dketrace"}]'), format: 'json', encoding: 'identity' },
        { body: Buffer.from('dketrace a=1i 1\n'), format: 'lp', encoding: 'identity' },
        { body: Buffer.from([0x8b, 0x02, 0x80, 7]), format: 'json', encoding: 'br' },
        { body: Buffer.from([0x1b, 0x03, 0x00]), format: 'lp', encoding: 'br' },
      ];
      const ids = raws.map((r, i) => s.append(spans, 10 + i, r));
      const plain = s.append(spans, 20);
      s.close();
      const again = target.open();
      try {
        const p = [...again.pending()];
        assert.deepEqual(p.map((x) => x.id), [...ids, plain]);
        assert.deepEqual(p.map((x) => x.receivedAtMs), [10, 11, 12, 13, 14, 20]);
        for (let i = 0; i < raws.length; i++) {
          const b = p[i];
          if (b.raw) {
            assert.equal(b.spans, undefined);
            assert.deepEqual({ ...b.raw, body: Buffer.from(b.raw.body) }, raws[i]);
          } else assert.deepEqual(b.spans, spans);
        }
        assert.deepEqual(p[raws.length].spans, spans);
        assert.equal(p[raws.length].raw, undefined);
      } finally {
        again.close();
      }
    }));

    it('ids keep increasing after the newest batch was removed and the store reopened', withStore((s, target) => {
      const a = s.append([ebpfSpan()], 1);
      s.commit([], [a]);
      s.close();
      const again = target.open();
      try {
        const b = again.append([ebpfSpan()], 2);
        assert.ok(b > a, `id ${b} after removed ${a}`);
      } finally {
        again.close();
      }
    }));
  });

  describe(`${name}: TraceWriter`, () => {
    it('commit makes spans queryable exactly as committed and removes done batches', withStore(async (s) => {
      const b1 = s.append([ebpfSpan()], 1);
      const b2 = s.append([ebpfSpan()], 2);
      const spans = chainTrace(1, BASE_US);
      s.commit([spans[3], spans[0], spans[4], spans[2], spans[1]], [b1]);
      assert.deepEqual(await s.getTrace(traceIdOf(1)), spans, 'all fields kept, ordered by start');
      assert.deepEqual([...s.pending()].map((b) => b.id), [b2]);
    }));

    it('commit is atomic: a commit that fails stores nothing and keeps its batches', withStore(async (s) => {
      const b = s.append([ebpfSpan()], 1);
      const good = chainTrace(2, BASE_US);
      const bad = linkedSpan({ traceId: traceIdOf(3) });
      (bad.attrs as Record<string, unknown>).self = bad.attrs; // cannot be serialised by any store
      const backlog = s.backlog();
      assert.throws(() => s.commit([...good, bad], [b]));
      assert.equal(await s.getTrace(traceIdOf(2)), undefined);
      assert.deepEqual((await s.findTraces({})).traces, []);
      assert.deepEqual([...s.pending()].map((x) => x.id), [b]);
      assert.equal(s.backlog(), backlog);
      assert.deepEqual(await s.dependencies(0, Number.MAX_SAFE_INTEGER), []);
      s.commit(good, [b]);
      assert.equal((await s.getTrace(traceIdOf(2)))?.length, 5);
      assert.deepEqual([...s.pending()], []);
    }));

    it('writing a span whose spanId is stored is a no-op (replay after a crash)', withStore(async (s) => {
      const spans = chainTrace(4, BASE_US);
      s.commit(spans, []);
      const backlog = s.backlog();
      s.commit(spans, []);
      s.commit([spans[2], spans[0]], []);
      assert.deepEqual(await s.getTrace(traceIdOf(4)), spans);
      const [t] = (await s.findTraces({})).traces;
      assert.equal(t.spanCount, 5);
      assert.equal(s.backlog(), backlog, 'replayed spans are not queued again');
      const deps = await s.dependencies(0, Number.MAX_SAFE_INTEGER);
      assert.deepEqual(deps.map((d) => d.callCount), [1, 1]);
    }));

    it('a resent span is skipped among new ones, and a span twice in one commit is stored once', withStore(async (s) => {
      const spans = chainTrace(8, BASE_US);
      s.commit(spans.slice(0, 3), []);
      const backlog = s.backlog();
      // Spans 1..2 again (a replay), 3 twice in the same commit, 4 new.
      s.commit([spans[1], spans[3], spans[2], spans[3], spans[4]], []);
      assert.deepEqual(await s.getTrace(traceIdOf(8)), spans);
      assert.equal((await s.findTraces({})).traces[0].spanCount, 5);
      assert.equal(s.backlog(), backlog + 2, 'only the new spans are queued');
      assert.deepEqual((await s.dependencies(0, Number.MAX_SAFE_INTEGER)).map((d) => d.callCount), [1, 1]);
      // A replayed span linked into another trace (its parent's batch was done): still skipped.
      s.commit([{ ...spans[4], traceId: traceIdOf(9), parentId: '' }], []);
      assert.equal(await s.getTrace(traceIdOf(9)), undefined);
    }));

    it('late spans of a stored trace: getTrace, export and edges see the spans of every commit', withStore(async (s) => {
      const spans = chainTrace(10, BASE_US);
      // The server spans first; their client spans (parents) arrive in later commits.
      s.commit([spans[2], spans[4]], []);
      s.commit([{ ...spans[3], late: true }], []);
      s.commit([{ ...spans[0], late: true }, { ...spans[1], late: true }], []);
      const late = (i: number) => (i === 2 || i === 4 ? spans[i] : { ...spans[i], late: true });
      assert.deepEqual(await s.getTrace(traceIdOf(10)), spans.map((_, i) => late(i)));
      assert.deepEqual(s.unexported(0, 100).map((x) => x.span.spanId), [2, 4, 3, 0, 1].map((i) => spans[i].spanId), 'storage order');
      assert.deepEqual((await s.dependencies(0, Number.MAX_SAFE_INTEGER)).map((d) => `${d.parent}>${d.child} ${d.callCount}`), ['cart>db 1', 'frontend>cart 1']);
      // And the other way round: a server span stored after its client span (a late entry).
      const t = chainTrace(11, BASE_US + 1000);
      s.commit([t[0], t[1], t[2], t[3]], []);
      s.commit([{ ...t[4], late: true }], []);
      assert.deepEqual((await s.dependencies(0, Number.MAX_SAFE_INTEGER)).map((d) => `${d.parent}>${d.child} ${d.callCount}`), ['cart>db 2', 'frontend>cart 2']);
      const [summary] = (await s.findTraces({ service: 'db', limit: 1 })).traces;
      assert.deepEqual([summary.traceId, summary.spanCount, summary.lateCount], [traceIdOf(11), 5, 1]);
    }));

    it('a trace with thousands of spans in one commit', withStore(async (s) => {
      const traceId = traceIdOf(12);
      const spans = Array.from({ length: 5000 }, (_, i) => linkedSpan({ traceId, spanId: hex(0x120000 + i, 16), startUs: BASE_US + (i % 100), service: `svc-${i % 7}`, resource: `GET /r${i % 13}` }));
      s.commit(spans, []);
      const got = await s.getTrace(traceId);
      assert.equal(got?.length, 5000);
      assert.deepEqual(got, [...spans].sort((a, b) => a.startUs - b.startUs), 'by start, ties in commit order');
      const rows = s.unexported(0, 10_000);
      assert.deepEqual(rows.map((r) => r.span), spans);
      assert.equal(new Set(rows.map((r) => r.rowId)).size, 5000);
      assert.deepEqual(rows.map((r) => r.rowId), rows.map((r) => r.rowId).sort((a, b) => a - b));
      const [t] = (await s.findTraces({ operation: 'GET /r12', service: 'svc-3' })).traces;
      assert.equal(t.spanCount, 5000);
    }));

    it('committed data survives closing and reopening', withStore(async (s, target) => {
      const spans = chainTrace(5, BASE_US);
      s.commit(spans, []);
      s.close();
      const again = target.open();
      try {
        assert.deepEqual(await again.getTrace(traceIdOf(5)), spans);
        assert.equal(again.backlog(), 5);
        assert.deepEqual(await again.services(), ['cart', 'db', 'frontend']);
      } finally {
        again.close();
      }
    }));
  });

  describe(`${name}: TraceReader`, () => {
    it('summarises a trace: root, duration, counts, services, late spans', withStore(async (s) => {
      s.commit(chainTrace(6, BASE_US, { clientUs: 5000, error: true }), []);
      const [t] = (await s.findTraces({})).traces;
      assert.deepEqual(t, {
        traceId: traceIdOf(6), rootService: 'frontend', rootOperation: 'GET /checkout', startUs: BASE_US, durationUs: 6000,
        spanCount: 5, errorCount: 1, services: ['frontend', 'cart', 'db'], lateCount: 0,
      });
    }));

    it('spans committed later update the summary and the search (late spans)', withStore(async (s) => {
      const spans = chainTrace(7, BASE_US);
      s.commit(spans.slice(2), []); // cart + db first, root missing
      let [t] = (await s.findTraces({})).traces;
      assert.equal(t.rootService, 'cart', 'without a root span the earliest span stands in');
      assert.equal(t.startUs, BASE_US + 150);
      const late = spans.slice(0, 2).map((x) => ({ ...x, late: true }));
      s.commit(late, []);
      [t] = (await s.findTraces({})).traces;
      assert.equal(t.rootService, 'frontend');
      assert.equal(t.startUs, BASE_US);
      assert.equal(t.durationUs, 3000);
      assert.equal(t.spanCount, 5);
      assert.equal(t.lateCount, 2);
      assert.deepEqual(t.services.slice().sort(), ['cart', 'db', 'frontend']);
      // The search rows moved with the trace's start.
      assert.deepEqual(ids((await s.findTraces({ service: 'db', startUs: BASE_US, endUs: BASE_US })).traces), [traceIdOf(7)]);
      assert.deepEqual(ids((await s.findTraces({ service: 'db', operation: 'GET /item', endUs: BASE_US + 100 })).traces), [traceIdOf(7)]);
    }));

    it('getTrace of an unknown trace is undefined', withStore(async (s) => {
      assert.equal(await s.getTrace(traceIdOf(999)), undefined);
    }));

    it('filters by service, operation, status, duration and time range', withStore(async (s) => {
      // trace n starts at BASE + n ms; client time n ms; traces 3 and 6 have errors.
      for (let n = 1; n <= 8; n++) s.commit(chainTrace(n, BASE_US + n * 1000, { clientUs: n * 1000, error: n % 3 === 0 }), []);
      s.commit([linkedSpan({ traceId: traceIdOf(9), spanId: hex(9999, 16), service: 'batch', resource: 'POST /job', startUs: BASE_US + 9000, status: 'warning' })], []);
      const q = async (query: Parameters<TraceReader['findTraces']>[0]) => ids((await s.findTraces(query)).traces);
      const t = (...n: number[]) => n.map(traceIdOf);
      assert.deepEqual(await q({}), t(9, 8, 7, 6, 5, 4, 3, 2, 1), 'newest first');
      assert.deepEqual(await q({ service: 'cart' }), t(8, 7, 6, 5, 4, 3, 2, 1));
      assert.deepEqual(await q({ service: 'batch' }), t(9));
      assert.deepEqual(await q({ service: 'nobody' }), []);
      assert.deepEqual(await q({ operation: 'POST /job' }), t(9));
      assert.deepEqual(await q({ operation: 'GET /item', status: 'error', limit: 1 }), t(6));
      assert.deepEqual(await q({ operation: 'GET /item', minDurationUs: 8000 }), t(8, 7));
      assert.deepEqual(await q({ operation: 'nothing' }), []);
      assert.deepEqual(await q({ service: 'cart', operation: 'GET /item' }), t(8, 7, 6, 5, 4, 3, 2, 1));
      assert.deepEqual(await q({ service: 'frontend', operation: 'GET /item' }), [], 'operation belongs to the service');
      assert.deepEqual(await q({ status: 'error' }), t(6, 3));
      assert.deepEqual(await q({ status: 'warning' }), t(9));
      assert.deepEqual(await q({ status: 'ok' }), t(8, 7, 5, 4, 2, 1));
      assert.deepEqual(await q({ service: 'cart', status: 'error' }), t(6, 3));
      // trace duration = clientUs + 1000
      assert.deepEqual(await q({ minDurationUs: 6000 }), t(8, 7, 6, 5), 'inclusive');
      assert.deepEqual(await q({ maxDurationUs: 3000 }), t(9, 2, 1));
      assert.deepEqual(await q({ minDurationUs: 3000, maxDurationUs: 5000 }), t(4, 3, 2));
      assert.deepEqual(await q({ startUs: BASE_US + 3000, endUs: BASE_US + 5000 }), t(5, 4, 3), 'inclusive range');
      assert.deepEqual(await q({ service: 'db', startUs: BASE_US + 7000 }), t(8, 7));
      assert.deepEqual(await q({ service: 'cart', operation: 'POST /cart', endUs: BASE_US + 2000, status: 'ok' }), t(2, 1));
      assert.deepEqual(await q({ limit: 2 }), t(9, 8));
      assert.equal((await s.findTraces({})).next, undefined, 'no cursor on the last page');
    }));

    it('pages with a cursor, stable while traces are inserted between pages', withStore(async (s) => {
      for (let n = 1; n <= 30; n++) s.commit(chainTrace(n, BASE_US + (n % 10) * 1000), []); // ties on start
      const everything = await allPages(s, { limit: 1000 });
      assert.equal(everything.length, 30);
      assert.deepEqual(await allPages(s, { limit: 4 }), everything);
      assert.deepEqual(await allPages(s, { limit: 3, service: 'cart' }), everything);
      assert.deepEqual(await allPages(s, { limit: 7, service: 'cart', operation: 'GET /item' }), everything);
      // An operation of two services (cart's client span, db's server span): each trace once.
      assert.deepEqual(await allPages(s, { limit: 4, operation: 'GET /item' }), everything);

      const first = await s.findTraces({ limit: 5 });
      assert.deepEqual(first.traces, everything.slice(0, 5));
      assert.ok(first.next);
      // New traces, newer and older than the page boundary, arrive between two pages.
      s.commit(chainTrace(100, BASE_US + 99_000), []);
      s.commit(chainTrace(101, BASE_US - 1000), []);
      const rest: TraceSummary[] = [];
      let cursor: string | undefined = first.next;
      while (cursor) {
        const p = await s.findTraces({ limit: 5, cursor });
        rest.push(...p.traces);
        cursor = p.next;
      }
      assert.deepEqual(ids(rest), [...ids(everything.slice(5)), traceIdOf(101)], 'no repeat, no skip');
    }));

    it('limit defaults to 20 and is at most 1000', withStore(async (s) => {
      const spans: LinkedSpan[] = [];
      for (let n = 1; n <= 1005; n++) spans.push(linkedSpan({ traceId: traceIdOf(n), startUs: BASE_US + n }));
      s.commit(spans, []);
      assert.equal((await s.findTraces({})).traces.length, 20);
      const big = await s.findTraces({ limit: 5000 });
      assert.equal(big.traces.length, 1000);
      assert.ok(big.next);
    }));

    it('lists services and their operations', withStore(async (s) => {
      s.commit(chainTrace(1, BASE_US), []);
      s.commit([linkedSpan({ traceId: traceIdOf(2), service: 'cart', resource: 'DELETE /cart/{id}' })], []);
      assert.deepEqual(await s.services(), ['cart', 'db', 'frontend']);
      assert.deepEqual(await s.operations('cart'), ['DELETE /cart/{id}', 'GET /item', 'POST /cart']);
      assert.deepEqual(await s.operations('nobody'), []);
    }));

    it('dependencies: client → server calls between services, with counts and percentiles', withStore(async (s) => {
      // 100 traces, trace n in minute n after BASE_US; frontend → cart client spans last n ms;
      // every 10th has an error.
      for (let n = 1; n <= 100; n++) s.commit(chainTrace(n, BASE_US + n * MINUTE_US, { clientUs: n * 1000, error: n % 10 === 0 }), []);
      // An in-process call (client and server of the same service) is no edge.
      const t = traceIdOf(500);
      s.commit([
        linkedSpan({ traceId: t, spanId: hex(50001, 16), kind: 'exit', service: 'cart', startUs: BASE_US }),
        linkedSpan({ traceId: t, spanId: hex(50002, 16), parentId: hex(50001, 16), kind: 'entry', service: 'cart', startUs: BASE_US }),
      ], []);
      const deps = await s.dependencies(BASE_US, BASE_US + 1000 * HOUR_US);
      assert.deepEqual(deps.map(({ parent, child, callCount, errorCount }) => ({ parent, child, callCount, errorCount })), [
        { parent: 'cart', child: 'db', callCount: 100, errorCount: 0 },
        { parent: 'frontend', child: 'cart', callCount: 100, errorCount: 10 },
      ]);
      // Percentiles: the duration at position floor((n - 1) * p) of the sorted durations, within 2.2%.
      near(deps[0].p50Us, 300);
      near(deps[0].p99Us, 300);
      near(deps[1].p50Us, 50_000);
      near(deps[1].p99Us, 99_000);
      // The range selects calls by the client span's start: minutes 1..10.
      const early = await s.dependencies(BASE_US + MINUTE_US, BASE_US + 10 * MINUTE_US + 150);
      const fc = early.find((d) => d.parent === 'frontend')!;
      assert.deepEqual([fc.callCount, fc.errorCount], [10, 1]);
      near(fc.p50Us, 5000);
      near(fc.p99Us, 9000);
      assert.deepEqual(await s.dependencies(0, BASE_US - 1), []);
    }));

    it('dependencies: calls to peers that are not traced (client spans with no server span), by Host or address', withStore(async (s) => {
      const t = traceIdOf(700);
      const call = (k: number, over: Partial<LinkedSpan>) => linkedSpan({ traceId: t, spanId: hex(70000 + k, 16), parentId: hex(70000, 16), kind: 'exit', service: 'cart', startUs: BASE_US + k, durationUs: 1000 * k, ...over });
      s.commit([
        linkedSpan({ traceId: t, spanId: hex(70000, 16), kind: 'entry', service: 'cart', startUs: BASE_US }),
        call(1, { attrs: { http_host: 'payments.example:8443' } }),
        call(2, { attrs: { http_host: 'payments.example:8443' }, status: 'error', httpStatusCode: 503 }),
        call(3, { attrs: {}, dstIp: '10.0.0.7', dstPort: 9200 }),
        call(4, { attrs: {}, dstIp: 'fd00::7', dstPort: 80 }),
        // A peer named like a traced service is another node: `db` is called, and traced too.
        call(5, { attrs: { http_host: 'db' } }),
        call(6, { attrs: { http_host: 'db' } }),
        call(7, { attrs: { unix_path: '/run/php/php8.2-fpm.sock' }, dstIp: '', dstPort: 0 }),
        linkedSpan({ traceId: t, spanId: hex(70010, 16), parentId: hex(70006, 16), kind: 'entry', service: 'db', startUs: BASE_US + 7 }),
      ], []);
      const deps = await s.dependencies(0, Number.MAX_SAFE_INTEGER);
      assert.deepEqual(deps.map(({ parent, child, peer, callCount, errorCount }) => ({ parent, child, peer, callCount, errorCount })), [
        { parent: 'cart', child: 'db', peer: undefined, callCount: 1, errorCount: 0 },
        { parent: 'cart', child: '10.0.0.7:9200', peer: true, callCount: 1, errorCount: 0 },
        { parent: 'cart', child: '[fd00::7]:80', peer: true, callCount: 1, errorCount: 0 },
        { parent: 'cart', child: 'db', peer: true, callCount: 1, errorCount: 0 },
        { parent: 'cart', child: 'payments.example:8443', peer: true, callCount: 2, errorCount: 1 },
        { parent: 'cart', child: 'unix:/run/php/php8.2-fpm.sock', peer: true, callCount: 1, errorCount: 0 },
      ]);
      assert.ok(!('peer' in deps[0]), 'a call between services has no peer key');
      near(deps[4].p50Us, 1000);
    }));

    it('dependencies: a client span whose server span is stored later (late) is a call to that service, not to a peer', withStore(async (s) => {
      const spans = chainTrace(1, BASE_US);
      s.commit(spans.slice(0, 4), []); // cart's call to db has no server span yet: a peer
      assert.deepEqual((await s.dependencies(0, Number.MAX_SAFE_INTEGER)).map((d) => `${d.parent}>${d.child}${d.peer ? ' (peer)' : ''}`), ['frontend>cart', 'cart>10.0.0.1:51234 (peer)']);
      s.commit([{ ...spans[4], late: true }], []);
      assert.deepEqual((await s.dependencies(0, Number.MAX_SAFE_INTEGER)).map((d) => `${d.parent}>${d.child} ${d.callCount}`), ['cart>db 1', 'frontend>cart 1']);
    }));

    it('dependencies: a client span stored after its server span still makes the edge', withStore(async (s) => {
      const spans = chainTrace(1, BASE_US);
      s.commit([spans[0], spans[2], spans[3], spans[4]], []); // frontend's exit missing
      assert.deepEqual((await s.dependencies(0, Number.MAX_SAFE_INTEGER)).map((d) => d.parent + '>' + d.child), ['cart>db']);
      s.commit([{ ...spans[1], late: true }], []);
      assert.deepEqual((await s.dependencies(0, Number.MAX_SAFE_INTEGER)).map((d) => d.parent + '>' + d.child), ['cart>db', 'frontend>cart']);
    }));
  });

  describe(`${name}: ExportQueue`, () => {
    it('hands out stored spans oldest first, after a row id, and forgets marked ones', withStore((s) => {
      const a = chainTrace(1, BASE_US);
      const b = chainTrace(2, BASE_US - 5000); // older start, stored later: export order is storage order
      s.commit(a, []);
      s.commit(b, []);
      assert.equal(s.backlog(), 10);
      const all = s.unexported(0, 100);
      assert.deepEqual(all.map((x) => x.span), [...a, ...b]);
      const rowIds = all.map((x) => x.rowId);
      assert.deepEqual(rowIds, [...rowIds].sort((x, y) => x - y));
      assert.equal(new Set(rowIds).size, 10);
      assert.deepEqual(s.unexported(0, 3), all.slice(0, 3));
      assert.deepEqual(s.unexported(rowIds[3], 3), all.slice(4, 7));
      s.markExported(rowIds.slice(0, 4));
      assert.equal(s.backlog(), 6);
      assert.deepEqual(s.unexported(0, 100), all.slice(4));
      s.markExported(rowIds.slice(0, 4)); // marking twice is harmless
      assert.equal(s.backlog(), 6);
      s.commit(a, []); // replay: stored already, not queued again
      assert.deepEqual(s.unexported(0, 100), all.slice(4));
      s.markExported(rowIds.slice(4));
      assert.equal(s.backlog(), 0);
      assert.deepEqual(s.unexported(0, 100), []);
    }));

    it('marks single spans of a commit exported, in any order, and keeps the rest queued across a reopen', withStore((s, target) => {
      const spans = [...chainTrace(1, BASE_US), ...chainTrace(2, BASE_US + 10)];
      s.commit(spans, []);
      const all = s.unexported(0, 100);
      assert.deepEqual(all.map((x) => x.span.spanId).sort(), spans.map((x) => x.spanId).sort());
      s.markExported([all[7].rowId, all[2].rowId, all[9].rowId, all[2].rowId]);
      assert.equal(s.backlog(), 7);
      const left = all.filter((_, i) => i !== 2 && i !== 7 && i !== 9);
      assert.deepEqual(s.unexported(0, 100), left);
      assert.deepEqual(s.unexported(all[2].rowId, 3), left.slice(2, 5), 'after a row id inside a commit');
      s.close();
      const again = target.open();
      try {
        assert.equal(again.backlog(), 7);
        assert.deepEqual(again.unexported(0, 100), left);
        again.markExported(left.map((x) => x.rowId));
        assert.equal(again.backlog(), 0);
        assert.deepEqual(again.unexported(0, 100), []);
      } finally {
        again.close();
      }
    }));

    it('the queue survives closing and reopening', withStore((s, target) => {
      s.commit(chainTrace(1, BASE_US), []);
      const first = s.unexported(0, 2);
      s.markExported(first.map((x) => x.rowId));
      s.close();
      const again = target.open();
      try {
        assert.equal(again.backlog(), 3);
        assert.deepEqual(again.unexported(0, 100).map((x) => x.span.spanId), chainTrace(1, BASE_US).slice(2).map((x) => x.spanId));
      } finally {
        again.close();
      }
    }));
  });

  describe(`${name}: Retention`, () => {
    const nowMs = BASE_US / 1000 + 10 * 3600_000;
    it('deletes whole traces older than the maximum age, keeps the spool, counts export drops', withStore(async (s) => {
      const batch = s.append([ebpfSpan()], 1);
      // Traces 1..4 started 12h, 11h, 2h, 1h before now.
      const ages = [12, 11, 2, 1];
      ages.forEach((h, i) => s.commit(chainTrace(i + 1, (nowMs - h * 3600_000) * 1000), []));
      s.markExported(s.unexported(0, 5).map((x) => x.rowId)); // trace 1 exported
      const r = s.sweep(nowMs);
      assert.deepEqual(r, { deletedTraces: 2, deletedSpans: 10, exportDropped: 5 });
      assert.deepEqual(ids((await s.findTraces({})).traces), [traceIdOf(4), traceIdOf(3)]);
      assert.equal(await s.getTrace(traceIdOf(1)), undefined);
      assert.equal(await s.getTrace(traceIdOf(2)), undefined);
      assert.deepEqual(await s.findTraces({ service: 'cart', endUs: (nowMs - 5 * 3600_000) * 1000 }), { traces: [] });
      assert.equal(s.backlog(), 10);
      assert.deepEqual([...s.pending()].map((b) => b.id), [batch]);
      assert.deepEqual((await s.dependencies(0, Number.MAX_SAFE_INTEGER)).map((d) => d.callCount), [2, 2]);
      assert.deepEqual(s.sweep(nowMs), { deletedTraces: 0, deletedSpans: 0, exportDropped: 0 });
    }, { retentionMaxAgeMs: 10 * 3600_000 }));

    it('deletes a trace stored by several commits whole, and its spans can be stored again', withStore(async (s) => {
      const old = chainTrace(1, (nowMs - 12 * 3600_000) * 1000);
      s.commit(old.slice(0, 2), []);
      s.commit(chainTrace(2, (nowMs - 3600_000) * 1000), []);
      s.commit(old.slice(2).map((x) => ({ ...x, late: true })), []);
      const r = s.sweep(nowMs);
      assert.deepEqual(r, { deletedTraces: 1, deletedSpans: 5, exportDropped: 5 });
      assert.equal(await s.getTrace(traceIdOf(1)), undefined);
      assert.deepEqual(s.unexported(0, 100).map((x) => x.span.traceId), Array(5).fill(traceIdOf(2)));
      assert.deepEqual(ids((await allPages(s, { service: 'db' }))), [traceIdOf(2)]);
      assert.deepEqual(ids((await allPages(s, { service: 'db', operation: 'GET /item' }))), [traceIdOf(2)]);
      // Deleted spans are not stored any more: committing them again stores them.
      s.commit(old, []);
      assert.deepEqual(await s.getTrace(traceIdOf(1)), old);
    }, { retentionMaxAgeMs: 10 * 3600_000 }));

    it('deletes the oldest whole traces while storage is above the maximum size', withStore(async (s) => {
      const big = 'x'.repeat(2000);
      for (let n = 1; n <= 600; n++) {
        s.commit(chainTrace(n, BASE_US + n * 1000).map((x) => ({ ...x, attrs: { big } })), []);
      }
      const batch = s.append([ebpfSpan()], 1);
      const r = s.sweep(nowMs);
      assert.ok(r.deletedTraces > 0 && r.deletedTraces < 600, `deleted ${r.deletedTraces} of 600 traces`);
      assert.equal(r.deletedSpans, r.deletedTraces * 5, 'whole traces');
      const left = await allPages(s, { limit: 1000 });
      assert.equal(left.length, 600 - r.deletedTraces);
      assert.equal(left.at(-1)!.traceId, traceIdOf(r.deletedTraces + 1), 'the oldest went first');
      assert.equal(left[0].traceId, traceIdOf(600));
      assert.deepEqual([...s.pending()].map((b) => b.id), [batch]);
      assert.ok(s.sweep(nowMs).deletedTraces === 0, 'below the limit after one sweep');
    }, { retentionMaxBytes: 4 * 1024 * 1024 }));
  });
}
