// End-to-end harness: real servers in real processes (optionally in network namespaces acting as
// separate hosts), a real linker and real agents started through `bin/seqtrace`, and the query
// API to read what they made. Everything a test starts is registered in its Scope and removed
// by closeScope() (process groups killed, namespaces deleted, temp dirs removed), and again on
// process exit should a test die half-way.
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
export const FIXTURES = join(here, 'fixtures');
export const REPO = resolve(here, '..', '..');
export const SEQTRACE = join(REPO, 'bin', 'seqtrace');
/** Debian's interpreter, not a version manager's shim (a shim would be one more process name). */
export const PYTHON = '/usr/bin/python3';

/**
 * Why the e2e suite cannot run, or undefined when it should. Only SEQTRACE_SKIP_EBPF=1 skips;
 * without it a machine that lacks root or eBPF fails the tests, with the reason.
 */
export function ebpfSkipReason(): string | undefined {
  if (process.env.SEQTRACE_SKIP_EBPF !== '1') return undefined;
  const reason = 'SEQTRACE_SKIP_EBPF=1: end-to-end tests need root and eBPF and were skipped';
  console.log(`# ${reason}`);
  return reason;
}

export function assertRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('end-to-end tests need root (eBPF, network namespaces); run as root or set SEQTRACE_SKIP_EBPF=1 to skip them');
  }
}

// ---------------------------------------------------------------------------------------------
// Scope: what one test file started, cleaned up in reverse order.

export interface Scope {
  dir: string;
  /** Random lowercase letters, unique per scope; used in service names, ids and netns names. */
  tag: string;
  cleanups: Array<() => Promise<void> | void>;
}

const liveGroups = new Set<number>();
const liveNetns = new Set<string>();
process.on('exit', () => {
  // Last resort when a test process dies without running after(): nothing may outlive it.
  for (const pgid of liveGroups) try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ }
  for (const ns of liveNetns) try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* gone */ }
});

export function letters(n: number, width = 3): string {
  let s = '';
  for (let i = 0; i < width; i++) {
    s = String.fromCharCode(97 + (n % 26)) + s;
    n = Math.floor(n / 26);
  }
  return s;
}

export function newScope(name: string): Scope {
  const dir = mkdtempSync(join(tmpdir(), `seqt-e2e-${name}-`));
  const tag = letters(randomBytes(4).readUInt32BE() % 26 ** 4, 4);
  const scope: Scope = { dir, tag, cleanups: [] };
  scope.cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return scope;
}

export async function closeScope(scope: Scope | undefined): Promise<void> {
  if (!scope) return;
  const errors: unknown[] = [];
  while (scope.cleanups.length) {
    const fn = scope.cleanups.pop()!;
    try { await fn(); } catch (e) { errors.push(e); }
  }
  if (errors.length) console.error('e2e cleanup problems:', errors);
}

export function subdir(scope: Scope, name: string): string {
  return mkdtempSync(join(scope.dir, `${name}-`));
}

/** A directory for a Unix socket file that nginx's worker (nobody) can reach: the scope's is root's alone. */
function socketDir(scope: Scope): string {
  const dir = subdir(scope, 'sock');
  chmodSync(scope.dir, 0o711);
  chmodSync(dir, 0o711);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Ports and readiness.

// Ports below the kernel's ephemeral range (net.ipv4.ip_local_port_range). A port the kernel
// picks for listen(0), closed again for the server to bind, can meanwhile become the local port
// of any outgoing connection (CI, 2026-12-07: the linker's EADDRINUSE after many e2e tests'
// connections); below the range no connection is given one.
const [EPHEMERAL_LOW, EPHEMERAL_HIGH] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
// (above the range when it starts too low to leave room below it)
const [PORT_MIN, PORT_END] = EPHEMERAL_LOW >= 11_000 ? [10_000, EPHEMERAL_LOW] : [EPHEMERAL_HIGH + 1, 65_536];

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(false));
    srv.listen(port, host, () => srv.close(() => res(true)));
  });
}

/** A port nobody listens on right now, outside the ephemeral range (random, so tests' ports differ). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_END - PORT_MIN));
    if (await canListen(port, host)) return port;
  }
  throw new Error(`no free port in ${PORT_MIN}–${PORT_END - 1}, outside the ephemeral range ${EPHEMERAL_LOW}–${EPHEMERAL_HIGH}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export { sleep };

/** Whether something accepts a connection at `to` (a host and port, or a Unix socket's path). */
function tryConnect(to: { host: string; port: number } | { path: string }): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(to);
    s.once('connect', () => { s.destroy(); res(true); });
    s.once('error', () => res(false));
    s.setTimeout(500, () => { s.destroy(); res(false); });
  });
}

function listeningInNetns(ns: string, port: number): boolean {
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, 'ss', '-Hltn', `sport = :${port}`], { encoding: 'utf8' });
    return out.trim().length > 0;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes.

export interface Proc {
  name: string;
  pid: number;
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>;
  exitCode(): number | string | undefined;
  stop(): Promise<void>;
}

