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
const LINKED_FIELDS = [...EBPF_FIELDS, 'traceId', 'spanId', 'parentId', 'ebpfTraceId', 'late'] as const satisfies readonly (keyof LinkedSpan)[];

// A field added to EbpfSpan or LinkedSpan without being added above fails to compile here.
const everyEbpfField: [Exclude<keyof EbpfSpan, (typeof EBPF_FIELDS)[number]>] extends [never] ? true : false = true;
const everyLinkedField: [Exclude<keyof LinkedSpan, (typeof LINKED_FIELDS)[number]>] extends [never] ? true : false = true;
void everyEbpfField;
void everyLinkedField;

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

export function encodeLinkedSpan(span: LinkedSpan): string {
  const row = new Array(LINKED_FIELDS.length);
  for (let f = 0; f < LINKED_FIELDS.length; f++) row[f] = span[LINKED_FIELDS[f]];
  return JSON.stringify(row);
}

export function decodeLinkedSpan(text: string): LinkedSpan {
  return decodeRow<LinkedSpan>(JSON.parse(text) as unknown[], LINKED_FIELDS);
}

// A spooled raw body: one flag byte (bit 0 gzip, bit 1 JSON), then the body as received.
const RAW_GZIP = 1, RAW_JSON = 2;

export function encodeRawBatch(raw: RawBatch): Buffer {
  const out = Buffer.allocUnsafe(raw.body.length + 1);
  out[0] = (raw.gzip ? RAW_GZIP : 0) | (raw.format === 'json' ? RAW_JSON : 0);
  raw.body.copy(out, 1);
  return out;
}

export function decodeRawBatch(data: Buffer): RawBatch {
  const flags = data[0];
  return { body: data.subarray(1), format: flags & RAW_JSON ? 'json' : 'lp', gzip: (flags & RAW_GZIP) !== 0 };
}
