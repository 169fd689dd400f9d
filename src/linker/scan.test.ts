// scanLineProtocol ≡ the reference (ingest's decodeBody for line protocol, then joinFieldsOf
// on every span): same rows, same errors, same thrown errors, for every body. Table cases for
// every key and form (and which path each takes), then a differential fuzz over realistic
// batches and their mutations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeqError } from '../errors.js';
import type { PointError } from '../span/point.js';
import { decodeBody } from './decode.js';
import { JoinBatch, joinFieldsOf, joinRow } from './link/fields.js';
import { rng } from './fixtures.js';
import { scanLineProtocol, scanStats } from './scan.js';

type Cfg = { max_batch_spans: number; max_field_bytes: number };
const CFG: Cfg = { max_batch_spans: 50_000, max_field_bytes: 8192 };

/** The reference, as ingest.ts decodeBody(body, 'lp', cfg) does it, then joinFieldsOf. */
function reference(body: Buffer, cfg: Cfg, out: JoinBatch): { errors: PointError[] } {
  const { spans, errors, locs } = decodeBody(body, 'lp', cfg);
  out.clear();
  spans.forEach((s, i) => joinFieldsOf(s, out, locs[i]));
  return { errors };
}

type Outcome = { rows: Record<string, number>[]; errors: PointError[] } | { thrown: string };

function run(f: (b: Buffer, c: Cfg, o: JoinBatch) => { errors: PointError[] }, body: Buffer, cfg: Cfg, out: JoinBatch): Outcome {
  // Leftovers of an earlier body in the batch must not matter.
  out.clear();
  for (let i = 0; i < 3; i++) { const r = out.push(); out.idA[r] = 12345; out.app[4 * r] = 7; out.loc[r] = 99; }
  let errors: PointError[];
  try {
    errors = f(body, cfg, out).errors;
  } catch (e) {
    const s = e as SeqError;
    return { thrown: `${s.constructor.name} ${s.code} ${s.status} ${s.message}` };
  }
  const rows = [];
  for (let i = 0; i < out.n; i++) rows.push(joinRow(out, i));
  return { rows, errors };
}

const outA = new JoinBatch(4), outB = new JoinBatch(4);

/** Asserts scan ≡ reference on `body`; returns how its points went. */
function same(body: Buffer | string, cfg: Cfg = CFG, what = ''): { fast: number; slow: number; whole: number; want: Outcome } {
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  const want = run(reference, buf, cfg, outB);
  const before = { ...scanStats };
  const got = run(scanLineProtocol, buf, cfg, outA);
  const moves = { fast: scanStats.fast - before.fast, slow: scanStats.slow - before.slow, whole: scanStats.whole - before.whole };
  assert.deepStrictEqual(got, want, `${what}\n${JSON.stringify(buf.toString('latin1')).slice(0, 2000)}`);
  return { ...moves, want };
}

// ---- table cases ----

const BASE: [string, string][] = [
  ['direction', '"incoming"'], ['ebpf_span_type', '"entry"'], ['req_seq', '4195786334i'], ['resp_seq', '3002305430i'],
  ['thread_trace_id', '7480554797827556758i'], ['pid', '"9681"'], ['tid', '9697i'], ['start', '1732500000000000i'], ['duration', '1240i'],
  ['service', '"frontend"'], ['process_name', '"frontend"'], ['src_ip', '"10.151.25.82"'], ['src_port', '"8080"'], ['dst_ip', '"192.168.1.10"'],
  ['dst_port', '"50428"'], ['operation', '"HTTP"'], ['resource', '"GET /checkout"'], ['status', '"ok"'], ['http_method', '"GET"'],
  ['http_route', '"/checkout"'], ['http_status_code', '200i'], ['http_version', '"1.1"'],
];

/**
 * The agent's line with changes: `f` replaces a field's raw value (null drops it; a new key is
 * appended), `tags` replaces ",host=host-frontend", `time` the timestamp (null: none).
 */
function line(o: { f?: Record<string, string | null>; tags?: string; time?: string | null; m?: string } = {}): string {
  const f = o.f ?? {};
  const fields: string[] = [];
  for (const [k, v] of BASE) {
    const w = k in f ? f[k] : v;
    if (w !== null) fields.push(`${k}=${w}`);
  }
  for (const k in f) if (!BASE.some(([b]) => b === k) && f[k] !== null) fields.push(`${k}=${f[k]}`);
  const time = o.time === undefined ? ' 1732500000000000000' : o.time === null ? '' : ` ${o.time}`;
  return `${o.m ?? 'dketrace'}${o.tags ?? ',host=host-frontend'} ${fields.join(',')}${time}\n`;
}

const F = 'fast', S = 'slow', W = 'whole';
type Path = typeof F | typeof S | typeof W;
const IPS = ['"10.0.0.1"', '"::1"', '"fe80::1"', '"2001:db8:85a3::8a2e:370:7334"', '"::ffff:10.1.2.3"', '"0.0.0.0"', '"255.255.255.255"'];

