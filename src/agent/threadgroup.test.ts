import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createThreadGroups, threadKey, INHERIT_GRACE_NS, INHERIT_MAX_HELD, type ThreadGroups } from './threadgroup.js';

test('an exit on a thread with one open group joins it', () => {
  const g = createThreadGroups(5n);
  const id = g.open(101, 100);
  assert.equal(id, '6');
  assert.equal(g.join(101), id);
  assert.equal(g.join(101), id, 'several exits join the same group');
  assert.equal(g.join(102), '', 'another thread joins nothing');
  assert.deepEqual(g.stats, { opened: 1, joined: 2, ambiguous: 0, alone: 1, byRequestId: 0, inherited: 0, pooled: 0 });
});

test('a closed group is never joined', () => {
  const g = createThreadGroups(1n);
  const id = g.open(7, 1);
  g.close(7, id, 0);
  assert.equal(g.join(7), '');
  assert.equal(g.openCount(), 0);
  const id2 = g.open(7, 1);
  assert.notEqual(id2, id, 'the next entry on the thread gets a new group');
  assert.equal(g.join(7), id2);
});

test('several open groups on one thread (event loop): the exit joins none, counted', () => {
  const g = createThreadGroups(1n);
  const a = g.open(9, 1);
  const b = g.open(9, 1);
  assert.equal(g.join(9), '');
  assert.equal(g.stats.ambiguous, 1);
  g.close(9, a, 0);
  assert.equal(g.join(9), b, 'once only one is left, exits join it');
});

test('with no single open group on its thread, an exit joins the open entry of its process with its X-Request-ID', () => {
  const g = createThreadGroups(1n);
  // an event loop (thread 9 of process 1) serving two requests a proxy's client tagged
  const a = g.open(9, 1, 'rid-a');
  const b = g.open(9, 1, 'rid-b');
  const plain = g.open(9, 1);
  assert.equal(g.join(9, 1, 'rid-b'), b);
  assert.equal(g.join(9, 1, 'rid-a'), a);
  assert.equal(g.join(9, 1), '', 'no id: ambiguous as before');
  assert.equal(g.join(9, 1, 'rid-x'), '', 'an id no open entry carried');
  assert.equal(g.join(9, 2, 'rid-a'), '', 'another process\'s entry is never joined');
  assert.equal(g.join(33, 1, 'rid-a'), a, 'a worker thread with no group of its own');
  assert.deepEqual([g.stats.byRequestId, g.stats.ambiguous, g.stats.alone], [3, 3, 0]);
  g.close(9, a, 0);
  assert.equal(g.join(33, 1, 'rid-a'), '', 'closed: never joined');
  // the same id on two open entries selects neither; once one has closed, the other
  const c = g.open(9, 1, 'rid-b');
  assert.equal(g.join(33, 1, 'rid-b'), '');
  g.close(9, b, 0);
  assert.equal(g.join(33, 1, 'rid-b'), c);
  g.close(9, plain, 0);
  assert.equal(g.join(9, 1, 'rid-x'), c, 'a thread with one open group joins it, whatever the id');
  g.dropProcess(1, 0);
  assert.equal(g.join(33, 1, 'rid-b'), '', 'the process exited');
  assert.equal(g.openCount(), 0);
});

test('hasOpen: whether any thread of a process serves a request (own or inherited groups)', () => {
  const g = createThreadGroups(1n);
  assert.equal(g.hasOpen(1), false);
  const a = g.open(7, 1);
  g.inherit(7, 8, 1);
  assert.deepEqual([g.hasOpen(1), g.hasOpen(2)], [true, false]);
  const b = g.open(threadKey(2, 0, 5), 2);
  assert.equal(g.hasOpen(2), true, 'a goroutine');
  g.close(7, a, 10);
  g.close(threadKey(2, 0, 5), b, 10);
  assert.deepEqual([g.hasOpen(1), g.hasOpen(2)], [false, false], 'closed, the inheritance with it');
});

