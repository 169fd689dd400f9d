// Builds Go programs with the machine's `go` (golang-go), offline: standard library only,
// GOCACHE/GOPATH in a temp dir unless set. Used by the Go tool's build, tests and benches.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** go build `dir` (a main package, given a go.mod when it has none) into `out`. */
export function goBuild(dir: string, out: string, flags: string[] = []): string {
  const cache = `${tmpdir()}/seqtrace-gocache`;
  mkdirSync(cache, { recursive: true });
  if (!existsSync(`${dir}/go.mod`)) writeFileSync(`${dir}/go.mod`, 'module seqtrace/testprog\n\ngo 1.19\n');
  execFileSync('go', ['build', ...flags, '-o', out, '.'], {
    cwd: dir,
    env: { ...process.env, GOCACHE: process.env.GOCACHE ?? cache, GOPATH: process.env.GOPATH ?? `${cache}/path`, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local', CGO_ENABLED: process.env.CGO_ENABLED ?? '0' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return out;
}
