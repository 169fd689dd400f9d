// Linker throughput over HTTP: realistic traces posted as gzip line-protocol batches by
// several concurrent connections to a real linker (spawned from bin/seqtrace with a fresh
// SQLite folder, or an already running one with --url/--pid), then a sample of traces is
// checked in the store. Prints spans/s, ingest latency, CPU and peak RSS of the linker.
//
//   node --import tsx bench/linker.ts [--spans 3000000] [--rate 0] [--conns 4] [--batch 1000]
//        [--window 20s] [--sampling 0.1] [--verify 300] [--cpu 1|none] [--url http://.. --pid N --db DIR]
//
// "One core" is the linker's CPU time, all its threads (GC helpers, zlib's thread pool): the
// figure is spans per CPU-second, printed for the send phase and for send + drain (the drain
// emits and commits the traces whose windows closed after the last batch). By default the
// spawned linker is pinned to the last CPU (taskset) and this process to the others, so that
// even its helper threads share one core.
//
// --rate 0 sends as fast as the linker answers; --rate N paces N spans/s (--duration S
// seconds instead of --spans). Batches are generated before the clock starts, in worker
// threads, so the client costs the linker nothing while it is measured. See docs/linker.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, availableParallelism, loadavg } from 'node:os';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { gzipSync } from 'node:zlib';
import { buildTrace, rng, shopTree, spanKey } from '../src/linker/fixtures.js';
import { spanIdentity } from '../src/linker/link/ids.js';
import { traceIdOf } from '../src/linker/link/ids.js';
import { keptByRate, rateThreshold } from '../src/linker/link/sampling.js';
import type { EbpfSpan } from '../src/span/span.js';
import { encodeSpans } from '../src/span/lineprotocol.js';

/** A Buffer as fetch's BodyInit: a Uint8Array view, no copy. */
const bytes = (b: Buffer): Uint8Array<ArrayBuffer> => new Uint8Array(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength);

interface Sample {
  spans: EbpfSpan[];
  parents: [string, string][];
}

interface GenJob {
  from: number; // first round
  to: number; // rounds [from, to)
  batch: number;
  t0Us: number;
  rate: number; // spans per second the times are spread over
  samplesPerRound: number;
}

// ---- generation (worker threads) ----
// One "round" is the same set of trace shapes (seed 1); round k shifts sequence numbers,
// thread groups and times so every span is new, and is encoded from per-span templates whose
// variable parts are spliced in, so a million spans take seconds, not minutes.

const SLOT = /[\x01-\x04]/;

function templates() {
  const r = rng(1);
  const traces = [];
  let count = 0;
  while (count < 20_000) {
    const t = buildTrace(shopTree(r), { startUs: 0, random: r });
    traces.push(t);
    count += t.spans.length;
  }
  // Placeholders: \x01 reqSeq, \x02 respSeq, \x03 thread group, \x04 start (µs; also the ns timestamp).
  const lines = new Map<EbpfSpan, string[]>();
  for (const t of traces) {
    for (const s of t.spans) {
      const marked = { ...s, reqSeq: 1, respSeq: 2, threadGroup: '3', startUs: 4 };
      let line = encodeSpans([marked]);
      line = line.replace('req_seq=1i', 'req_seq=\x01i').replace('resp_seq=2i', 'resp_seq=\x02i').replace('thread_trace_id=3i', 'thread_trace_id=\x03u')
        .replace('start=4i', 'start=\x04i').replace(/ 4000\n$/, ' \x04000\n');
      lines.set(s, line.split(SLOT));
    }
  }
  return { traces, lines, spans: count };
}

function shift(s: EbpfSpan, k: number, base: number): EbpfSpan {
  return {
    ...s,
    reqSeq: (s.reqSeq + k * 2654435761) >>> 0,
    respSeq: (s.respSeq + k * 40503) >>> 0,
    threadGroup: (BigInt(s.threadGroup) ^ (BigInt(k + 1) << 40n)).toString(),
    startUs: base + s.startUs,
  };
}

