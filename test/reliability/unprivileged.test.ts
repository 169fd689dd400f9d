// Reliability: least privilege. The linker needs no privilege at all; the agent needs exactly
// CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (docs/agent.md, Privileges):
//   * `bin/seqtrace linker` as user nobody, its database in a directory nobody owns: ingest and
//     query work;
//   * `bin/seqtrace agent` as user nobody with only those four capabilities (ambient, so that
//     they reach node and its seqtrace-loader child): a traced Python chain's traces arrive whole;
//     with trace_tls, an HTTPS hop (OpenSSL's uprobes) and a Go service followed by goroutine
//     (its uprobes) too: uprobes through uprobe_multi links, which need no CAP_SYS_ADMIN where
//     perf-event uprobes now do (src/bpf/uprobes.h);
//   * the agent as nobody with no capability: it refuses to start with SEQ_ERR_EBPF_UNAVAILABLE
//     and says why.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  assertRoot, closeScope, ebpfSkipReason, expectStatuses, FIXTURES, freePort, newScope, requestIds, runPyClient, SEQTRACE,
  serviceEnv, sleep, startLinker, startProcess, startPyService, subdir, tlsFiles, type Linker, type Proc, type Scope,
} from '../e2e/harness.js';
import { assertExactTraces, hop, listTraces, totalSpans, waitForTraces, type Expect } from '../e2e/trees.js';
import { loaderOf } from './bpf.js';
import { goBuild } from '../../src/agent/go/gobuild.js';
import { ensureGoOffsetsTool } from '../../src/agent/go/offsets.js';
import { encodeSpans } from '../../src/span/lineprotocol.js';
import { buildTrace, rng } from '../../src/linker/fixtures.js';

const skip = ebpfSkipReason();
const NOBODY = 65534;
const NOGROUP = 65534;
const AGENT_CAPS = '+bpf,+perfmon,+sys_ptrace,+dac_read_search';

/** A directory user nobody owns (the scope's own dir is root's, mode 0700). */
function nobodyDir(scope: Scope, label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `seqt-rel-${label}-`));
  chmodSync(dir, 0o755);
  chownSync(dir, NOBODY, NOGROUP);
  scope.cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Fails, naming the directory, when user nobody cannot pass through to `path` (e.g. a checkout in a 0700 dir). */
function assertNobodyReaches(path: string): void {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const mode = statSync(dir).mode;
    assert.ok(mode & 0o001, `user nobody cannot enter ${dir} (mode ${(mode & 0o777).toString(8)}), so it cannot run ${path}: ` +
      'put the checkout where others may pass (chmod o+x on that directory; scripts/test.sh does it for the checkout itself)');
    if (dir === '/') return;
  }
}

function asNobody(args: string[], caps?: string): string[] {
  const base = ['--reuid=nobody', '--regid=nogroup', '--clear-groups'];
  // Without caps: an empty bounding set as well, so nothing can be regained by exec.
  const capArgs = caps ? [`--inh-caps=-all,${caps}`, `--ambient-caps=${caps}`] : ['--inh-caps=-all', '--bounding-set=-all'];
  return [...base, ...capArgs, '--', ...args];
}

async function startAgentAs(scope: Scope, linkerPort: number, host: string, caps: string | undefined, readyTimeoutMs: number, extra: string[] = []): Promise<{ proc: Proc; metricsUrl: string }> {
  const dir = nobodyDir(scope, 'agent');
  const metricsPort = await freePort();
  const conf = join(dir, 'seqtrace.toml');
  writeFileSync(conf, [
    '[[inputs.ebpf]]',
    '  enabled_plugins = ["ebpf-net", "ebpf-trace"]',
    '  l7net_enabled = ["httpflow"]',
    `  trace_server = "127.0.0.1:${linkerPort}"`,
    `  metrics_listen = "127.0.0.1:${metricsPort}"`,
    // Only this test's processes (see linker-down.test.ts): others' traced load stays out.
    `  trace_envset = ["SEQT_REL_UNPRIV_${scope.tag.toUpperCase()}"]`,
    ...extra.map((line) => `  ${line}`),
    '',
  ].join('\n'));
  chmodSync(conf, 0o644);
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const proc = await startProcess(scope, {
    name: `agent ${host}`, cmd: 'setpriv', args: asNobody([SEQTRACE, 'agent', '--config', conf], caps),
    env: { ENV_HOSTNAME: host, HOME: dir }, readyCheck: async () => (await fetch(metricsUrl)).ok, readyTimeoutMs,
  });
  return { proc, metricsUrl };
}

function statusUid(pid: number): string {
  return /^Uid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
}

