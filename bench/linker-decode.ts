// The ingest hot path without HTTP or storage: gunzip + line protocol → points → spans.
//   node --import tsx bench/linker-decode.ts [spans=200000]
// Prints µs per span for each step (best of 5 passes over the same gzip batches), then the
// scanner's rows (see the end of this file).
import { gunzipSync, gzipSync } from 'node:zlib';
import { buildTrace, rng, shopTree } from '../src/linker/fixtures.js';
import { decodeLineProtocol, encodeSpans } from '../src/span/lineprotocol.js';
import { decodeJsonPoints, encodeJsonPoints } from '../src/span/json.js';
import { spanToPoint, validatePoints } from '../src/span/validate.js';
import type { EbpfSpan } from '../src/span/span.js';
import { JoinBatch, joinRow } from '../src/linker/link/fields.js';
import { referenceScan, scanLineProtocol, scanStats } from '../src/linker/scan.js';

const total = Number(process.argv[2] ?? 200_000);
const r = rng(7);
const spans: EbpfSpan[] = [];
while (spans.length < total) spans.push(...buildTrace(shopTree(r), { startUs: 1732500000000000 + spans.length * 10, random: r }).spans);
const lp: string[] = [], js: string[] = [], gz: Buffer[] = [];
for (let i = 0; i < spans.length; i += 1000) {
  const part = spans.slice(i, i + 1000);
  lp.push(encodeSpans(part));
  js.push(encodeJsonPoints(part.map(spanToPoint)));
  gz.push(gzipSync(lp[lp.length - 1], { level: 1 }));
}
const opts = { maxFieldBytes: 8192 };

function best(name: string, fn: () => number): void {
  let min = Infinity;
  for (let pass = 0; pass < 5; pass++) {
    const t = performance.now();
    const n = fn();
    min = Math.min(min, ((performance.now() - t) * 1000) / n);
  }
  console.log(`${name.padEnd(34)} ${min.toFixed(2)} µs/span`);
}

best('gunzip + utf8', () => { let n = 0; for (const b of gz) n += gunzipSync(b).toString('utf8').length > 0 ? 1000 : 0; return n; });
best('line protocol decode', () => { let n = 0; for (const t of lp) n += decodeLineProtocol(t).points.length; return n; });
best('line protocol decode + validate', () => { let n = 0; for (const t of lp) n += validatePoints(decodeLineProtocol(t).points, opts).spans.length; return n; });
best('JSON decode + validate', () => { let n = 0; for (const t of js) n += validatePoints(decodeJsonPoints(t).points, opts).spans.length; return n; });
best('encodeSpans (agent side)', () => { let n = 0; for (let i = 0; i < spans.length; i += 1000) n += encodeSpans(spans.slice(i, i + 1000)).length > 0 ? Math.min(1000, spans.length - i) : 0; return n; });

// Ingest's scanner (src/linker/scan.ts) against its reference, on the same gzip batches
// inflated once: (a) gunzip alone, (b) the reference (decode + validate + joinFieldsOf, what
// ingest's decodeBody does for line protocol), (c) scanLineProtocol, (d) gunzip + scan.
// Alternated pass by pass (a, b, c, d, a, b, ...) so that all see the same machine; prints
// the median and the best of 7 passes.
const limits = { max_batch_spans: 50_000, max_field_bytes: 8192 };
const inflated = gz.map((b) => gunzipSync(b));
const batchA = new JoinBatch(), batchB = new JoinBatch();
scanLineProtocol(inflated[0], limits, batchA);
referenceScan(inflated[0], limits, batchB);
for (let i = 0; i < batchB.n; i++) if (JSON.stringify(joinRow(batchA, i)) !== JSON.stringify(joinRow(batchB, i))) throw new Error(`row ${i} differs`);
const fastBefore = scanStats.fast;
const rows: [string, () => number][] = [
  ['(a) gunzip alone', () => { let n = 0; for (const b of gz) n += gunzipSync(b).length > 0 ? 1000 : 0; return n; }],
  ['(b) reference + joinFieldsOf', () => { let n = 0; for (const b of inflated) { referenceScan(b, limits, batchB); n += batchB.n; } return n; }],
  ['(c) scanLineProtocol', () => { let n = 0; for (const b of inflated) { scanLineProtocol(b, limits, batchA); n += batchA.n; } return n; }],
  ['(d) gunzip + scanLineProtocol', () => { let n = 0; for (const b of gz) { scanLineProtocol(gunzipSync(b), limits, batchA); n += batchA.n; } return n; }],
];
const times: number[][] = rows.map(() => []);
for (let pass = 0; pass < 7; pass++) {
  rows.forEach(([, fn], k) => {
    const t = performance.now();
    const n = fn();
    times[k].push(((performance.now() - t) * 1000) / n);
  });
}
rows.forEach(([name], k) => {
  const s = times[k].slice().sort((x, y) => x - y);
  console.log(`${name.padEnd(34)} ${s[3].toFixed(2)} µs/span median, ${s[0].toFixed(2)} best`);
});
console.log(`scanner fast path: ${scanStats.fast - fastBefore} points, slow ${scanStats.slow}, whole bodies ${scanStats.whole}; ${(inflated.reduce((a, b) => a + b.length, 0) / spans.length).toFixed(0)} bytes a line`);
