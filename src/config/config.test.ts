import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkAgentCanTrace, loadConfig, parseBytes, parseDuration, parseListen } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'seqtrace-config-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(text: string): string {
  const p = join(dir, `c${n++}.toml`);
  writeFileSync(p, text);
  return p;
}

test('defaults are the seed\'s', () => {
  const { linker, agent } = loadConfig({ env: {} });
  assert.equal(linker.http_listen, '0.0.0.0:9529');
  assert.equal(linker.window, 20_000);
  assert.equal(linker.sampling_rate, 0.1);
  assert.equal(linker.use_app_trace_id, true);
  assert.deepEqual(agent.enabled_plugins, ['ebpf-net', 'ebpf-trace']);
  assert.deepEqual(agent.l7net_enabled, ['httpflow']);
  assert.deepEqual(agent.trace_envset, ['DK_BPFTRACE_SERVICE', 'DD_SERVICE', 'OTEL_SERVICE_NAME']);
  assert.equal(agent.trace_all_process, false);
  assert.equal(agent.conv_to_ddtrace, false);
  assert.deepEqual(agent.trace_nameset, []);
  assert.doesNotThrow(() => checkAgentCanTrace(agent));
});

test('the seed\'s config file is accepted as written', () => {
  const p = file(`
[[inputs.ebpf]]
  enabled_plugins = ["ebpf-net", "ebpf-trace"]
  l7net_enabled = ["httpflow",]
  trace_server = ""
  trace_all_process = false
  trace_envset = ["DK_BPFTRACE_SERVICE", "DD_SERVICE", "OTEL_SERVICE_NAME",]
  trace_nameset = []
  trace_namedenyset = []
  conv_to_ddtrace = false

[[inputs.ebpftrace]]
  sqlite_path = "/usr/local/datakit/ebpf_spandb"
  use_app_trace_id = true
  window = "20s"
  sampling_rate = 0.1
`);
  const { linker, agent } = loadConfig({ file: p, env: {} });
  assert.equal(linker.sqlite_path, '/usr/local/datakit/ebpf_spandb');
  assert.equal(agent.trace_server, '');
});

// [name, file text, env, path into config, expected]
const values: [string, string, Record<string, string>, (c: ReturnType<typeof loadConfig>) => unknown, unknown][] = [
  ['file value', '[[inputs.ebpftrace]]\nwindow = "1m30s"', {}, (c) => c.linker.window, 90_000],
  ['env over file', '[[inputs.ebpftrace]]\nwindow = "1m"', { ENV_INPUT_EBPFTRACE_WINDOW: '5s' }, (c) => c.linker.window, 5000],
  ['env alone', '', { ENV_INPUT_EBPFTRACE_SAMPLING_RATE: '0.5' }, (c) => c.linker.sampling_rate, 0.5],
  ['empty env ignored', '[[inputs.ebpftrace]]\nsampling_rate = 0.3', { ENV_INPUT_EBPFTRACE_SAMPLING_RATE: '' }, (c) => c.linker.sampling_rate, 0.3],
  ['env bool words', '', { ENV_INPUT_EBPFTRACE_USE_APP_TRACE_ID: 'off' }, (c) => c.linker.use_app_trace_id, false],
  ['env list', '', { ENV_INPUT_EBPF_TRACE_NAMESET: 'chrome, firefox' }, (c) => c.agent.trace_nameset, ['chrome', 'firefox']],
  ['bytes with unit', '[[inputs.ebpftrace]]\nmax_body_bytes = "512KiB"', {}, (c) => c.linker.max_body_bytes, 512 * 1024],
  ['bytes as integer', '[[inputs.ebpftrace]]\nmax_field_bytes = 100', {}, (c) => c.linker.max_field_bytes, 100],
  ['single table form', '[inputs.ebpftrace]\nwindow = "2s"', {}, (c) => c.linker.window, 2000],
  ['http_listen from file', 'http_listen = "127.0.0.1:7000"', {}, (c) => c.linker.http_listen, '127.0.0.1:7000'],
  ['ENV_HTTP_LISTEN over file', 'http_listen = "127.0.0.1:7000"', { ENV_HTTP_LISTEN: '[::1]:7001' }, (c) => c.linker.http_listen, '[::1]:7001'],
];

for (const [name, text, env, get, want] of values) {
  test(`config: ${name}`, () => {
    assert.deepEqual(get(loadConfig({ file: file(text), env })), want);
  });
}

