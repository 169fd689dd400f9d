import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createUnixPairs } from './unixpairs.js';

// Ends: C (client, id 1) and S (server, id 2). A step is an end reporting a message start:
// [end, dir, label, head]. A label names the message: steps with the same label must get the
// same id, different labels different ids. `peerUnknown`: the step's end does not know its
// peer yet (the capture had not seen the peer when it reported the call).
type Step = [end: 'C' | 'S', dir: 'send' | 'recv', label: string, head?: string, peerUnknown?: true];

const REQ = 'GET /a HTTP/1.1\r\n';
const RESP = 'HTTP/1.1 200 OK\r\n';
const cases: Array<{ name: string; steps: Step[]; paired: number }> = [
  {
    name: 'each end in turn, the writer first',
    steps: [['C', 'send', 'q1', REQ], ['S', 'recv', 'q1', REQ], ['S', 'send', 'r1', RESP], ['C', 'recv', 'r1', RESP],
      ['C', 'send', 'q2', REQ], ['S', 'recv', 'q2', REQ], ['S', 'send', 'r2', RESP], ['C', 'recv', 'r2', RESP]],
    paired: 4,
  },
  {
    name: 'the reader reports first (the write\'s call returned after the peer read it)',
    steps: [['S', 'recv', 'q1', REQ], ['C', 'send', 'q1', REQ], ['C', 'recv', 'r1', RESP], ['S', 'send', 'r1', RESP]],
    paired: 2,
  },
  {
    name: 'the client does not know its peer yet (its first call came before the server\'s)',
    steps: [['C', 'send', 'q1', REQ, true], ['S', 'recv', 'q1', REQ], ['S', 'send', 'r1', RESP], ['C', 'recv', 'r1', RESP]],
    paired: 2,
  },
  {
    name: 'a request in flight when tracing began: the server\'s first is not the client\'s first, alike as they are',
    steps: [['S', 'recv', 'q0', REQ], ['S', 'send', 'r0', RESP], ['C', 'recv', 'r0', RESP],
      ['C', 'send', 'q1', REQ], ['S', 'recv', 'q1', REQ], ['S', 'send', 'r1', RESP], ['C', 'recv', 'r1', RESP]],
    paired: 3, // r0 too: the client's orphan answer
  },
  {
    name: 'the server traced two exchanges later than the client: its first request is the client\'s third',
    steps: [['C', 'send', 'q1', REQ], ['C', 'recv', 'r1', RESP], ['C', 'send', 'q2', REQ], ['C', 'recv', 'r2', RESP],
      ['C', 'send', 'q3', REQ], ['S', 'recv', 'q3', REQ], ['S', 'send', 'r3', RESP], ['C', 'recv', 'r3', RESP]],
    paired: 2,
  },
  {
    name: 'interim answers (100 Continue) and the final one',
    steps: [['C', 'send', 'q1', REQ], ['S', 'recv', 'q1', REQ], ['S', 'send', 'i1', 'HTTP/1.1 100 Continue'], ['C', 'recv', 'i1', 'HTTP/1.1 100 Continue'],
      ['S', 'send', 'r1', RESP], ['C', 'recv', 'r1', RESP]],
    paired: 3,
  },
  {
    name: 'a pipelining client: the second request is left unpaired at both ends, not paired wrongly',
    steps: [['C', 'send', 'q1', REQ], ['C', 'send', 'q2', 'GET /b HTTP/1.1'], ['S', 'recv', 'q1', REQ], ['S', 'send', 'r1', RESP],
      ['C', 'recv', 'r1', RESP], ['S', 'recv', 'q2s', 'GET /b HTTP/1.1'], ['S', 'send', 'r2', RESP], ['C', 'recv', 'r2', RESP]],
    paired: 3,
  },
  {
    name: 'first bytes that disagree are not the same message (the capture began inside one)',
    steps: [['C', 'send', 'q1', REQ], ['S', 'recv', 'q1x', 'PUT /other HTTP/1.1']],
    paired: 0,
  },
  {
    name: 'a head that is not there (the message began past the captured bytes) agrees with anything',
    steps: [['C', 'send', 'q1', REQ], ['S', 'recv', 'q1', '']],
    paired: 1,
  },
];

for (const c of cases) {
  test(`Unix socket pairs: ${c.name}`, () => {
    const pairs = createUnixPairs();
    const ids = new Map<string, number>();
    const seen: Array<[string, number]> = [];
    for (const [end, dir, label, head, peerUnknown] of c.steps) {
      const self = end === 'C' ? 1 : 2;
      const peer = peerUnknown ? 0 : end === 'C' ? 2 : 1;
      const id = pairs.messageStart(self, peer, dir, Buffer.from(head ?? '', 'latin1'));
      assert.ok(Number.isInteger(id) && id > 0 && id < 2 ** 32, `${label}: a u32 id other than 0`);
      const known = ids.get(label);
      if (known !== undefined) assert.equal(id, known, `${label}: both ends give it one id`);
      ids.set(label, id);
      seen.push([label, id]);
    }
    for (const [a, ia] of seen) for (const [b, ib] of seen) if (a !== b) assert.notEqual(ia, ib, `${a} and ${b} differ`);
    assert.equal(pairs.stats.paired, c.paired);
  });
}

test('Unix socket pairs: what an end queued goes with it; queues are bounded', () => {
  const pairs = createUnixPairs();
  for (let i = 0; i < 100; i++) pairs.messageStart(1, 2, 'send', Buffer.from(`GET /${i}`));
  assert.equal(pairs.stats.unpaired, 100 - 16, 'at most 16 queued one way');
  // the server reads the oldest still queued
  const id = pairs.messageStart(2, 1, 'recv', Buffer.from('GET /84'));
  assert.equal(pairs.stats.paired, 1);
  assert.ok(id > 0);
  pairs.forget(1);
  pairs.forget(2);
  assert.equal(pairs.size(), 0);
});
