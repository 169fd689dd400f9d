// End-to-end: HTTPS. The agent sees the plaintext of OpenSSL's calls (src/bpf/tls.bpf.h) in
// curl, nginx and Python's ssl module, and the linker joins the two ends of a TLS connection by
// the TCP sequence number past each message's first record, as it joins plain HTTP by the
// message's first byte (docs/kernel.md, "TLS").
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  agentMetrics, assertRoot, closeScope, ebpfSkipReason, expectStatuses, newScope, requestIds, runCurl, startNginx, startPyService, startTracing,
  tlsFiles, type Scope, type Tracing,
} from './harness.js';
import { assertExactTraces, hop, totalSpans, waitForTraces } from './trees.js';

const skip = ebpfSkipReason();

describe('e2e: HTTPS through OpenSSL (curl, nginx, Python)', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;

  before(async () => {
    assertRoot();
    scope = newScope('https');
    // nginx overwrites its /proc/PID/environ with its process title: it is traced by name.
    // (trace_tls is off by default: a uprobe costs ≈ 18 µs a call on this VM)
    tracing = await startTracing(scope, [{ host: `e2e-${scope.tag}`, nameset: ['nginx'], extra: { trace_tls: true } }]);
  });
  after(() => closeScope(scope));

  // Every hop over TLS: curl's (libcurl's own BIO), nginx's as a server and as a client (kept
  // upstream connections, sessions reused), Python's as a server (each connection's handshake
  // on its handler thread) and as a client (kept connections). nginx makes an X-Request-ID and
  // passes it on: its event loop's calls join their requests by it.
  it('curl → nginx → Python → Python, every hop HTTPS, 30 requests from 6 keep-alive clients: exact trees', async () => {
    const t = scope.tag;
    const tls = tlsFiles(scope);
    const names = { client: `tls-client-${t}`, a: `tls-a-${t}`, b: `tls-b-${t}` };
    const b = await startPyService(scope, { name: names.b, tls });
    const a = await startPyService(scope, { name: names.a, tls, cafile: tls.cert, keepalive: true, downstreams: [`${b.url}/b`] });
    const location = 'proxy_set_header X-Request-ID $request_id; add_header X-Request-ID $request_id always;';
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${a.port}`, location, tls, backendTls: true });
    assert.match(nginx.url, /^https:/);
    const before = await agentMetrics(tracing.agents[0]);
    const ids = requestIds(scope, 't', 30).map((id, i) => (i % 10 === 7 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/p/{id}`, ids, concurrency: 6, keepalive: true, curlArgs: ['--cacert', tls.cert] });
    // a fail… id: b answers 500, a (and so nginx) 502
    const fail = (id: string) => id.startsWith('fail');
    expectStatuses(run, ids, (id) => (fail(id) ? 502 : 200));
    const expected = new Map(ids.map((id) => [id, hop(names.client, 'nginx', `GET /p/${id}`, fail(id) ? 502 : 200,
      hop('nginx', names.a, `GET /p/${id}`, fail(id) ? 502 : 200, hop(names.a, names.b, `GET /b/${id}`, fail(id) ? 500 : 200)))]));
    const shared = { services: ['nginx'], ports: [nginx.port, a.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
    const after = await agentMetrics(tracing.agents[0]);
    // curl, nginx's master and worker, a and b (processes started before are counted before)
    assert.ok(after.seqtrace_agent_tls_processes_total - before.seqtrace_agent_tls_processes_total >= 3, 'OpenSSL probed in the new processes');
  });
});
