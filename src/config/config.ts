// Configuration: the seed's TOML tables and ENV_* variables, environment over file.
// One schema per table; every key is typed, defaulted and validated here once, so a bad
// value stops the process at start with a message naming the key, the value and what is
// accepted (SEQ_ERR_CONFIG).
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { seqError } from '../errors.js';

type Kind = 'string' | 'bool' | 'number' | 'duration' | 'bytes' | 'list' | 'listen';

interface KeyDef {
  kind: Kind;
  default: unknown;
  /** Name of the environment variable that overrides it, if any. */
  env?: string;
  /** Extra check; returns a description of what is accepted when the value is not. */
  check?: (v: any) => string | undefined;
  doc: string;
}

const positive = (v: number) => (v > 0 ? undefined : 'a value greater than 0');
const nonNegative = (v: number) => (v >= 0 ? undefined : 'a value of 0 or more');

/** `[[inputs.ebpftrace]]`: the linker (and query API, UI, storage, export). */
export const LINKER_KEYS = {
  sqlite_path: { kind: 'string', default: '/var/lib/seqtrace', env: 'ENV_INPUT_EBPFTRACE_SQLITE_PATH', doc: 'folder of the SQLite database' },
  use_app_trace_id: { kind: 'bool', default: true, env: 'ENV_INPUT_EBPFTRACE_USE_APP_TRACE_ID', doc: 'a trace that carries an application trace id takes it as its trace_id' },
  window: { kind: 'duration', default: 20_000, env: 'ENV_INPUT_EBPFTRACE_WINDOW', check: positive, doc: 'a trace is emitted once no span has joined it for this long' },
  sampling_rate: {
    kind: 'number', default: 0.1, env: 'ENV_INPUT_EBPFTRACE_SAMPLING_RATE',
    check: (v: number) => (v > 0 && v <= 1 ? undefined : 'a number in (0, 1]'), doc: 'share of traces kept',
  },
  keep_error_traces: { kind: 'bool', default: true, env: 'ENV_INPUT_EBPFTRACE_KEEP_ERROR_TRACES', doc: 'traces with an error are kept whatever the sampling rate' },
  clock_skew: { kind: 'duration', default: 500, env: 'ENV_INPUT_EBPFTRACE_CLOCK_SKEW', check: nonNegative, doc: 'tolerated clock difference between hosts when joining client and server spans' },
  late_retention: { kind: 'duration', default: 600_000, env: 'ENV_INPUT_EBPFTRACE_LATE_RETENTION', check: nonNegative, doc: 'how long an emitted trace is remembered so that late spans still join it' },
  late_index_max_keys: { kind: 'number', default: 1_000_000, env: 'ENV_INPUT_EBPFTRACE_LATE_INDEX_MAX_KEYS', check: (v: number) => (Number.isInteger(v) && v >= 0 ? undefined : 'a whole number of 0 or more'), doc: 'most emitted spans remembered for late spans (a few hundred bytes each); the oldest are forgotten first beyond it' },
  retention_max_age: { kind: 'duration', default: 7 * 24 * 3600_000, env: 'ENV_INPUT_EBPFTRACE_RETENTION_MAX_AGE', check: positive, doc: 'stored traces older than this are deleted' },
  retention_max_bytes: { kind: 'bytes', default: 10 * 1024 ** 3, env: 'ENV_INPUT_EBPFTRACE_RETENTION_MAX_BYTES', check: positive, doc: 'the oldest stored traces are deleted above this database size' },
  ingest_token: { kind: 'string', default: '', env: 'ENV_INPUT_EBPFTRACE_INGEST_TOKEN', doc: 'when set, POST /v1/bpftracing requires `Authorization: Bearer <token>`' },
  query_token: { kind: 'string', default: '', env: 'ENV_INPUT_EBPFTRACE_QUERY_TOKEN', doc: 'when set, the query API and UI require this token' },
  query_listen: { kind: 'listen', default: '', env: 'ENV_INPUT_EBPFTRACE_QUERY_LISTEN', doc: 'serve the query API and UI on this address instead of ENV_HTTP_LISTEN' },
  max_body_bytes: { kind: 'bytes', default: 16 * 1024 ** 2, env: 'ENV_INPUT_EBPFTRACE_MAX_BODY_BYTES', check: positive, doc: 'largest ingest body, after decompression' },
  max_batch_spans: { kind: 'number', default: 50_000, env: 'ENV_INPUT_EBPFTRACE_MAX_BATCH_SPANS', check: positive, doc: 'most spans in one ingest body' },
  max_field_bytes: { kind: 'bytes', default: 8192, env: 'ENV_INPUT_EBPFTRACE_MAX_FIELD_BYTES', check: positive, doc: 'longest string value of one span key' },
} satisfies Record<string, KeyDef>;

