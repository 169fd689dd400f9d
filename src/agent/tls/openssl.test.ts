import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTlsTracer, mappedLibssl } from './openssl.js';

const LINE = (path: string) => `7f1c2a000000-7f1c2a021000 r--p 00000000 fd:01 1234567                    ${path}\n`;

/** A /proc with one process whose maps has these paths. */
function procRoot(maps: Record<number, string[]>): string {
  const root = mkdtempSync(join(tmpdir(), 'seqtrace-tls-proc-'));
  for (const [pid, paths] of Object.entries(maps)) {
    mkdirSync(join(root, pid));
    writeFileSync(join(root, pid, 'maps'), paths.map(LINE).join(''));
  }
  return root;
}

test('mappedLibssl: OpenSSL\'s libssl, any version, a path with spaces; not NSS\'s libssl3.so', () => {
  const root = procRoot({
    1: ['/usr/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib/x86_64-linux-gnu/libssl3.so', '/usr/lib/x86_64-linux-gnu/libssl.so.3'],
    2: ['/opt/my app/lib/libssl.so.1.1'],
    3: ['/usr/lib/x86_64-linux-gnu/libssl3.so', '/usr/bin/python3.11'],
    4: ['/usr/lib/libssl.so'],
  });
  try {
    assert.equal(mappedLibssl(root, 1), '/usr/lib/x86_64-linux-gnu/libssl.so.3');
    assert.equal(mappedLibssl(root, 2), '/opt/my app/lib/libssl.so.1.1');
    assert.equal(mappedLibssl(root, 3), '', 'NSS is not OpenSSL');
    assert.equal(mappedLibssl(root, 4), '/usr/lib/libssl.so');
    assert.equal(mappedLibssl(root, 5), '', 'gone');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the tracer tells the loader each process that maps libssl once, through its root; looks again at a handshake; counts refusals', async () => {
  const root = procRoot({ 10: ['/usr/lib/libssl.so.3'], 11: ['/usr/bin/sh'], 12: ['/usr/lib/libssl.so.3'] });
  const told: string[] = [];
  const logs: string[] = [];
  const tracer = createTlsTracer({
    enabled: true, procRoot: root, log: (m) => logs.push(m),
    capture: () => ({ tlsProcess: async (pid, path) => { told.push(`${pid} ${path}`); if (pid === 12) throw new Error('EINVAL'); } }),
  });
  try {
    await tracer.onTraced(10);
    await tracer.onTraced(10);
    await tracer.onTraced(11);
    assert.deepEqual(told, [`10 ${root}/10/root/usr/lib/libssl.so.3`]);
    // 11 maps libssl later (Python imports ssl when first used): a handshake seen makes the agent look again
    writeFileSync(join(root, '11', 'maps'), LINE('/usr/lib/libssl.so.3'));
    tracer.onHandshake(11);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(told.slice(1), [`11 ${root}/11/root/usr/lib/libssl.so.3`]);
    tracer.onHandshake(11); // probed already: nothing
    await tracer.onTraced(12);
    assert.equal(tracer.stats.processes, 2);
    assert.equal(tracer.stats.errors, 1);
    assert.match(logs[0], /process 12's HTTPS is not traced .*EINVAL/);
    // a new loader: told afresh
    tracer.reset();
    await tracer.onTraced(10);
    assert.equal(told.filter((t) => t.startsWith('10 ')).length, 2);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a kernel that refuses uprobes to the agent (CAP_SYS_ADMIN) is said once; no process is probed after it', async () => {
  const root = procRoot({ 30: ['/usr/lib/libssl.so.3'], 31: ['/usr/lib/libssl.so.3'], 32: ['/usr/lib/libssl.so.3'] });
  const told: number[] = [];
  const logs: string[] = [];
  const refusal = 'the kernel refused OpenSSL\'s uprobes on … for pid 30: seqtrace-loader: tls 30: SSL_write of …: Permission denied (perf-event uprobes need CAP_SYS_ADMIN on this kernel, uprobe events a writable /sys/kernel/tracing/uprobe_events; uprobe_multi links, kernel 6.6+, need neither)';
  const tracer = createTlsTracer({
    enabled: true, procRoot: root, log: (m) => logs.push(m),
    capture: () => ({ tlsProcess: async (pid) => { told.push(pid); throw new Error(refusal); } }),
  });
  try {
    await tracer.onTraced(30);
    await tracer.onTraced(31);
    tracer.onExec(32);
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(told, [30], 'asked once');
    assert.equal(logs.length, 1);
    assert.match(logs[0], /HTTPS is not traced on this host \(trace_tls\): .*CAP_SYS_ADMIN/);
    assert.equal(tracer.stats.errors, 1);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('after an exec the image has no libssl yet: looked at again until its dynamic loader mapped it (not at a selection)', async () => {
  const root = procRoot({ 20: ['/usr/bin/curl'], 21: ['/usr/bin/sh'] });
  const told: number[] = [];
  const tracer = createTlsTracer({ enabled: true, procRoot: root, log: () => {}, capture: () => ({ tlsProcess: async (pid) => { told.push(pid); } }) });
  try {
    tracer.onExec(20);
    await tracer.onTraced(21);
    writeFileSync(join(root, '20', 'maps'), LINE('/usr/bin/curl') + LINE('/usr/lib/libssl.so.3'));
    writeFileSync(join(root, '21', 'maps'), LINE('/usr/lib/libssl.so.3'));
    const until = Date.now() + 2000;
    while (told.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 700)); // past the last look
    assert.deepEqual(told, [20], 'a process selected long after its exec is looked at once');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a binary whose processes mapped libssl: its next process is probed at its exec, before it maps the library', async () => {
  const root = procRoot({ 40: ['/usr/lib/libssl.so.3'], 41: [], 42: ['/usr/lib/libc.so.6'], 43: [] });
  for (const pid of [40, 41]) symlinkSync(process.execPath, join(root, String(pid), 'exe'));
  for (const pid of [42, 43]) symlinkSync('/bin/sh', join(root, String(pid), 'exe'));
  const told: string[] = [];
  const tracer = createTlsTracer({ enabled: true, procRoot: root, log: () => {}, capture: () => ({ tlsProcess: async (pid, path) => { told.push(`${pid} ${path}`); } }) });
  try {
    await tracer.onTraced(40);
    tracer.onExec(41); // maps nothing yet
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(told, [`40 ${root}/40/root/usr/lib/libssl.so.3`, `41 ${root}/41/root/usr/lib/libssl.so.3`]);
    // a binary that loaded without libssl is not looked at again at its processes' execs
    tracer.onExec(42);
    await new Promise((r) => setTimeout(r, 700));
    writeFileSync(join(root, '43', 'maps'), LINE('/usr/lib/libssl.so.3'));
    tracer.onExec(43);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(told.length, 2, told.join(', '));
    // (unless a handshake says otherwise)
    tracer.onHandshake(43);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(told.length, 3);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('trace_tls = false: nothing is probed', async () => {
  const root = procRoot({ 30: ['/usr/lib/libssl.so.3'] });
  const told: number[] = [];
  const tracer = createTlsTracer({ enabled: false, procRoot: root, log: () => {}, capture: () => ({ tlsProcess: async (pid) => { told.push(pid); } }) });
  try {
    await tracer.onTraced(30);
    tracer.onHandshake(30);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(told, []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
