import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createProcSelector, type ProcSelectorOptions } from './procs.js';
import { AGENT_KEYS } from '../config/config.js';

const dir = mkdtempSync(join(tmpdir(), 'seqtrace-procs-'));
const children: ChildProcess[] = [];

/** A real process running `sleep` under the given file name (so comm is that name) and env. */
function proc(name: string, env: Record<string, string> = {}, argv0?: string): ChildProcess {
  const bin = join(dir, name);
  try {
    copyFileSync('/bin/sleep', bin);
  } catch {
    // already copied
  }
  const c = spawn(bin, ['60'], { env: { PATH: '/usr/bin:/bin', ...env }, argv0, stdio: 'ignore' });
  children.push(c);
  return c;
}

const settle = () => new Promise((r) => setTimeout(r, 150)); // let exec finish so comm is the new name

function selector(cfg: Partial<ProcSelectorOptions['cfg']>, denyPids: number[] = []) {
  return selectorAt(undefined, cfg, denyPids);
}

function selectorAt(procRoot: string | undefined, cfg: Partial<ProcSelectorOptions['cfg']>, denyPids: number[] = []) {
  const added: number[] = [];
  const removed: number[] = [];
  const sel = createProcSelector({
    cfg: {
      trace_all_process: false,
      trace_envset: AGENT_KEYS.trace_envset.default,
      trace_nameset: [],
      trace_namedenyset: [],
      ...cfg,
    },
    addPid: (p) => added.push(p),
    removePid: (p) => removed.push(p),
    denyPids: () => denyPids,
    intervalMs: 0,
    procRoot,
  });
  return { sel, added, removed };
}