// [name, body, path of its single point, cfg?]
const cases: [string, string, Path, Cfg?][] = [
  ['the agent line', line(), F],
  ['minimal: host, kind, seqs, pid, duration, timestamp', 'dketrace,host=h ebpf_span_type="exit",req_seq=1i,resp_seq=2i,pid=3i,duration=4i 5000000\n', F],
  // host
  ['host as a string field', line({ tags: '', f: { host: '"web-1"' } }), F],
  ['host as tag and field: the field wins', line({ f: { host: '"web-2"' } }), F],
  ['host as an integer field', line({ tags: '', f: { host: '5i' } }), S],
  ['host empty string', line({ tags: '', f: { host: '""' } }), W],
  ['host missing', line({ tags: '' }), W],
  ['host over max_field_bytes', line(), W, { max_batch_spans: 10, max_field_bytes: 12 }],
  ['host at max_field_bytes', line({ f: { src_ip: '""', dst_ip: '""', resource: '"x"', http_route: '"/"' } }), F, { max_batch_spans: 10, max_field_bytes: 13 }],
  ['host with = and "', line({ tags: ',host=a=b"c' }), F],
  ['two host tags: the last wins', line({ tags: ',host=a,host=b' }), F],
  // measurement
  ['other measurement', line({ m: 'http' }), W],
  ['measurement with a suffix', line({ m: 'dketrace2' }), W],
  ['measurement escaped', line({ m: 'dke\\trace' }), W],
  // kind
  ['ebpf_span_type only', line({ f: { direction: null } }), F],
  ['direction only', line({ f: { ebpf_span_type: null } }), F],
  ['exit / outgoing', line({ f: { direction: '"outgoing"', ebpf_span_type: '"exit"' } }), F],
  ['kind as tags', line({ tags: ',direction=incoming,ebpf_span_type=entry,host=h', f: { direction: null, ebpf_span_type: null } }), F],
  ['kind disagrees', line({ f: { direction: '"outgoing"' } }), W],
  ['kind missing', line({ f: { direction: null, ebpf_span_type: null } }), W],
  ['kind in upper case', line({ f: { ebpf_span_type: '"Entry"' } }), W],
  ['kind as a number', line({ f: { ebpf_span_type: '1i' } }), W],
  ['bad direction', line({ f: { direction: '"in"' } }), W],
  // sequence numbers, pid, tid, ports, code: integers, digit strings, tags
  ['req_seq u', line({ f: { req_seq: '5u' } }), F],
  ['req_seq string', line({ f: { req_seq: '"5"' } }), F],
  ['req_seq u32 max', line({ f: { req_seq: '4294967295i' } }), F],
  ['req_seq over u32', line({ f: { req_seq: '4294967296i' } }), W],
  ['req_seq string over u32', line({ f: { req_seq: '"4294967296"' } }), W],
  ['req_seq negative', line({ f: { req_seq: '-1i' } }), W],
  ['req_seq -0', line({ f: { req_seq: '-0i' } }), S],
  ['req_seq float', line({ f: { req_seq: '5' } }), S],
  ['req_seq float .0', line({ f: { req_seq: '5.0' } }), S],
  ['req_seq fraction', line({ f: { req_seq: '5.5' } }), W],
  ['req_seq 1e3', line({ f: { req_seq: '1e3' } }), S],
  ['req_seq empty string', line({ f: { req_seq: '""' } }), W],
  ['req_seq 16-char string', line({ f: { req_seq: '"0000000000000005"' } }), F],
  ['req_seq 17-char string', line({ f: { req_seq: '"00000000000000005"' } }), W],
  ['req_seq string with a space', line({ f: { req_seq: '" 5"' } }), W],
  ['req_seq boolean', line({ f: { req_seq: 'true' } }), W],
  ['req_seq long leading zeros', line({ f: { req_seq: '00000000000000000000000005i' } }), F],
  ['req_seq int64 max', line({ f: { req_seq: '9223372036854775807i' } }), W],
  ['req_seq over int64', line({ f: { req_seq: '9223372036854775808i' } }), W],
  ['req_seq as a tag', line({ tags: ',host=h,req_seq=77', f: { req_seq: null } }), F],
  ['req_seq tag and field: the field wins', line({ tags: ',host=h,req_seq=77' }), F],
  ['req_seq bad tag overridden by a field', line({ tags: ',host=h,req_seq=x' }), F],
  ['req_seq bad field overridden by a later field', 'dketrace,host=h ebpf_span_type="exit",req_seq="x",resp_seq=2i,pid=3i,duration=4i,req_seq=9i 5000000\n', F],
  ['req_seq missing', line({ f: { req_seq: null } }), W],
  ['resp_seq 0 and req_seq 0', line({ f: { req_seq: '0i', resp_seq: '0i' } }), F],
  ['resp_seq missing', line({ f: { resp_seq: null } }), W],
  ['pid integer', line({ f: { pid: '9681i' } }), F],
  ['pid u32 max string', line({ f: { pid: '"4294967295"' } }), F],
  ['pid not digits', line({ f: { pid: '"96a"' } }), W],
  ['pid missing', line({ f: { pid: null } }), W],
  ['tid missing', line({ f: { tid: null } }), F],
  ['tid string', line({ f: { tid: '"12"' } }), F],
  ['tid over u32', line({ f: { tid: '4294967296u' } }), W],
  ['ports as integers', line({ f: { src_port: '8080i', dst_port: '50428u' } }), F],
  ['port 65535', line({ f: { src_port: '"65535"' } }), F],
  ['port 65536', line({ f: { src_port: '"65536"' } }), W],
  ['port 65536 as integer', line({ f: { dst_port: '65536i' } }), W],
  ['ports absent', line({ f: { src_port: null, dst_port: null } }), F],
  ['port 0', line({ f: { src_port: '0i' } }), F],
  ['http_status_code string', line({ f: { http_status_code: '"404"' } }), F],
  ['http_status_code 500', line({ f: { http_status_code: '500i', status: null } }), F],
  ['http_status_code 999', line({ f: { http_status_code: '999i' } }), F],
  ['http_status_code 1000', line({ f: { http_status_code: '1000i' } }), W],
  ['http_status_code absent (error flag)', line({ f: { http_status_code: null } }), F],
  ['http_status_code 0', line({ f: { http_status_code: '0i' } }), F],
  // thread group
  ['thread group u 20 digits', line({ f: { thread_trace_id: '18446744073709551615u' } }), F],
  ['thread group over u64', line({ f: { thread_trace_id: '18446744073709551616u' } }), W],
  ['thread group int64 max', line({ f: { thread_trace_id: '9223372036854775807i' } }), F],
  ['thread group over int64 with i', line({ f: { thread_trace_id: '9223372036854775808i' } }), W],
  ['thread group negative (DataKit int64)', line({ f: { thread_trace_id: '-1i' } }), F],
  ['thread group -2^63', line({ f: { thread_trace_id: '-9223372036854775808i' } }), F],
  ['thread group below -2^63', line({ f: { thread_trace_id: '-9223372036854775809i' } }), W],
  ['thread group negative with zeros', line({ f: { thread_trace_id: '-0001234567890123456789i' } }), F],
  ['thread group negative with zeros below -2^63', line({ f: { thread_trace_id: '-0009223372036854775809i' } }), W],
  ['thread group negative 19 digits', line({ f: { thread_trace_id: '-1234567890123456789i' } }), F],
  ['thread group negative small', line({ f: { thread_trace_id: '-42i' } }), F],
  ['thread group negative, long host', line({ tags: `,host=${'h'.repeat(600)}`, f: { thread_trace_id: '-42i' } }), F],
  ['thread group 0', line({ f: { thread_trace_id: '0i' } }), F],
  ['thread group -0', line({ f: { thread_trace_id: '-0i' } }), F],
  ['thread group absent', line({ f: { thread_trace_id: null } }), F],
  ['thread group string', line({ f: { thread_trace_id: '"123"' } }), F],
  ['thread group string with zeros', line({ f: { thread_trace_id: '"000123"' } }), F],
  ['thread group string "0"', line({ f: { thread_trace_id: '"0"' } }), F],
  ['thread group string u64 max', line({ f: { thread_trace_id: '"18446744073709551615"' } }), F],
  ['thread group string over u64', line({ f: { thread_trace_id: '"18446744073709551616"' } }), W],
  ['thread group string 21 digits', line({ f: { thread_trace_id: '"000000000000000000001"' } }), W],
  ['thread group string negative', line({ f: { thread_trace_id: '"-5"' } }), W],
  ['thread group empty string', line({ f: { thread_trace_id: '""' } }), W],
  ['thread group float', line({ f: { thread_trace_id: '5' } }), S],
  ['thread group leading zeros i', line({ f: { thread_trace_id: '000000000000000000000042i' } }), F],
  ['thread group as a tag', line({ tags: ',host=h,thread_trace_id=99', f: { thread_trace_id: null } }), F],
  ['thread group boolean', line({ f: { thread_trace_id: 'true' } }), W],
  // start and timestamp
  ['start as string', line({ f: { start: '"1732500000000000"' } }), F],
  ['start absent: the timestamp', line({ f: { start: null } }), F],
  ['start absent, short timestamp', line({ f: { start: null }, time: '999' }), F],
  ['start absent, 4-digit timestamp', line({ f: { start: null }, time: '1999' }), F],
  ['start absent, timestamp with zeros', line({ f: { start: null }, time: '0001732500000000000000' }), F],
  ['start absent, no timestamp', line({ f: { start: null }, time: null }), W],
  ['start absent, negative timestamp', line({ f: { start: null }, time: '-1732500000000000000' }), W],
  ['start absent, timestamp beyond 2^53 µs', line({ f: { start: null }, time: '99999999999999999999999' }), S],
  ['start absent, timestamp of 2^53-1 µs', line({ f: { start: null }, time: '9007199254740991000' }), F],
  ['start and a negative timestamp', line({ time: '-5' }), F],
  ['start and no timestamp', line({ time: null }), F],
  ['start 2^53-1', line({ f: { start: '9007199254740991i' } }), F],
  ['start 2^53', line({ f: { start: '9007199254740992i' } }), W],
  ['start string 2^53+1', line({ f: { start: '"9007199254740993"' } }), W],
  ['start as a tag', line({ tags: ',host=h,start=1732500000000000', f: { start: null } }), F],
  ['duration string', line({ f: { duration: '"1240"' } }), F],
  ['duration missing', line({ f: { duration: null } }), W],
  ['duration negative', line({ f: { duration: '-1i' } }), W],
  ['start + duration beyond 2^53', line({ f: { start: '9007199254740991i', duration: '9007199254740991i' } }), F],
  // strings
  ['service absent, process_name absent', line({ f: { service: null, process_name: null } }), F],
  ['service empty', line({ f: { service: '""' } }), F],
  ['service a number', line({ f: { service: '5i' } }), F],
  ['service a float', line({ f: { service: '5.5' } }), F],
  ['service a boolean', line({ f: { service: 'true' } }), W],
  ['service over max_field_bytes', line({ f: { service: `"${'s'.repeat(8193)}"` } }), W],
  ['service at max_field_bytes', line({ f: { service: `"${'s'.repeat(8192)}"` } }), F],
  ['resource with , = and spaces', line({ f: { resource: '"GET /a,b=c d"' } }), F],
  ['operation, method, route as numbers', line({ f: { operation: '1i', http_method: '2u', http_route: '-3i' } }), F],
  ['http_route a boolean', line({ f: { http_route: 'F' } }), W],
  ['process_name over max_field_bytes', line({ f: { process_name: `"${'p'.repeat(20)}"` } }), W, { max_batch_spans: 10, max_field_bytes: 16 }],
  // status
  ['status OK', line({ f: { status: '"OK"' } }), F],
  ['status Warning', line({ f: { status: '"Warning"' } }), F],
  ['status ERROR', line({ f: { status: '"ERROR"' } }), F],
  ['status error with code 200', line({ f: { status: '"error"' } }), F],
  ['status ok with code 503', line({ f: { http_status_code: '503i' } }), F],
  ['status as a tag', line({ tags: ',host=h,status=eRRor', f: { status: null } }), F],
  ['status bad', line({ f: { status: '"fine"' } }), W],
  ['status a number', line({ f: { status: '1i' } }), W],
  ['status empty', line({ f: { status: '""' } }), W],
  // addresses
  ...IPS.map((ip): [string, string, Path] => [`address ${ip}`, line({ f: { src_ip: ip, dst_ip: ip } }), F]),
  ['address empty', line({ f: { src_ip: '""' } }), F],
  ['addresses absent', line({ f: { src_ip: null, dst_ip: null } }), F],
  ['address 256', line({ f: { dst_ip: '"10.0.0.256"' } }), W],
  ['address with zone', line({ f: { dst_ip: '"fe80::1%eth0"' } }), F],
  ['address longer than the scanner caches', line({ f: { dst_ip: `"fe80::1%${'z'.repeat(60)}"` } }), F],
  ['address as a tag', line({ tags: ',dst_ip=10.9.9.9,host=h', f: { dst_ip: null } }), F],
  ['address a hostname', line({ f: { dst_ip: '"localhost"' } }), W],
  ['address a number', line({ f: { src_ip: '5i' } }), W],
  ['address with a space', line({ f: { src_ip: '"10.0.0.1 "' } }), W],
  ['address over max_field_bytes', line({ f: { src_ip: '"2001:db8:85a3::8a2e:370:7334"', dst_ip: '""', resource: null, http_route: null, service: null, process_name: null } }), W, { max_batch_spans: 10, max_field_bytes: 20 }],
  // app ids
  ['app trace id 32 hex', line({ f: { app_trace_id: '"4bf92f3577b34da6a3ce929d0e0e4736"' } }), F],
  ['app trace id 32 HEX', line({ f: { app_trace_id: '"4BF92F3577B34DA6A3CE929D0E0E4736"' } }), F],
  ['app trace id 32 zeros', line({ f: { app_trace_id: '"00000000000000000000000000000000"' } }), F],
  ['app trace id 16 hex', line({ f: { app_trace_id: '"00f067aA0ba902b7"' } }), F],
  ['app trace id 16 decimal digits (read as hex)', line({ f: { app_trace_id: '"1234567890123456"' } }), F],
  ['app trace id decimal 19', line({ f: { app_trace_id: '"8812345678901234567"' } }), F],
  ['app trace id decimal u64 max', line({ f: { app_trace_id: '"18446744073709551615"' } }), F],
  ['app trace id decimal over u64', line({ f: { app_trace_id: '"18446744073709551616"' } }), F],
  ['app trace id decimal 25 digits', line({ f: { app_trace_id: '"1234567890123456789012345"' } }), F],
  ['app trace id decimal 0', line({ f: { app_trace_id: '"0"' } }), F],
  ['app trace id hex 12', line({ f: { app_trace_id: '"abcdef012345"' } }), F],
  ['app trace id empty', line({ f: { app_trace_id: '""' } }), F],
  ['app trace id 33', line({ f: { app_trace_id: `"${'a'.repeat(33)}"` } }), W],
  ['app trace id not hex', line({ f: { app_trace_id: '"xyz"' } }), W],
  ['app trace id integer', line({ f: { app_trace_id: '8812345678901234567i' } }), F],
  ['app trace id integer 16 digits', line({ f: { app_trace_id: '1234567890123456i' } }), F],
  ['app trace id integer 16 digits with zeros', line({ f: { app_trace_id: '001234567890123456u' } }), F],
  ['app trace id integer u64 max', line({ f: { app_trace_id: '18446744073709551615u' } }), F],
  ['app trace id integer 0', line({ f: { app_trace_id: '0i' } }), F],
  ['app trace id negative', line({ f: { app_trace_id: '-5i' } }), W],
  ['app trace id float', line({ f: { app_trace_id: '5' } }), S],
  ['app trace id boolean', line({ f: { app_trace_id: 'true' } }), W],
  ['app trace id as a tag', line({ tags: ',app_trace_id=4bf92f3577b34da6a3ce929d0e0e4736,host=h' }), F],
  ['app parent id 16 hex', line({ f: { app_parent_id: '"00f067aa0ba902b7"' } }), F],
  ['app parent id 20', line({ f: { app_parent_id: `"${'9'.repeat(20)}"` } }), F],
  ['app parent id 21', line({ f: { app_parent_id: `"${'9'.repeat(21)}"` } }), W],
  ['app parent id integer', line({ f: { app_parent_id: '5i' } }), F],
  ['app parent id not hex', line({ f: { app_parent_id: '"g"' } }), W],
  // sampled
  ...['1i', '-1i', '0i', '1u', '0u', '-0i', '001i', 'true', 'false', 't', 'F', '"1"', '"-1"', '"0"'].map((v): [string, string, Path] => [`sampled ${v}`, line({ f: { app_span_sampled: v } }), F]),
  ...['" 1"', '"1.0"', '"0x1"', '"+1"', '1', '-1', '1.0'].map((v): [string, string, Path] => [`sampled ${v} (Number takes it)`, line({ f: { app_span_sampled: v } }), S]),
  ...['2i', '-2i', '"2"', '""', '" "', '"yes"', '1.5', '18446744073709551615u'].map((v): [string, string, Path] => [`sampled ${v} (rejected)`, line({ f: { app_span_sampled: v } }), W]),
  ['sampled as a tag', line({ tags: ',app_span_sampled=-1,host=h' }), F],
  // count attributes and other attributes
  ['bytes_read integer', line({ f: { bytes_read: '5i', bytes_written: '6u', tid_usr: '77i' } }), F],
  ['bytes_read digit string', line({ f: { bytes_read: '"5"' } }), F],
  ['bytes_read 20-digit string', line({ f: { bytes_read: `"${'9'.repeat(20)}"` } }), F],
  ['bytes_read 21-digit string', line({ f: { bytes_read: `"${'9'.repeat(21)}"` } }), W],
  ['bytes_read empty string', line({ f: { bytes_read: '""' } }), W],
  ['bytes_read negative', line({ f: { bytes_read: '-5i' } }), W],
  ['bytes_read negative bigint (the validator takes it)', line({ f: { bytes_read: '-9007199254740993i' } }), S],
  ['bytes_read float integral', line({ f: { bytes_read: '5' } }), S],
  ['bytes_read float fraction', line({ f: { bytes_read: '5.5' } }), W],
  ['bytes_read boolean', line({ f: { bytes_read: 'true' } }), W],
  ['bytes_read tag', line({ tags: ',bytes_read=5,host=h' }), F],
  ['bytes_read bad tag', line({ tags: ',bytes_read=x,host=h' }), W],
  ['bytes_read bad tag overridden by a field', line({ tags: ',bytes_read=x,host=h', f: { bytes_read: '5i' } }), S],
  ['attrs of every type', line({ f: { a: '"x"', b: '-5i', c: '5u', d: '1.5', e: '-2', f: 't', g: 'FALSE', h: '9223372036854775807i', i: '-9223372036854775808i', j: '""' } }), F],
  ['attr booleans', line({ f: { a: 'True', b: 'TRUE', c: 'True', d: 'F', e: 'False', g: 'true', h: 'false', k: 'T', l: 'f' } }), F],
  ['attr floats the fast path leaves', line({ f: { a: '1e3', b: '.5', c: '+5', d: '5.', e: '2.5E-2' } }), S],
  ['attr float infinite', line({ f: { a: `${'9'.repeat(400)}` } }), W],
  ['attr float long finite', line({ f: { a: `${'9'.repeat(300)}` } }), F],
  ['attr bad float', line({ f: { a: '1.2.3' } }), W],
  ['attr bad boolean', line({ f: { a: 'tru' } }), W],
  ['attr integer over int64', line({ f: { a: '9223372036854775808i' } }), W],
  ['attr integer over uint64', line({ f: { a: '18446744073709551616u' } }), W],
  ['attr u negative', line({ f: { a: '-1u' } }), W],
  ['attr i without digits', line({ f: { a: 'i' } }), W],
  ['attr over max_field_bytes', line({ f: { note: `"${'n'.repeat(8193)}"` } }), W],
  ['tag attr over max_field_bytes', line({ tags: `,host=h,note=${'n'.repeat(8193)}` }), W],
  ['tag attr over max_field_bytes overridden by a field', line({ tags: `,host=h,note=${'n'.repeat(8193)}`, f: { note: '1i' } }), S],
  ['attr __proto__ over max_field_bytes (a key like any other)', line({ f: { ['__proto__']: `"${'n'.repeat(8193)}"` } }), W],
  ['tag constructor over max_field_bytes (a key like any other)', line({ tags: `,constructor=${'n'.repeat(8193)},host=h` }), W],
  ['attrs named like Object.prototype members', line({ tags: ',constructor=c,host=h', f: { ['__proto__']: '"p"', toString: '1i' } }), F],
  ['attr with quotes and = in key', line({ f: { 'a"b': '1i', 'k#': '"v"' } }), F],
  ['attr string with #, spaces, commas', line({ f: { note: '"# a, b = c"' } }), F],
  // syntax
  ['CRLF', line().replace('\n', '\r\n'), F],
  ['no final newline', line().slice(0, -1), F],
  ['trailing spaces and tabs', line().replace('\n', ' \t \n'), F],
  ['tab before the timestamp', line().replace(' 1732500000000000000', '\t1732500000000000000'), F],
  ['spaces before the fields', line().replace('host-frontend ', 'host-frontend    '), F],
  ['leading spaces', `   ${line()}`, F],
  ['tab after the tags', line().replace('host-frontend ', 'host-frontend\t'), W],
  ['CR inside', line().replace(',tid=', '\r,tid='), W],
  ['lone CR at the end', line().replace('\n', '\r'), F],
  ['CR then text', line().replace('\n', '\rx\n'), W],
  ['two timestamps', line().replace('\n', ' 5\n'), W],
  ['text after the timestamp', line().replace('\n', 'x\n'), W],
  ['timestamp not digits', line({ time: 'abc' }), W],
  ['timestamp "-"', line({ time: '-' }), W],
  ['trailing comma', line({ time: null }).replace('\n', ',\n'), W],
  ['space then comma', line({ time: null }).replace('\n', ' ,x=1i\n'), W],
  ['empty tag value', line({ tags: ',host=h,a=' }), W],
  ['tag without =', line({ tags: ',host=h,a' }), W],
  ['empty tag key', line({ tags: ',host=h,=a' }), W],
  ['no fields', 'dketrace,host=h\n', W],
  ['no fields after space', 'dketrace,host=h \n', W],
  ['only the measurement', 'dketrace', W],
  ['field without value', line().replace(',tid=9697i', ',tid='), W],
  ['field without =', line().replace(',tid=9697i', ',tid'), W],
  ['unterminated string', line().replace('"1.1"', '"1.1'), W],
  ['string across lines', line().replace('"1.1"', '"1.\n1"'), W],
  ['backslash in a tag', line({ tags: ',host=host\\ frontend' }), S],
  ['backslash in a key', line({ f: { 'a\\,b': '1i' } }), S],
  ['escaped quote in a string', line({ f: { service: '"fr\\"ont"' } }), S],
  ['backslash at the end of a string', line({ f: { service: '"front\\\\"' } }), S],
  ['backslash before the newline', line().replace('\n', '\\\n'), W],
  ['key with a dot', line({ f: { 'a.b': '1i' } }), F],
  ['known key with different case', line({ f: { PID: '"x"' } }), F],
  ['known key with a prefix', line({ f: { xpid: '"x"', pidx: '"x"' } }), F],
];