export interface StartOptions {
  name: string;
  cmd: string;
  args?: string[];
  /** Added to a clean environment (PATH, HOME, LANG only; nothing of the test's own). */
  env?: Record<string, string>;
  cwd?: string;
  /** Run inside this network namespace (`ip netns exec`, which execs: the pid is the program's). */
  netns?: string;
  /** Ready once something listens on this port (from the root namespace or inside `netns`). */
  readyPort?: { host: string; port: number };
  /** Ready once something listens on this Unix socket. */
  readyPath?: string;
  /** Ready once the output matches. */
  readyLog?: RegExp;
  /** Ready once this resolves true (polled). */
  readyCheck?: () => Promise<boolean>;
  readyTimeoutMs?: number;
}

export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'LANG', 'TZ']) if (process.env[k]) env[k] = process.env[k]!;
  return { ...env, ...extra };
}

/**
 * Servers that fork workers without exec (Apache's children, nginx's worker) reach the agent
 * by its periodic /proc scan (1 s), not by an exec event: wait that long before traffic.
 */
export const FORKED_WORKER_SETTLE_MS = 1500;

/** Start a process in its own process group, registered for cleanup, and wait until it is ready. */
export async function startProcess(scope: Scope, o: StartOptions): Promise<Proc> {
  const cmd = o.netns ? 'ip' : o.cmd;
  const args = o.netns ? ['netns', 'exec', o.netns, o.cmd, ...(o.args ?? [])] : (o.args ?? []);
  const child = spawn(cmd, args, { cwd: o.cwd, env: cleanEnv(o.env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (b: Buffer) => { if (out.length < 1 << 20) out += b.toString(); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let code: number | string | undefined;
  const exited = new Promise<number | string>((res) => {
    child.once('exit', (c, sig) => { code = c ?? sig ?? 'unknown'; liveGroups.delete(child.pid!); res(code); });
    child.once('error', (e) => { out += `\nspawn error: ${e.message}`; code = 'spawn-error'; res(code); });
  });
  // Its pipes close after it exits (and after any child still holding them: Apache's workers).
  const closed = new Promise<void>((res) => child.once('close', () => res()));
  if (child.pid) liveGroups.add(child.pid);
  const proc: Proc = {
    name: o.name,
    pid: child.pid ?? -1,
    child,
    output: () => out,
    exited,
    exitCode: () => code,
    async stop() {
      if (code !== undefined || !child.pid) return;
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* gone */ }
      const done = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
      // The group may hold children that outlive the leader (Apache's, nginx's workers).
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      if (!done) await Promise.race([exited, sleep(2000)]);
      liveGroups.delete(child.pid);
    },
  };
  scope.cleanups.push(() => proc.stop());

  const deadline = Date.now() + (o.readyTimeoutMs ?? 15_000);
  for (;;) {
    if (code !== undefined) {
      // The last of its output, often the reason it exited, may still be in the pipe.
      await Promise.race([closed, sleep(1000)]);
      throw new Error(`${o.name} exited (${code}) before it was ready: ${cmd} ${args.join(' ')}\n${out.slice(-4000)}`);
    }
    let ready = true;
    if (o.readyPort) {
      ready = o.netns ? listeningInNetns(o.netns, o.readyPort.port) : await tryConnect(o.readyPort);
    }
    if (ready && o.readyPath) ready = await tryConnect({ path: o.readyPath });
    if (ready && o.readyLog) ready = o.readyLog.test(out);
    if (ready && o.readyCheck) ready = await o.readyCheck().catch(() => false);
    if (ready) return proc;
    if (Date.now() > deadline) {
      throw new Error(`${o.name} was not ready after ${o.readyTimeoutMs ?? 15_000} ms: ${cmd} ${args.join(' ')}\n${out.slice(-4000)}`);
    }
    await sleep(50);
  }
}

/** Run a program to completion (a client); fails when it exits non-zero. Returns its stdout. */
export async function runToEnd(scope: Scope, o: Omit<StartOptions, 'readyPort' | 'readyPath' | 'readyLog' | 'readyCheck'> & {
  timeoutMs?: number;
  /** An exit code that is not a failure (default: 0 only). */
  okExit?: (code: number) => boolean;
}): Promise<string> {
  const cmd = o.netns ? 'ip' : o.cmd;
  const args = o.netns ? ['netns', 'exec', o.netns, o.cmd, ...(o.args ?? [])] : (o.args ?? []);
  const child = spawn(cmd, args, { cwd: o.cwd, env: cleanEnv(o.env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid) liveGroups.add(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => { stdout += b.toString(); });
  child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, o.timeoutMs ?? 60_000);
  // 'close', not 'exit': a short-lived client's whole output is read only once its pipes close;
  // on 'exit' the last of it may still be in the pipe (a curl's status lines were, and read as 0).
  const code = await new Promise<number | string>((res) => {
    child.once('close', (c, sig) => res(c ?? sig ?? 'unknown'));
    child.once('error', (e) => { stderr += e.message; res('spawn-error'); });
  });
  clearTimeout(timer);
  if (child.pid) liveGroups.delete(child.pid);
  if (code !== 0 && !(typeof code === 'number' && o.okExit?.(code))) throw new Error(`${o.name} exited ${code}: ${cmd} ${args.join(' ')}\n${stderr.slice(-4000)}`);
  return stdout;
}

// ---------------------------------------------------------------------------------------------
// Network namespaces: separate hosts on one machine. Only namespaces made here, and only
// link-local (169.254.0.0/16, never routed off a link) and ULA (fd00::/8) addresses on veth
// pairs between them: no traffic can leave the machine.

export interface Netns {
  name: string;
}

export async function createNetns(scope: Scope, label: string): Promise<Netns> {
  const name = `seqt-${scope.tag}-${label}-${randomBytes(2).toString('hex')}`.slice(0, 30);
  execFileSync('ip', ['netns', 'add', name]);
  liveNetns.add(name);
  scope.cleanups.push(() => {
    // Whatever still runs inside was started by this scope and has been stopped by now.
    try { execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' }); } catch { /* gone */ }
    liveNetns.delete(name);
  });
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return { name };
}

export interface VethLink {
  /** Addresses of end a and end b. */
  a4: string;
  b4: string;
  a6: string;
  b6: string;
}

function rootAddresses(): string {
  return execFileSync('ip', ['-o', 'addr'], { encoding: 'utf8' });
}

/** A veth pair between two namespaces (null: the root namespace), a /30 and a /64 on it. */
export async function linkNetns(scope: Scope, a: Netns | null, b: Netns | null): Promise<VethLink> {
  const id = randomBytes(3).toString('hex');
  const ifA = `sqa${id}`;
  const ifB = `sqb${id}`;
  let third = 0;
  let base = 0;
  const taken = rootAddresses();
  do {
    third = 1 + (randomBytes(1)[0] % 250);
    base = (randomBytes(1)[0] % 63) * 4;
  } while (third === 169 || taken.includes(`169.254.${third}.${base + 1}/`) || taken.includes(`169.254.${third}.${base + 2}/`));
  // hextets without leading zeros: the canonical form the agent reports (RFC 5952)
  const hextet = () => randomBytes(2).readUInt16BE(0).toString(16);
  const v6net = `fd00:5e9:${hextet()}:${hextet()}`;
  const link: VethLink = { a4: `169.254.${third}.${base + 1}`, b4: `169.254.${third}.${base + 2}`, a6: `${v6net}::1`, b6: `${v6net}::2` };
  const ipIn = (ns: Netns | null, ...args: string[]) => execFileSync('ip', ns ? ['-n', ns.name, ...args] : args);

  ipIn(a, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB);
  scope.cleanups.push(() => {
    try { ipIn(a, 'link', 'del', ifA); } catch { /* deleted with its namespace */ }
  });
  if (b) execFileSync('ip', [...(a ? ['-n', a.name] : []), 'link', 'set', ifB, 'netns', b.name]);
  for (const [ns, ifname, v4, v6] of [[a, ifA, link.a4, link.a6], [b, ifB, link.b4, link.b6]] as const) {
    ipIn(ns, 'addr', 'add', `${v4}/30`, 'dev', ifname);
    ipIn(ns, '-6', 'addr', 'add', `${v6}/64`, 'dev', ifname, 'nodad');
    ipIn(ns, 'link', 'set', ifname, 'up');
  }
  return link;
}

// ---------------------------------------------------------------------------------------------
// seqtrace itself: a linker and agents, through the real command line.

export interface Linker {
  proc: Proc;
  url: string;
  port: number;
}

function toml(table: string, values: Record<string, unknown>): string {
  const lines = [`[[inputs.${table}]]`];
  for (const [k, v] of Object.entries(values)) lines.push(`  ${k} = ${JSON.stringify(v)}`);
  return lines.join('\n') + '\n';
}

/** The linking window of the e2e linkers. The agent sends every second; on a loaded 2-core
 * machine a client span can reach the linker more than a second after its server span, which a
 * 1 s window would (rightly, by its contract) treat as late. 3 s keeps the tests about the trees. */
export const E2E_WINDOW = '3s';

export async function startLinker(scope: Scope, o: { window?: string; port?: number; extra?: Record<string, unknown> } = {}): Promise<Linker> {
  const dir = subdir(scope, 'linker');
  const port = o.port ?? await freePort();
  const conf = join(dir, 'seqtrace.toml');
  writeFileSync(conf, toml('ebpftrace', { sqlite_path: join(dir, 'db'), window: o.window ?? E2E_WINDOW, sampling_rate: 1, ...o.extra }));
  const url = `http://127.0.0.1:${port}`;
  const proc = await startProcess(scope, {
    name: 'linker',
    cmd: SEQTRACE,
    args: ['linker', '--config', conf],
    env: { ENV_HTTP_LISTEN: `127.0.0.1:${port}` },
    readyCheck: async () => (await fetch(`${url}/api/services`)).ok,
    readyTimeoutMs: 20_000,
  });
  return { proc, url, port };
}

export interface Agent {
  proc: Proc;
  host: string;
  metricsUrl: string;
}

export interface AgentOptions {
  /** The `host` every span of this agent carries (ENV_HOSTNAME). */
  host: string;
  envset?: string[];
  nameset?: string[];
  extra?: Record<string, unknown>;
}

/** Start an agent sending to `linker`; fails with the agent's own words when eBPF cannot load. */
export async function startAgent(scope: Scope, linker: { port: number }, o: AgentOptions): Promise<Agent> {
  const dir = subdir(scope, 'agent');
  const metricsPort = await freePort();
  const conf = join(dir, 'seqtrace.toml');
  const values: Record<string, unknown> = {
    enabled_plugins: ['ebpf-net', 'ebpf-trace'],
    l7net_enabled: ['httpflow'],
    trace_server: `127.0.0.1:${linker.port}`,
    metrics_listen: `127.0.0.1:${metricsPort}`,
    ...o.extra,
  };
  if (o.envset) values.trace_envset = o.envset;
  if (o.nameset) values.trace_nameset = o.nameset;
  writeFileSync(conf, toml('ebpf', values));
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const proc = await startProcess(scope, {
    name: `agent ${o.host}`,
    cmd: SEQTRACE,
    args: ['agent', '--config', conf],
    env: { ENV_HOSTNAME: o.host },
    readyCheck: async () => (await fetch(metricsUrl)).ok,
    readyTimeoutMs: 30_000,
  });
  return { proc, host: o.host, metricsUrl };
}

/** An agent's /metrics: each seqtrace_agent_ metric, its samples (labels) summed. */
export async function agentMetrics(agent: Agent): Promise<Record<string, number>> {
  const text = await (await fetch(agent.metricsUrl)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(seqtrace_agent_[a-z_]+)(?:\{[^}]*\})?\s+([0-9.eE+-]+)$/.exec(line);
    if (m) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The services under test (fixtures/).

/** Environment that names a service and makes the default trace_envset trace it. */
export function serviceEnv(service: string, extra: Record<string, string> = {}): Record<string, string> {
  return { OTEL_SERVICE_NAME: service, ...extra };
}

export interface Service {
  proc: Proc;
  name: string;
  host: string;
  port: number;
  /** Base URL, e.g. http://127.0.0.1:4711 or http://[::1]:4711 */
  url: string;
}

function hostUrl(host: string, port: number, scheme = 'http'): string {
  return host.includes(':') ? `${scheme}://[${host}]:${port}` : `${scheme}://${host}:${port}`;
}

/** A self-signed certificate for localhost, 127.0.0.1 and ::1 (its own CA: clients trust `cert`). */
export interface TlsFiles {
  cert: string;
  key: string;
}

/** The scope's certificate, made once (openssl, an EC key). */
export function tlsFiles(scope: Scope): TlsFiles {
  const dir = join(scope.dir, 'tls');
  const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
  if (existsSync(files.cert)) return files;
  mkdirSync(dir, { recursive: true });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1', '-keyout', files.key, '-out', files.cert], { stdio: 'ignore' });
  // (nginx's worker, nobody, reads neither: its master loads them as root)
  return files;
}

export interface PyServiceOptions {
  name: string;
  downstreams?: string[];
  parallel?: boolean;
  /** Fan out through one thread pool of this many workers shared by all requests (started lazily). */
  pool?: number;
  keepalive?: boolean;
  sendTraceparent?: boolean;
  /** Serve HTTPS with this certificate (`url` is then https://). */
  tls?: TlsFiles;
  /** Trust this certificate for https:// downstreams. */
  cafile?: string;
  /** How long /slow/<id> sleeps (default 1000 ms). */
  slowMs?: number;
  /** Address to listen on (default 127.0.0.1; `::` for IPv6, both families). */
  bind?: string;
  /** Address to reach it on (default: bind, or ::1 / 127.0.0.1 for a wildcard bind). */
  host?: string;
  netns?: Netns;
  env?: Record<string, string>;
}

export async function startPyService(scope: Scope, o: PyServiceOptions): Promise<Service> {
  const bind = o.bind ?? '127.0.0.1';
  const host = o.host ?? (bind === '::' ? '::1' : bind === '0.0.0.0' ? '127.0.0.1' : bind);
  const port = await freePort(host.includes(':') ? '::1' : '127.0.0.1');
  const args = [join(FIXTURES, 'pyservice.py'), '--port', String(port), '--bind', bind];
  for (const d of o.downstreams ?? []) args.push('--down', d);
  if (o.parallel) args.push('--parallel');
  if (o.pool) args.push('--pool', String(o.pool));
  if (o.keepalive) args.push('--keepalive');
  if (o.sendTraceparent) args.push('--send-traceparent');
  if (o.tls) args.push('--tls-cert', o.tls.cert, '--tls-key', o.tls.key);
  if (o.cafile) args.push('--cafile', o.cafile);
  if (o.slowMs !== undefined) args.push('--slow-ms', String(o.slowMs));
  const proc = await startProcess(scope, {
    name: o.name, cmd: PYTHON, args, netns: o.netns?.name, env: serviceEnv(o.name, o.env), readyPort: { host, port },
  });
  return { proc, name: o.name, host, port, url: hostUrl(host, port, o.tls ? 'https' : 'http') };
}

let javaClasses: Promise<string> | undefined;
/** Compile fixtures/JavaService.java once per test process, into a temp dir. */
export function compileJava(scope: Scope): Promise<string> {
  javaClasses ??= (async () => {
    const out = subdir(scope, 'java');
    await runToEnd(scope, { name: 'javac', cmd: 'javac', args: ['-d', out, join(FIXTURES, 'JavaService.java')], timeoutMs: 120_000 });
    return out;
  })();
  return javaClasses;
}

/** `fanout`: how the handler makes its calls (JavaService.java, FANOUT): one after the other by default. */
export async function startJavaService(scope: Scope, o: { name: string; downstreams: string[]; threads?: number; fanout?: 'threads' | `pool:${number}`; netns?: Netns }): Promise<Service> {
  const classes = await compileJava(scope);
  const port = await freePort();
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: 'java',
    args: ['-Xshare:auto', '-XX:TieredStopAtLevel=1', '-cp', classes, 'JavaService'],
    netns: o.netns?.name,
    env: serviceEnv(o.name, { PORT: String(port), DOWNSTREAMS: o.downstreams.join(','), THREADS: String(o.threads ?? 4), FANOUT: o.fanout ?? '' }),
    readyPort: { host: '127.0.0.1', port },
    readyTimeoutMs: 30_000,
  });
  return { proc, name: o.name, host: '127.0.0.1', port, url: hostUrl('127.0.0.1', port) };
}

/**
 * Apache Tomcat 10 (Debian's tomcat10: a private CATALINA_BASE with its configuration, the HTTP
 * connector on a free port) serving fixtures/tomcat: call.jsp on the connector's thread pool,
 * calling `downstreams` with HttpURLConnection. The page is compiled at its first request
 * (Jasper, a second or two, on that request's thread).
 */
export async function startTomcat(scope: Scope, o: { name: string; downstreams: string[] }): Promise<Service> {
  const base = subdir(scope, 'tomcat');
  const port = await freePort();
  execFileSync('cp', ['-r', '/etc/tomcat10', join(base, 'conf')]);
  const serverXml = join(base, 'conf', 'server.xml');
  writeFileSync(serverXml, readFileSync(serverXml, 'utf8').replace('<Connector port="8080"', `<Connector port="${port}" address="127.0.0.1"`));
  for (const d of ['logs', 'temp', 'work', 'webapps']) mkdirSync(join(base, d));
  execFileSync('cp', ['-r', join(FIXTURES, 'tomcat'), join(base, 'webapps', 'ROOT')]);
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: '/usr/share/tomcat10/bin/catalina.sh',
    args: ['run'],
    env: serviceEnv(o.name, { CATALINA_HOME: '/usr/share/tomcat10', CATALINA_BASE: base, DOWNSTREAMS: o.downstreams.join(',') }),
    readyPort: { host: '127.0.0.1', port },
    readyTimeoutMs: 60_000,
  });
  return { proc, name: o.name, host: '127.0.0.1', port, url: hostUrl('127.0.0.1', port) };
}

/** `unixSocket`: it listens on a socket file instead (`url` is then `unix:PATH`, as nginx's upstream names it). */
export async function startNodeService(scope: Scope, o: { name: string; downstreams: string[]; netns?: Netns; forwardRequestId?: boolean; unixSocket?: boolean }): Promise<Service> {
  const port = o.unixSocket ? 0 : await freePort();
  const path = o.unixSocket ? join(socketDir(scope), 'node.sock') : '';
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: process.execPath,
    args: [join(FIXTURES, 'node-service.mjs')],
    netns: o.netns?.name,
    env: serviceEnv(o.name, { PORT: String(port), ...(path ? { SOCKET: path } : {}), DOWNSTREAMS: o.downstreams.join(','), FORWARD_REQUEST_ID: o.forwardRequestId ? '1' : '0' }),
    ...(path ? { readyPath: path } : { readyPort: { host: '127.0.0.1', port } }),
  });
  return { proc, name: o.name, host: '127.0.0.1', port, url: path ? `unix:${path}` : hostUrl('127.0.0.1', port) };
}

