// The eBPF span: what an agent sends to the linker (docs/span-format.md is the contract;
// keep the two in step). Decoding and encoding live in ./lineprotocol.ts and ./json.ts.

/** `entry`: the process received the request (server side). `exit`: it sent one (client side). */
export type SpanKind = 'entry' | 'exit';

export type AttrValue = string | number | boolean;

/** One eBPF span as the linker understands it after decoding and validation. */
export interface EbpfSpan {
  /** Host of the agent that captured it (the `host` tag). */
  host: string;
  kind: SpanKind;
  /** TCP sequence number (u32) of the first byte of the request; identical on both ends. */
  reqSeq: number;
  /** TCP sequence number (u32) of the first byte of the response. */
  respSeq: number;
  /** Thread group (u64 as decimal string); '' or '0' when the span joined no group. */
  threadGroup: string;
  pid: number;
  tid: number;
  /** Start time, microseconds since the Unix epoch. */
  startUs: number;
  /** Duration in microseconds. */
  durationUs: number;
  service: string;
  processName: string;
  /** This process's own end of the connection. */
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  /** e.g. `GET /users/{id}`; `resource` on the wire. */
  resource: string;
  /** `HTTP` for now; `operation` on the wire. */
  operation: string;
  /** ok | warning | error */
  status: 'ok' | 'warning' | 'error';
  httpMethod: string;
  httpRoute: string;
  httpStatusCode: number;
  /** Trace context found in the request headers; '' when none. */
  appTraceId: string;
  appParentId: string;
  /** 1 keep, -1 drop, 0 no decision in the headers. */
  appSampled: 1 | 0 | -1;
  /** Every other field or tag, kept and exported as span attributes. */
  attrs: Record<string, AttrValue>;
}

/** A span after linking: ids assigned. Ids are lowercase hex; parentId '' for a root. */
export interface LinkedSpan extends EbpfSpan {
  traceId: string; // 32 hex digits (128 bit)
  spanId: string; // 16 hex digits (64 bit)
  parentId: string; // 16 hex digits or ''
  /** The trace id the linker made itself, whatever use_app_trace_id chose for traceId. */
  ebpfTraceId: string;
  /** Arrived after its trace had been emitted. */
  late: boolean;
}

export const MEASUREMENT = 'dketrace';