for (const [name, body, path, cfg] of cases) {
  test(`scan ≡ reference: ${name} (${path})`, () => {
    const got = same(body, cfg ?? CFG, name);
    const want = path === F ? { fast: 1, slow: 0, whole: 0 } : path === S ? { fast: 0, slow: 1, whole: 0 } : { fast: 0, slow: 0, whole: 1 };
    assert.deepEqual({ fast: got.fast, slow: got.slow, whole: got.whole }, want, `${name}: path`);
    if ('rows' in got.want && path !== W) assert.equal(got.want.rows.length, 1);
  });
}

test('scan ≡ reference: bodies of several points, blank lines, comments, locs', () => {
  const a = line(), b = line({ f: { ebpf_span_type: '"exit"', direction: '"outgoing"', req_seq: '1i' } });
  const bodies: [string, { fast: number; slow: number; whole: number }][] = [
    ['', { fast: 0, slow: 0, whole: 0 }],
    ['\n\n  \r\n\t\n', { fast: 0, slow: 0, whole: 0 }],
    ['# only a comment', { fast: 0, slow: 0, whole: 0 }],
    [`# comment with "quote\n${a}  # indented comment\n\n${b}\r\n\n${a}`, { fast: 3, slow: 0, whole: 0 }],
    [`${a}${line({ f: { req_seq: '5' } })}${b}`, { fast: 2, slow: 1, whole: 0 }],
    [`${a}${line({ f: { req_seq: '-5i' } })}${b}`, { fast: 1, slow: 0, whole: 1 }],
    [`${a}dketrace,host=x f="multi\nline"\n${b}`, { fast: 1, slow: 0, whole: 1 }],
    [`${a}   \t${b}`, { fast: 2, slow: 0, whole: 0 }],
    [`${a}\r\r\n${b}`, { fast: 2, slow: 0, whole: 0 }],
    // a multi-line string that makes a *valid* point: the whole body goes to the reference
    [`${a}${line({ f: { note: '"two\nlines"' } })}${b}`, { fast: 1, slow: 0, whole: 1 }],
    // non-ASCII anywhere: the whole body goes to the reference
    [`${a}${line({ f: { note: '"hôte"' } })}`, { fast: 0, slow: 0, whole: 1 }],
    [`${a}${line({ tags: ',host=日本' })}${b}`, { fast: 0, slow: 0, whole: 1 }],
  ];
  for (const [body, want] of bodies) {
    const got = same(body);
    assert.deepEqual({ fast: got.fast, slow: got.slow, whole: got.whole }, want, JSON.stringify(body).slice(0, 300));
  }
});