/** An aiohttp server (an asyncio event loop): WebSockets that echo on /ws/{id}, plain HTTP on /p/{id} (fixtures/websocket.py). */
export async function startWebSocketService(scope: Scope, o: { name: string }): Promise<Service> {
  const port = await freePort();
  const proc = await startProcess(scope, {
    name: o.name, cmd: PYTHON, args: [join(FIXTURES, 'websocket.py'), 'serve', '--port', String(port)],
    env: serviceEnv(o.name), readyPort: { host: '127.0.0.1', port },
  });
  return { proc, name: o.name, host: '127.0.0.1', port, url: hostUrl('127.0.0.1', port) };
}

/**
 * Apache httpd (one child of 8 worker threads; mod_proxy_http) in front of `backend`
 * ("host:port"); mpm_worker, or with `mpm: 'event'` mpm_event; `forwardProxy`: also opens
 * CONNECT tunnels. The backend is PHP-FPM running `fastcgiScript` (mod_proxy_fcgi) when given,
 * uWSGI with `uwsgi` (mod_proxy_uwsgi).
 */
export async function startApache(scope: Scope, o: { name: string; backend: string; mpm?: 'worker' | 'event'; forwardProxy?: boolean; fastcgiScript?: string; uwsgi?: boolean }): Promise<Service> {
  const dir = subdir(scope, 'apache');
  execFileSync('chmod', ['755', dir]);
  const port = await freePort();
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: 'apache2',
    args: ['-f', join(FIXTURES, 'apache.conf'), '-DFOREGROUND', ...(o.mpm === 'event' ? ['-DMPM_EVENT'] : []), ...(o.forwardProxy ? ['-DFORWARD_PROXY'] : []), ...(o.fastcgiScript ? ['-DFASTCGI'] : []), ...(o.uwsgi ? ['-DUWSGI'] : [])],
    env: { DK_BPFTRACE_SERVICE: o.name, SEQT_DIR: dir, SEQT_LISTEN: `127.0.0.1:${port}`, SEQT_BACKEND: o.backend, SEQT_SCRIPT: o.fastcgiScript ?? '' },
    readyPort: { host: '127.0.0.1', port },
  });
  await sleep(FORKED_WORKER_SETTLE_MS);
  return { proc, name: o.name, host: '127.0.0.1', port, url: hostUrl('127.0.0.1', port) };
}