// [name, file text, env, every fragment the message must contain]
const bad: [string, string, Record<string, string>, string[]][] = [
  ['sampling rate 0', '[[inputs.ebpftrace]]\nsampling_rate = 0', {}, ['inputs.ebpftrace.sampling_rate', '0', '(0, 1]']],
  ['sampling rate above 1', '[[inputs.ebpftrace]]\nsampling_rate = 1.5', {}, ['sampling_rate', '1.5', '(0, 1]']],
  ['sampling rate not a number (env)', '', { ENV_INPUT_EBPFTRACE_SAMPLING_RATE: 'lots' }, ['ENV_INPUT_EBPFTRACE_SAMPLING_RATE', '"lots"', 'a number']],
  ['window without unit', '[[inputs.ebpftrace]]\nwindow = "20"', {}, ['inputs.ebpftrace.window', '"20"', 'a duration']],
  ['window zero', '[[inputs.ebpftrace]]\nwindow = "0s"', {}, ['window', 'greater than 0']],
  ['bool as string in file', '[[inputs.ebpftrace]]\nuse_app_trace_id = "yes"', {}, ['use_app_trace_id', '"yes"', 'true or false']],
  ['bad env bool', '', { ENV_INPUT_EBPF_TRACE_ALL_PROCESS: 'maybe' }, ['ENV_INPUT_EBPF_TRACE_ALL_PROCESS', '"maybe"', 'true or false']],
  ['bad bytes', '[[inputs.ebpftrace]]\nmax_body_bytes = "lots"', {}, ['max_body_bytes', '"lots"', 'a size']],
  ['capture_bytes out of range', '[[inputs.ebpf]]\ncapture_bytes = 64', {}, ['capture_bytes', '64', '128 to 4096']],
  ['capture_mode unknown', '[[inputs.ebpf]]\ncapture_mode = "magic"', {}, ['capture_mode', '"magic"', 'auto, socket, syscall']],
  ['list of numbers', '[[inputs.ebpf]]\ntrace_nameset = [1, 2]', {}, ['trace_nameset', 'a list of strings']],
  ['unknown key', '[[inputs.ebpftrace]]\nwindw = "1s"', {}, ['inputs.ebpftrace.windw', 'accepted keys', 'window']],
  ['bad listen', '[[inputs.ebpftrace]]\nquery_listen = "nowhere"', {}, ['query_listen', '"nowhere"', 'an address']],
  ['bad ENV_HTTP_LISTEN', '', { ENV_HTTP_LISTEN: ':99999' }, ['ENV_HTTP_LISTEN', '":99999"', 'an address']],
  ['table twice', '[[inputs.ebpftrace]]\n[[inputs.ebpftrace]]', {}, ['[[inputs.ebpftrace]] appears 2 times']],
  ['string for number', '[[inputs.ebpftrace]]\nmax_batch_spans = "many"', {}, ['max_batch_spans', '"many"', 'a number']],
  ['header name with a space', '', { ENV_INPUT_EBPF_REQUEST_ID_HEADERS: 'X-Request-ID,X Trace' }, ['ENV_INPUT_EBPF_REQUEST_ID_HEADERS', 'X Trace', 'header names']],
];

for (const [name, text, env, fragments] of bad) {
  test(`config rejects: ${name}`, () => {
    assert.throws(() => loadConfig({ file: file(text), env }), (e: any) => {
      assert.equal(e.code, 'SEQ_ERR_CONFIG');
      for (const f of fragments) assert.ok(e.message.includes(f), `"${e.message}" lacks "${f}"`);
      return true;
    });
  });
}

test('config file problems are SEQ_ERR_CONFIG_FILE naming the path', () => {
  assert.throws(() => loadConfig({ file: join(dir, 'missing.toml'), env: {} }), (e: any) => e.code === 'SEQ_ERR_CONFIG_FILE' && e.message.includes('missing.toml'));
  const p = file('window = = 3');
  assert.throws(() => loadConfig({ file: p, env: {} }), (e: any) => e.code === 'SEQ_ERR_CONFIG_FILE' && e.message.includes(p));
});

test('an agent that cannot trace is refused with what to set', () => {
  const { agent } = loadConfig({ file: file('[[inputs.ebpf]]\nenabled_plugins = ["ebpf-net"]\nl7net_enabled = []'), env: {} });
  assert.throws(() => checkAgentCanTrace(agent), (e: any) => e.code === 'SEQ_ERR_CONFIG' && /ebpf-trace/.test(e.message) && /httpflow/.test(e.message));
});

test('parsers: durations, sizes, listen addresses', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1h2m3s'), 3_723_000);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('5'), undefined);
  assert.equal(parseBytes('10GiB'), 10 * 1024 ** 3);
  assert.equal(parseBytes('1 kb'), 1024);
  assert.equal(parseBytes('3 parsecs'), undefined);
  assert.deepEqual(parseListen(':9529'), { host: '0.0.0.0', port: 9529 });
  assert.deepEqual(parseListen('[::]:9529'), { host: '::', port: 9529 });
  assert.equal(parseListen('host:70000'), undefined);
});
