// Compact encoding of spans in the database: a JSON array of the values in a fixed field
// order instead of an object. Half the bytes of keyed JSON and about half the CPU to write
// and read, on the ingest hot path (the spool) and the commit path. Changing the field
// lists changes the stored format: bump SCHEMA_VERSION (./sqlite-schema.ts) when you do.
import type { EbpfSpan, LinkedSpan } from '../span/span.js';
import type { RawBatch } from './store.js';

const EBPF_FIELDS = [
  'host', 'kind', 'reqSeq', 'respSeq', 'threadGroup', 'pid', 'tid', 'startUs', 'durationUs', 'service', 'processName',
  'srcIp', 'srcPort', 'dstIp', 'dstPort', 'resource', 'operation', 'status', 'httpMethod', 'httpRoute', 'httpStatusCode',
  'appTraceId', 'appParentId', 'appSampled', 'attrs',
] as const satisfies readonly (keyof EbpfSpan)[];

// A field added to EbpfSpan or LinkedSpan without being added above fails to compile here.
const everyEbpfField: [Exclude<keyof EbpfSpan, (typeof EBPF_FIELDS)[number]>] extends [never] ? true : false = true;
void everyEbpfField;

function encode(spans: readonly object[], fields: readonly string[]): string {
  const rows = new Array(spans.length);
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i] as Record<string, unknown>;
    const row = new Array(fields.length);
    for (let f = 0; f < fields.length; f++) row[f] = s[fields[f]];
    rows[i] = row;
  }
  return JSON.stringify(rows);
}

function decodeRow<T>(row: unknown[], fields: readonly string[]): T {
  const o: Record<string, unknown> = {};
  for (let f = 0; f < fields.length; f++) o[fields[f]] = row[f];
  return o as T;
}

export function encodeEbpfSpans(spans: readonly EbpfSpan[]): string {
  return encode(spans, EBPF_FIELDS);
}

export function decodeEbpfSpans(text: string): EbpfSpan[] {
  return (JSON.parse(text) as unknown[][]).map((r) => decodeRow<EbpfSpan>(r, EBPF_FIELDS));
}

/**
 * The spans of one trace stored by one commit (a chunk, one row of `chunks`): one JSON array,
 * `[traceId, ebpfTraceId, row, row, ...]`, each row the span's values in CHUNK_FIELDS order
 * (traceId and ebpfTraceId are the chunk's, stored once; a span whose ebpfTraceId differs has
 * it as a last extra value). One JSON.stringify per chunk of array literals: ~1 µs a span,
 * about half of encoding each span on its own (docs/storage.md).
 */
export function encodeChunk(traceId: string, spans: readonly LinkedSpan[]): string {
  const ebpfTraceId = spans.length > 0 ? spans[0].ebpfTraceId : traceId;
  const out: unknown[] = new Array(spans.length + 2);
  out[0] = traceId;
  out[1] = ebpfTraceId;
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i];
    const row: unknown[] = [
      s.host, s.kind, s.reqSeq, s.respSeq, s.threadGroup, s.pid, s.tid, s.startUs, s.durationUs, s.service, s.processName,
      s.srcIp, s.srcPort, s.dstIp, s.dstPort, s.resource, s.operation, s.status, s.httpMethod, s.httpRoute, s.httpStatusCode,
      s.appTraceId, s.appParentId, s.appSampled, s.attrs, s.spanId, s.parentId, s.late,
    ];
    if (s.ebpfTraceId !== ebpfTraceId) row.push(s.ebpfTraceId);
    if (s.traceId !== traceId) throw new Error(`span ${s.spanId} of trace ${s.traceId} in a chunk of trace ${traceId}`);
    out[i + 2] = row;
  }
  return JSON.stringify(out);
}

/** The spans of a chunk, in the order they were encoded. */
export function decodeChunk(text: string): LinkedSpan[] {
  const a = JSON.parse(text) as unknown[];
  const traceId = a[0] as string;
  const ebpfTraceId = a[1] as string;
  const spans: LinkedSpan[] = new Array(a.length - 2);
  for (let i = 2; i < a.length; i++) {
    const r = a[i] as any[]; // eslint-disable-line @typescript-eslint/no-explicit-any
    spans[i - 2] = {
      host: r[0], kind: r[1], reqSeq: r[2], respSeq: r[3], threadGroup: r[4], pid: r[5], tid: r[6], startUs: r[7], durationUs: r[8],
      service: r[9], processName: r[10], srcIp: r[11], srcPort: r[12], dstIp: r[13], dstPort: r[14], resource: r[15], operation: r[16],
      status: r[17], httpMethod: r[18], httpRoute: r[19], httpStatusCode: r[20], appTraceId: r[21], appParentId: r[22], appSampled: r[23],
      attrs: r[24], traceId, spanId: r[25], parentId: r[26], ebpfTraceId: r.length > CHUNK_FIELDS.length ? r[CHUNK_FIELDS.length] : ebpfTraceId, late: r[27],
    };
  }
  return spans;
}

/** The row layout encodeChunk and decodeChunk write out by hand; a field missing here fails to compile. */
const CHUNK_FIELDS = [...EBPF_FIELDS, 'spanId', 'parentId', 'late'] as const satisfies readonly (keyof LinkedSpan)[];
const everyChunkField: [Exclude<keyof LinkedSpan, (typeof CHUNK_FIELDS)[number] | 'traceId' | 'ebpfTraceId'>] extends [never] ? true : false = true;
void everyChunkField;

// A spooled raw body: one flag byte (bit 0 gzip, bit 1 JSON, bit 2 brotli), then the body as
// received.
const RAW_GZIP = 1, RAW_JSON = 2, RAW_BR = 4;

export function encodeRawBatch(raw: RawBatch): Buffer {
  const out = Buffer.allocUnsafe(raw.body.length + 1);
  out[0] = (raw.encoding === 'gzip' ? RAW_GZIP : raw.encoding === 'br' ? RAW_BR : 0) | (raw.format === 'json' ? RAW_JSON : 0);
  raw.body.copy(out, 1);
  return out;
}

export function decodeRawBatch(data: Buffer): RawBatch {
  const flags = data[0];
  const encoding = flags & RAW_GZIP ? 'gzip' : flags & RAW_BR ? 'br' : 'identity';
  return { body: data.subarray(1), format: flags & RAW_JSON ? 'json' : 'lp', encoding };
}
