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

  // TLS on both sides of the chain: curl's (libcurl's own BIO) to nginx's listener, and Python's
  // as a client (kept connections) to Python's as a server (each connection's handshake on its
  // handler thread). nginx makes an X-Request-ID and passes it on: its event loop's calls join
  // their requests by it. (Not nginx as an HTTPS client: it reads ahead, and an answer whose
  // records come together gets another number at nginx than at its server: docs/agent.md, "HTTPS".)
  it('curl → nginx (HTTPS) → Python → Python (HTTPS), 30 requests from 6 keep-alive clients: exact trees', async () => {
    const t = scope.tag;
    const tls = tlsFiles(scope);
    const names = { client: `tls-client-${t}`, a: `tls-a-${t}`, b: `tls-b-${t}` };
    const b = await startPyService(scope, { name: names.b, tls });
    const a = await startPyService(scope, { name: names.a, cafile: tls.cert, keepalive: true, downstreams: [`${b.url}/b`], slowMs: 100 });
    const location = 'proxy_set_header X-Request-ID $request_id; add_header X-Request-ID $request_id always;';
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${a.port}`, location, tls });
    assert.match(nginx.url, /^https:/);
    const before = await agentMetrics(tracing.agents[0]);
    // curl makes its first call milliseconds after its exec, within the time the agent takes to
    // probe a new process (docs/agent.md, "HTTPS"): each curl first fetches something over plain
    // HTTP that takes 100 ms (a's /slow/, not asserted), then the test's requests over HTTPS.
    const ids = requestIds(scope, 't', 30).map((id, i) => (i % 10 === 7 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/p/{id}`, ids, concurrency: 6, keepalive: true, curlArgs: ['--cacert', tls.cert], firstUrl: `${a.url}/slow/warmup{n}` });
    // a fail… id: b answers 500, a (and so nginx) 502
    const fail = (id: string) => id.startsWith('fail');
    expectStatuses(run, ids, (id) => (fail(id) ? 502 : 200));
    const expected = new Map(ids.map((id) => [id, hop(names.client, 'nginx', `GET /p/${id}`, fail(id) ? 502 : 200,
      hop('nginx', names.a, `GET /p/${id}`, fail(id) ? 502 : 200, hop(names.a, names.b, `GET /b/${id}`, fail(id) ? 500 : 200)))]));
    const shared = { services: ['nginx'], ports: [nginx.port, a.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected), ids });
    assertExactTraces(traces, expected);
    const after = await agentMetrics(tracing.agents[0]);
    // the run's six curls (the warm-up's may have exited before its probes were on)
    assert.ok(after.seqtrace_agent_tls_processes_total - before.seqtrace_agent_tls_processes_total >= 6, 'OpenSSL probed in each curl');
  });
});
