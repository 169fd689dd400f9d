import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS, SeqError, seqError } from './errors.js';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');

test('docs/errors.md has one "## SEQ_ERR_X" section per code of src/errors.ts, and no other', () => {
  const documented = [...doc.matchAll(/^## (\S+)\s*$/gm)].map((m) => m[1]);
  const registered = Object.keys(ERRORS);
  const dupes = documented.filter((c, i) => documented.indexOf(c) !== i);
  assert.deepEqual(dupes, [], 'codes documented twice');
  assert.deepEqual(registered.filter((c) => !documented.includes(c)), [], 'codes in src/errors.ts without a section in docs/errors.md');
  assert.deepEqual(documented.filter((c) => !registered.includes(c)), [], 'sections in docs/errors.md without a code in src/errors.ts');
});

test('every documented code says something', () => {
  for (const part of doc.split(/^## /m).slice(1)) {
    const [code, ...body] = part.split('\n');
    assert.ok(body.join(' ').trim().length > 40, `section ${code} is empty`);
  }
});

test('SeqError carries code and status', () => {
  const e = seqError('SEQ_ERR_NOT_FOUND', 'trace abc not found', 404);
  assert.ok(e instanceof SeqError);
  assert.equal(e.code, 'SEQ_ERR_NOT_FOUND');
  assert.equal(e.status, 404);
  assert.equal(seqError('SEQ_ERR_STORAGE', 'x').status, 500);
});
