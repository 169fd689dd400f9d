// FastCGI, as a web server speaks it to an application server over TCP (nginx's fastcgi_pass
// to PHP-FPM): a request and its response read into the same HttpMessage the HTTP/1 parser
// makes, so that conn.ts pairs, groups and spans them alike. The request's method, URI, Host
// and trace headers are the CGI parameters the web server passes (REQUEST_METHOD, REQUEST_URI,
// HTTP_HOST, HTTP_TRACEPARENT …), its status the response's CGI `Status:` header (200 without).
//
// Records (FastCGI 1.0, §3.3): version 1, type, request id (u16 BE), content length (u16 BE),
// padding length, reserved; then content and padding. A request is BEGIN_REQUEST, PARAMS
// records closed by an empty one, STDIN records closed by an empty one; a response STDOUT (and
// STDERR) records, then END_REQUEST. One request at a time on a connection (nginx and PHP-FPM
// do not multiplex, and a web server sends its next request only after END_REQUEST), so a call
// that ends a message carries nothing of the next. The records are walked through the
// captured bytes; where uncaptured bytes hide a record's header (a large body), the message's
// end is still found in its last bytes (the empty STDIN, END_REQUEST), which the capture's
// tail holds.
import { newHttpMessage, type Chunk, type HeaderTable, type HttpMessage, type HttpParser, type ParserSink, type ParserStats, type TraceHeaders } from '../http/parser.js';
import { cgiVarTable, setRequestFromCgi } from '../http/cgi.js';

const VERSION = 1;
const BEGIN_REQUEST = 1, END_REQUEST = 3, PARAMS = 4, STDIN = 5, STDOUT = 6, MAX_TYPE = 11;
const HEADER = 8;
/** Parameters and CGI response headers kept for reading (more is counted, not read). */
const MAX_HEAD = 16384;

/**
 * A connection's first bytes are a BEGIN_REQUEST record's header (8 bytes of content; PHP-FPM
 * reads the header alone first), and when they follow, a role of 1–3.
 */
export function looksLikeFastCgi(buf: Buffer): boolean {
  return buf.length >= HEADER && buf[0] === VERSION && buf[1] === BEGIN_REQUEST && buf[4] === 0 && buf[5] === 8 && buf[7] === 0
    && (buf.length < 10 || (buf[8] === 0 && buf[9] >= 1 && buf[9] <= 3));
}

/** name → value of a PARAMS stream (FastCGI §3.4: lengths of 1 byte, or 4 with the high bit). */
export function decodeParams(b: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const len = (): number => {
    if (i >= b.length) return -1;
    if (b[i] < 128) return b[i++];
    if (i + 4 > b.length) return -1;
    const n = b.readUInt32BE(i) & 0x7fffffff;
    i += 4;
    return n;
  };
  for (;;) {
    const n = len(), v = len();
    if (n < 0 || v < 0 || i + n + v > b.length) return out; // the rest was not captured
    out.set(b.toString('latin1', i, i + n), b.toString('latin1', i + n, i + n + v));
    i += n + v;
  }
}

export function createFcgiParser<T>(isRequest: boolean, sink: ParserSink<T>, owner: T, stats: ParserStats, headers: HeaderTable): HttpParser {
  return new FcgiParser(isRequest, sink, owner, stats, cgiVarTable(headers), headers);
}

class FcgiParser<T> implements HttpParser {
  private msg: HttpMessage | null = null;
  private switched = false;
  /** Where the next record's header is known (else only the message's last bytes are looked at). */
  private synced = true;
  private readonly hdr = Buffer.alloc(HEADER);
  private hdrHave = 0;
  private type = 0;
  private contentLen = 0;
  private padLen = 0;
  /** Bytes of the current record still to come (content, then padding); -1: between records. */
  private left = -1;
  private head: Buffer[] = [];
  private headBytes = 0;
  private headSent = false;
  private lastTs = 0;

  constructor(
    private readonly isRequest: boolean,
    private readonly sink: ParserSink<T>,
    private readonly owner: T,
    readonly stats: ParserStats,
    private readonly params: Map<string, keyof TraceHeaders>,
    private readonly headers: HeaderTable,
  ) {}

  busy(): boolean {
    return this.msg !== null;
  }

  leave(): void {
    this.msg = null;
    this.switched = true;
  }

  endCutHead(): boolean {
    if (!this.isRequest || !this.msg || this.headSent) return false;
    this.msg.truncated = true;
    this.finish(this.lastTs);
    return true;
  }

  /** Nothing here runs until the close: FastCGI's messages end with their records. */
  endOfStream(): boolean {
    return false;
  }

  skip(n: number, _tsNs: number): void {
    this.gap(n);
  }

  feed(c: Chunk): void {
    if (this.switched) return;
    this.lastTs = c.tsNs;
    const headLen = Math.min(c.head.length, c.len);
    if (!this.msg) {
      // A message starts at a record boundary (its header may come a byte at a time).
      if (headLen === 0 || c.head[0] !== VERSION || (headLen > 1 && (c.head[1] === 0 || c.head[1] > MAX_TYPE))) {
        this.stats.parseErrors++;
        this.synced = false;
        return;
      }
      this.synced = true;
      this.hdrHave = 0;
      this.left = -1;
      this.msg = newHttpMessage(this.isRequest, c.seq, c.tsNs);
    }
    this.msg.bytes += c.len;
    if (this.synced) {
      this.walk(c.head, 0, headLen, c.tsNs);
      if (!this.msg || c.len <= headLen) return;
      const tailStart = Math.max(headLen, c.len - c.tail.length);
      this.gap(tailStart - headLen);
      if (this.synced) {
        this.walk(c.tail, tailStart - (c.len - c.tail.length), c.tail.length, c.tsNs);
        return;
      }
    }
    // Out of step with the records: only the call's last bytes can say the message is over.
    if (this.endsWith(c.len <= headLen ? c.head.subarray(0, headLen) : c.tail)) {
      this.msg.framingLost = true;
      this.finish(c.tsNs);
    }
  }

