// End-to-end: a Java service on com.sun.net.httpserver with a fixed thread pool, calling a
// Python service with HttpURLConnection on the pool thread (keep-alive connections shared by
// the pool's threads), called by concurrent Python clients; and Apache Tomcat 10, whose
// connector's pool thread runs a JSP that calls out the same way.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertRoot, closeScope, ebpfSkipReason, expectStatuses, newScope, requestIds, runPyClient, startJavaService,
  startPyService, startTomcat, startTracing, type Scope, type Tracing,
} from './harness.js';
import { assertExactTraces, assertNothingWrong, hop, totalSpans, waitForTraces } from './trees.js';

const skip = ebpfSkipReason();

describe('e2e: Java HttpServer on a thread pool, and Tomcat', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;

  before(async () => {
    assertRoot();
    scope = newScope('java');
    tracing = await startTracing(scope);
  });
  after(() => closeScope(scope));

  // The JDK's server on a pool of 4, and Tomcat's NIO connector, whose pool thread runs a JSP.
  const servers = {
    java: { label: 'Java (4 pool threads)', tag: 'jc', route: 'java', start: (name: string, down: string) => startJavaService(scope, { name, downstreams: [down], threads: 4 }) },
    tomcat: { label: 'Tomcat 10 (NIO connector, JSP)', tag: 'tc', route: 'tc', start: (name: string, down: string) => startTomcat(scope, { name, downstreams: [down] }) },
  };
  for (const server of Object.values(servers)) {
    for (const keepalive of [true, false]) {
      it(`Python client → ${server.label} → Python, 24 requests from 6 ${keepalive ? 'keep-alive' : 'fresh-connection'} clients, with 500s`, async () => {
        const t = scope.tag;
        const k = keepalive ? 'k' : 'f';
        const names = { client: `${server.tag}${k}-client-${t}`, java: `${server.tag}${k}-${server.route}-${t}`, py: `${server.tag}${k}-py-${t}` };
        const py = await startPyService(scope, { name: names.py });
        const java = await server.start(names.java, `${py.url}/py`);
        const ids = requestIds(scope, `${server.tag[0]}${k}`, 24).map((id, i) => (i % 8 === 3 ? `fail${id}` : id));
        const run = await runPyClient(scope, { name: names.client, urlTemplate: `${java.url}/${server.route}/{id}`, ids, concurrency: 6, keepalive });
        expectStatuses(run, ids, (id) => id.startsWith('fail') ? 502 : 200);
        const expected = new Map(ids.map((id) => {
          const fail = id.startsWith('fail');
          return [id, hop(names.client, names.java, `GET /${server.route}/${id}`, fail ? 502 : 200, hop(names.java, names.py, `GET /py/${id}`, fail ? 500 : 200))];
        }));
        const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
        assertExactTraces(traces, expected);
      });
    }
  }

  // A handler fanning its calls out: to threads it starts and joins (their calls are the
  // request's: exact trees), or to a pool shared by all requests, whose threads the first
  // requests' submits start (their calls are anyone's: left unjoined, never joined wrongly).
  for (const fanout of ['threads', 'pool:2'] as const) {
    it(`Java fans out to two Python services through ${fanout === 'threads' ? 'threads it starts per call' : 'a shared pool of 2 threads'}, 20 requests from 4 keep-alive clients`, async () => {
      const t = scope.tag;
      const k = fanout === 'threads' ? 't' : 'p';
      const names = { client: `jf${k}-client-${t}`, java: `jf${k}-java-${t}`, x: `jf${k}-x-${t}`, y: `jf${k}-y-${t}` };
      const [x, y] = await Promise.all([startPyService(scope, { name: names.x }), startPyService(scope, { name: names.y })]);
      const java = await startJavaService(scope, { name: names.java, downstreams: [`${x.url}/x`, `${y.url}/y`], fanout });
      const ids = requestIds(scope, `jf${k}`, 20);
      const run = await runPyClient(scope, { name: names.client, urlTemplate: `${java.url}/java/{id}`, ids, concurrency: 4, keepalive: true });
      expectStatuses(run, ids, () => 200);
      const expected = new Map(ids.map((id) => [id, hop(names.client, names.java, `GET /java/${id}`, 200,
        hop(names.java, names.x, `GET /x/${id}`, 200), hop(names.java, names.y, `GET /y/${id}`, 200))]));
      const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
      if (fanout === 'threads') assertExactTraces(traces, expected);
      else {
        const report = assertNothingWrong(traces, expected, names.java);
        assert.equal(report.missing.length, 2 * ids.length, `every call made by the pool is left unjoined: ${report.missing.length} of ${2 * ids.length}`);
      }
    });
  }
});