function generate(job: GenJob) {
  const { traces, lines, spans: perRound } = templates();
  const out: { gz: Buffer; spans: number }[] = [];
  const samples: Sample[] = [];
  const hostBuf = new Map<string, { text: string; n: number }>();
  const flush = (host: string) => {
    const b = hostBuf.get(host)!;
    if (b.n) out.push({ gz: gzipSync(b.text, { level: 1 }), spans: b.n });
    hostBuf.set(host, { text: '', n: 0 });
  };
  for (let k = job.from; k < job.to; k++) {
    const roundStartUs = job.t0Us + Math.floor(((k * perRound) / job.rate) * 1e6);
    const spacing = 1e6 / (job.rate / perRound) / traces.length; // µs between trace starts
    for (let ti = 0; ti < traces.length; ti++) {
      const base = roundStartUs + Math.floor(ti * spacing);
      const t = traces[ti];
      for (const s of t.spans) {
        const v = shift(s, k, base);
        const p = lines.get(s)!;
        const line = p[0] + v.reqSeq + p[1] + v.respSeq + p[2] + v.threadGroup + p[3] + v.startUs + p[4] + v.startUs + p[5];
        let b = hostBuf.get(s.host);
        if (!b) hostBuf.set(s.host, (b = { text: '', n: 0 }));
        b.text += line;
        b.n++;
        if (b.n >= job.batch) flush(s.host);
      }
      if (ti % Math.max(1, Math.floor(traces.length / job.samplesPerRound)) === 0) {
        const key = (x: EbpfSpan) => spanKey(shift(x, k, base));
        const byKey = new Map(t.spans.map((x) => [spanKey(x), x]));
        samples.push({
          spans: t.spans.map((x) => shift(x, k, base)),
          parents: [...t.parents].map(([c, p]) => [key(byKey.get(c)!), p ? key(byKey.get(p)!) : '']),
        });
      }
    }
  }
  for (const host of hostBuf.keys()) flush(host);
  return { batches: out, samples, perRound };
}


// ---- driver ----

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

function procStatus(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 10 ms
}

/**
 * System CPU seconds and minor page faults of a live process. Fresh memory is dear on this
 * machine (a page fault costs several µs: a 470 KB string took 3.4 ms, docs/linker.md), so
 * heap growth shows up as system time.
 */
function kernelSide(pid: number): { sys: number; faults: number } {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { sys: Number(f[12]) / 100, faults: Number(f[7]) };
}

/** CPU seconds per kind of thread (main, V8 GC/compiler helpers, libuv pool, ...) of a live process. */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = Number(tid) === pid ? 'main' : st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')).replace(/\d+$/, '').trim();
      const f = st.slice(st.lastIndexOf(') ') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / 100);
    } catch { /* thread ended */ }
  }
  return out;
}

function threadShares(before: Map<string, number>, after: Map<string, number>): string {
  const d = [...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const).filter(([, v]) => v > 0.005).sort((a, b) => b[1] - a[1]);
  return d.map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(', ');
}

const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

async function spawnLinker(dir: string, windowArg: string, sampling: string, cpu: string): Promise<{ proc: ChildProcess; url: string }> {
  const conf = join(dir, 'seqtrace.toml');
  writeFileSync(conf, `[[inputs.ebpftrace]]\nsqlite_path = "${join(dir, 'db')}"\nwindow = "${windowArg}"\nsampling_rate = ${sampling}\n`);
  const bin = fileURLToPath(new URL('../bin/seqtrace', import.meta.url));
  // LINKER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the linker (node flags not allowed in NODE_OPTIONS).
  const nodeArgs = (process.env.LINKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));
  let [cmd, args] = nodeArgs.length ? [process.execPath, [...nodeArgs, '--import', 'tsx', main, 'linker', '--config', conf]] : [bin, ['linker', '--config', conf]];
  if (cpu !== 'none') [cmd, args] = ['taskset', ['-c', cpu, cmd, ...args]]; // every thread of it on that CPU
  const proc = spawn(cmd, args, {
    env: { ...process.env, ENV_HTTP_LISTEN: '127.0.0.1:0' },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      const m = /ingest on (http:\/\/[^\s/]+)\//.exec(err);
      if (m) resolve(m[1]);
    });
    proc.on('close', (code) => reject(new Error(`linker exited (${code}):\n${err}`)));
  });
  proc.stderr!.on('data', (b: Buffer) => process.stderr.write(b));
  return { proc, url };
}