  close(tsNs: number): HttpMessage | null {
    const m = this.msg;
    this.msg = null;
    if (m) m.endNs = tsNs;
    return m;
  }

  /** Bytes that were not captured: inside the current record's body they are counted, else the records are lost. */
  private gap(n: number): void {
    if (n <= 0 || !this.synced) return;
    if (this.hdrHave === 0 && this.left >= n) {
      if (this.left > this.padLen) this.noteLost(); // some of its content
      this.left -= n;
      if (this.left === 0) this.recordDone(this.lastTs);
      return;
    }
    this.noteLost();
    this.synced = false;
  }

  /** Content of PARAMS (request) or the CGI head (response) fell in uncaptured bytes. */
  private noteLost(): void {
    if (this.msg && !this.headSent && this.keeps()) this.msg.truncated = true;
  }

  /** The current record's content is read: PARAMS of a request, STDOUT of a response until its head is complete. */
  private keeps(): boolean {
    return this.isRequest ? this.type === PARAMS : this.type === STDOUT;
  }

  /** The message's last bytes are its end: the empty STDIN record, or END_REQUEST and its 8 bytes. */
  private endsWith(tail: Buffer): boolean {
    const n = tail.length;
    if (this.isRequest) return n >= HEADER && tail[n - 8] === VERSION && tail[n - 7] === STDIN && tail[n - 4] === 0 && tail[n - 3] === 0;
    return n >= 16 && tail[n - 16] === VERSION && tail[n - 15] === END_REQUEST && tail[n - 12] === 0 && tail[n - 11] === 8;
  }

  private walk(buf: Buffer, from: number, to: number, tsNs: number): void {
    let i = from;
    while (i < to && this.msg) {
      if (this.left < 0) {
        const take = Math.min(HEADER - this.hdrHave, to - i);
        buf.copy(this.hdr, this.hdrHave, i, i + take);
        this.hdrHave += take;
        i += take;
        if (this.hdrHave < HEADER) return;
        this.hdrHave = 0;
        if (this.hdr[0] !== VERSION || this.hdr[1] === 0 || this.hdr[1] > MAX_TYPE) {
          this.stats.parseErrors++;
          this.synced = false;
          return;
        }
        this.type = this.hdr[1];
        this.contentLen = this.hdr.readUInt16BE(4);
        this.padLen = this.hdr[6];
        this.left = this.contentLen + this.padLen;
        if (this.left === 0) this.recordDone(tsNs);
        continue;
      }
      const take = Math.min(this.left, to - i);
      if (!this.headSent && this.keeps()) {
        const n = Math.min(take, this.left - this.padLen); // content, not padding
        if (n > 0) this.keep(buf, i, i + n);
      }
      this.left -= take;
      i += take;
      if (this.left === 0) this.recordDone(tsNs);
    }
  }

  private keep(buf: Buffer, from: number, to: number): void {
    const n = Math.min(to - from, MAX_HEAD - this.headBytes);
    if (n <= 0) {
      this.msg!.truncated = true;
      return;
    }
    this.head.push(Buffer.from(buf.subarray(from, from + n)));
    this.headBytes += n;
    if (!this.isRequest) this.cgiHeadEnd();
  }

  /** The current record is complete. */
  private recordDone(tsNs: number): void {
    const type = this.type, empty = this.contentLen === 0;
    this.left = -1;
    if (this.isRequest) {
      if (type === PARAMS && empty) this.requestHead();
      else if (type === STDIN && empty) this.finish(tsNs);
    } else if (type === END_REQUEST) {
      this.finish(tsNs);
    }
  }

  private requestHead(): void {
    if (this.headSent || !this.msg) return;
    setRequestFromCgi(this.msg, decodeParams(Buffer.concat(this.head, this.headBytes)), this.params);
    this.sendHead();
  }

  /** The CGI response head: its end seen in the STDOUT kept so far, or taken as it is at the end. */
  private cgiHeadEnd(final = false): void {
    if (this.headSent || !this.msg) return;
    const text = Buffer.concat(this.head, this.headBytes).toString('latin1');
    let end = text.indexOf('\r\n\r\n');
    if (end < 0) end = text.indexOf('\n\n');
    if (end < 0 && !final) return;
    const m = this.msg;
    m.status = 200;
    for (const line of (end < 0 ? text : text.slice(0, end)).split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'status') {
        const code = Number.parseInt(value, 10);
        if (code >= 100 && code <= 999) m.status = code;
      } else {
        for (const [buf, [, key]] of this.headers[name.length] ?? []) {
          if (key === 'xRequestId' && buf.toString('latin1') === name) (m.trace ??= {}).xRequestId = value;
        }
      }
    }
    this.sendHead();
  }

  private sendHead(): void {
    this.headSent = true;
    this.head = [];
    this.headBytes = 0;
    if (this.msg!.truncated) this.stats.truncated++;
    this.sink.onHead(this.msg!, this.owner);
  }

  private finish(tsNs: number): void {
    const m = this.msg!;
    if (!this.headSent) {
      if (this.isRequest) {
        m.truncated = true;
        this.requestHead();
      } else this.cgiHeadEnd(true);
    }
    m.endNs = tsNs;
    this.msg = null;
    this.headSent = false;
    this.head = [];
    this.headBytes = 0;
    this.left = -1;
    this.hdrHave = 0;
    this.synced = true;
    this.sink.onEnd(m, this.owner);
  }
}
