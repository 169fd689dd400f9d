// Child process of the SIGKILL test (sqlite.test.ts): appends batches and commits traces
// as fast as it can, printing each id only after the call returned, until it is killed.
import { writeSync } from 'node:fs';
import { chainTrace, ebpfSpan, traceIdOf, BASE_US } from './conformance.js';
import { openSqliteStore } from './sqlite.js';

const store = openSqliteStore(process.argv[2], { retentionMaxAgeMs: Number.MAX_SAFE_INTEGER, retentionMaxBytes: Number.MAX_SAFE_INTEGER, sweepIntervalMs: 0 });
const batch = Array.from({ length: 100 }, () => ebpfSpan());
for (let n = 1; ; n++) {
  const id = store.append(batch, Date.now());
  writeSync(1, `A ${id} ${n}\n`);
  if (n % 2 === 0) {
    // The trace made of this batch is stored and the batch leaves the spool, in one commit.
    store.commit(chainTrace(n, BASE_US + n), [id]);
    writeSync(1, `C ${id} ${traceIdOf(n)}\n`);
  }
}
