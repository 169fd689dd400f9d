// Per-connection state and span assembly.
//
// A connection (kernel socket cookie) gets a role from the first request seen on it: the
// process that READS a request is the server (entry spans), the one that WRITES it is the
// client (exit spans). Each direction has its own incremental parser. Requests queue up in
// order (pipelining) and each is answered by the next final response.
//
//   entry: request read  → (reqSeq, start, open thread group) … response written → span
//   exit:  request written (join thread group) → … response read → span
//
// A span is emitted the moment its response is complete (not when the next request starts:
// DataKit's defect §3.10 held spans 10–20 s), except an exit of a thread that a handler
// started, which waits until that handler's request has ended (and, for a pool's worker,
// ≈ 0.25–0.6 s more: threadgroup.ts, settle), and an exit that joined no group, with an
// X-Request-ID that no open entry's request carried, made while its process serves requests,
// which waits (up to RID_HOLD_NS) for an entry of its process to answer with that id: a proxy
// that makes the id itself sends it upstream and back to its client (nginx's `$request_id`).
// A connection that ends before the response gives a failed span (status error,
// http_status_code 0).
//
// The table is bounded: least recently active connections are evicted first (an eighth of the
// table at a time, when it is full).
import { TLS_ID, type DataEvent, type CloseEvent } from './capture/event.js';
import type { EbpfSpan } from '../span/span.js';
import { createParser, headerTable, DEFAULT_HEADERS, BODY_FRAMED, BODY_NONE, PROTOCOL_SWITCH, looksLikeRequest, looksLikeResponse, type HttpMessage, type HttpParser, type ParserStats, type ParserSink } from './http/parser.js';
import { parseTraceContext, type AppTraceContext, type TraceContextStats } from './tracecontext.js';
import { processKey, requestKey, threadKey, type Inheritance, type ThreadGroups, type ThreadKey } from './threadgroup.js';
import { buildSpan } from './spanbuild.js';
import { createFcgiParser, looksLikeFastCgi } from './fcgi/parser.js';
import { createUwsgiParser, looksLikeUwsgi } from './uwsgi/parser.js';
import { createUnixPairs, type UnixPairStats } from './unixpairs.js';
import type { Clock } from './clock.js';

export interface ProcessLookup {
  service(pid: number): string;
  processName(pid: number): string;
  threadName(pid: number, tid: number): string;
  /** False for a process whose threads do not say which request a call belongs to (processKey). */
  threadLinks(pid: number): boolean;
}

export interface ConnTableOptions {
  host: string;
  convToDdtrace: boolean;
  groups: ThreadGroups;
  procs: ProcessLookup;
  clock: Pick<Clock, 'epochUs'>;
  onSpan(span: EbpfSpan): void;
  /** Most connections tracked at once (default 65536). */
  maxConnections?: number;
  /** Most requests awaiting a response on one connection (pipelining; default 64). */
  maxPending?: number;
  /** A connection with no call for this long is forgotten by expireIdle() (default 120 s). */
  idleMs?: number;
  /**
   * A client's connection whose request waits for its answer, the same (default 15 min): a long
   * poll is answered after minutes of silence (Consul's blocking queries wait up to 10 min).
   */
  waitMs?: number;
  /** Headers carrying a request id (`request_id_headers`; default X-Request-ID). */
  requestIdHeaders?: readonly string[];
  /**
   * A server's answer ran until its connection's end: the capture should send `shutdown` events
   * (onShutdown), which end such answers at the server's FIN rather than when the client has
   * closed too.
   */
  onUntilClose?(): void;
  /**
   * The connection carries something other than HTTP/1 from now on (another protocol's
   * exchanges, HTTP/2, a WebSocket or tunnel after its switch): the capture may stop sending
   * its bytes (Capture.mute). Called when that is found, and again at most once a second of
   * stream time while its calls keep coming (a loader started anew, a socket pushed out of the
   * kernel's map: the mute did not hold).
   */
  onNotHttp?(sockId: number): void;
  /**
   * Process `pid` began a TLS handshake whose plaintext the capture does not see (OpenSSL's
   * probes not on it yet: tls/openssl.ts looks again). The connection is muted as another protocol.
   */
  onTlsHandshake?(pid: number): void;
}

