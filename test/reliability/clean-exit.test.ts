// Reliability: the agent leaves nothing in the kernel. A real `bin/seqtrace agent` loads its
// eBPF programs; we note the ids its loader holds (fdinfo of the loader's fds), then
//   * SIGTERM the agent: the loader exits and none of those programs, links or maps remain
//     (bpftool -j prog|link|map show), and none that appeared since the snapshot is ours;
//   * SIGKILL the agent (it cannot clean up): the loader sees EOF on its stdin and exits, the
//     programs go with it, and a traced Python server keeps answering throughout.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertRoot, closeScope, ebpfSkipReason, newScope, startAgent, startLinker, startPyService, sleep,
  type Linker, type Scope,
} from '../e2e/harness.js';
import { alive, bpfSnapshot, countIds, heldBy, loaderOf, remaining, waitGone, type BpfIds } from './bpf.js';

const skip = ebpfSkipReason();

async function hammer(url: string, stop: () => boolean): Promise<{ ok: number; failed: string[] }> {
  let ok = 0;
  const failed: string[] = [];
  let i = 0;
  while (!stop()) {
    try {
      const res = await fetch(`${url}/s/req${i++}`, { signal: AbortSignal.timeout(5000) });
      await res.arrayBuffer();
      if (res.status === 200) ok++;
      else failed.push(`status ${res.status}`);
    } catch (e) {
      failed.push((e as Error).message);
    }
  }
  return { ok, failed };
}

function noneNewIsOurs(before: BpfIds, ours: BpfIds): void {
  // Whatever appeared since the snapshot belongs to someone else (another engineer's agent),
  // never to ours: ours are all gone.
  const now = bpfSnapshot();
  for (const id of now.progs) if (!before.progs.has(id)) assert.ok(!ours.progs.has(id), `program ${id} of our loader remains`);
  for (const id of now.links) if (!before.links.has(id)) assert.ok(!ours.links.has(id), `link ${id} of our loader remains`);
}

describe('reliability: the agent leaves no eBPF behind', { skip }, () => {
  let scope: Scope;
  let linker: Linker;

  before(async () => {
    assertRoot();
    scope = newScope('cleanexit');
    linker = await startLinker(scope);
  });
  after(() => closeScope(scope));

  it('SIGTERM: the loader exits and every program, link and map it held is gone', async () => {
    const snapshot = bpfSnapshot();
    const agent = await startAgent(scope, linker, { host: `rel-term-${scope.tag}` });
    const loader = await loaderOf(agent.proc.pid);
    const ours = heldBy(loader);
    console.log(`# SIGTERM: loader ${loader} held ${countIds(ours)}`);
    assert.ok(ours.progs.size > 0 && ours.links.size > 0 && ours.maps.size > 0, `the loader holds programs, links and maps: ${countIds(ours)}`);
    for (const id of ours.progs) assert.ok(!snapshot.progs.has(id), `program ${id} is new`);

    const t0 = Date.now();
    process.kill(agent.proc.pid, 'SIGTERM');
    const code = await Promise.race([agent.proc.exited, sleep(10_000).then(() => 'timeout')]);
    const agentMs = Date.now() - t0;
    assert.equal(code, 0, `the agent exits with 0 on SIGTERM:\n${agent.proc.output().slice(-2000)}`);
    const loaderMs = await waitGone(loader, 5000);
    assert.notEqual(loaderMs, -1, `loader ${loader} still runs 5 s after its agent exited`);
    // Program and map ids are freed asynchronously (RCU) after the last fd closes: allow a moment.
    let left = remaining(ours);
    for (let i = 0; i < 50 && left.progs.length + left.links.length + left.maps.length > 0; i++) { await sleep(100); left = remaining(ours); }
    console.log(`# SIGTERM figures: agent exited in ${agentMs} ms; remaining ${JSON.stringify(left)}`);
    assert.deepEqual(left, { progs: [], links: [], maps: [] }, 'no program, link or map of ours remains');
    noneNewIsOurs(snapshot, ours);
  });

  it('kill -9: the loader exits on stdin EOF, its programs go, a traced Python server keeps serving', async () => {
    const snapshot = bpfSnapshot();
    const server = await startPyService(scope, { name: `rel-kill-${scope.tag}`, keepalive: true });
    const agent = await startAgent(scope, linker, { host: `rel-kill-${scope.tag}` });
    const loader = await loaderOf(agent.proc.pid);
    const ours = heldBy(loader);
    console.log(`# kill -9: loader ${loader} held ${countIds(ours)}`);
    assert.ok(ours.progs.size > 0, 'the loader holds programs');
    await sleep(1500); // the agent finds the server (scan every second)

    let stop = false;
    const load = hammer(server.url, () => stop);
    await sleep(1000);
    const t0 = Date.now();
    process.kill(agent.proc.pid, 'SIGKILL'); // the agent only, not its process group: the loader must notice alone
    await agent.proc.exited;
    const waited = await waitGone(loader, 10_000);
    const loaderMs = waited === -1 ? -1 : Date.now() - t0;
    await sleep(1000);
    stop = true;
    const served = await load;
    let left = remaining(ours);
    for (let i = 0; i < 50 && left.progs.length + left.links.length + left.maps.length > 0; i++) { await sleep(100); left = remaining(ours); }
    console.log(`# kill -9 figures: loader gone ${loaderMs} ms after the kill; server answered ${served.ok} requests, ${served.failed.length} failed; remaining ${JSON.stringify(left)}`);
    assert.notEqual(loaderMs, -1, `loader ${loader} still runs 10 s after its agent was killed (alive: ${alive(loader)})`);
    assert.deepEqual(left, { progs: [], links: [], maps: [] }, 'no program, link or map of ours remains');
    noneNewIsOurs(snapshot, ours);
    assert.deepEqual(served.failed, [], 'the traced server never failed a request');
    assert.ok(served.ok > 20, `the traced server kept serving (${served.ok} requests)`);
    // And after: still serving.
    const res = await fetch(`${server.url}/s/after`);
    assert.equal(res.status, 200);
  });
});
