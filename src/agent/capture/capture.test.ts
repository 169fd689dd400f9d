// Real eBPF: loads the programs in both modes and checks what they see of real TCP traffic
// (a Python ThreadingHTTPServer with curl, and a program using every covered syscall).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultLoaderPath, startCapture, type Capture } from './loader.js';
import type { CaptureEvent, CloseEvent, DataEvent, ProcessEvent, ThreadEvent, ThreadExitEvent } from './event.js';
import { TLS_ID } from './event.js';
import { bpfObjectsOf, linkedProgs, tracedPids, waitFor } from './testkit.js';
import { mappedLibssl } from '../tls/openssl.js';

const SKIP = process.env.SEQTRACE_SKIP_EBPF === '1';
if (SKIP) console.log('# capture tests skipped: SEQTRACE_SKIP_EBPF=1');
const SYSCALLS_PY = fileURLToPath(new URL('./testdata/syscalls.py', import.meta.url));
const THREADS_PY = fileURLToPath(new URL('./testdata/threads.py', import.meta.url));
const PINGPONG_PY = fileURLToPath(new URL('./testdata/pingpong.py', import.meta.url));
const READLATER_PY = fileURLToPath(new URL('./testdata/readlater.py', import.meta.url));
const HELDSEND_PY = fileURLToPath(new URL('./testdata/heldsend.py', import.meta.url));
const MUTE_PY = fileURLToPath(new URL('./testdata/mute.py', import.meta.url));
const UNIXSOCK_PY = fileURLToPath(new URL('./testdata/unixsock.py', import.meta.url));
const UNIXREUSE_PY = fileURLToPath(new URL('./testdata/unixreuse.py', import.meta.url));
const AFTERRESET_PY = fileURLToPath(new URL('./testdata/afterreset.py', import.meta.url));
const FIRSTANSWER_PY = fileURLToPath(new URL('./testdata/firstanswer.py', import.meta.url));
const SHUTDOWN_PY = fileURLToPath(new URL('./testdata/shutdown.py', import.meta.url));
const TLSPAIR_PY = fileURLToPath(new URL('./testdata/tlspair.py', import.meta.url));
/** First lines of an inline Python script that needs testdata/loopback.py's `tcp_pair`. */
const WITH_TCP_PAIR = `import sys; sys.path.insert(0, ${JSON.stringify(fileURLToPath(new URL('./testdata', import.meta.url)))})
from loopback import tcp_pair`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  cap: Capture;
  events: CaptureEvent[];
  /** When each event reached us (CLOCK_MONOTONIC ns, the clock of tsNs), by event. */
  arrived: Map<CaptureEvent, number>;
}

async function start(mode: 'socket' | 'syscall', extra: { ringbufBytes?: number; captureBytes?: number; provisionalExec?: boolean; execEnv?: string[]; uprobes?: 'tracefs' } = {}): Promise<Run> {
  const events: CaptureEvent[] = [];
  const arrived = new Map<CaptureEvent, number>();
  const cap = await startCapture({
    mode,
    ...extra,
    onEvents: (evs) => {
      const now = Number(process.hrtime.bigint()); // libuv: CLOCK_MONOTONIC, as bpf_ktime_get_ns
      for (const e of evs) { events.push(e); arrived.set(e, now); }
    },
    onError: (e) => { throw e; },
  });
  assert.equal(cap.mode, mode);
  return { cap, events, arrived };
}

/** TCP's data events (a script's stdin and stdout are Unix sockets too: Node's pipes). */
const data = (evs: CaptureEvent[]) => evs.filter((e): e is DataEvent => e.kind === 'data' && e.family !== 'unix');
const unixData = (evs: CaptureEvent[]) => evs.filter((e): e is DataEvent => e.kind === 'data' && e.family === 'unix');
/** The exec events of process `pid`, in order. */
const execsOf = (evs: CaptureEvent[], pid: number) => evs.filter((e): e is ProcessEvent => e.kind === 'exec' && e.pid === pid);
const text = (b: Buffer) => b.toString('latin1');

/** Resolves when the process has exited and its piped output has been read to the end. */
function exited(p: ChildProcess): Promise<number> {
  return new Promise((r) => {
    if (p.exitCode !== null) r(p.exitCode);
    else p.on('close', (c) => r(c ?? -1));
  });
}

/**
 * Runs a testdata script (python3, in a network namespace when netns is given) that prints a
 * first line once it is ready (its pid known, nothing done yet), waits for a line on stdin, does
 * its work and prints one JSON line: traced from its first line on unless traced is false.
 * Returns that JSON.
 */
async function runScript<T>(run: Run, script: string, args: string[],
  o: { traced?: boolean; netns?: string; beforeGo?: (pid: number) => Promise<void>; during?: (pid: number, say: (line: string) => void) => Promise<void> } = {}): Promise<T> {
  const name = basename(script);
  const cmd = [...(o.netns ? ['ip', 'netns', 'exec', o.netns] : []), 'python3', '-u', script, ...args];
  const p = spawn(cmd[0], cmd.slice(1), { stdio: 'pipe' });
  let out = '';
  let err = '';
  p.stderr.on('data', (d) => { err += d; });
  p.stdout.on('data', (d) => { out += d; });
  try {
    await waitFor(`${name} ready`, () => out.includes('\n'), 10_000);
    if (o.traced ?? true) await run.cap.addPid(p.pid!);
    await o.beforeGo?.(p.pid!);
  } catch (e) {
    p.kill(); // else it waits for 'go' and keeps the test process alive
    throw e;
  }
  p.stdin.write('go\n');
  try {
    await o.during?.(p.pid!, (line) => p.stdin.write(line + '\n'));
  } catch (e) {
    p.kill();
    throw e;
  }
  assert.equal(await exited(p), 0, `${name} failed: ${err}`);
  return JSON.parse(out.split('\n')[1]) as T;
}

/**
 * Holds thread `tid` for ≈ 2.5 ms in every network softirq it runs (bpftrace on napi:napi_poll:
 * six programs, as the verifier lets one spin ≈ 0.4 ms). Resolves once all six are attached
 * (bpftrace says "Attaching" before it loads them); stop() ends it and returns what it printed.
 */