/** `[[inputs.ebpf]]`: the agent. */
export const AGENT_KEYS = {
  enabled_plugins: { kind: 'list', default: ['ebpf-net', 'ebpf-trace'], env: 'ENV_INPUT_EBPF_ENABLED_PLUGINS', doc: 'ebpf-net and ebpf-trace are needed for tracing' },
  l7net_enabled: { kind: 'list', default: ['httpflow'], env: 'ENV_INPUT_EBPF_L7NET_ENABLED', doc: 'httpflow is needed for tracing' },
  trace_server: { kind: 'string', default: '127.0.0.1:9529', env: 'ENV_INPUT_EBPF_TRACE_SERVER', doc: 'address of the linker (host:port or URL)' },
  trace_all_process: { kind: 'bool', default: false, env: 'ENV_INPUT_EBPF_TRACE_ALL_PROCESS', doc: 'trace every process on the host' },
  trace_envset: { kind: 'list', default: ['DK_BPFTRACE_SERVICE', 'DD_SERVICE', 'OTEL_SERVICE_NAME'], env: 'ENV_INPUT_EBPF_TRACE_ENVSET', doc: 'trace processes that have any of these environment variables' },
  trace_nameset: { kind: 'list', default: [], env: 'ENV_INPUT_EBPF_TRACE_NAMESET', doc: 'trace processes with these names' },
  trace_namedenyset: { kind: 'list', default: [], env: 'ENV_INPUT_EBPF_TRACE_NAMEDENYSET', doc: 'never trace processes with these names (checked first)' },
  conv_to_ddtrace: { kind: 'bool', default: false, env: 'ENV_INPUT_EBPF_CONV_TO_DDTRACE', doc: 'convert application trace ids to Datadog form (base 10, 64-bit)' },
  request_id_headers: {
    kind: 'list', default: ['X-Request-ID'], env: 'ENV_INPUT_EBPF_REQUEST_ID_HEADERS',
    check: (v: string[]) => (v.every((h) => /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(h)) ? undefined : 'header names (letters, digits and !#$%&\'*+.^_`|~-)'),
    doc: 'request headers carrying a request id: an event loop\'s calls are joined to the request they serve by it, and it is sent as http_request_id; empty: none',
  },
  capture_bytes: {
    kind: 'bytes', default: 1024, env: 'ENV_INPUT_EBPF_CAPTURE_BYTES',
    check: (v: number) => (v >= 128 && v <= 4096 ? undefined : 'a size from 128 to 4096 bytes'), doc: 'first bytes of each message copied from the kernel',
  },
  capture_mode: {
    kind: 'string', default: 'auto', env: 'ENV_INPUT_EBPF_CAPTURE_MODE',
    check: (v: string) => (['auto', 'socket', 'syscall'].includes(v) ? undefined : 'one of auto, socket, syscall'),
    doc: 'socket: tp_btf/sock_{send,recv}_length (kernel 6.3+); syscall: syscall tracepoints; auto: socket where the kernel has it',
  },
  trace_tls: {
    kind: 'bool', default: false, env: 'ENV_INPUT_EBPF_TRACE_TLS',
    doc: 'see HTTPS in plaintext: OpenSSL\'s calls probed in each traced process that maps libssl; each call costs uprobe traps, ≈ 27 µs of the process\'s CPU on this project\'s VMs (far less where traps are cheap; docs/kernel.md, "TLS"), so it is off until asked for; off, HTTPS is muted at its handshake',
  },
  metrics_listen: { kind: 'listen', default: '127.0.0.1:9530', env: 'ENV_INPUT_EBPF_METRICS_LISTEN', doc: 'address of the agent\'s GET /metrics' },
  ingest_token: { kind: 'string', default: '', env: 'ENV_INPUT_EBPF_INGEST_TOKEN', doc: 'token sent to the linker' },
  send_buffer_bytes: { kind: 'bytes', default: 64 * 1024 ** 2, env: 'ENV_INPUT_EBPF_SEND_BUFFER_BYTES', check: positive, doc: 'spans kept in memory while the linker is unreachable; older ones are dropped and counted beyond it' },
  host: { kind: 'string', default: '', env: 'ENV_HOSTNAME', doc: 'host name sent with every span (default: the machine\'s host name)' },
} satisfies Record<string, KeyDef>;

