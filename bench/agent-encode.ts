// The agent's span encoder alone (`writeSpanLine`), for A/Bs of encoder changes too small for
// bench/agent-replay.ts to tell apart (its rounds spread by ±3 %; one span line is ≈ 300 ns of
// a request's ≈ 4–10 µs). Each tree runs in its own node process, the trees alternated.
//
//   node --import tsx bench/agent-encode.ts [spans=2000000] [rounds=5] DIR...
//   DIR: compiled trees (`npx tsc -p . --outDir bench/build/js-X --sourceMap false`); none: src/
//
// Prints ns per span for each run, then each tree's median.
import { execFileSync } from 'node:child_process';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EbpfSpan } from '../src/span/span.js';

const here = dirname(fileURLToPath(import.meta.url));

if (process.argv[2] === '--one') {
  const [, , , module, n] = process.argv;
  const { writeSpanLine } = (await import(module)) as typeof import('../src/agent/encode.js');
  // The replay's span: an entry of a Go server on a keep-alive connection (the middle run of
  // service, addresses and resource is the one remembered from the span before).
  const s: EbpfSpan = {
    host: 'web-1', kind: 'entry', reqSeq: 3735928559, respSeq: 16909060, threadGroup: '8812345678901234567', pid: 4242, tid: 4243,
    startUs: 1732500000000000, durationUs: 1500, service: 'users', processName: 'python3', srcIp: '10.0.0.2', srcPort: 8080,
    dstIp: '10.0.0.1', dstPort: 51234, resource: 'GET /users/7', operation: 'HTTP', status: 'ok', httpMethod: 'GET',
    httpRoute: '/users/7', httpStatusCode: 200, appTraceId: '', appParentId: '', appSampled: 0, attrs: {},
  };
  const buf = Buffer.alloc(1 << 20);
  let at = 0;
  const write = (i: number) => {
    s.startUs++;
    s.reqSeq = (s.reqSeq + 77) >>> 0;
    s.durationUs = i & 4095;
    at = writeSpanLine(buf, at, s);
    if (at > buf.length - 2000) at = 0;
  };
  for (let i = 0; i < 200_000; i++) write(i); // warm-up: optimised before the clock starts
  const spans = Number(n);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < spans; i++) write(i);
  console.log((Number(process.hrtime.bigint() - t0) / spans).toFixed(1));
} else {
  const spans = Number(process.argv[2] ?? 2_000_000);
  const rounds = Number(process.argv[3] ?? 5);
  const trees = process.argv.slice(4);
  const modules = trees.length ? trees.map((d) => join(resolve(d), 'agent/encode.js')) : [join(here, '../src/agent/encode.ts')];
  const names = trees.length ? trees : ['src'];
  const got: number[][] = names.map(() => []);
  for (let r = 0; r < rounds; r++) {
    modules.forEach((m, k) => {
      const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--one', m, String(spans)], { encoding: 'utf8' });
      got[k].push(Number(out.trim()));
      console.log(`round ${r + 1} ${names[k]}: ${out.trim()} ns per span`);
    });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  names.forEach((nm, k) => console.log(`median ${nm}: ${median(got[k]).toFixed(1)} ns per span over ${rounds} rounds`));
}
