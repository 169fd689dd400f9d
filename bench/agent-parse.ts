// Agent user-space cost per traced HTTP request: synthetic capture events through the
// connection table, the HTTP parser, thread groups, trace context and span assembly
// (and, in the second figure, the line-protocol encoding the sender does per span).
// The fourth starts from the loader's bytes: frames decoded (capture/decode.ts), then the
// same path, then each line written into a batch buffer as the sender does (no gzip, no POST):
// the agent's main-thread work per request minus the pipe reads.
//
//   node --import tsx bench/agent-parse.ts [requests] [only: 1 | 2 | 3 | 4] [messages: rich | wrk]
// rich (default): a request with a traceparent and several headers, a 512-byte JSON answer;
// wrk: what bench/agent-overhead.sh produces (wrk's two-line GET, Go net/http's 6-byte answer).
import { createConnTable } from '../src/agent/conn.js';
import { createThreadGroups } from '../src/agent/threadgroup.js';
import { createClock } from '../src/agent/clock.js';
import { encodeSpans } from '../src/span/lineprotocol.js';
import { writeSpanLine } from '../src/agent/encode.js';
import type { CaptureEvent, DataEvent } from '../src/agent/capture/event.js';
import { LAYOUT, decodeFrame, frameReader } from '../src/agent/capture/decode.js';
import { dataEvent, dataFrame } from '../src/agent/capture/testkit.js';
import type { EbpfSpan } from '../src/span/span.js';
import { RICH as RICH_EXCHANGE, WRK as WRK_EXCHANGE } from './exchanges.js';

const N = Number(process.argv[2] ?? 300_000);
const CONNS = 200;

const WRK = process.argv[4] === 'wrk';
const { req: REQ, resp: RESP } = WRK ? WRK_EXCHANGE : RICH_EXCHANGE;

function event(sock: number, dir: 'send' | 'recv', data: Buffer, tid: number): DataEvent {
  return dataEvent({ sockId: sock, pid: 4242, tid, dir, head: data, dstPort: 40000 + sock });
}

/** A u64 written as the loader writes it (a time in ns, below 2^53). */
function u64To(b: Buffer, v: number, at: number): void {
  b.writeUInt32LE(v % 4294967296, at);
  b.writeUInt32LE(Math.floor(v / 4294967296), at + 4);
}

/** The loader's frame for one data event (at most 512 bytes of head). */
function frame(ev: DataEvent): Buffer {
  return dataFrame({ ...ev, head: ev.head.subarray(0, 512), srcAddr: [10, 0, 0, 1], dstAddr: [10, 0, 0, 2] }, true);
}

function run(label: string, onSpan: (s: EbpfSpan) => void, fromFrames = false): void {
  const conns = createConnTable({
    host: 'bench-host', convToDdtrace: false, groups: createThreadGroups(), clock: createClock(),
    procs: { service: () => 'users', processName: () => 'python3', threadName: () => 'worker', threadLinks: () => true },
    onSpan,
  });
  // Half the connections are served (entry spans), half are calls out (exit spans).
  const evs: [DataEvent, DataEvent][] = [];
  for (let i = 0; i < CONNS; i++) {
    const server = i % 2 === 0;
    evs.push([event(i, server ? 'recv' : 'send', REQ, 100 + (i % 8)), event(i, server ? 'send' : 'recv', RESP, 100 + (i % 8))]);
  }
  let seq = 1;
  let ts = Number(process.hrtime.bigint());
  // From frames: 64 requests' frames per chunk, as a drain of the ring buffer arrives in one pipe read.
  const PER_CHUNK = 64;
  const frames = evs.map(([q, r]) => [frame(q), frame(r)]);
  const chunk = Buffer.alloc(PER_CHUNK * (frames[0][0].length + frames[0][1].length) * 2);
  let batch: CaptureEvent[] = [];
  const read = frameReader((b, at, size) => { batch.push(decodeFrame(b, at, size) as CaptureEvent); });
  const D = LAYOUT.data;
  const viaFrames = (i: number) => {
    let off = 0;
    for (let k = 0; k < PER_CHUNK; k++) {
      const [qf, rf] = frames[(i + k) % CONNS];
      qf.writeUInt32LE(seq, 4 + D.seq); u64To(qf, ts, 4 + D.ts_ns);
      seq = (seq + REQ.length) >>> 0; ts += 50_000;
      off += qf.copy(chunk, off);
      rf.writeUInt32LE(seq, 4 + D.seq); u64To(rf, ts, 4 + D.ts_ns);
      seq = (seq + RESP.length) >>> 0; ts += 10_000;
      off += rf.copy(chunk, off);
    }
    read(chunk.subarray(0, off));
    const evsNow = batch;
    batch = [];
    for (const ev of evsNow) if (ev.kind === 'data') conns.onData(ev);
  };
  const one = fromFrames ? (i: number) => { if (i % PER_CHUNK === 0) viaFrames(i); } : (i: number) => {
    const [req, resp] = evs[i % CONNS];
    req.seq = seq; req.tsNs = ts;
    seq = (seq + REQ.length) >>> 0; ts += 50_000;
    conns.onData(req);
    resp.seq = seq; resp.tsNs = ts;
    seq = (seq + RESP.length) >>> 0; ts += 10_000;
    conns.onData(resp);
  };
  for (let i = 0; i < 20_000; i++) one(i); // warm up the JIT
  // The machine is shared: several rounds, the best and the median are reported.
  const ROUNDS = 5;
  const per = Math.ceil(N / ROUNDS / 64) * 64; // whole chunks of 64 requests (configuration 4)
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
// The sender's batch buffer (src/agent/sender.ts): each line written at once, off the JS heap.
const raw = Buffer.allocUnsafeSlow(1 << 20);
let len = 0;
const write = (s: EbpfSpan) => {
  let end = writeSpanLine(raw, len, s);
  if (end > raw.length) { sink += len; end = writeSpanLine(raw, 0, s); }
  len = end;
};
if (!only || only === 2) run('parse + assemble + encode (agent encoder into the batch buffer, what the sender does)', write);
if (!only || only === 3) run('parse + assemble + encode (shared encodeSpans, for comparison)', (s) => { sink += encodeSpans([s]).length; });
if (!only || only === 4) run('decode frames + parse + assemble + encode + write into the batch (the main thread per request, without pipe reads)', write, true);
if (sink < 0) console.log(sink);