type ValueOf<D extends KeyDef> = D['kind'] extends 'bool' ? boolean
  : D['kind'] extends 'number' | 'duration' | 'bytes' ? number
  : D['kind'] extends 'list' ? string[]
  : D['kind'] extends 'listen' ? string
  : string;
type Values<S extends Record<string, KeyDef>> = { [K in keyof S]: ValueOf<S[K]> };

export type LinkerConfig = Values<typeof LINKER_KEYS> & { http_listen: string };
export type AgentConfig = Values<typeof AGENT_KEYS>;

export interface Config {
  linker: LinkerConfig;
  agent: AgentConfig;
}

function bad(table: string, key: string, value: unknown, accepted: string): never {
  throw seqError('SEQ_ERR_CONFIG', `invalid ${key ? `${table}.${key}` : table} = ${JSON.stringify(value)}: expected ${accepted}`);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };

/** `20s`, `1m30s`, `500ms`, `2h` → milliseconds. */
export function parseDuration(s: string): number | undefined {
  const text = s.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) total += Number(m[1]) * DURATION_UNITS[m[2]];
  return total;
}

export function parseBytes(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(s.trim());
  if (!m || !(m[2].toLowerCase() in BYTE_UNITS)) return undefined;
  return Math.floor(Number(m[1]) * BYTE_UNITS[m[2].toLowerCase()]);
}

/** `host:port`, `[v6]:port` or `:port`. */
export function parseListen(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(s.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function convert(table: string, key: string, def: KeyDef, raw: unknown, fromEnv: boolean): unknown {
  switch (def.kind) {
    case 'string':
      if (typeof raw !== 'string') bad(table, key, raw, 'a string');
      return raw;
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (fromEnv && typeof raw === 'string' && /^(true|false|1|0|on|off|yes|no)$/i.test(raw.trim())) return /^(true|1|on|yes)$/i.test(raw.trim());
      return bad(table, key, raw, 'true or false');
    case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isFinite(n)) bad(table, key, raw, 'a number');
      return n;
    }
    case 'duration': {
      const n = typeof raw === 'string' ? parseDuration(raw) : undefined;
      if (n === undefined) bad(table, key, raw, 'a duration such as "20s", "1m" or "500ms"');
      return n;
    }
    case 'bytes': {
      const n = typeof raw === 'number' && Number.isInteger(raw) ? raw : typeof raw === 'string' ? parseBytes(raw) : undefined;
      if (n === undefined) bad(table, key, raw, 'a size such as 1048576, "512KiB" or "10GiB"');
      return n;
    }
    case 'list':
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return raw.map((x) => x.trim()).filter(Boolean);
      if (fromEnv && typeof raw === 'string') return raw.split(',').map((x) => x.trim()).filter(Boolean);
      return bad(table, key, raw, 'a list of strings');
    case 'listen':
      if (typeof raw !== 'string' || (raw !== '' && !parseListen(raw))) bad(table, key, raw, 'an address such as "0.0.0.0:9529" or "[::1]:9529"');
      return raw;
  }
}

