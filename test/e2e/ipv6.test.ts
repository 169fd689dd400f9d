// End-to-end over IPv6: a client on [::1] → a Python service listening on [::] → a Python
// service in a network namespace, reached on its fd00::/64 address over a veth pair.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertRoot, closeScope, createNetns, ebpfSkipReason, linkNetns, newScope, requestIds, runCurl, startPyService, startTracing,
  type Scope, type Tracing,
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

  it('curl → [::1] A → [fd00::…] B in a namespace, 24 requests from 4 clients, fresh and keep-alive', async () => {
    const t = scope.tag;
    const names = { client: `v6-client-${t}`, a: `v6-a-${t}`, b: `v6-b-${t}` };
    const ns = await createNetns(scope, 'v6');
    const link = await linkNetns(scope, null, ns);
    const b = await startPyService(scope, { name: names.b, bind: '::', host: link.b6, netns: ns });
    const a = await startPyService(scope, { name: names.a, bind: '::', host: '::1', downstreams: [`${b.url}/b`] });
    const ids = requestIds(scope, 'v', 24);
    const [fresh, reused] = [ids.slice(0, 12), ids.slice(12)];
    const runs = await Promise.all([
      runCurl(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids: fresh, concurrency: 2 }),
      runCurl(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids: reused, concurrency: 2, keepalive: true }),
    ]);
    for (const id of ids) assert.equal({ ...runs[0].statuses, ...runs[1].statuses }[id], 200);
    const expected = new Map(ids.map((id) => [id, hop(names.client, names.a, `GET /a/${id}`, 200, hop(names.a, names.b, `GET /b/${id}`, 200))]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
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
});