test('scan ≡ reference: max_batch_spans (the 413 is the reference\'s)', () => {
  const l = line();
  const cfg = { max_batch_spans: 3, max_field_bytes: 8192 };
  assert.ok('rows' in same(l.repeat(3), cfg).want);
  const over = same(l.repeat(4), cfg).want;
  assert.ok('thrown' in over && /SEQ_ERR_BODY_TOO_LARGE 413/.test(over.thrown), JSON.stringify(over));
  // errors before the limit do not spare the 413; comments and blank lines do not count
  assert.ok('thrown' in same(`${l}${line({ f: { pid: null } })}${l}${l}`, cfg).want);
  assert.ok('rows' in same(`${l}\n# c\n${l}\n\n${l}`, cfg).want);
  assert.ok('thrown' in same(`${l}${l}${l}x`, cfg).want);
});

test('scan ≡ reference: bodies over 64 KiB (decoded in pieces by the reference)', () => {
  const a = line(), b = line({ f: { ebpf_span_type: '"exit"', direction: '"outgoing"' } });
  const big = (a + b).repeat(150);
  assert.ok(big.length > 128 * 1024);
  assert.equal(same(big).fast, 300);
  same(big + line({ f: { pid: '"x"' } }) + big);
  const at = big.indexOf('\n', 70_000) + 1;
  same(big.slice(0, at) + 'dketrace,host=h note="a\n' + 'b" 5\n' + big.slice(at)); // a string across the piece's cut
  same(big.slice(0, at) + line({ f: { note: '"a\nb"' } }) + big.slice(at));
});

