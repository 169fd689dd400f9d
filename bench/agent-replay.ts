// The agent's own cost per traced request on a fixed, repeatable workload: the compiled agent
// (as bin/seqtrace runs it, all its threads: parsing, gzip, GC helpers, POSTs, timers, the /proc
// scan) fed by a stand-in for its eBPF loader that writes the frames the real loader would
// write for wrk against a Go server (bench/agent-overhead.sh's set-up: 32 keep-alive
// connections, wrk's two-line GET, Go's 6-byte answer) at a fixed rate, sending to
// bench/agent-sink.ts. No wrk, no servers, no eBPF: what varies between runs is only the
// machine's load, so an A/B of two builds or two sets of V8 flags needs far fewer rounds than
// with bench/agent-overhead.sh (which measures the same agent against real traffic).
//
//   node --import tsx bench/agent-replay.ts [rate=20000 req/s] [seconds=10] [rounds=3]
//   env AGENT_JS=DIR (a compiled tree, default: compiled from src/ now), AGENT_NODE_ARGS
//   (default: bin/seqtrace's AGENT_NODE_FLAGS), AGENT_MALLOC (default: bin/seqtrace's
//   AGENT_MALLOC_ENV; "" for glibc's defaults)
//
// Prints per round the agent's CPU (utime+stime of the whole process) ÷ requests, split into
// main thread and other threads, and its VmRSS/VmHWM; then the median.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LAYOUT } from '../src/agent/capture/decode.js';
import { dataFrame } from '../src/agent/capture/testkit.js';
import { WRK } from './exchanges.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

// ---------------------------------------------------------------------------------------------
// The stand-in loader: READY, an ACK per command line, then on `replay N RATE` (a line on its
// stdin from the driver, through the agent? no: through a FIFO named by REPLAY_CTL) N requests.
if (process.argv[2] === '--fake-loader') fakeLoader();
else await driver();

function fakeLoader(): void {
  const ctl = process.env.REPLAY_CTL!;
  const pid = Number(process.env.REPLAY_PID);
  const out = (b: Buffer) => process.stdout.write(b);
  const frameOf = (body: Buffer) => {
    const f = Buffer.alloc(4 + body.length);
    f.writeUInt32LE(body.length, 0);
    body.copy(f, 4);
    return f;
  };
  const ready = Buffer.alloc(LAYOUT.ready.size);
  ready[0] = LAYOUT.kinds.ready;
  ready[LAYOUT.ready.mode] = 1;
  ready.writeUInt16LE(256, LAYOUT.ready.capture_bytes);
  ready.writeUInt32LE(8 << 20, LAYOUT.ready.ringbuf_bytes);
  out(frameOf(ready));
  let lineBuf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (s: string) => {
    lineBuf += s;
    for (let nl = lineBuf.indexOf('\n'); nl >= 0; nl = lineBuf.indexOf('\n')) {
      const line = lineBuf.slice(0, nl);
      lineBuf = lineBuf.slice(nl + 1);
      const ack = Buffer.alloc(LAYOUT.ack.size);
      ack[0] = LAYOUT.kinds.ack;
      ack[LAYOUT.ack.ok] = 1;
      ack.writeUInt32LE(Number(line.split(' ')[1]) || 0, LAYOUT.ack.pid);
      out(frameOf(ack));
    }
  });
  process.stdin.on('end', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));

  const { req: REQ, resp: RESP } = WRK;
  const D = LAYOUT.data;
  const CONNS = 32;
  const mk = (conn: number, dir: 'send' | 'recv', data: Buffer): Buffer => dataFrame({
    dir, pid, tid: pid, sockId: 1_000_000 + conn, head: data,
    srcAddr: [127, 0, 0, 1], dstAddr: [127, 0, 0, 1], srcPort: 41235, dstPort: 50000 + conn,
  }, true);
  const frames = Array.from({ length: CONNS }, (_, c) => [mk(c, 'recv', REQ), mk(c, 'send', RESP)]);
  const recvSeq = new Array<number>(CONNS).fill(1000), sendSeq = new Array<number>(CONNS).fill(5000);
  let next = 0;
  // One drain every 10 ms, as the loader writes (DRAIN_MS); the real loader's drains carry
  // what the CPUs' batches held, here the requests due in that interval.
  const emit = (n: number) => {
    const chunk = Buffer.alloc(n * (frames[0][0].length + frames[0][1].length));
    let off = 0;
    let ts = process.hrtime.bigint() - 10_000_000n;
    for (let i = 0; i < n; i++) {
      const c = next++ % CONNS;
      const [q, r] = frames[c];
      q.writeUInt32LE(recvSeq[c], 4 + D.seq); q.writeBigUInt64LE(ts, 4 + D.ts_ns);
      recvSeq[c] = (recvSeq[c] + REQ.length) >>> 0;
      off += q.copy(chunk, off);
      ts += 20_000n;
      r.writeUInt32LE(sendSeq[c], 4 + D.seq); r.writeBigUInt64LE(ts, 4 + D.ts_ns);
      sendSeq[c] = (sendSeq[c] + RESP.length) >>> 0;
      off += r.copy(chunk, off);
      ts += 1_000n;
    }
    out(chunk);
  };
  // The driver writes "N RATE" into the control file; the loader streams them and answers "done N".
  let busy = false;
  setInterval(() => {
    if (busy || !existsSync(ctl)) return;
    const [n, rate] = readFileSync(ctl, 'utf8').trim().split(' ').map(Number);
    rmSync(ctl);
    busy = true;
    let sent = 0;
    const t0 = Date.now();
    const tick = setInterval(() => {
      const due = Math.min(n, Math.round(((Date.now() - t0) / 1000) * rate));
      if (due > sent) { emit(due - sent); sent = due; }
      if (sent >= n) { clearInterval(tick); busy = false; writeFileSync(ctl + '.done', String(n)); }
    }, 10);
  }, 20);
}

