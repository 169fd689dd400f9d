import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { LAYOUT, decodeFrame, frameReader, ipv6 } from './decode.js';
import { defaultLoaderPath } from './loader.js';
import { dataFrame } from './testkit.js';

test('the TypeScript layout matches the C structs (seqtrace-loader --print-layout)', () => {
  const bin = defaultLoaderPath();
  assert.ok(existsSync(bin), `${bin} is missing: run make -C src/bpf`);
  const fromC = JSON.parse(execFileSync(bin, ['--print-layout'], { encoding: 'utf8' }));
  assert.deepEqual(fromC, JSON.parse(JSON.stringify(LAYOUT)));
});

function frameOf(head: string, tail: string): Buffer {
  return dataFrame({
    dir: 'recv', family: 6, flags: 2, pid: 42, tid: 43, seq: 0xfffffff0, tsNs: 123456789, sockId: 0x1_0000_0007, len: 5000,
    head: Buffer.from(head, 'latin1'), tail: Buffer.from(tail, 'latin1'), srcPort: 8080, dstPort: 51234,
    srcAddr: Buffer.from('20010db8000000000000000000000001', 'hex'), dstAddr: Buffer.from('00000000000000000000ffff0a000002', 'hex'),
  });
}

test('u64 fields are exact numbers below 2^53: syscall mode\'s invented socket ids (from 2^52) too', () => {
  const f = dataFrame({
    dir: 'send', pid: 1, tid: 1, sockId: 2 ** 52 + 5, tsNs: 2 ** 53 - 1, head: Buffer.from('x'),
    srcAddr: [127, 0, 0, 1], dstAddr: [127, 0, 0, 1], srcPort: 1, dstPort: 2,
  });
  const ev = decodeFrame(f, 0, f.length);
  assert.ok(ev.kind === 'data');
  assert.equal(ev.sockId, 2 ** 52 + 5);
  assert.notEqual(ev.sockId, 2 ** 52 + 4);
  assert.equal(ev.tsNs, 2 ** 53 - 1);
});

test('a data frame decodes field by field', () => {
  const f = frameOf('GET / HTTP/1.1\r\n', 'end');
  const ev = decodeFrame(f, 0, f.length);
  assert.equal(ev.kind, 'data');
  if (ev.kind !== 'data') return;
  assert.equal(ev.dir, 'recv');
  assert.equal(ev.pid, 42);
  assert.equal(ev.tid, 43);
  assert.equal(ev.seq, 0xfffffff0);
  assert.equal(ev.tsNs, 123456789);
  assert.equal(ev.sockId, 4294967303, 'both halves of the u64');
  assert.equal(ev.len, 5000);
  assert.equal(ev.head.toString(), 'GET / HTTP/1.1\r\n');
  assert.equal(ev.tail.toString(), 'end');
  assert.equal(ev.family, 6);
  assert.equal(ev.srcIp, '2001:db8::1');
  assert.equal(ev.srcPort, 8080);
  assert.equal(ev.dstIp, '::ffff:10.0.0.2');
  assert.equal(ev.dstPort, 51234);
  assert.equal(ev.truncated, true);
  assert.equal(ev.noPayload, false);
});

test('frames split anywhere across chunks come out whole and in order', () => {
  const frames = [frameOf('first', ''), frameOf('second message', 'tail'), frameOf('', ''), frameOf('fourth', '')];
  const stream = Buffer.concat(frames.flatMap((f) => {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(f.length);
    return [len, f];
  }));
  const starts: number[] = [];
  for (let at = 0, k = 0; k < frames.length; k++) { starts.push(at); at += 4 + frames[k].length; }
  // every pair of cuts: three chunks (a size word split three ways, a frame over three chunks)
  for (let a = 1; a < stream.length; a++) {
    for (let b = a; b < stream.length; b += a < 8 || a > stream.length - 8 ? 1 : 7) {
      // each read a buffer of its own, as a pipe's
      const chunks: Buffer[] = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)].map((c) => Buffer.from(c));
      const heads: string[] = [];
      let copied = 0;
      const read = frameReader((buf, at, size) => {
        const ev = decodeFrame(buf, at, size);
        if (ev.kind === 'data') heads.push(ev.head.toString());
        // only a frame that a cut falls in may come in a buffer of its own
        if (!chunks.includes(buf)) {
          copied++;
          assert.equal(buf.length, 4 + size, 'a split frame is copied alone');
        }
      });
      for (const c of chunks) read(c);
      assert.deepEqual(heads, ['first', 'second message', '', 'fourth'], `cuts at ${a}, ${b}`);
      const frameAt = (x: number) => starts.filter((s) => s < x).length - 1;
      const cutIn = new Set([a, b].filter((x) => !starts.includes(x) && x < stream.length).map(frameAt));
      assert.equal(copied, cutIn.size, `cuts at ${a}, ${b}: frames copied`);
    }
  }
});

