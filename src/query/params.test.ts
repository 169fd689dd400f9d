import assert from 'node:assert/strict';
import { it } from 'node:test';
import { SeqError } from '../errors.js';
import { parseDurationUs, parseLimit, parseTimeUs, parseTraceId } from './params.js';

it('durations: plain µs or with a unit', () => {
  assert.equal(parseDurationUs('d', '1500'), 1500);
  assert.equal(parseDurationUs('d', '200us'), 200);
  assert.equal(parseDurationUs('d', '200µs'), 200);
  assert.equal(parseDurationUs('d', '1.5ms'), 1500);
  assert.equal(parseDurationUs('d', '2s'), 2_000_000);
  assert.equal(parseDurationUs('d', '0.25s'), 250_000);
  assert.equal(parseDurationUs('d', '1m'), 60_000_000);
  for (const bad of ['', 'ms', '1h', '-1', '1e3', '1.5 days', '9'.repeat(20)]) {
    assert.throws(() => parseDurationUs('minDuration', bad), (e: SeqError) => e.code === 'SEQ_ERR_BAD_QUERY' && e.status === 400 && e.message.startsWith(`minDuration = ${JSON.stringify(bad)}`));
  }
});

it('times: µs since the epoch or RFC 3339 down to µs', () => {
  assert.equal(parseTimeUs('t', '1732500000000000'), 1_732_500_000_000_000);
  assert.equal(parseTimeUs('t', '2024-11-25T02:00:00Z'), 1_732_500_000_000_000);
  assert.equal(parseTimeUs('t', '2024-11-25T02:00:00.5Z'), 1_732_500_000_500_000);
  assert.equal(parseTimeUs('t', '2024-11-25T02:00:00.123456789Z'), 1_732_500_000_123_456);
  assert.equal(parseTimeUs('t', '2024-11-25t03:30:00.000001+01:30'), 1_732_500_000_000_001);
  assert.equal(parseTimeUs('t', '2024-11-25 02:00:00-00:00'), 1_732_500_000_000_000);
  for (const bad of ['', 'now', '2024-11-25', '2024-11-25T02:00:00', '2024-13-45T02:00:00Z', '17325000000000000000']) {
    assert.throws(() => parseTimeUs('start', bad), (e: SeqError) => e.code === 'SEQ_ERR_BAD_QUERY' && e.message.startsWith(`start = ${JSON.stringify(bad)}`));
  }
});

it('limit and trace ids', () => {
  assert.equal(parseLimit('1'), 1);
  assert.equal(parseLimit('1000'), 1000);
  for (const bad of ['0', '1001', '2.5', 'x', '']) assert.throws(() => parseLimit(bad), /limit = /);
  assert.equal(parseTraceId('4BF92F3577B34DA6A3CE929D0E0E4736'), '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(parseTraceId('00f067aa0ba902b7'), '000000000000000000f067aa0ba902b7');
  for (const bad of ['', 'xyz', 'a'.repeat(33), '12-34']) assert.throws(() => parseTraceId(bad), /traceId = /);
});