/** `location` for startNginx: WebSockets under /ws/ proxied as nginx's guide to them has it. */
export const NGINX_WEBSOCKET_LOCATION = 'location /ws/ { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; }';

/**
 * nginx (one worker) in front of `backend`. nginx writes its process title over its own
 * /proc/PID/environ within milliseconds of its start: the agent selects it by the environment
 * the loader read at its exec (docs/agent.md), which it never read of an nginx started before
 * it. The tests trace it by name as well (trace_nameset = ["nginx"]); its service is `nginx`
 * either way (its OTEL_SERVICE_NAME is `name`, `nginx` in every test).
 */
export async function startNginx(scope: Scope, o: {
  name: string; backend: string; listenHost?: string; location?: string; fastcgiScript?: string; uwsgi?: boolean;
  /** Serve HTTPS with this certificate (`url` is then https://). */
  tls?: TlsFiles;
}): Promise<Service> {
  const dir = subdir(scope, 'nginx');
  const host = o.listenHost ?? '127.0.0.1';
  const port = await freePort(host);
  const listen = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  // fastcgiScript: the backend is PHP-FPM, every request runs that script (a connection each:
  // with fastcgi_keep_conn a PHP-FPM worker serves one kept connection until it closes)
  // uwsgi: the backend is uWSGI (startUwsgi), spoken to in the uwsgi protocol, a connection each
  const pass = o.fastcgiScript
    ? `include /etc/nginx/fastcgi_params; fastcgi_param SCRIPT_FILENAME ${o.fastcgiScript}; fastcgi_pass backend;`
    : o.uwsgi ? 'include /etc/nginx/uwsgi_params; uwsgi_pass backend;'
      : 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";';
  const conf = readFileSync(join(FIXTURES, 'nginx.conf'), 'utf8')
    .replaceAll('@DIR@', dir).replaceAll('@LISTEN@', listen).replaceAll('@BACKEND@', o.backend).replaceAll('@ENV@', '')
    .replaceAll('@SSL@', o.tls ? ' ssl' : '').replaceAll('@SERVER@', o.tls ? `ssl_certificate ${o.tls.cert}; ssl_certificate_key ${o.tls.key};` : '')
    .replaceAll('@PASS@', pass).replaceAll('@LOCATION@', o.location ?? '');
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: 'nginx',
    args: ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')],
    env: serviceEnv(o.name),
    readyPort: { host, port },
  });
  await sleep(FORKED_WORKER_SETTLE_MS);
  return { proc, name: o.name, host, port, url: hostUrl(host, port, o.tls ? 'https' : 'http') };
}

