// End-to-end across hosts: two network namespaces joined by a veth pair act as two machines,
// each with its own agent (disjoint process selection, its own `host`), both sending to one
// linker, which joins the hosts' spans by TCP sequence numbers.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertRoot, closeScope, createNetns, ebpfSkipReason, expectStatuses, linkNetns, newScope, requestIds,
  runPyClient, startPyService, startTracing, type Scope, type Tracing,
} from './harness.js';
import { assertExactTraces, hostHop, totalSpans, waitForTraces } from './trees.js';

const skip = ebpfSkipReason();

describe('e2e: two hosts, two agents, one linker', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;
  let hostA: string;
  let hostB: string;
  let varA: string;
  let varB: string;

  before(async () => {
    assertRoot();
    scope = newScope('hosts');
    hostA = `e2e-a-${scope.tag}`;
    hostB = `e2e-b-${scope.tag}`;
    varA = `SEQT_E2E_HOST_A_${scope.tag.toUpperCase()}`;
    varB = `SEQT_E2E_HOST_B_${scope.tag.toUpperCase()}`;
    tracing = await startTracing(scope, [{ host: hostA, envset: [varA] }, { host: hostB, envset: [varB] }]);
  });
  after(() => closeScope(scope));

  it('client and A on host A → B and C on host B, 24 requests from 4 keep-alive clients', async () => {
    const t = scope.tag;
    const names = { client: `h-client-${t}`, a: `h-a-${t}`, b: `h-b-${t}`, c: `h-c-${t}` };
    const [nsA, nsB] = [await createNetns(scope, 'a'), await createNetns(scope, 'b')];
    const link = await linkNetns(scope, nsA, nsB);
    const onA = (name: string) => ({ [varA]: name });
    const onB = (name: string) => ({ [varB]: name });
    const c = await startPyService(scope, { name: names.c, netns: nsB, env: onB(names.c) });
    const b = await startPyService(scope, { name: names.b, bind: '0.0.0.0', host: link.b4, netns: nsB, keepalive: true, downstreams: [`${c.url}/c`], env: onB(names.b) });
    const a = await startPyService(scope, { name: names.a, netns: nsA, keepalive: true, downstreams: [`${b.url}/b`], env: onA(names.a) });
    const ids = requestIds(scope, 'x', 24);
    const run = await runPyClient(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 4, keepalive: true, netns: nsA, env: onA(names.client) });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id,
      hostHop([names.client, hostA], [names.a, hostA], `GET /a/${id}`, 200,
        hostHop([names.a, hostA], [names.b, hostB], `GET /b/${id}`, 200,
          hostHop([names.b, hostB], [names.c, hostB], `GET /c/${id}`, 200)))]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected, { withHost: true });
    const cross = traces.flatMap((tr) => tr.spans).filter((s) => s.service === names.a && s.kind === 'exit');
    for (const s of cross) assert.deepEqual([s.srcIp, s.dstIp, s.dstPort], [link.a4, link.b4, b.port], 'A calls B over the veth pair');
  });
});