export interface ConnStats {
  /** Connections currently tracked. */
  tracked: number;
  opened: number;
  closed: number;
  evicted: number;
  /** Connections forgotten after idleMs without a call (not counted in `evicted`). */
  expired: number;
  /** Calls on connections whose role is not known yet that were not a request start. */
  unclassified: number;
  /** Responses with no request waiting (tracing began mid-exchange). */
  orphanResponses: number;
  spans: number;
  /** Spans of exchanges that ended without a complete response. */
  failedSpans: number;
  /** Requests dropped: connection evicted, or too many pipelined. */
  droppedExchanges: number;
  /** Exits of an event loop joined to the entry of their process that answered with their X-Request-ID. */
  answeredRequestIds: number;
  /** Connections that left HTTP/1 (101 Switching Protocols: WebSocket, h2c; a CONNECT tunnel) or began as HTTP/2: their calls since are ignored. */
  protocolSwitches: number;
  /** Connections taken for another protocol (NOT_HTTP_TURNS turns, or NOT_HTTP_ONE_WAY calls one way, without a request start): their calls since are ignored. */
  otherProtocol: number;
  /** Connections that began a TLS handshake whose plaintext the capture does not get (not OpenSSL, or its probes not yet on the process): muted. */
  tlsUnseen: number;
  /** Jumps forward in a direction's sequence numbers: events lost, bytes skipped by count. */
  seqGaps: number;
  /** Calls whose bytes had all been seen already (ignored). */
  seqRepeats: number;
  /** Messages on Unix sockets given the same id at both ends, or not (unixpairs.ts). */
  unix: UnixPairStats;
  parse: ParserStats;
  trace: TraceContextStats;
}

const ROLE_UNKNOWN = 0, ROLE_SERVER = 1, ROLE_CLIENT = 2;

interface Exchange {
  req: HttpMessage;
  pid: number;
  tid: number;
  goid: number;
  groupKey: ThreadKey;
  threadGroup: string;
  /** An exit's group, when its thread inherited it: the span waits until that is decided. */
  inheritance: Inheritance | null;
  ctx: AppTraceContext | null;
  /** The request's first byte: TCP's sequence number, or on a Unix socket the id both ends give it (unixpairs.ts). */
  reqSeq: number;
  respSeq: number;
  respStatus: number;
  respBytes: number;
  /** An exit waiting for an entry of its process to answer with its X-Request-ID: its key in ridWaiting, else ''. */
  ridKey: string;
  /** Such an exit's span, once complete, until then (or RID_HOLD_NS). */
  held: EbpfSpan | null;
}

interface Conn {
  sockId: number;
  pid: number;
  role: number;
  reqParser: HttpParser | null;
  respParser: HttpParser | null;
  srcIp: string;
  srcPort: number;
  dstIp: string;
  dstPort: number;
  lastNs: number;
  /** Requests in order; the head is the one the next response answers. */
  pending: Exchange[];
  /** The event being fed (parsers call back synchronously). */
  ev: DataEvent | null;
  /** Sequence number expected next per direction (-1: not known yet). */
  nextSend: number;
  nextRecv: number;
  /**
   * Reads of a response stamped before its request's write: a data event is stamped when its
   * call moved the bytes, at the latest when the call ends (docs/kernel.md, "Time"), and a
   * writer whose CPU was taken away between sending and that moment (a busy host) lets the peer
   * answer, and this process read the answer on another CPU, first. Held (a few, briefly) until
   * the request is seen, then fed after it.
   */
  early: DataEvent[] | null;
  /** The connection left HTTP/1 (a 101, a tunnel) or never spoke it: its calls are not parsed any more. */
  switched: boolean;
  /** Before its role is known: turns between sending and receiving of calls that started no request (NOT_HTTP_TURNS). */
  unknownTurns: number;
  /** The direction of its last such call (0 none yet, 1 send, 2 recv). */
  unknownDir: number;
  /** Such calls one way since the last turn (NOT_HTTP_ONE_WAY). */
  unknownRun: number;
  /** When onNotHttp was last called for it (stream time, ns; 0 never). */
  notHttpNs: number;
  /** The protocol, the spans' operation: HTTP, FastCGI (a web server and PHP-FPM) or uwsgi (a web server and uWSGI). */
  operation: string;
  /** A Unix stream socket: its messages take their ids from unixPairs, its end is a read of 0 bytes. */
  unix: boolean;
  /** Unix: the peer's socket id (0 until the capture names it). */
  peerId: number;
  /** Unix: the socket file's path. */
  unixPath: string;
  /** The plaintext of a TLS connection (DataEvent.tls): its seqs name records, not bytes. */
  tls: boolean;
}

