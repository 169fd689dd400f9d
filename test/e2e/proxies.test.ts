// End-to-end: reverse proxies nobody here wrote, in front of a Python service.
// Apache httpd with mpm_worker serves each request on one worker thread, which also makes the
// backend call (mod_proxy_http, pooled keep-alive backend connections): exact trees.
// nginx serves every connection on one event loop: with one request at a time its trees are
// exact; with several in flight nothing says which request a backend call serves, so the test
// asserts that nothing is linked wrongly and counts what stays unlinked (docs/e2e.md).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertRoot, closeScope, ebpfSkipReason, expectStatuses, newScope, requestIds, runCurl, startApache, startNginx,
  startPyService, startTracing, type Scope, type Tracing,
} from './harness.js';
import { assertExactTraces, assertNothingWrong, hop, totalSpans, waitForTraces, type Expect } from './trees.js';

const skip = ebpfSkipReason();

describe('e2e: Apache httpd and nginx as reverse proxies', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;

  before(async () => {
    assertRoot();
    scope = newScope('proxies');
    // nginx overwrites its /proc/PID/environ with its process title: it is traced by name.
    tracing = await startTracing(scope, [{ host: `e2e-${scope.tag}`, nameset: ['nginx'] }]);
  });
  after(() => closeScope(scope));

  function proxyTree(client: string, proxy: string, backend: string, id: string): Expect {
    const status = id.startsWith('fail') ? 500 : 200;
    return hop(client, proxy, `GET /p/${id}`, status, hop(proxy, backend, `GET /p/${id}`, status));
  }

  it('curl → Apache (mpm_worker, mod_proxy) → Python, 24 requests from 6 keep-alive clients, with 500s', async () => {
    const t = scope.tag;
    const names = { client: `ap-client-${t}`, apache: `ap-apache-${t}`, py: `ap-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const apache = await startApache(scope, { name: names.apache, backend: `127.0.0.1:${py.port}` });
    const ids = requestIds(scope, 'a', 24).map((id, i) => (i % 8 === 5 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${apache.url}/p/{id}`, ids, concurrency: 6, keepalive: true });
    expectStatuses(run, ids, (id) => id.startsWith('fail') ? 500 : 200);
    const expected = new Map(ids.map((id) => [id, proxyTree(names.client, names.apache, names.py, id)]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  it('curl → Apache → Python with an 8 KiB request header, which Apache forwards, 16 requests from 4 clients', async () => {
    const t = scope.tag;
    const names = { client: `apb-client-${t}`, apache: `apb-apache-${t}`, py: `apb-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const apache = await startApache(scope, { name: names.apache, backend: `127.0.0.1:${py.port}` });
    const ids = requestIds(scope, 'g', 16);
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${apache.url}/p/{id}`, ids, concurrency: 4, keepalive: true, headers: [`X-Big: ${'x'.repeat(8192)}`] });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, proxyTree(names.client, names.apache, names.py, id)]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected), timeoutMs: 15_000 });
    assertExactTraces(traces, expected);
  });

  it('curl → Apache → Python on fresh connections, 16 requests from 4 clients', async () => {
    const t = scope.tag;
    const names = { client: `apf-client-${t}`, apache: `apf-apache-${t}`, py: `apf-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const apache = await startApache(scope, { name: names.apache, backend: `127.0.0.1:${py.port}` });
    const ids = requestIds(scope, 'b', 16);
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${apache.url}/p/{id}`, ids, concurrency: 4 });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, proxyTree(names.client, names.apache, names.py, id)]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  it('curl → nginx → Python, one request at a time: exact trees', async () => {
    const t = scope.tag;
    const names = { client: `ng1-client-${t}`, py: `ng1-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${py.port}` });
    const ids = requestIds(scope, 'n', 12).map((id, i) => (i % 6 === 4 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/p/{id}`, ids, concurrency: 1, keepalive: true });
    expectStatuses(run, ids, (id) => id.startsWith('fail') ? 500 : 200);
    const expected = new Map(ids.map((id) => [id, proxyTree(names.client, 'nginx', names.py, id)]));
    const shared = { services: ['nginx'], ports: [nginx.port, py.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  it('curl → nginx → Python, 30 requests from 6 clients: nothing linked wrongly (event loop)', async () => {
    const t = scope.tag;
    const names = { client: `ngc-client-${t}`, py: `ngc-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${py.port}` });
    const ids = requestIds(scope, 'm', 30);
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/p/{id}`, ids, concurrency: 6 });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, proxyTree(names.client, 'nginx', names.py, id)]));
    const shared = { services: ['nginx'], ports: [nginx.port, py.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected) });
    const report = assertNothingWrong(traces, expected, 'nginx');
    console.log(`nginx under concurrency: ${report.spans} spans, ${report.linked} links right, ${report.missing.length} of ${ids.length} nginx entry→exit links left open, none wrong`);
  });
});
