import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTraceContext, toDatadogId, redactHeader, isSecretHeader } from './tracecontext.js';
import { createParser, BODY_FRAMED, type HttpMessage } from './http/parser.js';

const T128 = '0af7651916cd43dd8448eb211c80319c';
const S64 = 'b7ad6b7169203331';

test('formats, validity and sampling', async (t) => {
  const cases: { name: string; h: Record<string, string>; want: null | { traceId: string; parentId: string; sampled: 1 | 0 | -1; format?: string }; invalid?: number }[] = [
    { name: 'w3c sampled', h: { traceparent: `00-${T128}-${S64}-01` }, want: { traceId: T128, parentId: S64, sampled: 1, format: 'w3c' } },
    { name: 'w3c not sampled (flags 00, not "0")', h: { traceparent: `00-${T128}-${S64}-00` }, want: { traceId: T128, parentId: S64, sampled: -1 } },
    { name: 'w3c upper case normalised', h: { traceparent: `00-${T128.toUpperCase()}-${S64}-01` }, want: { traceId: T128, parentId: S64, sampled: 1 } },
    { name: 'w3c all-zero trace id invalid', h: { traceparent: `00-${'0'.repeat(32)}-${S64}-01` }, want: null, invalid: 1 },
    { name: 'w3c future version with more fields', h: { traceparent: `01-${T128}-${S64}-01-what-ever` }, want: { traceId: T128, parentId: S64, sampled: 1 } },
    { name: 'w3c version 00 with more fields invalid', h: { traceparent: `00-${T128}-${S64}-01-x` }, want: null, invalid: 1 },
    { name: 'w3c version ff invalid', h: { traceparent: `ff-${T128}-${S64}-01` }, want: null, invalid: 1 },
    { name: 'w3c short id invalid, b3 used', h: { traceparent: `00-abc-${S64}-01`, b3: `${T128}-${S64}-1` }, want: { traceId: T128, parentId: S64, sampled: 1, format: 'b3' }, invalid: 1 },
    { name: 'b3 single 64-bit, deny', h: { b3: `${S64}-${S64}-0` }, want: { traceId: S64, parentId: S64, sampled: -1 } },
    { name: 'b3 single with parent, debug', h: { b3: `${T128}-${S64}-d-${S64}` }, want: { traceId: T128, parentId: S64, sampled: 1 } },
    { name: 'b3 single without decision', h: { b3: `${T128}-${S64}` }, want: { traceId: T128, parentId: S64, sampled: 0 } },
    { name: 'b3 sampling only', h: { b3: '0' }, want: { traceId: '', parentId: '', sampled: -1 } },
    { name: 'b3 multi', h: { xB3TraceId: T128, xB3SpanId: S64, xB3Sampled: '1' }, want: { traceId: T128, parentId: S64, sampled: 1, format: 'b3multi' } },
    { name: 'b3 multi flags debug', h: { xB3TraceId: S64, xB3SpanId: S64, xB3Flags: '1' }, want: { traceId: S64, parentId: S64, sampled: 1 } },
    { name: 'b3 multi bad sampled', h: { xB3TraceId: S64, xB3SpanId: S64, xB3Sampled: 'maybe' }, want: null, invalid: 1 },
    { name: 'jaeger, short id padded', h: { uberTraceId: 'abc:def:0:1' }, want: { traceId: '0000000000000abc', parentId: '0000000000000def', sampled: 1, format: 'jaeger' } },
    { name: 'jaeger url-encoded, not sampled', h: { uberTraceId: `${T128}%3A${S64}%3A0%3A0` }, want: { traceId: T128, parentId: S64, sampled: -1 } },
    { name: 'datadog', h: { ddTraceId: '1234567890123456789', ddParentId: '42', ddSamplingPriority: '2' }, want: { traceId: '1234567890123456789', parentId: '42', sampled: 1, format: 'datadog' } },
    { name: 'datadog reject priority', h: { ddTraceId: '7', ddSamplingPriority: '-1' }, want: { traceId: '7', parentId: '', sampled: -1 } },
    { name: 'datadog over 64 bits invalid', h: { ddTraceId: '99999999999999999999' }, want: null, invalid: 1 },
    { name: 'sw8', h: { sw8: `1-${b64('trace-1')}-${b64('seg-9')}-3-${b64('svc')}-${b64('inst')}-${b64('/x')}-${b64('h:1')}` }, want: { traceId: 'trace-1', parentId: 'seg-9-3', sampled: 1, format: 'sw8' } },
    { name: 'sw8 malformed', h: { sw8: '1-xx' }, want: null, invalid: 1 },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const stats = { invalid: 0 };
      const got = parseTraceContext(c.h, false, stats);
      if (c.want === null) assert.equal(got, null);
      else {
        assert.ok(got);
        assert.equal(got.traceId, c.want.traceId);
        assert.equal(got.parentId, c.want.parentId);
        assert.equal(got.sampled, c.want.sampled);
        if (c.want.format) assert.equal(got.format, c.want.format);
      }
      assert.equal(stats.invalid, c.invalid ?? 0);
    });
  }
});

function b64(s: string): string {
  return Buffer.from(s).toString('base64');
}

test('conv_to_ddtrace: low 64 bits in base 10', () => {
  assert.equal(toDatadogId(T128), (BigInt('0x' + T128) & ((1n << 64n) - 1n)).toString());
  assert.equal(toDatadogId('8448eb211c80319c'), BigInt('0x8448eb211c80319c').toString());
  const got = parseTraceContext({ traceparent: `00-${T128}-${S64}-01` }, true, { invalid: 0 });
  assert.equal(got!.traceId, '9532127138774266268');
  assert.equal(got!.parentId, BigInt('0x' + S64).toString());
  // Datadog ids are already decimal and stay as they are.
  assert.equal(parseTraceContext({ ddTraceId: '42' }, true, { invalid: 0 })!.traceId, '42');
});

test('tracestate travels with a valid traceparent', () => {
  const got = parseTraceContext({ traceparent: `00-${T128}-${S64}-01`, tracestate: 'dd=s:1, congo=t61' }, false, { invalid: 0 });
  assert.equal(got!.traceState, 'dd=s:1, congo=t61');
});

test('secret headers are redacted and never reach the parsed message', () => {
  for (const h of ['Authorization', 'proxy-authorization', 'Cookie', 'SET-COOKIE', 'X-Api-Key', 'X-Auth-Token']) {
    assert.ok(isSecretHeader(h), h);
    assert.equal(redactHeader(h, 'v'), '[redacted]');
  }
  assert.equal(redactHeader('Accept', 'text/html'), 'text/html');
  const ends: HttpMessage[] = [];
  const p = createParser(true, { onHead: () => BODY_FRAMED, onEnd: (m) => ends.push(m) });
  const req = Buffer.from('GET / HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nCookie: sid=s3cret\r\nb3: 0\r\n\r\n');
  p.feed({ seq: 1, len: req.length, head: req, tail: Buffer.alloc(0), tsNs: 1 });
  assert.equal(ends.length, 1);
  assert.doesNotMatch(JSON.stringify(ends[0]), /s3cret/);
  assert.deepEqual(ends[0].trace, { b3: "0" });
});