/** The client connection preface of HTTP/2 (RFC 9113 §3.4): "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n". */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n', 'latin1');
const isHttp2Preface = (head: Buffer): boolean => head.length >= H2_PREFACE.length && head[0] === 0x50 && head.compare(H2_PREFACE, 0, H2_PREFACE.length, 0, H2_PREFACE.length) === 0;

/** A TLS handshake record (RFC 8446 §5.1: type 22, legacy version 3.x): a ClientHello or ServerHello. */
const isTlsHandshake = (head: Buffer): boolean => head.length >= 5 && head[0] === 0x16 && head[1] === 0x03 && head[2] <= 0x04;

/**
 * A connection whose calls turned this many times between sending and receiving without one
 * starting a request is another protocol's (a database's, a cache's): its bytes are not HTTP.
 * Turns, not calls: tracing that began in the middle of an HTTP exchange sees its body in one
 * direction, then at most the answer (one turn) before the next request classifies it.
 */
const NOT_HTTP_TURNS = 4;

/**
 * A connection whose calls went this many times one way without starting a request is not
 * HTTP either: a log stream (a service's stdout under systemd is a Unix socket to journald), a
 * feed. An HTTP body seen from its middle (tracing began in an upload) ends at its answer, a
 * turn, long before unless it is more than this many calls still: that connection is then
 * muted too, and its later requests not seen.
 */
const NOT_HTTP_ONE_WAY = 64;

/** How long a connection handed to onNotHttp may go on sending calls before it is handed again. */
const NOT_HTTP_AGAIN_NS = 1_000_000_000;

/** How long an exit waits, once complete, for an entry to answer with its X-Request-ID (stream time). */
const RID_HOLD_NS = 1_000_000_000;
/** Most exits waiting so at once; more are sent as they are. */
const RID_WAIT_MAX = 4096;

/** How many reads a connection holds for a request not seen yet, and for how long (stream time). */
const EARLY_MAX = 4;
const EARLY_NS = 10_000_000;

const EMPTY = Buffer.alloc(0);

/** The bytes of the event from sequence number `seq` on, as far as its head goes. */
function headFrom(ev: DataEvent, seq: number): Buffer {
  const off = (seq - ev.seq) >>> 0;
  return off < ev.head.length ? ev.head.subarray(off) : EMPTY;
}

export interface ConnTable {
  onData(ev: DataEvent): void;
  onClose(ev: CloseEvent): void;
  /** The socket sent its FIN: what it was sending until the close is complete. */
  onShutdown(ev: CloseEvent): void;
  /** The process exited: its connections end (in-flight exchanges fail). */
  onProcessExit(pid: number, tsNs: number): void;
  /** End every connection (agent stopping): in-flight exchanges are dropped, not failed. */
  clear(): void;
  /**
   * Forget connections with no call for idleMs (waitMs for a client waiting for its answer) by
   * the kernel's clock, the latest event seen: their close may have been lost with a full ring
   * buffer, or come from a process we stopped tracing. Their waiting requests are dropped
   * (counted), their thread groups closed. A later call on such a connection starts it afresh,
   * from its next request. Call it every few seconds.
   */
  expireIdle(): number;
  /** Requests waiting for their responses, over all connections (for metrics: walks the table). */
  pendingExchanges(): number;
  readonly stats: ConnStats;
}

