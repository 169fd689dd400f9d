// The uwsgi protocol, as a web server speaks it to uWSGI over TCP (nginx's uwsgi_pass, Apache's
// mod_proxy_uwsgi): a request read into the same HttpMessage the
// HTTP/1 parser makes, so that conn.ts pairs, groups and spans it alike. The answer is plain
// HTTP/1 (the application's status line and headers, its body ending at the close where no
// length is given), read by the HTTP/1 parser.
//
// A request (uwsgi protocol, "uwsgi packet header"): modifier1 (u8: 0 WSGI, 5 PSGI, 6 Lua, 7
// Rack, 8 JVM, 9 CGI …), the size of the vars block (u16 LE), modifier2 (u8, 0); the vars, pairs
// of key and value each with a u16 LE length before it (the CGI variables: REQUEST_METHOD,
// REQUEST_URI, HTTP_HOST, HTTP_TRACEPARENT …); then CONTENT_LENGTH bytes of body. Every part's
// length is known before it, so bytes the capture did not keep are counted through exactly.
import { newHttpMessage, type Chunk, type HeaderTable, type HttpMessage, type HttpParser, type ParserSink, type ParserStats, type TraceHeaders } from '../http/parser.js';
import { cgiVarTable, setRequestFromCgi } from '../http/cgi.js';

const HEADER = 4;
/** Vars kept for reading (the rest counted, the message marked truncated). */
const MAX_VARS = 16384;
/** modifier1 of the request packets (the uwsgi protocol's table; the others are not requests). */
const REQUEST_MODIFIERS = new Set([0, 5, 6, 7, 8, 9, 14]);

/**
 * A connection's first bytes are a request packet's header: a request modifier1, modifier2 0,
 * vars of at least a key; and when more follow, the first key's length and an upper-case name.
 * uWSGI reads the 4-byte header alone first, so 4 bytes may be all there is.
 */
export function looksLikeUwsgi(buf: Buffer): boolean {
  if (buf.length < HEADER || !REQUEST_MODIFIERS.has(buf[0]) || buf[3] !== 0 || buf.readUInt16LE(1) < 4) return false;
  if (buf.length < HEADER + 3) return buf.length === HEADER;
  const keyLen = buf.readUInt16LE(4);
  if (keyLen === 0 || keyLen > 64) return false;
  for (let i = 6; i < Math.min(buf.length, 6 + keyLen); i++) {
    const c = buf[i];
    if (!((c >= 65 && c <= 90) || c === 95 || (c >= 48 && c <= 57))) return false;
  }
  return true;
}

/** key → value of a vars block; pairs past its end (not captured) are left out. */
export function decodeVars(b: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i + 2 <= b.length) {
    const k = b.readUInt16LE(i);
    if (i + 2 + k + 2 > b.length) break;
    const v = b.readUInt16LE(i + 2 + k);
    if (i + 4 + k + v > b.length) break;
    out.set(b.toString('latin1', i + 2, i + 2 + k), b.toString('latin1', i + 4 + k, i + 4 + k + v));
    i += 4 + k + v;
  }
  return out;
}

/** A uwsgi request parser (requests only: the answer is HTTP/1, `createParser(false, …)`). */
export function createUwsgiParser<T>(sink: ParserSink<T>, owner: T, stats: ParserStats, headers: HeaderTable): HttpParser {
  return new UwsgiParser(sink, owner, stats, cgiVarTable(headers));
}

const enum S {
  /** Between requests, or inside a packet's 4-byte header. */
  Header,
  Vars,
  Body,
  /** Out of step (not a request packet where one was due): everything up to the close ignored. */
  Lost,
  /** The connection left the protocol (leave()). */
  Switched,
}

class UwsgiParser<T> implements HttpParser {
  private state = S.Header;
  private msg: HttpMessage | null = null;
  private readonly hdr = Buffer.alloc(HEADER);
  private hdrHave = 0;
  /** Bytes of the vars block, then of the body, still to come. */
  private left = 0;
  private vars: Buffer[] = [];
  private varsKept = 0;
  /** Vars are kept while they come whole: after a gap the rest are counted only. */
  private varsWhole = true;
  /** The vars that would give the body's length were lost: the rest of the connection is not read. */
  private bodyUnknown = false;
  private lastTs = 0;

  constructor(
    private readonly sink: ParserSink<T>,
    private readonly owner: T,
    readonly stats: ParserStats,
    private readonly params: Map<string, keyof TraceHeaders>,
  ) {}

  busy(): boolean {
    return this.msg !== null;
  }

  leave(): void {
    this.msg = null;
    this.state = S.Switched;
  }