test('goroutines are keyed by process and goroutine id, not tid', () => {
  const g = createThreadGroups(1n);
  const k = threadKey(50, 51, 7);
  const id = g.open(k, 50);
  // The same goroutine may run on another OS thread when it makes its call.
  assert.equal(g.join(threadKey(50, 99, 7)), id);
  assert.equal(g.join(threadKey(60, 99, 7)), '', 'same goid in another process is another goroutine');
  assert.equal(threadKey(50, 51, 0), 51);
});

test('process exit drops its groups', () => {
  const g = createThreadGroups(1n);
  g.open(11, 10);
  g.open(threadKey(10, 11, 3), 10);
  g.open(21, 20);
  g.dropProcess(10, 0);
  assert.equal(g.openCount(), 1);
  assert.equal(g.join(11), '');
  assert.equal(g.join(21) !== '', true);
});

test('ids: u64 decimal, never 0, random base differs per start, wraps at 2^64', () => {
  const g = createThreadGroups((1n << 64n) - 2n);
  assert.equal(g.open(1, 1), ((1n << 64n) - 1n).toString());
  assert.equal(g.open(2, 1), '1', 'skips 0, which means "no group"');
  const a = createThreadGroups().open(1, 1);
  const b = createThreadGroups().open(1, 1);
  assert.notEqual(a, b);
  assert.match(a, /^[1-9][0-9]*$/);
  assert.ok(BigInt(a) < 1n << 64n);
});

test('a thread created while its creator serves one entry inherits the group until it closes', () => {
  const g = createThreadGroups(1n);
  const id = g.open(10, 1);
  g.inherit(10, 11, 1); // handler thread 10 starts worker 11 for a parallel call
  g.inherit(11, 12, 1); // and that worker starts another
  assert.equal(g.join(11), id);
  assert.equal(g.join(12), id);
  assert.equal(g.openCount(), 1, 'inherited memberships are not groups of their own');
  g.close(10, id, 0);
  assert.equal(g.join(11), '', 'never after it closed');
  assert.equal(g.join(12), '');
  assert.equal(g.stats.inherited, 2);
});

test('a thread created while its creator serves several entries (or none) inherits nothing', () => {
  const g = createThreadGroups(1n);
  g.inherit(10, 11, 1);
  assert.equal(g.join(11), '');
  g.open(10, 1);
  g.open(10, 1);
  g.inherit(10, 12, 1);
  assert.equal(g.join(12), '');
  assert.equal(g.stats.inherited, 0);
});

test('process exit drops owned and inherited memberships', () => {
  const g = createThreadGroups(1n);
  const id = g.open(10, 1);
  g.inherit(10, 11, 1);
  g.dropProcess(1, 0);
  assert.equal(g.openCount(), 0);
  assert.equal(g.join(11), '');
  assert.equal(g.join(10), '');
  void id;
});

test('a thread created after its creator\'s group closed inherits nothing (no join of a closed group)', () => {
  const g = createThreadGroups(1n);
  const id = g.open(10, 1);
  g.inherit(10, 11, 1);
  g.close(10, id, 0);
  g.inherit(10, 12, 1); // the handler starts a thread after writing its response
  g.inherit(11, 13, 1); // an outliving child starts one too
  assert.equal(g.join(11), '');
  assert.equal(g.join(12), '');
  assert.equal(g.join(13), '');
  const next = g.open(10, 1); // the handler's next entry
  assert.notEqual(next, id);
  assert.equal(g.join(11), '', 'an outliving child does not follow its creator into the next entry');
  g.inherit(10, 14, 1);
  assert.equal(g.join(14), next);
  assert.equal(g.stats.inherited, 2);
});

test('concurrent handlers: each one\'s threads join only its own group', () => {
  const g = createThreadGroups(1n);
  const a = g.open(10, 1);
  const b = g.open(20, 1);
  g.inherit(10, 11, 1);
  g.inherit(20, 21, 1);
  g.inherit(10, 12, 1);
  assert.equal(g.join(11), a);
  assert.equal(g.join(12), a);
  assert.equal(g.join(21), b);
  g.close(10, a, 0);
  assert.equal(g.join(11), '');
  assert.equal(g.join(21), b, 'closing one group leaves the other\'s threads alone');
});

