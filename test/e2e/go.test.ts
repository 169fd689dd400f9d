// End-to-end: Go net/http services (built here with the machine's Go) calling other services
// with the standard client, with goroutine fan-out, under concurrency and keep-alive, traced by
// a real agent that follows goroutines (src/agent/go), linked by a real linker; exact trees.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import {
  assertRoot, closeScope, ebpfSkipReason, expectStatuses, FIXTURES, freePort, newScope, requestIds, runCurl,
  runPyClient, serviceEnv, sleep, startProcess, startPyService, startTracing, subdir, type Scope, type Service,
  type Tracing,
} from './harness.js';
import { assertExactTraces, assertNothingWrong, hop, totalSpans, waitForTraces } from './trees.js';
import { goBuild } from '../../src/agent/go/gobuild.js';
import { ensureGoOffsetsTool } from '../../src/agent/go/offsets.js';

const skip = ebpfSkipReason();

describe('e2e: Go net/http services', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;
  let bin = '';
  let binStripped = '';
  let binPie = '';
  let binUnreadable = '';

  before(async () => {
    assertRoot();
    scope = newScope('go');
    ensureGoOffsetsTool();
    const src = subdir(scope, 'gosrc');
    cpSync(join(FIXTURES, 'go'), src, { recursive: true });
    bin = goBuild(src, join(subdir(scope, 'gobin'), 'goservice'));
    binStripped = goBuild(src, join(subdir(scope, 'gobin'), 'goservice-stripped'), ['-ldflags=-s -w']);
    binPie = goBuild(src, join(subdir(scope, 'gobin'), 'goservice-pie'), ['-buildmode=pie', '-ldflags=-s -w']);
    // A binary the agent cannot read: its pclntab's section renamed (no linker does this; the
    // runtime finds its pclntab without the name).
    binUnreadable = join(subdir(scope, 'gobin'), 'goservice-hidden');
    execFileSync('objcopy', ['--rename-section', '.gopclntab=.hidden', binStripped, binUnreadable]);
    tracing = await startTracing(scope);
  });
  after(() => closeScope(scope));

  /** The agent's count of Go processes traced by goroutine / by thread. */
  async function goCounts(): Promise<{ goroutine: number; thread: number }> {
    const text = await (await fetch(tracing.agents[0].metricsUrl)).text();
    const get = (by: string) => Number(new RegExp(`seqtrace_agent_go_processes_total\\{by="${by}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
    return { goroutine: get('goroutine'), thread: get('thread') };
  }
  async function waitGo(want: { goroutine: number; thread: number }): Promise<void> {
    const end = Date.now() + 15_000;
    for (;;) {
      const c = await goCounts();
      if (c.goroutine >= want.goroutine && c.thread >= want.thread) return;
      if (Date.now() > end) throw new Error(`the agent follows ${JSON.stringify(c)} Go processes, expected ${JSON.stringify(want)}`);
      await sleep(100);
    }
  }

  async function startGo(name: string, o: { parallel?: string[]; sequential?: string[]; binary?: string } = {}): Promise<Service> {
    const port = await freePort();
    const proc = await startProcess(scope, {
      name, cmd: o.binary ?? bin,
      env: serviceEnv(name, { PORT: String(port), PARALLEL: (o.parallel ?? []).join(','), SEQUENTIAL: (o.sequential ?? []).join(',') }),
      readyPort: { host: '127.0.0.1', port },
    });
    return { proc, name, host: '127.0.0.1', port, url: `http://127.0.0.1:${port}` };
  }

  /** client → Go front: parallel goroutines to Go and Python, then a sequential call; 36 requests (with 500s) from 6 keep-alive clients. */
  async function fanOut(tag: string, frontBinary: string): Promise<void> {
    const t = scope.tag;
    const names = { client: `${tag}-client-${t}`, front: `${tag}-front-${t}`, x: `${tag}-x-${t}`, y: `${tag}-y-${t}`, z: `${tag}-z-${t}` };
    const before = await goCounts();
    const x = await startGo(names.x);
    const y = await startPyService(scope, { name: names.y });
    const z = await startGo(names.z);
    const front = await startGo(names.front, { parallel: [`${x.url}/x`, `${y.url}/y`], sequential: [`${z.url}/z`], binary: frontBinary });
    await waitGo({ goroutine: before.goroutine + 3, thread: 0 });
    const ids = requestIds(scope, tag, 36).map((id, i) => (i % 9 === 4 ? `fail${id}` : id));
    const run = await runPyClient(scope, { name: names.client, urlTemplate: `${front.url}/f/{id}`, ids, concurrency: 6, keepalive: true });
    const fail = (id: string) => id.startsWith('fail');
    expectStatuses(run, ids, (id) => fail(id) ? 502 : 200);
    const expected = new Map(ids.map((id) => [id, hop(names.client, names.front, `GET /f/${id}`, fail(id) ? 502 : 200,
      hop(names.front, names.x, `GET /x/${id}`, fail(id) ? 500 : 200),
      hop(names.front, names.y, `GET /y/${id}`, fail(id) ? 500 : 200),
      hop(names.front, names.z, `GET /z/${id}`, fail(id) ? 500 : 200))]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  }

  it('client → Go front: parallel goroutines to Go and Python, then a sequential call; 36 requests from 6 keep-alive clients', () => fanOut('gof', bin));

  // Distributions ship their Go binaries stripped (Debian's Caddy); many images are built so.
  it('the same with a stripped front (-ldflags="-s -w"): goroutines followed from the pclntab and the type descriptors', () => fanOut('gos', binStripped));

  // Mapped at a random address: the round-trip probe's itab is moved to it per process.
  it('the same with a stripped position-independent front (-buildmode=pie)', () => fanOut('gop', binPie));

  it('Go → Go → Go chain on fresh connections (curl, 24 requests from 6 clients)', async () => {
    const t = scope.tag;
    const names = { client: `goc-client-${t}`, a: `goc-a-${t}`, b: `goc-b-${t}`, c: `goc-c-${t}` };
    const before = await goCounts();
    const c = await startGo(names.c);
    const b = await startGo(names.b, { sequential: [`${c.url}/c`] });
    const a = await startGo(names.a, { sequential: [`${b.url}/b`] });
    await waitGo({ goroutine: before.goroutine + 3, thread: 0 });
    const ids = requestIds(scope, 'c', 24);
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 6 });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, hop(names.client, names.a, `GET /a/${id}`, 200,
      hop(names.a, names.b, `GET /b/${id}`, 200, hop(names.b, names.c, `GET /c/${id}`, 200)))]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  // Its goroutines move between threads, so its threads say nothing about which request a
  // call serves (Caddy, when it could not be read, linked 12 of 200 requests wrongly by thread,
  // 2026-12-07).
  it('a Go binary the agent cannot read: its calls never join by thread, only by X-Request-ID; the agent says so', async () => {
    const t = scope.tag;
    const names = { client: `gow-client-${t}`, front: `gow-front-${t}`, leaf: `gow-leaf-${t}` };
    const before = await goCounts();
    const leaf = await startPyService(scope, { name: names.leaf });
    const front = await startGo(names.front, { sequential: [`${leaf.url}/l`], binary: binUnreadable });
    await waitGo({ goroutine: before.goroutine, thread: before.thread + 1 });
    const log = tracing.agents[0].proc.output();
    assert.match(log, new RegExp(`Go process ${front.proc.pid} \\(/proc/${front.proc.pid}/exe, go1\\.[0-9.]+\\) is traced without its goroutines, its calls joined to its requests by X-Request-ID only: no symbol table and no \\.gopclntab section`));
    const expect = (ids: string[]) => new Map(ids.map((id) => [id, hop(names.client, names.front, `GET /w/${id}`, 200, hop(names.front, names.leaf, `GET /l/${id}`, 200))]));
    // Without an id: every span and every link across processes, none inside the front.
    const plain = requestIds(scope, 'w', 24);
    expectStatuses(await runCurl(scope, { name: names.client, urlTemplate: `${front.url}/w/{id}`, ids: plain, concurrency: 6, keepalive: true }), plain, () => 200);
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expect(plain)) });
    const report = assertNothingWrong(traces, expect(plain), names.front);
    assert.equal(report.missing.length, plain.length, 'no call of the front joined its request by thread');
    // With an X-Request-ID that the front passes on: exact.
    const withId = requestIds(scope, 'i', 24);
    expectStatuses(await runCurl(scope, { name: names.client, urlTemplate: `${front.url}/w/{id}`, ids: withId, concurrency: 6, keepalive: true, headers: ['X-Request-ID: rid-{id}'] }), withId, () => 200);
    const all = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expect(plain)) + totalSpans(expect(withId)) });
    assertExactTraces(all.filter((tr) => tr.spans.some((s) => withId.some((id) => s.resource.endsWith(`/${id}`)))), expect(withId));
  });
});