async function holdSoftirqs(tid: number) {
  const PROGS = 6;
  const spin = `tracepoint:napi:napi_poll /tid == ${tid}/ { $t = nsecs; $i = 0; while ($i < 7000) { if (nsecs - $t > 1000000) { break; } $i++; } @held_us = sum((nsecs - $t) / 1000); }`;
  const p = spawn('bpftrace', ['-e', Array(PROGS).fill(spin).join('\n')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout!.on('data', (d) => { out += d; });
  p.stderr!.on('data', (d) => { out += d; });
  const stop = async () => {
    p.kill('SIGINT');
    const killer = setTimeout(() => p.kill('SIGKILL'), 10_000);
    await exited(p);
    clearTimeout(killer);
    return out;
  };
  try {
    const attached = () => (JSON.parse(execFileSync('bpftool', ['-j', 'perf', 'show']).toString()) as Array<{ pid: number; tracepoint?: string }>)
      .filter((x) => x.pid === p.pid && x.tracepoint === 'napi_poll').length;
    await waitFor(`bpftrace's ${PROGS} programs attached (it printed: ${out})`, () => p.exitCode === null && attached() === PROGS, 60_000);
  } catch (e) {
    await stop();
    throw e;
  }
  return { stop };
}

/** Runs testdata/syscalls.py traced; returns its report. */
function runSyscalls(run: Run, family: 4 | 6) {
  return runScript<{
    pid: number; clientTid: number; serverTid: number; childPid: number; childReceived: string;
    udpReceived: string; unixReceived: string;
    ops: Array<{ name: string; bytes: number; received: number }>;
  }>(run, SYSCALLS_PY, [String(family)]);
}

/** A Python http.server (ThreadingHTTPServer) on loopback; returns its port. */
async function httpServer(dir: string, host: string) {
  const p = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', host, '--directory', dir], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  const m = await waitFor('http.server port', () => /port (\d+) /.exec(out) ?? undefined, 10_000);
  return { proc: p, port: Number(m[1]) };
}

/** curl started stopped: its pid is known (and traced) before it connects. */
function curlWaiting(url: string) {
  const p = spawn('sh', ['-c', `read go; exec curl -s -o /dev/null --http1.1 '${url}'`], { stdio: ['pipe', 'ignore', 'inherit'] });
  return { proc: p, go: () => p.stdin.write('go\n') };
}

/** The pids traced in the kernel's `traced` map (ST_PID_TRACED: bit 4 * (pid % 16) of word pid / 16). */

for (const mode of ['socket', 'syscall'] as const) {
  describe(`capture, ${mode} mode`, { skip: SKIP, timeout: 120_000 }, () => {
    let run: Run;
    let dir: string;
    before(async () => {
      run = await start(mode);
      dir = mkdtempSync(join(tmpdir(), 'seqtrace-capture-'));
      writeFileSync(join(dir, 'hello.txt'), 'hello from the traced server\n');
    });
    after(async () => {
      await run?.cap.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    for (const family of [4, 6] as const) {
      test(`every covered syscall, IPv${family}: content, same seq on both ends, mirrored 4-tuple, tids`, async () => {
        const r = await runSyscalls(run, family);
        assert.ok(r.ops.every((o) => o.received === o.bytes), JSON.stringify(r.ops));
        assert.equal(r.childReceived, 'F1:from-forked-child');
        const mine = () => data(run.events).filter((e) => e.pid === r.pid || e.pid === r.childPid);
        // the forked child's write is the last thing moved
        await waitFor('the forked child\'s write and its receipt', () => mine().filter((e) => text(e.head).startsWith('F1:')).length === 2);
        const evs = mine();
        // UDP and AF_UNIX datagrams moved (before the child's write) and made no events
        assert.deepEqual([r.udpReceived, r.unixReceived], ['UDP1:not-tcp', 'UNIX1:not-tcp']);
        const notTcp = evs.filter((e) => /^(UDP1|UNIX1):/.test(text(e.head)));
        assert.deepEqual([...notTcp, ...unixData(run.events).filter((e) => /^UNIX1:/.test(text(e.head)))].map((e) => text(e.head)), [], 'datagram sockets make no events');
        const sends = evs.filter((e) => e.dir === 'send');
        const recvs = evs.filter((e) => e.dir === 'recv');
        for (const e of sends) assert.equal(e.tid, e.pid === r.childPid ? r.childPid : r.clientTid, 'sends come from the client thread');
        for (const e of recvs) assert.equal(e.tid, r.serverTid, 'receives come from the server thread');
        const sent = (prefix: string) => {
          const e = sends.find((x) => text(x.head).startsWith(prefix));
          assert.ok(e, `no send event starting ${prefix}: ${sends.map((x) => text(x.head.subarray(0, 12))).join(' | ')}`);
          return e;
        };
        const received = (seq: number) => {
          const e = recvs.find((x) => x.seq === seq);
          assert.ok(e, `no receive event with seq ${seq}`);
          return e;
        };
        const pair = (prefix: string, content: string) => {
          const s = sent(prefix);
          const v = received(s.seq);
          assert.equal(text(s.head), content);
          assert.equal(text(v.head), content);
          assert.equal(s.len, content.length);
          assert.equal(v.len, content.length);
          return [s, v] as const;
        };
        const [w, rd] = pair('W1:', 'W1:write-then-read');
        pair('V1:', 'V1:writev-readv');
        for (const peeked of ['S1:', 'M1:']) assert.equal(recvs.filter((e) => text(e.head).startsWith(peeked)).length, 1, `${peeked}: the peek before the read is no event`);
        // a head written as many small iovec entries (Varnish): all of them walked (up to
        // UIO_MAXIOV); 307 entries, more bytes than the head holds: the tail, the last entry's bytes
        const line = (i: number) => `X-H${String(i).padStart(3, '0')}: v\r\n`;
        const manyHead = (path: string, lines: number) => `GET ${path} HTTP/1.1\r\n${Array.from({ length: lines }, (_, i) => line(i)).join('')}\r\n`;
        const [many] = pair('GET /many ', manyHead('/many', 45));
        assert.equal(many.truncated, false);
        const more = sent('GET /more ');
        const full = manyHead('/more', 150);
        assert.equal(more.len, full.length);
        assert.equal(text(more.head), full.slice(0, 1024));
        assert.equal(text(more.tail), '\r\n', 'the tail: the last entry\'s bytes (its final CRLF), so the walk reached entry 307');
        assert.equal(more.truncated, false);
        pair('S1:', 'S1:sendto-recvfrom');
        pair('M1:', 'M1:sendmsg-recvmsg');
        const [m1] = pair('MM1:', 'MM1:first-of-sendmmsg');
        const [m2] = pair('MM2:', 'MM2:second-of-sendmmsg');
        const [m3] = pair('MM3:', 'MM3:third');
        assert.equal(m2.seq, m1.seq + m1.len);
        assert.equal(m3.seq, m2.seq + m2.len);
        const [f] = pair('F1:', 'F1:from-forked-child');
        assert.equal(f.pid, r.childPid, 'the child of a traced process is traced by the kernel');

        // sendfile and splice: counted, not captured; the receiver sees the bytes at that seq
        const noPayload = sends.filter((e) => e.noPayload);
        assert.deepEqual(noPayload.map((e) => e.len), [22, 19]);
        assert.equal(text(received(noPayload[0].seq).head), 'SF1:sent-with-sendfile');
        assert.equal(text(received(noPayload[1].seq).head), 'SP1:sent-with-splic');

        // a large message: head of capture_bytes, the tail, the full length
        const big = sent('BIG-HEAD:');
        const bigBytes = r.ops.find((o) => o.name === 'big')!.bytes;
        assert.equal(big.len, bigBytes);
        assert.equal(big.head.length, 1024);
        assert.equal(text(big.tail), 'z:BIG-TAIL-END-MARKER-0123456789');
        const bigRecvs = recvs.filter((e) => e.seq >= big.seq && e.seq < big.seq + big.len);
        assert.equal(bigRecvs.reduce((n, e) => n + e.len, 0), bigBytes, 'the receives add up to the message');
        assert.ok(bigRecvs.every((e) => !e.truncated && e.head.length === Math.min(1024, e.len)));
        assert.equal(text(bigRecvs[bigRecvs.length - 1].tail), 'z:BIG-TAIL-END-MARKER-0123456789');

        // the 4-tuple: src is the own end, so the two ends mirror each other
        const host = family === 4 ? '127.0.0.1' : '::1';
        assert.equal(w.family, family);
        assert.equal(w.srcIp, host);
        assert.equal(w.dstIp, host);
        assert.deepEqual([w.srcIp, w.srcPort, w.dstIp, w.dstPort], [rd.dstIp, rd.dstPort, rd.srcIp, rd.srcPort]);
        assert.notEqual(w.sockId, rd.sockId);
        assert.ok(evs.every((e) => e.sockId === (e.dir === 'send' ? w.sockId : rd.sockId)));

        // close events for both sockets, and the kernel forgot the exited processes
        await waitFor('close events of both sockets', () => {
          const closed = run.events.filter((e) => e.kind === 'close').map((e) => e.kind === 'close' && e.sockId);
          return closed.includes(w.sockId) && closed.includes(rd.sockId);
        });
        const traced = bpfObjectsOf(run.cap.loaderPid).maps.find((m) => m.name === 'traced');
        assert.ok(traced, 'the loader holds a map named traced');
        const left = tracedPids(traced.id);
        assert.ok(!left.includes(r.pid) && !left.includes(r.childPid), `exited pids still traced: ${left}`);
      });

      test(`HTTP through Python http.server and curl, IPv${family}: request and response seen on both ends`, async () => {
        const host = family === 4 ? '127.0.0.1' : '::1';
        const srv = await httpServer(dir, host);
        try {
          await run.cap.addPid(srv.proc.pid!);
          const traced = bpfObjectsOf(run.cap.loaderPid).maps.find((m) => m.name === 'traced')!;
          assert.ok(tracedPids(traced.id).includes(srv.proc.pid!), 'addPid set the pid in the kernel map');
          const url = `http://${family === 4 ? host : `[${host}]`}:${srv.port}/hello.txt`;
          const curl = curlWaiting(url);
          const curlPid = curl.proc.pid!;
          await run.cap.addPid(curlPid);
          curl.go();
          assert.equal(await exited(curl.proc), 0, 'curl succeeded');
          const evs = () => data(run.events);
          const clientSend = await waitFor('curl\'s request', () => evs().find((e) => e.pid === curlPid && e.dir === 'send'));
          const serverRecv = await waitFor('the server reading the request', () => evs().find((e) => e.pid === srv.proc.pid && e.dir === 'recv' && e.seq === clientSend.seq));
          assert.match(text(clientSend.head), /^GET \/hello\.txt HTTP\/1\.1\r\nHost: /);
          assert.ok(text(serverRecv.head).startsWith('GET /hello.txt HTTP/1.1\r\n'));
          assert.deepEqual(serverRecv.head.subarray(0, clientSend.len), clientSend.head);
          assert.equal(clientSend.tid, curlPid);
          assert.notEqual(serverRecv.tid, srv.proc.pid, 'ThreadingHTTPServer reads on a handler thread');
          assert.deepEqual([clientSend.srcIp, clientSend.srcPort, clientSend.dstIp, clientSend.dstPort],
            [serverRecv.dstIp, serverRecv.dstPort, serverRecv.srcIp, serverRecv.srcPort]);
          assert.equal(clientSend.dstPort, srv.port);

          const serverSend = await waitFor('the response', () => evs().find((e) => e.pid === srv.proc.pid && e.dir === 'send'));
          assert.match(text(serverSend.head), /^HTTP\/1\.0 200 OK\r\n/);
          assert.equal(serverSend.tid, serverRecv.tid, 'the handler thread answers');
          const clientRecv = await waitFor('curl reading the response', () => evs().find((e) => e.pid === curlPid && e.dir === 'recv' && e.seq === serverSend.seq));
          assert.match(text(clientRecv.head), /^HTTP\/1\.0 200 OK\r\n/);
          // the reads tile the response byte for byte, also the one that reaches the server's FIN
          await waitFor('the whole response read', () => {
            const sent = evs().filter((e) => e.pid === srv.proc.pid && e.dir === 'send' && e.sockId === serverSend.sockId);
            const got = evs().filter((e) => e.pid === curlPid && e.dir === 'recv');
            const n = (l: DataEvent[]) => l.reduce((a, e) => a + e.len, 0);
            return n(sent) > 0 && n(got) === n(sent);
          });
          const reads = evs().filter((e) => e.pid === curlPid && e.dir === 'recv');
          for (let i = 1; i < reads.length; i++) assert.equal(reads[i].seq, (reads[i - 1].seq + reads[i - 1].len) >>> 0, `read ${i} follows read ${i - 1}`);

          // exec of curl (by the pid traced before), its exit, both sockets closed
          await waitFor('exec, exit and close events', () => {
            const kinds = run.events.map((e) => `${e.kind}:${'pid' in e ? e.pid : ''}:${'sockId' in e ? e.sockId : ''}`);
            return kinds.includes(`exec:${curlPid}:`) && kinds.includes(`exit:${curlPid}:`) &&
              kinds.includes(`close:${curlPid}:${clientSend.sockId}`) && run.events.some((e) => e.kind === 'close' && e.sockId === serverRecv.sockId);
          });
          const [exec] = execsOf(run.events, curlPid);
          assert.ok(exec && exec.ppid === process.pid);
        } finally {
          srv.proc.kill();
          await exited(srv.proc);
        }
      });
    }

    // A connection's close event says its process is done with it: the agent ends the
    // connection there and fails what is still unanswered. A reset puts TCP in its CLOSE state
    // while the process can still read what came before it (Apache drains a keep-alive
    // connection it closes, reading the client's next request; a server reads the request of a
    // client that gave up and reset; a client reads an answer that came just before the
    // server's reset), so the close must wait for the socket's end.
    // (The loader of 2026-12-06, which sent the close at the CLOSE state, fails this: under
    // wrk through Apache's mpm_event, the drained requests opened entries on connections the
    // agent had already ended, whose groups stayed open on their threads for two minutes and
    // left every later call of those threads unjoined.)
    for (const family of ['4', '6']) {
      test(`bytes read after the peer's reset come before the socket's close event, and carry its ports, IPv${family}`, async () => {
        type Conn = { got: string; port: number; peer: number };
        const r = await runScript<{ pid: number; a: Conn; b: Conn }>(run, AFTERRESET_PY, [family]);
        await waitFor('the exit of the script', () => run.events.some((e) => e.kind === 'exit' && e.pid === r.pid));
        // a: read before and after the reset; b: its first read after it
        for (const c of [r.a, r.b]) {
          assert.equal(c.got, 'R1:read-after-the-reset');
          const reads = data(run.events).filter((e) => e.pid === r.pid && e.dir === 'recv' && e.srcPort === c.port);
          assert.deepEqual(reads.map((e) => text(e.head)), [...(c === r.a ? ['R0:before-the-reset'] : []), c.got], `the reads of ${c.port}`);
          const read = reads[reads.length - 1];
          assert.equal(read.dstPort, c.peer, 'the reset cleared the socket\'s port number; the event still names both');
          const closes = run.events.filter((e): e is CloseEvent => e.kind === 'close' && e.sockId === read.sockId);
          assert.equal(closes.length, 1, 'one close event for the server end');
          assert.ok(run.events.indexOf(read) < run.events.indexOf(closes[0]), 'the close comes after the last read');
          assert.ok(read.tsNs <= closes[0].tsNs);
          const client = data(run.events).find((e) => e.pid === r.pid && e.dir === 'send' && e.srcPort === c.peer && text(e.head).startsWith('R1:'))!;
          assert.equal(run.events.filter((e) => e.kind === 'close' && e.sockId === client.sockId).length, 1, 'one close event for the client end');
        }
      });
    }

    // A socket's FIN ends what it sends (an answer until the close) at once; the socket's end
    // waits for the peer's FIN too. Both ends of one connection, each shutting in its way; no
    // shutdown events until they are asked for (sock_state runs on every state change on the host).
    for (const family of ['4', '6']) {
      test(`a socket sending its FIN (shutdown, close) has a shutdown event then, before what its process still reads, once asked for, IPv${family}`, async () => {
        if (family === '4') {
          const r = await runScript<{ pid: number; server: number; client: number }>(run, SHUTDOWN_PY, [family]);
          await waitFor('the exit of the script', () => run.events.some((e) => e.kind === 'exit' && e.pid === r.pid));
          const socks = new Set(data(run.events).filter((e) => e.pid === r.pid).map((e) => e.sockId));
          assert.equal(socks.size, 2);
          assert.deepEqual(run.events.filter((e) => e.kind === 'shutdown' && socks.has(e.sockId)), [], 'none before they are asked for');
          assert.equal(run.events.filter((e) => e.kind === 'close' && socks.has(e.sockId)).length, 2);
          await run.cap.wantShutdowns();
        }
        const r = await runScript<{ pid: number; server: number; client: number }>(run, SHUTDOWN_PY, [family]);
        await waitFor('the exit of the script', () => run.events.some((e) => e.kind === 'exit' && e.pid === r.pid));
        for (const [end, port, expected] of [
          ['server', r.server, ['send S0:', 'shutdown', 'recv C1:', 'close']],
          ['client', r.client, ['recv S0:', 'send C1:', 'shutdown', 'close']],
        ] as const) {
          const sock = data(run.events).find((e) => e.pid === r.pid && e.srcPort === port)!;
          assert.ok(sock, `the ${end} end's events`);
          const evs = run.events.filter((e) => (e.kind === 'data' || e.kind === 'close' || e.kind === 'shutdown') && e.sockId === sock.sockId);
          assert.deepEqual(evs.map((e) => (e.kind === 'data' ? `${e.dir} ${text(e.head).slice(0, 3)}` : e.kind)), expected, `the ${end} end`);
          const shut = evs.find((e) => e.kind === 'shutdown') as CloseEvent;
          assert.equal(shut.pid, r.pid);
          const lastSend = evs.filter((e): e is DataEvent => e.kind === 'data' && e.dir === 'send').at(-1)!;
          assert.ok(lastSend.tsNs <= shut.tsNs, 'after its last send');
        }
      });
    }

    // A traced service's other traffic (a database's protocol) is muted once user space has seen
    // it is not HTTP: no more data events of that socket; its close still comes; others untouched.
    test('a muted socket sends no more data events, its close still comes; others are untouched', async () => {
      const p = await runScript<{ pid: number }>(run, MUTE_PY, [], {
        during: async (pid, say) => {
          await waitFor('the first three round trips of A and B', () => data(run.events).filter((e) => e.pid === pid && /^[AB]2:pong/.test(text(e.head))).length === 4, 10_000);
          for (const dir of ['send', 'recv']) {
            const a = data(run.events).find((e) => e.pid === pid && text(e.head) === 'A0:ping' && e.dir === dir)!;
            assert.equal(await run.cap.mute(a.sockId), true, `A's ${dir === 'send' ? 'client' : 'server'} end muted`);
          }
          say('next');
        },
      });
      await waitFor('the exit of mute.py', () => run.events.some((e) => e.kind === 'exit' && e.pid === p.pid));
      const tags = (re: RegExp) => data(run.events).filter((e) => e.pid === p.pid && re.test(text(e.head))).map((e) => `${e.dir} ${text(e.head)}`);
      assert.equal(tags(/^A[0-2]:/).length, 12, 'before the mute: all of A');
      assert.deepEqual(tags(/^A[3-5]:/), [], 'after it: none of A');
      assert.equal(tags(/^B[0-5]:/).length, 24, 'all of B');
      const aSocks = new Set(data(run.events).filter((e) => e.pid === p.pid && text(e.head).startsWith('A0:')).map((e) => e.sockId));
      assert.equal(aSocks.size, 2);
      assert.equal(run.events.filter((e) => e.kind === 'close' && aSocks.has(e.sockId)).length, 2, 'both ends of A close');
    });

    // Unix stream sockets (docs/kernel.md, "Unix sockets"): each end's bytes with its own byte
    // counts as seq, the peer's id once the capture has seen the peer, the socket file's path on
    // both ends, a close when a read finds the end; datagrams not at all.
    test('HTTP over a Unix stream socket: both ends, counted, paired, with the path and the end', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'seqtrace-unix-'));
      const path = join(dir, 'app.sock');
      try {
        const r = await runScript<{ pid: number; request: number; response: number }>(run, UNIXSOCK_PY, [path]);
        await waitFor('the exit of unixsock.py', () => run.events.some((e) => e.kind === 'exit' && e.pid === r.pid));
        const evs = unixData(run.events).filter((e) => e.pid === r.pid);
        const ends = [...new Set(evs.filter((e) => e.unixPath !== '').map((e) => e.sockId))];
        const http = evs.filter((e) => e.unixPath === path);
        const client = http.find((e) => e.dir === 'send' && text(e.head).startsWith('GET'))!.sockId;
        const server = http.find((e) => e.dir === 'recv')!.sockId;
        const of = (id: number, dir: string) => http.filter((e) => e.sockId === id && e.dir === dir).map((e) => [e.seq, e.len]);
        assert.deepEqual(of(client, 'send'), [[0, 10], [10, r.request - 10]], 'the request as written: two calls, counted from 0');
        assert.deepEqual(of(server, 'recv'), [[0, 8], [8, r.request - 8]], 'as read: two other calls');
        assert.deepEqual(of(server, 'send'), [[0, r.response]]);
        assert.deepEqual(of(client, 'recv'), [[0, r.response]]);
        assert.equal(text(http.find((e) => e.sockId === server && e.seq === 8)!.head), 'x/1 HTTP/1.1\r\nHost: localhost\r\nX-Part: two\r\n\r\n');
        assert.ok(http.filter((e) => e.sockId === server).every((e) => e.peerId === client), 'the server\'s end names the client\'s');
        // (0 before the server was seen; in syscall mode also once the server's socket is closed,
        // as it is before this client reads: the agent learns the pairing from the server's end)
        const named = http.filter((e) => e.sockId === client).map((e) => e.peerId);
        assert.ok(named.every((p) => p === 0 || p === server), `the client's end names no other: ${named}`);
        if (mode === 'socket') assert.ok(named.includes(server), `the client's end names the server's once that was seen: ${named}`);
        assert.ok(http.every((e) => e.srcIp === '' && e.dstIp === '' && e.srcPort === 0 && e.dstPort === 0));
        const closes = run.events.filter((e): e is CloseEvent => e.kind === 'close' && e.sockId === client);
        assert.equal(closes.length, 1, 'the client read the end: a close');
        assert.ok(closes[0].tsNs >= http.filter((e) => e.sockId === client).at(-1)!.tsNs);
        const abstract = evs.filter((e) => e.unixPath.startsWith('@seqtrace-abstract-'));
        assert.deepEqual(abstract.map((e) => `${e.dir} ${text(e.head)}`), ['send ABSTRACT ping', 'recv ABSTRACT ping']);
        // (its stdin and stdout are a socket pair too, Node's pipes: no path)
        assert.equal(ends.length, 4, 'two streams of two ends; the datagrams not seen');
        assert.equal(unixData(run.events).filter((e) => e.pid === r.pid && text(e.head).startsWith('DGRAM')).length, 0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    // HTTPS through OpenSSL (docs/kernel.md, "TLS"): the plaintext of SSL_read/SSL_write as data
    // events of the socket (id + TLS_ID), each message's first record numbered alike at both
    // ends; the ciphertext never reported.
    // (tracefs: the probes as uprobe events in tracefs, the way of kernels before 6.6 whose perf
    // events want CAP_SYS_ADMIN; a capture of its own)
    for (const [family, readahead, tracefs] of [[4, false, false], [6, false, false], [4, true, false], [4, false, true]] as const) test(`HTTPS through OpenSSL, IPv${family}${readahead ? ', a client reading ahead' : ''}${tracefs ? ', probes as tracefs uprobe events' : ''}: the plaintext, no ciphertext, one number for each message at both ends`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'seqtrace-tls-'));
      const tr = tracefs ? await start(mode, { uprobes: 'tracefs' }) : run;
      try {
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost',
          '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '2'], { stdio: 'ignore' });
        const r = await runScript<{ pid: number; port: number; requests: string[]; responses: string[] }>(tr, TLSPAIR_PY, [join(dir, 'cert.pem'), join(dir, 'key.pem'), String(family), ...(readahead ? ['readahead'] : [])], {
          beforeGo: async (pid) => {
            const lib = mappedLibssl('/proc', pid);
            assert.match(lib, /libssl\.so/, 'python3 maps libssl once ssl is imported');
            await tr.cap.tlsProcess(pid, `/proc/${pid}/root${lib}`);
          },
        });
        await waitFor('the exit of tlspair.py', () => tr.events.some((e) => e.kind === 'exit' && e.pid === r.pid));
        const evs = data(tr.events).filter((e) => e.pid === r.pid);
        assert.ok(evs.length > 0);
        assert.deepEqual(evs.filter((e) => !e.tls).map((e) => `${e.dir} ${e.len} ${text(e.head.subarray(0, 8))}`), [], 'no ciphertext event');
        assert.ok(evs.every((e) => e.sockId > TLS_ID && e.family === family), 'ids carry TLS_ID');
        if (family === 6) assert.ok(evs.every((e) => e.srcIp === '::1' && e.dstIp === '::1'), 'IPv6 addresses');
        const client = evs.find((e) => e.dir === 'send' && text(e.head).startsWith('GET /tls/1'))!;
        const server = evs.find((e) => e.dir === 'recv' && text(e.head).startsWith('GET /tls/1'))!;
        assert.ok(client && server && client.sockId !== server.sockId);
        assert.deepEqual([client.srcPort, client.dstPort, server.srcPort, server.dstPort], [server.dstPort, r.port, r.port, client.srcPort], 'the 4-tuple');
        // the bytes, as each end moved them
        const stream = (id: number, dir: string) => evs.filter((e) => e.sockId === id && e.dir === dir);
        const bytes = (list: DataEvent[]) => list.reduce((n, e) => n + e.len, 0);
        const all = (list: string[]) => list.reduce((n, m) => n + m.length, 0);
        assert.equal(bytes(stream(client.sockId, 'send')), all(r.requests));
        assert.equal(bytes(stream(server.sockId, 'recv')), all(r.requests));
        assert.equal(bytes(stream(server.sockId, 'send')), all(r.responses));
        assert.equal(bytes(stream(client.sockId, 'recv')), all(r.responses));
        assert.ok(stream(server.sockId, 'recv').some((e) => e.len === 7), 'the third request read 7 bytes at a time');
        // each message's first event: the same number at both ends
        const firstOf = (id: number, dir: string, start: string) => {
          const e = stream(id, dir).find((x) => text(x.head).startsWith(start));
          assert.ok(e, `no ${dir} of ${start} on ${id}: ${stream(id, dir).map((x) => text(x.head.subarray(0, 12))).join(' | ')}`);
          return e.seq;
        };
        for (const start of ['GET /tls/1', 'POST /tls/2']) {
          assert.equal(firstOf(server.sockId, 'recv', start), firstOf(client.sockId, 'send', start), `${start}: as read and as written`);
        }
        // read 7 bytes at a time: the first read takes the record, the next ones its rest
        const small = stream(server.sockId, 'recv').filter((e) => e.len === 7);
        assert.equal(text(small[0].head), 'GET /tl');
        assert.equal(small[0].seq, firstOf(client.sockId, 'send', 'GET /tls/3'), 'GET /tls/3: as read and as written');
        assert.ok(small.every((e) => e.seq === small[0].seq), 'reads answered from that record have its number');
        // (reading ahead, one receive takes an answer's two records: the read is numbered by the
        // record it returned, not by the last one received)
        const responses = (id: number, dir: string) => stream(id, dir).filter((e) => text(e.head).startsWith('HTTP/1.1')).map((e) => e.seq);
        assert.equal(responses(client.sockId, 'recv').length, 3);
        assert.deepEqual(responses(client.sockId, 'recv'), responses(server.sockId, 'send'), 'the responses, as read and as written');
        assert.equal(new Set(responses(client.sockId, 'recv')).size, 3, 'each its own number');
        // the socket's close ends the TLS stream too (its id without TLS_ID)
        await waitFor('the closes of both sockets', () => [client, server].every((x) => tr.events.some((e) => e.kind === 'close' && e.sockId === x.sockId - TLS_ID)));
        // a library that is not there, a file without OpenSSL, a relative path: refused, saying
        // why in the loader's words
        await assert.rejects(tr.cap.tlsProcess(process.pid, '/nonexistent/libssl.so.3'),
          /refused OpenSSL's uprobes on \/nonexistent\/libssl\.so\.3 for pid \d+: seqtrace-loader: tls \d+: \/nonexistent\/libssl\.so\.3: No such file or directory/);
        await assert.rejects(tr.cap.tlsProcess(process.pid, '/bin/true'), /refused OpenSSL's uprobes on \/bin\/true for pid \d+: seqtrace-loader: tls \d+: SSL_write in \/bin\/true: no such function/);
        await assert.rejects(tr.cap.tlsProcess(process.pid, 'libssl.so.3'), /an absolute path/);
      } finally {
        if (tracefs) await tr.cap.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    // A Unix socket has no destruction event: in syscall mode its `seen` entry (by address)
    // outlives it, and a socket made at the same address must not take its id or its mute.
    test('Unix sockets made where muted ones were are captured, with ids of their own', async () => {
      const r = await runScript<{ pid: number }>(run, UNIXREUSE_PY, [], {
        during: async (pid, say) => {
          await waitFor('A\'s three round trips', () => unixData(run.events).filter((e) => e.pid === pid && /^A2:pong/.test(text(e.head))).length === 2, 10_000);
          for (const dir of ['send', 'recv']) {
            const a = unixData(run.events).find((e) => e.pid === pid && text(e.head) === 'A0:ping' && e.dir === dir)!;
            assert.equal(await run.cap.mute(a.sockId), true);
          }
          say('next');
        },
      });
      await waitFor('the exit of unixreuse.py', () => run.events.some((e) => e.kind === 'exit' && e.pid === r.pid));
      const evs = unixData(run.events).filter((e) => e.pid === r.pid);
      const aIds = new Set(evs.filter((e) => text(e.head).startsWith('A')).map((e) => e.sockId));
      const b = evs.filter((e) => /^B\d+:/.test(text(e.head)));
      assert.equal(b.length, 80, 'every B pair\'s four calls');
      assert.ok(b.every((e) => !aIds.has(e.sockId)), 'none with an id of A\'s');
      assert.equal(new Set(b.map((e) => e.sockId)).size, 40, 'an id per socket');
    });

    test('a traced process starting threads: a thread event per new thread (creator, new tid) before its first send, and one when it ends; none untraced', async () => {
      const runThreads = (traced: boolean) => runScript<{ pid: number; main: number; a: number; b: number }>(run, THREADS_PY, [], { traced });
      const ids = await runThreads(true);
      assert.equal(ids.main, ids.pid);
      await waitFor('thread B\'s send', () => data(run.events).some((e) => e.pid === ids.pid && text(e.head).startsWith('TB:')));
      const threads = run.events.filter((e): e is ThreadEvent => e.kind === 'thread' && e.pid === ids.pid);
      assert.deepEqual(threads.map((e) => [e.ptid, e.tid]), [[ids.main, ids.a], [ids.a, ids.b]], 'main starts A, A starts B');
      const at = (e: CaptureEvent) => run.events.indexOf(e);
      const bSend = data(run.events).find((e) => e.pid === ids.pid && text(e.head).startsWith('TB:'))!;
      assert.equal(bSend.tid, ids.b);
      assert.ok(at(threads[1]) < at(bSend), 'B\'s creation is reported before anything B does');
      assert.ok(threads[0].tsNs <= threads[1].tsNs && threads[1].tsNs <= bSend.tsNs);
      // Their ends (what tells a thread started for a request from a pool's worker), B's after
      // all B did; the last thread's end is the process's exit. (Not necessarily B's before A's:
      // A's join returns once B has released its memory, before B's exit tracepoint runs, and
      // on a loaded machine A has ended first: a full run of the agent tests, 2026-12-06.)
      await waitFor('the process\'s exit', () => run.events.some((e) => e.kind === 'exit' && e.pid === ids.pid));
      const ends = run.events.filter((e): e is ThreadExitEvent => e.kind === 'thread_exit' && e.pid === ids.pid);
      assert.deepEqual(ends.map((e) => e.tid).sort(), [ids.a, ids.b].sort(), 'A and B end; the main thread\'s end is the exit event');
      const bEnd = ends.find((e) => e.tid === ids.b)!;
      assert.ok(at(bSend) < at(bEnd) && bSend.tsNs <= bEnd.tsNs, 'B\'s end comes after everything B did');

      const untraced = await runThreads(false);
      await run.cap.refreshStats(); // a drain happened after it finished
      assert.deepEqual(run.events.filter((e) => (e.kind === 'thread' || e.kind === 'thread_exit') && e.pid === untraced.pid), [], 'no thread events of an untraced process');
    });

    // An event's time is one TCP took in the same call (docs/kernel.md, "Time": tcp_clock_cache
    // for a read, tcp_wstamp_ns for a send whose bytes left): a read 200 ms after the bytes came
    // must carry the read's time, not the arrival's (nor the delayed ACK's); a send 200 ms after
    // the socket's last activity the send's, transmitted or held by TCP_CORK; a send the kernel
    // autocorked (nothing of it leaves: the stamps are the earlier transmit's) the send's. The
    // process runs in a network namespace whose lo has a slow qdisc, where autocorking happens
    // (on a plain loopback it never does). (Checked by hand on the loader of 2026-12-05, its guard
    // against caches older than the CPU's last flush taken out: stamping receives with the last
    // transmit's time fails this, and so does stamping sends with the cache without looking at
    // whether their bytes left.)
    test('an event is stamped when its call moved the bytes: a late read, a late send, a corked and an autocorked send', async () => {
      const ns = `seqtrace-clock-${process.pid}-${mode}`;
      const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
      ip('netns', 'add', ns);
      try {
        ip('-n', ns, 'link', 'set', 'lo', 'mtu', '1500', 'up');
        ip('netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '100kbit', 'burst', '1600', 'latency', '2s');
        // the namespace's TCPAutoCorking counter: the test checks that A1 really was autocorked
        const autocorkings = () => {
          const [names, values] = ip('netns', 'exec', ns, 'cat', '/proc/net/netstat').toString().split('\n').filter((l) => l.startsWith('TcpExt:'));
          return Number(values.split(' ')[names.split(' ').indexOf('TCPAutoCorking')]);
        };
        const { pid } = await runScript<{ pid: number }>(run, READLATER_PY, ['4', '200'], { netns: ns });
        const tags = ['L0', 'L1', 'L2', 'S0', 'S1', 'C0', 'A0', 'A1'];
        const mine = () => data(run.events).filter((e) => e.pid === pid && tags.includes(text(e.head).split(':')[0]));
        await waitFor('each message sent and its start read', () => tags.every((t) => ['send', 'recv'].every((dir) => mine().some((e) => e.dir === dir && text(e.head).startsWith(`${t}:`)))));
        const ev = (tag: string, dir: 'send' | 'recv') => mine().find((e) => e.dir === dir && text(e.head).startsWith(`${tag}:`))!;
        const gapMs = (later: DataEvent, earlier: DataEvent) => Number(later.tsNs - earlier.tsNs) / 1e6;
        for (const tag of tags) {
          assert.equal(ev(tag, 'recv').seq, ev(tag, 'send').seq, `${tag}: one message`);
          assert.ok(ev(tag, 'recv').tsNs <= run.arrived.get(ev(tag, 'recv'))!, `${tag}: stamped before it reached user space`);
        }
        const late = (what: string, ms: number) => assert.ok(ms >= 195 && ms < 1000, `${what} ${ms.toFixed(3)} ms later; the process slept 200 ms in between`);
        for (const tag of ['L0', 'L1', 'L2']) late(`${tag} read`, gapMs(ev(tag, 'recv'), ev(tag, 'send')));
        late('S0 sent', gapMs(ev('S0', 'send'), ev('L2', 'recv')));
        late('S1 sent', gapMs(ev('S1', 'send'), ev('S0', 'recv')));
        late('C0 sent (corked)', gapMs(ev('C0', 'send'), ev('S1', 'recv')));
        assert.ok(autocorkings() >= 1, 'the kernel autocorked a send in the namespace (else A1 tests nothing)');
        const autocorked = gapMs(ev('A1', 'send'), ev('A0', 'send'));
        assert.ok(autocorked >= 22 && autocorked < 500, `A1 (autocorked) sent ${autocorked.toFixed(3)} ms after A0; the process slept 25 ms in between`);
      } finally {
        ip('netns', 'del', ns);
      }
    });

    // A send call held up after its bytes left (a busy host, a preempted vCPU; here the sender
    // held in its network softirq by bpftrace) while the peer reads them, the peer's ACK
    // waiting in the sender's socket backlog until the call releases the socket: the send must
    // carry the time its bytes left (tcp_wstamp_ns), not the clock cache that ACK refreshed
    // (CI, 2026-12-06: a Python server's response stamped 459 µs after its client had read it).
    // When the peer also answers at once, the sender's socket acknowledges the answer within
    // the hold, a transmit that moves tcp_wstamp_ns too: the departure of the acknowledged
    // bytes is RACK's.
    for (const reply of [false, true]) {
      test(`a send held up after its bytes left is stamped when they left, not after the peer read them${reply ? ' and answered' : ''}`, async () => {
        // ten holds of ≈ 2.5 ms: without WRITE_LAG_NS, one in twenty would span a write-out
        // (every 50 ms) and take its time, after the read
        const N = 10;
        // The reader, on the other CPU, must be scheduled within the hold to read while the call
        // is held; on a busy machine it sometimes is not (CI, 2026-12-06: 1 of 10, twice;
        // 2026-12-07: 2 of 10), and such a message tests nothing but is still checked. Half of
        // them must: a run with fewer is made again, up to three times.
        for (let attempt = 1; ; attempt++) {
          let holder: Awaited<ReturnType<typeof holdSoftirqs>> | undefined;
          let held = '';
          const r = await runScript<{ pid: number; sends: [number, number][]; reads: number[] }>(run, HELDSEND_PY, ['4', String(N), ...(reply ? ['reply'] : [])], {
            beforeGo: async (pid) => { holder = await holdSoftirqs(pid); },
          }).finally(async () => { held = (await holder?.stop()) ?? ''; });
          const mine = () => data(run.events).filter((e) => e.pid === r.pid && text(e.head).startsWith('D'));
          await waitFor('each message sent and read', () => mine().length >= 2 * N);
          const readInHold: number[] = [];
          for (let i = 0; i < N; i++) {
            const ev = (dir: 'send' | 'recv') => mine().find((e) => e.dir === dir && text(e.head).startsWith(`D${i}:`));
            const sent = ev('send');
            const read = ev('recv');
            assert.ok(sent && read, `D${i}: both ends captured`);
            const [before, after] = r.sends[i];
            assert.ok(after - before >= 1e6, `D${i}: the send call was held (${((after - before) / 1e6).toFixed(3)} ms; bpftrace said: ${held})`);
            if (r.reads[i] < after) readInHold.push(i);
            assert.ok(Number(sent.tsNs) >= before, `D${i}: stamped after the call began`);
            assert.ok(sent.tsNs <= read.tsNs, `D${i}: sent at ${sent.tsNs}, ${Number(sent.tsNs - read.tsNs) / 1000} µs after the peer read it (${read.tsNs})`);
          }
          console.log(`# held sends: read while the call was held: ${readInHold.length} of ${N} (${readInHold.join(' ')})`);
          assert.equal((await run.cap.refreshStats()).late, 0, 'no event out of time order');
          if (readInHold.length >= N / 2) break;
          assert.ok(attempt < 3, `only ${readInHold.length} of ${N} messages were read while their send call was held, in each of 3 runs (else this tests little)`);
        }
      });
    }

    // An accepted socket's first answer, sent before the peer acknowledged any of its segments
    // (across hosts always; here the client's quick ACKs are off): its RACK state is all zero,
    // and end_seq 0 lies "after" half of all sequence numbers. The loader of 2026-12-07 took
    // that as the answer acknowledged at time 0 and stamped it with the last write-out's
    // cutoff, up to tens of ms before the request it answered was read (CI: the round-trip
    // test below, when the client's ACK happened to be late, its server's A0 47 ms before its Q0).
    for (const family of ['4', '6']) {
      test(`the first answer on an accepted connection, not yet acknowledged, is stamped after its request was read, IPv${family}`, async () => {
        const N = 40; // half of the initial sequence numbers hit it: all 40 miss with p = 2⁻²⁰
        const r = await runScript<{ pid: number; unacked: number[] }>(run, FIRSTANSWER_PY, [family, String(N)]);
        const mine = () => data(run.events).filter((e) => e.pid === r.pid && /^[QA]\d{3}:/.test(text(e.head)));
        await waitFor('each request and answer on both ends', () => mine().length >= 4 * N);
        let exposed = 0;
        for (let i = 0; i < N; i++) {
          const ev = (tag: string, dir: 'send' | 'recv') => mine().find((e) => e.dir === dir && text(e.head).startsWith(`${tag}${String(i).padStart(3, '0')}:`))!;
          const [qRead, aSent, aRead] = [ev('Q', 'recv'), ev('A', 'send'), ev('A', 'recv')];
          assert.ok(qRead && aSent && aRead, `connection ${i}: captured`);
          assert.ok(aSent.tsNs >= qRead.tsNs, `connection ${i}: answer sent at ${aSent.tsNs}, ${Number(qRead.tsNs - aSent.tsNs) / 1000} µs before its request was read (${qRead.tsNs}); seq ${aSent.seq}, ${r.unacked[i]} segments unacknowledged`);
          assert.ok(aSent.tsNs <= aRead.tsNs, `connection ${i}: answer sent after the peer read it`);
          if (r.unacked[i] > 0 && aSent.seq + aSent.len >= 2 ** 31) exposed++;
        }
        // the case itself: the answer not yet acknowledged when its send returned, and its end
        // in the half of sequence numbers that end_seq 0 is "after"
        console.log(`# first answers: ${exposed} of ${N} unacknowledged with their end in the upper half`);
        assert.ok(exposed >= 4, `only ${exposed} of ${N} answers were unacknowledged with their end at or past 2³¹ (else this tests little)`);
      });
    }

    test('round trips across CPUs (events batched per CPU): complete, in time order, per socket in seq order, closes last; an event on an idle CPU arrives within the flush period (50 ms)', async () => {
      const N = 3000; // ~12000 events of ~290 bytes: hundreds of 16 KiB batches
      const before = await run.cap.refreshStats();
      const p = spawn('python3', ['-u', PINGPONG_PY, String(N), '3000'], { stdio: 'pipe' });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => { out += d; });
      p.stderr.on('data', (d) => { err += d; });
      try {
        await waitFor('pingpong.py ready', () => out.includes('ready\n'), 10_000);
        await run.cap.addPid(p.pid!);
        p.stdin.write('go\n');
        await waitFor('the round trips done', () => out.split('\n').length > 2, 60_000);
        const ids = JSON.parse(out.split('\n')[1]) as { pid: number; client: number; server: number; cpus: number };
        const mine = () => data(run.events).filter((e) => e.pid === ids.pid);
        const tag = (e: DataEvent) => text(e.head.subarray(0, 8)); // "Q000123:"
        await waitFor('every round trip seen on both ends', () => mine().filter((e) => /^[QA]\d{6}:/.test(tag(e))).length >= 4 * N, 20_000);
        const sockets = new Set(mine().filter((e) => /^[QA]\d{6}:/.test(tag(e))).map((e) => e.sockId));
        assert.equal(sockets.size, 2, 'client and server end');
        await waitFor('both sockets closed', () => [...sockets].every((id) => run.events.some((e) => e.kind === 'close' && e.sockId === id)), 10_000);

        // one time order over all CPUs (the loader merges the per-CPU batches)
        const kernelEvents = run.events.filter((e) => e.kind !== 'stats');
        for (let i = 1; i < kernelEvents.length; i++) {
          const a = kernelEvents[i - 1] as { tsNs: number }, b = kernelEvents[i] as { tsNs: number };
          assert.ok(a.tsNs <= b.tsNs, `event ${i} (${kernelEvents[i].kind}) is older than the one before it`);
        }
        // each thread in its own program order; each message whole, in seq order per socket and direction
        const rt = mine().filter((e) => /^[QA]\d{6}:/.test(tag(e)));
        const expect = (tid: number, first: 'send' | 'recv') => {
          const evs = rt.filter((e) => e.tid === tid);
          assert.equal(evs.length, 2 * N);
          evs.forEach((e, k) => {
            const i = Math.floor(k / 2);
            const q = k % 2 === 0; // both threads: Q(i) first, then A(i)
            assert.equal(e.dir, k % 2 === 0 ? first : first === 'send' ? 'recv' : 'send',
              `event ${k} of thread ${tid}: ${evs.slice(Math.max(0, k - 2), k + 2).map((x) => `${x.dir} ${tag(x)} ${x.tsNs}`).join(', ')}`);
            assert.equal(tag(e), `${q ? 'Q' : 'A'}${String(i).padStart(6, '0')}:`, `event ${k} of thread ${tid}`);
            assert.equal(e.len, 158);
          });
        };
        expect(ids.client, 'send');
        expect(ids.server, 'recv');
        for (const id of sockets) {
          for (const dir of ['send', 'recv'] as const) {
            const evs = rt.filter((e) => e.sockId === id && e.dir === dir);
            for (let k = 1; k < evs.length; k++) assert.equal(evs[k].seq, (evs[k - 1].seq + evs[k - 1].len) >>> 0);
          }
          const closeAt = run.events.findIndex((e) => e.kind === 'close' && e.sockId === id);
          const lastData = run.events.reduce((last, e, k) => (e.kind === 'data' && e.sockId === id ? k : last), -1);
          assert.ok(closeAt > lastData, 'the close of a socket comes after all its data');
        }
        // across CPUs, what caused what comes first: the server read Q(i) before the client
        // could send Q(i+1); the client read A(i) before the server could read Q(i+1)
        const at = new Map(rt.map((e) => [`${e.tid}:${e.dir}:${tag(e)}`, run.events.indexOf(e)]));
        for (let i = 0; i + 1 < N; i++) {
          const t = (k: number) => String(k).padStart(6, '0');
          assert.ok(at.get(`${ids.server}:recv:Q${t(i)}:`)! < at.get(`${ids.client}:send:Q${t(i + 1)}:`)!, `round trip ${i}: server read before the next request`);
          assert.ok(at.get(`${ids.client}:recv:A${t(i)}:`)! < at.get(`${ids.server}:recv:Q${t(i + 1)}:`)!, `round trip ${i}: client read before the server's next read`);
        }

        // the process then sends one message and sleeps on an otherwise quiet CPU: only the
        // loader's flush at its next drain brings that event out of the CPU's batch
        const idle = await waitFor('the message before the pause', () => {
          const l = mine().filter((e) => text(e.head).startsWith('IDLE:'));
          return l.length >= 2 && l;
        }, 2_000);
        assert.equal(idle.length, 2, 'its send and its receive');
        for (const e of idle) {
          const lateMs = (run.arrived.get(e)! - e.tsNs) / 1e6;
          assert.ok(lateMs < 1000, `the event arrived ${lateMs.toFixed(1)} ms after it happened (flushes every 50 ms)`);
        }
        assert.equal(p.exitCode, null, 'it arrived while the process was still sleeping');
        const after = await run.cap.refreshStats();
        assert.equal(after.ringbufDrops, before.ringbufDrops, 'nothing lost');
        assert.equal(after.late, 0, 'the loader never got an event after it had written later ones');
      } finally {
        p.kill();
        await exited(p);
      }
      assert.ok(err === '' || p.signalCode === 'SIGTERM', err);
    });

    // The agent decides at exec whether to trace a process, and a curl makes its request a few
    // ms after its exec: the loader writes an exec event out as soon as its wakeup comes, not at
    // its next drain (DRAIN_MS, 15 ms later). The loader of 2026-12-06 did not when that wakeup
    // fell on a drain due for its periodic flush (FLUSH_NS, 50 ms after the last write-out): it
    // took its cutoff before reading the exec. Each exec here comes 55 ms after the previous
    // one's write-out, in that window: with that loader all 20 came 15 ms late, four runs in a
    // row (and curls with a service name went untraced one time in four at random moments).
    test('exec events reach user space at once, also on a drain due to flush', async () => {
      const N = 20;
      const lateMs: number[] = [];
      let lastOut = 0;
      for (let i = 0; i < N; i++) {
        if (lastOut) await sleep(Math.max(0, lastOut + 53e6 - Number(process.hrtime.bigint())) / 1e6);
        const p = spawn('/bin/true', [], { stdio: 'ignore' });
        const pid = p.pid!;
        await exited(p);
        const exec = await waitFor(`the exec event of ${pid}`, () => execsOf(run.events, pid)[0]);
        lastOut = run.arrived.get(exec)!;
        lateMs.push((lastOut - exec.tsNs) / 1e6);
      }
      // By the median: a busy host delays some (an exec whose process exits at once may leave
      // its CPU idle before the wakeup is delivered; CI, 2026-12-07: twice a run of 5–6 of 20
      // at 6–14 ms after a stall of the machine, once 1.4 s), where the old loader's were all
      // 15 ms late.
      const median = [...lateMs].sort((a, b) => a - b)[N / 2 - 1];
      assert.ok(median < 8, `half of ${N} exec events came over 8 ms after the exec: ${lateMs.map((ms) => ms.toFixed(1)).join(' ')} ms`);
    });

    test('an untraced process produces no events', async () => {
      // Only events from now on: the server's port may be one an earlier test's traced
      // connection used (the kernel hands out a freed port again; CI, 2026-12-07).
      const since = Number(process.hrtime.bigint());
      const srv = await httpServer(dir, '127.0.0.1');
      try {
        const curl = curlWaiting(`http://127.0.0.1:${srv.port}/hello.txt`);
        curl.go();
        assert.equal(await exited(curl.proc), 0);
        const stats = await run.cap.refreshStats(); // a drain happened after curl finished
        assert.ok(stats.events > 0);
        await sleep(50);
        const seen = data(run.events).filter(
          (e) => e.tsNs >= since && (e.pid === srv.proc.pid || e.pid === curl.proc.pid || e.dstPort === srv.port || e.srcPort === srv.port),
        );
        assert.deepEqual(seen, []);
      } finally {
        srv.proc.kill();
        await exited(srv.proc);
      }
    });
  });
}

/**
 * 3000 writes of 3000 bytes by a traced process, the loader stopped meanwhile: far more than a
 * small ring buffer holds. (Left running, a fast loader on an idle host drained a 64 KiB ring
 * in time once in a dozen runs: a test of drops that saw none.)
 */
async function burst(run: Run) {
  const p = spawn('python3', ['-c', `${WITH_TCP_PAIR}
import threading
_, _, l, c, s = tcp_pair("4")
def drain():
    while s.recv(1 << 20): pass
threading.Thread(target=drain, daemon=True).start()
print("ready", flush=True); sys.stdin.readline()
msg = b"x" * 3000
for _ in range(3000): c.sendall(msg)
c.close()
`], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  await waitFor('burst ready', () => out.includes('ready'), 10_000);
  await run.cap.addPid(p.pid!);
  process.kill(run.cap.loaderPid, 'SIGSTOP');
  try {
    p.stdin.write('go\n');
    assert.equal(await exited(p), 0);
  } finally {
    process.kill(run.cap.loaderPid, 'SIGCONT');
  }
}

/** A process that makes one loopback TCP connection and, on go(), sends one message on it. */
async function sendOnce(): Promise<{ pid: number; go: () => void; done: Promise<number> }> {
  const p = spawn('python3', ['-c', `${WITH_TCP_PAIR}
_, _, l, c, s = tcp_pair("4")
print("ready", flush=True); sys.stdin.readline()
c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"); s.recv(100)
`], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  await waitFor('sender ready', () => out.includes('ready'), 10_000);
  return { pid: p.pid!, go: () => p.stdin.write('go\n'), done: exited(p) };
}

// --provisional-exec (the agent's setting): a process is traced from its exec until user space
// decides; `del` ends it with the children it forked meanwhile, `add` keeps them all.
describe('capture: processes traced from their exec until decided', { skip: SKIP, timeout: 60_000 }, () => {
  let run: Run;
  let traced: () => number[];
  let idle: ChildProcess;
  before(async () => {
    run = await start('socket', { provisionalExec: true, execEnv: ['SEQT_SERVICE', 'SEQT_OTHER'] });
    const id = bpfObjectsOf(run.cap.loaderPid).maps.find((m) => m.name === 'traced')!.id;
    traced = () => tracedPids(id);
    // Something traced for good, so that the data path is attached (as it is while the agent
    // traces anything; with nothing traced, an exec is traced to no effect).
    idle = spawn('sleep', ['60'], { stdio: 'ignore' });
    await run.cap.addPid(idle.pid!);
  });
  after(async () => {
    idle?.kill();
    await run?.cap.close();
  });

  /** A process that forks a child at once, sends a request on loopback, and waits for a line. */
  async function forking(): Promise<{ p: ChildProcess; child: number }> {
    const p = spawn('python3', ['-c', `${WITH_TCP_PAIR}
import os
child = os.fork()
if child == 0:
    sys.stdin.readline(); os._exit(0)
_, _, l, c, s = tcp_pair("4")
c.sendall(b"GET /early HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"); s.recv(100)
print(child, flush=True); sys.stdin.readline(); os.waitpid(child, 0)
`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d) => { out += d; });
    const child = Number(await waitFor('the child\'s pid', () => (out.includes('\n') ? out.trim() : undefined), 10_000));
    return { p, child };
  }

  test('an exec is traced from its first instruction and says so; del ends it and its child, add keeps both', async () => {
    const a = await forking();
    const b = await forking();
    try {
      for (const x of [a, b]) {
        const exec = await waitFor('its exec event', () => execsOf(run.events, x.p.pid!)[0]);
        assert.equal(exec.provisional, true, 'the exec event says the process is traced until decided');
        await waitFor('its request, sent before anyone decided', () => data(run.events).find((e) => e.pid === x.p.pid && text(e.head).startsWith('GET /early')));
        assert.ok(traced().includes(x.p.pid!) && traced().includes(x.child), 'it and its child are traced');
      }
      await run.cap.removePid(a.p.pid!);
      assert.ok(!traced().includes(a.p.pid!) && !traced().includes(a.child), 'del ends the process and the child it forked meanwhile');
      await run.cap.addPid(b.p.pid!);
      assert.ok(traced().includes(b.p.pid!) && traced().includes(b.child), 'add keeps both');
      await run.cap.removePid(b.child); // decided alone now: its root's del no longer reaches it
      await run.cap.removePid(b.p.pid!);
      assert.deepEqual(traced().filter((pid) => pid === b.p.pid || pid === b.child), []);
    } finally {
      for (const x of [a, b]) { x.p.stdin!.end('\n'); await exited(x.p); }
    }
  });

  test('del ends the children of a process that exited before the decision', async () => {
    // A shell-like start: the process forks a child (no exec) and is gone before anyone decided.
    const p = spawn('python3', ['-c', `import os, sys, time
child = os.fork()
if child == 0:
    time.sleep(30); os._exit(0)
print(child, flush=True)
os._exit(0)
`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout!.on('data', (d) => { out += d; });
    let child = 0;
    try {
      child = Number(await waitFor('the child\'s pid', () => (out.includes('\n') ? out.trim() : undefined), 10_000));
      if (p.exitCode === null) await new Promise((r) => p.once('exit', r)); // (the child holds its pipes)
      assert.ok(traced().includes(child), 'the child is traced with its parent, provisionally');
      await run.cap.removePid(p.pid!);
      assert.ok(!traced().includes(child), 'the parent\'s del ends it though the parent has exited');
    } finally {
      if (child) process.kill(child, 'SIGKILL');
    }
  });

  test('an untraced process\'s exec is provisional; once added, its next exec is not; each names its image', async () => {
    const p = spawn('sh', ['-c', 'read x; exec sleep 5'], { stdio: ['pipe', 'ignore', 'inherit'] });
    try {
      const first = await waitFor('the exec of sh', () => execsOf(run.events, p.pid!)[0]);
      assert.equal(first.provisional, true);
      await run.cap.addPid(p.pid!); // selected
      p.stdin!.write('\n');
      const second = await waitFor('the exec of sleep', () => execsOf(run.events, p.pid!)[1]);
      assert.equal(second.provisional, false, 'traced for good before it: stays so, nothing to decide');
      assert.deepEqual([first.comm, second.comm], ['sh', 'sleep'], 'each exec names the new image');
      assert.deepEqual([first.env, second.env], [null, null], 'none of the exec-env variables: nothing carried');
    } finally {
      p.kill();
      await exited(p);
    }
  });

  test('an exec carries the exec-env variables of the new image\'s environment, read before the process is gone', async () => {
    // Gone 20 ms after its exec, as a short client is; the agent reads /proc 1–2 ms after an
    // exec at best, seconds after when busy. (A process gone within a millisecond, `true`, is
    // gone before the loader reads too.) Its variable after 200 KiB of others, as a service's may be.
    const filler: Record<string, string> = {};
    for (let i = 0; i < 200; i++) filler[`FILL_${i}`] = 'x'.repeat(1000);
    const quick = spawn('sleep', ['0.02'], { env: { ...filler, SEQT_SERVICE: 'quick-one', SEQT_SERVICEX: 'no', PATH: '/usr/bin:/bin' } });
    const plain = spawn('sleep', ['0.02'], { env: { PATH: '/usr/bin:/bin', SEQT_OTHER: '' } });
    await Promise.all([exited(quick), exited(plain)]);
    const q = await waitFor('the exec of the quick one', () => execsOf(run.events, quick.pid!)[0]);
    assert.deepEqual(q.env, new Map([['SEQT_SERVICE', 'quick-one']]), 'only the names asked for, whole names only');
    const p = await waitFor('the exec of the plain one', () => execsOf(run.events, plain.pid!)[0]);
    assert.deepEqual(p.env, new Map([['SEQT_OTHER', '']]), 'an empty value is a value');
  });
});

// (two minutes: its tests took 58 s together on CI's machine, 2026-12-07)
describe('capture limits and cleanup', { skip: SKIP, timeout: 120_000 }, () => {
  test('a full ring buffer counts lost batches of events (64 KiB ring, 8 KiB batches)', async () => {
    const run = await start('socket', { ringbufBytes: 65536, captureBytes: 1024 });
    try {
      await burst(run);
      const stats = await run.cap.refreshStats();
      assert.ok(stats.ringbufDrops > 0, `drops counted: ${JSON.stringify(stats)}`);
      assert.ok(stats.events > 0);
      const sends = data(run.events).filter((e) => e.dir === 'send' && e.len === 3000).length;
      assert.ok(sends > 0 && sends < 3000, `some of the 3000 writes seen, not all: ${sends}`);
    } finally {
      await run.cap.close();
    }
  });

  test('a lost batch that carried a socket\'s 4-tuple: the socket\'s next events still come with the right tuple', async () => {
    // The kernel sends a socket's tuple only in the first record of it a CPU's batches hold
    // (st_data_rec); the loader fills it in for the others. Here the batches holding B's first
    // records are lost (the loader is stopped, the ring buffer full), so nobody downstream ever
    // saw B's tuple: B's next messages must still arrive, with B's ports.
    const run = await start('socket', { ringbufBytes: 65536, captureBytes: 1024 });
    const p = spawn('python3', ['-c', `${WITH_TCP_PAIR}
import json, os
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one CPU: one batch, one cache
def pair():
    _, _, l, c, s = tcp_pair("4"); l.close()
    return c, s
def exchange(c, s, msg):
    c.sendall(msg); got = b""
    while len(got) < len(msg): got += s.recv(len(msg) - len(got))
a, b = pair(), pair()
print(json.dumps({"client": b[0].getsockname()[1], "server": b[1].getsockname()[1]}), flush=True)
sys.stdin.readline()
for i in range(300): exchange(*a, b"a" * 1000)  # fills the 64 KiB ring buffer (loader stopped)
for i in range(100): exchange(*b, b"b" * 1000)  # B's first records: in batches that are lost
print("lost", flush=True)
sys.stdin.readline()
for i in range(5): exchange(*b, ("POST%d:" % i).encode() + b"." * 100)
print("done", flush=True)
sys.stdin.readline()
`], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    try {
      await waitFor('script ready', () => out.includes('\n'), 10_000);
      const ports = JSON.parse(out.split('\n')[0]) as { client: number; server: number };
      await run.cap.addPid(p.pid!);
      process.kill(run.cap.loaderPid, 'SIGSTOP');
      try {
        p.stdin.write('go\n');
        await waitFor('the ring buffer overflowing', () => out.includes('lost\n'), 20_000);
      } finally {
        process.kill(run.cap.loaderPid, 'SIGCONT');
      }
      const lost = await run.cap.refreshStats();
      assert.ok(lost.ringbufDrops > 0, `drops counted: ${JSON.stringify(lost)}`);
      p.stdin.write('go\n');
      await waitFor('the last messages', () => out.includes('done\n'), 10_000);
      const post = await waitFor('the 5 messages on B, both ends', () => {
        const evs = data(run.events).filter((e) => e.pid === p.pid && text(e.head).startsWith('POST'));
        return evs.length >= 10 && evs;
      }, 5_000);
      for (const e of post) {
        const [own, peer] = e.dir === 'send' ? [ports.client, ports.server] : [ports.server, ports.client];
        assert.deepEqual([e.srcIp, e.srcPort, e.dstIp, e.dstPort, e.family], ['127.0.0.1', own, '127.0.0.1', peer, 4], text(e.head.subarray(0, 6)));
      }
      for (const e of data(run.events).filter((x) => x.pid === p.pid && x.head[0] !== 0x61 /* a */)) {
        assert.ok([ports.client, ports.server].includes(e.srcPort) && [ports.client, ports.server].includes(e.dstPort), 'every event of B has B\'s ports');
      }
    } finally {
      p.kill();
      await exited(p);
      await run.cap.close();
    }
  });

  test('a full ring buffer counts lost events; nothing is left in the kernel after close', async () => {
    const run = await start('socket', { ringbufBytes: 16384, captureBytes: 4096 });
    const loaderPid = run.cap.loaderPid;
    const keeper = spawn('sleep', ['60']); // traced throughout, so the data path stays attached
    let held: ReturnType<typeof bpfObjectsOf> = { progs: [], links: [], maps: [] };
    try {
      await run.cap.addPid(keeper.pid!);
      held = bpfObjectsOf(loaderPid);
      assert.ok(held.progs.length >= 6 && held.links.length >= 6, `loader holds programs and links: ${JSON.stringify(held)}`);
      await burst(run);
      const stats = await run.cap.refreshStats();
      assert.ok(stats.ringbufDrops > 0, `drops counted: ${JSON.stringify(stats)}`);
      assert.ok(stats.events > 0);
      assert.equal(stats.truncated, 0);
      assert.ok(stats.loaderCpuNs > 0);
    } finally {
      await run.cap.close();
      keeper.kill();
    }
    assert.deepEqual(bpfObjectsOf(loaderPid), { progs: [], links: [], maps: [] }, 'the loader is gone');
    // the kernel frees programs, links and maps shortly after their last reference (RCU)
    const ids = (what: string) => (JSON.parse(execFileSync('bpftool', ['-j', what, 'show'], { encoding: 'utf8' })) as Array<{ id: number }>).map((o) => o.id);
    const remaining = () => {
      const progs = ids('prog');
      const links = ids('link');
      const maps = ids('map');
      return [...held.progs.filter((id) => progs.includes(id)).map((id) => `prog ${id}`),
        ...held.links.filter((id) => links.includes(id)).map((id) => `link ${id}`),
        ...held.maps.filter((m) => maps.includes(m.id)).map((m) => `map ${m.id} ${m.name}`)];
    };
    let left = remaining();
    for (let i = 0; i < 100 && left.length > 0; i++) {
      await sleep(50);
      left = remaining();
    }
    assert.deepEqual(left, [], 'every program, link and map of the loader is freed after close');
  });

  for (const mode of ['socket', 'syscall'] as const) {
    test(`${mode} mode: the data path is attached only while a process is traced (untraced processes pay no dispatch when nothing is)`, async () => {
      const run = await start(mode);
      const dataProgs = mode === 'socket' ? ['sock_send', 'sock_recv', 'sock_destroy'] : ['sys_enter_read', 'sys_exit_read', 'sock_destroy'];
      const attached = () => linkedProgs(run.cap.loaderPid);
      const dataAttached = () => dataProgs.filter((name) => attached().includes(name));
      const first = spawn('sleep', ['60']);
      const second = spawn('sleep', ['60']);
      try {
        assert.deepEqual(dataAttached(), [], `nothing traced yet: only ${attached().join(', ')}`);
        for (const name of ['proc_exec', 'proc_fork', 'proc_exit']) assert.ok(attached().includes(name), `${name} always attached`);

        await run.cap.addPid(first.pid!);
        assert.deepEqual(dataAttached(), dataProgs, 'attached by the first add, before its ack');
        assert.ok(!attached().includes('sock_state'), 'sock_state only while a Go process waits to call out (golang.test.ts)');
        await run.cap.addPid(second.pid!);
        await run.cap.removePid(first.pid!);
        await sleep(1500);
        assert.deepEqual(dataAttached(), dataProgs, 'still attached while the second is traced');

        second.kill();
        await exited(second);
        await waitFor('data path detached after the last traced process exited', () => dataAttached().length === 0, 3000);

        await run.cap.addPid(first.pid!);
        assert.deepEqual(dataAttached(), dataProgs, 'attached again');
        const sock = await sendOnce(); // still captures after a detach and attach
        await run.cap.addPid(sock.pid);
        sock.go();
        await waitFor('a data event of the process traced after the re-attach',
          () => data(run.events).some((e) => e.pid === sock.pid && e.dir === 'send'), 5000);
        await run.cap.removePid(first.pid!);
        await sock.done;
        await waitFor('data path detached after del', () => dataAttached().length === 0, 3000);
      } finally {
        first.kill();
        second.kill();
        await run.cap.close();
      }
    });
  }

  for (const keep of [false, true]) {
    test(`syscall mode: a call entered before a del is not taken for another call after the next add (${keep ? 'another process traced throughout' : 'the data path detached in between'})`, async () => {
      // A thread blocks in recv on socket A while traced (its enter is saved in `calls`); its
      // process is deleted; the recv returns untraced and the thread blocks in a recv on socket
      // B, untraced too; the process is added again. B's recv must not come out as a receive on A
      // (the saved enter's fd and buffer) with B's length.
      const run = await start('syscall');
      const keeper = spawn('sleep', ['60']);
      if (keep) await run.cap.addPid(keeper.pid!);
      const p = spawn('python3', ['-c', `${WITH_TCP_PAIR}
import threading
_, _, la, a1, a2 = tcp_pair("4"); _, _, lb, b1, b2 = tcp_pair("4")
go = threading.Event()
def reader():
    go.wait(); a1.recv(100)
    print("a-read", flush=True); b1.recv(100)
t = threading.Thread(target=reader); t.start()
print("ports", a1.getsockname()[1], b2.getsockname()[1], flush=True)
for line in sys.stdin:
    if line.startswith("start"): go.set()
    elif line.startswith("a"): a2.sendall(b"AAAA")
    elif line.startswith("b"): b2.sendall(b"BBBBBBB"); t.join(); break
  `], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d) => { out += d; });
      const attached = () => linkedProgs(run.cap.loaderPid).includes('sys_exit_recvfrom');
      try {
        const [aPort, bPort] = (await waitFor('ports', () => /ports (\d+) (\d+)\n/.exec(out) ?? undefined, 10_000)).slice(1).map(Number);
        await run.cap.addPid(p.pid!);
        p.stdin.write('start\n');
        await sleep(300); // the reader is inside recv on A, its enter seen
        await run.cap.removePid(p.pid!);
        if (keep) await sleep(1500); // the loader's check for a detach runs every second
        await waitFor(keep ? 'data path still attached' : 'data path detached', () => attached() === keep, 3000);
        p.stdin.write('a\n');
        await waitFor('A read, unseen', () => out.includes('a-read'), 5000);
        await sleep(300); // the reader is inside recv on B, its enter unseen
        await run.cap.addPid(p.pid!);
        p.stdin.write('b\n');
        assert.equal(await exited(p), 0);
        await run.cap.refreshStats();
        const mine = data(run.events).filter((e) => e.pid === p.pid);
        assert.ok(mine.some((e) => e.dir === 'send' && e.srcPort === bPort && e.len === 7), 'B\'s send, after the attach, is captured');
        const wrong = mine.filter((e) => e.dir === 'recv' && e.srcPort === aPort && e.len === 7);
        assert.deepEqual(wrong.map((e) => e.head.toString('latin1')), [], 'no receive on A with B\'s length');
      } finally {
        p.kill();
        keeper.kill();
        await run.cap.close();
      }
    });
  }

  test('syscall mode: a socket opened while the data path was detached does not take the id of one closed meanwhile', async () => {
    // `seen` (sock address -> id) loses an entry when sock_destroy sees the socket end; while
    // the data path is detached no close is seen, and TCP sockets' memory is reused at once
    // (SLAB_TYPESAFE_BY_RCU), so a new socket at a closed one's address would carry its id:
    // the agent would take its bytes for the old connection's.
    const run = await start('syscall');
    const p = spawn('python3', ['-c', `${WITH_TCP_PAIR}
def ports(pairs): return " ".join(f"{c.getsockname()[1]} {l.getsockname()[1]}" for _, _, l, c, _ in pairs)
old = [tcp_pair("4") for _ in range(20)]
print("old", ports(old), flush=True)
sys.stdin.readline()
for _, _, l, c, s in old: c.sendall(b"o"); s.recv(1)
print("sent", flush=True)
sys.stdin.readline()
for _, _, l, c, s in old: c.close(); s.close(); l.close()
new = [tcp_pair("4") for _ in range(60)]
print("new", ports(new), flush=True)
sys.stdin.readline()
for _, _, l, c, s in new: c.sendall(b"n"); s.recv(1)
print("done", flush=True)
  `], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    // the whole line (up to its newline): a line read in two pieces must not give a cut list
    const portsOf = (what: string) => waitFor(`${what} ports`, () => new RegExp(`^${what} ([\\d ]+)\n`, 'm').exec(out) ?? undefined, 10_000)
      .then((m) => new Set(m[1].split(' ').map(Number)));
    const attached = () => linkedProgs(run.cap.loaderPid).includes('sys_exit_recvfrom');
    try {
      const oldPorts = await portsOf('old');
      await run.cap.addPid(p.pid!);
      p.stdin.write('go\n');
      await waitFor('old sends', () => out.includes('sent'), 5000);
      const oldIds = await waitFor('the old sockets\' events', () => {
        const ids = new Set(data(run.events).filter((e) => e.pid === p.pid && oldPorts.has(e.srcPort)).map((e) => e.sockId));
        return ids.size === 40 ? ids : undefined; // both ends of 20 pairs
      }, 5000);
      await run.cap.removePid(p.pid!);
      await waitFor('data path detached', () => !attached(), 3000);
      p.stdin.write('close and open\n');
      const newPorts = await portsOf('new'); // a closed socket's port may be among them
      const mark = run.events.length;
      await run.cap.addPid(p.pid!);
      p.stdin.write('send\n');
      assert.equal(await exited(p), 0);
      await run.cap.refreshStats();
      const mine = () => data(run.events.slice(mark)).filter((e) => e.pid === p.pid);
      const missing = () => {
        const seen = new Set(mine().map((e) => e.srcPort));
        return [...newPorts].filter((port) => !seen.has(port));
      };
      // Once in a CI run one of the 120 was missing here, not seen in 20 reruns; cause not
      // found (a port list cut where its line was read in two pieces is possible: portsOf waits
      // for the newline since). Wait a little for a late event, then name what lacks.
      await waitFor('both ends of every new pair', () => missing().length === 0, 3000).catch(() => undefined);
      const stats = run.events.filter((e) => e.kind === 'stats').at(-1);
      const others = mine().filter((e) => !newPorts.has(e.srcPort)).map((e) => `${e.dir} ${e.srcPort}->${e.dstPort} id ${e.sockId} len ${e.len}`);
      assert.deepEqual(missing(), [], `both ends of every new pair captured; other events: ${others.join(', ')}; stats ${JSON.stringify(stats)}`);
      const fresh = mine().filter((e) => newPorts.has(e.srcPort));
      const reused = fresh.filter((e) => oldIds.has(e.sockId)).map((e) => `port ${e.srcPort} has id ${e.sockId}`);
      assert.deepEqual(reused, [], 'no new socket carries a closed socket\'s id');
    } finally {
      p.kill();
      await run.cap.close();
    }
  });

  test('without privileges the start fails with SEQ_ERR_EBPF_UNAVAILABLE naming the capability', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqtrace-nopriv-'));
    try {
      const wrapper = join(dir, 'loader-as-nobody');
      writeFileSync(wrapper, `#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups '${defaultLoaderPath()}' "$@"\n`, { mode: 0o755 });
      await assert.rejects(startCapture({ mode: 'socket', loaderPath: wrapper, onEvents() {}, onError() {} }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'SEQ_ERR_EBPF_UNAVAILABLE');
          assert.match(e.message, /Operation not permitted.*needs CAP_BPF\+CAP_PERFMON \(or root\)/);
          return true;
        });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('auto mode picks socket mode when the kernel has sock_send_length, else syscall mode', async () => {
    const btf = execFileSync('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux', 'format', 'raw'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    const expected = btf.includes("TYPEDEF 'btf_trace_sock_send_length'") ? 'socket' : 'syscall';
    const cap = await startCapture({ mode: 'auto', onEvents() {}, onError(e) { throw e; } });
    try {
      assert.equal(cap.mode, expected);
    } finally {
      await cap.close();
    }
  });

  test('bad options are refused with a message naming the value', async () => {
    await assert.rejects(startCapture({ captureBytes: 5000, onEvents() {}, onError() {} }), /capture_bytes 5000 is not an integer from 0 to 4096/);
    await assert.rejects(startCapture({ ringbufBytes: 5000, onEvents() {}, onError() {} }), /5000 is not a power of two/);
    await assert.rejects(startCapture({ loaderPath: '/nonexistent/loader', onEvents() {}, onError() {} }),
      (e: Error & { code?: string }) => e.code === 'SEQ_ERR_EBPF_LOAD' && /missing/.test(e.message));
    // the loader itself: a choice it does not know, named with the ones it does (exit 1, usage)
    for (const [args, said] of [
      [['--mode', 'x'], '--mode must be socket, syscall or auto, got "x"'],
      [['--mode'], '--mode must be socket, syscall or auto, got ""'],
      [['--uprobes', 'nope'], '--uprobes must be auto, perf, tracefs or perf-or-tracefs, got "nope"'],
    ] as const) {
      const r = spawnSync(defaultLoaderPath(), [...args], { encoding: 'utf8' });
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim(), `seqtrace-loader: ${said}`);
    }
  });
});

// (a suite of its own, with its own minute)
describe('capture: uprobes and privileges', { skip: SKIP, timeout: 60_000 }, () => {
  // Since the fix for CVE-2025-38466 the kernel refuses perf-event uprobes without CAP_SYS_ADMIN;
  // uprobe_multi links (6.6+) need only the agent's capabilities; uprobe events in tracefs (the
  // fallback of older kernels) need uid 0, whose tracefs files they are (src/bpf/uprobes.h).
  test('uprobes with only the agent\'s capabilities: as uprobe_multi links accepted; as perf events (kernels before 6.6) refused saying why, accepted with all; as tracefs events (also as the fallback of refused perf events) accepted for uid 0, refused for nobody', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'seqtrace-uprobes-'));
    const py = spawn('/usr/bin/python3', ['-c', 'import ssl, time; print("ready", flush=True); time.sleep(60)'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve) => py.stdout.once('data', resolve));
      const pid = py.pid!;
      const lib = `/proc/${pid}/root${mappedLibssl('/proc', pid)}`;
      const caps = '+bpf,+perfmon,+sys_ptrace,+dac_read_search';
      // who: root with every capability, uid 0 with only the four (the DaemonSet's), nobody with the four
      const wrapper = (who: 'root' | 'uid0' | 'nobody', way: 'auto' | 'perf' | 'tracefs' | 'perf-or-tracefs'): string => {
        const path = join(dir, `${who}-${way}`);
        const priv = who === 'root' ? ''
          : `setpriv ${who === 'nobody' ? '--reuid=65534 --regid=65534 --clear-groups' : `--bounding-set=-all,${caps}`} --inh-caps=-all,${caps} --ambient-caps=${caps} `;
        writeFileSync(path, `#!/bin/sh\nexec ${priv}'${defaultLoaderPath()}' --uprobes ${way} "$@"\n`, { mode: 0o755 });
        return path;
      };
      const attach = async (loaderPath: string): Promise<void> => {
        const cap = await startCapture({ mode: 'socket', loaderPath, onEvents() {}, onError() {} });
        try {
          await cap.addPid(pid);
          await cap.tlsProcess(pid, lib);
        } finally {
          await cap.close();
        }
      };
      const hint = String.raw`Permission denied \(perf-event uprobes need CAP_SYS_ADMIN on this kernel, uprobe events a writable /sys/kernel/tracing/uprobe_events; uprobe_multi links, kernel 6\.6\+, need neither\)`;
      await attach(wrapper('nobody', 'auto')); // links, on this kernel
      await attach(wrapper('root', 'perf'));
      await assert.rejects(attach(wrapper('uid0', 'perf')), new RegExp(`refused OpenSSL's uprobes .*: seqtrace-loader: tls \\d+: SSL_write of .*: ${hint}`));
      // an event a dead loader left (pid 4194303: none) is removed by the next that uses tracefs
      appendFileSync('/sys/kernel/tracing/uprobe_events', `p:seqtrace/seqtrace_4194303_0 ${lib.replace(/^\/proc\/\d+\/root/, '')}:0x1000\n`);
      await attach(wrapper('uid0', 'tracefs'));
      await assert.rejects(attach(wrapper('nobody', 'tracefs')), new RegExp(`SSL_write of .*: ${hint}`));
      // what auto does on a kernel without links: perf events, refused, then tracefs events
      await attach(wrapper('uid0', 'perf-or-tracefs'));
      await assert.rejects(attach(wrapper('nobody', 'perf-or-tracefs')), new RegExp(`SSL_write of .*: ${hint}`));
      const left = readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8').split('\n').filter((l) => l.includes(':seqtrace/'));
      assert.deepEqual(left, [], 'no uprobe event left in tracefs');
    } finally {
      py.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
