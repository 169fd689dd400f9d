// The two ends of a Unix stream socket, joined by the agent.
//
// TCP gives both ends of a connection the same sequence numbers, and the linker joins a client's
// exit span to the server's entry span by them. A Unix socket has none, and both of its ends are
// on this host, seen by this agent: so the agent gives each message (request or response) an id
// of its own, the same at both ends, and the spans carry those ids as req_seq and resp_seq.
//
// Ids are handed out at message starts, in the order the capture reports them (time order). The
// first end to report a message gives it a fresh id and queues it on the stream it travels
// (writer → reader); the other end, reporting the same message, takes the oldest queued one
// whose first bytes agree with its own (the same bytes, unless the capture began inside them).
// Either end may come first: a write is reported when its call returns, and the reader may have
// read and reported the bytes by then.
//
// What one end reported and the other never will (tracing of one process began later, a message
// in flight when tracing began) must not be taken for a later message: every message start on
// a stream empties the stream going the other way. HTTP/1 takes turns, so by the time an end
// starts a message one way, everything of the other way has been written and read (an answer
// is read before the next request is written; a request is read before its answer is written),
// and both ends' reports of it are in. What is left there then is unpaired, and dropped. A
// client that pipelines (requests written before the answers are read) loses its pairs this
// way: those spans stay unlinked, never linked wrongly.
import { randomInt } from 'node:crypto';

/** A message one end reported that the other has not yet. */
interface Queued {
  id: number;
  head: Buffer;
}

/** One end's queues: its messages written that its peer has not reported reading, and read that its peer has not reported writing. */
interface End {
  out: Queued[];
  in: Queued[];
}

export interface UnixPairStats {
  /** Messages whose id the second end took from the first. */
  paired: number;
  /** Messages one end reported that the other did not (dropped at a turn, or from a full queue). */
  unpaired: number;
}

export interface UnixPairs {
  /**
   * A message starts at end `sockId` (its peer `peerId`, 0 when not known yet), written by it
   * (`send`) or read (`recv`); `head`: its first bytes as this end saw them (may be empty).
   * Returns the message's id, a u32 other than 0: the same the other end gets for it.
   */
  messageStart(sockId: number, peerId: number, dir: 'send' | 'recv', head: Buffer): number;
  /** The end is gone: what it queued goes with it. */
  forget(sockId: number): void;
  /** Ends with something queued (for tests and metrics). */
  size(): number;
  readonly stats: UnixPairStats;
}

/** Messages one end may have queued one way (pipelined requests, unanswered reads). */
const QUEUE_MAX = 16;
/** First bytes compared: enough to tell two requests apart, when they differ at all. */
const HEAD_BYTES = 32;

export function createUnixPairs(): UnixPairs {
  const ends = new Map<number, End>();
  const stats: UnixPairStats = { paired: 0, unpaired: 0 };

  const endOf = (id: number): End => {
    let e = ends.get(id);
    if (!e) {
      e = { out: [], in: [] };
      ends.set(id, e);
    }
    return e;
  };

  /** The first queued message whose head agrees with `head` (as far as both go): taken with those before it. */
  function take(q: Queued[], head: Buffer): number {
    for (let i = 0; i < q.length; i++) {
      const h = q[i].head;
      const n = Math.min(h.length, head.length);
      if (h.compare(head, 0, n, 0, n) !== 0) continue;
      stats.unpaired += i;
      const id = q[i].id;
      q.splice(0, i + 1);
      stats.paired++;
      return id;
    }
    return 0;
  }

  function drop(q: Queued[] | undefined): void {
    if (!q || q.length === 0) return;
    stats.unpaired += q.length;
    q.length = 0;
  }

  function push(q: Queued[], head: Buffer): number {
    if (q.length >= QUEUE_MAX) {
      q.shift();
      stats.unpaired++;
    }
    let id = 0;
    while (id === 0) id = randomInt(0x1_0000_0000 - 1) + 1;
    // a copy: the head is a view into the capture's chunk
    q.push({ id, head: Buffer.from(head.subarray(0, HEAD_BYTES)) });
    return id;
  }

  return {
    stats,
    messageStart(sockId, peerId, dir, head) {
      const self = endOf(sockId);
      const peer = peerId !== 0 ? ends.get(peerId) : undefined;
      const send = dir === 'send';
      // the other end's reports of this message: its reads (it came first), or its writes
      const theirs = peer ? (send ? peer.in : peer.out) : undefined;
      let id = theirs && theirs.length > 0 ? take(theirs, head.subarray(0, HEAD_BYTES)) : 0;
      if (id === 0) id = push(send ? self.out : self.in, head);
      // the stream the other way is done with: what neither end paired there never will be
      drop(send ? self.in : self.out);
      drop(peer ? (send ? peer.out : peer.in) : undefined);
      return id;
    },
    forget(sockId) {
      const e = ends.get(sockId);
      if (!e) return;
      stats.unpaired += e.out.length + e.in.length;
      ends.delete(sockId);
    },
    size() {
      return ends.size;
    },
  };
}
