// End-to-end: connections that leave HTTP/1. A WebSocket's handshake ends with 101 Switching
// Protocols and a proxy's tunnel with the 200 answering CONNECT; what follows on the connection
// is not HTTP/1 (frames, TLS, a tunnelled stream). The exchange that switched is a span of its
// own, sent at the switch with that status, and nothing after it is parsed (docs/agent.md,
// "Parsing"). Before, a WebSocket showed as a request that lasted as long as the socket and
// failed, and every frame after it counted as a parse error.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  agentMetrics, assertRoot, closeScope, ebpfSkipReason, expectStatuses, newScope, NGINX_WEBSOCKET_LOCATION, requestIds, runCurl, runWebSocketClient,
  startApache, startNginx, startPyService, startTracing, startWebSocketService, type Scope, type Tracing,
} from './harness.js';
import { assertExactTraces, hop, renderExpected, renderTrace, totalSpans, waitForTraces, type Trace } from './trees.js';

const skip = ebpfSkipReason();

describe('e2e: protocol switches (WebSocket through nginx, a CONNECT tunnel through Apache)', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;

  before(async () => {
    assertRoot();
    scope = newScope('upgrade');
    tracing = await startTracing(scope, [{ host: `e2e-${scope.tag}`, nameset: ['nginx'] }]);
  });
  after(() => closeScope(scope));

  /** The agent's counters now minus `before`. */
  async function since(before: Record<string, number>): Promise<Record<string, number>> {
    const now = await agentMetrics(tracing.agents[0]);
    return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (before[k] ?? 0)]));
  }

  it('Python WebSocket clients → nginx → aiohttp, 12 sockets 4 at a time, frames that look like HTTP: one short 101 span per hop', async () => {
    const t = scope.tag;
    const names = { client: `ws-client-${t}`, server: `ws-server-${t}` };
    const server = await startWebSocketService(scope, { name: names.server });
    // The client sends X-Request-ID, which nginx passes on: its event loop's calls join their
    // requests under concurrency (docs/agent.md).
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${server.port}`, location: NGINX_WEBSOCKET_LOCATION });
    const ids = requestIds(scope, 'w', 12);
    const before = await agentMetrics(tracing.agents[0]);
    // Each socket lives ≥ 6 × 60 ms; its handshake takes a few.
    const run = await runWebSocketClient(scope, { name: names.client, urlTemplate: `${nginx.url}/ws/{id}`, ids, concurrency: 4, messages: 6, gapMs: 60 });
    expectStatuses(run, ids, () => 101);
    const expected = new Map(ids.map((id) => [id, hop(names.client, 'nginx', `GET /ws/${id}`, 101, hop('nginx', names.server, `GET /ws/${id}`, 101))]));
    const shared = { services: ['nginx'], ports: [nginx.port, server.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
    const spans = traces.flatMap((tr) => tr.spans);
    const longest = Math.max(...spans.map((s) => s.durationUs));
    assert.ok(longest < 300_000, `every span ends at the 101, long before its socket closes (longest ${longest} µs)`);
    assert.ok(spans.every((s) => s.status === 'ok' && !s.attrs.response_incomplete), 'no span failed');
    const d = await since(before);
    // Four sockets per WebSocket: the client's, nginx's two, the server's.
    assert.equal(d.seqtrace_agent_connections_protocol_switched_total, 4 * ids.length);
    assert.equal(d.seqtrace_agent_parse_errors_total, 0, 'no frame parsed as HTTP');
    assert.equal(d.seqtrace_agent_spans_failed_total, 0);
  });

  it('curl → Apache (forward proxy) → a CONNECT tunnel to Python, 8 fresh tunnels: the CONNECT spans, and what Apache relays as its own calls', async () => {
    const t = scope.tag;
    const names = { client: `ct-client-${t}`, apache: `ct-apache-${t}`, py: `ct-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const apache = await startApache(scope, { name: names.apache, backend: `127.0.0.1:${py.port}`, forwardProxy: true });
    const ids = requestIds(scope, 'c', 8);
    const before = await agentMetrics(tracing.agents[0]);
    // -p: a tunnel even for an http:// URL, so the request inside it is plain text. curl's
    // bytes through the tunnel are not parsed on its connection to the proxy; Apache's relay
    // writes them to Python on a connection of its own, where they are a request Apache sends.
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${py.url}/p/{id}`, ids, concurrency: 2, curlArgs: ['-p', '-x', apache.url] });
    expectStatuses(run, ids, () => 200);
    const connect = `CONNECT 127.0.0.1:${py.port}`;
    const tunnel = hop(names.client, names.apache, connect, 200);
    const relayed = new Map(ids.map((id) => [id, hop(names.apache, names.py, `GET /p/${id}`, 200)]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: 2 * ids.length + totalSpans(relayed) });
    const isConnect = (tr: Trace) => tr.spans.some((s) => s.httpMethod === 'CONNECT');
    const tunnels = traces.filter(isConnect);
    assert.equal(tunnels.length, ids.length, `one trace per tunnel:\n${tunnels.map((tr) => renderTrace(tr)).join('\n---\n')}`);
    for (const tr of tunnels) assert.equal(renderTrace(tr), renderExpected(tunnel));
    assertExactTraces(traces.filter((tr) => !isConnect(tr)), relayed);
    const d = await since(before);
    // curl's connection to Apache and Apache's from curl.
    assert.equal(d.seqtrace_agent_connections_protocol_switched_total, 2 * ids.length);
    assert.equal(d.seqtrace_agent_parse_errors_total, 0);
    assert.equal(d.seqtrace_agent_spans_failed_total, 0);
  });
});
