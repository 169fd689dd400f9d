// End-to-end: a Java service on com.sun.net.httpserver with a fixed thread pool, calling a
// Python service with HttpURLConnection on the pool thread (keep-alive connections shared by
// the pool's threads), called by concurrent Python clients.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  assertRoot, closeScope, ebpfSkipReason, expectStatuses, newScope, requestIds, runPyClient, startJavaService,
  startPyService, startTracing, type Scope, type Tracing,
} from './harness.js';
import { assertExactTraces, hop, totalSpans, waitForTraces } from './trees.js';

const skip = ebpfSkipReason();

describe('e2e: Java HttpServer on a thread pool', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;

  before(async () => {
    assertRoot();
    scope = newScope('java');
    tracing = await startTracing(scope);
  });
  after(() => closeScope(scope));

  for (const keepalive of [true, false]) {
    it(`Python client → Java (4 pool threads) → Python, 24 requests from 6 ${keepalive ? 'keep-alive' : 'fresh-connection'} clients, with 500s`, async () => {
      const t = scope.tag;
      const k = keepalive ? 'k' : 'f';
      const names = { client: `jc${k}-client-${t}`, java: `jc${k}-java-${t}`, py: `jc${k}-py-${t}` };
      const py = await startPyService(scope, { name: names.py });
      const java = await startJavaService(scope, { name: names.java, downstreams: [`${py.url}/py`], threads: 4 });
      const ids = requestIds(scope, `j${k}`, 24).map((id, i) => (i % 8 === 3 ? `fail${id}` : id));
      const run = await runPyClient(scope, { name: names.client, urlTemplate: `${java.url}/java/{id}`, ids, concurrency: 6, keepalive });
      expectStatuses(run, ids, (id) => id.startsWith('fail') ? 502 : 200);
      const expected = new Map(ids.map((id) => {
        const fail = id.startsWith('fail');
        return [id, hop(names.client, names.java, `GET /java/${id}`, fail ? 502 : 200, hop(names.java, names.py, `GET /py/${id}`, fail ? 500 : 200))];
      }));
      const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
      assertExactTraces(traces, expected);
    });
  }
});
