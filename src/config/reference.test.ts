import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configReference } from './reference.js';

test('docs/configuration.md holds the reference tables of the current schema', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  const begin = '<!-- reference: begin -->\n';
  const end = '<!-- reference: end -->';
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  assert.ok(i >= 0 && j > i, 'docs/configuration.md lacks the reference markers');
  assert.equal(doc.slice(i + begin.length, j), configReference(),
    'docs/configuration.md is out of date: regenerate with `node --import tsx src/config/reference.ts`');
});
