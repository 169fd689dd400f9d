// Go offsets from real binaries (built here with the machine's Go), and real eBPF: the data
// events of a Go service carry goroutine ids, newproc1 reports parents, and the HTTP client's
// round trips carry the calling goroutine's id although the transport's goroutines do the I/O.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { closeSync, cpSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCapture, type Capture } from '../capture/loader.js';
import type { CaptureEvent, DataEvent, GoroutineEvent } from '../capture/event.js';
import { ensureGoOffsetsTool, hasGoBuildInfo, readGoBinary, type GoBinaryInfo } from './offsets.js';
import { goBuild } from './gobuild.js';
import { createGoTracer, processOffsets } from './golang.js';
import { linkedProgs, loaderMapEntries, waitFor } from '../capture/testkit.js';

const SKIP = process.env.SEQTRACE_SKIP_EBPF === '1';
if (SKIP) console.log('# Go capture tests skipped: SEQTRACE_SKIP_EBPF=1');
const FANOUT = fileURLToPath(new URL('./testdata/fanout/', import.meta.url));

let dir = '';
let bin = '';
before(() => {
  ensureGoOffsetsTool();
  dir = mkdtempSync(join(tmpdir(), 'seqtrace-go-'));
  cpSync(FANOUT, `${dir}/src`, { recursive: true });
  bin = goBuild(`${dir}/src`, `${dir}/fanout`);
});
after(() => rmSync(dir, { recursive: true, force: true }));

// A loader that stopped took its uprobes with it (service.ts starts another): after reset() the
// next one is told each binary's probes again, and a process told again is not counted again.
// No eBPF: a stand-in capture that records what it is told, a stand-in reader of the binary.
test('after reset() a new loader is told the probes again; a process told again is not counted again', async () => {
  const told: string[] = [];
  const capture = {
    goUprobe: async (which: string) => { told.push(which); },
    goProcess: async (pid: number) => { told.push(`process ${pid}`); },
  };
  const info = {
    ok: true, goVersion: 'go1.19', newproc1: 1, newproc1Ret: [], newprocNop5: 8, roundTrip: 9, execute: 0,
    tlsOffset: -8, goidOffset: 152, pconnConn: 1, tcpConnItab: 1, tcpConnFd: 1, netFdSysfd: 1, gM: 48, mCurg: 192, symbols: 'symtab', layout: 'dwarf', pie: false, loadVaddr: 0,
  };
  const go = createGoTracer({ capture: () => capture, log: () => {}, setThreadLinks: () => {}, read: async () => info });
  await go.onTraced(process.pid);
  assert.deepEqual(told, ['newproc_nop5', 'roundtrip', `process ${process.pid}`]);
  await go.onTraced(process.pid); // the same binary again: its probes are named once per loader
  go.reset();
  await go.onTraced(process.pid, true);
  assert.deepEqual(told.slice(4), ['newproc_nop5', 'roundtrip', `process ${process.pid}`], 'named to the new loader');
  assert.deepEqual(go.stats, { byGoroutine: 2, byThread: 0, errors: 0 }, 'told twice as new, once again');
});

