// How long attaching OpenSSL's probes to a process takes (docs/kernel.md, "TLS"), while the
// probes of the process before it are being removed: N Python processes (each imports ssl) are
// probed in turn with the loader's `tls` command, each killed once probed, so that its probes
// go at the loader's next poll while the next one is attached. Prints each attach in ms.
//   node --import tsx bench/uprobe-attach.ts [processes=8] [auto|perf|tracefs]
// (perf: perf-event uprobes, the way of kernels before 6.6; tracefs: uprobe events in tracefs)
import { spawn } from 'node:child_process';
import { startCapture } from '../src/agent/capture/loader.js';
import { mappedLibssl } from '../src/agent/tls/openssl.js';

const n = Number(process.argv[2] ?? 8);
const uprobes = (process.argv[3] ?? 'auto') as 'auto' | 'perf' | 'tracefs';
const cap = await startCapture({ mode: 'socket', uprobes, onEvents() {}, onError(e) { throw e; } });
const times: string[] = [];
try {
  for (let i = 0; i < n; i++) {
    const py = spawn('/usr/bin/python3', ['-c', 'import ssl, time; print("ready", flush=True); time.sleep(30)'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve) => py.stdout.once('data', resolve));
    const pid = py.pid!;
    await cap.addPid(pid);
    const t0 = performance.now();
    await cap.tlsProcess(pid, `/proc/${pid}/root${mappedLibssl('/proc', pid)}`);
    times.push((performance.now() - t0).toFixed(1));
    py.kill();
  }
} finally {
  await cap.close();
}
console.log(`uprobes ${uprobes}: attaching a process's OpenSSL probes took ${times.join(' ')} ms`);