test('scan ≡ reference: more distinct addresses than the scanner caches (the cache is cleared)', () => {
  let body = '';
  for (let i = 0; i < 7000; i++) {
    const ip = i % 3 === 0 ? `"2001:db8::${i.toString(16)}"` : `"10.${i >> 16}.${(i >> 8) & 255}.${i & 255}"`;
    body += line({ f: { src_ip: ip, dst_ip: i % 7 === 0 ? '"10.0.0.256"' : ip } });
    if (i % 500 === 499) {
      same(body);
      body = '';
    }
  }
  same(body);
});

test('scan: no row of an earlier body leaks into the next one', () => {
  const out = new JoinBatch(2);
  scanLineProtocol(Buffer.from(line().repeat(5)), CFG, out);
  assert.equal(out.n, 5);
  scanLineProtocol(Buffer.from(line({ f: { req_seq: '7i' } })), CFG, out);
  assert.equal(out.n, 1);
  assert.equal(out.reqSeq[0], 7);
  scanLineProtocol(Buffer.from(''), CFG, out);
  assert.equal(out.n, 0);
});

// ---- differential fuzz ----

function fuzzer(seed: number) {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const chance = (p: number) => r() < p;
  const digits = (n: number) => { let s = String(1 + int(9)); while (s.length < n) s += String(int(10)); return s; };
  const hex = (n: number) => { let s = ''; while (s.length < n) s += '0123456789abcdefABCDEF'[int(22)]; return s; };
  const u32 = () => String(int(4294967296));
  const hosts = ['host-frontend', 'host-auth', 'db-proxy-7', 'h', 'web-1.example.com', 'a'.repeat(40)];
  const ips = ['10.151.25.82', '192.168.1.10', '10.0.0.1', '::1', 'fe80::1', '2001:db8:85a3::8a2e:370:7334', '::ffff:10.1.2.3', '172.16.0.254'];
  const services = ['frontend', 'auth', 'catalog', 'db-proxy', 'cache', ''];
  /** canonical forms of a non-negative integer: i, u, digit string */
  const uintForm = (v: string) => pick([`${v}i`, `${v}u`, `"${v}"`, `${v}i`]);
  function group(): string | null {
    switch (int(9)) {
      case 0: return null;
      case 1: return '0i';
      case 2: return `-${digits(1 + int(19)).replace(/^9/, '8')}i`; // negative int64 (DataKit)
      case 3: return `${digits(20).replace(/^\d/, '1')}u`.replace(/^1[5-9]/, '14'); // 20 digits ≤ u64 max
      case 4: return `"${digits(1 + int(19))}"`;
      case 5: return `"${'0'.repeat(int(3))}${digits(1 + int(15))}"`;
      case 6: return '-9223372036854775808i';
      default: return `${digits(1 + int(18))}i`;
    }
  }
  function appTrace(): string | null {
    switch (int(8)) {
      case 0: case 1: return null;
      case 2: return `"${hex(32)}"`;
      case 3: return `"${hex(16)}"`;
      case 4: return `"${digits(19 + int(2))}"`;
      case 5: return '""';
      case 6: return pick([`${digits(1 + int(18))}i`, `${digits(1 + int(19))}u`, '18446744073709551615u']);
      default: return `"${digits(1 + int(15))}"`;
    }
  }
  function attr(): [string, string] {
    const k = pick(['http_version', 'bytes_read', 'bytes_written', 'tid_usr', 'thread_name', 'x', 'ratio', 'ok', 'neg', 'big']);
    switch (k) {
      case 'http_version': return [k, pick(['"1.1"', '"2"', '""'])];
      case 'bytes_read': case 'bytes_written': case 'tid_usr': return [k, pick([`${u32()}i`, `"${u32()}"`, `${u32()}u`])];
      case 'ratio': return [k, pick(['1.5', '-0.25', '3', '0'])];
      case 'ok': return [k, pick(['t', 'T', 'true', 'True', 'TRUE', 'f', 'F', 'false', 'False', 'FALSE'])];
      case 'neg': return [k, `-${digits(1 + int(18))}i`];
      case 'big': return [k, pick(['18446744073709551615u', '9223372036854775807i', '-9223372036854775808i'])];
      default: return [k, `"${pick(services)} #${int(100)}, a=b"`];
    }
  }
  /** One span line (no newline); `exotic`: also valid forms the fast path leaves to the reference. */
  function spanLine(exotic: boolean): string {
    const entry = chance(0.5);
    const tags: [string, string][] = [];
    const fields: [string, string][] = [];
    const put = (k: string, v: string | null, tagOk = true) => {
      if (v === null) return;
      if (tagOk && chance(0.08) && /^"[^ ,\\]+"$/.test(v)) tags.push([k, v.slice(1, -1)]);
      else fields.push([k, v]);
    };
    const host = pick(hosts);
    if (chance(0.9)) tags.push(['host', host]); else fields.push(['host', `"${host}"`]);
    const kind = int(4);
    if (kind !== 1) put('direction', entry ? '"incoming"' : '"outgoing"');
    if (kind !== 2) put('ebpf_span_type', entry ? '"entry"' : '"exit"');
    put('req_seq', uintForm(u32()));
    put('resp_seq', uintForm(chance(0.05) ? '0' : u32()));
    put('thread_trace_id', group());
    put('pid', pick([`"${1 + int(40000)}"`, `${1 + int(40000)}i`]));
    if (chance(0.8)) put('tid', uintForm(String(1 + int(40000))));
    const start = 1732500000000000 + int(1e9);
    const withStart = chance(0.8);
    if (withStart) put('start', pick([`${start}i`, `"${start}"`]));
    put('duration', uintForm(String(int(100000))));
    if (chance(0.9)) put('service', `"${pick(services)}"`);
    if (chance(0.7)) put('process_name', `"${pick(services)}"`);
    if (chance(0.9)) put('src_ip', chance(0.05) ? '""' : `"${pick(ips)}"`);
    if (chance(0.9)) put('src_port', uintForm(String(int(65536))));
    if (chance(0.9)) put('dst_ip', `"${pick(ips)}"`);
    if (chance(0.9)) put('dst_port', uintForm(String(int(65536))));
    if (chance(0.8)) put('operation', '"HTTP"');
    if (chance(0.8)) put('resource', `"GET /${pick(services)}"`);
    if (chance(0.8)) put('status', `"${pick(['ok', 'warning', 'error', 'OK', 'Error', 'WARNING'])}"`);
    if (chance(0.8)) put('http_method', '"GET"');
    if (chance(0.8)) put('http_route', `"/${pick(services)}"`);
    if (chance(0.9)) put('http_status_code', uintForm(String(pick([0, 200, 201, 404, 499, 500, 503, 999]))));
    put('app_trace_id', appTrace());
    if (chance(0.3)) put('app_parent_id', pick([`"${hex(16)}"`, `"${digits(1 + int(19))}"`, `${1 + int(1000)}i`]));
    if (chance(0.2)) put('app_span_sampled', pick(['1i', '-1i', '0i', 'true', 'false', '"1"', '"-1"']));
    for (let k = int(4); k > 0; k--) { const [a, v] = attr(); put(a, v, !a.startsWith('bytes') && a !== 'tid_usr'); }
    if (exotic && chance(0.5)) {
      const [k, v] = pick([
        ['req_seq', `${int(1000)}`], ['pid', `${1 + int(1000)}.0`], ['app_span_sampled', '" 1"'], ['bytes_read', '7'],
        ['service', '"a\\"b"'], ['note', '1e3'], ['src_ip', '"fe80::1%eth0"'], ['thread_trace_id', '42'],
      ] as const);
      const at = fields.findIndex(([f]) => f === k);
      if (at >= 0) fields[at] = [k, v]; else fields.push([k, v]);
    }
    // varied order: shuffle fields (and tags) a little
    for (let k = fields.length - 1; k > 0; k--) if (chance(0.3)) { const j = int(k + 1); [fields[k], fields[j]] = [fields[j], fields[k]]; }
    if (chance(0.3)) tags.reverse();
    const time = !withStart || chance(0.9) ? ` ${start}${pick(['000', '123', '999'])}` : chance(0.5) ? ' -5' : '';
    return `dketrace${tags.map(([k, v]) => `,${k}=${v}`).join('')} ${fields.map(([k, v]) => `${k}=${v}`).join(',')}${time}`;
  }
  function body(lines: number, exotic: boolean): string {
    let s = '';
    for (let i = 0; i < lines; i++) {
      if (chance(0.03)) s += pick(['\n', '# a comment, "with" = things\n', '   \n', '\r\n']);
      s += (chance(0.05) ? '  ' : '') + spanLine(exotic) + (chance(0.05) ? ' \t' : '') + (chance(0.1) ? '\r\n' : '\n');
    }
    return chance(0.1) ? s.slice(0, -1) : s;
  }
  const SPECIAL = ['\\', ',', '=', '"', '\n', '\r', '#', '-', '0', '9', 'i', 'u', 't', 'f', 'e', '.', ' ', '\t', 'é', '\xff'];
  function mutate(s: string): Buffer {
    let b = Buffer.from(s, 'latin1');
    for (let m = 1 + int(3); m > 0; m--) {
      const at = int(b.length);
      const ch = Buffer.from(pick(SPECIAL), pick(SPECIAL) === 'é' ? 'utf8' : 'latin1');
      switch (int(4)) {
        case 0: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]); break; // delete
        case 1: b = Buffer.concat([b.subarray(0, at + 1), b.subarray(at)]); break; // duplicate
        case 2: b = Buffer.concat([b.subarray(0, at), ch, b.subarray(at + 1)]); break; // replace
        default: b = Buffer.concat([b.subarray(0, at), ch, b.subarray(at)]); // insert
      }
    }
    return b;
  }
  return { body, mutate, int, chance, pick };
}