/**
 * PHP-FPM listening on TCP (as nginx and PHP-FPM in separate containers talk) or, with
 * `unixSocket`, on a socket file (Debian's default, /run/php/php8.2-fpm.sock: `url` is then
 * `unix:PATH`, as nginx's upstream names it), `children` worker processes forked by its master
 * (no exec), each serving one request at a time; they keep the environment (`DOWN`: where
 * fixtures/phpapp.php calls). Run as root (-R).
 */
export async function startPhpFpm(scope: Scope, o: { name: string; down: string; children?: number; unixSocket?: boolean }): Promise<Service> {
  const dir = subdir(scope, 'php-fpm');
  const port = o.unixSocket ? 0 : await freePort();
  const path = join(o.unixSocket ? socketDir(scope) : dir, 'php-fpm.sock');
  const conf = join(dir, 'php-fpm.conf');
  writeFileSync(conf, [
    '[global]', `error_log = ${join(dir, 'error.log')}`, 'daemonize = no',
    // (nginx's worker runs as nobody)
    '[app]', 'user = root', 'group = root', o.unixSocket ? `listen = ${path}\nlisten.mode = 0666` : `listen = 127.0.0.1:${port}`,
    'pm = static', `pm.max_children = ${o.children ?? 2}`, 'clear_env = no', '',
  ].join('\n'));
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: phpFpmBinary(),
    args: ['-F', '-R', '-n', '-d', 'allow_url_fopen=1', '-y', conf],
    env: serviceEnv(o.name, { DOWN: o.down }),
    ...(o.unixSocket ? { readyPath: path } : { readyPort: { host: '127.0.0.1', port } }),
  });
  await sleep(FORKED_WORKER_SETTLE_MS);
  return { proc, name: o.name, host: '127.0.0.1', port, url: o.unixSocket ? `unix:${path}` : `127.0.0.1:${port}` };
}