test('a new thread with a reused tid forgets what an earlier thread with that tid had', () => {
  const g = createThreadGroups(1n);
  const a = g.open(10, 1);
  g.inherit(10, 11, 1); // thread 11 ends while a is open; the next thread gets tid 11 again
  g.inherit(10, 11, 1);
  assert.equal(g.join(11), a, 'the same group listed twice would have made it ambiguous');
  // An owner thread that died mid-entry and whose tid went to a new thread of another entry.
  const b = g.open(30, 1);
  g.inherit(30, 31, 1);
  const c = g.open(40, 1);
  g.inherit(40, 30, 1);
  assert.equal(g.join(30), c);
  g.close(30, b, 0); // the dead owner's entry ends (its connection closed)
  assert.equal(g.join(31), '', 'b\'s inheritors leave it although its owner\'s tid was reused');
  assert.equal(g.join(30), c);
  void a;
});

test('an event loop with thousands of open groups: each close removes exactly its group, in any order', () => {
  const g = createThreadGroups(1n);
  const n = 20000;
  const ids = Array.from({ length: n }, () => g.open(9, 1));
  const inherited = g.open(10, 1); // another thread, one group: untouched throughout
  assert.equal(g.openCount(), n + 1);
  // close all but one, in a shuffled order (and each twice: the second close finds nothing)
  let seed = 42;
  const order = ids.map((id, i) => [id, (seed = (seed * 1103515245 + 12345) >>> 0) + i] as const).sort((x, y) => x[1] - y[1]).map((x) => x[0]);
  const last = order.pop()!;
  for (const [k, id] of order.entries()) {
    g.close(9, id, 0);
    g.close(9, id, 0);
    if (k % 5000 === 0) assert.equal(g.join(9), '', 'still ambiguous');
  }
  assert.equal(g.openCount(), 2);
  assert.equal(g.join(9), last, 'the one left is joined');
  assert.equal(g.join(10), inherited);
  g.close(9, last, 0);
  assert.equal(g.join(9), '');
  // the thread's state is reused: one, then two, then one again
  const a = g.open(9, 1);
  const b = g.open(9, 1);
  assert.equal(g.join(9), '');
  g.close(9, a, 0);
  assert.equal(g.join(9), b);
  g.dropProcess(1, 0);
  assert.equal(g.openCount(), 0);
  assert.equal(g.join(9), '');
  assert.equal(g.join(10), '');
});

// Inherited joins are held until the group closes: a thread started for the request has
// ended by then (or just after), a pool's worker lives on and may have worked for others.

/** An exit on `key`, sent through settle as conn.ts does; returns what it was sent with. */
function exitOn(g: ThreadGroups, key: number | string): { sent: string | null } {
  const out = { sent: null as string | null };
  const id = g.join(key);
  const m = id ? g.inheritance(key, id) : null;
  if (!m) out.sent = id;
  else g.settle(m, (keep) => { out.sent = keep ? id : ''; });
  return out;
}

test('a thread started for one request and gone when it ends: its exits keep the group', () => {
  const g = createThreadGroups(1n);
  const id = g.open(10, 1);
  g.inherit(10, 11, 1);
  const a = exitOn(g, 11);
  const b = exitOn(g, 11);
  assert.equal(a.sent, null, 'held while the request is open');
  assert.equal(exitOn(g, 10).sent, id, 'the handler\'s own exits are not held');
  g.threadExit(11, 1000);
  assert.equal(b.sent, null);
  g.close(10, id, 2000);
  assert.equal(a.sent, id);
  assert.equal(b.sent, id);
  assert.equal(g.stats.pooled, 0);
});

test('a thread that ends just after its request (the handler woken by its join first) keeps the group', () => {
  const g = createThreadGroups(1n);
  const id = g.open(10, 1);
  g.inherit(10, 11, 1);
  const a = exitOn(g, 11);
  g.close(10, id, 5000);
  g.advance(5000 + INHERIT_GRACE_NS / 2 - 1);
  assert.equal(a.sent, null, 'undecided within the grace');
  g.threadExit(11, 5000 + INHERIT_GRACE_NS / 2);
  assert.equal(a.sent, id, 'decided at the thread\'s end, not at the end of the grace');
  g.advance(5000 + INHERIT_GRACE_NS);
  assert.equal(g.stats.pooled, 0);
});