export function createConnTable(opts: ConnTableOptions): ConnTable {
  const max = opts.maxConnections ?? 65536;
  const maxPending = opts.maxPending ?? 64;
  const idleNs = (opts.idleMs ?? 120_000) * 1e6;
  const waitNs = Math.max(opts.waitMs ?? 900_000, opts.idleMs ?? 0) * 1e6;
  let latestNs = 0;
  const conns = new Map<number, Conn>();
  // pid → its connections: a traced process's exit ends its own, without a walk of the table
  // (short-lived clients, prefork children exiting, each walked every connection).
  const perPid = new Map<number, Set<Conn>>();
  const parse: ParserStats = { parseErrors: 0, truncated: 0, chunkedLost: 0 };
  const headers = opts.requestIdHeaders ? headerTable(opts.requestIdHeaders) : DEFAULT_HEADERS;
  const unixPairs = createUnixPairs();
  const stats: ConnStats = {
    tracked: 0, opened: 0, closed: 0, evicted: 0, expired: 0, unclassified: 0, orphanResponses: 0,
    spans: 0, failedSpans: 0, droppedExchanges: 0, answeredRequestIds: 0, protocolSwitches: 0, otherProtocol: 0, tlsUnseen: 0, seqGaps: 0, seqRepeats: 0,
    unix: unixPairs.stats, parse, trace: { invalid: 0 },
  };
  // pid and X-Request-ID → exits waiting for an entry of that process to answer with it, and
  // the complete ones among them in the order their wait ends.
  const ridWaiting = new Map<string, Exchange[]>();
  let ridWaits = 0;
  const ridHeld: Array<{ ex: Exchange; untilNs: number }> = [];
  // thread → the Unix socket whose answer it is writing as a server: an answer that runs until
  // the close ends when that thread reads its next request (endUnixAnswer).
  const unixAnswering = new Map<ThreadKey, Conn>();

  function unwait(ex: Exchange): void {
    const key = ex.ridKey;
    ex.ridKey = '';
    const list = ridWaiting.get(key);
    const at = list ? list.indexOf(ex) : -1;
    if (at < 0) return;
    ridWaits--;
    if (list!.length === 1) ridWaiting.delete(key);
    else list!.splice(at, 1);
  }

  /** Held exits whose wait is over by `nowNs` are sent without a group (all of them: -1). */
  function releaseHeld(nowNs: number): void {
    while (ridHeld.length > 0 && (nowNs < 0 || ridHeld[0].untilNs <= nowNs)) {
      const { ex } = ridHeld.shift()!;
      const span = ex.held;
      if (!span) continue; // answered meanwhile
      ex.held = null;
      unwait(ex);
      opts.onSpan(span);
    }
  }

  /** An entry of process `pid` answers with X-Request-ID `rid`: the exits waiting for it join its group. */
  function answered(pid: number, rid: string, group: string): void {
    const key = requestKey(pid, rid);
    const list = ridWaiting.get(key);
    if (!list) return;
    ridWaiting.delete(key);
    ridWaits -= list.length;
    for (const ex of list) {
      ex.ridKey = '';
      ex.threadGroup = group;
      stats.answeredRequestIds++;
      const span = ex.held;
      if (span) {
        ex.held = null;
        span.threadGroup = group;
        opts.onSpan(span);
      }
    }
  }

  function emit(c: Conn, ex: Exchange, resp: HttpMessage | null, endNs: number): void {
    const server = c.role === ROLE_SERVER;
    if (server && c.unix && unixAnswering.get(ex.groupKey) === c) unixAnswering.delete(ex.groupKey);
    if (server && ex.threadGroup) opts.groups.close(ex.groupKey, ex.threadGroup, endNs);
    const span = buildSpan({
      kind: server ? 'entry' : 'exit',
      host: opts.host,
      pid: ex.pid,
      tid: ex.tid,
      goid: ex.goid,
      threadGroup: ex.threadGroup,
      req: ex.req,
      reqSeq: ex.reqSeq,
      resp,
      respSeq: ex.respSeq,
      partialStatus: ex.respStatus,
      respBytes: ex.respBytes, // interim 1xx answers included
      startUs: opts.clock.epochUs(ex.req.startNs),
      endUs: opts.clock.epochUs(endNs),
      ctx: ex.ctx,
      srcIp: c.srcIp, srcPort: c.srcPort, dstIp: c.dstIp, dstPort: c.dstPort,
      unixPath: c.unixPath,
      tls: c.tls,
      operation: c.operation,
      service: opts.procs.service(ex.pid),
      processName: opts.procs.processName(ex.pid),
      threadName: opts.procs.threadName(ex.pid, ex.tid),
    });
    stats.spans++;
    if (!resp) stats.failedSpans++;
    if (ex.ridKey) {
      ex.held = span;
      ridHeld.push({ ex, untilNs: endNs + RID_HOLD_NS });
    } else if (ex.inheritance) {
      opts.groups.settle(ex.inheritance, (keep) => {
        if (!keep) span.threadGroup = '';
        opts.onSpan(span);
      });
    } else opts.onSpan(span);
  }

  /** Where a message starts: its sequence number, or on a Unix socket the id both of its ends give it. */
  function messageSeq(c: Conn, m: HttpMessage): number {
    if (!c.unix) return m.seq;
    const ev = c.ev!;
    return unixPairs.messageStart(c.sockId, c.peerId, ev.dir, headFrom(ev, m.seq));
  }

  // One sink per direction for the whole table, the connection passed as the parser's owner.
  const requestSink: ParserSink<Conn> = {
    onHead(m, c) {
      const ev = c.ev!;
      const reqSeq = messageSeq(c, m);
      if (c.pending.length >= maxPending) {
        // A peer that never answers must not grow memory: forget the oldest request.
        dropExchange(c, c.pending.shift()!);
      }
      const server = c.role === ROLE_SERVER;
      const key = opts.procs.threadLinks(ev.pid) ? threadKey(ev.pid, ev.tid, ev.goid) : processKey(ev.pid, server);
      if (server && unixAnswering.size > 0) endUnixAnswer(key, c);
      const rid = m.trace?.xRequestId ?? '';
      const threadGroup = server ? opts.groups.open(key, ev.pid, rid) : opts.groups.join(key, ev.pid, rid);
      const ex: Exchange = {
        req: m, pid: ev.pid, tid: ev.tid, goid: ev.goid, groupKey: key, threadGroup,
        inheritance: !server && threadGroup !== '' ? opts.groups.inheritance(key, threadGroup) : null,
        ctx: m.trace ? parseTraceContext(m.trace, opts.convToDdtrace, stats.trace) : null,
        reqSeq, respSeq: -1, respStatus: 0, respBytes: 0, ridKey: '', held: null,
      };
      // A call with an id no open entry's request had, made while its process serves requests
      // (an event loop with several open, or a thread with none: a worker that a handler
      // handed the call to, as Varnish's backend fetches are): maybe one its entry will answer
      // with (the proxy made it). A process serving nothing (a client) sends its spans at once.
      if (!server && threadGroup === '' && rid !== '' && ridWaits < RID_WAIT_MAX && (opts.groups.openOn(key) > 1 || opts.groups.hasOpen(ev.pid))) {
        ex.ridKey = requestKey(ev.pid, rid);
        const list = ridWaiting.get(ex.ridKey);
        if (list) list.push(ex);
        else ridWaiting.set(ex.ridKey, [ex]);
        ridWaits++;
      }
      c.pending.push(ex);
      return BODY_FRAMED;
    },
    onEnd() {
      // The request's byte count lives on the message; nothing else to do.
    },
  };

  const responseSink: ParserSink<Conn> = {
    onHead(m, c) {
      // (every response, an interim or orphan one too: a Unix socket's ends count them alike)
      const seq = messageSeq(c, m);
      // A request whose headers' end fell in uncaptured bytes is over once its answer comes.
      if (!c.pending[0]) c.reqParser!.endCutHead();
      const ex = c.pending[0];
      if (!ex) {
        stats.orphanResponses++;
        return BODY_FRAMED;
      }
      if (ex.respSeq < 0) ex.respSeq = seq;
      if (c.unix && c.role === ROLE_SERVER) unixAnswering.set(ex.groupKey, c);
      // A 101 is the last HTTP/1 message on the connection (RFC 9110 §15.2.2), and so is a 2xx
      // answer to CONNECT: what follows is a WebSocket's frames, HTTP/2, a tunnel's bytes.
      const switching = m.status === 101 || (ex.req.method === 'CONNECT' && m.status >= 200 && m.status < 300);
      if (m.status >= 200 || m.status === 0 || switching) ex.respStatus = m.status;
      if (ridWaits > 0 && c.role === ROLE_SERVER && ex.threadGroup && m.trace?.xRequestId) answered(ex.pid, m.trace.xRequestId, ex.threadGroup);
      if (switching) {
        notHttp(c, m.startNs);
        return PROTOCOL_SWITCH;
      }
      return ex.req.method === 'HEAD' ? BODY_NONE : BODY_FRAMED;
    },
    onEnd(m, c) {
      const ex = c.pending[0];
      if (!ex) return;
      ex.respBytes += m.bytes;
      // interim (100 Continue, 103 Early Hints): the final response follows
      if (m.status >= 100 && m.status < 200 && !c.switched) return;
      c.pending.shift();
      emit(c, ex, m, m.endNs);
      if (c.switched) leave(c);
    },
  };

  /**
   * The connection left HTTP/1: the request side ignores what follows too, and requests sent
   * behind the one that switched (none, by the RFC) are dropped rather than failed later.
   */
  function leave(c: Conn): void {
    c.reqParser!.leave();
    for (const ex of c.pending) dropExchange(c, ex);
    c.pending.length = 0;
    stats.protocolSwitches++;
  }

  function dropExchange(c: Conn, ex: Exchange): void {
    if (c.role === ROLE_SERVER && ex.threadGroup) opts.groups.close(ex.groupKey, ex.threadGroup, latestNs);
    if (ex.ridKey) unwait(ex);
    stats.droppedExchanges++;
  }

  function remove(c: Conn): void {
    conns.delete(c.sockId);
    if (c.unix) unixPairs.forget(c.sockId);
    stats.tracked = conns.size;
    const mine = perPid.get(c.pid);
    if (mine && mine.delete(c) && mine.size === 0) perPid.delete(c.pid);
  }

  /** End a connection: a read-until-close response completes, unanswered requests fail. */
  function end(c: Conn, tsNs: number): void {
    remove(c);
    stats.closed++;
    c.ev = null;
    if (c.early) stats.orphanResponses += c.early.length;
    // (a Unix socket's end is its close event: no shutdown events to ask for)
    if (c.role === ROLE_SERVER && c.respParser!.endOfStream() && !c.unix) opts.onUntilClose?.();
    // A read-until-close response completes here (its onEnd emits); one cut short is counted.
    const partial = c.respParser?.close(tsNs);
    if (partial && c.pending[0]) c.pending[0].respBytes += partial.bytes;
    c.reqParser?.close(tsNs);
    for (const ex of c.pending) emit(c, ex, null, tsNs);
    c.pending.length = 0;
  }

  /**
   * A Unix socket's close event: its process read the end of the stream, its peer sends nothing
   * more (closed, or shut its sending side). There is no event for a Unix socket's own close,
   * so this ends both ends where HTTP is over: a client's answer that ran until the close
   * completes; a server that can send nothing more is done (what it did not answer fails, as
   * at a TCP server's close). A server that read the end with requests still to answer (a
   * client that shut its sending side and waits) stays, as does such a client.
   */
  function unixEnd(c: Conn, tsNs: number): void {
    if (c.role !== ROLE_SERVER || c.pending.length === 0) end(c, tsNs);
    const peer = c.peerId !== 0 ? conns.get(c.peerId) : undefined;
    if (!peer?.unix) return;
    if (peer.role === ROLE_SERVER || peer.pending.length === 0) end(peer, tsNs);
  }

  /**
   * A server thread reads a request while the answer it wrote last, on another Unix socket, runs
   * until that socket's close: the thread has gone on, the answer is over. The close itself is
   * seen only when the peer reads the end (unixEnd), and a thread taking its next connection
   * first (uWSGI's) would have two groups open and join none. (An event loop writing such an
   * answer while it reads another request would end it early: its span short, never linked
   * wrongly.)
   */
  function endUnixAnswer(key: ThreadKey, c: Conn): void {
    const prev = unixAnswering.get(key);
    if (!prev || prev === c) return;
    unixAnswering.delete(key);
    prev.respParser!.endOfStream();
  }

  /** Forget a connection without ending it: its waiting requests are dropped, not failed. */
  function forget(c: Conn): void {
    remove(c);
    for (const ex of c.pending) dropExchange(c, ex);
    c.pending.length = 0;
  }

  function evict(c: Conn): void {
    forget(c);
    stats.evicted++;
  }

  /**
   * The table is full: evict the least recently active eighth at once (by the time of their
   * last call). Keeping the Map in recency order instead cost a delete and a set on every
   * event; this costs a sort of the table once per max/8 new connections.
   */
  function evictOldest(): void {
    const all = [...conns.values()].sort((a, b) => a.lastNs - b.lastNs);
    const n = Math.max(1, max >> 3);
    for (let i = 0; i < n && i < all.length; i++) evict(all[i]);
  }

  function track(ev: DataEvent): Conn {
    if (conns.size >= max) evictOldest();
    const c: Conn = {
      sockId: ev.sockId, pid: ev.pid, role: ROLE_UNKNOWN, reqParser: null, respParser: null,
      srcIp: ev.srcIp, srcPort: ev.srcPort, dstIp: ev.dstIp, dstPort: ev.dstPort,
      lastNs: ev.tsNs, pending: [], ev: null, nextSend: -1, nextRecv: -1, early: null, switched: false, operation: 'HTTP',
      unknownTurns: 0, unknownDir: 0, unknownRun: 0, notHttpNs: 0, unix: ev.family === 'unix', peerId: 0, unixPath: ev.unixPath,
      tls: ev.tls,
    };
    conns.set(ev.sockId, c);
    const mine = perPid.get(ev.pid);
    if (mine) mine.add(c);
    else perPid.set(ev.pid, new Set([c]));
    stats.opened++;
    stats.tracked = conns.size;
    return c;
  }

  /** The connection's calls are not HTTP/1 from now on: ignored here, and the capture may mute it. */
  function notHttp(c: Conn, tsNs: number): void {
    c.switched = true;
    c.notHttpNs = tsNs || 1;
    opts.onNotHttp?.(c.sockId);
  }

  /** Hold a response's read that came before any request on a client connection. */
  function holdEarly(c: Conn, ev: DataEvent): boolean {
    if (c.early === null) c.early = [];
    if (c.early.length >= EARLY_MAX) return false;
    c.early.push(ev);
    return true;
  }

  /** The request was just fed: the reads held for it follow (those from just before it). */
  function feedEarly(c: Conn, requestNs: number): void {
    const held = c.early!;
    c.early = null;
    for (const e of held) {
      if (requestNs - e.tsNs <= EARLY_NS) onData(e);
      else stats.orphanResponses++; // an answer nobody asked for just then: as before
    }
  }

  function onData(ev: DataEvent): void {
    const c = conns.get(ev.sockId) ?? track(ev);
    c.lastNs = ev.tsNs;
    // A Unix socket's peer is named once the capture has seen it (its first call may come
    // later), and the peer learns this end too: its own events may never name it (all before
    // this end was seen, or, in syscall mode, after this end was closed).
    if (ev.peerId !== c.peerId && ev.peerId !== 0) {
      c.peerId = ev.peerId;
      const peer = conns.get(ev.peerId);
      if (peer?.unix && peer.peerId === 0) peer.peerId = c.sockId;
    }
    latestNs = ev.tsNs;
    if (ridHeld.length > 0 && ridHeld[0].untilNs <= ev.tsNs) releaseHeld(ev.tsNs);
    if (c.switched) {
      if (c.notHttpNs !== 0 && ev.tsNs - c.notHttpNs > NOT_HTTP_AGAIN_NS) notHttp(c, ev.tsNs);
      return;
    }
    if (c.role === ROLE_UNKNOWN) {
      if (!c.tls && isTlsHandshake(ev.head)) {
        // Ciphertext: what the capture sees of HTTPS whose plaintext it does not get.
        stats.tlsUnseen++;
        opts.onTlsHandshake?.(ev.pid);
        notHttp(c, ev.tsNs);
        return;
      }
      if (isHttp2Preface(ev.head)) {
        // HTTP/2 from its first byte (gRPC without TLS, h2c by prior knowledge): no HTTP/1 on
        // it ever; ignored like a switched connection rather than counted call after call.
        stats.protocolSwitches++;
        notHttp(c, ev.tsNs);
        return;
      }
      // A web server's request to an application server (nginx to PHP-FPM or uWSGI) is read as HTTP.
      const http = looksLikeRequest(ev.head);
      const fastCgi = !http && looksLikeFastCgi(ev.head);
      const uwsgi = !http && !fastCgi && looksLikeUwsgi(ev.head);
      if (!http && !fastCgi && !uwsgi) {
        if (!(ev.dir === 'recv' && (c.early !== null || looksLikeResponse(ev.head)) && holdEarly(c, ev))) {
          stats.unclassified++;
          const dir = ev.dir === 'send' ? 1 : 2;
          const turned = c.unknownDir !== 0 && c.unknownDir !== dir;
          c.unknownRun = turned ? 1 : c.unknownRun + 1;
          if ((turned && ++c.unknownTurns >= NOT_HTTP_TURNS) || c.unknownRun >= NOT_HTTP_ONE_WAY) {
            stats.otherProtocol++;
            notHttp(c, ev.tsNs);
          }
          c.unknownDir = dir;
        }
        return;
      }
      c.role = ev.dir === 'recv' ? ROLE_SERVER : ROLE_CLIENT;
      if (fastCgi) {
        c.operation = 'FastCGI';
        c.reqParser = createFcgiParser(true, requestSink, c, parse, headers);
        c.respParser = createFcgiParser(false, responseSink, c, parse, headers);
      } else {
        if (uwsgi) c.operation = 'uwsgi'; // answered in HTTP/1
        c.reqParser = uwsgi ? createUwsgiParser(requestSink, c, parse, headers) : createParser(true, requestSink, c, parse, headers);
        c.respParser = createParser(false, responseSink, c, parse, headers);
      }
    }
    const requestDir = c.role === ROLE_SERVER ? 'recv' : 'send';
    // (a request still being written, its head cut short, is answered as it is: not early)
    if (c.role === ROLE_CLIENT && ev.dir === 'recv' && (c.early !== null || (c.pending.length === 0 && !c.reqParser!.busy() && looksLikeResponse(ev.head))) && holdEarly(c, ev)) return;
    const parser = ev.dir === requestDir ? c.reqParser! : c.respParser!;
    // Sequence numbers say whether bytes are missing (a lost event) or were seen already; a TLS
    // plaintext's name records, whose events do not continue each other's numbers.
    const send = ev.dir === 'send';
    const expected = send ? c.nextSend : c.nextRecv;
    const next = (ev.seq + ev.len) >>> 0;
    if (send) c.nextSend = next; else c.nextRecv = next;
    c.ev = ev;
    if (expected >= 0 && ev.seq !== expected && !c.tls) {
      const d = (ev.seq - expected) | 0;
      if (d < 0 && ((next - expected) | 0) <= 0) {
        stats.seqRepeats++;
        if (send) c.nextSend = expected; else c.nextRecv = expected;
        c.ev = null;
        return;
      }
      if (d > 0) {
        stats.seqGaps++;
        parser.skip(d, ev.tsNs);
      }
    }
    parser.feed(ev);
    c.ev = null;
    if (c.early !== null && ev.dir === 'send' && c.role === ROLE_CLIENT) feedEarly(c, ev.tsNs);
  }

  return {
    stats,
    onData,
    onClose(ev) {
      const c = conns.get(ev.sockId);
      if (c?.unix) unixEnd(c, ev.tsNs);
      else if (c) end(c, ev.tsNs);
      const tls = conns.get(ev.sockId + TLS_ID); // the socket's plaintext, if it carried TLS
      if (tls) end(tls, ev.tsNs);
    },
    onShutdown(ev) {
      // A server's answer that runs until the close (uWSGI's, HTTP/1.0's) is over, and the
      // entry's thread group with it: the socket's end waits for the client to close too, by
      // when the server's thread may be serving its next request (two groups open: no join).
      // (A client's requests never run until the close.)
      const c = conns.get(ev.sockId);
      if (c?.role === ROLE_SERVER) c.respParser!.endOfStream();
      const tls = conns.get(ev.sockId + TLS_ID); // the socket's plaintext, if it carried TLS
      if (tls?.role === ROLE_SERVER) tls.respParser!.endOfStream();
    },
    onProcessExit(pid, tsNs) {
      const mine = perPid.get(pid);
      if (mine) for (const c of [...mine]) end(c, tsNs);
    },
    expireIdle() {
      releaseHeld(latestNs);
      const before = latestNs - idleNs;
      const waitingBefore = latestNs - waitNs;
      let n = 0;
      for (const c of conns.values()) {
        // A client waiting for its answer holds no thread group, only its request: it may wait
        // longer. A server's waiting request holds its handler's group open: not for minutes.
        const since = c.role === ROLE_CLIENT && c.pending.length > 0 ? waitingBefore : before;
        if (c.lastNs < since) { forget(c); stats.expired++; n++; }
      }
      return n;
    },
    pendingExchanges() {
      let n = 0;
      for (const c of conns.values()) n += c.pending.length;
      return n;
    },
    clear() {
      releaseHeld(-1);
      unixAnswering.clear();
      for (const c of conns.values()) for (const ex of c.pending) dropExchange(c, ex);
      conns.clear();
      perPid.clear();
      stats.tracked = 0;
    },
  };
}
