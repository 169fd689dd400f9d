// UI speed with a full store: 100,000 traces (≈1.3 M spans) and one trace of 1,001 spans,
// measured in the real browser (headless Chromium). Run:
//   node --import tsx bench/ui.ts [--traces 100000] [--big-calls 500] [--runs 5]
// Prints the figures recorded in docs/ui.md.
import { parseArgs } from 'node:util';
import { launchBrowser, startStoreUi } from '../src/ui/harness.js';
import { bigTrace, cartOnlyTrace, checkoutTrace } from '../src/ui/sample-traces.js';
import type { LinkedSpan } from '../src/span/span.js';

const { values } = parseArgs({
  options: {
    traces: { type: 'string', default: '100000' },
    'big-calls': { type: 'string', default: '500' },
    runs: { type: 'string', default: '5' },
  },
});
const N = Number(values.traces), CALLS = Number(values['big-calls']), RUNS = Number(values.runs);

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x: number) => `${x.toFixed(0)} ms`;

const server = await startStoreUi();
const browser = await launchBrowser({ width: 1400, height: 900 });
try {
  // Fill: one trace every ~0.86 s over the last 24 h, newest first in time.
  const nowUs = Date.now() * 1000;
  const stepUs = Math.floor((24 * 3600e6) / N);
  const t0 = performance.now();
  let spans = 0;
  let batch: LinkedSpan[] = [];
  for (let i = 0; i < N; i++) {
    const startUs = nowUs - 60e6 - i * stepUs;
    const t = i % 10 === 9 ? cartOnlyTrace(startUs, i + 1)
      : checkoutTrace({ startUs, seed: i + 1, error: i % 23 === 5, external: i % 17 === 3, items: 1 + (i % 4) });
    batch.push(...t);
    if (batch.length >= 20_000) { server.store.commit(batch, []); spans += batch.length; batch = []; }
  }
  const big = bigTrace(nowUs - 30e6, CALLS);
  batch.push(...big);
  server.store.commit(batch, []);
  spans += batch.length;
  const fillS = (performance.now() - t0) / 1000;
  console.log(`filled ${N + 1} traces, ${spans} spans in ${fillS.toFixed(1)} s (${Math.round(spans / fillS)} spans/s)`);

  const page = await browser.context.newPage();
  const rows: [string, string][] = [];

  async function timed(what: string, url: string, selector: string, count?: number) {
    const xs: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t = performance.now();
      await page.goto(server.url + url);
      if (count) await page.waitForFunction(([sel, n]) => document.querySelectorAll(sel as string).length >= (n as number), [selector, count], { timeout: 60_000 });
      else await page.waitForSelector(selector, { timeout: 60_000 });
      xs.push(performance.now() - t);
    }
    rows.push([what, `${ms(median(xs))} (min ${ms(Math.min(...xs))}, max ${ms(Math.max(...xs))})`]);
  }

  await timed('search page, last 1 h, 20 results: load → list shown', '/search', '.trace-row', 20);
  await timed('search, last 24 h, limit 1000: load → 1000 rows + scatter', '/search?lookback=24h&limit=1000', '.trace-row', 1000);
  await timed('search service=payments status=error, 24 h, 20 results', '/search?service=payments&status=error&lookback=24h', '.trace-row', 20);
  await timed('search minDuration=15ms, 24 h, 20 results', '/search?minDuration=15ms&lookback=24h', '.trace-row', 20);
  await timed('service map, last 1 h', '/map?lookback=1h', '.service-map .edge-label');
  await timed(`service map, last 24 h (${(spans / 1e6).toFixed(1)} M spans in range)`, '/map?lookback=24h', '.service-map .edge-label');
  const bigId = big[0].traceId;
  await timed(`trace of ${big.length} spans: load → waterfall drawn`, `/trace/${bigId}`, '.wf-row');

  // Scroll the big waterfall top to bottom, half a screen per frame; frame times from rAF.
  await page.goto(`${server.url}/trace/${bigId}`);
  await page.waitForSelector('.wf-row');
  // A string, not a function: tsx's name-keeping helper does not exist in the page.
  const scroll = await page.evaluate(`(async () => {
    const el = document.querySelector('.wf-scroll');
    const frames = [];
    let maxRows = 0;
    await new Promise((done) => {
      let last = performance.now();
      function step() {
        const now = performance.now();
        frames.push(now - last);
        last = now;
        maxRows = Math.max(maxRows, document.querySelectorAll('.wf-row').length);
        if (el.scrollTop + el.clientHeight >= el.scrollHeight - 1) return done();
        el.scrollTop += el.clientHeight / 2;
        requestAnimationFrame(step);
      }
      requestAnimationFrame(step);
    });
    frames.shift();
    frames.sort((a, b) => a - b);
    return { frames: frames.length, p50: frames[Math.floor(frames.length / 2)], p95: frames[Math.floor(frames.length * 0.95)], max: frames[frames.length - 1], maxRows };
  })()`) as { frames: number; p50: number; p95: number; max: number; maxRows: number };
  rows.push([`scroll the ${big.length}-span waterfall top→bottom (${scroll.frames} frames)`,
    `frame p50 ${scroll.p50.toFixed(1)} ms, p95 ${scroll.p95.toFixed(1)} ms, max ${scroll.max.toFixed(1)} ms; ≤ ${scroll.maxRows} rows in the DOM`]);

  // Collapse/expand the root: the whole list re-laid out.
  const toggle: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    toggle.push(await page.evaluate(async () => {
      const t = performance.now();
      (document.querySelector('.wf-row .tog') as HTMLElement).click();
      (document.querySelector('.wf-row .tog') as HTMLElement).click();
      await new Promise((d) => requestAnimationFrame(() => d(null)));
      return performance.now() - t;
    }));
  }
  rows.push(['collapse + expand the root of the big trace', ms(median(toggle))]);

  // What a live poll costs the server: the query the search page repeats every 3 s.
  const poll: number[] = [];
  for (let r = 0; r < RUNS * 4; r++) {
    const t = performance.now();
    const res = await fetch(`${server.url}/api/traces?start=${Date.now() * 1000 - 300e6}&limit=100`);
    await res.json();
    poll.push(performance.now() - t);
  }
  rows.push(['live poll (/api/traces, last 5 min, limit 100), server round trip', ms(median(poll))]);

  console.log(`\n| measurement (median of ${RUNS}) | time |\n| --- | --- |`);
  for (const [a, b] of rows) console.log(`| ${a} | ${b} |`);
} finally {
  await browser.close();
  await server.close();
}
