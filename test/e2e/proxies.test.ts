// End-to-end: reverse proxies nobody here wrote, in front of a Python service.
// Apache httpd with mpm_worker or mpm_event serves each request on one worker thread, which
// also makes the backend call (mod_proxy_http, pooled keep-alive backend connections): exact
// trees.
// nginx serves every connection on one event loop: with one request at a time its trees are
// exact; with several in flight nothing says which request a backend call serves, so the test
// asserts that nothing is linked wrongly and counts what stays unlinked (docs/e2e.md), unless
// the clients send X-Request-ID, which nginx passes on, or nginx makes one and returns it to
// its clients: exact trees again.
// Varnish serves a request on one worker thread and makes its backend call from another, and
// HAProxy's threads are event loops: with the X-Request-ID their configurations make and
// return (fixtures/varnish.vcl, fixtures/haproxy.cfg), exact trees under concurrency.
// nginx in front of PHP-FPM speaks FastCGI to it (over TCP, and over a Unix socket): PHP-FPM's
// entries come from the FastCGI records, and PHP's calls join them (fixtures/phpapp.php). In
// front of uWSGI it speaks the uwsgi protocol, and the WSGI app's calls join uWSGI's entries
// (fixtures/wsgiapp.py).
import { join } from 'node:path';
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  agentMetrics, assertRoot, closeScope, ebpfSkipReason, expectStatuses, FIXTURES, newScope, PYTHON, requestIds, runCurl, runToEnd, serviceEnv,
  startApache, startHaproxy, startNginx, startNodeService, startPhpFpm, startPyService, startTracing, startUwsgi, startVarnish, type Scope, type Tracing,
} from './harness.js';
import { assertExactTraces, assertNothingWrong, hop, totalSpans, waitForTraces, type Expect } from './trees.js';

const skip = ebpfSkipReason();

