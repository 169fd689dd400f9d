// The web UI in a real browser (Debian's Chromium via playwright-core) against the real
// linker: spans posted as an agent does, linked, stored in SQLite, served by the query API
// and the UI. Screenshots go to a temp dir; with SEQTRACE_UPDATE_SCREENSHOTS=1 they replace
// the README's in docs/screenshots/ (so a test run never dirties the work tree).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import type { LinkedSpan } from '../span/span.js';
import type { TraceQuery, TraceSummary } from '../storage/store.js';
import { launchBrowser, startLinkerUi, type Browser, type UiServer } from './harness.js';
import { bigTrace, cartOnlyTrace, checkoutTrace, toEbpf } from './sample-traces.js';

const SHOTS = process.env.SEQTRACE_UPDATE_SCREENSHOTS === '1'
  ? join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'screenshots')
  : mkdtempSync(join(tmpdir(), 'seqtrace-shots-'));
const APP_TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

let server: UiServer;
let browser: Browser;
const nowUs = Date.now() * 1000;
/** Traces as the linker stored them, by trace id. */
const traces = new Map<string, LinkedSpan[]>();
let lateTraceId = '';
let externalTraceId = '';
let bigTraceId = '';
let cartOnly: string[] = [];

/** Waits until the store holds `n` traces (the linker emits a trace a window after its last span). */
async function storedTraces(n: number, where: TraceQuery = {}): Promise<TraceSummary[]> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const page = await server.store.findTraces({ startUs: 0, limit: 1000, ...where });
    if (page.traces.length >= n) return page.traces;
    if (Date.now() > deadline) throw new Error(`the linker stored ${page.traces.length} traces, expected ${n}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function open(path: string): Promise<Page> {
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  (page as Page & { errors: string[] }).errors = errors;
  await page.goto(server.url + path);
  return page;
}
const pageErrors = (p: Page) => (p as Page & { errors: string[] }).errors;

describe('web UI in Chromium', () => {
  before(async () => {
    server = await startLinkerUi();
    // Spans as agents send them: the linker joins them into traces (ids, parents, late).
    const sent: LinkedSpan[][] = [];
    for (let i = 0; i < 30; i++) {
      sent.push(checkoutTrace({
        startUs: nowUs - (i + 1) * 50e6, seed: i + 1, error: i % 6 === 2, late: i === 3,
        external: i === 5, appTraceId: i === 7 ? APP_TRACE_ID : undefined, items: 2 + (i % 3),
      }));
    }
    for (let i = 0; i < 6; i++) sent.push(cartOnlyTrace(nowUs - (i + 1) * 170e6, 500 + i));
    sent.push(bigTrace(nowUs - 40 * 60e6, 600));
    const all = sent.flat();
    await server.post(all.filter((s) => !s.late).map(toEbpf));
    await storedTraces(sent.length);
    // The late span comes after its trace was emitted: the linker adds it, marked late.
    await server.post(all.filter((s) => s.late).map(toEbpf));
    const deadline = Date.now() + 10_000;
    while (!(await server.store.findTraces({ startUs: 0, limit: 1000 })).traces.some((t) => t.lateCount)) {
      assert.ok(Date.now() < deadline, 'the late span was not stored');
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const t of await storedTraces(sent.length)) {
      const spans = (await server.store.getTrace(t.traceId))!;
      traces.set(t.traceId, spans);
      if (t.lateCount) lateTraceId = t.traceId;
      if (spans.some((s) => s.resource === 'GET /geo')) externalTraceId = t.traceId;
      if (t.spanCount > 1000) bigTraceId = t.traceId;
      if (t.rootOperation === 'DELETE /cart/{id}') cartOnly.push(t.traceId);
    }
    assert.equal(traces.size, sent.length);
    assert.ok(traces.has(APP_TRACE_ID), 'the trace with an app trace id adopted it');
    assert.ok(lateTraceId && externalTraceId && bigTraceId);
    assert.equal(cartOnly.length, 6);
    browser = await launchBrowser();
    mkdirSync(SHOTS, { recursive: true });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    if (process.env.SEQTRACE_UPDATE_SCREENSHOTS !== '1') rmSync(SHOTS, { recursive: true, force: true });
  });

  test('serves the UI: deep-link routes get index.html, assets have types, ETags and gzip', async () => {
    for (const path of ['/', '/search?service=cart', '/trace/abc', '/map']) {
      const r = await fetch(server.url + path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type') ?? '', /^text\/html/, path);
      assert.match(await r.text(), /<script type="module" src="\/ui\/app.js">/);
    }
    const js = await fetch(`${server.url}/ui/app.js`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.equal(js.headers.get('content-encoding'), 'gzip');
    const etag = js.headers.get('etag');
    assert.ok(etag);
    const again = await fetch(`${server.url}/ui/app.js`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    assert.match((await fetch(`${server.url}/ui/styles.css`)).headers.get('content-type') ?? '', /^text\/css/);
    const missing = await fetch(`${server.url}/ui/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).code, 'SEQ_ERR_NOT_FOUND');
  });

  // 200 traces made within a second (a load test) had the labels 06:01:53, 06:01:53, 06:01:54,
  // 06:01:54, 06:01:54 under the duration chart.
  test('duration chart: the time axis is as precise as its ticks are apart, so no two labels are the same', async () => {
    const page = await open('/');
    const labels = (t0: number, stepUs: number) => page.evaluate(async ([t, s]) => {
      const f = (await import('/ui/format.js' as string)).fmtAxisTime as (us: number, step: number) => string;
      return [0, 1, 2, 3, 4].map((i) => f(t + i * s, s));
    }, [t0, stepUs]);
    const t0 = Date.UTC(2026, 11, 7, 6, 1, 53, 100) * 1000;
    for (const step of [2_500, 250_000, 2e6, 90e6, 3 * 3600e6, 2 * 86_400e6]) {
      const got = await labels(t0, step);
      assert.equal(new Set(got).size, 5, `${step} µs apart: ${got.join(', ')}`);
    }
    assert.match((await labels(t0, 250_000))[1], /^\d\d:\d\d:\d\d\.\d{3}$/, 'milliseconds under a second apart');
    assert.match((await labels(t0, 2e6))[1], /^\d\d:\d\d:\d\d$/);
    assert.match((await labels(t0, 90e6))[1], /^\d\d:\d\d$/);
    assert.match((await labels(t0, 2 * 86_400e6))[1], /^\d\d-\d\d \d\d:\d\d$/, 'the date once a day apart');
    // Durations at a round step (they read 0, 6.25, 12.5, 18.8, 25ms).
    await page.goto(`${server.url}/search?lookback=24h&limit=100`);
    await page.waitForSelector('#scatter circle.dot');
    const ys = await page.$$eval('#scatter text.axis[x="52"]', (els) => els.map((e) => e.textContent ?? ''));
    const us = await page.evaluate(async (l) => {
      const parse = (await import('/ui/format.js' as string)).parseDurationUs as (s: string) => number;
      return l.map((s) => (s === '0µs' ? 0 : parse(s)));
    }, ys);
    const step = us[1];
    assert.ok(us.length >= 2 && us.length <= 5 && us[0] === 0, ys.join(', '));
    us.forEach((d, i) => assert.ok(Math.abs(d - i * step) < 1e-6 * step, ys.join(', ')));
    assert.ok([1, 2, 2.5, 5].includes(step / 10 ** Math.floor(Math.log10(step))), `a round step: ${ys.join(', ')}`);
    assert.deepEqual(pageErrors(page), []);
    await page.close();
  });

  test('search: filters from the form go to the URL and the list shows what the API found', async () => {
    const page = await open('/');
    await page.waitForSelector('.trace-row');
    await page.waitForSelector('#search-form select[name=service] option[value="cart"]', { state: 'attached' });
    await page.screenshot({ path: join(SHOTS, 'search.png') });
    await page.selectOption('#search-form select[name=service]', 'cart');
    await page.waitForSelector('#search-form select[name=operation] option[value="DELETE /cart/{id}"]', { state: 'attached' });
    await page.selectOption('#search-form select[name=operation]', 'DELETE /cart/{id}');
    await page.click('#search-form button[type=submit]');
    await page.waitForURL(/service=cart/);
    assert.match(page.url(), /operation=DELETE\+%2Fcart%2F%7Bid%7D|operation=DELETE%20%2Fcart/);
    await page.waitForFunction((n) => document.querySelectorAll('.trace-row').length === n, cartOnly.length);
    const ids = await page.$$eval('.trace-row', (els) => els.map((e) => e.getAttribute('data-trace-id')));
    assert.deepEqual(new Set(ids), new Set(cartOnly));
    assert.equal(await page.locator('#scatter circle.dot').count(), cartOnly.length);

    // Errors only: every row is marked, and the count matches the stored error traces.
    await page.goto(`${server.url}/search?status=error&limit=100&lookback=24h`);
    const errorIds = [...traces].filter(([, s]) => s.some((x) => x.status === 'error')).map(([id]) => id);
    await page.waitForFunction((n) => document.querySelectorAll('.trace-row').length === n, errorIds.length);
    assert.equal(await page.locator('.trace-row.has-error').count(), errorIds.length);
    assert.equal(await page.locator('#scatter circle.dot.err').count(), errorIds.length);

    // Paging: 20 at a time, "Load more" continues with the API's cursor, the last page hides it.
    await page.goto(`${server.url}/search?lookback=24h&limit=20`);
    await page.waitForFunction(() => document.querySelectorAll('.trace-row').length === 20);
    await page.click('#load-more');
    await page.waitForFunction((n) => document.querySelectorAll('.trace-row').length === n, traces.size);
    assert.equal(await page.locator('#load-more').isHidden(), true);
    const listed = await page.$$eval('.trace-row', (els) => els.map((e) => e.getAttribute('data-trace-id')));
    assert.deepEqual(new Set(listed), new Set(traces.keys()));

    // A malformed duration is named, and nothing is searched.
    await page.fill('#search-form input[name=minDuration]', 'fast');
    await page.click('#search-form button[type=submit]');
    assert.match(await page.locator('.form-error').innerText(), /Min duration "fast" is not a duration/);
    assert.deepEqual(pageErrors(page), []);
    await page.close();
  });

  test('trace view: a click on a result opens the waterfall with the right nesting and marks', async () => {
    const page = await open(`/search?lookback=24h&limit=100`);
    await page.click(`.trace-row[data-trace-id="${lateTraceId}"] a`);
    await page.waitForURL(new RegExp(`/trace/${lateTraceId}$`));
    await page.waitForSelector('.wf-row');
    const spans = traces.get(lateTraceId)!;
    const rows = await page.$$eval('.wf-row', (els) => els.map((e) => ({
      id: e.getAttribute('data-span-id')!, depth: Number(e.getAttribute('data-depth')),
      client: !!e.querySelector('.kb.client'), server: !!e.querySelector('.kb.server'),
      late: !!e.querySelector('.kb.late'), unlinked: !!e.querySelector('.kb.unlinked'),
      critical: e.classList.contains('on-cp'),
    })));
    assert.equal(rows.length, spans.length);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const depth = (s: LinkedSpan): number => (s.parentId ? 1 + depth(byId.get(s.parentId)!) : 0);
    for (const [i, r] of rows.entries()) {
      const s = byId.get(r.id)!;
      assert.equal(r.depth, depth(s), `depth of ${s.service} ${s.resource}`);
      assert.equal(r.client, s.kind === 'exit');
      assert.equal(r.server, s.kind === 'entry');
      assert.equal(r.late, s.late);
      assert.equal(r.unlinked, false);
      // Depth-first: a row's parent is above it.
      if (s.parentId) assert.ok(rows.findIndex((x) => x.id === s.parentId) < i);
    }
    assert.equal(rows.filter((r) => r.late).length, 1);
    assert.ok(rows[0].critical, 'the root is on the critical path');
    assert.ok(rows.some((r) => !r.critical), 'parallel calls off the critical path are not marked');
    await page.screenshot({ path: join(SHOTS, 'trace.png') });
    assert.deepEqual(pageErrors(page), []);
    await page.close();
  });

  test('span detail: a click on a span shows its eBPF attributes, grouped', async () => {
    const spans = traces.get(lateTraceId)!;
    const pay = spans.find((s) => s.service === 'payments' && s.kind === 'entry')!;
    const page = await open(`/trace/${lateTraceId}`);
    await page.click(`.wf-row[data-span-id="${pay.spanId}"] .res`);
    await page.waitForSelector('.detail [data-field=pid]');
    const field = (f: string) => page.locator(`.detail tr[data-field="${f}"] td`).innerText();
    assert.equal(await field('pid'), String(pay.pid));
    assert.equal(await field('tid'), String(pay.tid));
    assert.equal(await field('threadGroup'), pay.threadGroup);
    assert.equal(await field('reqSeq'), String(pay.reqSeq));
    assert.equal(await field('respSeq'), String(pay.respSeq));
    assert.equal(await field('host'), pay.host);
    assert.equal(await field('src'), `${pay.srcIp}:${pay.srcPort}`);
    assert.equal(await field('dst'), `${pay.dstIp}:${pay.dstPort}`);
    assert.equal(await field('httpStatusCode'), String(pay.httpStatusCode));
    assert.equal(await field('attr.bytes_read'), String(pay.attrs.bytes_read));
    assert.equal(await page.locator('.detail [data-group="eBPF"] tr[data-field="attr.bytes_read"]').count(), 1);
    assert.equal(await page.locator('.detail [data-group="Attributes"] tr[data-field="attr.container"] td').innerText(), 'shop-payments');
    assert.deepEqual(await page.$$eval('.detail .attr-group h4', (h) => h.map((x) => x.textContent)),
      ['Span', 'HTTP', 'eBPF', 'Attributes', 'Children (1)']);
    assert.match(page.url(), new RegExp(`\\?span=${pay.spanId}$`));
    // The late ledger span says why it is marked.
    const late = spans.find((s) => s.late)!;
    await page.click(`.wf-row[data-span-id="${late.spanId}"] .res`);
    await page.waitForSelector('.detail .flags');
    assert.match(await page.locator('.detail .flags').innerText(), /Late: arrived after its trace had been emitted/);
    await page.close();
  });

  test('deep link: /trace/<id>?span=<id> opens the trace and the span directly, app trace id shown', async () => {
    const spans = traces.get(APP_TRACE_ID)!;
    const ledger = spans.find((s) => s.service === 'ledger')!;
    const page = await open(`/trace/${APP_TRACE_ID}?span=${ledger.spanId}`);
    await page.waitForSelector(`.wf-row.selected[data-span-id="${ledger.spanId}"]`);
    assert.equal(await page.locator('.detail tr[data-field=appTraceId] td').innerText(), APP_TRACE_ID);
    assert.equal(await page.locator('.detail tr[data-field=ebpfTraceId] td').innerText(), ledger.ebpfTraceId);
    assert.match(await page.locator('.trace-head').innerText(), new RegExp(`App trace id\\s+${APP_TRACE_ID}`));
    await page.screenshot({ path: join(SHOTS, 'span-detail.png') });
    // The box in the top bar opens a trace by id.
    await page.goto(server.url + '/map');
    await page.fill('#lookup input', lateTraceId.toUpperCase());
    await page.press('#lookup input', 'Enter');
    await page.waitForURL(new RegExp(`/trace/${lateTraceId}$`));
    await page.waitForSelector('.wf-row');
    // An unknown id says so.
    await page.goto(`${server.url}/trace/00000000000000000000000000000bad`);
    await page.waitForSelector('.error-box');
    assert.match(await page.locator('.error-box').innerText(), /SEQ_ERR_NOT_FOUND/);
    await page.close();
  });

  test('unlinked: a client call with no server side is marked, with the reason', async () => {
    const spans = traces.get(externalTraceId)!;
    const geo = spans.find((s) => s.resource === 'GET /geo')!;
    const page = await open(`/trace/${externalTraceId}?span=${geo.spanId}`);
    await page.waitForSelector(`.wf-row[data-span-id="${geo.spanId}"] .kb.unlinked`);
    assert.equal(await page.locator('.wf-row .kb.unlinked').count(), 1);
    assert.match(await page.locator('.detail .flags').innerText(), /client span without a server side \(geo\.example\.net not traced/);
    await page.close();
  });

  test('service map: every edge drawn, labelled with rate, error rate, p50 and p99', async () => {
    const page = await open('/map?lookback=24h');
    await page.waitForSelector('.service-map .edge-label');
    const edges = await server.store.dependencies(nowUs - 24 * 3600e6, Date.now() * 1000);
    assert.ok(edges.length >= 5);
    assert.equal(await page.locator('.service-map .edge').count(), edges.length);
    assert.equal(await page.locator('.service-map .node').count(), new Set(edges.flatMap((e) => [e.parent, e.child])).size);
    const pay = edges.find((e) => e.parent === 'frontend' && e.child === 'payments')!;
    const label = await page.locator('.service-map .edge-label[data-edge="frontend→payments"]').textContent();
    const fmt = (us: number) => page.evaluate(async (v) => (await import('/ui/format.js' as string)).fmtDuration(v) as string, us);
    assert.match(label ?? '', /\/(h|min|s) · \d/);
    assert.ok(label?.includes(`p50 ${await fmt(pay.p50Us)} · p99 ${await fmt(pay.p99Us)}`), label ?? '');
    const row = await page.locator('.edge-table tr[data-edge="frontend→payments"]').innerText();
    const cells = row.split('\t').map((c) => c.trim());
    assert.equal(cells[2], String(pay.callCount));
    assert.equal(cells[4], String(pay.errorCount));
    assert.ok(pay.errorCount > 0, 'payments errors appear on the frontend→payments edge');
    // A call to a peer nobody traces has a node of its own, dashed, named by the Host it was called by.
    assert.ok(edges.some((e) => e.peer && e.parent === 'frontend' && e.child === 'geo.example.net'), JSON.stringify(edges));
    assert.equal(await page.locator('.service-map .node.peer[data-peer="geo.example.net"]').count(), 1);
    assert.match(await page.locator('.edge-table tr[data-edge="frontend→geo.example.net"]').innerText(), /geo\.example\.net\s+not traced/);
    // One call in the day: a rate per day (it read 0.0/h).
    assert.match((await page.locator('.service-map .edge-label[data-edge="frontend→geo.example.net"]').textContent()) ?? '', /^\s*1\.0\/day · /);
    await page.screenshot({ path: join(SHOTS, 'service-map.png') });
    // A node leads to the search for its service.
    await page.click('.service-map .node[data-service="ledger"]');
    await page.waitForURL(/\/search\?service=ledger/);
    assert.deepEqual(pageErrors(page), []);
    await page.close();
  });

  test('service map: a call that skips a column arcs above the nodes; no label covers a node or another label', async () => {
    // Three days back, out of every other test's time range: frontend → ledger skips the
    // column of cart, inventory and payments (its label sat on inventory's box).
    const startUs = nowUs - 72 * 3600e6;
    await server.post(checkoutTrace({ startUs, seed: 777, audit: true }).map(toEbpf));
    await storedTraces(1, { service: 'frontend', startUs: startUs - 1, endUs: startUs + 60e6 });
    const page = await open(`/map?lookback=custom&start=${startUs - 60e6}&end=${startUs + 60e6}`);
    await page.waitForSelector('.service-map .edge-label[data-edge="frontend→ledger"]');
    const boxes = await page.$$eval('.service-map .node > rect:first-child, .service-map .edge-label > rect', (els) => els.map((e) => {
      const r = e.getBoundingClientRect();
      return { what: (e.parentElement!.getAttribute('data-service') ?? e.parentElement!.getAttribute('data-edge'))!, x: r.x, y: r.y, w: r.width, h: r.height };
    }));
    assert.equal(boxes.length, 5 + 5, 'five services, five calls');
    const svg = (await page.locator('.service-map').boundingBox())!;
    for (const [i, a] of boxes.entries()) {
      assert.ok(a.y >= svg.y && a.y + a.h <= svg.y + svg.height, `${a.what} inside the map`);
      for (const b of boxes.slice(i + 1)) {
        const apart = a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
        assert.ok(apart, `${a.what} and ${b.what} overlap`);
      }
    }
    assert.deepEqual(pageErrors(page), []);
    await page.close();
  });

  test('live: a trace stored while the search is open appears without a reload', async () => {
    const page = await open('/search?service=frontend');
    await page.waitForSelector('.trace-row');
    const before = await page.locator('.trace-row').count();
    const startUs = Date.now() * 1000;
    await server.post(checkoutTrace({ startUs, seed: 4242, error: true }).map(toEbpf));
    const [{ traceId: id }] = await storedTraces(1, { service: 'frontend', startUs });
    await page.waitForSelector(`.trace-row[data-trace-id="${id}"].new`, { timeout: 10_000 });
    assert.equal(await page.locator('.trace-row').count(), before + 1);
    // Newest first: it is at the top.
    assert.equal(await page.locator('.trace-row').first().getAttribute('data-trace-id'), id);
    await page.close();
  });

  test('big trace: the waterfall keeps few rows in the DOM and scrolls to the last span', async () => {
    const spans = traces.get(bigTraceId)!;
    assert.ok(spans.length > 1000);
    const page = await open(`/trace/${bigTraceId}`);
    await page.waitForSelector('.wf-row');
    const inDom = await page.locator('.wf-row').count();
    assert.ok(inDom < 100, `${inDom} rows in the DOM for ${spans.length} spans`);
    // A click at the bottom of the overview scrolls the waterfall to its last rows.
    const box = (await page.locator('.minimap').boundingBox())!;
    await page.mouse.click(box.x + box.width / 2, box.y + box.height - 2);
    const lastDepthFirst = await page.evaluate(async (all) => {
      const m = await import('/ui/tracemodel.js' as string);
      const model = m.buildTrace(all);
      return model.nodes[model.nodes.length - 1].id as string;
    }, spans);
    await page.waitForSelector(`.wf-row[data-span-id="${lastDepthFirst}"]`);
    // Collapsing the root leaves one row.
    await page.locator('.wf-scroll').evaluate((el) => { el.scrollTop = 0; });
    await page.click(`.wf-row[data-span-id="${spans[0].spanId}"] .tog`);
    await page.waitForFunction(() => document.querySelectorAll('.wf-row').length === 1);
    await page.close();
  });

  test('rules: critical path (the child finishing last holds up its parent), unlinked spans, map layers', async () => {
    const page = await open('/');
    const cp = await page.evaluate(async () => {
      const m = await import('/ui/tracemodel.js' as string);
      const base = { kind: 'entry', service: 's', status: 'ok', late: false };
      const model = m.buildTrace([
        { ...base, spanId: 'r', parentId: '', startUs: 0, durationUs: 100 },
        { ...base, spanId: 'a', parentId: 'r', startUs: 10, durationUs: 30 },
        { ...base, spanId: 'b', parentId: 'r', startUs: 30, durationUs: 60 },
        { ...base, spanId: 'c', parentId: 'r', startUs: 45, durationUs: 10 },
        { ...base, spanId: 'o', parentId: 'zz', startUs: 50, durationUs: 5 },
      ]);
      return {
        cp: Object.fromEntries(model.critical),
        unlinked: model.nodes.filter((n: { flags: string[] }) => n.flags.length).map((n: { id: string }) => n.id),
      };
    });
    assert.deepEqual(cp.cp, { r: [[0, 30], [90, 100]], b: [[30, 90]] });
    assert.deepEqual(cp.unlinked, ['o']);
    // Service map layout: callers left of callees by longest path; a cycle does not loop.
    const layers = await page.evaluate(async () => {
      const m = await import('/ui/maplayout.js' as string);
      const dag = m.layoutGraph(['cart', 'frontend', 'ledger'], [
        { parent: 'frontend', child: 'cart' }, { parent: 'cart', child: 'ledger' }, { parent: 'frontend', child: 'ledger' }]);
      const cycle = m.layoutGraph(['a', 'b', 'c'], [{ parent: 'a', child: 'b' }, { parent: 'b', child: 'c' }, { parent: 'c', child: 'a' }]);
      return [dag, cycle].map((g: Map<string, { layer: number }>) => [...g].map(([k, v]) => [k, v.layer]));
    });
    assert.deepEqual(Object.fromEntries(layers[0]), { frontend: 0, cart: 1, ledger: 2 });
    assert.deepEqual(Object.fromEntries(layers[1]), { a: 0, b: 1, c: 2 });
    await page.close();
  });

  test('nothing stored yet: the search says why (spans waiting for the window, traces sampled out)', async () => {
    // A long window: the spans wait. A tiny sampling rate and a short window: the trace is dropped.
    const waiting = await startLinkerUi({ ENV_INPUT_EBPFTRACE_WINDOW: '60s' });
    const sampled = await startLinkerUi({ ENV_INPUT_EBPFTRACE_SAMPLING_RATE: '0.000001', ENV_INPUT_EBPFTRACE_KEEP_ERROR_TRACES: 'false' });
    const page = await browser.context.newPage();
    try {
      const spans = checkoutTrace({ startUs: Date.now() * 1000, seed: 91, items: 2 }).map(toEbpf);
      await waiting.post(spans);
      await page.goto(waiting.url + '/');
      await page.waitForSelector('.empty .empty-why');
      assert.equal(await page.locator('.empty-why').innerText(),
        `${spans.length} spans received, waiting for the link window: a trace is stored once no span has joined it for 1m 0s.`);

      await sampled.post(spans);
      const deadline = Date.now() + 10_000;
      while ((await (await fetch(`${sampled.url}/api/status`)).json()).spans.sampledOut < spans.length) {
        assert.ok(Date.now() < deadline, 'the trace was not sampled out');
        await new Promise((r) => setTimeout(r, 100));
      }
      await page.goto(sampled.url + '/');
      await page.waitForSelector('.empty .empty-why');
      assert.equal(await page.locator('.empty-why').innerText(),
        `${spans.length} spans dropped by sampling: the linker keeps 0.0001 % of traces (sampling_rate = 0.000001).`);
    } finally {
      await page.close();
      await waiting.close();
      await sampled.close();
    }
  });

  test('query token: the UI asks for it once, then the API answers', async () => {
    const guarded = await startLinkerUi({ ENV_INPUT_EBPFTRACE_QUERY_TOKEN: 's3cret-token' });
    const page = await browser.context.newPage();
    try {
      await guarded.post(cartOnlyTrace(Date.now() * 1000, 77).map(toEbpf));
      await page.goto(guarded.url + '/');
      await page.waitForSelector('.token-form');
      await page.fill('.token-form input', 'wrong');
      await page.click('.token-form button');
      await page.waitForSelector('.token-form');
      await page.fill('.token-form input', 's3cret-token');
      await page.click('.token-form button');
      await page.waitForSelector('.trace-row', { timeout: 10_000 });
      // Kept in this browser: a new page needs no prompt.
      const again = await browser.context.newPage();
      await again.goto(guarded.url + '/map');
      await again.waitForSelector('.map-box .empty, .service-map');
      assert.equal(await again.locator('.token-form').count(), 0);
      await again.close();
    } finally {
      await page.evaluate(() => localStorage.clear()).catch(() => undefined);
      await page.close();
      await guarded.close();
    }
  });
});
