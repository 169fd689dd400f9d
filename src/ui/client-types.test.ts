// The browser code is plain JavaScript with JSDoc types (served as is, no build step); this
// keeps it type-checked as strictly as the TypeScript around it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

test('src/ui/public passes tsc --checkJs --strict', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const tsc = join(here, '..', '..', 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(here, 'public')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `tsc found errors in the UI code:\n${r.stdout}${r.stderr}`);
});