test.after(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

test('env set, name set, deny list: selected as the seed says', async () => {
  const withEnv = proc('svc-a', { DD_SERVICE: 'orders' });
  const otel = proc('svc-b', { OTEL_SERVICE_NAME: 'billing', DK_BPFTRACE_SERVICE: 'payments' });
  const byName = proc('mysleeper');
  const byArgv0 = proc('plainsleep', {}, 'fancyname');
  const plain = proc('untraced');
  const datakit = proc('datakit', { DD_SERVICE: 'x' });
  const deniedByConfig = proc('noisy', { DD_SERVICE: 'x' });
  await settle();
  const { sel, added } = selector({ trace_nameset: ['mysleeper', 'fancyname', 'noisy'], trace_namedenyset: ['noisy'] }, [process.pid]);
  sel.scan();
  const has = (c: ChildProcess) => added.includes(c.pid!);
  assert.ok(has(withEnv), 'DD_SERVICE present');
  assert.ok(has(otel), 'OTEL_SERVICE_NAME present');
  assert.ok(has(byName), 'comm in trace_nameset');
  assert.ok(has(byArgv0), 'argv0 in trace_nameset');
  assert.ok(!has(plain), 'nothing matches');
  assert.ok(!has(datakit), 'datakit is always denied');
  assert.ok(!has(deniedByConfig), 'deny list wins over name and env');
  assert.ok(!added.includes(process.pid));
  assert.equal(sel.info(withEnv.pid!)!.reason, 'env');
  assert.equal(sel.info(byName.pid!)!.reason, 'name');
  assert.equal(sel.service(withEnv.pid!), 'orders');
  assert.equal(sel.service(otel.pid!), 'payments', 'DK_BPFTRACE_SERVICE first');
  assert.equal(sel.service(byName.pid!), 'mysleeper', 'no service variable: the process name');
  assert.equal(sel.processName(withEnv.pid!), 'svc-a');
  assert.equal(sel.threadName(withEnv.pid!, withEnv.pid!), 'svc-a');
  sel.close();
});

test('an environment larger than the read buffer (64 KiB) is read whole', async () => {
  const pad = 'x'.repeat(60_000); // one string may not exceed 128 KiB (MAX_ARG_STRLEN)
  const big = proc('svc-big', { BIG1: pad, BIG2: pad, BIG3: pad, DD_SERVICE: 'after-the-big-one' });
  await settle();
  const { sel, added } = selector({});
  sel.scan();
  assert.ok(added.includes(big.pid!));
  assert.equal(sel.service(big.pid!), 'after-the-big-one');
  sel.close();
});

test('trace_all_process: everything but the deny list, the agent itself and kernel threads', async () => {
  const plain = proc('anything');
  const datakitEbpf = proc('datakit-ebpf');
  await settle();
  const { sel, added } = selector({ trace_all_process: true }, [process.pid]);
  sel.scan();
  assert.ok(added.includes(plain.pid!));
  assert.ok(!added.includes(datakitEbpf.pid!));
  assert.ok(!added.includes(process.pid), 'the agent never traces itself');
  assert.ok(!added.includes(2), 'kthreadd');
  assert.equal(sel.info(plain.pid!)!.reason, 'all');
  sel.close();
});

test('an exec event for a process that already exited keeps its names until its exit event', async () => {
  const c = proc('svc-c', { DD_SERVICE: 'short' });
  await settle();
  const { sel, removed } = selector({});
  sel.scan();
  assert.ok(sel.isTraced(c.pid!));
  c.kill('SIGKILL');
  await new Promise((r) => c.once('exit', r));
  sel.onExec(c.pid!);
  assert.equal(sel.service(c.pid!), 'short');
  assert.ok(!removed.includes(c.pid!));
  sel.onExit(c.pid!);
  assert.ok(removed.includes(c.pid!));
  assert.equal(sel.service(c.pid!), 'short');
  sel.close();
});

test('an exec event read after the new image exited (a zombie) keeps the environment it was selected by', async () => {
  // A shell with DD_SERVICE that execs a short command (runCurl's `exec curl`): the command
  // exits before the exec event is read, and nobody reaps it (its parent became `sleep`), so
  // /proc shows a zombie named `true` whose environ, exe and cmdline are empty.
  const outer = spawn('/bin/sh', ['-c', '(DD_SERVICE=orders exec sh -c "sleep 0.4; exec true") & exec sleep 10'], { env: { PATH: '/usr/bin:/bin' }, stdio: 'ignore' });
  children.push(outer);
  await settle();
  const kids = readFileSync(`/proc/${outer.pid}/task/${outer.pid}/children`, 'utf8').trim().split(' ').map(Number);
  assert.equal(kids.length, 1, `one child of ${outer.pid}: ${kids}`);
  const pid = kids[0];
  const { sel, removed } = selector({});
  sel.scan();
  assert.ok(sel.isTraced(pid));
  assert.equal(sel.service(pid), 'orders');
  const state = () => readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1][0];
  for (let i = 0; i < 100 && state() !== 'Z'; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(state(), 'Z');
  sel.onExec(pid);
  assert.equal(sel.service(pid), 'orders');
  assert.equal(sel.processName(pid), 'true');
  assert.ok(sel.isTraced(pid));
  assert.ok(!removed.includes(pid));
  sel.close();
});

test('a process that exited before the agent looked goes by its parent\'s service from the environment', async () => {
  // A child of a shell with DD_SERVICE that exits at once, unreaped (its parent became
  // `sleep`): a zombie whose environ is empty. And a child already reaped, whose exec event
  // names its parent.
  const outer = spawn('/bin/sh', ['-c', '(exec true) & exec sleep 10'], { env: { PATH: '/usr/bin:/bin', DD_SERVICE: 'orders' }, stdio: 'ignore' });
  children.push(outer);
  const plainParent = spawn('/bin/sh', ['-c', '(exec true) & exec sleep 10'], { env: { PATH: '/usr/bin:/bin' }, stdio: 'ignore' });
  children.push(plainParent);
  await settle();
  const kid = (p: number) => Number(readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim());
  const zombie = kid(outer.pid!);
  const plainZombie = kid(plainParent.pid!);
  const state = (p: number) => readFileSync(`/proc/${p}/stat`, 'latin1').split(') ')[1][0];
  for (let i = 0; i < 100 && (state(zombie) !== 'Z' || state(plainZombie) !== 'Z'); i++) await new Promise((r) => setTimeout(r, 50));
  const { sel } = selector({});
  sel.scan();
  assert.equal(sel.service(zombie), 'orders');
  assert.equal(sel.processName(zombie), 'true');
  assert.equal(sel.service(plainZombie), 'true', 'a parent without a service variable lends nothing');
  sel.onExec(zombie, outer.pid!);
  assert.equal(sel.service(zombie), 'orders');

  const reaped = spawn('/bin/true');
  await new Promise((r) => reaped.once('exit', r));
  sel.onExec(reaped.pid!, outer.pid!);
  assert.equal(sel.service(reaped.pid!), 'orders');
  sel.close();
});

test('a child forked without exec goes by its parent\'s service though its environ was written over (nginx)', async () => {
  // nginx's master, examined at its exec, then writes its process title over the memory that
  // /proc/PID/environ shows, and forks its worker, whose copy reads the same. A plain child
  // of an untraced parent lends nothing.
  const script = fileURLToPath(new URL('./testdata/envwipe.py', import.meta.url));
  const master = spawn('python3', [script], { env: { PATH: '/usr/bin:/bin', OTEL_SERVICE_NAME: 'gateway' }, stdio: ['pipe', 'pipe', 'inherit'] });
  const plain = spawn('python3', [script], { env: { PATH: '/usr/bin:/bin' }, stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(master, plain);
  const { sel } = selector({});
  const workerOf = async (p: ChildProcess) => {
    let out = '';
    p.stdout!.on('data', (d) => { out += d; });
    p.stdin!.write('\n');
    for (let i = 0; i < 100 && !out.includes('\n'); i++) await new Promise((r) => setTimeout(r, 20));
    return Number(out.trim());
  };
  for (let i = 0; i < 100 && readFileSync(`/proc/${master.pid}/comm`, 'utf8').trim() !== 'python3'; i++) await settle();
  sel.onExec(master.pid!, process.pid); // read at exec: the environment is still there
  assert.equal(sel.service(master.pid!), 'gateway');
  const worker = await workerOf(master);
  const plainWorker = await workerOf(plain);
  assert.doesNotMatch(readFileSync(`/proc/${worker}/environ`, 'latin1'), /OTEL_SERVICE_NAME/, 'written over');
  sel.scan();
  assert.equal(sel.service(master.pid!), 'gateway', 'the master keeps what it was examined as');
  assert.equal(sel.service(worker), 'gateway');
  assert.equal(sel.service(plainWorker), 'python3');
  master.stdin!.end('\n');
  plain.stdin!.end('\n');
  sel.close();
});

test('exit and exec: pids are removed, and re-examined when they exec', async () => {
  const a = proc('mysleeper');
  // A shell that later execs into a traced name: same pid, new comm.
  const bin = join(dir, 'mysleeper');
  const sh = spawn('/bin/sh', ['-c', `sleep 0.5; exec ${bin} 60`], { env: { PATH: '/usr/bin:/bin' }, stdio: 'ignore' });
  children.push(sh);
  await settle();
  const { sel, added, removed } = selector({ trace_nameset: ['mysleeper'] });
  sel.scan();
  assert.ok(added.includes(a.pid!));
  assert.ok(!added.includes(sh.pid!));
  await new Promise((r) => setTimeout(r, 700));
  sel.onExec(sh.pid!);
  assert.ok(added.includes(sh.pid!), 'traced after exec');
  a.kill('SIGKILL');
  await new Promise((r) => a.once('exit', r));
  await settle();
  sel.scan();
  assert.ok(removed.includes(a.pid!), 'removed once gone');
  assert.equal(sel.service(a.pid!), 'mysleeper', 'spans still queued for a gone process keep its names');
  assert.equal(sel.processName(a.pid!), 'mysleeper');
  assert.equal(sel.isTraced(a.pid!), false);
  assert.equal(sel.isTraced(sh.pid!), true);
  sel.close();
});

const PF_EXITING = 0x4, PF_KTHREAD = 0x200000;

interface FakeProc { comm: string; flags: number; state?: string; ppid?: number; environ?: string; cmdline?: string; exe?: string }

/** A process in a /proc of our own (root), for moments a real process cannot be held in. */
function writeProc(root: string, pid: number, o: FakeProc): void {
  const d = join(root, String(pid));
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  // fields 3 … 22: state ppid pgrp session tty tpgid flags … starttime (field 22)
  const rest = [o.state ?? 'R', String(o.ppid ?? 1), '1', '1', '0', '-1', String(o.flags), ...Array(12).fill('0'), '12345'];
  writeFileSync(join(d, 'stat'), `${pid} (${o.comm}) ${rest.join(' ')} 0 0\n`);
  writeFileSync(join(d, 'environ'), o.environ ?? '');
  writeFileSync(join(d, 'cmdline'), o.cmdline ?? '');
  if (o.exe) symlinkSync(o.exe, join(d, 'exe'));
}

test('a process caught exiting (memory released, state still running) keeps its service; kernel threads go by their flag', () => {
  // A /proc of our own: the moment cannot be held with a real process. From the start of its
  // exit a process's environ, exe and cmdline read empty while its state reads R; it looked
  // like a kernel thread then, was untraced and its last spans named by its comm.
  const root = mkdtempSync(join(tmpdir(), 'seqtrace-fakeproc-'));
  const write = (pid: number, o: FakeProc) => writeProc(root, pid, o);
  try {
    const { sel, removed } = selectorAt(root, {});
    write(4242, { comm: 'sh', flags: 0x400000, environ: 'PATH=/bin\0OTEL_SERVICE_NAME=orders\0', cmdline: 'sh\0-c\0exec curl\0', exe: '/bin/sh' });
    sel.onExec(4242, 1);
    assert.ok(sel.isTraced(4242));
    assert.equal(sel.service(4242), 'orders');
    // exec'd curl, caught as it exits: flagged exiting
    write(4242, { comm: 'curl', flags: 0x400000 | PF_EXITING });
    sel.onExec(4242, 1);
    assert.equal(sel.service(4242), 'orders');
    assert.equal(sel.processName(4242), 'curl');
    assert.ok(sel.isTraced(4242));
    // or caught between the stat read and the rest (the flag not read yet): all empty
    write(4242, { comm: 'curl', flags: 0x400000 });
    sel.scan();
    sel.onExec(4242, 1);
    assert.equal(sel.service(4242), 'orders');
    assert.ok(sel.isTraced(4242));
    assert.deepEqual(removed, []);

    // kernel threads: by their flag, whatever their parent; never traced, even with trace_all_process
    const all = selectorAt(root, { trace_all_process: true });
    write(4343, { comm: 'kworker/0:1', flags: PF_KTHREAD, ppid: 7 });
    write(4444, { comm: 'plain', flags: 0x400000, cmdline: 'plain\0', exe: '/bin/sleep' });
    all.sel.scan();
    assert.equal(all.sel.isTraced(4343), false);
    assert.equal(all.sel.info(4343)?.reason, 'denied');
    assert.equal(all.sel.isTraced(4444), true, 'an empty environment is an empty environment when the command line is there');
    assert.equal(all.sel.stats.environUnreadable, 0);
    // an environ the agent may not read (another user's process without CAP_SYS_PTRACE): counted
    write(4545, { comm: 'other', flags: 0x400000, cmdline: 'other\0', exe: '/bin/sleep' });
    rmSync(join(root, '4545', 'environ'));
    all.sel.scan();
    assert.equal(all.sel.stats.environUnreadable, 1);
    sel.close();
    all.sel.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('thread names: read once per thread, forgotten when the thread ends or its process exits', () => {
  // a /proc of our own: thread 11 of process 10 renames itself between reads
  const root = mkdtempSync(join(tmpdir(), 'seqtrace-proc-'));
  const comm = (name: string) => writeFileSync(join(root, '10', 'task', '11', 'comm'), `${name}\n`);
  mkdirSync(join(root, '10', 'task', '11'), { recursive: true });
  try {
    const { sel } = selectorAt(root, {});
    comm('worker-1');
    assert.equal(sel.threadName(10, 11), 'worker-1');
    comm('worker-2');
    assert.equal(sel.threadName(10, 11), 'worker-1', 'read once');
    sel.onThreadExit(10, 11); // and a new thread of the process got tid 11
    assert.equal(sel.threadName(10, 11), 'worker-2');
    comm('worker-3');
    sel.onExit(10);
    assert.equal(sel.threadName(10, 11), 'worker-3', 'the process exited: its names are gone');
    sel.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('threads link a process\'s calls unless setThreadLinks(pid, false); its next exec or its exit forgets that', () => {
  const root = mkdtempSync(join(tmpdir(), 'seqtrace-proc-'));
  const { sel } = selectorAt(root, {});
  try {
    assert.equal(sel.threadLinks(10), true);
    sel.setThreadLinks(10, false);
    sel.setThreadLinks(11, false);
    sel.setThreadLinks(13, false);
    assert.deepEqual([sel.threadLinks(10), sel.threadLinks(11), sel.threadLinks(12), sel.threadLinks(13)], [false, false, true, false]);
    sel.setThreadLinks(13, true); // followed after all
    assert.equal(sel.threadLinks(13), true);
    sel.onExec(10, 1); // another binary (gone already here: selected as gone, no matter)
    sel.onExit(11); // its pid may be reused
    assert.deepEqual([sel.threadLinks(10), sel.threadLinks(11)], [true, true]);
  } finally {
    sel.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test('a process gone before the agent decided is selected by its exec event\'s comm: by name, or all; the deny list first', () => {
  // Traced from its exec (provisional) and reaped, or a zombie, when the agent looks: only the
  // comm is left (cut to 15 bytes), and its parent here has no service variable.
  const root = mkdtempSync(join(tmpdir(), 'seqtrace-fakeproc-'));
  try {
    const byName = selectorAt(root, { trace_nameset: ['quickcall', 'a-very-long-client-name'], trace_namedenyset: ['noisy-but-named'] });
    assert.equal(byName.sel.onExec(501, 1, true, 'quickcall'), true, 'reaped, its comm in trace_nameset');
    assert.equal(byName.sel.service(501), 'quickcall');
    assert.equal(byName.sel.onExec(502, 1, true, 'a-very-long-cli'), true, 'a long name as its comm shows it');
    assert.equal(byName.sel.onExec(503, 1, true, 'curl'), false, 'a name not selected');
    assert.equal(byName.sel.onExec(504, 1, true, ''), false, 'no name at all');
    writeProc(root, 505, { comm: 'quickcall', flags: 0, state: 'Z' });
    assert.equal(byName.sel.onExec(505, 1, true, 'quickcall'), true, 'a zombie, by the comm in its stat');
    // a shell examined (untraced) at its exec, which then exec'd the named client, reaped
    writeProc(root, 506, { comm: 'sh', flags: 0, cmdline: 'sh\0', exe: '/bin/sh' });
    assert.equal(byName.sel.onExec(506, 1, true, 'sh'), false);
    rmSync(join(root, '506'), { recursive: true });
    assert.equal(byName.sel.onExec(506, 1, true, 'quickcall'), true, 'the new image, by its name');
    assert.equal(byName.sel.service(506), 'quickcall');
    assert.deepEqual(byName.added, [], 'gone: nothing added to the kernel');
    assert.deepEqual(byName.removed, [503, 504, 506], 'the rejected ones (and the children they forked) ended');

    const all = selectorAt(root, { trace_all_process: true, trace_namedenyset: ['noisy'] }, [777]);
    assert.equal(all.sel.onExec(601, 1, true, 'anything'), true, 'trace_all_process: any name');
    assert.equal(all.sel.onExec(602, 1, true, 'noisy'), false, 'trace_namedenyset wins');
    assert.equal(all.sel.onExec(603, 1, true, 'seqtrace-gooffs'), false, 'the agent\'s own tools, by their cut name');
    assert.equal(all.sel.onExec(777, 1, true, 'anything'), false, 'a denied pid');
    writeProc(root, 604, { comm: 'noisy', flags: PF_EXITING });
    assert.equal(all.sel.onExec(604, 1, true, 'noisy'), false, 'exiting, denied by its comm');
    assert.deepEqual(all.removed, [602, 603, 777, 604]);

    // Its environment is taken for its parent's: kept when the parent was selected by it.
    writeProc(root, 800, { comm: 'sh', flags: 0, environ: 'OTEL_SERVICE_NAME=orders\0', cmdline: 'sh\0', exe: '/bin/sh' });
    const inherit = selectorAt(root, {});
    assert.equal(inherit.sel.onExec(801, 800, true, 'curl'), true, 'a parent selected by its environment');
    assert.equal(inherit.sel.service(801), 'orders');
    const otherEnv = selectorAt(root, { trace_envset: ['TRACE_ME'] });
    assert.equal(otherEnv.sel.onExec(801, 800, true, 'curl'), false, 'a parent with a service name but not selected');
    assert.equal(otherEnv.sel.service(801), 'orders', 'named by it all the same');

    // The pid of a process a scan saw (now in the past) is not taken for the new one's.
    const env = selectorAt(root, {});
    writeProc(root, 701, { comm: 'old', flags: 0, environ: 'DD_SERVICE=orders\0', cmdline: 'old\0', exe: '/bin/sleep' });
    env.sel.scan();
    assert.equal(env.sel.service(701), 'orders');
    rmSync(join(root, '701'), { recursive: true });
    env.sel.scan();
    assert.equal(env.sel.onExec(701, 1, true, 'fresh'), false, 'not the old process\'s environment');
    assert.equal(env.sel.service(701), 'fresh');

    // Its environment as the loader read it at the exec (ProcessEvent.env): selects and names
    // it like a live one's; the deny list first; a zombie too.
    const execEnv = selectorAt(root, { trace_envset: ['TRACE_ME', 'OTEL_SERVICE_NAME'], trace_namedenyset: ['noisy'] });
    const vars = (o: Record<string, string>) => new Map(Object.entries(o));
    assert.equal(execEnv.sel.onExec(901, 1, true, 'curl', vars({ OTEL_SERVICE_NAME: 'cli' })), true, 'reaped, its service variable');
    assert.equal(execEnv.sel.service(901), 'cli');
    assert.equal(execEnv.sel.onExec(902, 1, true, 'curl', vars({ TRACE_ME: '1', DD_SERVICE: 'named' })), true, 'a trace_envset variable');
    assert.equal(execEnv.sel.service(902), 'named', 'named by the first service variable it has');
    assert.equal(execEnv.sel.onExec(903, 1, true, 'curl', vars({ DD_SERVICE: 'named' })), false, 'a service name alone does not select');
    assert.equal(execEnv.sel.onExec(904, 1, true, 'noisy', vars({ OTEL_SERVICE_NAME: 'x' })), false, 'trace_namedenyset wins');
    writeProc(root, 905, { comm: 'curl', flags: 0, state: 'Z' });
    assert.equal(execEnv.sel.onExec(905, 1, true, 'curl', vars({ OTEL_SERVICE_NAME: 'zombie-cli' })), true, 'a zombie');
    assert.equal(execEnv.sel.service(905), 'zombie-cli');
    // a shell examined untraced (no variable), which exec'd a client with one, reaped
    writeProc(root, 906, { comm: 'sh', flags: 0, cmdline: 'sh\0', exe: '/bin/sh' });
    assert.equal(execEnv.sel.onExec(906, 1, true, 'sh'), false);
    rmSync(join(root, '906'), { recursive: true });
    assert.equal(execEnv.sel.onExec(906, 1, true, 'curl', vars({ OTEL_SERVICE_NAME: 'after-sh' })), true, 'the new image, by its environment');
    assert.equal(execEnv.sel.service(906), 'after-sh');
    // Alive, its environ file overwritten already (nginx's process title): the exec's variables.
    writeProc(root, 907, { comm: 'nginx', flags: 0, environ: 'master process nginx -g daemon off;\0', cmdline: 'nginx: master process\0', exe: '/usr/sbin/nginx' });
    assert.equal(execEnv.sel.onExec(907, 1, true, 'nginx', vars({ OTEL_SERVICE_NAME: 'edge' })), true, 'alive: selected by what its exec carried');
    assert.equal(execEnv.sel.service(907), 'edge');
    assert.equal(execEnv.sel.isTraced(907), true);
    for (const x of [byName, all, inherit, otherEnv, env, execEnv]) x.sel.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
