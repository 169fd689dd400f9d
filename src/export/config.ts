// OTLP export configuration from the standard OpenTelemetry environment variables
// (OTEL_EXPORTER_OTLP_* and the batch span processor's OTEL_BSP_*), read and validated once
// at start so a bad value stops the linker with a message naming the variable, the value and
// what is accepted. Header values are secrets: they never appear in a message or a log.
import { seqError } from '../errors.js';

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export interface ExportConfig {
  /** Full URL the spans are POSTed to (…/v1/traces). */
  url: string;
  protocol: OtlpProtocol;
  /** Extra request headers (e.g. an API key). Never logged. */
  headers: Record<string, string>;
  /** Per-request timeout. */
  timeoutMs: number;
  compression: 'gzip' | 'none';
  /** Most spans in one request. */
  maxBatch: number;
  /** Most spans held in memory waiting to be sent (the rest stay in the store's backlog). */
  maxQueue: number;
  /** A partial batch is sent after this long. */
  flushIntervalMs: number;
  /** Requests in flight at once (hides the endpoint's latency; OTLP needs no ordering). */
  maxInFlight: number;
  retry: { initialMs: number; maxMs: number; maxElapsedMs: number };
}

export const EXPORT_DEFAULTS = {
  timeoutMs: 10_000,
  maxBatch: 512,
  maxQueue: 8192,
  flushIntervalMs: 1000,
  maxInFlight: 2,
  retry: { initialMs: 1000, maxMs: 30_000, maxElapsedMs: 300_000 },
} as const;

function bad(name: string, value: string, accepted: string): never {
  throw seqError('SEQ_ERR_CONFIG', `invalid ${name} = ${JSON.stringify(value)}: expected ${accepted}`);
}

/** The signal-specific variable (OTEL_EXPORTER_OTLP_TRACES_X) wins over the general one. */
function pick(env: NodeJS.ProcessEnv, suffix: string): { name: string; value: string } | undefined {
  for (const name of [`OTEL_EXPORTER_OTLP_TRACES_${suffix}`, `OTEL_EXPORTER_OTLP_${suffix}`]) {
    const v = env[name];
    if (v !== undefined && v.trim() !== '') return { name, value: v.trim() };
  }
  return undefined;
}

function checkUrl(name: string, value: string): URL {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return bad(name, value, 'an http:// or https:// URL such as "http://collector:4318"');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') bad(name, value, 'an http:// or https:// URL (OTLP/HTTP; gRPC is not supported)');
  return u;
}

/**
 * `k=v,k2=v2` (W3C-baggage-like), keys and values URL-decoded. A malformed entry is named by
 * its position and key only: its value may be a credential.
 */
export function parseOtlpHeaders(name: string, text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const entries = text.split(',');
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i].trim();
    if (entry === '') continue;
    const eq = entry.indexOf('=');
    const rawKey = eq < 0 ? entry : entry.slice(0, eq);
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(rawKey.trim());
      value = eq < 0 ? '' : decodeURIComponent(entry.slice(eq + 1).trim());
    } catch {
      throw seqError('SEQ_ERR_CONFIG', `invalid ${name}: entry ${i + 1} is not valid URL encoding (expected key=value pairs separated by commas, percent-encoded)`);
    }
    if (eq < 0 || key === '') {
      // Without '=' the whole entry may be a credential: name its position only.
      throw seqError('SEQ_ERR_CONFIG', `invalid ${name}: entry ${i + 1} is not of the form key=value (expected key=value pairs separated by commas)`);
    }
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(key)) {
      throw seqError('SEQ_ERR_CONFIG', `invalid ${name}: entry ${i + 1} has key ${JSON.stringify(key)}, which is not a valid HTTP header name`);
    }
    if (/[\r\n\0]/.test(value)) {
      throw seqError('SEQ_ERR_CONFIG', `invalid ${name}: the value of header "${key}" contains a line break or NUL`);
    }
    out[key] = value;
  }
  return out;
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, dflt: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  const n = Number(raw.trim());
  if (!Number.isInteger(n) || n <= 0) bad(name, raw, 'a whole number greater than 0');
  return n;
}

/**
 * Reads the export configuration. Returns undefined when no endpoint is configured: export
 * is then disabled, which is not an error.
 */
export function loadExportConfig(env: NodeJS.ProcessEnv = process.env): ExportConfig | undefined {
  let url: string;
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const endpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (tracesEndpoint) {
    // Used as is: the user gave the full path.
    url = checkUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', tracesEndpoint).toString();
  } else if (endpoint) {
    // A base URL: the signal path is appended to whatever path it has.
    const u = checkUrl('OTEL_EXPORTER_OTLP_ENDPOINT', endpoint);
    u.pathname = `${u.pathname.replace(/\/+$/, '')}/v1/traces`;
    url = u.toString();
  } else {
    return undefined;
  }

  const proto = pick(env, 'PROTOCOL');
  let protocol: OtlpProtocol = 'http/protobuf';
  if (proto) {
    if (proto.value !== 'http/protobuf' && proto.value !== 'http/json') {
      bad(proto.name, proto.value, proto.value === 'grpc'
        ? '"http/protobuf" or "http/json" (gRPC is not supported; point the endpoint at the collector\'s OTLP/HTTP port, usually 4318)'
        : '"http/protobuf" or "http/json"');
    }
    protocol = proto.value;
  }

  const hdr = pick(env, 'HEADERS');
  const headers = hdr ? parseOtlpHeaders(hdr.name, hdr.value) : {};

  let timeoutMs: number = EXPORT_DEFAULTS.timeoutMs;
  const to = pick(env, 'TIMEOUT');
  if (to) {
    const n = Number(to.value);
    if (!Number.isFinite(n) || n <= 0) bad(to.name, to.value, 'a timeout in milliseconds greater than 0, such as 10000');
    timeoutMs = n;
  }

  let compression: 'gzip' | 'none' = 'none';
  const comp = pick(env, 'COMPRESSION');
  if (comp) {
    if (comp.value !== 'gzip' && comp.value !== 'none') bad(comp.name, comp.value, '"gzip" or "none"');
    compression = comp.value;
  }

  const maxBatch = positiveInt(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', EXPORT_DEFAULTS.maxBatch);
  const maxQueue = positiveInt(env, 'OTEL_BSP_MAX_QUEUE_SIZE', EXPORT_DEFAULTS.maxQueue);
  if (maxBatch > maxQueue) {
    bad('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', String(maxBatch), `a batch size no larger than OTEL_BSP_MAX_QUEUE_SIZE (${maxQueue})`);
  }
  const flushIntervalMs = positiveInt(env, 'OTEL_BSP_SCHEDULE_DELAY', EXPORT_DEFAULTS.flushIntervalMs);

  return {
    url, protocol, headers, timeoutMs, compression, maxBatch, maxQueue, flushIntervalMs, maxInFlight: EXPORT_DEFAULTS.maxInFlight,
    retry: { ...EXPORT_DEFAULTS.retry },
  };
}

/** The configuration as it may be logged or shown: header names only, never their values. */
export function describeExportConfig(cfg: ExportConfig | undefined): string {
  if (!cfg) return 'OTLP export disabled (no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)';
  const names = Object.keys(cfg.headers);
  return `OTLP export to ${redactUrl(cfg.url)} (${cfg.protocol}, compression ${cfg.compression}, timeout ${cfg.timeoutMs}ms`
    + `${names.length ? `, headers: ${names.join(', ')}` : ''})`;
}

/** Drops credentials a user may have put in the URL itself. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = 'REDACTED';
      u.password = '';
    }
    return u.toString();
  } catch {
    return url;
  }
}