test('fuzz: realistic batches take the fast path, and scan ≡ reference on them', () => {
  const f = fuzzer(1);
  let fast = 0, points = 0;
  for (let k = 0; k < 300; k++) {
    const body = f.body(1 + f.int(30), false);
    const got = same(body, CFG, `batch ${k}`);
    assert.ok('rows' in got.want && got.want.errors.length === 0, `generated batch ${k} has errors: ${JSON.stringify('rows' in got.want ? got.want.errors : got.want)}`);
    fast += got.fast;
    points += got.want.rows.length;
  }
  assert.ok(points > 4000, `${points} points`);
  // Every generated form is one the fast path takes: a scanner that falls back fails here.
  assert.equal(fast, points, `${fast} of ${points} points on the fast path`);
});

test('fuzz: valid forms the fast path leaves to the reference', () => {
  const f = fuzzer(2);
  let slow = 0, fast = 0;
  for (let k = 0; k < 300; k++) {
    const got = same(f.body(1 + f.int(20), true), CFG, `batch ${k}`);
    slow += got.slow;
    fast += got.fast;
  }
  assert.ok(slow > 500 && fast > slow, `slow ${slow}, fast ${fast}`);
});

test('fuzz: mutated batches, scan ≡ reference (rows, errors, thrown)', () => {
  const f = fuzzer(3);
  let bodies = 0, withErrors = 0, fastPoints = 0, thrown = 0;
  for (let k = 0; k < 4000; k++) {
    const body = f.mutate(f.body(1 + f.int(12), f.chance(0.3)));
    const cfg = f.chance(0.1) ? { max_batch_spans: 1 + f.int(8), max_field_bytes: f.pick([8, 16, 24, 8192]) } : CFG;
    const got = same(body, cfg, `mutated ${k}`);
    bodies++;
    fastPoints += got.fast;
    if ('thrown' in got.want) thrown++;
    else if (got.want.errors.length > 0) withErrors++;
  }
  // The mutations must produce errors of every kind, and leave many bodies to the fast path.
  assert.ok(withErrors > bodies / 5 && withErrors < bodies * 0.95, `${withErrors} of ${bodies} bodies with errors`);
  assert.ok(thrown > 10, `${thrown} thrown`);
  assert.ok(fastPoints > 4000, `${fastPoints} points on the fast path`);
});

test('fuzz: mutated big bodies (over 64 KiB)', () => {
  const f = fuzzer(4);
  for (let k = 0; k < 30; k++) same(f.mutate(f.body(400, f.chance(0.5))), CFG, `big ${k}`);
});
