// The fixtures and the harness on their own, without seqtrace: every topology the e2e tests
// trace answers as it should (statuses pass through chains, proxies and namespaces), and
// everything started is gone afterwards. When an e2e test fails, this says whether the
// fixture or seqtrace is at fault.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  assertRoot, closeScope, createNetns, FIXTURES, linkNetns, newScope, NGINX_WEBSOCKET_LOCATION, runCurl, runPyClient, runWebSocketClient, startApache,
  startHaproxy, startJavaService, startNginx, startNodeService, startPhpFpm, startUwsgi, startPyService, startTomcat, startVarnish, startWebSocketService, type Scope, type Service,
} from './harness.js';

const ids = ['failx', 'ya', 'zb', 'wc'];
const want = (failStatus: number) => Object.fromEntries(ids.map((id) => [id, id.startsWith('fail') ? failStatus : 200]));

describe('e2e fixtures without seqtrace', () => {
  let scope: Scope;
  let py: Service;
  before(async () => {
    scope = newScope('fixtures');
    py = await startPyService(scope, { name: 'fx-py' });
  });
  after(async () => {
    const dir = scope.dir;
    const pids = scope.cleanups.length;
    await closeScope(scope);
    assert.ok(!existsSync(dir), 'temp dir removed');
    assert.ok(pids > 0);
  });

  it('Python chain, fresh and keep-alive, fan-out in threads', async () => {
    const c = await startPyService(scope, { name: 'fx-c', keepalive: true });
    const b = await startPyService(scope, { name: 'fx-b', keepalive: true, downstreams: [`${c.url}/c`, `${py.url}/py`], parallel: true });
    const a = await startPyService(scope, { name: 'fx-a', downstreams: [`${b.url}/b`] });
    assert.deepEqual(await runPyClient(scope, { name: 'fx-cl', urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 2, keepalive: true }), { statuses: want(502), errors: {} });
    assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 2 }), { statuses: want(502), errors: {} });
  });

  it('large headers and a chunked response', async () => {
    const a = await startPyService(scope, { name: 'fx-big', downstreams: [`${py.url}/big`] });
    const res = await fetch(`${py.url}/big/q`);
    assert.equal(res.headers.get('transfer-encoding'), 'chunked');
    assert.equal(res.headers.get('x-big-7'), 'h'.repeat(1024));
    assert.equal((await res.arrayBuffer()).byteLength, 256 * 1024);
    const r = await runCurl(scope, { name: 'fx-cu', urlTemplate: `${a.url}/h/{id}`, ids: ['ya'], concurrency: 1, headers: [`X-Big: ${'x'.repeat(8192)}`] });
    assert.deepEqual(r, { statuses: { ya: 200 }, errors: {} });
  });

  it('Java thread pool, Node http, Apache and nginx in front of Python', async () => {
    const java = await startJavaService(scope, { name: 'fx-java', downstreams: [`${py.url}/py`] });
    assert.deepEqual(await runPyClient(scope, { name: 'fx-cl', urlTemplate: `${java.url}/j/{id}`, ids, concurrency: 2, keepalive: true }), { statuses: want(502), errors: {} });
    const node = await startNodeService(scope, { name: 'fx-node', downstreams: [`${py.url}/py`] });
    assert.deepEqual(await runPyClient(scope, { name: 'fx-cl', urlTemplate: `${node.url}/n/{id}`, ids, concurrency: 2, keepalive: true }), { statuses: want(502), errors: {} });
    const apache = await startApache(scope, { name: 'fx-apache', backend: `127.0.0.1:${py.port}` });
    assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${apache.url}/p/{id}`, ids, concurrency: 2, keepalive: true, headers: [`X-Big: ${'x'.repeat(8192)}`] }), { statuses: want(500), errors: {} });
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${py.port}` });
    assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${nginx.url}/p/{id}`, ids, concurrency: 2 }), { statuses: want(500), errors: {} });
    await apache.proc.stop();
    await nginx.proc.stop();
    assert.equal(execFileSync('sh', ['-c', `pgrep -g ${apache.proc.pid},${nginx.proc.pid} || true`], { encoding: 'utf8' }).trim(), '', 'no worker outlives its server');
  });

  it('nginx and Apache → PHP-FPM (FastCGI over TCP, fixtures/phpapp.php) → Python', async () => {
    const php = await startPhpFpm(scope, { name: 'fx-php', down: py.url });
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${php.port}`, fastcgiScript: join(FIXTURES, 'phpapp.php') });
    const apache = await startApache(scope, { name: 'fx-apache-fcgi', backend: `127.0.0.1:${php.port}`, fastcgiScript: join(FIXTURES, 'phpapp.php') });
    for (const front of [nginx, apache]) {
      assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${front.url}/p/{id}`, ids, concurrency: 2 }), { statuses: want(502), errors: {} }, front.name);
    }
    await php.proc.stop();
    await nginx.proc.stop();
    await apache.proc.stop();
    assert.equal(execFileSync('sh', ['-c', `pgrep -g ${php.proc.pid},${nginx.proc.pid},${apache.proc.pid} || true`], { encoding: 'utf8' }).trim(), '', 'no worker outlives its server');
  });
  it('nginx and Apache → uWSGI (uwsgi over TCP, fixtures/wsgiapp.py) → Python', async () => {
    const app = await startUwsgi(scope, { name: 'fx-uwsgi', down: py.url });
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${app.port}`, uwsgi: true });
    const apache = await startApache(scope, { name: 'fx-apache-uwsgi', backend: `127.0.0.1:${app.port}`, uwsgi: true });
    for (const front of [nginx, apache]) {
      assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${front.url}/p/{id}`, ids, concurrency: 2 }), { statuses: want(502), errors: {} }, front.name);
    }
    await app.proc.stop();
    await nginx.proc.stop();
    await apache.proc.stop();
    assert.equal(execFileSync('sh', ['-c', `pgrep -g ${app.proc.pid},${nginx.proc.pid},${apache.proc.pid} || true`], { encoding: 'utf8' }).trim(), '', 'no worker outlives its server');
  });


  it('nginx → PHP-FPM, uWSGI (uwsgi and HTTP) and Node on Unix sockets → Python', async () => {
    const php = await startPhpFpm(scope, { name: 'fx-php-ux', down: py.url, unixSocket: true });
    const uw = await startUwsgi(scope, { name: 'fx-uw-ux', down: py.url, unixSocket: true });
    const uwHttp = await startUwsgi(scope, { name: 'fx-uwh-ux', down: py.url, unixSocket: true, http: true });
    const node = await startNodeService(scope, { name: 'fx-node-ux', downstreams: [`${py.url}/py`], unixSocket: true });
    const fronts = [
      await startNginx(scope, { name: 'nginx', backend: php.url, fastcgiScript: join(FIXTURES, 'phpapp.php') }),
      await startNginx(scope, { name: 'nginx', backend: uw.url, uwsgi: true }),
      await startNginx(scope, { name: 'nginx', backend: uwHttp.url }),
      await startNginx(scope, { name: 'nginx', backend: node.url }),
    ];
    assert.ok([php, uw, uwHttp, node].every((b) => b.url.startsWith('unix:/')));
    for (const front of fronts) {
      assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${front.url}/p/{id}`, ids, concurrency: 2 }), { statuses: want(502), errors: {} }, front.url);
    }
  });

  it('Tomcat (a JSP calling out) in front of Python', async () => {
    const tomcat = await startTomcat(scope, { name: 'fx-tomcat', downstreams: [`${py.url}/py`] });
    assert.deepEqual(await runPyClient(scope, { name: 'fx-cl', urlTemplate: `${tomcat.url}/tc/{id}`, ids, concurrency: 2, keepalive: true }), { statuses: want(502), errors: {} });
  });

  it('Varnish and HAProxy in front of Python, each returning the X-Request-ID it made', async () => {
    const varnish = await startVarnish(scope, { name: 'fx-varnish', backend: `127.0.0.1:${py.port}` });
    const haproxy = await startHaproxy(scope, { name: 'fx-haproxy', backend: `127.0.0.1:${py.port}` });
    for (const front of [varnish, haproxy]) {
      assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${front.url}/p/{id}`, ids, concurrency: 2 }), { statuses: want(500), errors: {} });
      const ridOf = async () => (await fetch(`${front.url}/p/one`)).headers.get('x-request-id');
      const [a, b] = [await ridOf(), await ridOf()];
      assert.ok(a && b && a !== b, `${front.name}: an X-Request-ID per request (${a}, ${b})`);
    }
    await varnish.proc.stop();
    assert.equal(execFileSync('sh', ['-c', `pgrep -g ${varnish.proc.pid} || true`], { encoding: 'utf8' }).trim(), '', 'no worker outlives its server');
  });

  it('WebSockets through nginx, a CONNECT tunnel through Apache', async () => {
    const ws = await startWebSocketService(scope, { name: 'fx-ws' });
    const nginx = await startNginx(scope, { name: 'nginx', backend: `127.0.0.1:${ws.port}`, location: NGINX_WEBSOCKET_LOCATION });
    const ok = (status: number) => ({ statuses: Object.fromEntries(ids.map((id) => [id, status])), errors: {} });
    assert.deepEqual(await runWebSocketClient(scope, { name: 'fx-wscl', urlTemplate: `${nginx.url}/ws/{id}`, ids, concurrency: 2, messages: 3, gapMs: 10 }), ok(101));
    const apache = await startApache(scope, { name: 'fx-apache', backend: `127.0.0.1:${py.port}`, forwardProxy: true });
    assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${ws.url}/p/{id}`, ids, concurrency: 2, curlArgs: ['-p', '-x', apache.url] }), ok(200));
  });

  it('network namespaces: IPv4 between two, IPv6 from the root namespace', async () => {
    assertRoot();
    const [nsA, nsB] = [await createNetns(scope, 'a'), await createNetns(scope, 'b')];
    const link = await linkNetns(scope, nsA, nsB);
    const b = await startPyService(scope, { name: 'fx-nb', bind: '0.0.0.0', host: link.b4, netns: nsB, downstreams: [`${py.url}/py`] });
    const a = await startPyService(scope, { name: 'fx-na', netns: nsA, keepalive: true, downstreams: [`${b.url}/b`] });
    // b in namespace B cannot reach py in the root namespace: a separate host indeed.
    const r = await runPyClient(scope, { name: 'fx-cl', urlTemplate: `${a.url}/a/{id}`, ids: ['ya'], concurrency: 1, netns: nsA });
    assert.deepEqual(r, { statuses: { ya: 502 }, errors: {} });
    const ns6 = await createNetns(scope, 'v6');
    const l6 = await linkNetns(scope, null, ns6);
    const b6 = await startPyService(scope, { name: 'fx-b6', bind: '::', host: l6.b6, netns: ns6 });
    const a6 = await startPyService(scope, { name: 'fx-a6', bind: '::', host: '::1', downstreams: [`${b6.url}/b`] });
    assert.deepEqual(await runCurl(scope, { name: 'fx-cu', urlTemplate: `${a6.url}/a/{id}`, ids, concurrency: 2 }), { statuses: want(502), errors: {} });
    assert.ok(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(nsA.name));
  });
});
