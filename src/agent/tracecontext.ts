// Application trace context from request headers (values collected by the HTTP parser, whose
// header-name match is case-insensitive). Formats, in order of preference: W3C traceparent,
// B3 single, B3 multi, Jaeger uber-trace-id, Datadog, SkyWalking sw8. An invalid value is
// ignored (counted) and the next format is tried. 128-bit ids are kept whole.
//
// Only these trace headers ever leave the host. Secret headers (see SECRET_HEADERS) are never
// read into spans; any future header capture must pass through redactHeader().
import type { TraceHeaders } from './http/parser.js';

export interface AppTraceContext {
  /** Hex (W3C, B3, Jaeger), decimal (Datadog, or any with conv_to_ddtrace), or SkyWalking's own id. */
  traceId: string;
  parentId: string;
  /** 1 keep, -1 drop, 0 no decision. */
  sampled: 1 | 0 | -1;
  /** tracestate, when present with a valid traceparent. */
  traceState: string;
  format: 'w3c' | 'b3' | 'b3multi' | 'jaeger' | 'datadog' | 'sw8';
}

export interface TraceContextStats {
  /** Header values that were present but malformed. */
  invalid: number;
}

const HEX = /^[0-9a-f]+$/;
const DEC = /^[0-9]{1,20}$/;
const ZERO = /^0+$/;
const U64_MASK = (1n << 64n) - 1n;

function hexId(v: string | undefined, ...lengths: number[]): string | null {
  if (v === undefined) return null;
  const s = v.trim().toLowerCase();
  if (!lengths.includes(s.length) || !HEX.test(s) || ZERO.test(s)) return null;
  return s;
}

function w3c(h: TraceHeaders): AppTraceContext | null {
  // version-traceid-parentid-flags: fixed positions; future versions may append "-…".
  const v = h.traceparent!.trim().toLowerCase();
  if (v.length < 55 || v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45 || v.charCodeAt(52) !== 45) return null;
  const version = v.slice(0, 2);
  if (!HEX.test(version) || version === 'ff' || (version === '00' ? v.length !== 55 : v.length > 55 && v.charCodeAt(55) !== 45)) return null;
  const traceId = v.slice(3, 35);
  const parentId = v.slice(36, 52);
  const flags = v.slice(53, 55);
  if (!HEX.test(traceId) || !HEX.test(parentId) || !HEX.test(flags) || ZERO.test(traceId) || ZERO.test(parentId)) return null;
  return { traceId, parentId, sampled: parseInt(flags, 16) & 1 ? 1 : -1, traceState: h.tracestate?.trim() ?? '', format: 'w3c' };
}

function b3Sampled(s: string | undefined, flags?: string): 1 | 0 | -1 | null {
  if (flags !== undefined && flags.trim() === '1') return 1; // debug implies keep
  if (s === undefined) return 0;
  const v = s.trim().toLowerCase();
  if (v === '1' || v === 'd' || v === 'true') return 1;
  if (v === '0' || v === 'false') return -1;
  return null;
}

function b3Single(h: TraceHeaders): AppTraceContext | null {
  const v = h.b3!.trim();
  const parts = v.split('-');
  if (parts.length === 1) {
    // Sampling decision only ("0", "1", "d").
    const s = b3Sampled(parts[0]);
    return s === null || s === 0 ? null : { traceId: '', parentId: '', sampled: s, traceState: '', format: 'b3' };
  }
  const traceId = hexId(parts[0], 16, 32);
  const spanId = hexId(parts[1], 16);
  if (!traceId || !spanId || parts.length > 4) return null;
  const s = b3Sampled(parts[2]);
  if (s === null) return null;
  if (parts[3] !== undefined && !hexId(parts[3], 16)) return null;
  return { traceId, parentId: spanId, sampled: s, traceState: '', format: 'b3' };
}

function b3Multi(h: TraceHeaders): AppTraceContext | null {
  const traceId = hexId(h.xB3TraceId, 16, 32);
  const spanId = hexId(h.xB3SpanId, 16);
  const s = b3Sampled(h.xB3Sampled, h.xB3Flags);
  if (!traceId || !spanId || s === null) return null;
  return { traceId, parentId: spanId, sampled: s, traceState: '', format: 'b3multi' };
}

