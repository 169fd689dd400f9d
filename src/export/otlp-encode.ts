// Encoding an export request: OTLP/HTTP protobuf (default) or OTLP/JSON.
//
// Protobuf is written straight from the LinkedSpans with protobufjs's Writer: building the
// message as objects first and letting protobufjs encode them ran at ~110k spans/s on one core
// here, all of the linker's budget at sampling rate 1; writing directly allocates nothing per
// attribute (see docs/export.md for the figures). Field numbers and wire types are not typed in
// here: they are read from the vendored official .proto files at load, which also checks that
// every field still has the type this writer assumes. The tests decode its output with those
// definitions and compare it with protobufjs's own encoding of `toExportRequest`.
import protobuf from 'protobufjs';
import type { AttrValue, LinkedSpan } from '../span/span.js';
import { otlpTypes } from './proto.js';
import {
  endUs, errorType, resourceKey, SCOPE_NAME, SCOPE_VERSION, spanFlags, spanName, SPAN_KIND_CLIENT,
  SPAN_KIND_SERVER, STATUS_CODE_ERROR, toExportRequest, visitSpanAttributes,
} from './otlp.js';

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export const CONTENT_TYPE = { 'http/protobuf': 'application/x-protobuf', 'http/json': 'application/json' } as const;

const WIRE = { varint: 0, fixed64: 1, ldelim: 2, fixed32: 5 } as const;
const WIRE_OF: Record<string, number> = {
  string: WIRE.ldelim, bytes: WIRE.ldelim, bool: WIRE.varint, int64: WIRE.varint, uint32: WIRE.varint,
  double: WIRE.fixed64, fixed64: WIRE.fixed64, fixed32: WIRE.fixed32,
};

/** The tag (field number and wire type) of `type.field`, checked against the .proto. */
function tag(root: protobuf.Root, typeName: string, fieldName: string, expect: string): number {
  const type = root.lookupType(typeName);
  const field = type.fields[fieldName];
  if (!field) throw new Error(`OTLP proto: ${typeName} has no field ${fieldName}`);
  field.resolve();
  const actual = field.resolvedType ? (field.resolvedType instanceof protobuf.Enum ? 'enum' : 'message') : field.type;
  if (actual !== expect) throw new Error(`OTLP proto: ${typeName}.${fieldName} is ${actual}, the writer expects ${expect}`);
  const wire = expect === 'message' ? WIRE.ldelim : expect === 'enum' ? WIRE.varint : WIRE_OF[expect];
  return ((field.id << 3) | wire) >>> 0;
}

interface Tags {
  reqResourceSpans: number;
  rsResource: number; rsScopeSpans: number;
  resAttributes: number;
  ssScope: number; ssSpans: number;
  scopeName: number; scopeVersion: number;
  kvKey: number; kvValue: number;
  avString: number; avBool: number; avInt: number; avDouble: number;
  spTraceId: number; spSpanId: number; spParentSpanId: number; spFlags: number; spName: number; spKind: number;
  spStart: number; spEnd: number; spAttributes: number; spStatus: number;
  stCode: number;
}

let tags: Tags | undefined;

function loadTags(): Tags {
  const { root } = otlpTypes();
  const P = 'opentelemetry.proto.';
  const T = (t: string, f: string, e: string) => tag(root, P + t, f, e);
  return {
    reqResourceSpans: T('collector.trace.v1.ExportTraceServiceRequest', 'resourceSpans', 'message'),
    rsResource: T('trace.v1.ResourceSpans', 'resource', 'message'),
    rsScopeSpans: T('trace.v1.ResourceSpans', 'scopeSpans', 'message'),
    resAttributes: T('resource.v1.Resource', 'attributes', 'message'),
    ssScope: T('trace.v1.ScopeSpans', 'scope', 'message'),
    ssSpans: T('trace.v1.ScopeSpans', 'spans', 'message'),
    scopeName: T('common.v1.InstrumentationScope', 'name', 'string'),
    scopeVersion: T('common.v1.InstrumentationScope', 'version', 'string'),
    kvKey: T('common.v1.KeyValue', 'key', 'string'),
    kvValue: T('common.v1.KeyValue', 'value', 'message'),
    avString: T('common.v1.AnyValue', 'stringValue', 'string'),
    avBool: T('common.v1.AnyValue', 'boolValue', 'bool'),
    avInt: T('common.v1.AnyValue', 'intValue', 'int64'),
    avDouble: T('common.v1.AnyValue', 'doubleValue', 'double'),
    spTraceId: T('trace.v1.Span', 'traceId', 'bytes'),
    spSpanId: T('trace.v1.Span', 'spanId', 'bytes'),
    spParentSpanId: T('trace.v1.Span', 'parentSpanId', 'bytes'),
    spFlags: T('trace.v1.Span', 'flags', 'fixed32'),
    spName: T('trace.v1.Span', 'name', 'string'),
    spKind: T('trace.v1.Span', 'kind', 'enum'),
    spStart: T('trace.v1.Span', 'startTimeUnixNano', 'fixed64'),
    spEnd: T('trace.v1.Span', 'endTimeUnixNano', 'fixed64'),
    spAttributes: T('trace.v1.Span', 'attributes', 'message'),
    spStatus: T('trace.v1.Span', 'status', 'message'),
    stCode: T('trace.v1.Status', 'code', 'enum'),
  };
}

