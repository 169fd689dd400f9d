// Incremental HTTP/1.x parser for ONE direction of a connection.
//
// It is fed what the kernel captured of each read or write: the TCP sequence number of the
// first byte, the byte count, and the first (`head`) and last (`tail`) bytes. Bytes between
// head and tail were moved but not captured; the parser still knows how many there were, so
// content-length bodies and chunk data are skipped by count. Only message boundaries matter
// here (where a message starts: its seq; where it ends: its time), plus the few headers that
// decide framing and trace context.
//
// Hot path rules: work on the Buffers with indexOf, decode only small latin1 slices (method,
// path, status, trace header values), never concatenate bodies. Header bytes split over
// several calls are copied into one bounded buffer (MAX_HEADER_BYTES), lent to the parser
// until the head is complete.

/** Header values that carry trace context (and X-Request-ID); filled only when one is present. */
export interface TraceHeaders {
  traceparent?: string;
  tracestate?: string;
  b3?: string;
  xB3TraceId?: string;
  xB3SpanId?: string;
  xB3Sampled?: string;
  xB3Flags?: string;
  uberTraceId?: string;
  ddTraceId?: string;
  ddParentId?: string;
  ddSamplingPriority?: string;
  sw8?: string;
  /** X-Request-ID (or another of `request_id_headers`): not a trace context, but what a proxy passes on (thread groups join by it). */
  xRequestId?: string;
}

export interface HttpMessage {
  isRequest: boolean;
  /** Request: method and target; response: ''. */
  method: string;
  target: string;
  /** `1.1`, `1.0`. */
  version: string;
  /** Response status code; 0 for requests. */
  status: number;
  /** u32 TCP sequence number of the message's first byte. */
  seq: number;
  startNs: number;
  /** Time of the call that moved the message's last byte (set when it ends). */
  endNs: number;
  /** Bytes of the message (head, headers and body) seen so far. */
  bytes: number;
  /** Some of the start line or headers were not captured. */
  truncated: boolean;
  /** Framing was lost inside a chunked body and recovered from the end bytes. */
  framingLost: boolean;
  /** `Connection: close` (or HTTP/1.0 without keep-alive). */
  close: boolean;
  /** A request's `Host` (the name the client called the server by); '' when none or a response. */
  host: string;
  trace: TraceHeaders | null;
}

/** An empty message starting at `seq`, `tsNs` (every field set: one object shape for all parsers). */
export function newHttpMessage(isRequest: boolean, seq: number, tsNs: number): HttpMessage {
  return {
    isRequest, method: '', target: '', version: '', status: 0, seq, startNs: tsNs, endNs: tsNs,
    bytes: 0, truncated: false, framingLost: false, close: false, host: '', trace: null,
  };
}

/** What follows a message's head, as its sink says (onHead): a body framed by the headers, */
export const BODY_FRAMED = 0;
/** no body (the answer to a HEAD), */
export const BODY_NONE = 1;
/**
 * or another protocol: the message ends with its head and the connection leaves HTTP/1, in both
 * directions (101 Switching Protocols to a WebSocket or h2c upgrade, a 2xx answer to CONNECT).
 * The parser ignores every byte after it, as the other direction's does after leave().
 */
export const PROTOCOL_SWITCH = 2;
export type AfterHead = typeof BODY_FRAMED | typeof BODY_NONE | typeof PROTOCOL_SWITCH;

/**
 * Where a parser's messages go. One sink serves every parser of its kind; `owner` (given to
 * createParser) says whose message it is, so that no connection needs sink objects of its own.
 */
export interface ParserSink<T = unknown> {
  /** A message's headers are complete: what follows them (for requests, only PROTOCOL_SWITCH changes anything). */
  onHead(m: HttpMessage, owner: T): AfterHead;
  /** A message is complete (for responses: including 1xx interim ones, status < 200). */
  onEnd(m: HttpMessage, owner: T): void;
}

export interface ParserStats {
  /** Calls whose bytes could not be understood (not a start line where one was due). */
  parseErrors: number;
  /** Messages whose headers were not fully captured. */
  truncated: number;
  /** Chunked bodies whose chunk boundary fell in uncaptured bytes. */
  chunkedLost: number;
}