/**
 * uWSGI (Debian's, with its python3 plugin) speaking the uwsgi protocol on TCP, as behind nginx's
 * uwsgi_pass (`unixSocket`: on a socket file, `url` then `unix:PATH`; `http`: speaking HTTP, as
 * behind proxy_pass): `processes` workers forked by its master, each of `threads` threads serving one
 * request at a time with fixtures/wsgiapp.py (`DOWN`: where it calls), its answers running until
 * the close (the app gives no length).
 */
export async function startUwsgi(scope: Scope, o: { name: string; down: string; processes?: number; threads?: number; unixSocket?: boolean; http?: boolean }): Promise<Service> {
  const port = o.unixSocket ? 0 : await freePort();
  const path = join(socketDir(scope), 'uwsgi.sock');
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: 'uwsgi',
    args: ['--plugin', 'python3', o.http ? '--http-socket' : '--socket', o.unixSocket ? path : `127.0.0.1:${port}`, ...(o.unixSocket ? ['--chmod-socket=666'] : []),
      '--wsgi-file', join(FIXTURES, 'wsgiapp.py'), '--master', '--die-on-term',
      '--processes', String(o.processes ?? 2), '--threads', String(o.threads ?? 2), '--disable-logging'],
    env: serviceEnv(o.name, { DOWN: o.down }),
    ...(o.unixSocket ? { readyPath: path } : { readyPort: { host: '127.0.0.1', port } }),
  });
  await sleep(FORKED_WORKER_SETTLE_MS);
  return { proc, name: o.name, host: '127.0.0.1', port, url: o.unixSocket ? `unix:${path}` : `127.0.0.1:${port}` };
}

