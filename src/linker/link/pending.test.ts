// The span records' buffer: slots reused, records kept through a growth, and a reservation
// the system refuses (strict overcommit) falls back to a small buffer that grows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DW, FLAGS, GKEY, PendingSpans, START, W } from './pending.js';

test('records survive growth beyond the reservation; freed slots are handed out again', () => {
  const p = new PendingSpans(4);
  const slots: number[] = [];
  for (let i = 0; i < 100; i++) {
    const s = p.alloc();
    p.i32[s * W + GKEY] = i;
    p.f64[s * DW + START] = i * 1.5;
    slots.push(s);
  }
  assert.ok(p.cap >= 100);
  slots.forEach((s, i) => {
    assert.equal(p.i32[s * W + GKEY], i);
    assert.equal(p.f64[s * DW + START], i * 1.5);
  });
  p.free(slots[7]);
  assert.equal(p.used, 99);
  assert.equal(p.i32[slots[7] * W + FLAGS], 0);
  assert.equal(p.alloc(), slots[7], 'the freed slot first');
});

test('a reservation that cannot be had starts small', () => {
  const p = new PendingSpans(2 ** 40); // 128 TiB: refused
  assert.equal(p.cap, 65536);
  for (let i = 0; i < 70_000; i++) p.alloc();
  assert.ok(p.cap >= 70_000);
});
