// End-to-end: Python ThreadingHTTPServer services calling each other, traced by a real agent,
// linked by a real linker, every trace checked span by span.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  assertRoot, closeScope, ebpfSkipReason, expectStatuses, newScope, requestIds, runCurl, runPyClient, startPyService, startTracing,
  type PyServiceOptions, type Scope, type Tracing,
} from './harness.js';
import { assertExactTraces, assertNothingWrong, hop, totalSpans, waitForTraces, type Expect } from './trees.js';

const skip = ebpfSkipReason();

/** client → a → b → c, all on /<route>/<id>; a fail-… id makes c answer 500 and the others 502. */
function chainTree(names: { client: string; a: string; b: string; c: string }, id: string): Expect {
  const leaf = id.startsWith('fail') ? 500 : 200;
  const mid = id.startsWith('fail') ? 502 : 200;
  return hop(names.client, names.a, `GET /a/${id}`, mid,
    hop(names.a, names.b, `GET /b/${id}`, mid,
      hop(names.b, names.c, `GET /c/${id}`, leaf)));
}

describe('e2e: Python ThreadingHTTPServer services', { skip }, () => {
  let scope: Scope;
  let tracing: Tracing;

  before(async () => {
    assertRoot();
    scope = newScope('python');
    tracing = await startTracing(scope);
  });
  after(() => closeScope(scope));

  async function chain(label: string, keepalive: boolean, sendTraceparent = false) {
    const t = scope.tag;
    const names = { client: `${label}-client-${t}`, a: `${label}-a-${t}`, b: `${label}-b-${t}`, c: `${label}-c-${t}` };
    const c = await startPyService(scope, { name: names.c, keepalive });
    const b = await startPyService(scope, { name: names.b, keepalive, downstreams: [`${c.url}/c`] });
    const a = await startPyService(scope, { name: names.a, keepalive, sendTraceparent, downstreams: [`${b.url}/b`] });
    return { names, a, b, c };
  }

  it('curl → A → B → C on fresh connections, 24 requests from 6 clients, with 500s', async () => {
    const { names, a } = await chain('fresh', false);
    const ids = requestIds(scope, 'f', 24).map((id, i) => (i % 6 === 5 ? `fail${id}` : id));
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 6 });
    expectStatuses(run, ids, (id) => (id.startsWith('fail') ? 502 : 200));
    const expected = new Map(ids.map((id) => [id, chainTree(names, id)]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  // A client that gives up (its timeout) reads no answer, so its exit span has no respSeq; the
  // server got the request and went on with it. The linker pairs them by the request's seq
  // alone then (docs/linking.md): the timed-out call and the work it caused are one trace.
  // (Before 2026-12-06 both ends needed the answer's seq too: each request made two traces,
  // the client's call alone and the server's subtree.) A's answer fails too: its head, written
  // first, reaches a closed socket, which resets the connection, and the body's write fails;
  // its entry has status 0 (response_status_seen 200).
  it('curl that times out after 0.4 s → A (answers after 1 s) → B, 8 requests from 4 clients on fresh connections', async () => {
    const t = scope.tag;
    const names = { client: `slow-client-${t}`, a: `slow-a-${t}`, b: `slow-b-${t}` };
    const b = await startPyService(scope, { name: names.b });
    const a = await startPyService(scope, { name: names.a, downstreams: [`${b.url}/b`] });
    const ids = requestIds(scope, 's', 8);
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${a.url}/slow/{id}`, ids, concurrency: 4, maxTimeS: 0.4 });
    expectStatuses(run, ids, () => 0);
    assert.ok(ids.every((id) => /curl exit 28/.test(run.errors[id])), JSON.stringify(run.errors));
    const expected = new Map(ids.map((id): [string, Expect] => [id, {
      service: names.client, kind: 'exit', resource: `GET /slow/${id}`, status: 0,
      children: [{ service: names.a, kind: 'entry', resource: `GET /slow/${id}`, status: 0, children: [hop(names.a, names.b, `GET /b/${id}`, 200)] }],
    }]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  it('Python client → A → B → C over keep-alive connections shared between threads, 30 requests from 6 clients', async () => {
    const { names, a } = await chain('keep', true);
    const ids = requestIds(scope, 'k', 30);
    const run = await runPyClient(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 6, keepalive: true });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, chainTree(names, id)]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  /** A fans out to X, Y and Z, 20 requests from 4 clients; keep-alive everywhere: what is checked is the hand-off to other threads. */
  async function fanOut(label: string, idPrefix: string, how: Pick<PyServiceOptions, 'parallel' | 'pool'>) {
    const t = scope.tag;
    const names = { client: `${label}-client-${t}`, a: `${label}-a-${t}`, x: `${label}-x-${t}`, y: `${label}-y-${t}`, z: `${label}-z-${t}` };
    const [x, y, z] = await Promise.all([names.x, names.y, names.z].map((name) => startPyService(scope, { name })));
    const a = await startPyService(scope, { name: names.a, ...how, keepalive: true, downstreams: [`${x.url}/x`, `${y.url}/y`, `${z.url}/z`] });
    const ids = requestIds(scope, idPrefix, 20);
    const run = await runPyClient(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 4, keepalive: true });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, hop(names.client, names.a, `GET /a/${id}`, 200,
      hop(names.a, names.x, `GET /x/${id}`, 200),
      hop(names.a, names.y, `GET /y/${id}`, 200),
      hop(names.a, names.z, `GET /z/${id}`, 200))]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    return { names, ids, expected, traces };
  }

  it('A fans out to three downstreams in parallel threads, 20 requests from 4 clients', async () => {
    const { expected, traces } = await fanOut('fan', 'p', { parallel: true });
    assertExactTraces(traces, expected);
  });

  it('A fans out through a thread pool its first requests started: pool work joins no request, never a wrong one', async () => {
    // ThreadPoolExecutor starts a worker on a submit while it has fewer than max_workers, so
    // the workers are started from inside the first requests' handlers and inherit their
    // groups; then they run every request's calls, the first requests' still open. The agent
    // sees them outlive those requests and sends their calls without a group: the calls are
    // still linked to the downstreams by sequence numbers, just not to A's entries.
    const { names, ids, expected, traces } = await fanOut('pool', 'q', { pool: 3 });
    const report = assertNothingWrong(traces, expected, names.a);
    assert.equal(report.missing.length, 3 * ids.length, `every call made by the pool is left unjoined: ${report.missing.length} of ${3 * ids.length}`);
  });

  it('an 8 KiB request header, and a response with 8 KiB of headers and a chunked 256 KiB body, 20 requests from 4 clients', async () => {
    const t = scope.tag;
    const names = { client: `big-client-${t}`, a: `big-a-${t}`, b: `big-b-${t}` };
    const b = await startPyService(scope, { name: names.b });
    const a = await startPyService(scope, { name: names.a, downstreams: [`${b.url}/big`] });
    const ids = requestIds(scope, 'h', 20);
    const bigHeader = `X-Big: ${'h'.repeat(8192)}`;
    const run = await runCurl(scope, { name: names.client, urlTemplate: `${a.url}/h/{id}`, ids, concurrency: 4, keepalive: true, headers: [bigHeader] });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, hop(names.client, names.a, `GET /h/${id}`, 200, hop(names.a, names.b, `GET /big/${id}`, 200))]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
  });

  it('A sends a W3C traceparent mid-chain: the whole trace, A\'s caller included, takes its trace id', async () => {
    const { names, a } = await chain('app', true, true);
    const ids = requestIds(scope, 'w', 20);
    const run = await runPyClient(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 4, keepalive: true });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, chainTree(names, id)]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
    for (const trace of traces) {
      const root = trace.spans.find((s) => !trace.spans.some((p) => p.spanId === s.parentId))!;
      const id = root.resource.split('/').pop()!;
      const want = createHash('sha256').update(id).digest('hex').slice(0, 32); // pyservice.traceparent_for
      assert.equal(trace.traceId, want, `trace of ${id} takes the application's trace id`);
      for (const s of trace.spans) assert.equal(s.traceId, want, `${s.service} ${s.kind} ${s.resource} carries the trace id`);
      // The exchange that carried the header has it on both ends (A's exit, B's entry); the
      // rest of the trace has it only through the linker.
      for (const s of trace.spans.filter((x) => (x.service === names.a && x.kind === 'exit') || (x.service === names.b && x.kind === 'entry'))) {
        assert.equal(s.appTraceId, want, `${s.service} ${s.kind} app_trace_id`);
      }
    }
  });

  it('a client sends a traceparent at the root: every span takes it', async () => {
    const { names, a } = await chain('root', true);
    const ids = requestIds(scope, 'r', 12);
    const run = await runPyClient(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 4, keepalive: true, traceparent: true });
    expectStatuses(run, ids, () => 200);
    const expected = new Map(ids.map((id) => [id, chainTree(names, id)]));
    const traces = await waitForTraces(tracing.linker, { services: Object.values(names), spans: totalSpans(expected) });
    assertExactTraces(traces, expected);
    for (const trace of traces) {
      const id = trace.spans.find((s) => s.service === names.a && s.kind === 'entry')!.resource.split('/').pop()!;
      const want = createHash('sha256').update(id).digest('hex').slice(0, 32);
      for (const s of trace.spans) assert.equal(s.traceId, want, `${s.service} ${s.kind} ${s.resource} carries the client's trace id`);
    }
  });
});