/** Debian's PHP-FPM binary (php-fpm8.2 on bookworm): whichever version is installed. */
function phpFpmBinary(): string {
  const found = readdirSync('/usr/sbin').filter((f) => /^php-fpm[\d.]*$/.test(f)).sort().at(-1);
  if (!found) throw new Error('no /usr/sbin/php-fpm*: install php-fpm (scripts/install.sh --test)');
  return `/usr/sbin/${found}`;
}

/**
 * Varnish (fixtures/varnish.vcl: every request passed, an X-Request-ID made and returned) in
 * front of `backend` ("host:port"). Its worker process is forked by its manager (no exec).
 */
export async function startVarnish(scope: Scope, o: { name: string; backend: string }): Promise<Service> {
  const dir = subdir(scope, 'varnish');
  // it reads its VCL, and its worker process runs, as users varnish and vcache
  execFileSync('chmod', ['o+x', scope.dir]);
  execFileSync('chmod', ['755', dir]);
  const port = await freePort();
  const [host, backendPort] = o.backend.split(':');
  const vcl = join(dir, 'default.vcl');
  writeFileSync(vcl, readFileSync(join(FIXTURES, 'varnish.vcl'), 'utf8').replaceAll('@HOST@', host).replaceAll('@PORT@', backendPort));
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: 'varnishd',
    args: ['-F', '-a', `127.0.0.1:${port}`, '-f', vcl, '-n', join(dir, 'work'), '-s', 'malloc,32m', '-T', 'none'],
    env: serviceEnv(o.name),
    readyPort: { host: '127.0.0.1', port },
  });
  await sleep(FORKED_WORKER_SETTLE_MS);
  return { proc, name: o.name, host: '127.0.0.1', port, url: hostUrl('127.0.0.1', port) };
}

/** HAProxy (fixtures/haproxy.cfg: two threads, an X-Request-ID made and returned) in front of `backend` ("host:port"). */
export async function startHaproxy(scope: Scope, o: { name: string; backend: string }): Promise<Service> {
  const dir = subdir(scope, 'haproxy');
  const port = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, readFileSync(join(FIXTURES, 'haproxy.cfg'), 'utf8').replaceAll('@LISTEN@', `127.0.0.1:${port}`).replaceAll('@BACKEND@', o.backend));
  const proc = await startProcess(scope, {
    name: o.name,
    cmd: 'haproxy',
    args: ['-db', '-f', cfg],
    env: serviceEnv(o.name),
    readyPort: { host: '127.0.0.1', port },
  });
  return { proc, name: o.name, host: '127.0.0.1', port, url: hostUrl('127.0.0.1', port) };
}

// ---------------------------------------------------------------------------------------------
// Clients. Each is a traced process (it has a service name), so a trace's root is its exit span.
// The agent learns of a new process asynchronously; a client waits `startDelay` seconds before
// its first request so that it is traced from its first byte (a long-lived service is traced
// long before its first request anyway).

export const CLIENT_START_DELAY = '0.5';

export interface ClientRun {
  /** status by request id (0: no response) */
  statuses: Record<string, number>;
  /** why a request got no response, by request id (the client's own words) */
  errors: Record<string, string>;
}

/** Every request of `ids` answered with `want(id)`; one that got no response is named with its client's error. */
export function expectStatuses(run: ClientRun, ids: string[], want: (id: string) => number): void {
  for (const id of ids) {
    assert.equal(run.statuses[id], want(id), `client status of ${id}${run.errors[id] ? ` (${run.errors[id]})` : ''}`);
  }
}