test('a frame of unknown kind or too short is an error naming it', () => {
  assert.throws(() => decodeFrame(Buffer.from([99, 0, 0, 0]), 0, 4), /unknown kind 99/);
  assert.throws(() => decodeFrame(Buffer.from([1, 0, 0, 0]), 0, 4), /kind data is 4 bytes, expected at least 120/);
});

test('IPv6 addresses print in RFC 5952 form', () => {
  const h = (s: string) => Buffer.from(s, 'hex');
  assert.equal(ipv6(h('00000000000000000000000000000001'), 0), '::1');
  assert.equal(ipv6(h('fe800000000000000202b3fffe1e8329'), 0), 'fe80::202:b3ff:fe1e:8329');
  assert.equal(ipv6(h('20010db8000000010000000000000001'), 0), '2001:db8:0:1::1');
  assert.equal(ipv6(h('20010db8000100010001000100010001'), 0), '2001:db8:1:1:1:1:1:1');
});

test('a thread frame decodes field by field', () => {
  const T = LAYOUT.thread;
  const b = Buffer.alloc(T.size);
  b[T.kind] = LAYOUT.kinds.thread;
  b.writeUInt32LE(500, T.pid);
  b.writeUInt32LE(502, T.tid);
  b.writeUInt32LE(501, T.ptid);
  b.writeBigUInt64LE(987654321n, T.ts_ns);
  assert.deepEqual(decodeFrame(b, 0, b.length), { kind: 'thread', pid: 500, tid: 502, ptid: 501, tsNs: 987654321 });
  assert.throws(() => decodeFrame(b, 0, 12), /kind thread is 12 bytes, expected at least 24/);
  b[T.kind] = LAYOUT.kinds.thread_exit;
  b.writeUInt32LE(0, T.ptid);
  assert.deepEqual(decodeFrame(b, 0, b.length), { kind: 'thread_exit', pid: 500, tid: 502, tsNs: 987654321 });
  assert.throws(() => decodeFrame(b, 0, 20), /kind thread_exit is 20 bytes, expected at least 24/);
});

test('a goroutine frame decodes field by field', () => {
  const G = LAYOUT.goroutine;
  const b = Buffer.alloc(G.size);
  b[G.kind] = LAYOUT.kinds.goroutine;
  b.writeUInt32LE(42, G.pid);
  b.writeUInt32LE(43, G.tid);
  b.writeBigUInt64LE(9000000001n, G.goid);
  b.writeBigUInt64LE(17n, G.pgoid);
  b.writeBigUInt64LE(5n, G.ts_ns);
  assert.deepEqual(decodeFrame(b, 0, G.size), { kind: 'goroutine', tsNs: 5, pid: 42, tid: 43, goid: 9000000001, pgoid: 17 });
  assert.throws(() => decodeFrame(b, 0, G.size - 1), /kind goroutine is 39 bytes, expected at least 40/);
});

test('a Unix socket\'s event: no addresses or ports, the peer\'s id, the path after the head (a file\'s up to its NUL, an abstract one as @name)', () => {
  const cases: Array<[Buffer, string]> = [
    [Buffer.from('/run/php/php8.2-fpm.sock\0', 'latin1'), '/run/php/php8.2-fpm.sock'],
    [Buffer.from('\0seqtrace-abstract', 'latin1'), '@seqtrace-abstract'],
    [Buffer.alloc(0), ''],
  ];
  for (const [path, want] of cases) {
    const peer = Buffer.alloc(16);
    peer.writeBigUInt64LE(4097n, 0);
    const f = dataFrame({ dir: 'recv', family: 'unix', pid: 7, tid: 8, sockId: 4096, seq: 24, head: Buffer.from('GET / HTTP/1.1\r\n'), path, srcAddr: Buffer.alloc(16), dstAddr: peer, srcPort: 0, dstPort: 0 });
    const ev = decodeFrame(f, 0, f.length);
    assert.ok(ev.kind === 'data');
    assert.deepEqual([ev.family, ev.srcIp, ev.dstIp, ev.srcPort, ev.dstPort, ev.peerId, ev.unixPath, ev.seq], ['unix', '', '', 0, 0, 4097, want, 24]);
    assert.equal(ev.head.toString('latin1'), 'GET / HTTP/1.1\r\n', 'the head stops where the path begins');
  }
});
