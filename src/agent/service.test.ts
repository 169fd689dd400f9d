// End to end on the real kernel: the agent's eBPF capture sees three Python processes talk
// HTTP (client → users → db) and sends their spans to a real HTTP server standing in for the
// linker. Needs root and eBPF; skipped only with SEQTRACE_SKIP_EBPF=1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeSelection, startAgent, type Agent } from './service.js';
import { startCapture as realStartCapture, type Capture } from './capture/loader.js';
import { seqError } from '../errors.js';
import { bpfObjectsOf, tracedPids, waitFor } from './capture/testkit.js';
import { loadConfig, type AgentConfig } from '../config/config.js';
import type { ProcessEvent } from './capture/event.js';
import { decodeLineProtocol } from '../span/lineprotocol.js';
import { validatePoints } from '../span/validate.js';
import type { EbpfSpan } from '../span/span.js';

const skip = process.env.SEQTRACE_SKIP_EBPF === '1';
if (skip) console.log('# skipped: SEQTRACE_SKIP_EBPF=1 (agent end-to-end on eBPF)');

const SERVER = `
import http.client, http.server, os, sys
down = os.environ.get('DOWN')
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        if down:
            c = http.client.HTTPConnection('127.0.0.1', int(down))
            # "Connection: close": the response and the server's FIN may be read in one call,
            # whose sequence number the capture corrects (copied_seq counts the FIN).
            c.request('GET', '/back' + self.path, headers={'Connection': 'close'})
            c.getresponse().read()
            c.close()
        body = b'ok:' + self.path.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
`;

const CLIENT = `
import http.client, os, sys
port = int(os.environ['UP'])
sys.stdin.readline()
c = http.client.HTTPConnection('127.0.0.1', port)
for i in range(3):
    h = {'traceparent': '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'} if i == 0 else {}
    c.request('GET', '/front/%d?q=1' % i, headers=h)
    c.getresponse().read()
c.close()
print('done', flush=True)
`;

function py(code: string, env: Record<string, string>): ChildProcessWithoutNullStreams {
  return spawn('/usr/bin/python3', ['-c', code], { env: { PATH: '/usr/bin:/bin', ...env } });
}

async function firstLine(p: ChildProcessWithoutNullStreams): Promise<string> {
  let out = '';
  for await (const chunk of p.stdout) {
    out += chunk;
    if (out.includes('\n')) return out.split('\n')[0];
  }
  throw new Error(`process exited before printing: ${out}`);
}

/** A stand-in for the linker: accepts every batch the agent posts; spans() decodes all so far. */
async function fakeLinker(): Promise<{ server: Server; traceServer: string; spans(): EbpfSpan[] }> {
  const received: string[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      received.push((req.headers['content-encoding'] === 'br' ? brotliDecompressSync(body) : gunzipSync(body)).toString('utf8'));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"accepted":1,"rejected":0,"errors":[]}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    traceServer: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans: () => validatePoints(decodeLineProtocol(received.join('')).points, { maxFieldBytes: 8192 }).spans,
  };
}

