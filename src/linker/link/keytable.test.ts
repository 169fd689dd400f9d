import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyTable } from './keytable.js';
import { rng } from '../fixtures.js';

test('KeyTable agrees with a Map over random sets, gets and deletes, with colliding keys and growth', () => {
  const r = rng(3);
  for (const keyRange of [64, 5000, 0x3fffffff]) {
    const t = new KeyTable();
    const m = new Map<number, number>();
    for (let op = 0; op < 200_000; op++) {
      // keys sharing low bits collide in the same probe runs (wrapping around the end too)
      const key = keyRange === 64 ? Math.floor(r() * 64) * 1024 + (op % 3 === 0 ? 1023 : 0) : Math.floor(r() * keyRange);
      const what = r();
      if (what < 0.45) {
        t.set(key, op * 10_000 - 2 ** 30); // the whole int32 range
        m.set(key, op * 10_000 - 2 ** 30);
      } else if (what < 0.8) assert.equal(t.delete(key), m.delete(key), `delete ${key}`);
      else assert.equal(t.get(key, -7), m.get(key) ?? -7, `get ${key}`);
      if (op % 20_000 === 0) {
        assert.equal(t.size, m.size);
        for (const [k, v] of m) assert.equal(t.get(k, -7), v, `after ${op} ops, key ${k}`);
      }
    }
    assert.equal(t.size, m.size);
    for (const [k, v] of m) assert.equal(t.get(k, -7), v);
    for (const k of [...m.keys()]) assert.equal(t.delete(k), true);
    assert.equal(t.size, 0);
  }
  assert.throws(() => new KeyTable().set(-1, 0), /non-negative/);
  assert.throws(() => new KeyTable().set(1, 2 ** 31), /int32/);
});