// ---------------------------------------------------------------------------------------------
async function driver(): Promise<void> {
  const rate = Number(process.argv[2] ?? 20000);
  const secs = Number(process.argv[3] ?? 10);
  const rounds = Number(process.argv[4] ?? 3);
  const tmp = mkdtempSync(join(tmpdir(), 'seqtrace-agent-replay.'));
  const kids: ChildProcess[] = [];
  let tmpJs = '';
  const cleanup = () => {
    for (const k of kids) { try { k.kill('SIGTERM'); } catch { /* gone */ } }
    rmSync(tmp, { recursive: true, force: true });
    if (tmpJs) rmSync(tmpJs, { recursive: true, force: true });
  };
  process.on('SIGINT', () => { cleanup(); process.exit(130); });
  try {
    let js = process.env.AGENT_JS;
    if (!js) {
      // inside the checkout (build/ is ignored), where the compiled code finds node_modules,
      // as bench/agent-overhead.sh does
      js = join(here, 'build', `agent-replay.${process.pid}`);
      tmpJs = js;
      try {
        execFileSync('npx', ['tsc', '-p', '.', '--outDir', js, '--sourceMap', 'false'], { cwd: root, stdio: 'pipe' });
      } catch { /* emitted anyway; checked below */ }
    }
    if (!existsSync(join(js, 'cli/main.js'))) throw new Error(`no compiled agent in ${js}`);
    const launcher = readFileSync(join(root, 'bin/seqtrace'), 'utf8');
    const flags = process.env.AGENT_NODE_ARGS ?? /^AGENT_NODE_FLAGS="(.*)"$/m.exec(launcher)?.[1] ?? '';
    // bin/seqtrace's malloc settings for the agent, unless AGENT_MALLOC is set ("": glibc's defaults).
    const mallocEnv = process.env.AGENT_MALLOC ?? /^AGENT_MALLOC_ENV="(.*)"$/m.exec(launcher)?.[1] ?? '';
    // A process for the agent to select (OTEL_SERVICE_NAME), whose pid the frames carry.
    const traced = spawn('sleep', ['3600'], { env: { ...process.env, OTEL_SERVICE_NAME: 'bench-traced' }, stdio: 'ignore' });
    kids.push(traced);
    const sink = spawn('node', ['--import', 'tsx', join(here, 'agent-sink.ts')], { stdio: ['ignore', 'pipe', 'inherit'] });
    kids.push(sink);
    const sinkUrl = await new Promise<string>((resolve) => sink.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
    const ctl = join(tmp, 'ctl');
    const fake = join(tmp, 'seqtrace-loader');
    writeFileSync(fake, `#!/bin/sh\nexec node --import tsx ${JSON.stringify(fileURLToPath(import.meta.url))} --fake-loader "$@"\n`);
    chmodSync(fake, 0o755);
    const env: NodeJS.ProcessEnv = { ...process.env, SEQTRACE_LOADER: fake, REPLAY_CTL: ctl, REPLAY_PID: String(traced.pid), ENV_INPUT_EBPF_TRACE_SERVER: sinkUrl, ENV_INPUT_EBPF_METRICS_LISTEN: '127.0.0.1:0' };
    delete env.OTEL_SERVICE_NAME; delete env.DD_SERVICE; delete env.DK_BPFTRACE_SERVICE;
    for (const kv of mallocEnv.split(' ').filter(Boolean)) env[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
    const agent = spawn('node', [...flags.split(' ').filter(Boolean), join(js, 'cli/main.js'), 'agent'], { env, stdio: ['ignore', 'inherit', 'pipe'] });
    kids.push(agent);
    let agentErr = '';
    agent.stderr!.on('data', (d: Buffer) => { agentErr = (agentErr + d.toString()).slice(-4000); });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const tick = Number(execFileSync('getconf', ['CLK_TCK']).toString());
    const cpu = (path: string) => { const t = readFileSync(path, 'utf8'); const f = t.slice(t.lastIndexOf(')') + 2).split(' '); return (Number(f[11]) + Number(f[12])) / tick; };
    const status = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    let metricsUrl = '';
    for (let i = 0; i < 100 && !metricsUrl; i++) {
      if (agent.exitCode !== null) throw new Error(`the agent exited: ${agentErr}`);
      const port = new RegExp(`127\\.0\\.0\\.1:(\\d+)\\s.*pid=${agent.pid},`).exec(execFileSync('ss', ['-ltnpH']).toString())?.[1];
      if (port) metricsUrl = `http://127.0.0.1:${port}/metrics`;
      else await sleep(100);
    }
    const metrics = async () => {
      const text = await (await fetch(metricsUrl)).text();
      const get = (n: string) => Number(new RegExp(`^seqtrace_agent_${n} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
      return { sent: get('spans_sent_total'), dropped: get('spans_dropped_total'), failed: get('spans_send_failed_total'), spans: get('spans_total') };
    };
    // Every span of a run is accounted for once it was sent, dropped or given up on.
    const run = async (n: number) => {
      const m0 = await metrics();
      const done = (m: typeof m0) => m.sent + m.dropped + m.failed - (m0.sent + m0.dropped + m0.failed);
      writeFileSync(ctl, `${n} ${rate}`);
      const deadline = Date.now() + (n / rate) * 1000 + 30_000;
      let m = m0;
      while (done(m = await metrics()) < n) {
        if (agent.exitCode !== null) throw new Error(`the agent exited: ${agentErr}`);
        if (Date.now() > deadline) throw new Error(`${done(m)} of ${n} spans sent or dropped: ${JSON.stringify(m)} ${agentErr}`);
        await sleep(100);
      }
      return { dropped: m.dropped - m0.dropped, failed: m.failed - m0.failed };
    };
    // the agent is up once its loader (the stand-in) has been asked to trace the pid
    await sleep(1500);
    await run(rate * 2); // warm-up (JIT), not counted
    console.log(`agent replay: ${rate} req/s for ${secs}s per round, ${mallocEnv ? `${mallocEnv} ` : ''}node ${flags || '(defaults)'} ${js}/cli/main.js agent, ${new Date().toISOString().slice(0, 16)} UTC, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    const per: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const a0 = cpu(`/proc/${agent.pid}/stat`), m0 = cpu(`/proc/${agent.pid}/task/${agent.pid}/stat`);
      const n = rate * secs;
      const lost = await run(n);
      const a1 = cpu(`/proc/${agent.pid}/stat`), m1 = cpu(`/proc/${agent.pid}/task/${agent.pid}/stat`);
      const us = ((a1 - a0) * 1e6) / n;
      per.push(us);
      console.log(`  round ${r + 1}: ${us.toFixed(2)} us agent CPU per request (main thread ${(((m1 - m0) * 1e6) / n).toFixed(2)}, other threads ${((((a1 - a0) - (m1 - m0)) * 1e6) / n).toFixed(2)}); VmRSS ${status('VmRSS').toFixed(0)} MiB, VmHWM ${status('VmHWM').toFixed(0)} MiB; ${lost.dropped} dropped, ${lost.failed} failed; load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
    }
    const sorted = [...per].sort((x, y) => x - y);
    console.log(`median ${sorted[sorted.length >> 1].toFixed(2)} us per request over ${rounds} rounds; threads: ${readdirSync(`/proc/${agent.pid}/task`).length}`);
  } finally {
    cleanup();
  }
}