test('agent: spans of a real three-process chain reach the linker, linked by thread group and sequence numbers', { skip }, async () => {
  const linker = await fakeLinker();
  const procs: ChildProcessWithoutNullStreams[] = [];
  let agent: Agent | undefined;
  try {
    const db = py(SERVER, { DD_SERVICE: 'db' });
    procs.push(db);
    const dbPort = await firstLine(db);
    const users = py(SERVER, { DD_SERVICE: 'users', DOWN: dbPort });
    procs.push(users);
    const usersPort = await firstLine(users);
    const client = py(CLIENT, { OTEL_SERVICE_NAME: 'frontend', UP: usersPort });
    procs.push(client);

    const { agent: cfg } = loadConfig({
      env: {
        ENV_INPUT_EBPF_TRACE_SERVER: linker.traceServer,
        ENV_INPUT_EBPF_METRICS_LISTEN: '127.0.0.1:0',
        ENV_HOSTNAME: 'test-host',
      },
    });
    const logs: string[] = [];
    agent = await startAgent(cfg, { flushIntervalMs: 100, log: (m) => logs.push(m) });
    // Started, it says so: mode, what it traces (the three processes were started before it), where spans go.
    assert.match(logs[0], /^seqtrace agent: capturing in (socket|syscall) mode, tracing any process with DK_BPFTRACE_SERVICE, DD_SERVICE, OTEL_SERVICE_NAME in its environment \(\d+ now\); spans to http:\/\/127\.0\.0\.1:\d+\/v1\/bpftracing, metrics on http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.ok(Number(/\((\d+) now\)/.exec(logs[0])![1]) >= 3, logs[0]);
    client.stdin.write('go\n');
    assert.equal(await firstLine(client), 'done');

    const want = 12; // 3 × (client exit, users entry, users exit, db entry)
    const deadline = Date.now() + 15_000;
    let spans: EbpfSpan[] = [];
    const mine = new Set([db.pid, users.pid, client.pid]);
    while (Date.now() < deadline) {
      spans = linker.spans().filter((s) => mine.has(s.pid));
      if (spans.length >= want) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const by = (pid: number | undefined, kind: string) => spans.filter((s) => s.pid === pid && s.kind === kind);
    assert.equal(by(client.pid, 'exit').length, 3, 'client exits');
    assert.equal(by(users.pid, 'entry').length, 3, 'users entries');
    assert.equal(by(users.pid, 'exit').length, 3, 'users exits');
    assert.equal(by(db.pid, 'entry').length, 3, 'db entries');

    for (const entry of by(users.pid, 'entry')) {
      assert.equal(entry.service, 'users');
      assert.equal(entry.host, 'test-host');
      assert.match(entry.resource, /^GET \/front\/\d$/, 'query string dropped');
      assert.equal(entry.httpStatusCode, 200);
      assert.notEqual(entry.threadGroup, '');
      // The call it made on its handler thread joined its group…
      const exit = by(users.pid, 'exit').find((x) => x.threadGroup === entry.threadGroup);
      assert.ok(exit, `an exit in group ${entry.threadGroup}`);
      assert.equal(exit.resource, `GET /back${entry.httpRoute}`);
      // …and that call is the db's entry: same sequence numbers on both ends.
      const dbEntry = by(db.pid, 'entry').find((x) => x.reqSeq === exit.reqSeq && x.respSeq === exit.respSeq);
      assert.ok(dbEntry, `db entry with the exit's sequence numbers: ${JSON.stringify(spans.map((s) => [s.pid, s.kind, s.reqSeq, s.respSeq, s.resource, s.threadGroup, s.tid]))}`);
      assert.equal(dbEntry.service, 'db');
      // The client's call is this entry.
      const clientExit = by(client.pid, 'exit').find((x) => x.reqSeq === entry.reqSeq && x.respSeq === entry.respSeq);
      assert.ok(clientExit, 'client exit with the entry\'s sequence numbers');
      assert.equal(clientExit.service, 'frontend');
      assert.ok(clientExit.startUs <= entry.startUs && entry.startUs + entry.durationUs <= clientExit.startUs + clientExit.durationUs + 1000, 'server span inside client span');
      assert.ok(Math.abs(entry.startUs - Date.now() * 1000) < 60e6, 'epoch microseconds');
      assert.equal(entry.srcPort, Number(usersPort), 'src is the server\'s own end');
    }
    const withTrace = by(users.pid, 'entry').filter((s) => s.appTraceId);
    assert.equal(withTrace.length, 1);
    assert.equal(withTrace[0].appTraceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(withTrace[0].appSampled, 1);

    const metrics = await (await fetch(agent.metricsUrl)).text();
    const spansMade = Number(/^seqtrace_agent_spans_total (\d+)/m.exec(metrics)?.[1]);
    assert.ok(spansMade >= want, `spans_total ${spansMade}`);
    assert.match(metrics, /^seqtrace_agent_thread_group_joins_total [1-9]/m);
    assert.match(metrics, /^seqtrace_agent_traced_processes [1-9]/m);
    assert.match(metrics, /^seqtrace_agent_environ_unreadable_total \d+$/m, 'environments it could not read are counted, not silent');
    assert.match(metrics, /^seqtrace_agent_spans_sent_total [1-9]/m);

    // A service started after the agent is named on stderr once it is traced, under the name
    // it has then; the helpers its launcher ran first (a shim's shells and readlinks, here
    // /bin/true and a second sh, traced from their fork, gone at once) are not named.
    const late = spawn('/bin/sh', ['-c', '/bin/true; /bin/sh -c /bin/true; exec /usr/bin/python3 -c "import sys; sys.stdin.readline()"'],
      { env: { PATH: '/usr/bin:/bin', OTEL_SERVICE_NAME: 'late-one' } });
    procs.push(late);
    const said = `seqtrace agent: tracing pid ${late.pid} (python3) as service late-one`;
    const until = Date.now() + 10_000;
    while (!logs.includes(said)) {
      assert.ok(Date.now() < until, `expected "${said}" in:\n${logs.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(logs.filter((m) => m.includes('late-one')), [said], 'only the service is named, not its launcher\'s helpers');
    assert.equal(logs.filter((m) => m.includes(`pid ${users.pid} `)).length, 0, 'processes traced at the start are counted, not named');
  } finally {
    await agent?.close();
    for (const p of procs) p.kill('SIGKILL');
    linker.server.close();
  }
});

test('agent refuses a configuration that cannot trace', async () => {
  const { agent: cfg } = loadConfig({ env: { ENV_INPUT_EBPF_ENABLED_PLUGINS: 'ebpf-net' } });
  await assert.rejects(startAgent(cfg), /cannot trace: enabled_plugins lacks "ebpf-trace"/);
  const { agent: bad } = loadConfig({ env: { ENV_INPUT_EBPF_TRACE_SERVER: 'nohostport' } });
  await assert.rejects(startAgent(bad), /trace_server = "nohostport"/);
});

test('the start line names the selection as configured', () => {
  const cfg = { trace_all_process: false, trace_envset: ['DD_SERVICE'], trace_nameset: [] as string[], trace_namedenyset: [] as string[] };
  const cases: Array<[Partial<typeof cfg>, number, string]> = [
    [{}, 2, 'any process with DD_SERVICE in its environment (2 now)'],
    [{ trace_nameset: ['nginx', 'java'] }, 0, 'any process with DD_SERVICE in its environment or any process named nginx, java (0 now)'],
    [{ trace_envset: [], trace_nameset: ['nginx'], trace_namedenyset: ['curl'] }, 1, 'any process named nginx (1 now), never curl'],
    [{ trace_all_process: true, trace_namedenyset: ['sshd'] }, 85, 'every process (85 now), never sshd'],
    [{ trace_envset: [] }, 0, 'no process (trace_envset and trace_nameset are empty) (0 now)'],
  ];
  for (const [over, n, want] of cases) assert.equal(describeSelection({ ...cfg, ...over }, n), want);
});

// The loader's first frames carry what it read while starting (3.2 s in syscall mode here): the exec
// of a service started meanwhile reaches the agent before its start has returned. That service
// must end up traced in the kernel, not only counted. The exec is handed over the way the
// loader's frames hand it (through onEvents, before startCapture resolves to the agent);
// loader, kernel and process are real. (Failed before 2026-12-06: counted, never traced.)
test('agent: a service whose exec arrives while the capture starts is traced in the kernel', { skip }, async () => {
  let agent: Agent | undefined;
  let late: ChildProcessWithoutNullStreams | undefined;
  let loaderPid = 0;
  try {
    const { agent: cfg } = loadConfig({ env: { ENV_INPUT_EBPF_METRICS_LISTEN: '127.0.0.1:0', ENV_INPUT_EBPF_TRACE_SERVER: '127.0.0.1:9' } });
    agent = await startAgent(cfg, {
      log: () => {},
      startCapture: async (o) => {
        // Without provisional tracing at exec, which would trace the service from its exec anyway.
        const cap = await realStartCapture({ ...o, provisionalExec: false });
        loaderPid = cap.loaderPid;
        late = py('import sys; sys.stdin.readline()', { OTEL_SERVICE_NAME: 'started-meanwhile' });
        const pid = late.pid!;
        await waitFor('its exec done', () => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'python3');
        o.onEvents([{ kind: 'exec', tsNs: Number(process.hrtime.bigint()), pid, ppid: process.pid, provisional: false, comm: 'python3', env: null }]);
        return cap;
      },
    });
    const traced = bpfObjectsOf(loaderPid).maps.find((m) => m.name === 'traced')!;
    await waitFor('the service traced in the kernel', () => tracedPids(traced.id).includes(late!.pid!), 3000);
  } finally {
    await agent?.close();
    late?.kill('SIGKILL');
  }
});

// The loader crashing (or killed) must not leave an agent that runs and traces nothing: it is
// started again, given every traced process, and a connection in use across the gap goes on
// being parsed (its bytes meanwhile skipped by their sequence numbers).
test('agent: a loader that stops is started again; tracing goes on, on the same keep-alive connection', { skip }, async () => {
  const linker = await fakeLinker();
  const procs: ChildProcessWithoutNullStreams[] = [];
  let agent: Agent | undefined;
  try {
    const api = py(SERVER, { DD_SERVICE: 'api' });
    procs.push(api);
    const apiPort = await firstLine(api);
    // One request per line read, on one connection; "done" after each.
    const client = py(`
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', ${apiPort})
for line in sys.stdin:
    c.request('GET', '/front/' + line.strip())
    c.getresponse().read()
    print('done', flush=True)
`, { OTEL_SERVICE_NAME: 'caller' });
    procs.push(client);
    const { agent: cfg } = loadConfig({ env: { ENV_INPUT_EBPF_TRACE_SERVER: linker.traceServer, ENV_INPUT_EBPF_METRICS_LISTEN: '127.0.0.1:0' } });
    const logs: string[] = [];
    const loaders: number[] = [];
    agent = await startAgent(cfg, {
      flushIntervalMs: 100,
      log: (m) => logs.push(m),
      startCapture: async (o) => {
        const cap = await realStartCapture(o);
        loaders.push(cap.loaderPid);
        return cap;
      },
    });
    const lines = client.stdout.setEncoding('utf8')[Symbol.asyncIterator]();
    const call = async (path: string) => {
      client.stdin.write(path + '\n');
      assert.match(String((await lines.next()).value), /done/);
    };
    const mine = (path: string) => linker.spans().filter((s) => s.resource === `GET /front/${path}`);
    await call('one');
    await waitFor('the first exchange\'s two spans', () => mine('one').length === 2, 10_000);

    process.kill(loaders[0], 'SIGKILL');
    await call('meanwhile'); // while no loader runs: not seen
    await waitFor('a second loader', () => loaders.length === 2 && logs.some((m) => m.includes('the eBPF loader runs again')), 10_000);
    assert.ok(logs.some((m) => /SEQ_ERR_EBPF_LOAD: the eBPF loader stopped: exit SIGKILL/.test(m)), logs.join('\n'));
    await call('two');
    await call('three');
    await waitFor('the later exchanges\' spans', () => mine('two').length === 2 && mine('three').length === 2, 10_000);
    for (const s of [...mine('two'), ...mine('three')]) assert.equal(s.httpStatusCode, 200);
    const metrics = await (await fetch(agent.metricsUrl)).text();
    assert.match(metrics, /^seqtrace_agent_loader_restarts_total 1$/m);
    assert.ok(bpfObjectsOf(loaders[1]).maps.length > 0, 'the second loader holds the maps');
  } finally {
    await agent?.close();
    for (const p of procs) p.kill('SIGKILL');
    linker.server.close();
  }
});

// A loader that stops the moment it is ready (before the agent holds it), and one that keeps
// stopping soon after its start: started again, waiting longer each time. No eBPF: a stand-in
// capture that reports its stop.
test('agent: a loader that stops as it starts is started again, later each time it stops again', async () => {
  const { agent: cfg } = loadConfig({ env: { ENV_INPUT_EBPF_TRACE_SERVER: '127.0.0.1:9', ENV_INPUT_EBPF_METRICS_LISTEN: '127.0.0.1:0' } });
  const starts: number[] = [];
  const logs: string[] = [];
  const fake = (): Capture => ({
    mode: 'socket', loaderPid: 0, addPid: async () => {}, removePid: async () => {}, goProcess: async () => {}, goUprobe: async () => {}, tlsProcess: async () => {}, wantShutdowns: async () => {}, mute: async () => true,
    stats: () => ({ kind: 'stats', ringbufDrops: 0, events: 10, truncated: 0, loaderCpuNs: 0, late: 0 }),
    refreshStats: async () => ({ kind: 'stats', ringbufDrops: 0, events: 10, truncated: 0, loaderCpuNs: 0, late: 0 }),
    close: async () => {},
  });
  const agent = await startAgent(cfg, {
    log: (m) => logs.push(m),
    startCapture: async (o) => {
      starts.push(Date.now());
      // The first two stop at once, before the agent has them (as a loader whose ready frame and
      // failure come in one read), the third lives on.
      const n = starts.length;
      if (n <= 2) queueMicrotask(() => o.onError(seqError('SEQ_ERR_EBPF_LOAD', `the eBPF loader stopped: test ${n}`)));
      return fake();
    },
  });
  try {
    await waitFor('three loaders', () => starts.length === 3, 10_000);
    const gaps = [starts[1] - starts[0], starts[2] - starts[1]];
    assert.ok(gaps[0] >= 900 && gaps[0] < 1900, `first restart after 1 s: ${gaps}`);
    assert.ok(gaps[1] >= 1900, `the second, stopped again within a minute, after 2 s: ${gaps}`);
    await waitFor('the restart said', () => logs.filter((m) => m.includes('runs again (restart 2)')).length === 1);
    assert.deepEqual(logs.filter((m) => m.includes('the eBPF loader stopped')), [
      'seqtrace agent: SEQ_ERR_EBPF_LOAD: the eBPF loader stopped: test 1', 'seqtrace agent: SEQ_ERR_EBPF_LOAD: the eBPF loader stopped: test 2',
    ]);
    assert.equal(agent.stats().loaderRestarts, 2);
    assert.equal(agent.stats().capture.events, 30, 'the counters of every loader');
  } finally {
    await agent.close();
  }
});

// The kernel traces a process from its exec until the agent has decided (provisionalExec), so
// a client that sends its request before the agent gets to its exec event (a busy agent, a
// client quicker than ≈ 1–2 ms) keeps it; one the agent does not select leaves nothing. The
// agent's event loop is held for 400 ms at each client's exec here, longer than a Python
// client takes to start and call. (Without provisional tracing the selected client's request is
// lost: it was made before the agent traced the process.) A process must still be there when
// the agent decides: an exited one's environment cannot be read.
/** An agent on the real capture whose event loop is busy with something else for 400 ms at each exec event `holdAt` picks. */
async function agentHeldAtExecs(cfg: AgentConfig, holdAt: (e: ProcessEvent) => boolean): Promise<{ agent: Agent; held: () => number }> {
  let held = 0;
  const agent = await startAgent(cfg, {
    flushIntervalMs: 100,
    log: () => {},
    startCapture: (o) => realStartCapture({
      ...o,
      onEvents: (evs) => {
        if (evs.some((e) => e.kind === 'exec' && holdAt(e))) {
          held++;
          const until = Date.now() + 400;
          while (Date.now() < until);
        }
        o.onEvents(evs);
      },
    }),
  });
  return { agent, held: () => held };
}

test('agent: a client traced from its exec keeps the request it sent before the agent decided; an unselected one leaves nothing', { skip }, async () => {
  const linker = await fakeLinker();
  const procs: ChildProcessWithoutNullStreams[] = [];
  let agent: Agent | undefined;
  try {
    const api = py(SERVER, { DD_SERVICE: 'api' });
    procs.push(api);
    const apiPort = await firstLine(api);
    const { agent: cfg } = loadConfig({
      env: { ENV_INPUT_EBPF_TRACE_SERVER: linker.traceServer, ENV_INPUT_EBPF_METRICS_LISTEN: '127.0.0.1:0' },
    });
    const clients = new Set<number>();
    ({ agent } = await agentHeldAtExecs(cfg, (e) => clients.has(e.pid)));
    // It calls at once, then waits to be told to exit: a process must still be there when the
    // agent decides, for its environment to be read.
    const call = `import http.client, sys; c = http.client.HTTPConnection('127.0.0.1', ${apiPort}); c.request('GET', '/front/quick'); c.getresponse().read(); print('called', flush=True); sys.stdin.readline()`;
    const run = async (env: Record<string, string>) => {
      const p = spawn('/usr/bin/python3', ['-c', call], { env: { PATH: '/usr/bin:/bin', ...env } });
      clients.add(p.pid!);
      assert.equal(await firstLine(p), 'called');
      p.stdin.end('\n');
      const [code] = await once(p, 'exit');
      assert.equal(code, 0);
      return p.pid!;
    };
    const quick = await run({ OTEL_SERVICE_NAME: 'quick' });
    const plain = await run({});
    const deadline = Date.now() + 15_000;
    let spans: EbpfSpan[] = [];
    while (Date.now() < deadline) {
      spans = linker.spans();
      if (spans.filter((s) => s.pid === api.pid).length >= 2 && spans.some((s) => s.pid === quick)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const mine = spans.filter((s) => s.pid === quick);
    assert.equal(mine.length, 1, `the selected client's call: ${JSON.stringify(spans.map((s) => [s.pid, s.service, s.kind, s.resource]))}`);
    assert.equal(mine[0].kind, 'exit');
    assert.equal(mine[0].service, 'quick');
    assert.equal(mine[0].httpStatusCode, 200);
    const entries = spans.filter((s) => s.pid === api.pid && s.kind === 'entry');
    assert.ok(entries.some((e) => e.reqSeq === mine[0].reqSeq && e.respSeq === mine[0].respSeq), 'the server\'s entry for it');
    assert.equal(entries.length, 2, 'both clients reached the server');
    assert.equal(spans.filter((s) => s.pid === plain).length, 0, 'nothing of the client not selected');
    const metrics = await (await fetch(agent.metricsUrl)).text();
    assert.match(metrics, /^seqtrace_agent_rejected_events_total [1-9]/m, 'its events, dropped');
  } finally {
    await agent?.close();
    for (const p of procs) p.kill('SIGKILL');
    linker.server.close();
  }
});

/**
 * A client that calls the api and exits while the agent's event loop is held 400 ms at its exec,
 * so gone before the agent decides: python3 run through a link named `name` (its comm), from
 * this test (not traced). Returns its spans.
 */
async function goneClientSpans(o: { name: string; path: string; clientEnv?: Record<string, string>; agentEnv?: Record<string, string> }): Promise<EbpfSpan[]> {
  const linker = await fakeLinker();
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-gone-'));
  let api: ChildProcessWithoutNullStreams | undefined;
  let agent: Agent | undefined;
  try {
    symlinkSync('/usr/bin/python3', join(dir, o.name));
    api = py(SERVER, { DD_SERVICE: 'api' });
    const apiPort = await firstLine(api);
    const { agent: cfg } = loadConfig({ env: { ENV_INPUT_EBPF_TRACE_SERVER: linker.traceServer, ENV_INPUT_EBPF_METRICS_LISTEN: '127.0.0.1:0', ...o.agentEnv } });
    let held: () => number;
    ({ agent, held } = await agentHeldAtExecs(cfg, (e) => e.comm === o.name));
    const call = `import http.client; c = http.client.HTTPConnection('127.0.0.1', ${apiPort}); c.request('GET', '${o.path}'); c.getresponse().read()`;
    const client = spawn(join(dir, o.name), ['-c', call], { env: { PATH: '/usr/bin:/bin', ...o.clientEnv } });
    const [code] = await once(client, 'exit');
    assert.equal(code, 0);
    const deadline = Date.now() + 15_000;
    let spans: EbpfSpan[] = [];
    while (Date.now() < deadline && !spans.some((s) => s.pid === client.pid)) {
      await new Promise((r) => setTimeout(r, 100));
      spans = linker.spans();
    }
    assert.ok(held() > 0, 'the agent was held at the client\'s exec');
    return spans.filter((s) => s.pid === client.pid);
  } finally {
    await agent?.close();
    api?.kill('SIGKILL');
    linker.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('agent: a client named in its environment only for its exec (`OTEL_SERVICE_NAME=x client`) and gone before the agent decided keeps its request, under that name', { skip }, async () => {
  // Its parent (this test) is not traced, so nothing but the client's own environment selects
  // it, and that is gone with it: the loader reads it at the exec (CaptureOptions.execEnv).
  const mine = await goneClientSpans({ name: 'envclient', path: '/front/envonly', clientEnv: { OTEL_SERVICE_NAME: 'quick-env' } });
  assert.deepEqual(mine.map((s) => [s.kind, s.service, s.resource, s.httpStatusCode]), [['exit', 'quick-env', 'GET /front/envonly', 200]]);
});

test('agent: a client selected by its name and gone before the agent decided keeps its request', { skip }, async () => {
  // trace_nameset selects by name, and a process that exited (reaped or not) still has one: the
  // exec event's. No service variable here.
  const mine = await goneClientSpans({ name: 'quickcall', path: '/front/gone', agentEnv: { ENV_INPUT_EBPF_TRACE_NAMESET: 'quickcall' } });
  assert.deepEqual(mine.map((s) => [s.kind, s.service, s.resource, s.httpStatusCode]), [['exit', 'quickcall', 'GET /front/gone', 200]]);
});
