import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from './registry.js';

test('metrics: counters, gauges, labels and collected values in Prometheus text', () => {
  const r = createRegistry();
  const spans = r.counter('seqtrace_spans_received_total', 'Spans received');
  const depth = r.gauge('seqtrace_queue_depth', 'Queue depth');
  let backlog = 7;
  r.collect('seqtrace_export_backlog', 'Spans not yet exported', 'gauge', () => backlog);
  r.collect('seqtrace_by_kind_total', 'By kind', 'counter', () => [[{ kind: 'entry' }, 2], [{ kind: 'e"x\\it' }, 3]]);
  spans.inc();
  spans.inc(4);
  spans.inc(2, { format: 'json' });
  depth.set(3);
  backlog = 9;
  assert.equal(spans.get(), 5);
  assert.equal(r.render(), [
    '# HELP seqtrace_spans_received_total Spans received',
    '# TYPE seqtrace_spans_received_total counter',
    'seqtrace_spans_received_total 5',
    'seqtrace_spans_received_total{format="json"} 2',
    '# HELP seqtrace_queue_depth Queue depth',
    '# TYPE seqtrace_queue_depth gauge',
    'seqtrace_queue_depth 3',
    '# HELP seqtrace_export_backlog Spans not yet exported',
    '# TYPE seqtrace_export_backlog gauge',
    'seqtrace_export_backlog 9',
    '# HELP seqtrace_by_kind_total By kind',
    '# TYPE seqtrace_by_kind_total counter',
    'seqtrace_by_kind_total{kind="entry"} 2',
    'seqtrace_by_kind_total{kind="e\\"x\\\\it"} 3',
    '',
  ].join('\n'));
});

test('metrics: bad names, duplicates and decreasing counters are refused; failing collectors read NaN', () => {
  const r = createRegistry();
  assert.throws(() => r.counter('bad-name', 'x'), /invalid metric name/);
  r.counter('a_total', 'x');
  assert.throws(() => r.gauge('a_total', 'x'), /registered twice/);
  assert.throws(() => r.counter('b_total', 'x').inc(-1), /cannot decrease/);
  r.collect('c', 'x', 'gauge', () => {
    throw new Error('boom');
  });
  assert.match(r.render(), /^c NaN$/m);
});