const HEX: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < 10; i++) t[48 + i] = i;
  for (let i = 0; i < 6; i++) t[97 + i] = t[65 + i] = 10 + i;
  return t;
})();

/** Parses exactly `out.length` bytes of hex into `out`; false when `hex` is not that. */
function parseHex(hex: string, out: Uint8Array): boolean {
  if (hex.length !== out.length * 2) return false;
  for (let i = 0; i < out.length; i++) {
    const a = hex.charCodeAt(2 * i), b = hex.charCodeAt(2 * i + 1);
    const hi = a < 128 ? HEX[a] : -1, lo = b < 128 ? HEX[b] : -1;
    if (hi < 0 || lo < 0) return false;
    out[i] = (hi << 4) | lo;
  }
  return true;
}

const traceIdBuf = new Uint8Array(16);
const spanIdBuf = new Uint8Array(8);
const parentIdBuf = new Uint8Array(8);

/** Writes µs since the epoch as fixed64 nanoseconds, exactly (us < 2^53; each half × 1000 is exact). */
function writeNanos(w: protobuf.Writer, us: number): void {
  us = Math.trunc(us);
  const hiUs = Math.floor(us / 4294967296);
  const loNs = (us - hiUs * 4294967296) * 1000;
  const carry = Math.floor(loNs / 4294967296);
  w.fixed32(loNs - carry * 4294967296).fixed32(hiUs * 1000 + carry);
}

// The writer the attribute visitor writes to; module-level so the visitor is one function
// allocated once, not a closure per span.
let out: protobuf.Writer;
let t: Tags;

function writeAttr(key: string, v: AttrValue): void {
  const w = out;
  w.uint32(t.spAttributes).fork();
  w.uint32(t.kvKey).string(key);
  w.uint32(t.kvValue).fork();
  switch (typeof v) {
    case 'string':
      w.uint32(t.avString).string(v);
      break;
    case 'boolean':
      w.uint32(t.avBool).bool(v);
      break;
    default:
      // A number beyond 2^53 was already rounded when it became a JS number: a double is honest.
      if (Number.isSafeInteger(v)) w.uint32(t.avInt).int64(v);
      else w.uint32(t.avDouble).double(v);
  }
  w.ldelim().ldelim();
}

function writeResourceAttr(w: protobuf.Writer, key: string, v: string | number): void {
  w.uint32(t.resAttributes).fork();
  w.uint32(t.kvKey).string(key);
  w.uint32(t.kvValue).fork();
  if (typeof v === 'string') w.uint32(t.avString).string(v);
  else w.uint32(t.avInt).int64(v);
  w.ldelim().ldelim();
}

export interface EncodeResult {
  body: Uint8Array;
  /** Spans left out because an id is not valid hex of the right length (counted by the caller). */
  invalid: number;
}

/**
 * ExportTraceServiceRequest as protobuf: one ResourceSpans per (service, host, pid), each with
 * one ScopeSpans of scope `seqtrace`. A span whose ids are not valid hex is left out rather
 * than sent: a collector would reject the whole request for it.
 */
