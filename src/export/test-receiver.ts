// A real OTLP/HTTP receiver for the export tests: node:http on an ephemeral port, decoding
// every request with the official definitions (protobufjs loading the vendored .proto files
// itself, independently of the code under test). Each request is answered by `respond`, which
// tests program to fail, throttle, reject or hang.
import http from 'node:http';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import type { AddressInfo } from 'node:net';

const PROTO_DIR = new URL('./proto/', import.meta.url).pathname;

let root: protobuf.Root | undefined;

/** The official ExportTraceServiceRequest type, loaded straight from the vendored files. */
export function officialTypes(): { Request: protobuf.Type; Response: protobuf.Type; root: protobuf.Root } {
  if (!root) {
    root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_DIR, target));
    root.loadSync('opentelemetry/proto/collector/trace/v1/trace_service.proto');
    root.resolveAll();
  }
  return {
    root,
    Request: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest'),
    Response: root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse'),
  };
}

/** A decoded protobuf request as plain data: ids as hex, 64-bit as decimal strings, enums as numbers. */
export function decodeProtobuf(body: Uint8Array): any {
  const { Request } = officialTypes();
  const msg = Request.decode(body);
  return hexIds(Request.toObject(msg, { longs: String, bytes: Array, enums: Number, defaults: false }));
}

function hexIds(v: any): any {
  if (Array.isArray(v)) return v.map(hexIds);
  if (v && typeof v === 'object') {
    const out: any = {};
    for (const [k, x] of Object.entries(v)) {
      out[k] = (k === 'traceId' || k === 'spanId' || k === 'parentSpanId') && Array.isArray(x) ? Buffer.from(x as number[]).toString('hex') : hexIds(x);
    }
    return out;
  }
  return v;
}

export interface ReceivedRequest {
  at: number;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** The body after gunzip when it was gzipped. */
  body: Buffer;
  /** Decoded request (protobuf via the official types, or the parsed JSON), or undefined if the answer was not 2xx. */
  decoded: any;
}

export type Respond = (req: ReceivedRequest, n: number) =>
  | { status: number; headers?: Record<string, string>; body?: string | Uint8Array }
  | 'hang';

export interface Receiver {
  url: string;
  /** Every request received, in order (including failed ones). */
  requests: ReceivedRequest[];
  /** Requests answered 2xx. */
  accepted(): ReceivedRequest[];
  /** Spans of every 2xx request, flattened with their resource attributes. */
  spans(): { span: any; resource: Record<string, unknown> }[];
  respond: Respond;
  /** Resolves when `n` requests have been received. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export function attrMap(kvs: any[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of kvs ?? []) {
    const v = kv.value ?? {};
    out[kv.key] = v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : v.doubleValue);
  }
  return out;
}

export async function startReceiver(respond: Respond = () => ({ status: 200 })): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const answered = new Map<ReceivedRequest, number>();
  const hanging = new Set<http.ServerResponse>();
  let waiters: { n: number; resolve: () => void }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      const r: ReceivedRequest = { at: Date.now(), method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, decoded: undefined };
      requests.push(r);
      const answer = rec.respond(r, requests.length);
      if (answer === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
      } else {
        answered.set(r, answer.status);
        if (answer.status >= 200 && answer.status < 300) {
          r.decoded = /json/.test(req.headers['content-type'] ?? '') ? JSON.parse(body.toString('utf8')) : decodeProtobuf(body);
        }
        res.writeHead(answer.status, { 'content-type': 'application/x-protobuf', ...answer.headers });
        res.end(answer.body ?? '');
      }
      const ready = waiters.filter((w) => requests.length >= w.n);
      waiters = waiters.filter((w) => requests.length < w.n);
      for (const w of ready) w.resolve();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const rec: Receiver = {
    url: `http://127.0.0.1:${port}`,
    requests,
    respond,
    accepted: () => requests.filter((r) => {
      const s = answered.get(r);
      return s !== undefined && s >= 200 && s < 300;
    }),
    spans() {
      const out: { span: any; resource: Record<string, unknown> }[] = [];
      for (const r of rec.accepted()) {
        for (const rs of r.decoded.resourceSpans ?? []) {
          const resource = attrMap(rs.resource?.attributes);
          for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) out.push({ span, resource });
        }
      }
      return out;
    },
    waitFor(n, timeoutMs = 10_000) {
      if (requests.length >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`receiver got ${requests.length} request(s), expected ${n}`)), timeoutMs);
        waiters.push({ n, resolve: () => { clearTimeout(t); resolve(); } });
      });
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return rec;
}
