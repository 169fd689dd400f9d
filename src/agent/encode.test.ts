import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeSpanLine } from './encode.js';
import { encodeSpans, decodeLineProtocol } from '../span/lineprotocol.js';
import { validatePoints } from '../span/validate.js';
import type { EbpfSpan } from '../span/span.js';

const base: EbpfSpan = {
  host: 'web-1', kind: 'entry', reqSeq: 3735928559, respSeq: 16909060, threadGroup: '8812345678901234567', pid: 4242, tid: 4243,
  startUs: 1732500000000000, durationUs: 1500, service: 'users', processName: 'python3', srcIp: '10.0.0.2', srcPort: 8080,
  dstIp: '10.0.0.1', dstPort: 51234, resource: 'GET /users/7', operation: 'HTTP', status: 'ok', httpMethod: 'GET',
  httpRoute: '/users/7', httpStatusCode: 200, appTraceId: '0af7651916cd43dd8448eb211c80319c', appParentId: 'b7ad6b7169203331',
  appSampled: 1, attrs: { http_version: '1.1', thread_name: 'worker-1', bytes_read: 120, bytes_written: 530, tid_usr: 7, truncated: true },
};

const decode = (text: string) => {
  const { points, errors } = decodeLineProtocol(text);
  assert.deepEqual(errors, []);
  const r = validatePoints(points, { maxFieldBytes: 8192 });
  assert.deepEqual(r.errors, []);
  return r.spans;
};

test('the agent encoder and the shared encoder produce the same spans', async (t) => {
  const cases: [string, Partial<EbpfSpan>][] = [
    ['full', {}],
    ['exit, no group, no trace', { kind: 'exit', threadGroup: '', appTraceId: '', appParentId: '', appSampled: 0 }],
    ['group above int64', { threadGroup: '18446744073709551615' }],
    ['group exactly int64 max', { threadGroup: '9223372036854775807' }],
    ['quotes and backslashes in strings', { resource: 'GET /a"b\\c', httpRoute: '/a"b\\c', service: 'svc "x"' }],
    ['host needing escapes', { host: 'web 1,a=b' }],
    ['IPv6, failed exchange', { srcIp: '::1', dstIp: 'fe80::1', status: 'error', httpStatusCode: 0, attrs: { response_incomplete: true } }],
    ['zero tid and ports', { tid: 0, srcPort: 0, dstPort: 0, processName: '' }],
  ];
  for (const [label, over] of cases) {
    await t.test(label, () => {
      const s = { ...base, ...over };
      const mine = encodeSpanLine(s);
      const shared = encodeSpans([s]);
      assert.deepEqual(decode(mine), decode(shared));
      assert.equal(mine, shared, 'byte for byte');
    });
  }
});