export function encodeProtobufRequest(spans: readonly LinkedSpan[]): EncodeResult {
  t = tags ??= loadTags();
  const w = (out = protobuf.Writer.create());
  // Group by resource keeping first-seen order; most batches hold a few processes.
  const groups = new Map<string, LinkedSpan[]>();
  for (const span of spans) {
    const key = resourceKey(span);
    const g = groups.get(key);
    if (g) g.push(span);
    else groups.set(key, [span]);
  }
  let invalid = 0;
  for (const group of groups.values()) {
    const first = group[0];
    w.uint32(t.reqResourceSpans).fork();
    w.uint32(t.rsResource).fork();
    writeResourceAttr(w, 'service.name', first.service || 'unknown_service');
    writeResourceAttr(w, 'host.name', first.host);
    writeResourceAttr(w, 'process.pid', first.pid);
    if (first.processName) writeResourceAttr(w, 'process.executable.name', first.processName);
    w.ldelim();
    w.uint32(t.rsScopeSpans).fork();
    w.uint32(t.ssScope).fork().uint32(t.scopeName).string(SCOPE_NAME);
    if (SCOPE_VERSION) w.uint32(t.scopeVersion).string(SCOPE_VERSION);
    w.ldelim();
    for (const span of group) {
      if (!parseHex(span.traceId, traceIdBuf) || !parseHex(span.spanId, spanIdBuf)
        || (span.parentId !== '' && !parseHex(span.parentId, parentIdBuf))) {
        invalid++;
        continue;
      }
      w.uint32(t.ssSpans).fork();
      w.uint32(t.spTraceId).bytes(traceIdBuf);
      w.uint32(t.spSpanId).bytes(spanIdBuf);
      if (span.parentId !== '') w.uint32(t.spParentSpanId).bytes(parentIdBuf);
      w.uint32(t.spName).string(spanName(span));
      w.uint32(t.spKind).uint32(span.kind === 'entry' ? SPAN_KIND_SERVER : SPAN_KIND_CLIENT);
      w.uint32(t.spStart);
      writeNanos(w, span.startUs);
      w.uint32(t.spEnd);
      writeNanos(w, endUs(span));
      visitSpanAttributes(span, writeAttr);
      if (errorType(span)) w.uint32(t.spStatus).fork().uint32(t.stCode).uint32(STATUS_CODE_ERROR).ldelim();
      w.uint32(t.spFlags).fixed32(spanFlags(span));
      w.ldelim();
    }
    w.ldelim().ldelim();
  }
  return { body: w.finish(), invalid };
}

const HEX_ID = { 32: /^[0-9a-f]{32}$/i, 16: /^[0-9a-f]{16}$/i } as const;

/** The spans whose ids are valid hex (the same rule as the protobuf writer). */
function validIds(spans: readonly LinkedSpan[]): LinkedSpan[] {
  return spans.filter((s) => HEX_ID[32].test(s.traceId) && HEX_ID[16].test(s.spanId) && (s.parentId === '' || HEX_ID[16].test(s.parentId)));
}

/** OTLP/JSON body: lowerCamelCase names, hex ids, enums as integers, 64-bit integers as strings. */
export function encodeJsonRequest(spans: readonly LinkedSpan[]): { body: string; invalid: number } {
  const ok = validIds(spans);
  return { body: JSON.stringify(toExportRequest(ok, 'json')), invalid: spans.length - ok.length };
}

export function encodeRequest(spans: readonly LinkedSpan[], protocol: OtlpProtocol): { body: Uint8Array | string; invalid: number } {
  return protocol === 'http/json' ? encodeJsonRequest(spans) : encodeProtobufRequest(spans);
}

/** Decodes an ExportTraceServiceResponse body; partial success says how many spans the endpoint rejected. */
export function decodeExportResponse(body: Uint8Array, contentType: string): { rejectedSpans: number; errorMessage: string } {
  if (body.length === 0) return { rejectedSpans: 0, errorMessage: '' };
  let ps: { rejectedSpans?: unknown; errorMessage?: unknown } | undefined;
  if (/json/i.test(contentType)) {
    ps = (JSON.parse(Buffer.from(body).toString('utf8')) as { partialSuccess?: typeof ps }).partialSuccess;
  } else if (/protobuf/i.test(contentType)) {
    const msg = otlpTypes().ExportTraceServiceResponse.decode(body);
    ps = otlpTypes().ExportTraceServiceResponse.toObject(msg, { longs: Number }).partialSuccess;
  }
  return { rejectedSpans: Number(ps?.rejectedSpans ?? 0) || 0, errorMessage: typeof ps?.errorMessage === 'string' ? ps.errorMessage : '' };
}
