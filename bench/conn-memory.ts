// Memory of the agent's connection table per idle connection: N connections, each with one
// exchange done (every other request's head split over two reads), then nothing. Prints the V8
// heap and array buffers they hold, per connection, after a full GC. Compiled trees run each in
// a process of its own, as in bench/agent-micro.ts (under tsx a closure costs more than in the
// compiled code the agent runs).
//
//   node --import tsx bench/conn-memory.ts [n=20000] DIR...
//   DIR: compiled trees (`npx tsc -p . --outDir bench/build/js-X --sourceMap false`); none: src/
import { execFileSync } from 'node:child_process';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DataEvent } from '../src/agent/capture/event.js';
import { dataEvent } from '../src/agent/capture/testkit.js';

const here = dirname(fileURLToPath(import.meta.url));

if (process.argv[2] === '--one') {
  const [, , , tree, ext, n] = process.argv;
  console.log(await measure(tree, ext, Number(n)));
} else {
  const n = Number(process.argv[2] ?? 20000);
  const trees = process.argv.slice(3);
  const dirs = trees.length ? trees.map((d) => resolve(d)) : [join(here, '../src')];
  for (const dir of dirs) {
    const out = execFileSync(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url), '--one', dir, trees.length ? '.js' : '.ts', String(n)], { encoding: 'utf8' });
    console.log(`${trees.length ? dir : 'src'}: ${out.trim()}`);
  }
}

async function measure(tree: string, ext: string, n: number): Promise<string> {
  const { createConnTable } = (await import(join(tree, 'agent/conn' + ext))) as typeof import('../src/agent/conn.js');
  const { createThreadGroups } = (await import(join(tree, 'agent/threadgroup' + ext))) as typeof import('../src/agent/threadgroup.js');
  const gc = (globalThis as unknown as { gc: () => void }).gc;
  const ev = (sock: number, dir: 'send' | 'recv', s: string, seq: number, t: number): DataEvent =>
    dataEvent({ tsNs: t * 1000, sockId: sock, dir, seq, head: Buffer.from(s, 'latin1'), dstPort: 50000 + (sock % 10000) });
  let spans = 0;
  const table = createConnTable({
    host: 'h', convToDdtrace: false, groups: createThreadGroups(1000n),
    procs: { service: () => 'svc', processName: () => 'p', threadName: () => 't', threadLinks: () => true },
    clock: { epochUs: (ns) => Math.floor(ns / 1000) },
    onSpan: () => { spans++; },
  });
  const req = 'GET /users/7 HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\n\r\n';
  const resp = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
  gc();
  const m0 = process.memoryUsage();
  for (let i = 1; i <= n; i++) {
    if (i % 2) table.onData(ev(i, 'recv', req, 1000, i));
    else {
      table.onData(ev(i, 'recv', req.slice(0, 20), 1000, i));
      table.onData(ev(i, 'recv', req.slice(20), 1020, i));
    }
    table.onData(ev(i, 'send', resp, 5000, i + 1));
  }
  gc();
  const m1 = process.memoryUsage();
  if (table.stats.tracked !== n || spans !== n) throw new Error(`bench/conn-memory.ts: ${table.stats.tracked} connections tracked, ${spans} spans, for ${n}`);
  return `${n} idle connections: ${((m1.heapUsed - m0.heapUsed) / n).toFixed(0)} bytes of V8 heap and ${((m1.arrayBuffers - m0.arrayBuffers) / n).toFixed(0)} of array buffers each`;
}
