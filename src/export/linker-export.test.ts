// The exporter wired into a real linker: spans posted to POST /v1/bpftracing come out of the
// OTLP endpoint as one linked trace (SERVER/CLIENT spans, parent ids), decoded with the
// official protos. Uses the linker fixtures to build a known call chain.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadConfig } from '../config/config.js';
import { buildTrace, chain, rng } from '../linker/fixtures.js';
import { startLinker } from '../linker/service.js';
import { encodeSpans } from '../span/lineprotocol.js';
import { loadExportConfig } from './config.js';
import { createOtlpExporter } from './otlp-exporter.js';
import { startReceiver } from './test-receiver.js';

const dir = mkdtempSync(join(tmpdir(), 'seqtrace-linker-export-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('linker → OTLP', { timeout: 30_000 }, () => {
  it('exports the linked trace of spans posted to the linker', async () => {
    const rec = await startReceiver();
    const { linker: cfg } = loadConfig({
      env: { ENV_HTTP_LISTEN: '127.0.0.1:0', ENV_INPUT_EBPFTRACE_SQLITE_PATH: join(dir, 'db'), ENV_INPUT_EBPFTRACE_WINDOW: '1s', ENV_INPUT_EBPFTRACE_SAMPLING_RATE: '1' },
    });
    const exportCfg = loadExportConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: rec.url, OTEL_BSP_SCHEDULE_DELAY: '20' });
    const clock = { t: Date.now() };
    const linker = await startLinker(cfg, {
      nowMs: () => clock.t, flushIntervalMs: 3_600_000, logger: false,
      exporter: (q) => createOtlpExporter(exportCfg, q, { log: () => {} }),
    });
    try {
      const built = buildTrace(chain(['front', 'users', 'db']), { startUs: clock.t * 1000, random: rng(7) });
      const r = await fetch(`${linker.url}/v1/bpftracing`, { method: 'POST', body: encodeSpans(built.spans) });
      assert.equal(r.status, 200, await r.text());
      clock.t += 5000;
      linker.pipeline.flush(clock.t);
      const t0 = Date.now();
      while (rec.spans().length < built.spans.length && Date.now() - t0 < 10_000) await new Promise((res) => setTimeout(res, 20));
      const got = rec.spans();
      assert.equal(got.length, built.spans.length);
      const traceIds = new Set(got.map((g) => g.span.traceId));
      assert.equal(traceIds.size, 1, 'one trace');
      const bySpanId = new Map(got.map((g) => [g.span.spanId, g]));
      const roots = got.filter((g) => !g.span.parentSpanId);
      assert.equal(roots.length, 1);
      assert.equal(roots[0].resource['service.name'], 'front');
      for (const g of got) if (g.span.parentSpanId) assert.ok(bySpanId.has(g.span.parentSpanId), 'every parent is in the trace');
      assert.deepEqual(new Set(got.map((g) => g.span.kind)), new Set([2, 3]));
      assert.deepEqual(new Set(got.map((g) => g.resource['service.name'])), new Set(['front', 'users', 'db']));
      while (linker.store.backlog() > 0 && Date.now() - t0 < 10_000) await new Promise((res) => setTimeout(res, 20));
      assert.equal(linker.store.backlog(), 0, 'marked exported after the 2xx');
    } finally {
      await linker.close();
      await rec.close();
    }
  });
});