export const MAX_HEADER_BYTES = 8192;
/**
 * Buffers of heads split over calls are lent to a parser while its head is incomplete, then
 * given back: a connection that once had a split head does not keep 8 KiB for its life (65,536
 * such connections held 1 GiB). A few are kept for reuse; more are left to the GC.
 */
const MAX_SPARE_HEADERS = 16;
const spareHeaders: Buffer[] = [];

const enum S {
  Idle,
  Headers,
  BodyLength,
  ChunkSize,
  ChunkData,
  ChunkTrailer,
  ChunkLost,
  BodyClose,
  /** Headers were cut short and gave no framing: the message ends with this call. */
  BodyToCallEnd,
  /** The connection left HTTP/1 (PROTOCOL_SWITCH, leave()): every byte is ignored. */
  Switched,
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const HTTP1 = Buffer.from('HTTP/1.', 'latin1');
const CHUNKED_END = Buffer.from('0\r\n\r\n', 'latin1');
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE'];
const METHOD_BUFS = METHODS.map((m) => Buffer.from(m + ' ', 'latin1'));

// Interesting headers, looked up by lower-cased name. Names are compared only when their length
// matches one of these, so most headers cost one Map miss on a short latin1 string.
const enum H {
  ContentLength = 1,
  TransferEncoding,
  Connection,
  Host,
  Trace,
}
const HEADER_IDS = new Map<string, [H, keyof TraceHeaders | null]>([
  ['content-length', [H.ContentLength, null]],
  ['transfer-encoding', [H.TransferEncoding, null]],
  ['connection', [H.Connection, null]],
  ['host', [H.Host, null]],
  ['traceparent', [H.Trace, 'traceparent']],
  ['tracestate', [H.Trace, 'tracestate']],
  ['b3', [H.Trace, 'b3']],
  ['x-b3-traceid', [H.Trace, 'xB3TraceId']],
  ['x-b3-spanid', [H.Trace, 'xB3SpanId']],
  ['x-b3-sampled', [H.Trace, 'xB3Sampled']],
  ['x-b3-flags', [H.Trace, 'xB3Flags']],
  ['uber-trace-id', [H.Trace, 'uberTraceId']],
  ['x-datadog-trace-id', [H.Trace, 'ddTraceId']],
  ['x-datadog-parent-id', [H.Trace, 'ddParentId']],
  ['x-datadog-sampling-priority', [H.Trace, 'ddSamplingPriority']],
  ['sw8', [H.Trace, 'sw8']],
]);

/**
 * The headers a parser looks for, by name length: the candidates' lower-case bytes, compared in
 * place (no string per header). Made once per agent: the fixed ones above and the request id
 * headers of its configuration (`request_id_headers`), whose value is `xRequestId`.
 */
export type HeaderTable = ([Buffer, [H, keyof TraceHeaders | null]][] | undefined)[];

export function headerTable(requestIdHeaders: readonly string[]): HeaderTable {
  const table: HeaderTable = [];
  const add = (name: string, def: [H, keyof TraceHeaders | null]) => (table[name.length] ??= []).push([Buffer.from(name, 'latin1'), def]);
  for (const [k, def] of HEADER_IDS) add(k, def);
  for (const k of requestIdHeaders) if (!HEADER_IDS.has(k.toLowerCase())) add(k.toLowerCase(), [H.Trace, 'xRequestId']);
  return table;
}

/** The table of the configuration's default. */
export const DEFAULT_HEADERS = headerTable(['x-request-id']);

function matchHeader(table: HeaderTable, buf: Buffer, from: number, to: number): [H, keyof TraceHeaders | null] | null {
  const cands = table[to - from];
  if (!cands) return null;
  outer: for (const [name, def] of cands) {
    for (let i = 0; i < name.length; i++) {
      let c = buf[from + i];
      if (c >= 65 && c <= 90) c |= 0x20;
      if (c !== name[i]) continue outer;
    }
    return def;
  }
  return null;
}

// Heads are short (tens to hundreds of bytes): a byte loop in JS finds a byte or compares a
// word faster than a call into Buffer's native indexOf/compare, which cost ~20 such calls per
// exchange. Long ranges still go to the native search.
const NATIVE_SEARCH_FROM = 512;

/** buf.indexOf(byte, from) (to the end of buf). */
function indexOfByte(buf: Buffer, byte: number, from: number): number {
  const n = buf.length;
  if (n - from > NATIVE_SEARCH_FROM) return buf.indexOf(byte, from);
  for (let i = from; i < n; i++) if (buf[i] === byte) return i;
  return -1;
}

/** buf.indexOf("\r\n\r\n", from) (to the end of buf). */
function indexOfBlankLine(buf: Buffer, from: number): number {
  const n = buf.length;
  if (n - from > NATIVE_SEARCH_FROM) return buf.indexOf(CRLFCRLF, from);
  for (let i = from + 3; i < n; i++) {
    if (buf[i] === 10 && buf[i - 1] === 13 && buf[i - 2] === 10 && buf[i - 3] === 13) return i - 3;
  }
  return -1;
}

/** Does buf hold all of `word` at `at`? */
function startsWith(buf: Buffer, at: number, word: Buffer): boolean {
  if (buf.length - at < word.length) return false;
  for (let i = 0; i < word.length; i++) if (buf[at + i] !== word[i]) return false;
  return true;
}

/** Does `buf[at..]` start with an HTTP/1 request line (a known method and a space)? */
export function looksLikeRequest(buf: Buffer, at = 0): boolean {
  const c = buf[at];
  // Quick reject on the first letter before comparing whole method names.
  if (c !== 0x47 && c !== 0x50 && c !== 0x44 && c !== 0x48 && c !== 0x4f && c !== 0x43 && c !== 0x54) return false;
  for (const m of METHOD_BUFS) if (startsWith(buf, at, m)) return true;
  return false;
}

export function looksLikeResponse(buf: Buffer, at = 0): boolean {
  return startsWith(buf, at, HTTP1);
}

/** The method at buf[0..end) as one of the known names' strings (none allocated), else decoded. */
function methodOf(buf: Buffer, end: number): string {
  for (let k = 0; k < METHOD_BUFS.length; k++) {
    const m = METHOD_BUFS[k];
    if (m.length - 1 === end && startsWith(buf, 0, m)) return METHODS[k];
  }
  return buf.toString('latin1', 0, end);
}

export interface Chunk {
  seq: number;
  len: number;
  head: Buffer;
  tail: Buffer;
  tsNs: number;
}

export interface HttpParser {
  feed(c: Chunk): void;
  /** The connection closed: ends a read-until-close body. Returns the message left unfinished, if any. */
  close(tsNs: number): HttpMessage | null;
  /** A message is in progress (started, not ended). */
  busy(): boolean;
  /**
   * The connection left HTTP/1 (the other direction's message said so: PROTOCOL_SWITCH): a
   * message in progress is dropped, and every byte from now on ignored.
   */
  leave(): void;
  /**
   * `n` bytes moved that the parser never received (an event lost in the ring buffer, found by
   * the jump in sequence numbers): counted through a body like uncaptured bytes.
   */
  skip(n: number, tsNs: number): void;
  /**
   * The other direction answered: if this message's headers were cut by uncaptured bytes and
   * their end never seen, they are over — end them now (marked truncated). True when it did.
   */
  endCutHead(): boolean;
  /**
   * No byte follows in this direction (its sender sent its FIN): a read-until-close body ends
   * now, with its last data, without waiting for the connection's end. True when one did.
   */
  endOfStream(): boolean;
  readonly stats: ParserStats;
}

/**
 * A parser of requests (isRequest) or responses; `owner` is passed to the sink with each
 * message; `headers`: the table of the headers to read (headerTable).
 */
export function createParser<T = undefined>(isRequest: boolean, sink: ParserSink<T>, owner?: T, stats: ParserStats = { parseErrors: 0, truncated: 0, chunkedLost: 0 }, headers: HeaderTable = DEFAULT_HEADERS): HttpParser {
  return new Parser(isRequest, sink, owner as T, stats, headers);
}

/**
 * One direction's parser: a fixed set of fields and methods on the prototype, so a connection
 * costs two small objects and no closures. Made as closures (fifteen functions and a context
 * per parser, two sink objects with theirs per connection), a connection cost 3.4 KB of heap
 * where it now costs 0.7 (docs/agent.md, "Memory per connection").
 */
class Parser<T> implements HttpParser {
  private state = S.Idle;
  private msg: HttpMessage | null = null;
  private remaining = 0; // BodyLength: body bytes left; ChunkData: chunk bytes + CRLF left
  private chunkSize = 0; // ChunkSize: hex digits so far
  private chunkSizeDigits = 0;
  private chunkSizeDone = false; // saw ';' or non-hex (extension): wait for LF
  private lineLen = 0; // ChunkTrailer: bytes of the current trailer line
  private crlfMatched = 0; // Headers: bytes of "\r\n\r\n" matched at the end of what was seen
  private endMatched = 0; // ChunkLost: bytes of "0\r\n\r\n" matched at the end of what was seen
  private hdr: Buffer | null = null; // header bytes split over several calls (while they are)
  private hdrLen = 0;
  private hdrGap = false; // part of the headers fell in uncaptured bytes
  private lastTs = 0; // time of the previous call
  // parseHead's findings (not an object per message)
  private headLength = -1;
  private headChunked = false;

  constructor(
    private readonly isRequest: boolean,
    private readonly sink: ParserSink<T>,
    private readonly owner: T,
    readonly stats: ParserStats,
    private readonly headers: HeaderTable,
  ) {}

  busy(): boolean {
    return this.state !== S.Idle && this.state !== S.Switched;
  }

  leave(): void {
    this.msg = null;
    this.state = S.Switched;
    this.releaseHeader();
  }

  endCutHead(): boolean {
    if (this.state !== S.Headers || !this.hdrGap) return false;
    this.msg!.truncated = true;
    this.headDone(this.msg!, this.lastTs);
    if ((this.state as S) !== S.Idle) this.finish(this.lastTs);
    return true;
  }

  skip(n: number, tsNs: number): void {
    const c: Chunk = { seq: 0, len: n, head: EMPTY, tail: EMPTY, tsNs };
    this.gap(n, c);
    if (this.state === S.BodyToCallEnd) this.finish(tsNs);
  }

  feed(c: Chunk): void {
    const headLen = Math.min(c.head.length, c.len);
    this.consume(c.head, 0, headLen, c);
    if (c.len <= headLen) {
      if (this.state === S.BodyToCallEnd) this.finish(c.tsNs);
      this.lastTs = c.tsNs;
      return;
    }
    const tb = tailBase(c);
    const tailStart = Math.max(headLen, tb);
    if (tailStart > headLen) this.gap(tailStart - headLen, c);
    if (tailStart < c.len && c.tail.length > 0) {
      const from = tailStart - tb;
      // After a gap, an Idle parser must not treat tail bytes as a message start.
      if (this.state === S.Idle && tailStart > headLen) { this.lastTs = c.tsNs; return; }
      // A writev's tail is its last iovec only; a lone "\r\n" there is the blank line that
      // ends the headers (servers such as Apache send it as its own buffer).
      if (this.state === S.Headers && tailStart > headLen && c.tail.length - from === 2 && c.tail[from] === 13 && c.tail[from + 1] === 10) this.crlfMatched = 2;
      this.consume(c.tail, from, c.tail.length, c);
    } else if (tailStart < c.len) {
      this.gap(c.len - tailStart, c);
    }
    if (this.state === S.BodyToCallEnd) this.finish(c.tsNs);
    this.lastTs = c.tsNs;
  }

  endOfStream(): boolean {
    if (this.state !== S.BodyClose) return false;
    this.finish(this.msg!.endNs);
    return true;
  }

  close(tsNs: number): HttpMessage | null {
    if (this.state === S.BodyClose) {
      // A read-until-close body ends with its last data, not at the close.
      this.finish(this.msg!.endNs);
      return null;
    }
    const m = this.msg;
    this.msg = null;
    this.state = S.Idle;
    this.releaseHeader();
    if (m) m.endNs = tsNs;
    return m;
  }

  private newMessage(seq: number, tsNs: number): HttpMessage {
    return newHttpMessage(this.isRequest, seq, tsNs);
  }

  private finish(tsNs: number): void {
    const m = this.msg!;
    m.endNs = tsNs;
    this.msg = null;
    this.state = S.Idle;
    this.sink.onEnd(m, this.owner);
  }

  /**
   * Parse the head at buf[0..to): the start line, then each header line, in one pass (a
   * header's name is read up to its colon, its value skipped to the line's end) until the blank
   * line. Returns the index after that "\r\n\r\n", or -1 when buf[0..to) ends first: the
   * caller then discards what was set (the head continues in a later call), or, for a head cut
   * short that will never be whole, takes it as it is.
   */
  private parseHead(m: HttpMessage, buf: Buffer, to: number): number {
    // The start line: its first two spaces and its end.
    let sp1 = -1;
    let sp2 = -1;
    let p = 0;
    for (; p < to; p++) {
      const ch = buf[p];
      if (ch === 10) break;
      if (ch === 32) {
        if (sp1 < 0) sp1 = p;
        else if (sp2 < 0) sp2 = p;
      }
    }
    const line = p > 0 && buf[p - 1] === 13 ? p - 1 : p;
    if (this.isRequest) {
      if (sp1 > 0) {
        m.method = methodOf(buf, sp1);
        if (sp2 > 0 && sp2 < line) {
          m.target = buf.toString('latin1', sp1 + 1, sp2);
          m.version = versionOf(buf, sp2 + 1, line);
        } else {
          // Start line cut short (very long target): keep what was seen.
          m.target = buf.toString('latin1', sp1 + 1, Math.max(line, sp1 + 1));
          m.truncated = true;
        }
      }
    } else {
      m.version = versionOf(buf, 0, line);
      if (sp1 > 0 && sp1 + 4 <= line + 1) {
        const d0 = buf[sp1 + 1] - 48, d1 = buf[sp1 + 2] - 48, d2 = buf[sp1 + 3] - 48;
        if (d0 >= 0 && d0 <= 9 && d1 >= 0 && d1 <= 9 && d2 >= 0 && d2 <= 9) m.status = d0 * 100 + d1 * 10 + d2;
      }
    }
    let length = -1;
    let chunked = false;
    let keepAlive = false;
    let closeHdr = false;
    let done = -1;
    p++;
    while (p < to) {
      // "\r\n" right after the previous line's "\r\n" ends the head.
      if (buf[p] === 13 && p + 1 < to && buf[p + 1] === 10 && buf[p - 2] === 13) { done = p + 2; break; }
      const pos = p;
      let ch = 0;
      while (p < to && (ch = buf[p]) !== 58 && ch !== 10) p++;
      if (p >= to) break;
      if (ch === 10) { p++; continue; } // a line without a colon
      const colon = p;
      // The line's end, found natively when much of the head is left (long values, cookies).
      let nl = indexOfByte(buf, 10, colon + 1);
      if (nl < 0 || nl > to) nl = to;
      p = nl + 1;
      const def = colon > pos ? matchHeader(this.headers, buf, pos, colon) : null;
      if (!def) continue;
      let vs = colon + 1;
      let ve = buf[nl - 1] === 13 ? nl - 1 : nl;
      while (vs < ve && (buf[vs] === 32 || buf[vs] === 9)) vs++;
      while (ve > vs && (buf[ve - 1] === 32 || buf[ve - 1] === 9)) ve--;
      switch (def[0]) {
        case H.ContentLength: {
          let n = 0;
          let ok = ve > vs;
          for (let i = vs; i < ve; i++) {
            const d = buf[i] - 48;
            if (d < 0 || d > 9) { ok = false; break; }
            n = n * 10 + d;
          }
          if (ok) length = n;
          break;
        }
        case H.TransferEncoding:
          // chunked must be the last coding.
          if (ve - vs >= 7 && lower(buf, ve - 7, ve) === 'chunked') chunked = true;
          break;
        case H.Connection: {
          const v = lower(buf, vs, ve);
          if (v.includes('close')) closeHdr = true;
          else if (v.includes('keep-alive')) keepAlive = true;
          break;
        }
        case H.Host:
          if (this.isRequest) m.host = hostOf(buf, vs, ve);
          break;
        case H.Trace:
          (m.trace ??= {})[def[1]!] = buf.toString('latin1', vs, ve);
          break;
      }
    }
    m.close = closeHdr || (m.version === '1.0' && !keepAlive);
    this.headLength = length;
    this.headChunked = chunked;
    return done;
  }

  /**
   * Headers complete, kept in hdr[0..hdrLen) (the blank line, if seen, in it): parse, give the
   * buffer back (the parse copied what it keeps), then frame.
   */
  private headDone(m: HttpMessage, tsNs: number): void {
    this.parseHead(m, this.hdr!, this.hdrLen);
    this.releaseHeader();
    this.framing(m, tsNs);
  }

  /** Headers parsed: decide the body framing and tell the sink. */
  private framing(m: HttpMessage, tsNs: number): void {
    const length = this.headLength, chunked = this.headChunked;
    if (m.truncated) this.stats.truncated++;
    const after = this.sink.onHead(m, this.owner);
    if (after === PROTOCOL_SWITCH) {
      this.finish(tsNs);
      this.state = S.Switched;
      return;
    }
    const noBody = after === BODY_NONE;
    if (this.isRequest) {
      if (chunked) this.startChunked();
      else if (length > 0) { this.state = S.BodyLength; this.remaining = length; }
      else this.finish(tsNs); // requests without length have no body
      return;
    }
    const st = m.status;
    if (m.truncated && !chunked && length < 0 && !(st >= 100 && st < 200) && st !== 204 && st !== 304 && !noBody) {
      this.state = S.BodyToCallEnd;
      return;
    }
    if (noBody || (st >= 100 && st < 200) || st === 204 || st === 304) this.finish(tsNs);
    else if (chunked) this.startChunked();
    else if (length >= 0) {
      if (length === 0) this.finish(tsNs);
      else { this.state = S.BodyLength; this.remaining = length; }
    } else this.state = S.BodyClose; // body until the connection closes
  }

  private startChunked(): void {
    this.state = S.ChunkSize;
    this.chunkSize = 0;
    this.chunkSizeDigits = 0;
    this.chunkSizeDone = false;
  }

  /** Bytes buf[from..to) at chunk offset `off`; returns bytes consumed (stops at a message end). */
  private consume(buf: Buffer, from: number, to: number, c: Chunk): number {
    let i = from;
    while (i < to) {
      switch (this.state) {
        case S.Idle: {
          // Tolerate stray CRLF between messages (some clients send one after a body).
          while (i < to && (buf[i] === 13 || buf[i] === 10)) i++;
          if (i >= to) return i - from;
          // A read may end inside the start line's first word: accept a prefix of one.
          const ok = to - i < 8 ? isStartPrefix(buf, i, to, this.isRequest) : this.isRequest ? looksLikeRequest(buf, i) : looksLikeResponse(buf, i);
          if (!ok) {
            this.stats.parseErrors++;
            return to - from; // not a message start: skip these bytes
          }
          this.msg = this.newMessage((c.seq + (buf === c.head ? i : i + tailBase(c))) >>> 0, c.tsNs);
          this.state = S.Headers;
          this.crlfMatched = 0;
          this.hdrLen = 0;
          this.hdrGap = false;
          // Fast path: the whole head in this buffer, parsed where it lies.
          const body = this.parseHead(this.msg, i === 0 ? buf : buf.subarray(i, to), to - i);
          if (body >= 0) {
            this.msg.bytes += body;
            this.framing(this.msg, c.tsNs);
            i += body;
            continue;
          }
          // Headers continue in later bytes: forget the partial parse, keep the bytes (bounded).
          this.msg = this.newMessage(this.msg.seq, c.tsNs);
          this.appendHeader(buf, i, to);
          this.crlfMatched = trailingMatch(buf, i, to, CRLFCRLF, 0);
          this.msg.bytes += to - i;
          return to - from;
        }
        case S.Headers: {
          const m = this.msg!;
          if (this.hdrGap && i === 0 && buf === c.head && to >= 8 && (this.isRequest ? looksLikeRequest(buf, 0) : looksLikeResponse(buf, 0))) {
            // A new message starts: the previous one's headers ended in bytes we never saw.
            m.truncated = true;
            this.headDone(m, this.lastTs);
            if ((this.state as S) !== S.Idle) this.finish(this.lastTs);
            continue;
          }
          // Finish a "\r\n\r\n" that straddles calls.
          let j = i;
          let end = -1;
          let matched = this.crlfMatched;
          while (matched > 0 && j < to) {
            if (buf[j] === CRLFCRLF[matched]) { matched++; j++; if (matched === 4) { end = j; break; } } else { matched = 0; }
          }
          if (end < 0) {
            const e = indexOfBlankLine(buf, i);
            if (e >= 0 && e + 4 <= to) end = e + 4;
          }
          if (end >= 0) {
            this.appendHeader(buf, i, end);
            m.bytes += end - i;
            if (this.hdrGap) m.truncated = true;
            // hdr holds the whole head and its blank line (or was cut at the cap).
            this.headDone(m, c.tsNs);
            i = end;
            continue;
          }
          this.appendHeader(buf, i, to);
          this.crlfMatched = trailingMatch(buf, i, to, CRLFCRLF, this.crlfMatched);
          m.bytes += to - i;
          return to - from;
        }
        case S.BodyLength: {
          const n = Math.min(this.remaining, to - i);
          this.remaining -= n;
          this.msg!.bytes += n;
          i += n;
          if (this.remaining === 0) this.finish(c.tsNs);
          continue;
        }
        case S.ChunkSize: {
          const ch = buf[i++];
          this.msg!.bytes++;
          if (ch === 10) {
            if (this.chunkSizeDigits === 0) { this.lostChunked(); continue; }
            if (this.chunkSize === 0) { this.state = S.ChunkTrailer; this.lineLen = 0; } else { this.state = S.ChunkData; this.remaining = this.chunkSize + 2; }
            continue;
          }
          if (this.chunkSizeDone || ch === 13) { this.chunkSizeDone = true; continue; }
          const v = hexVal(ch);
          if (v < 0 || this.chunkSizeDigits >= 13) {
            if (this.chunkSizeDigits > 0 && (ch === 59 || ch === 32 || ch === 9)) { this.chunkSizeDone = true; continue; }
            this.lostChunked();
            continue;
          }
          this.chunkSize = this.chunkSize * 16 + v;
          this.chunkSizeDigits++;
          continue;
        }
        case S.ChunkData: {
          const n = Math.min(this.remaining, to - i);
          this.remaining -= n;
          this.msg!.bytes += n;
          i += n;
          if (this.remaining === 0) this.startChunked();
          continue;
        }
        case S.ChunkTrailer: {
          const ch = buf[i++];
          this.msg!.bytes++;
          if (ch === 10) {
            if (this.lineLen === 0) { this.finish(c.tsNs); continue; }
            this.lineLen = 0;
          } else if (ch !== 13) this.lineLen++;
          continue;
        }
        case S.ChunkLost: {
          // Without the chunk sizes, look for the last-chunk marker at the end of what we saw.
          // A new response starting here also ends the lost one.
          if (i === 0 && buf === c.head && (this.isRequest ? looksLikeRequest(buf, 0) : looksLikeResponse(buf, 0))) {
            // A new message starts here: the lost one ended with the previous call.
            this.finish(this.msg!.endNs);
            continue;
          }
          const e = buf.indexOf(CHUNKED_END, i);
          if (e >= 0 && e + 5 <= to) {
            // Only trusted at the very end of a call: inside one it may be body data.
            if (e + 5 === to && isCallEnd(buf, to, c)) {
              this.msg!.bytes += to - i;
              i = to;
              this.finish(c.tsNs);
              continue;
            }
          }
          this.endMatched = trailingMatch(buf, i, to, CHUNKED_END, this.endMatched);
          this.msg!.bytes += to - i;
          this.msg!.endNs = c.tsNs;
          if (this.endMatched === 5 && isCallEnd(buf, to, c)) { this.endMatched = 0; this.finish(c.tsNs); }
          return to - from;
        }
        case S.BodyClose:
        case S.BodyToCallEnd:
          this.msg!.bytes += to - i;
          this.msg!.endNs = c.tsNs;
          return to - from;
        case S.Switched:
          return to - from;
      }
    }
    return i - from;
  }

  /** Skip `n` uncaptured bytes. */
  private gap(n: number, c: Chunk): void {
    switch (this.state) {
      case S.Idle:
        // A message started in bytes we did not see: we cannot know where. Wait for the next.
        this.stats.parseErrors++;
        return;
      case S.Headers:
        // Break the line at the hole so the bytes on either side never merge into a header.
        if (!this.hdrGap) this.appendHeader(NEWLINE, 0, 1);
        this.hdrGap = true;
        this.crlfMatched = 0;
        this.msg!.bytes += n;
        return;
      case S.BodyLength:
      case S.ChunkData: {
        const k = Math.min(this.remaining, n);
        this.remaining -= k;
        this.msg!.bytes += k;
        if (this.remaining === 0) {
          if (this.state === S.BodyLength) { this.finish(c.tsNs); if (n > k) this.stats.parseErrors++; return; }
          this.startChunked();
          if (n > k) { this.lostChunked(); this.msg!.bytes += n - k; }
        }
        return;
      }
      case S.ChunkSize:
      case S.ChunkTrailer:
        this.lostChunked();
        this.msg!.bytes += n;
        return;
      case S.ChunkLost:
        this.endMatched = 0;
        this.msg!.bytes += n;
        return;
      case S.BodyClose:
      case S.BodyToCallEnd:
        this.msg!.bytes += n;
        this.msg!.endNs = c.tsNs;
        return;
      case S.Switched:
        return;
    }
  }

  private lostChunked(): void {
    if (this.state !== S.ChunkLost) {
      this.stats.chunkedLost++;
      this.msg!.framingLost = true;
    }
    this.state = S.ChunkLost;
    this.endMatched = 0;
  }

  private appendHeader(buf: Buffer, from: number, to: number): void {
    if (!this.hdr) this.hdr = spareHeaders.pop() ?? Buffer.allocUnsafeSlow(MAX_HEADER_BYTES);
    const n = Math.min(to - from, MAX_HEADER_BYTES - this.hdrLen);
    if (n < to - from) this.hdrGap = true;
    if (n > 0) {
      buf.copy(this.hdr, this.hdrLen, from, from + n);
      this.hdrLen += n;
    }
  }
  /** A head kept across calls is over: its buffer goes back to the spares. */
  private releaseHeader(): void {
    if (this.hdr && spareHeaders.length < MAX_SPARE_HEADERS) spareHeaders.push(this.hdr);
    this.hdr = null;
    this.hdrLen = 0;
  }

}

const NEWLINE = Buffer.from('\n', 'latin1');
const EMPTY = Buffer.alloc(0);

const START_WORDS = [...METHOD_BUFS, HTTP1];
function isStartPrefix(buf: Buffer, from: number, to: number, isRequest: boolean): boolean {
  for (const w of START_WORDS) {
    if ((w === HTTP1) === isRequest) continue;
    const n = Math.min(to - from, w.length);
    if (buf.compare(w, 0, n, from, from + n) === 0) return true;
  }
  return false;
}

function tailBase(c: Chunk): number {
  return c.len - c.tail.length;
}

/** Is `to` in `buf` the last byte of the call (head without tail, or the tail's end)? */
function isCallEnd(buf: Buffer, to: number, c: Chunk): boolean {
  if (buf === c.tail) return to === c.tail.length;
  return to === c.len;
}

function versionOf(buf: Buffer, from: number, to: number): string {
  // "HTTP/1.1" → "1.1"
  if (to - from >= 8 && buf[from] === 72 && buf[from + 4] === 47) {
    const a = buf[from + 5], b = buf[from + 7];
    if (a === 49 && b === 49) return '1.1';
    if (a === 49 && b === 48) return '1.0';
    return buf.toString('latin1', from + 5, from + 8);
  }
  return '';
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

// A process calls few hosts and is called by few names: the last ones seen are compared in place
// before a string is made (a decode costs ≈ 50 ns of a request's ≈ 450 ns of parsing).
const HOSTS = 16;
const hosts: string[] = [];
let nextHost = 0;

/** buf[from..to) as a string, one of the recent hosts' when it matches. */
function hostOf(buf: Buffer, from: number, to: number): string {
  const n = to - from;
  outer: for (let k = 0; k < hosts.length; k++) {
    const h = hosts[k];
    if (h.length !== n) continue;
    for (let i = 0; i < n; i++) if (h.charCodeAt(i) !== buf[from + i]) continue outer;
    return h;
  }
  const h = buf.toString('latin1', from, to);
  hosts[nextHost] = h;
  nextHost = (nextHost + 1) % HOSTS;
  return h;
}

function lower(buf: Buffer, from: number, to: number): string {
  return buf.toString('latin1', from, to).toLowerCase();
}

/** How many bytes of `pat` the end of buf[from..to) matches, continuing a previous match. */
function trailingMatch(buf: Buffer, from: number, to: number, pat: Buffer, prev: number): number {
  let m = prev;
  // Only the last pat.length bytes can matter (plus a continued match when the span is short).
  let start = Math.max(from, to - pat.length);
  if (start > from) m = 0;
  for (let i = start; i < to; i++) {
    const ch = buf[i];
    if (ch === pat[m]) m++;
    else m = ch === pat[0] ? 1 : 0;
    if (m === pat.length) m = i === to - 1 ? m : 0;
  }
  return m;
}