  endCutHead(): boolean {
    if (this.state !== S.Vars || !this.msg) return false;
    this.varsWhole = false;
    this.endVars();
    this.bodyUnknown = true;
    this.finish(this.lastTs);
    return true;
  }

  /** A request's length is always known: nothing runs until the close. */
  endOfStream(): boolean {
    return false;
  }

  skip(n: number, tsNs: number): void {
    this.gap(n, tsNs);
  }

  feed(c: Chunk): void {
    if (this.state >= S.Lost) return;
    this.lastTs = c.tsNs;
    const headLen = Math.min(c.head.length, c.len);
    this.walk(c.head, 0, headLen, c);
    if (c.len <= headLen) return;
    const tailStart = Math.max(headLen, c.len - c.tail.length);
    this.gap(tailStart - headLen, c.tsNs);
    if (tailStart < c.len && this.state < S.Lost) this.walk(c.tail.subarray(tailStart - (c.len - c.tail.length)), tailStart, c.len - tailStart, c);
  }

  close(tsNs: number): HttpMessage | null {
    const m = this.msg;
    this.msg = null;
    if (m) m.endNs = tsNs;
    return m;
  }

  /** buf: bytes base… of the call c, `to` of them. */
  private walk(buf: Buffer, base: number, to: number, c: Chunk): void {
    let i = 0;
    while (i < to && this.state < S.Lost) {
      if (this.state === S.Header) {
        if (!this.msg) {
          this.msg = newHttpMessage(true, (c.seq + base + i) >>> 0, c.tsNs);
        }
        const take = Math.min(HEADER - this.hdrHave, to - i);
        this.msg.bytes += take;
        buf.copy(this.hdr, this.hdrHave, i, i + take);
        this.hdrHave += take;
        i += take;
        if (this.hdrHave < HEADER) return;
        this.hdrHave = 0;
        if (!REQUEST_MODIFIERS.has(this.hdr[0]) || this.hdr[3] !== 0) {
          this.stats.parseErrors++;
          this.msg = null;
          this.state = S.Lost;
          return;
        }
        this.left = this.hdr.readUInt16LE(1);
        this.state = S.Vars;
        if (this.left === 0) this.partDone(c.tsNs);
        continue;
      }
      const take = Math.min(this.left, to - i);
      if (this.state === S.Vars) {
        const n = Math.min(take, MAX_VARS - this.varsKept);
        if (this.varsWhole && n > 0) {
          this.vars.push(Buffer.from(buf.subarray(i, i + n)));
          this.varsKept += n;
        }
        if (n < take) this.varsWhole = false;
      }
      this.msg!.bytes += take;
      this.left -= take;
      i += take;
      if (this.left === 0) this.partDone(c.tsNs);
    }
  }

  /** Bytes not captured: counted through the vars (which are then incomplete) or the body. */
  private gap(n: number, tsNs: number): void {
    while (n > 0 && (this.state === S.Vars || this.state === S.Body)) {
      const take = Math.min(n, this.left);
      if (this.state === S.Vars) this.varsWhole = false;
      this.msg!.bytes += take;
      this.left -= take;
      n -= take;
      if (this.left === 0) this.partDone(tsNs);
    }
    if (n > 0 && this.state === S.Header) {
      // a packet's header among bytes not captured: where the next one starts is unknown
      this.msg = null;
      this.state = S.Lost;
    }
  }

  /** The vars block or the body is complete. */
  private partDone(tsNs: number): void {
    if (this.state === S.Vars && this.endVars() > 0) return; // a body follows
    this.finish(tsNs);
  }

  /** The vars are read: the message's head goes to the sink. Returns the body's length. */
  private endVars(): number {
    const m = this.msg!;
    const v = decodeVars(Buffer.concat(this.vars, this.varsKept));
    this.vars = [];
    this.varsKept = 0;
    setRequestFromCgi(m, v, this.params);
    if (!this.varsWhole) m.truncated = true;
    if (m.truncated) this.stats.truncated++;
    // Without CONTENT_LENGTH a request has no body, unless the vars that would say were lost:
    // then the request ends with them, and what follows (a body, perhaps) is not read.
    const length = v.get('CONTENT_LENGTH');
    this.bodyUnknown = length === undefined && !this.varsWhole;
    this.varsWhole = true;
    this.sink.onHead(m, this.owner);
    this.state = S.Body;
    this.left = length ? Number.parseInt(length, 10) || 0 : 0;
    return this.left;
  }

  private finish(tsNs: number): void {
    const m = this.msg!;
    m.endNs = tsNs;
    this.msg = null;
    this.state = this.bodyUnknown ? S.Lost : S.Header;
    this.sink.onEnd(m, this.owner);
  }
}
