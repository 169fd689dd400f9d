// One of the agent's hot functions alone, for A/Bs of changes too small for
// bench/agent-replay.ts to tell apart (its rounds spread by ±3 %; one span line is ≈ 300 ns
// and one exchange's parsing ≈ 500 ns of a request's ≈ 4–10 µs). Each tree runs in its own
// node process, the trees alternated.
//
//   node --import tsx bench/agent-micro.ts SUBJECT [n=2000000] [rounds=5] DIR...
//   SUBJECT: encode (writeSpanLine, the replay's span), parse-wrk (a request and its answer
//   through two parsers: wrk's GET and Go's 6-byte answer), parse-rich (a request with a
//   traceparent and seven headers, a 512-byte JSON answer)
//   DIR: compiled trees (`npx tsc -p . --outDir bench/build/js-X --sourceMap false`); none: src/
//
// Prints ns per span or per exchange for each run, then each tree's median.
import { execFileSync } from 'node:child_process';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EbpfSpan } from '../src/span/span.js';
import { RICH, WRK } from './exchanges.js';

const here = dirname(fileURLToPath(import.meta.url));
const SUBJECTS: Record<string, string> = { encode: 'agent/encode', 'parse-wrk': 'agent/http/parser', 'parse-rich': 'agent/http/parser' };

if (process.argv[2] === '--one') {
  const [, , , subject, module, n] = process.argv;
  const step = subject === 'encode' ? await encoder(module) : await parser(module, subject === 'parse-wrk');
  for (let i = 0; i < 200_000; i++) step(i); // warm-up: optimised before the clock starts
  const count = Number(n);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) step(i);
  console.log((Number(process.hrtime.bigint() - t0) / count).toFixed(1));
} else {
  const subject = process.argv[2];
  if (!(subject in SUBJECTS)) throw new Error(`bench/agent-micro.ts: subject must be one of ${Object.keys(SUBJECTS).join(', ')}, not ${subject}`);
  const n = Number(process.argv[3] ?? 2_000_000);
  const rounds = Number(process.argv[4] ?? 5);
  const trees = process.argv.slice(5);
  const ext = trees.length ? '.js' : '.ts';
  const modules = (trees.length ? trees.map((d) => resolve(d)) : [join(here, '../src')]).map((d) => join(d, SUBJECTS[subject] + ext));
  const names = trees.length ? trees : ['src'];
  const got: number[][] = names.map(() => []);
  const unit = subject === 'encode' ? 'span' : 'exchange';
  for (let r = 0; r < rounds; r++) {
    modules.forEach((m, k) => {
      const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--one', subject, m, String(n)], { encoding: 'utf8' });
      got[k].push(Number(out.trim()));
      console.log(`round ${r + 1} ${names[k]}: ${out.trim()} ns per ${unit}`);
    });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  names.forEach((nm, k) => console.log(`median ${nm}: ${median(got[k]).toFixed(1)} ns per ${unit} over ${rounds} rounds`));
}

async function encoder(module: string): Promise<(i: number) => void> {
  const { writeSpanLine } = (await import(module)) as typeof import('../src/agent/encode.js');
  // The replay's span: an entry of a server on a keep-alive connection (the middle run of
  // service, addresses and resource is the one remembered from the span before).
  const s: EbpfSpan = {
    host: 'web-1', kind: 'entry', reqSeq: 3735928559, respSeq: 16909060, threadGroup: '8812345678901234567', pid: 4242, tid: 4243,
    startUs: 1732500000000000, durationUs: 1500, service: 'users', processName: 'python3', srcIp: '10.0.0.2', srcPort: 8080,
    dstIp: '10.0.0.1', dstPort: 51234, resource: 'GET /users/7', operation: 'HTTP', status: 'ok', httpMethod: 'GET',
    httpRoute: '/users/7', httpStatusCode: 200, appTraceId: '', appParentId: '', appSampled: 0, attrs: {},
  };
  const buf = Buffer.alloc(1 << 20);
  let at = 0;
  return (i) => {
    s.startUs++;
    s.reqSeq = (s.reqSeq + 77) >>> 0;
    s.durationUs = i & 4095;
    at = writeSpanLine(buf, at, s);
    if (at > buf.length - 2000) at = 0;
  };
}

async function parser(module: string, wrk: boolean): Promise<(i: number) => void> {
  const { createParser } = (await import(module)) as typeof import('../src/agent/http/parser.js');
  const { req, resp } = wrk ? WRK : RICH;
  let ends = 0;
  // 0: BODY_FRAMED, and `false` to builds from before 2026-12-07, whose onHead returned a boolean
  const sink = { onHead: () => 0 as const, onEnd: () => { ends++; } };
  const reqParser = createParser(true, sink);
  const respParser = createParser(false, sink);
  const none = Buffer.alloc(0);
  let seq = 1;
  const exchange = (i: number) => {
    reqParser.feed({ seq, len: req.length, head: req, tail: none, tsNs: i });
    respParser.feed({ seq, len: resp.length, head: resp, tail: none, tsNs: i });
    seq = (seq + 1000) >>> 0;
  };
  exchange(0);
  if (ends !== 2) throw new Error('bench/agent-micro.ts: the parser did not end both messages');
  return exchange;
}
