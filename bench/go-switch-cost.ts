// What following goroutines costs a Go program (docs/go.md): ns per goroutine switch and per
// goroutine started, for one Go binary in one run, in three states alternating round by round:
//   off      no seqtrace loader at all
//   seqtrace the process traced with the agent's Go design: goids read from TLS in the socket
//            programs, the goroutine-start uprobe (NOP5 before runqput, else newproc1's RETs) (src/bpf/go.bpf.h)
//   execute  the same plus the seed's design: a uprobe on runtime.execute at every switch
// Prints per round, then medians. Needs root (eBPF); builds the Go program and the tool.
//   node --import tsx bench/go-switch-cost.ts [rounds=5] [round trips=500000] [goroutines=100000]
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startCapture, type Capture } from '../src/agent/capture/loader.js';
import { goBuild } from '../src/agent/go/gobuild.js';
import { ensureGoOffsetsTool, readGoBinary } from '../src/agent/go/offsets.js';

const [rounds = 5, switches = 500_000, spawns = 100_000] = process.argv.slice(2).map(Number);
// SEQTRACE_GO_PARENT_PROBE=ret: probe newproc1's RETs even when the binary has the NOP5 (comparison)
const retOnly = process.env.SEQTRACE_GO_PARENT_PROBE === 'ret';
const dir = mkdtempSync(join(tmpdir(), 'seqtrace-goswitch-'));
try {
  ensureGoOffsetsTool();
  cpSync(fileURLToPath(new URL('./go-switch/', import.meta.url)), `${dir}/src`, { recursive: true });
  const bin = goBuild(`${dir}/src`, `${dir}/go-switch`);
  const info = await readGoBinary(bin);
  if (!info.ok || !info.execute) throw new Error(`cannot read ${bin}: ${info.reason}`);

  const prog = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: prog.stdout })[Symbol.asyncIterator]();
  const next = async () => (await lines.next()).value as string;
  const pid = Number(await next());
  const ask = async (cmd: string) => {
    prog.stdin.write(cmd + '\n');
    const [wall, cpu] = (await next()).split(' ').map(Number);
    return { wall, cpu };
  };

  type State = 'off' | 'seqtrace' | 'execute';
  const states: State[] = ['off', 'seqtrace', 'execute'];
  const results: Record<State, Array<{ sw: number; swCpu: number; sp: number; spCpu: number }>> = { off: [], seqtrace: [], execute: [] };
  await ask('switch 100000'); // warm up
  console.log(`go-switch-cost: ${info.goVersion}, goroutine starts probed at ${info.newprocNop5 && !retOnly ? 'the NOP5 before runqput' : 'the RETs of newproc1'}, ${rounds} rounds, ${switches * 2} switches and ${spawns} goroutines per measurement, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('round state     ns/switch (wall cpu)   ns/goroutine started (wall cpu)');
  for (let r = 1; r <= rounds; r++) {
    for (const state of states) {
      let cap: Capture | null = null;
      if (state !== 'off') {
        cap = await startCapture({ mode: 'auto', pids: [pid], onEvents: () => {}, onError: (e) => { throw e; } });
        // where the agent probes goroutine starts (src/agent/go/golang.ts): the NOP5, else the RETs
        if (info.newprocNop5 && !retOnly) await cap.goUprobe('newproc_nop5', bin, info.newprocNop5);
        else for (const o of info.newproc1Ret) await cap.goUprobe('newproc1_ret', bin, o);
        if (info.roundTrip) await cap.goUprobe('roundtrip', bin, info.roundTrip); // (this program has no HTTP client)
        if (state === 'execute') await cap.goUprobe('execute', bin, info.execute);
        await cap.goProcess(pid, info);
        // as a process that calls out: the loader attaches the goroutine-start probe within 100 ms
        await ask('dial 1');
        await new Promise((r) => setTimeout(r, 300));
      }
      const sw = await ask(`switch ${switches}`);
      const sp = await ask(`spawn ${spawns}`);
      await cap?.close();
      results[state].push({ sw: sw.wall, swCpu: sw.cpu, sp: sp.wall, spCpu: sp.cpu });
      console.log(`${String(r).padStart(5)} ${state.padEnd(9)} ${sw.wall.toFixed(1).padStart(8)} ${sw.cpu.toFixed(1).padStart(8)}      ${sp.wall.toFixed(1).padStart(8)} ${sp.cpu.toFixed(1).padStart(8)}`);
    }
  }
  const med = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
  console.log('median:');
  for (const state of states) {
    const rs = results[state];
    const d = (k: 'sw' | 'swCpu' | 'sp' | 'spCpu') => med(rs.map((x) => x[k])) - med(results.off.map((x) => x[k]));
    console.log(`  ${state.padEnd(9)} switch ${med(rs.map((x) => x.sw)).toFixed(1)} ns (cpu ${med(rs.map((x) => x.swCpu)).toFixed(1)}, ${state === 'off' ? 'base' : `${d('swCpu') >= 0 ? '+' : ''}${d('swCpu').toFixed(1)} vs off`}), ` +
      `goroutine start ${med(rs.map((x) => x.sp)).toFixed(1)} ns (cpu ${med(rs.map((x) => x.spCpu)).toFixed(1)}, ${state === 'off' ? 'base' : `${d('spCpu') >= 0 ? '+' : ''}${d('spCpu').toFixed(1)} vs off`})`);
  }
  console.log(`load after: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  prog.stdin.end();
  prog.kill();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