function jaeger(h: TraceHeaders): AppTraceContext | null {
  const v = h.uberTraceId!.trim().replace(/%3a/gi, ':').toLowerCase();
  const parts = v.split(':');
  if (parts.length !== 4) return null;
  // Jaeger drops leading zeros: pad to 16 or 32 digits.
  const [t, s, , f] = parts;
  if (t.length === 0 || t.length > 32 || s.length === 0 || s.length > 16) return null;
  const traceId = hexId(t.padStart(t.length > 16 ? 32 : 16, '0'), 16, 32);
  const spanId = hexId(s.padStart(16, '0'), 16);
  if (!traceId || !spanId || !HEX.test(f) || f.length > 2) return null;
  return { traceId, parentId: spanId, sampled: parseInt(f, 16) & 1 ? 1 : -1, traceState: '', format: 'jaeger' };
}

function datadog(h: TraceHeaders): AppTraceContext | null {
  const t = h.ddTraceId!.trim();
  const p = h.ddParentId?.trim() ?? '';
  if (!DEC.test(t) || ZERO.test(t) || BigInt(t) > U64_MASK) return null;
  if (p !== '' && (!DEC.test(p) || BigInt(p) > U64_MASK)) return null;
  let sampled: 1 | 0 | -1 = 0;
  if (h.ddSamplingPriority !== undefined) {
    const n = Number(h.ddSamplingPriority.trim());
    if (!Number.isInteger(n)) return null;
    sampled = n > 0 ? 1 : -1;
  }
  return { traceId: BigInt(t).toString(), parentId: p === '' ? '' : BigInt(p).toString(), sampled, traceState: '', format: 'datadog' };
}

function sw8(h: TraceHeaders): AppTraceContext | null {
  // sample-traceId-segmentId-spanId-service-instance-endpoint-target, ids base64.
  const parts = h.sw8!.trim().split('-');
  if (parts.length !== 8 || (parts[0] !== '0' && parts[0] !== '1') || !/^\d+$/.test(parts[3])) return null;
  const traceId = b64(parts[1]);
  const segment = b64(parts[2]);
  if (!traceId || !segment) return null;
  return { traceId, parentId: `${segment}-${parts[3]}`, sampled: parts[0] === '1' ? 1 : -1, traceState: '', format: 'sw8' };
}

function b64(s: string): string | null {
  if (!/^[A-Za-z0-9+/]+=*$/.test(s)) return null;
  const out = Buffer.from(s, 'base64').toString('utf8');
  return out.length > 0 && /^[\x21-\x7e]+$/.test(out) ? out : null;
}

/** Datadog form: the low 64 bits in base 10. Ids that are not hex are returned unchanged. */
export function toDatadogId(id: string): string {
  if (id === '' || !HEX.test(id) || id.length > 32) return id;
  return (BigInt('0x' + id) & U64_MASK).toString();
}

export function parseTraceContext(h: TraceHeaders | null, convToDdtrace: boolean, stats: TraceContextStats): AppTraceContext | null {
  if (!h) return null;
  let ctx: AppTraceContext | null = null;
  const tries: [unknown, (h: TraceHeaders) => AppTraceContext | null][] = [
    [h.traceparent, w3c], [h.b3, b3Single], [h.xB3TraceId ?? h.xB3SpanId, b3Multi],
    [h.uberTraceId, jaeger], [h.ddTraceId, datadog], [h.sw8, sw8],
  ];
  for (const [present, parse] of tries) {
    if (present === undefined) continue;
    ctx = parse(h);
    if (ctx) break;
    stats.invalid++;
  }
  if (ctx && convToDdtrace && ctx.format !== 'datadog') {
    ctx.traceId = toDatadogId(ctx.traceId);
    ctx.parentId = toDatadogId(ctx.parentId);
  }
  return ctx;
}

/** Headers whose values are secrets: never sent off the host. */
export const SECRET_HEADERS = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key', 'api-key', 'x-auth-token',
  'x-csrf-token', 'x-xsrf-token', 'x-amz-security-token', 'x-goog-api-key', 'x-access-token',
]);

export function isSecretHeader(name: string): boolean {
  const n = name.trim().toLowerCase();
  return SECRET_HEADERS.has(n) || n.includes('token') || n.includes('secret') || n.includes('password');
}

/** The value to keep for a header if headers are ever captured: secrets become `[redacted]`. */
export function redactHeader(name: string, value: string): string {
  return isSecretHeader(name) ? '[redacted]' : value;
}