export async function runPyClient(scope: Scope, o: {
  name: string; urlTemplate: string; ids: string[]; concurrency: number; keepalive?: boolean;
  headers?: string[]; traceparent?: boolean; netns?: Netns; env?: Record<string, string>;
}): Promise<ClientRun> {
  const args = [join(FIXTURES, 'pyclient.py'), '--url', o.urlTemplate, '--concurrency', String(o.concurrency), '--start-delay', CLIENT_START_DELAY];
  if (o.keepalive) args.push('--keepalive');
  if (o.traceparent) args.push('--traceparent');
  for (const h of o.headers ?? []) args.push('--header', h);
  const out = await runToEnd(scope, { name: o.name, cmd: PYTHON, args: [...args, ...o.ids], netns: o.netns?.name, env: serviceEnv(o.name, o.env) });
  return JSON.parse(out.trim().split('\n').pop()!) as ClientRun;
}

/**
 * WebSocket clients (aiohttp, one process): per id a WebSocket to `urlTemplate` with
 * X-Request-ID: id, `messages` echoed `gapMs` apart, `concurrency` at once. Status 101 when the
 * handshake succeeded.
 */
export async function runWebSocketClient(scope: Scope, o: { name: string; urlTemplate: string; ids: string[]; concurrency: number; messages: number; gapMs: number }): Promise<ClientRun> {
  const args = [join(FIXTURES, 'websocket.py'), 'client', '--url', o.urlTemplate, '--concurrency', String(o.concurrency),
    '--messages', String(o.messages), '--gap-ms', String(o.gapMs), '--start-delay', CLIENT_START_DELAY];
  const out = await runToEnd(scope, { name: o.name, cmd: PYTHON, args: [...args, ...o.ids], env: serviceEnv(o.name) });
  return JSON.parse(out.trim().split('\n').pop()!) as ClientRun;
}

/**
 * curl clients: `concurrency` curl processes, each fetching its share of the ids in turn
 * (keepalive: over one reused connection; otherwise "Connection: close", a new one each).
 */
export async function runCurl(scope: Scope, o: {
  name: string; urlTemplate: string; ids: string[]; concurrency: number; keepalive?: boolean; headers?: string[]; netns?: Netns;
  env?: Record<string, string>; maxTimeS?: number;
  /** More options for every request (a proxy: `-p -x URL`). */
  curlArgs?: string[];
  /**
   * A transfer each curl process makes before the test's (`{n}`: the process's number; its status
   * is not checked): time for the agent to probe the new process before its first HTTPS call.
   */
  firstUrl?: string;
}): Promise<ClientRun> {
  const shares: string[][] = Array.from({ length: o.concurrency }, () => []);
  o.ids.forEach((id, i) => shares[i % o.concurrency].push(id));
  const statuses: Record<string, number> = {};
  const errors: Record<string, string> = {};
  await Promise.all(shares.filter((s) => s.length).map(async (share, n) => {
    // Status, then curl's exit code and message: a request that got no response says why.
    const args = ['-sS', '-g', '-o', '/dev/null', '-w', '%{http_code} %{exitcode} %{errormsg}\\n', '--max-time', String(o.maxTimeS ?? 20)];
    if (!o.keepalive) args.push('-H', 'Connection: close');
    args.push(...(o.curlArgs ?? []));
    // headers: `{id}` in a value becomes each request's id
    const headers = (id: string) => (o.headers ?? []).flatMap((h) => ['-H', h.replace('{id}', id)]);
    // One curl process for the whole share: --next keeps the options per URL.
    const urls = share.flatMap((id, i) => [...(i ? ['--next', ...args] : []), ...headers(id), o.urlTemplate.replace('{id}', id)]);
    if (o.firstUrl) urls.unshift(o.firstUrl.replace('{n}', String(n)), '--next', ...args);
    const out = await runToEnd(scope, {
      name: o.name,
      cmd: 'sh',
      args: ['-c', `sleep ${CLIENT_START_DELAY}; exec curl "$@"`, 'curl', ...args, ...urls],
      netns: o.netns?.name,
      env: serviceEnv(o.name, o.env),
      // curl exits with its last transfer's code; each transfer's is on its status line
      okExit: () => true,
    });
    const lines = out.trim().split('\n').slice(o.firstUrl ? 1 : 0);
    if (lines.length !== share.length) throw new Error(`${o.name}: ${share.length} requests, ${lines.length} status lines:\n${out}`);
    lines.forEach((line, i) => {
      const [code, exit, ...msg] = line.split(' ');
      statuses[share[i]] = Number(code);
      if (exit !== '0') errors[share[i]] = `curl exit ${exit}: ${msg.join(' ')}`;
    });
  }));
  return { statuses, errors };
}

/** `n` request ids: scope tag + a letter sequence (no digits: nothing a route normaliser folds). */
export function requestIds(scope: Scope, prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${scope.tag}${letters(i)}`);
}

export interface Tracing {
  linker: Linker;
  agents: Agent[];
}

/** A linker and one agent per entry of `agents` (default: one agent with the default process selection). */
export async function startTracing(scope: Scope, agents: AgentOptions[] = [{ host: `e2e-${scope.tag}` }], window = E2E_WINDOW): Promise<Tracing> {
  // All at once: each takes seconds to start, and an agent keeps its spans until the linker is up.
  const port = await freePort();
  const [linker, ...started] = await Promise.all([
    startLinker(scope, { window, port }),
    ...agents.map((a) => startAgent(scope, { port }, a)),
  ]) as [Linker, ...Agent[]];
  return { linker, agents: started };
}