function loadTable<S extends Record<string, KeyDef>>(table: string, schema: S, fileTable: Record<string, unknown>, env: NodeJS.ProcessEnv): Values<S> {
  for (const key of Object.keys(fileTable)) {
    if (!(key in schema)) {
      throw seqError('SEQ_ERR_CONFIG', `unknown key ${table}.${key}: accepted keys are ${Object.keys(schema).join(', ')}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(schema)) {
    let value: unknown = def.default;
    let source = `${table}.${key}`;
    if (key in fileTable) value = convert(table, key, def, fileTable[key], false);
    const envValue = def.env ? env[def.env] : undefined;
    if (envValue !== undefined && envValue !== '') {
      source = def.env!;
      value = convert(source, '', def, envValue, true);
    }
    const problem = def.check?.(value);
    if (problem) bad(source, '', value, problem);
    out[key] = value;
  }
  return out as Values<S>;
}

/** The first `[[inputs.NAME]]` table (or `[inputs.NAME]`) of a parsed file. */
function inputTable(doc: Record<string, any>, name: string): Record<string, unknown> {
  const t = doc.inputs?.[name];
  if (t === undefined) return {};
  if (Array.isArray(t)) {
    if (t.length > 1) throw seqError('SEQ_ERR_CONFIG', `[[inputs.${name}]] appears ${t.length} times; seqtrace takes one`);
    return (t[0] ?? {}) as Record<string, unknown>;
  }
  if (typeof t === 'object') return t as Record<string, unknown>;
  throw seqError('SEQ_ERR_CONFIG', `inputs.${name} must be a table`);
}

export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = opts.env ?? process.env;
  let doc: Record<string, any> = {};
  if (opts.file) {
    let text: string;
    try {
      text = readFileSync(opts.file, 'utf8');
    } catch (e) {
      throw seqError('SEQ_ERR_CONFIG_FILE', `cannot read config file ${opts.file}: ${(e as Error).message}`);
    }
    try {
      doc = parseToml(text) as Record<string, any>;
    } catch (e) {
      throw seqError('SEQ_ERR_CONFIG_FILE', `cannot parse config file ${opts.file}: ${(e as Error).message}`);
    }
  }
  const linker = loadTable('inputs.ebpftrace', LINKER_KEYS, inputTable(doc, 'ebpftrace'), env) as LinkerConfig;
  const httpListen = env.ENV_HTTP_LISTEN || (typeof doc.http_listen === 'string' ? doc.http_listen : '0.0.0.0:9529');
  if (!parseListen(httpListen)) bad('ENV_HTTP_LISTEN', '', httpListen, 'an address such as "0.0.0.0:9529"');
  linker.http_listen = httpListen;
  const agent = loadTable('inputs.ebpf', AGENT_KEYS, inputTable(doc, 'ebpf'), env);
  return { linker, agent };
}

/** The agent refuses a config that cannot trace, instead of running as a silent no-op. */
export function checkAgentCanTrace(agent: AgentConfig): void {
  const missing: string[] = [];
  for (const p of ['ebpf-net', 'ebpf-trace']) if (!agent.enabled_plugins.includes(p)) missing.push(`enabled_plugins lacks "${p}"`);
  if (!agent.l7net_enabled.includes('httpflow')) missing.push('l7net_enabled lacks "httpflow"');
  if (missing.length) {
    throw seqError('SEQ_ERR_CONFIG', `this configuration cannot trace: ${missing.join('; ')} (set enabled_plugins = ["ebpf-net", "ebpf-trace"] and l7net_enabled = ["httpflow"])`);
  }
}