test('a pool\'s worker started lazily by a handler: its exits are sent without the group, never with another request\'s', () => {
  const g = createThreadGroups(1n);
  const e = g.open(10, 1); // request E's handler submits work; the pool starts worker 11
  g.inherit(10, 11, 1);
  const f = g.open(20, 1); // request F's handler submits work too; worker 11 takes it
  const forE = exitOn(g, 11);
  const forF = exitOn(g, 11); // F's call, made while E is open: would have joined E
  g.close(10, e, 3000);
  g.close(20, f, 4000);
  g.threadExit(11, 3000 + INHERIT_GRACE_NS + 1); // the pool shuts down, after E's grace
  g.advance(4000 + INHERIT_GRACE_NS);
  assert.equal(forE.sent, '');
  assert.equal(forF.sent, '');
  assert.equal(g.stats.pooled, 2);
  assert.equal(exitOn(g, 11).sent, '', 'and nothing afterwards');
});

test('an exit that completes after its inheritance was decided is sent at once, as decided', () => {
  const g = createThreadGroups(1n);
  const kept = g.open(10, 1);
  g.inherit(10, 11, 1);
  const id11 = g.join(11);
  const m11 = g.inheritance(11, id11)!;
  const dropped = g.open(20, 1);
  g.inherit(20, 21, 1);
  const m21 = g.inheritance(21, g.join(21))!;
  g.threadExit(11, 10);
  g.close(10, kept, 20);
  g.close(20, dropped, 30);
  g.advance(30 + INHERIT_GRACE_NS);
  const got: boolean[] = [];
  g.settle(m11, (keep) => got.push(keep));
  g.settle(m21, (keep) => got.push(keep));
  assert.deepEqual(got, [true, false]);
  assert.equal(g.stats.pooled, 1);
});

test(`a thread that makes ${INHERIT_MAX_HELD} calls within one request is taken for a pool's: dropped at once, joins no more`, () => {
  const g = createThreadGroups(1n);
  const id = g.open(10, 1);
  g.inherit(10, 11, 1);
  const sent = Array.from({ length: INHERIT_MAX_HELD }, () => exitOn(g, 11));
  assert.ok(sent.every((s) => s.sent === ''), 'held memory is bounded');
  assert.equal(g.join(11), '');
  assert.equal(g.openCount(), 1);
  g.close(10, id, 100);
  assert.equal(g.stats.pooled, INHERIT_MAX_HELD);
});

test('goroutines keep what they inherit from the start (their ends are not reported)', () => {
  const g = createThreadGroups(1n);
  const handler = threadKey(1, 0, 5);
  const id = g.open(handler, 1);
  g.inherit(handler, threadKey(1, 0, 6), 1);
  assert.equal(exitOn(g, threadKey(1, 0, 6)).sent, id);
});

test('a process exit ends its threads: held exits keep their groups', () => {
  const g = createThreadGroups(1n);
  const id = g.open(10, 1);
  g.inherit(10, 11, 1);
  const a = exitOn(g, 11);
  g.dropProcess(1, 0); // any time, 0 included, is an end
  assert.equal(a.sent, id);
});

test('flush (agent stopping): ended threads keep their groups, live ones do not', () => {
  const g = createThreadGroups(1n);
  const e = g.open(10, 1);
  g.inherit(10, 11, 1);
  g.inherit(10, 12, 1);
  const a = exitOn(g, 11);
  const b = exitOn(g, 12);
  const f = g.open(20, 1);
  g.inherit(20, 21, 1);
  const c = exitOn(g, 21);
  g.threadExit(11, 50);
  g.close(20, f, 60); // pending, thread 21 alive
  g.flush();
  assert.deepEqual([a.sent, b.sent, c.sent], [e, '', '']);
});

test('a thread\'s end forgets its tid: the next thread with that tid, started outside any request, inherits nothing', () => {
  const g = createThreadGroups(1n);
  const id = g.open(10, 1);
  g.inherit(10, 11, 1);
  g.threadExit(11, 5);
  g.inherit(30, 11, 1); // a thread that serves no request starts a thread; it gets tid 11
  assert.equal(g.join(11), '');
  g.close(10, id, 9);
  assert.equal(g.stats.pooled, 0);
});