// A Go process's threads say nothing about its requests: they link nothing from the moment it
// is known to be Go (its ELF sections, read at once) until its goroutines are followed, and
// never when they cannot be. No eBPF: a /proc of our own whose exe links to a Go binary.
test('setThreadLinks: false at once for a Go binary, true once followed; false for good when unreadable or refused; nothing for other programs', async () => {
  const root = mkdtempSync(join(tmpdir(), 'seqtrace-goproc-'));
  try {
    for (const [pid, exe] of [[10, bin], [11, bin], [12, bin], [13, '/bin/sh']] as const) {
      mkdirSync(`${root}/${pid}`);
      symlinkSync(exe, `${root}/${pid}/exe`);
    }
    const links: Array<[number, boolean]> = [];
    const logs: string[] = [];
    let answer!: (i: GoBinaryInfo) => void;
    let refuse = false;
    const capture = { goUprobe: async () => {}, goProcess: async () => { if (refuse) throw new Error('EINVAL'); } };
    const good = { ok: true, goVersion: 'go1.19.8', newproc1: 1, newproc1Ret: [], newprocNop5: 8, roundTrip: 0 } as unknown as GoBinaryInfo;
    const tracer = () => createGoTracer({ capture: () => capture, procRoot: root, log: (m) => logs.push(m), setThreadLinks: (pid, l) => links.push([pid, l]), read: () => new Promise((r) => { answer = r; }) });

    const go = tracer();
    const done = go.onTraced(10);
    assert.deepEqual(links, [[10, false]], 'at once, before the binary is read');
    answer(good);
    await done;
    assert.deepEqual(links, [[10, false], [10, true]], 'followed: by goroutine');

    links.length = 0;
    const unreadable = tracer();
    const u = unreadable.onTraced(11);
    answer({ ok: false, goVersion: 'go1.16', reason: 'Go 1.17 or later is needed' } as GoBinaryInfo);
    await u;
    assert.deepEqual(links, [[11, false], [11, false]]);
    assert.match(logs.at(-1)!, /traced without its goroutines, its calls joined to its requests by X-Request-ID only: Go 1\.17/);
    assert.deepEqual(unreadable.stats, { byGoroutine: 0, byThread: 1, errors: 0 });

    links.length = 0;
    refuse = true;
    const refused = tracer();
    const r = refused.onTraced(12);
    answer(good);
    await r;
    assert.deepEqual(links, [[12, false], [12, false]], 'the kernel refused its offsets');
    assert.deepEqual(refused.stats, { byGoroutine: 0, byThread: 0, errors: 1 });

    links.length = 0;
    const other = tracer();
    const o = other.onTraced(13);
    answer({ ok: false, goVersion: '', reason: 'not a Go executable' } as GoBinaryInfo);
    await o;
    assert.deepEqual(links, [], 'not Go: its threads link as they do');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('hasGoBuildInfo: Go binaries, stripped or not; not other programs or files', () => {
  assert.equal(hasGoBuildInfo(bin), true);
  assert.equal(hasGoBuildInfo(goBuild(`${dir}/src`, `${dir}/fanout-sw-elf`, ['-ldflags=-s -w'])), true);
  assert.equal(hasGoBuildInfo('/bin/sh'), false);
  assert.equal(hasGoBuildInfo(process.execPath), false);
  assert.equal(hasGoBuildInfo('/etc/hostname'), false);
  assert.equal(hasGoBuildInfo('/no/such/file'), false);
});

describe('offsets from the binary', () => {
  test('a Go binary: goid in runtime.g, g at -8(FS), newproc1 and its RETs, the client chain', async () => {
    const info = await readGoBinary(bin);
    assert.equal(info.ok, true, info.reason);
    assert.match(info.goVersion, /^go1\.\d+/);
    assert.equal(info.tlsOffset, -8); // internal linker, no cgo
    assert.ok(info.goidOffset > 0 && info.goidOffset < 1024, `goid at ${info.goidOffset}`);
    assert.ok(info.newproc1 > 0 && info.newproc1Ret.length > 0 && info.newproc1Ret.every((r) => r > info.newproc1));
    assert.ok(info.roundTrip > 0 && info.tcpConnItab > 0, 'net/http client found');
    // the RETs really are RET instructions (0xc3) at those file offsets
    const code = execFileSync('od', ['-An', '-tx1', '-j', String(info.newproc1Ret[0]), '-N1', bin], { encoding: 'utf8' }).trim();
    assert.equal(code, 'c3');
    // the NOP5 right before newproc.func1's call to runqput (this Go's compiler leaves one)
    assert.ok(info.newprocNop5 > 0, 'a NOP5 before the call to runqput');
    const nop = execFileSync('od', ['-An', '-tx1', '-j', String(info.newprocNop5), '-N6', bin], { encoding: 'utf8' }).trim();
    assert.equal(nop, '0f 1f 44 00 00 e8');
  });

  test('cgo-style external linking: the TLS offset still comes from the binary', async () => {
    let ext = '';
    try {
      ext = goBuild(`${dir}/src`, `${dir}/fanout-ext`, ['-ldflags=-linkmode=external']);
    } catch (e) {
      assert.fail(`external linking needs gcc: ${(e as Error).message}`);
    }
    const info = await readGoBinary(ext);
    assert.equal(info.ok, true, info.reason);
    assert.equal(info.tlsOffset, -8);
  });

  // Distributions strip their Go binaries (Debian's Caddy) and many builds use -ldflags="-s -w":
  // functions from the pclntab, struct offsets from the runtime's type descriptors, the same
  // as from the symbols and DWARF.
  /** b read the same offsets as a (where they were read from aside). */
  const same = (a: GoBinaryInfo, b: GoBinaryInfo, what: string) => {
    assert.equal(b.ok, true, `${what}: ${b.reason}`);
    const { symbols: _s, layout: _l, ...offsets } = a;
    const { symbols: _s2, layout: _l2, ...got } = b;
    assert.deepEqual(got, offsets, what);
  };

  test('without symbols or DWARF (-s -w, strip, -w): the same offsets from the pclntab and the type descriptors', async () => {
    const full = await readGoBinary(bin);
    assert.deepEqual([full.symbols, full.layout], ['symtab', 'dwarf']);
    const sw = await readGoBinary(goBuild(`${dir}/src`, `${dir}/fanout-sw`, ['-ldflags=-s -w']));
    same(full, sw, '-s -w');
    assert.deepEqual([sw.symbols, sw.layout], ['pclntab', 'types']);
    const w = await readGoBinary(goBuild(`${dir}/src`, `${dir}/fanout-w`, ['-ldflags=-w']));
    same(full, w, '-w');
    assert.deepEqual([w.symbols, w.layout], ['symtab', 'types']);
    // External linking puts C start-up code before Go's: the pclntab's addresses count from
    // Go's own text start, not the section's.
    const ext = goBuild(`${dir}/src`, `${dir}/fanout-ext2`, ['-ldflags=-linkmode=external']);
    execFileSync('strip', ['-o', `${dir}/fanout-ext-stripped`, ext]);
    same(await readGoBinary(ext), await readGoBinary(`${dir}/fanout-ext-stripped`), 'external linking, strip(1)');
  });

  test('a stripped position-independent binary: the same offsets, its itab as linked with where its first segment is', async () => {
    const full = await readGoBinary(goBuild(`${dir}/src`, `${dir}/fanout-pie-full`, ['-buildmode=pie']));
    const pie = await readGoBinary(goBuild(`${dir}/src`, `${dir}/fanout-pie`, ['-buildmode=pie', '-ldflags=-s -w']));
    same(full, pie, 'PIE');
    assert.deepEqual([pie.symbols, pie.layout, pie.pie], ['pclntab', 'types', true]);
    assert.ok(pie.roundTrip > 0 && pie.tcpConnItab > pie.loadVaddr);
  });

  test('a binary it cannot read (its pclntab in no section it can find) or not Go: not ok, with the reason', async () => {
    // No linker does this; the runtime finds its pclntab without the section's name.
    const sw = goBuild(`${dir}/src`, `${dir}/fanout-sw2`, ['-ldflags=-s -w']);
    execFileSync('objcopy', ['--rename-section', '.gopclntab=.hidden', sw, `${dir}/fanout-hidden`]);
    const hidden = await readGoBinary(`${dir}/fanout-hidden`);
    assert.equal(hidden.ok, false);
    assert.match(hidden.goVersion, /^go1\./);
    assert.match(hidden.reason ?? '', /no symbol table and no \.gopclntab section/);
    const sh = await readGoBinary('/bin/sh');
    assert.equal(sh.ok, false);
    assert.equal(sh.goVersion, '');
    assert.match(sh.reason ?? '', /not a Go executable/);
  });

  // Each process of a position-independent binary maps it elsewhere: the round-trip probe
  // compares the connection's itab with where it is in that process.
  test('processOffsets: the itab moved to where the process mapped the binary; the probe off without a mapping or a client', () => {
    const root = mkdtempSync(join(tmpdir(), 'seqtrace-maps-'));
    try {
      mkdirSync(`${root}/7`);
      writeFileSync(`${root}/7/maps`, [
        '5583e6e00000-5583e7000000 r--p 00000000 00:2a 999 /other',
        '5583e7400000-5583e764b000 r-xp 00000000 00:2a 4242 /srv/front (deleted)',
        '5583e764b000-5583e773c000 r--p 0024b000 00:2a 4242 /srv/front (deleted)',
        '',
      ].join('\n'));
      const bin = { ok: true, roundTrip: 100, pconnConn: 80, tcpConnItab: 0x7ad3a0, pie: true, loadVaddr: 0x400000 } as GoBinaryInfo;
      assert.equal(processOffsets(root, 7, 4242n, bin).tcpConnItab, 0x5583e7400000 - 0x400000 + 0x7ad3a0);
      assert.equal(processOffsets(root, 7, 4242n, bin).pconnConn, 80);
      assert.equal(processOffsets(root, 7, 5555n, bin).pconnConn, 0, 'not mapped: no probe');
      assert.equal(processOffsets(root, 8, 4242n, bin).pconnConn, 0, 'gone');
      assert.equal(processOffsets(root, 7, 4242n, { ...bin, pie: false }).tcpConnItab, 0x7ad3a0, 'not PIE: as linked');
      assert.equal(processOffsets(root, 7, 4242n, { ...bin, roundTrip: 0 }).pconnConn, 0, 'no client');
      // an overlay's inode (xino: the layer in the high bits) is more than a double holds
      mkdirSync(`${root}/9`);
      writeFileSync(`${root}/9/maps`, '7f0000400000-7f000064b000 r-xp 00000000 00:30 1152921504606846977 /app/front\n');
      assert.equal(processOffsets(root, 9, 1152921504606846977n, bin).pconnConn, 80);
      assert.equal(processOffsets(root, 9, 1152921504606846976n, bin).pconnConn, 0, 'the next inode is another file');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

for (const mode of ['socket', 'syscall'] as const) {
  describe(`Go goroutines in the kernel (${mode} mode)`, { skip: SKIP, timeout: 60_000 }, () => {
    let cap: Capture;
    let svc: ChildProcessWithoutNullStreams;
    let port = 0;
    let pid = 0;
    const events: CaptureEvent[] = [];
    const logs: string[] = [];

    before(async () => {
      cap = await startCapture({ mode, onEvents: (evs) => { for (const e of evs) events.push(e); }, onError: (e) => { throw e; } });
      svc = spawn(bin, [], { stdio: 'pipe' });
      let out = '';
      svc.stdout.on('data', (d) => { out += d; });
      const j = JSON.parse(await waitFor('service ready', () => out.includes('\n') && out.split('\n')[0], 8000));
      pid = j.pid;
      port = j.port;
      await cap.addPid(pid);
      // socket mode probes goroutine starts at the NOP5, syscall mode at newproc1's RETs: both paths
      const links: boolean[] = [];
      const go = createGoTracer({ capture: () => cap, log: (m) => logs.push(m), setThreadLinks: (_p, l) => links.push(l), parentProbe: mode === 'socket' ? 'auto' : 'ret' });
      await go.onTraced(pid);
      assert.deepEqual(go.stats, { byGoroutine: 1, byThread: 0, errors: 0 }, logs.join('\n'));
      assert.deepEqual(links, [false, true], 'its threads linked nothing until its goroutines were followed');
    });
    after(async () => {
      svc?.stdin.end();
      svc?.kill();
      await cap?.close();
    });

    test('fan-out: children inherit by newproc1 events; client exits carry the caller goroutine; keep-alive', async () => {
      // N requests on one keep-alive connection
      const N = 4;
      const body = execFileSync('curl', ['-sS', '--max-time', '20', ...Array(N).fill(`http://127.0.0.1:${port}/front`)], { encoding: 'utf8', timeout: 30_000 });
      assert.equal(body, 'down i=1\ndown i=2\ndown i=3\n'.repeat(N));
      const data = () => events.filter((e): e is DataEvent => e.kind === 'data' && e.pid === pid);
      const head = (e: DataEvent) => e.head.toString('latin1');
      await waitFor('the second front response', () => data().filter((e) => e.dir === 'send' && head(e).includes('down i=2\ndown i=3')).length === N, 8000);
      const all = data();
      assert.ok(all.every((e) => e.goid > 0), 'every data event of the Go process has a goid');
      // Go's server may read the first byte of the next request on its backgroundRead goroutine
      // (started while the handler runs); the rest of the head then comes on the serve goroutine,
      // which is the read that completes the head (where conn.ts opens the group).
      const requestReads = (path: string) => all.filter((e, i) => e.dir === 'recv' && (head(e).startsWith(`GET ${path}`) ||
        (head(e).startsWith(`ET ${path}`) && all.slice(0, i).reverse().find((p) => p.sockId === e.sockId && p.dir === 'recv')?.len === 1)));
      const fronts = requestReads('/front');
      assert.equal(fronts.length, N, `N front requests: ${all.filter((e) => e.dir === 'recv').map((e) => JSON.stringify(head(e).slice(0, 12))).join(' ')}`);
      // keep-alive: one connection, served by one goroutine (conn.serve), for both requests
      for (const f of fronts) assert.equal(f.sockId, fronts[0].sockId);
      for (const f of fronts) assert.equal(f.goid, fronts[0].goid);
      const serveG = fronts[0].goid;
      const gor = events.filter((e): e is GoroutineEvent => e.kind === 'goroutine' && e.pid === pid);
      const allKids = new Set(gor.filter((e) => e.pgoid === serveG).map((e) => e.goid));
      for (const [i, front] of fronts.entries()) {
        const inRequest = (e: { tsNs: number }) => e.tsNs > front.tsNs && (i + 1 < N ? e.tsNs < fronts[i + 1].tsNs : true);
        const after = all.filter(inRequest);
        // this request's children only: the second request reuses the pooled connections the
        // first one's children opened, and must carry its own children's goids on them
        const kids = new Set(gor.filter((e) => e.pgoid === serveG && inRequest(e)).map((e) => e.goid));
        const sent = (q: string) => after.find((e) => e.dir === 'send' && head(e).startsWith(`GET /down?i=${q} `))!;
        const [d1, d2, d3] = ['1', '2', '3'].map(sent);
        assert.ok(d1 && d2 && d3, `request ${i}: three downstream calls sent`);
        // parallel calls: on the handler's child goroutines (not the transport's writeLoop)
        assert.ok(kids.has(d1.goid), `i=1 sent by goroutine ${d1.goid}, a child of ${serveG}: ${[...kids]}`);
        assert.ok(kids.has(d2.goid), `i=2 sent by goroutine ${d2.goid}, a child of ${serveG}`);
        assert.notEqual(d1.goid, d2.goid);
        // the sequential call: the handler's own goroutine
        assert.equal(d3.goid, serveG);
        // each downstream response is read (by readLoop) under the same caller goid. The k-th
        // answer on a connection is the k-th request's (Go's client does not pipeline); found by
        // count, not time: an answer can be stamped before its request (a send is stamped when
        // its call ends, and the writer's vCPU may be held up in between on a busy host)
        const responseTo = (d: DataEvent) => {
          const on = (dir: string, start: string) => all.filter((e) => e.sockId === d.sockId && e.dir === dir && head(e).startsWith(start));
          return on('recv', 'HTTP/1.1 200')[on('send', 'GET ').indexOf(d)];
        };
        for (const d of [d1, d2, d3]) {
          const resp = responseTo(d);
          assert.ok(resp, 'response read');
          assert.equal(resp.goid, d.goid);
        }
        // the downstream server reads each call on its own goroutine, not the caller's
        // (the same backgroundRead first byte can happen on the pooled downstream connections)
        const downReads = new Set(requestReads('/down'));
        const downRecv = after.filter((e) => downReads.has(e));
        assert.ok(downRecv.length >= 3);
        for (const e of downRecv) assert.ok(e.goid !== serveG && !kids.has(e.goid), `${head(e).slice(0, 16)} read by ${e.goid}, not by the caller ${serveG} or its children ${[...kids]}`);
        // the front response is written by the serving goroutine
        const resp = after.find((e) => e.dir === 'send' && head(e).includes('down i=2\ndown i=3'))!;
        assert.equal(resp.goid, serveG);
      }
      // the transport's writeLoop/readLoop were started by dialling goroutines, yet no data
      // event carries their goids on client connections
      const clientSocks = new Set(all.filter((e) => head(e).startsWith('GET /down')  && e.dir === 'send').map((e) => e.sockId));
      for (const e of all.filter((x) => clientSocks.has(x.sockId))) assert.ok(e.goid === serveG || allKids.has(e.goid));
      // and the pool did reuse connections from one request to the next (else this proves less)
      const firstSocks = new Set(all.filter((e) => e.tsNs < fronts[1].tsNs && e.dir === 'send' && head(e).startsWith('GET /down')).map((e) => e.sockId));
      assert.ok(all.some((e) => e.tsNs > fronts[1].tsNs && e.dir === 'send' && head(e).startsWith('GET /down') && firstSocks.has(e.sockId)), 'a connection of the first request reused later');
    });

    test('deleted with its pooled client connections open: once the data path detaches, their round trips are forgotten', async () => {
      // go_rt (client socket address -> the goroutine of its round trip) loses an entry when
      // sock_destroy sees the socket end, which it does not while detached: a socket opened
      // meanwhile at a closed one's address (TCP reuses sockets' memory at once) would carry
      // the old goroutine id into a traced process.
      assert.ok(loaderMapEntries(cap.loaderPid, 'go_rt') > 0, 'the fan-out\'s pooled client connections are in go_rt');
      await cap.removePid(pid);
      await waitFor('data path detached', () => !linkedProgs(cap.loaderPid).includes('sock_destroy'), 3000);
      await waitFor('go_rt emptied', () => loaderMapEntries(cap.loaderPid, 'go_rt') === 0, 1000);
    });
  });
}

// Probes go to each traced Go process, not to its binary, and the goroutine-start probe only to
// a process that calls out (its binary links net/http's client, or it opened a TCP connection):
// a leaf server starts a goroutine per request and has no exit span to give a parent to.
describe('Go uprobes per process; goroutine starts probed once the process calls out', { skip: SKIP, timeout: 60_000 }, () => {
  const LEAF = fileURLToPath(new URL('./testdata/leaf/', import.meta.url));
  let cap: Capture;
  const svcs: ChildProcessWithoutNullStreams[] = [];
  const events: CaptureEvent[] = [];
  after(async () => {
    for (const s of svcs) { s.stdin.end(); s.kill(); }
    await cap?.close();
  });

  async function startLeaf(leaf: string): Promise<{ pid: number; port: number }> {
    const svc = spawn(leaf, [], { stdio: 'pipe' });
    svcs.push(svc);
    let out = '';
    svc.stdout.on('data', (d) => { out += d; });
    return JSON.parse(await waitFor('leaf ready', () => out.includes('\n') && out.split('\n')[0], 8000));
  }
  /** The 5 bytes of pid's memory where its binary's file offset `off` is mapped. */
  function textAt(pid: number, leaf: string, off: number): string {
    for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(.*)$/.exec(line);
      if (!m || m[4] !== leaf) continue;
      const [start, end, foff] = [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
      if (off < foff || off >= foff + (end - start)) continue;
      const fd = openSync(`/proc/${pid}/mem`, 'r');
      try {
        const b = Buffer.alloc(5);
        readSync(fd, b, 0, 5, start + off - foff);
        return b.toString('hex');
      } finally {
        closeSync(fd);
      }
    }
    throw new Error(`offset ${off} of ${leaf} is not mapped in ${pid}`);
  }
  const curl = (port: number, path: string) => execFileSync('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${port}${path}`], { encoding: 'utf8' });

  test('a leaf server: no goroutine probe until it connects out; an untraced process of the binary never', async () => {
    const leaf = goBuild(LEAF, `${dir}/leaf`);
    const info = await readGoBinary(leaf);
    assert.equal(info.ok, true, info.reason);
    assert.equal(info.roundTrip, 0, 'no net/http client in this binary');
    assert.ok(info.newprocNop5 > 0);
    const NOP5 = '0f1f440000';
    cap = await startCapture({ mode: 'socket', onEvents: (evs) => { for (const e of evs) events.push(e); }, onError: (e) => { throw e; } });
    const a = await startLeaf(leaf);
    const b = await startLeaf(leaf); // same binary, never traced
    await cap.addPid(a.pid);
    const logs: string[] = [];
    const go = createGoTracer({ capture: () => cap, log: (m) => logs.push(m), setThreadLinks: () => {} });
    await go.onTraced(a.pid);
    assert.deepEqual(go.stats, { byGoroutine: 1, byThread: 0, errors: 0 }, logs.join('\n'));
    const started = () => events.filter((e): e is GoroutineEvent => e.kind === 'goroutine' && e.pid === a.pid);
    const dataOf = (pid: number) => events.filter((e): e is DataEvent => e.kind === 'data' && e.pid === pid);

    assert.equal(curl(a.port, '/spawn'), 'spawned\n');
    await waitFor('the /spawn response captured', () => dataOf(a.pid).some((e) => e.dir === 'send' && e.head.toString('latin1').includes('spawned')), 8000);
    // a goid would link nothing while the process calls nobody: not read (go.bpf.h go_goid)
    assert.ok(dataOf(a.pid).every((e) => e.goid === 0), 'no goroutine ids before the process called out');
    assert.equal(started().length, 0, 'no goroutine events before the process called out');
    assert.equal(textAt(a.pid, leaf, info.newprocNop5), NOP5, 'no probe in the traced leaf yet');
    // what tells the loader that it connected out: sock_state, on every TCP state change of the
    // host, attached only while such a process waits
    const stateProg = () => linkedProgs(cap!.loaderPid).includes('sock_state');
    assert.ok(stateProg(), 'sock_state attached while the leaf waits to call out');

    assert.equal(curl(a.port, '/dial'), 'dialled true\n');
    // the loader looks for processes that began calling out every 100 ms
    let lastSpawn = 0;
    await waitFor('goroutine events after the connection', () => {
      if (started().length === 0 && Date.now() - lastSpawn > 150) {
        lastSpawn = Date.now();
        curl(a.port, '/spawn');
      }
      return started().length >= 2;
    }, 8000);
    assert.ok(started().every((e) => e.pgoid > 0 && e.goid > 0));
    const afterDial = dataOf(a.pid).filter((e) => e.head.toString('latin1').startsWith('GET /spawn'));
    assert.ok(afterDial.length > 1 && afterDial.at(-1)!.goid > 0, 'goroutine ids once it called out');
    assert.notEqual(textAt(a.pid, leaf, info.newprocNop5), NOP5, 'the probe is in the traced process now');
    await waitFor('sock_state detached: no Go process waits any more', () => !stateProg(), 3000);
    // the untraced process of the same binary never got a probe, and its requests pay nothing
    assert.equal(curl(b.port, '/spawn'), 'spawned\n');
    assert.equal(curl(b.port, '/dial'), 'dialled true\n');
    assert.equal(textAt(b.pid, leaf, info.newprocNop5), NOP5, 'no probe in the untraced process');
    assert.equal(dataOf(b.pid).length, 0);
  });
});
