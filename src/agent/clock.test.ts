import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clockOffsetNs, createClock, type ClockSources } from './clock.js';

test('clock: monotonic nanoseconds become epoch microseconds', () => {
  const c = createClock();
  const now = c.epochUs(Number(process.hrtime.bigint()));
  assert.ok(Math.abs(now - Date.now() * 1000) < 5000, `${now} vs ${Date.now() * 1000}`);
});

/**
 * Two simulated clocks on one timeline (ns): the monotonic one, and a wall clock OFFSET ahead
 * that reads in whole milliseconds. Each read takes 100 ns; `pauses` maps the number of a wall
 * clock read to a pause just before it (the process descheduled between its reads).
 */
const OFFSET = 1_764_900_000_123_456_789n;
function simulated(pauses: Map<number, bigint> = new Map()): ClockSources & { reads: () => number } {
  let t = 5_000_000_000_250_000n;
  let realReads = 0;
  return {
    monoNs: () => { const v = t; t += 100n; return v; },
    realMs: () => {
      t += pauses.get(++realReads) ?? 0n;
      const v = Number((t + OFFSET) / 1_000_000n);
      t += 100n;
      return v;
    },
    reads: () => realReads,
  };
}

test('clock offset: read at a step of the wall clock, to within the time of a read', () => {
  const err = clockOffsetNs(simulated()) - OFFSET;
  assert.ok(err >= -200n && err <= 200n, `off by ${err} ns`);
});

test('clock offset: a pause between the reads around the step does not move it (it was 4 ms once)', () => {
  // The first step is seen at the 979th read of the wall clock (293 µs in, 300 ns a loop): a
  // 4 ms pause just before a read of the wall clock makes that read see a later millisecond
  // while the monotonic read before it is old. Before the first read that waits for a step,
  // midway, and at and around the step.
  for (const at of [2, 500, 978, 979, 980]) {
    const err = clockOffsetNs(simulated(new Map([[at, 4_000_000n]]))) - OFFSET;
    assert.ok(err >= -200n && err <= 200n, `pause before wall clock read ${at}: off by ${err} ns`);
  }
});

test('clock offset: pauses at every step: the narrowest window of a few steps is used, bounded', () => {
  const pauses = new Map<number, bigint>();
  for (let i = 1; i < 100_000; i++) pauses.set(i, i % 9 === 0 ? 600_000n : 0n); // often, up to 0.6 ms
  const src = simulated(pauses);
  const err = clockOffsetNs(src) - OFFSET;
  assert.ok(err >= -600_000n && err <= 600_000n, `off by ${err} ns`);
  assert.ok(src.reads() < 20_000, `${src.reads()} reads of the wall clock`);
});

test('clock offset: a wall clock that stands still gives the one reading there is, without hanging', () => {
  let t = 0n;
  const mono = 42_000_000n - clockOffsetNs({ monoNs: () => (t += 1000n), realMs: () => 42 });
  assert.ok(mono > 0n && mono <= t, `offset taken at monotonic ${mono}, reads went to ${t}`);
});
