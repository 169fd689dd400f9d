// Spans added by location (Joiner.add with a loc): the joiner holds only join metadata and
// loads the kept spans through the flush's SpanLoader, once per batch. The traces must be
// exactly those of a joiner holding the spans, app trace ids, errors and flags included.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createJoiner, type JoinerOptions } from './joiner.js';
import { OPTS, chain, newWorld, serve, service, shuffle } from './testkit.js';
import type { EbpfSpan } from '../../span/span.js';
import type { EmittedTrace } from '../joiner.js';

const T0 = 1_732_500_000_000_000;
const NOW = T0 / 1000;
const svcs = [0, 1, 2, 3].map((i) => service(i));

function world() {
  const w = newWorld(5);
  for (let i = 0; i < 300; i++) {
    const plan = chain(svcs.slice(0, 2 + (i % 3)));
    const root = serve(w, plan, T0 + i * 50, null);
    if (i % 7 === 0) root.appTraceId = (i + 1).toString(16).padStart(32, '0');
    if (i % 11 === 0) root.httpStatusCode = 503;
    if (i % 13 === 0) root.appSampled = -1;
  }
  return w;
}

function emitted(traces: EmittedTrace[]) {
  return traces.map((t) => ({ traceId: t.traceId, sampled: t.sampled, batchIds: t.batchIds, spans: t.spans })).sort((a, b) => (a.traceId < b.traceId ? -1 : 1));
}

for (const linkSampledOut of [false, true]) {
  test(`spans held by loc link exactly like spans held whole (link_sampled_out ${linkSampledOut})`, () => {
    const w = world();
    const order = shuffle(w.spans.slice(), w.rand);
    // batches of 50 spans; a span's loc is its place in its batch, in reverse to test the mapping
    const batches: EbpfSpan[][] = [];
    for (let i = 0; i < order.length; i += 50) batches.push(order.slice(i, i + 50).reverse());
    const opts: JoinerOptions = { ...OPTS, sampling_rate: 0.3, use_app_trace_id: true, keep_error_traces: true, link_sampled_out: linkSampledOut };
    const whole = createJoiner(opts), byLoc = createJoiner(opts);
    batches.forEach((b, id) => b.forEach((s, loc) => { whole.add(s, id, NOW); byLoc.add(s, id, NOW, loc); }));
    const loads: number[] = [];
    const got = byLoc.flushAll(NOW, (id, locs) => {
      loads.push(id);
      assert.deepEqual(locs, locs.slice().sort((a, b) => a - b), 'locs ascend');
      return locs.map((l) => batches[id][l]);
    });
    const want = whole.flushAll(NOW);
    assert.ok(want.some((t) => t.sampled) && want.some((t) => !t.sampled));
    assert.deepEqual(emitted(got), emitted(want));
    assert.equal(new Set(loads).size, loads.length, 'one load per batch');
    assert.deepEqual(byLoc.stats(), whole.stats());
  });
}

test('a flush without a SpanLoader refuses spans held by loc', () => {
  const w = world();
  const j = createJoiner({ ...OPTS, sampling_rate: 1 });
  w.spans.forEach((s, i) => j.add(s, 0, NOW, i));
  assert.throws(() => j.flushAll(NOW), /no SpanLoader/);
});

test('createRawLoader loads the spans at locs of gzip and plain bodies, line protocol and JSON, cached or not', async () => {
  const { createRawLoader, decodeRawBatch } = await import('../decode.js');
  const { encodeSpans } = await import('../../span/lineprotocol.js');
  const { encodeJsonPoints } = await import('../../span/json.js');
  const { spanToPoint } = await import('../../span/validate.js');
  const { brotliCompressSync, gzipSync } = await import('node:zlib');
  const w = world();
  const spans = w.spans.slice(0, 60);
  spans[3] = { ...spans[3], service: 'sérvice-ü', attrs: { note: 'two\nlines' } };
  const limits = { max_body_bytes: 1 << 24, max_batch_spans: 1000, max_field_bytes: 8192 };
  const lp = '# comment\n' + encodeSpans(spans.slice(0, 30)) + 'dketrace,host=x broken\n' + encodeSpans(spans.slice(30));
  const asciiLp = encodeSpans(spans.slice(4));
  const json = encodeJsonPoints(spans.map(spanToPoint));
  const bodies = [
    { body: Buffer.from(lp), format: 'lp' as const, encoding: 'identity' as const },
    { body: gzipSync(lp), format: 'lp' as const, encoding: 'gzip' as const },
    { body: gzipSync(asciiLp), format: 'lp' as const, encoding: 'gzip' as const },
    { body: gzipSync(json), format: 'json' as const, encoding: 'gzip' as const },
    { body: brotliCompressSync(lp), format: 'lp' as const, encoding: 'br' as const },
    { body: brotliCompressSync(json), format: 'json' as const, encoding: 'br' as const },
  ];
  for (const cache of [0, 1 << 20]) {
    const loader = createRawLoader(limits, cache);
    bodies.forEach((raw, id) => {
      const d = decodeRawBatch(raw, limits);
      const pick = [0, 3, 7, d.spans.length - 1].filter((i, k, a) => i < d.spans.length && a.indexOf(i) === k);
      for (let round = 0; round < 2; round++) {
        const got = loader.load(id, raw, pick.map((i) => d.locs[i]));
        assert.deepEqual(got, pick.map((i) => d.spans[i]), `body ${id}, cache ${cache}, round ${round}`);
      }
    });
    bodies.forEach((_, id) => loader.forget(id));
    assert.equal(loader.cachedBytes(), 0);
  }
});
