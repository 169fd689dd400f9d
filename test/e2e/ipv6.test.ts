// End-to-end over IPv6: a client on [::1] → a Python service listening on [::] → a Python
// service in a network namespace, reached on its fd00::/64 address over a veth pair.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertRoot, closeScope, createNetns, ebpfSkipReason, expectStatuses, linkNetns, newScope, requestIds, runCurl,
  startPyService, startTracing, type Scope, type Service, type Tracing, type VethLink,
} from './harness.js';
import { assertExactTraces, hop, totalSpans, waitForTraces } from './trees.js';

const skip = ebpfSkipReason();

describe('e2e: IPv6', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;

  before(async () => {
    assertRoot();
    scope = newScope('ipv6');
    tracing = await startTracing(scope);
  });
  after(() => closeScope(scope));

  let names: { client: string; a: string; b: string };
  let a: Service;
  let b: Service;
  let link: VethLink;

  async function services() {
    if (a) return;
    const t = scope.tag;
    names = { client: `v6-client-${t}`, a: `v6-a-${t}`, b: `v6-b-${t}` };
    const ns = await createNetns(scope, 'v6');
    link = await linkNetns(scope, null, ns);
    b = await startPyService(scope, { name: names.b, bind: '::', host: link.b6, netns: ns });
    a = await startPyService(scope, { name: names.a, bind: '::', host: '::1', keepalive: true, downstreams: [`${b.url}/b`] });
  }

  for (const keepalive of [true, false]) {
    it(`curl → [::1] A → [fd00::…] B in a namespace, 16 requests from 4 clients, ${keepalive ? 'keep-alive' : 'fresh connections from curl'}`, async () => {
      await services();
      const ids = requestIds(scope, keepalive ? 'v' : 'u', 16);
      const run = await runCurl(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 4, keepalive });
      expectStatuses(run, ids, () => 200);
      const expected = new Map(ids.map((id) => [id, hop(names.client, names.a, `GET /a/${id}`, 200, hop(names.a, names.b, `GET /b/${id}`, 200))]));
      const traces = await waitForTraces(tracing.linker, { services: Object.values(names), ids, spans: totalSpans(expected) });
      assertExactTraces(traces, expected);
      // Addresses are the IPv6 ones, each span's src being its own end.
      for (const s of traces.flatMap((tr) => tr.spans)) {
        const where = `${s.service} ${s.kind} ${s.resource}`;
        if (s.service === names.client) assert.deepEqual([s.dstIp, s.dstPort], ['::1', a.port], where);
        if (s.service === names.a && s.kind === 'entry') assert.deepEqual([s.srcIp, s.srcPort], ['::1', a.port], where);
        if (s.service === names.a && s.kind === 'exit') assert.deepEqual([s.srcIp, s.dstIp, s.dstPort], [link.a6, link.b6, b.port], where);
        if (s.service === names.b) assert.deepEqual([s.srcIp, s.srcPort, s.dstIp], [link.b6, b.port, link.a6], where);
      }
    });
  }
});
