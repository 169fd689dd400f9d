// Linked spans for the export tests and benchmark: a realistic span with every field set.
import type { LinkedSpan } from '../span/span.js';

let counter = 0;

function hex(n: bigint, digits: number): string {
  return n.toString(16).padStart(digits, '0').slice(-digits);
}

/** A server (entry) span of `users` answering 200, unique ids per call; override anything. */
export function makeSpan(over: Partial<LinkedSpan> = {}): LinkedSpan {
  const n = ++counter;
  return {
    host: 'web-1',
    kind: 'entry',
    reqSeq: 3735928559,
    respSeq: 16909060,
    threadGroup: '8812345678901234567',
    pid: 4242,
    tid: 4243,
    startUs: 1732500000000000 + n,
    durationUs: 1500,
    service: 'users',
    processName: 'node',
    srcIp: '10.0.0.2',
    srcPort: 8080,
    dstIp: '10.0.0.1',
    dstPort: 51234,
    resource: 'GET /users/{id}',
    operation: 'HTTP',
    status: 'ok',
    httpMethod: 'GET',
    httpRoute: '/users/{id}',
    httpStatusCode: 200,
    appTraceId: '',
    appParentId: '',
    appSampled: 0,
    attrs: { http_version: '1.1', bytes_read: 312, bytes_written: 1024, thread_name: 'main' },
    traceId: hex(0x4bf92f3577b34da6a3ce929d0e0e4736n + BigInt(n), 32),
    spanId: hex(0x00f067aa0ba902b7n + BigInt(n), 16),
    parentId: '',
    ebpfTraceId: hex(0x0af7651916cd43dd8448eb211c80319cn + BigInt(n), 32),
    late: false,
    ...over,
  };
}
