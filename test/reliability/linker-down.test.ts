// Reliability: the linker goes away in the middle of a run. A real agent traces a Python chain
// (client → A → B → C); the linker (bin/seqtrace linker) is stopped, requests keep flowing, the
// linker is started again on the same port with the same sqlite_path. Every request's trace
// must arrive, exactly once and whole; the agent must have retried and dropped nothing; the
// traced application must never have noticed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  agentMetrics, assertRoot, closeScope, ebpfSkipReason, expectStatuses, freePort, newScope, requestIds, runPyClient, SEQTRACE,
  sleep, startAgent, startProcess, startPyService, subdir, type Agent, type Linker, type Scope,
} from '../e2e/harness.js';
import { assertExactTraces, hop, requestIdOf, totalSpans, waitForTraces, type Expect } from '../e2e/trees.js';

const skip = ebpfSkipReason();

/** A linker on a fixed port and database, so that it can be started again on both. */
async function startLinkerAt(scope: Scope, dir: string, port: number): Promise<Linker> {
  const conf = join(dir, 'seqtrace.toml');
  writeFileSync(conf, `[[inputs.ebpftrace]]\n  sqlite_path = ${JSON.stringify(join(dir, 'db'))}\n  window = "1s"\n  sampling_rate = 1\n`);
  const url = `http://127.0.0.1:${port}`;
  const proc = await startProcess(scope, {
    name: 'linker', cmd: SEQTRACE, args: ['linker', '--config', conf], env: { ENV_HTTP_LISTEN: `127.0.0.1:${port}` },
    readyCheck: async () => (await fetch(`${url}/api/services`)).ok, readyTimeoutMs: 20_000,
  });
  return { proc, url, port };
}

describe('reliability: the linker stops and comes back mid-run', { skip }, () => {
  let scope: Scope;

  before(() => { assertRoot(); scope = newScope('linkerdown'); });
  after(() => closeScope(scope));

  for (const how of ['SIGTERM', 'SIGKILL'] as const) it(`${how} to the linker; requests before, during and after the outage: every trace arrives whole, retries counted, nothing dropped, no request failed`, async () => {
    const t = `${scope.tag}${how === 'SIGTERM' ? 't' : 'k'}`;
    const dir = subdir(scope, 'linker');
    const port = await freePort();
    let linker = await startLinkerAt(scope, dir, port);
    // Only this test's processes are traced (a variable only they carry): other engineers'
    // traced load on this machine would otherwise fill the agent's send buffer during the
    // outage, and its drops would hide ours.
    const mark = `SEQT_REL_DOWN_${t.toUpperCase()}`;
    const agent = await startAgent(scope, { port }, { host: `rel-down-${t}`, envset: [mark] });
    const env = { [mark]: '1' };
    const names = { client: `down-client-${t}`, a: `down-a-${t}`, b: `down-b-${t}`, c: `down-c-${t}` };
    const c = await startPyService(scope, { name: names.c, keepalive: true, env });
    const b = await startPyService(scope, { name: names.b, keepalive: true, env, downstreams: [`${c.url}/c`] });
    const a = await startPyService(scope, { name: names.a, keepalive: true, env, downstreams: [`${b.url}/b`] });
    await sleep(1500); // the agent's /proc scan finds the services

    const phase = async (prefix: string, n: number) => {
      const ids = requestIds(scope, `${prefix}${how === 'SIGTERM' ? 't' : 'k'}`, n);
      const run = await runPyClient(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 4, keepalive: true, env });
      expectStatuses(run, ids, () => 200);
      return ids;
    };

    const before1 = await phase('u', 20);
    await sleep(500);
    const m0 = await agentMetrics(agent);
    const tStop = Date.now();
    if (how === 'SIGTERM') await linker.proc.stop(); // finishes what is in flight, open traces stay in the spool
    else { process.kill(linker.proc.pid, 'SIGKILL'); await linker.proc.exited; } // a 2xx must survive this
    const during = [...await phase('d', 20), ...await phase('e', 20)];
    await sleep(3000); // the agent retries against a closed port
    const mDown = await agentMetrics(agent);
    linker = await startLinkerAt(scope, dir, port);
    const downMs = Date.now() - tStop;
    const after1 = await phase('r', 20);

    const ids = [...before1, ...during, ...after1];
    const expected = new Map<string, Expect>(ids.map((id) => [id, hop(names.client, names.a, `GET /a/${id}`, 200,
      hop(names.a, names.b, `GET /b/${id}`, 200, hop(names.b, names.c, `GET /c/${id}`, 200)))]));
    const traces = await waitForTraces(linker, { services: Object.values(names), spans: totalSpans(expected), timeoutMs: 60_000, settleMs: 3000 });
    const m1 = await agentMetrics(agent);
    const figures = {
      requests: ids.length, duringOutage: during.length, outageMs: downMs, traces: traces.length,
      spans: traces.reduce((n, tr) => n + tr.spans.length, 0),
      retriesDuringOutage: (mDown.seqtrace_agent_send_retries_total ?? 0) - (m0.seqtrace_agent_send_retries_total ?? 0),
      retries: m1.seqtrace_agent_send_retries_total, dropped: m1.seqtrace_agent_spans_dropped_total,
      sendFailed: m1.seqtrace_agent_spans_send_failed_total, rejectedByLinker: m1.seqtrace_agent_spans_rejected_by_linker_total,
      captureDrops: m1.seqtrace_agent_capture_drops_total,
    };
    console.log(`# linker-down (${how}) figures: ${JSON.stringify(figures)}`);
    assert.equal(linker.proc.exitCode(), undefined, 'the restarted linker runs');
    assert.ok(figures.retriesDuringOutage > 0, `the agent retried while the linker was down (send_retries_total ${m0.seqtrace_agent_send_retries_total} → ${mDown.seqtrace_agent_send_retries_total})`);
    assert.equal(m1.seqtrace_agent_spans_dropped_total, 0, 'no span dropped by the agent');
    assert.equal(m1.seqtrace_agent_spans_send_failed_total, 0, 'no span given up on');
    const found = new Set(traces.flatMap((tr) => tr.spans.map((sp) => requestIdOf(sp.resource))));
    const missing = ids.filter((id) => !found.has(id));
    assert.deepEqual(missing, [], `requests with no span stored (phases: u before, d/e during, r after the outage)`);
    assert.equal(traces.length, ids.length, `exactly one trace per request (${traces.length} traces for ${ids.length} requests)`);
    assertExactTraces(traces, expected);
    // The next variant starts its own agent: this one must not trace its services too.
    await agent.proc.stop();
    await linker.proc.stop();
  });
});