async function main(): Promise<void> {
  const rate = Number(arg('rate', '0'));
  const batch = Number(arg('batch', '1000'));
  const conns = Number(arg('conns', '4'));
  const windowArg = arg('window', '20s');
  const sampling = arg('sampling', '0.1');
  const verifyN = Number(arg('verify', '300'));
  const duration = Number(arg('duration', '0'));
  const spansWanted = rate > 0 && duration > 0 ? rate * duration : Number(arg('spans', '3000000'));
  // Span times follow the expected send rate, so spans arrive about when they "happened".
  const timeRate = rate > 0 ? rate : Number(arg('assume-rate', '100000'));
  // The linker on the last CPU, this process (and its generator workers) on the others.
  const ncpu = availableParallelism();
  const pinCpu = arg('cpu', ncpu > 1 ? String(ncpu - 1) : 'none');
  if (pinCpu !== 'none' && !arg('url', '')) {
    const others = Array.from({ length: ncpu }, (_, i) => i).filter((i) => String(i) !== pinCpu).join(',');
    if (others) execFileSync('taskset', ['-apc', others, String(process.pid)], { stdio: 'ignore' });
  }
  console.log(`${new Date().toISOString()}, load average ${load()}, ${ncpu} CPUs, linker ${pinCpu === 'none' ? 'not pinned' : `pinned to CPU ${pinCpu}`}`);

  // Generate.
  const probe = templates().spans;
  const rounds = Math.max(1, Math.ceil(spansWanted / probe));
  const workers = Math.max(1, Math.min(availableParallelism(), 4));
  // Span times start when sending starts: one round generated here estimates how long the
  // workers will take, so spans neither lag the clock (traces would close early) nor lead it.
  const timed = (n: number) => {
    const t = performance.now();
    generate({ from: 0, to: n, batch, t0Us: 0, rate: timeRate, samplesPerRound: 1 });
    return performance.now() - t;
  };
  timed(1); // warm-up
  const one = timed(1), three = timed(3);
  const perRound = (three - one) / 2, setup = Math.max(0, one - perRound);
  // Twice the estimate plus 5 s: a loaded machine generates slower than estimated, and span
  // times lagging the clock would close traces at arrival. A lead is waited out below.
  const t0Us = Date.now() * 1000 + Math.round(2000 * (setup + perRound * Math.ceil(rounds / workers))) + 5_000_000;
  const genStart = performance.now();
  const parts = await Promise.all(Array.from({ length: workers }, (_, w) => {
    const from = Math.floor((rounds * w) / workers), to = Math.floor((rounds * (w + 1)) / workers);
    return new Promise<ReturnType<typeof generate>>((resolve, reject) => {
      // A worker does not inherit the tsx loader: register it, then load this file.
      const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
      const worker = new Worker(boot, { eval: true, workerData: { from, to, batch, t0Us, rate: timeRate, samplesPerRound: Math.ceil(verifyN / rounds) + 1 } satisfies GenJob });
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  }));
  const batches = parts.flatMap((p) => p.batches);
  const samples = parts.flatMap((p) => p.samples);
  const totalSpans = batches.reduce((n, b) => n + b.spans, 0);
  const gzBytes = batches.reduce((n, b) => n + b.gz.length, 0);
  console.log(`generated ${totalSpans} spans in ${batches.length} gzip batches (${mib(gzBytes)}, ${(gzBytes / totalSpans).toFixed(0)} B/span) in ${((performance.now() - genStart) / 1000).toFixed(1)} s`);


  // Linker.
  let url = arg('url', '');
  let pid = Number(arg('pid', '0'));
  let dbDir = arg('db', '');
  let child: ChildProcess | undefined;
  let tmp: string | undefined;
  if (!url) {
    tmp = mkdtempSync(join(tmpdir(), 'seqtrace-bench-'));
    const s = await spawnLinker(tmp, windowArg, sampling, pinCpu);
    child = s.proc;
    // Never leave the linker or its folder behind, whatever ends the bench.
    const cleanup = () => {
      child?.kill('SIGKILL');
      rmSync(tmp!, { recursive: true, force: true });
    };
    process.once('exit', cleanup);
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
    url = s.url;
    pid = s.proc.pid!;
    dbDir = join(tmp, 'db');
  }
  console.log(`linker ${url} pid ${pid || '?'}, window ${windowArg}, sampling ${sampling}, ${conns} connections, ${rate ? `${rate} spans/s paced` : 'as fast as possible'}`);
  let genDelayUs = Date.now() * 1000 - t0Us; // > 0: span times lag the clock by that much
  if (genDelayUs < -200_000) {
    await new Promise((r) => setTimeout(r, -genDelayUs / 1000)); // the clock catches up with span times
    genDelayUs = Date.now() * 1000 - t0Us;
  }
  console.log(`span times ${genDelayUs >= 0 ? 'lag' : 'lead'} the clock by ${(Math.abs(genDelayUs) / 1e6).toFixed(1)} s at the start`);

  // Send.
  const lat: number[] = [];
  let accepted = 0, failed = 0, next = 0;
  let peakRss = 0;
  const rssTrace: [number, number][] = [];
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const kernel0 = pid ? kernelSide(pid) : { sys: 0, faults: 0 };
  const threads0 = pid ? threadCpu(pid) : new Map<string, number>();
  const start = performance.now();
  const sampler = setInterval(() => {
    if (!pid) return;
    const { rss } = procStatus(pid);
    peakRss = Math.max(peakRss, rss);
    rssTrace.push([(performance.now() - start) / 1000, rss]);
  }, 500);
  let lastReport = start;
  await Promise.all(Array.from({ length: conns }, async () => {
    for (;;) {
      const i = next++;
      if (i >= batches.length) return;
      if (rate > 0) {
        const due = start + ((i * batch) / rate) * 1000;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      const t = performance.now();
      const r = await fetch(`${url}/v1/bpftracing`, { method: 'POST', body: bytes(batches[i].gz), headers: { 'content-encoding': 'gzip', 'content-type': 'text/plain' } });
      const body = (await r.json()) as { accepted?: number };
      lat.push(performance.now() - t);
      if (r.status === 200) accepted += body.accepted ?? 0;
      else failed++;
      const now = performance.now();
      if (now - lastReport > 10_000) {
        lastReport = now;
        const rss = pid ? procStatus(pid).rss : 0;
        console.log(`  ${((now - start) / 1000).toFixed(0)} s: ${accepted} spans, ${(accepted / ((now - start) / 1000)).toFixed(0)} spans/s, linker RSS ${mib(rss)}`);
      }
    }
  }));
  const secs = (performance.now() - start) / 1000;
  const cpu = pid ? cpuSeconds(pid) - cpu0 : NaN;
  const threadsSent = pid ? threadCpu(pid) : new Map<string, number>();
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(1);
  console.log(`sent ${accepted} spans in ${secs.toFixed(1)} s: ${(accepted / secs).toFixed(0)} spans/s accepted; ${failed} failed requests`);
  console.log(`ingest latency per batch: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${lat[lat.length - 1].toFixed(1)} ms`);
  if (pid) {
    console.log(`linker CPU ${cpu.toFixed(1)} s over ${secs.toFixed(1)} s (${((100 * cpu) / secs).toFixed(0)}% of one core; ${(accepted / cpu).toFixed(0)} spans per CPU-second while sending)`);
    console.log(`  by thread: ${threadShares(threads0, threadsSent)}`);
  }

  // Let every window close, then check a sample of traces in the store.
  const drainStart = performance.now();
  for (;;) {
    const pending = await metric(url, 'seqtrace_joiner_pending_spans');
    const held = await metric(url, 'seqtrace_spool_batches_held');
    if (pending === 0 && held === 0) break;
    if (performance.now() - drainStart > 120_000) {
      console.log(`still ${pending} spans pending after 120 s`);
      break;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  clearInterval(sampler);
  if (pid) {
    // Spans left open by the send phase are emitted (and the sampled ones committed) while
    // draining: that CPU belongs to the same spans.
    const cpuAll = cpuSeconds(pid) - cpu0;
    console.log(`linker CPU send + drain ${cpuAll.toFixed(1)} s: ${(accepted / cpuAll).toFixed(0)} spans per CPU-second (${((1e6 * cpuAll) / accepted).toFixed(1)} µs a span); by thread over the drain: ${threadShares(threadsSent, threadCpu(pid))}`);
    const k = kernelSide(pid);
    console.log(`  of which system time ${(k.sys - kernel0.sys).toFixed(1)} s; ${k.faults - kernel0.faults} minor page faults (${((k.faults - kernel0.faults) / accepted).toFixed(2)} a span)`);
    const st = procStatus(pid);
    peakRss = Math.max(peakRss, st.hwm);
    console.log(`linker peak RSS ${mib(peakRss)} (VmHWM), RSS now ${mib(st.rss)}; drained in ${((performance.now() - drainStart) / 1000).toFixed(1)} s`);
    if (rssTrace.length > 6) {
      const third = rssTrace.slice(Math.floor(rssTrace.length / 3)).map((x) => x[1]);
      console.log(`RSS over the last two thirds of the run: min ${mib(Math.min(...third))}, max ${mib(Math.max(...third))}`);
      const step = Math.max(1, Math.floor(rssTrace.length / 12));
      console.log(`RSS over time: ${rssTrace.filter((_, i) => i % step === 0).map(([t, r]) => `${t.toFixed(0)} s ${mib(r)}`).join(', ')}`);
    }
  }
  const m = await (await fetch(`${url}/metrics`)).text();
  for (const name of ['seqtrace_spans_linked_total', 'seqtrace_spans_sampled_out_total', 'seqtrace_spans_committed_total', 'seqtrace_spans_late_total', 'seqtrace_ambiguous_seq_matches_total']) {
    console.log(`  ${name} ${/^\S+ (\S+)$/m.exec(m.split('\n').find((l) => l.startsWith(name + ' ')) ?? '')?.[1]}`);
  }
  if (dbDir && verifyN > 0) await verify(dbDir, samples.slice(0, verifyN), Number(sampling));

  if (child) {
    child.kill('SIGTERM');
    await new Promise((r) => child!.once('exit', r));
    rmSync(tmp!, { recursive: true, force: true });
  }
}

async function verify(dbDir: string, samples: Sample[], rate: number): Promise<void> {
  const { openSqliteStore } = await import('../src/storage/sqlite.js');
  const store = openSqliteStore(dbDir, { retentionMaxAgeMs: 1e13, retentionMaxBytes: 1e15, sweepIntervalMs: 0, exportQueue: false });
  const threshold = rateThreshold(rate);
  const id = { a: 0, b: 0, c: 0, d: 0, spanId: '' };
  let kept = 0, dropped = 0, bad = 0;
  try {
    for (const s of samples) {
      const parents = new Map(s.parents);
      const root = s.spans.find((x) => parents.get(spanKey(x)) === '')!;
      spanIdentity(root, id);
      const traceId = traceIdOf(id.a, id.b, id.c, id.d);
      const want = keptByRate(traceId, threshold);
      const got = await store.getTrace(traceId);
      if (!want) {
        if (got) bad++, console.log(`trace ${traceId} should have been sampled out`);
        else dropped++;
        continue;
      }
      if (!got || got.length !== s.spans.length) {
        bad++;
        console.log(`trace ${traceId}: ${got?.length ?? 0} spans stored, ${s.spans.length} sent`);
        continue;
      }
      const bySpanId = new Map(got.map((x) => [x.spanId, x]));
      const wrong = got.filter((x) => parents.get(spanKey(x)) !== (bySpanId.get(x.parentId) ? spanKey(bySpanId.get(x.parentId)!) : ''));
      if (wrong.length) {
        bad++;
        console.log(`trace ${traceId}: ${wrong.length} spans with a wrong parent`);
      } else kept++;
    }
  } finally {
    store.close();
  }
  console.log(`load average at the end ${load()}`);
  console.log(`verified ${samples.length} traces: ${kept} stored and linked exactly, ${dropped} sampled out as expected, ${bad} wrong`);
  if (bad) {
    process.exitCode = 1;
    console.log('(a wrong trace after late spans: the linker fell behind the span clock by more than the window, e.g. starved of CPU; see docs/linker.md)');
  }
}

// Last, so every declaration above is initialised.
if (!isMainThread) {
  const r = generate(workerData as GenJob);
  parentPort!.postMessage(r, r.batches.map((b) => b.gz.buffer as ArrayBuffer));
} else {
  await main();
}
