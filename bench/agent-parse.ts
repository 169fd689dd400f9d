// Agent user-space cost per traced HTTP request: synthetic capture events through the
// connection table, the HTTP parser, thread groups, trace context and span assembly
// (and, in the second figure, the line-protocol encoding the sender does per span).
//
//   node --import tsx bench/agent-parse.ts [requests] [only: 1 | 2 | 3]
import { createConnTable } from '../src/agent/conn.js';
import { createThreadGroups } from '../src/agent/threadgroup.js';
import { createClock } from '../src/agent/clock.js';
import { encodeSpans } from '../src/span/lineprotocol.js';
import { encodeSpanLine } from '../src/agent/encode.js';
import type { DataEvent } from '../src/agent/capture/event.js';
import type { EbpfSpan } from '../src/span/span.js';

const N = Number(process.argv[2] ?? 300_000);
const CONNS = 200;

const REQ = Buffer.from(
  'GET /api/users/12345?expand=orders HTTP/1.1\r\nHost: users.internal:8080\r\nUser-Agent: python-requests/2.31\r\n' +
  'Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n' +
  'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n',
  'latin1',
);
const RESP = Buffer.from(
  'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 512\r\nDate: Wed, 25 Nov 2026 04:00:00 GMT\r\nServer: gunicorn\r\n\r\n' +
  '{"id":12345,"name":"x"' + ' '.repeat(512 - 23) + '}',
  'latin1',
);
const EMPTY = Buffer.alloc(0);

function event(sock: number, dir: 'send' | 'recv', data: Buffer, tid: number): DataEvent {
  return {
    kind: 'data', tsNs: 0n, sockId: BigInt(sock), pid: 4242, tid, goid: 0n, dir, seq: 0, len: data.length,
    head: data, tail: EMPTY, family: 4, srcIp: '10.0.0.1', srcPort: 8080, dstIp: '10.0.0.2', dstPort: 40000 + sock,
    noPayload: false, truncated: false,
  };
}

function run(label: string, onSpan: (s: EbpfSpan) => void): void {
  const conns = createConnTable({
    host: 'bench-host', convToDdtrace: false, groups: createThreadGroups(), clock: createClock(),
    procs: { service: () => 'users', processName: () => 'python3', threadName: () => 'worker' },
    onSpan,
  });
  // Half the connections are served (entry spans), half are calls out (exit spans).
  const evs: [DataEvent, DataEvent][] = [];
  for (let i = 0; i < CONNS; i++) {
    const server = i % 2 === 0;
    evs.push([event(i, server ? 'recv' : 'send', REQ, 100 + (i % 8)), event(i, server ? 'send' : 'recv', RESP, 100 + (i % 8))]);
  }
  let seq = 1;
  let ts = process.hrtime.bigint();
  const one = (i: number) => {
    const [req, resp] = evs[i % CONNS];
    req.seq = seq; req.tsNs = ts;
    seq = (seq + REQ.length) >>> 0; ts += 50_000n;
    conns.onData(req);
    resp.seq = seq; resp.tsNs = ts;
    seq = (seq + RESP.length) >>> 0; ts += 10_000n;
    conns.onData(resp);
  };
  for (let i = 0; i < 20_000; i++) one(i); // warm up the JIT
  // The machine is shared: several rounds, the best and the median are reported.
  const ROUNDS = 5;
  const per = Math.ceil(N / ROUNDS);
  const cpuUs: number[] = [];
  const wallUs: number[] = [];
  const before = conns.stats.spans;
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < per; i++) one(i);
    const cpu = process.cpuUsage(cpu0);
    wallUs.push(Number(process.hrtime.bigint() - t0) / 1000 / per);
    cpuUs.push((cpu.user + cpu.system) / per);
  }
  const spans = conns.stats.spans - before;
  if (spans !== per * ROUNDS) throw new Error(`expected ${per * ROUNDS} spans, made ${spans}`);
  const best = (a: number[]) => Math.min(...a).toFixed(2);
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1].toFixed(2);
  console.log(`${label}: CPU per request best ${best(cpuUs)} µs, median ${median(cpuUs)} µs; wall best ${best(wallUs)} µs (${per * ROUNDS} requests over ${CONNS} connections)`);
}

// Each configuration in a fresh process would be fairer still; in one process the later ones
// inherit the earlier ones' heap. `only` picks one: 1 parse, 2 agent encoder, 3 shared encoder.
const only = Number(process.argv[3] ?? 0);
let sink = 0;
if (!only || only === 1) run('parse + assemble', (s) => { sink += s.durationUs; });
if (!only || only === 2) run('parse + assemble + encode (agent encoder, what the sender does)', (s) => { sink += encodeSpanLine(s).length; });
if (!only || only === 3) run('parse + assemble + encode (shared encodeSpans, for comparison)', (s) => { sink += encodeSpans([s]).length; });
if (sink < 0) console.log(sink);