function capsOf(pid: number): { eff: bigint; amb: bigint } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { eff: BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(s)![1]}`), amb: BigInt(`0x${/^CapAmb:\s+([0-9a-f]+)/m.exec(s)![1]}`) };
}

describe('reliability: least privilege', { skip }, () => {
  let scope: Scope;

  before(() => {
    assertRoot();
    assertNobodyReaches(SEQTRACE);
    scope = newScope('unpriv');
  });
  after(() => closeScope(scope));

  it('the linker runs as nobody (database owned by nobody): ingest and query work', async () => {
    const dir = nobodyDir(scope, 'linker');
    const port = await freePort();
    const conf = join(dir, 'seqtrace.toml');
    writeFileSync(conf, `[[inputs.ebpftrace]]\n  sqlite_path = ${JSON.stringify(join(dir, 'db'))}\n  window = "1s"\n  sampling_rate = 1\n`);
    chmodSync(conf, 0o644);
    const url = `http://127.0.0.1:${port}`;
    const proc = await startProcess(scope, {
      name: 'linker as nobody', cmd: 'setpriv', args: asNobody([SEQTRACE, 'linker', '--config', conf]),
      env: { ENV_HTTP_LISTEN: `127.0.0.1:${port}`, HOME: dir },
      readyCheck: async () => (await fetch(`${url}/api/services`)).ok, readyTimeoutMs: 30_000,
    });
    const uid = statusUid(proc.pid);
    assert.match(uid, /^65534\s+65534\s+65534\s+65534$/, `the linker runs as nobody (Uid: ${uid})`);
    assert.equal(capsOf(proc.pid).eff, 0n, 'with no capability');

    // Three 4-service traces, posted as gzip line protocol as an agent would.
    const tag = scope.tag;
    const random = rng(7);
    const nowUs = Date.now() * 1000;
    const built = [0, 1, 2].map((i) => buildTrace({ service: `np-a-${tag}`, calls: [{ service: `np-b-${tag}`, calls: [{ service: `np-c-${tag}` }] }, { service: `np-d-${tag}` }] }, { startUs: nowUs - 1_000_000 + i * 1000, random }));
    const spans = built.flatMap((b) => b.spans);
    const res = await fetch(`${url}/v1/bpftracing`, { method: 'POST', body: gzipSync(encodeSpans(spans)), headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' } });
    const answer = await res.json() as { accepted: number };
    assert.equal(res.status, 200, JSON.stringify(answer));
    assert.equal(answer.accepted, spans.length);

    const linker: Linker = { proc, url, port };
    let mine: Awaited<ReturnType<typeof listTraces>> = [];
    for (let i = 0; i < 60; i++) {
      mine = (await listTraces(linker)).filter((t) => t.services.includes(`np-a-${tag}`));
      if (mine.length === 3 && mine.every((t) => t.spanCount === built[0].spans.length)) break;
      await sleep(250);
    }
    assert.equal(mine.length, 3, 'three traces stored and queried back');
    for (const t of mine) assert.equal(t.spanCount, built[0].spans.length);
    const st = statSync(join(dir, 'db'));
    assert.equal(st.uid, NOBODY, 'the database is nobody\'s');
  });

  it('the agent as nobody with only CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH traces a Python chain', async () => {
    const t = scope.tag;
    const linker = await startLinker(scope);
    const agent = await startAgentAs(scope, linker.port, `rel-caps-${t}`, AGENT_CAPS, 30_000);
    const uid = statusUid(agent.proc.pid);
    assert.match(uid, /^65534\s/, `the agent runs as nobody (Uid: ${uid})`);
    // CAP_DAC_READ_SEARCH=2, CAP_SYS_PTRACE=19, CAP_PERFMON=38, CAP_BPF=39: exactly these.
    const want = (1n << 2n) | (1n << 19n) | (1n << 38n) | (1n << 39n);
    assert.equal(capsOf(agent.proc.pid).eff, want, 'the agent holds exactly the four capabilities');
    const loader = await loaderOf(agent.proc.pid);
    assert.match(statusUid(loader), /^65534\s/, 'its seqtrace-loader runs as nobody too');
    assert.equal(capsOf(loader).eff, want, 'with the same four capabilities');

    const names = { client: `caps-client-${t}`, a: `caps-a-${t}`, b: `caps-b-${t}` };
    const env = { [`SEQT_REL_UNPRIV_${scope.tag.toUpperCase()}`]: '1' };
    const b = await startPyService(scope, { name: names.b, keepalive: true, env });
    const a = await startPyService(scope, { name: names.a, keepalive: true, env, downstreams: [`${b.url}/b`] });
    await sleep(1500);
    const ids = requestIds(scope, 'c', 12);
    const run = await runPyClient(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 3, keepalive: true, env });
    expectStatuses(run, ids, () => 200);
    const expected = new Map<string, Expect>(ids.map((id) => [id, hop(names.client, names.a, `GET /a/${id}`, 200, hop(names.a, names.b, `GET /b/${id}`, 200))]));
    const traces = await waitForTraces(linker, { services: Object.values(names), spans: totalSpans(expected) });
    console.log(`# capabilities-only agent figures: ${traces.length} traces, ${traces.reduce((n, x) => n + x.spans.length, 0)} spans for ${ids.length} requests`);
    assertExactTraces(traces, expected);
  });

  // Kernels with the fix for CVE-2025-38466 (6.16, and the stable lines from 5.10.240 on) refuse
  // perf-event uprobes without CAP_SYS_ADMIN: with these four capabilities the Go and OpenSSL
  // probes failed (EACCES), so Go services were joined by thread only and HTTPS not seen.
  it('the same agent with trace_tls: an HTTPS hop through OpenSSL and a Go service followed by goroutine (its uprobes, no CAP_SYS_ADMIN)', async () => {
    const t = scope.tag;
    ensureGoOffsetsTool();
    const src = subdir(scope, 'gosrc');
    cpSync(join(FIXTURES, 'go'), src, { recursive: true });
    const goBin = goBuild(src, join(subdir(scope, 'gobin'), 'goservice'));
    const linker = await startLinker(scope);
    const agent = await startAgentAs(scope, linker.port, `rel-uprobes-${t}`, AGENT_CAPS, 30_000, ['trace_tls = true']);
    assert.match(statusUid(agent.proc.pid), /^65534\s/, 'the agent runs as nobody');

    // client → a →(HTTPS) b → Go c →(a goroutine) d
    const names = { client: `up-client-${t}`, a: `up-a-${t}`, b: `up-b-${t}`, c: `up-c-${t}`, d: `up-d-${t}` };
    const env = { [`SEQT_REL_UNPRIV_${scope.tag.toUpperCase()}`]: '1' };
    const tls = tlsFiles(scope);
    const d = await startPyService(scope, { name: names.d, env });
    const cPort = await freePort();
    await startProcess(scope, {
      name: names.c, cmd: goBin, readyPort: { host: '127.0.0.1', port: cPort },
      env: serviceEnv(names.c, { ...env, PORT: String(cPort), PARALLEL: `http://127.0.0.1:${d.port}/d`, SEQUENTIAL: '' }),
    });
    const b = await startPyService(scope, { name: names.b, tls, env, downstreams: [`http://127.0.0.1:${cPort}/c`] });
    const a = await startPyService(scope, { name: names.a, cafile: tls.cert, keepalive: true, env, downstreams: [`${b.url}/b`] });
    const metric = async (name: string): Promise<number> => {
      const text = await (await fetch(agent.metricsUrl)).text();
      return Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
    };
    for (let i = 0; i < 100 && (await metric('seqtrace_agent_go_processes_total{by="goroutine"}') < 1 || await metric('seqtrace_agent_tls_processes_total') < 2); i++) await sleep(100);
    const ids = requestIds(scope, 'u', 12);
    const run = await runPyClient(scope, { name: names.client, urlTemplate: `${a.url}/a/{id}`, ids, concurrency: 3, keepalive: true, env });
    expectStatuses(run, ids, () => 200);
    const expected = new Map<string, Expect>(ids.map((id) => [id, hop(names.client, names.a, `GET /a/${id}`, 200,
      hop(names.a, names.b, `GET /b/${id}`, 200, hop(names.b, names.c, `GET /c/${id}`, 200, hop(names.c, names.d, `GET /d/${id}`, 200))))]));
    const traces = await waitForTraces(linker, { services: Object.values(names), spans: totalSpans(expected) });
    const counts = {
      goByGoroutine: await metric('seqtrace_agent_go_processes_total{by="goroutine"}'), goErrors: await metric('seqtrace_agent_go_errors_total'),
      tlsProcesses: await metric('seqtrace_agent_tls_processes_total'), tlsErrors: await metric('seqtrace_agent_tls_errors_total'),
    };
    console.log(`# uprobes without CAP_SYS_ADMIN: ${traces.length} traces for ${ids.length} requests, ${JSON.stringify(counts)}`);
    assert.equal(counts.goErrors, 0, `the Go probes were refused: ${agent.proc.output().slice(-2000)}`);
    assert.equal(counts.tlsErrors, 0, `OpenSSL's probes were refused: ${agent.proc.output().slice(-2000)}`);
    assert.ok(counts.goByGoroutine >= 1, 'the Go service is followed by goroutine');
    assert.ok(counts.tlsProcesses >= 2, 'both ends of the HTTPS hop are probed');
    assertExactTraces(traces, expected);
  });

  it('the agent as nobody with no capability fails with SEQ_ERR_EBPF_UNAVAILABLE naming the cause', async () => {
    const linker = await startLinker(scope);
    let err: Error | undefined;
    let proc: Proc | undefined;
    try {
      ({ proc } = await startAgentAs(scope, linker.port, `rel-nocaps-${scope.tag}`, undefined, 20_000));
    } catch (e) {
      err = e as Error;
    }
    assert.ok(err, `the agent started without capabilities: ${proc?.output()}`);
    console.log(`# no-capability agent says: ${/seqtrace:.*SEQ_ERR_EBPF_UNAVAILABLE.*/.exec(err.message)?.[0] ?? err.message.slice(-500)}`);
    assert.match(err.message, /exited \((\d+)\)/, 'the agent exits by itself');
    assert.doesNotMatch(err.message, /exited \(0\)/, 'with a non-zero status');
    assert.match(err.message, /SEQ_ERR_EBPF_UNAVAILABLE/);
    assert.match(err.message, /Operation not permitted/, 'the kernel\'s refusal is quoted');
    assert.match(err.message, /CAP_BPF/, 'the missing capability is named');
  });
});