describe('e2e: Apache httpd, nginx, Varnish and HAProxy as reverse proxies', { skip }, () => {
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

  // A client that gives up sends its request and resets the connection (a timeout, a health
  // check). The reset puts the server's socket in TCP's CLOSE state before Apache reads the
  // request; Apache still reads it, calls the backend and fails to answer. When the capture
  // sent the close at the CLOSE state, it came before that read, the agent took the read for a
  // new connection that never ended, and its entry's group stayed open on the worker thread for
  // two minutes: the later requests that thread served had their backend calls left unjoined
  // (found under wrk through mpm_event, whose lingering close drains such requests too).
  it('curl → Apache (mpm_event) → Python, 24 requests from 6 keep-alive clients after 8 clients that reset right after their request', async () => {
    const t = scope.tag;
    const names = { client: `ape-client-${t}`, apache: `ape-apache-${t}`, py: `ape-py-${t}`, reset: `ape-reset-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const apache = await startApache(scope, { name: names.apache, backend: `127.0.0.1:${py.port}`, mpm: 'event' });
    const resets = requestIds(scope, 'r', 8);
    await runToEnd(scope, {
      name: names.reset, cmd: PYTHON, env: serviceEnv(names.reset),
      args: ['-c', `import socket, struct, sys, time
conns = []
for rid in sys.argv[2:]:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(("GET /p/%s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" % rid).encode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conns.append(s)
for s in conns:
    s.close()
time.sleep(0.5)`, String(apache.port), ...resets],
    });
    const ids = requestIds(scope, 'e', 24).map((id, i) => (i % 8 === 5 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${apache.url}/p/{id}`, ids, concurrency: 6, keepalive: true });
    expectStatuses(run, ids, (id) => id.startsWith('fail') ? 500 : 200);
    const expected = new Map(ids.map((id) => [id, proxyTree(names.client, names.apache, names.py, id)]));
    const traces = await waitForTraces(tracing.linker, { services: [names.client, names.apache, names.py], ids, spans: totalSpans(expected) });
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

  it('curl → nginx → Python, 30 requests from 6 clients sending X-Request-ID (nginx passes it on): exact trees', async () => {
    const t = scope.tag;
    const names = { client: `ngr-client-${t}`, py: `ngr-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${py.port}` });
    const ids = requestIds(scope, 'r', 30).map((id, i) => (i % 10 === 7 ? `fail${id}` : id));
    const before = (await agentMetrics(tracing.agents[0])).seqtrace_agent_thread_group_request_id_joins_total;
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/p/{id}`, ids, concurrency: 6, headers: ['X-Request-ID: {id}-7f3a'] });
    expectStatuses(run, ids, (id) => id.startsWith('fail') ? 500 : 200);
    const expected = new Map(ids.map((id) => [id, proxyTree(names.client, 'nginx', names.py, id)]));
    const shared = { services: ['nginx'], ports: [nginx.port, py.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
    const joins = ((await agentMetrics(tracing.agents[0])).seqtrace_agent_thread_group_request_id_joins_total) - before;
    console.log(`nginx under concurrency with X-Request-ID: ${joins} of ${ids.length} exits joined by it`);
  });

  it('curl → nginx making its own X-Request-ID (upstream and back to the client) → Python, 30 requests from 6 clients: exact trees', async () => {
    const t = scope.tag;
    const names = { client: `ngm-client-${t}`, py: `ngm-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    // As NGINX's own tracing guide has it.
    const location = 'proxy_set_header X-Request-ID $request_id; add_header X-Request-ID $request_id always;';
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${py.port}`, location });
    const ids = requestIds(scope, 's', 30).map((id, i) => (i % 10 === 7 ? `fail${id}` : id));
    const before = (await agentMetrics(tracing.agents[0])).seqtrace_agent_thread_group_request_id_joins_total;
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/p/{id}`, ids, concurrency: 6 });
    expectStatuses(run, ids, (id) => id.startsWith('fail') ? 500 : 200);
    const expected = new Map(ids.map((id) => [id, proxyTree(names.client, 'nginx', names.py, id)]));
    const shared = { services: ['nginx'], ports: [nginx.port, py.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
    const joins = (await agentMetrics(tracing.agents[0])).seqtrace_agent_thread_group_request_id_joins_total - before;
    console.log(`nginx making its own X-Request-ID under concurrency: ${joins} of ${ids.length} exits joined by it`);
  });

  // nginx → PHP-FPM over TCP, FastCGI, a connection per request (two worker processes, each one
  // request at a time); PHP calls Python. nginx makes an X-Request-ID, passes it as a CGI
  // parameter and returns it: its event loop's FastCGI calls join their requests by it.
  it('curl → nginx → PHP-FPM (FastCGI) → Python, 30 requests from 6 clients: exact trees', async () => {
    const t = scope.tag;
    const names = { client: `php-client-${t}`, php: `php-${t}`, py: `php-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const php = await startPhpFpm(scope, { name: names.php, down: py.url });
    const location = 'fastcgi_param HTTP_X_REQUEST_ID $request_id; add_header X-Request-ID $request_id always;';
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${php.port}`, location, fastcgiScript: join(FIXTURES, 'phpapp.php') });
    const ids = requestIds(scope, 'f', 30).map((id, i) => (i % 10 === 7 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/p/{id}`, ids, concurrency: 6 });
    const code = (id: string) => (id.startsWith('fail') ? 502 : 200);
    expectStatuses(run, ids, code);
    const expected = new Map(ids.map((id) => [id, hop(names.client, 'nginx', `GET /p/${id}`, code(id),
      hop('nginx', names.php, `GET /p/${id}`, code(id), hop(names.php, names.py, `GET /p/${id}`, id.startsWith('fail') ? 500 : 200)))]));
    const shared = { services: ['nginx'], ports: [nginx.port, php.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
    const fcgi = traces.flatMap((tr) => tr.spans).filter((s) => s.service === names.php && s.kind === 'entry');
    assert.ok(fcgi.length === ids.length && fcgi.every((s) => s.operation === 'FastCGI'), 'PHP-FPM\'s entries are FastCGI');
  });

  /**
   * Requests through `urlTemplate` (ids `warmup…`, not among those a test asserts) until the
   * agent has asked for shutdown events: the first traced answer until the close does.
   */
  async function warmUpShutdowns(urlTemplate: string, client: string): Promise<void> {
    const shutdowns = async () => Number(/^seqtrace_agent_events_total\{kind="shutdown"\} (\d+)$/m.exec(await (await fetch(tracing.agents[0].metricsUrl)).text())?.[1] ?? 0);
    for (let i = 0; i < 20 && (await shutdowns()) === 0; i++) {
      expectStatuses(await runCurl(scope, { name: client, urlTemplate, ids: [`warmup${i}`], concurrency: 1 }), [`warmup${i}`], () => 200);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok((await shutdowns()) > 0, 'a warm-up answer until the close had the agent ask for shutdown events');
  }

  // nginx → uWSGI over TCP in the uwsgi protocol, a connection per request; uWSGI's threads
  // (two processes of two) each serve one request at a time, answering until the close, and
  // take their next request on another connection before nginx has closed the last: the
  // answer's group must end at uWSGI's FIN (shutdown events, asked for by the agent once it
  // saw the first such answer: the warm-up request).
  it('curl → nginx → uWSGI (uwsgi protocol, threads) → Python, 30 requests from 6 clients: exact trees', async () => {
    const t = scope.tag;
    const names = { client: `uw-client-${t}`, app: `uw-${t}`, py: `uw-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const app = await startUwsgi(scope, { name: names.app, down: py.url });
    const location = 'uwsgi_param HTTP_X_REQUEST_ID $request_id; add_header X-Request-ID $request_id always;';
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${app.port}`, location, uwsgi: true });
    await warmUpShutdowns(`${nginx.url}/u/{id}`, names.client);
    const ids = requestIds(scope, 'w', 30).map((id, i) => (i % 10 === 7 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/u/{id}`, ids, concurrency: 6 });
    const code = (id: string) => (id.startsWith('fail') ? 502 : 200);
    expectStatuses(run, ids, code);
    const expected = new Map(ids.map((id) => [id, hop(names.client, 'nginx', `GET /u/${id}`, code(id),
      hop('nginx', names.app, `GET /u/${id}`, code(id), hop(names.app, names.py, `GET /u/${id}`, id.startsWith('fail') ? 500 : 200)))]));
    const shared = { services: ['nginx'], ports: [nginx.port, app.port] };
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected), ids });
    assertExactTraces(traces, expected);
    const entries = traces.flatMap((tr) => tr.spans).filter((s) => s.service === names.app && s.kind === 'entry');
    assert.ok(entries.length === ids.length && entries.every((s) => s.operation === 'uwsgi'), 'uWSGI\'s entries are uwsgi');
  });

  // Backends on Unix sockets (Debian's default for PHP-FPM, many guides' for uWSGI and for
  // application servers behind nginx): no TCP sequence numbers, both ends on this host; the
  // agent gives each message one id at both ends (docs/agent.md, "Unix sockets"). uWSGI's
  // answers run until its close, which the agent sees as nginx's read of the end (a Unix socket
  // has no close event of its own); Node keeps nginx's connections alive (several exchanges on
  // one socket) and passes nginx's X-Request-ID on (an event loop).
  const unixBackends = [
    { backend: 'PHP-FPM (FastCGI)', tag: 'xf', operation: 'FastCGI' },
    { backend: 'uWSGI (uwsgi protocol)', tag: 'xw', operation: 'uwsgi' },
    { backend: 'uWSGI (HTTP, a connection each)', tag: 'xh', operation: 'HTTP' },
    { backend: 'Node http (HTTP, keep-alive)', tag: 'xn', operation: 'HTTP' },
  ] as const;
  for (const { backend, tag, operation } of unixBackends) {
    it(`curl → nginx → ${backend} over a Unix socket → Python, 30 requests from 6 clients: exact trees`, async () => {
      const t = scope.tag;
      const names = { client: `${tag}-client-${t}`, app: `${tag}-app-${t}`, py: `${tag}-py-${t}` };
      const py = await startPyService(scope, { name: names.py });
      const app = tag === 'xf' ? await startPhpFpm(scope, { name: names.app, down: py.url, unixSocket: true })
        : tag === 'xn' ? await startNodeService(scope, { name: names.app, downstreams: [`${py.url}/py`], forwardRequestId: true, unixSocket: true })
          : await startUwsgi(scope, { name: names.app, down: py.url, unixSocket: true, http: tag === 'xh' });
      const idLines = (param: string) => `${param} $request_id; add_header X-Request-ID $request_id always;`;
      const nginx = await startNginx(scope, {
        name: 'nginx', backend: app.url,
        ...(tag === 'xf' ? { fastcgiScript: join(FIXTURES, 'phpapp.php'), location: idLines('fastcgi_param HTTP_X_REQUEST_ID') }
          : tag === 'xw' ? { uwsgi: true, location: idLines('uwsgi_param HTTP_X_REQUEST_ID') } : { location: idLines('proxy_set_header X-Request-ID') }),
      });
      const ids = requestIds(scope, tag, 30).map((id, i) => (i % 10 === 7 ? `fail${id}` : id));
      const run = await runCurl(scope, { name: names.client, urlTemplate: `${nginx.url}/x/{id}`, ids, concurrency: 6 });
      const code = (id: string) => (id.startsWith('fail') ? 502 : 200);
      expectStatuses(run, ids, code);
      const downPath = (id: string) => (tag === 'xn' ? `/py/${id}` : `/x/${id}`);
      const expected = new Map(ids.map((id) => [id, hop(names.client, 'nginx', `GET /x/${id}`, code(id),
        hop('nginx', names.app, `GET /x/${id}`, code(id), hop(names.app, names.py, `GET ${downPath(id)}`, id.startsWith('fail') ? 500 : 200)))]));
      const shared = { services: ['nginx'], ports: [nginx.port] };
      const traces = await waitForTraces(tracing.linker, { services: Object.values(names), shared, spans: totalSpans(expected), ids });
      assertExactTraces(traces, expected);
      const hops = traces.flatMap((tr) => tr.spans).filter((s) => (s.service === 'nginx' && s.kind === 'exit') || (s.service === names.app && s.kind === 'entry'));
      assert.equal(hops.length, 2 * ids.length);
      assert.ok(hops.every((s) => s.attrs.unix_path === app.url.slice('unix:'.length) && s.operation === operation), 'over the socket file, in its protocol');
    });
  }

  // Apache's mod_proxy_fcgi: the worker thread serving a request makes the FastCGI call.
  it('curl → Apache (mpm_worker, mod_proxy_fcgi) → PHP-FPM → Python, 24 requests from 6 keep-alive clients: exact trees', async () => {
    const t = scope.tag;
    const names = { client: `apc-client-${t}`, apache: `apc-apache-${t}`, php: `apc-php-${t}`, py: `apc-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const php = await startPhpFpm(scope, { name: names.php, down: py.url });
    const apache = await startApache(scope, { name: names.apache, backend: `127.0.0.1:${php.port}`, fastcgiScript: join(FIXTURES, 'phpapp.php') });
    const ids = requestIds(scope, 'c', 24).map((id, i) => (i % 8 === 5 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${apache.url}/p/{id}`, ids, concurrency: 6, keepalive: true });
    const code = (id: string) => (id.startsWith('fail') ? 502 : 200);
    expectStatuses(run, ids, code);
    const expected = new Map(ids.map((id) => [id, hop(names.client, names.apache, `GET /p/${id}`, code(id),
      hop(names.apache, names.php, `GET /p/${id}`, code(id), hop(names.php, names.py, `GET /p/${id}`, id.startsWith('fail') ? 500 : 200)))]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  // Apache's mod_proxy_uwsgi: the worker thread serving a request makes the uwsgi call.
  it('curl → Apache (mpm_worker, mod_proxy_uwsgi) → uWSGI → Python, 24 requests from 6 keep-alive clients: exact trees', async () => {
    const t = scope.tag;
    const names = { client: `apu-client-${t}`, apache: `apu-apache-${t}`, app: `apu-uw-${t}`, py: `apu-py-${t}` };
    const py = await startPyService(scope, { name: names.py });
    const app = await startUwsgi(scope, { name: names.app, down: py.url });
    const apache = await startApache(scope, { name: names.apache, backend: `127.0.0.1:${app.port}`, uwsgi: true });
    await warmUpShutdowns(`${apache.url}/u/{id}`, names.client);
    const ids = requestIds(scope, 'v', 24).map((id, i) => (i % 8 === 5 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${apache.url}/u/{id}`, ids, concurrency: 6, keepalive: true });
    const code = (id: string) => (id.startsWith('fail') ? 502 : 200);
    expectStatuses(run, ids, code);
    const expected = new Map(ids.map((id) => [id, hop(names.client, names.apache, `GET /u/${id}`, code(id),
      hop(names.apache, names.app, `GET /u/${id}`, code(id), hop(names.app, names.py, `GET /u/${id}`, id.startsWith('fail') ? 500 : 200)))]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected), ids });
    assertExactTraces(traces, expected);
  });

  // Varnish writes a head as two iovec entries per header line; its X-Request-ID comes after
  // the fifth header, where a kernel side that walked 16 entries stopped (docs/kernel.md).
  for (const proxy of ['varnish', 'haproxy'] as const) {
    it(`curl → ${proxy === 'varnish' ? 'Varnish (the backend call on another thread)' : 'HAProxy (two event-loop threads)'} making its own X-Request-ID → Python, 30 requests from 6 clients: exact trees`, async () => {
      const t = scope.tag;
      const names = { client: `${proxy}-client-${t}`, proxy: `${proxy}-${t}`, py: `${proxy}-py-${t}` };
      const py = await startPyService(scope, { name: names.py });
      const start = proxy === 'varnish' ? startVarnish : startHaproxy;
      const front = await start(scope, { name: names.proxy, backend: `127.0.0.1:${py.port}` });
      const ids = requestIds(scope, proxy[0], 30).map((id, i) => (i % 10 === 7 ? `fail${id}` : id));
      const before = (await agentMetrics(tracing.agents[0])).seqtrace_agent_thread_group_request_id_joins_total;
      const run = await runCurl(scope, { name: names.client, urlTemplate: `${front.url}/p/{id}`, ids, concurrency: 6 });
      expectStatuses(run, ids, (id) => id.startsWith('fail') ? 500 : 200);
      const expected = new Map(ids.map((id) => [id, proxyTree(names.client, names.proxy, names.py, id)]));
      const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
      assertExactTraces(traces, expected);
      const joins = (await agentMetrics(tracing.agents[0])).seqtrace_agent_thread_group_request_id_joins_total - before;
      console.log(`${proxy} making its own X-Request-ID under concurrency: ${joins} of ${ids.length} backend calls joined by it`);
    });
  }
});
