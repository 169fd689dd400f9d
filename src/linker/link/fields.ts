// What linking needs of a span, and nothing else: numbers. Ingest fills these columns for
// every span of a body (its scanner reads them where they lie in the bytes; other paths go
// through joinFieldsOf), the joiner copies them into its own columns, and the span itself is
// decoded again from its body only when its trace is kept. No object and no string per span:
// a pending span must cost the garbage collector nothing for the ~22 s it waits.
import type { EbpfSpan } from '../../span/span.js';
import { groupKey, ipHash, normaliseAppTraceId, seqKey, spanIdentity, type SpanIdentity } from './ids.js';
import { isErrorSpan } from './sampling.js';

/** flags bits */
export const F_ENTRY = 1, F_ERROR = 2;

/**
 * The join fields of the spans of one body, column by column; row i is the i-th accepted
 * span, in body order. Cleared and refilled for every body (capacity only grows).
 *
 * - idA..idD: the span's 128-bit identity (ids.ts spanIdentity; span id = hex16(idA, idB)), int32
 * - gkey, gchk: group key and check (ids.ts groupKey); gkey -1 without a thread group
 * - skey: seqKey(reqSeq, respSeq); -1 when both are 0
 * - startUs, endUs (= start + duration), reqSeq, respSeq, srcPort, dstPort
 * - srcIpH, dstIpH: ipHash of the addresses (0: none)
 * - flags: F_ENTRY, F_ERROR (sampling.ts isErrorSpan)
 * - appSampled: 1 keep, -1 drop, 0 none
 * - app[4i..4i+3]: the normalised app trace id (ids.ts normaliseAppTraceId) as four 32-bit
 *   words, most significant first; all 0 when there is none
 * - loc: where the span is in its body (line protocol: byte offset of its line; JSON: point index)
 */
export class JoinBatch {
  n = 0;
  cap = 0;
  idA = new Int32Array(0);
  idB = new Int32Array(0);
  idC = new Int32Array(0);
  idD = new Int32Array(0);
  gkey = new Int32Array(0);
  gchk = new Int32Array(0);
  skey = new Int32Array(0);
  reqSeq = new Uint32Array(0);
  respSeq = new Uint32Array(0);
  startUs = new Float64Array(0);
  endUs = new Float64Array(0);
  srcPort = new Uint16Array(0);
  dstPort = new Uint16Array(0);
  srcIpH = new Int32Array(0);
  dstIpH = new Int32Array(0);
  flags = new Uint8Array(0);
  appSampled = new Int8Array(0);
  app = new Uint32Array(0);
  loc = new Int32Array(0);

  constructor(capacity = 1024) {
    this.grow(capacity);
  }

  clear(): void {
    this.n = 0;
  }

  /** A new row (its fields hold whatever an earlier body left: set every one). */
  push(): number {
    if (this.n === this.cap) this.grow(this.cap * 2);
    return this.n++;
  }

  private grow(cap: number): void {
    const n = this.n;
    const g = <T extends Int32Array | Uint32Array | Float64Array | Uint16Array | Uint8Array | Int8Array>(a: T, make: (k: number) => T, per = 1): T => {
      const b = make(cap * per);
      b.set(a.subarray(0, n * per));
      return b;
    };
    const i32 = (k: number) => new Int32Array(k), u32 = (k: number) => new Uint32Array(k), f64 = (k: number) => new Float64Array(k);
    this.idA = g(this.idA, i32); this.idB = g(this.idB, i32); this.idC = g(this.idC, i32); this.idD = g(this.idD, i32);
    this.gkey = g(this.gkey, i32); this.gchk = g(this.gchk, i32); this.skey = g(this.skey, i32);
    this.reqSeq = g(this.reqSeq, u32); this.respSeq = g(this.respSeq, u32);
    this.startUs = g(this.startUs, f64); this.endUs = g(this.endUs, f64);
    this.srcPort = g(this.srcPort, (k) => new Uint16Array(k)); this.dstPort = g(this.dstPort, (k) => new Uint16Array(k));
    this.srcIpH = g(this.srcIpH, i32); this.dstIpH = g(this.dstIpH, i32);
    this.flags = g(this.flags, (k) => new Uint8Array(k)); this.appSampled = g(this.appSampled, (k) => new Int8Array(k));
    this.app = g(this.app, u32, 4);
    this.loc = g(this.loc, i32);
    this.cap = cap;
  }
}

/** The four words of a normalised (32 lowercase hex digits) app trace id into app[at..at+3]. */
export function appWords(id: string, app: Uint32Array, at: number): void {
  for (let w = 0; w < 4; w++) {
    let v = 0;
    for (let i = w * 8; i < w * 8 + 8; i++) {
      const c = id.charCodeAt(i);
      v = (v << 4) | (c <= 57 ? c - 48 : c - 87);
    }
    app[at + w] = v >>> 0;
  }
}

const ident: SpanIdentity = { a: 0, b: 0, c: 0, d: 0, spanId: '' };
const gk = { key: 0, check: 0 };

/**
 * Appends the join fields of a decoded span as row `b.push()`, at `loc`. The reference:
 * ingest's scanner must give the same row for the same span.
 */
export function joinFieldsOf(span: EbpfSpan, b: JoinBatch, loc: number): number {
  const i = b.push();
  spanIdentity(span, ident);
  b.idA[i] = ident.a; b.idB[i] = ident.b; b.idC[i] = ident.c; b.idD[i] = ident.d;
  const tg = span.threadGroup;
  if (tg !== '' && tg !== '0') {
    groupKey(span, gk);
    b.gkey[i] = gk.key;
    b.gchk[i] = gk.check;
  } else {
    b.gkey[i] = -1;
    b.gchk[i] = 0;
  }
  b.skey[i] = seqKey(span.reqSeq, span.respSeq);
  b.reqSeq[i] = span.reqSeq;
  b.respSeq[i] = span.respSeq;
  b.startUs[i] = span.startUs;
  b.endUs[i] = span.startUs + span.durationUs;
  b.srcPort[i] = span.srcPort;
  b.dstPort[i] = span.dstPort;
  b.srcIpH[i] = ipHash(span.srcIp);
  b.dstIpH[i] = ipHash(span.dstIp);
  b.flags[i] = (span.kind === 'entry' ? F_ENTRY : 0) | (isErrorSpan(span) ? F_ERROR : 0);
  b.appSampled[i] = span.appSampled;
  const app = span.appTraceId === '' ? '' : normaliseAppTraceId(span.appTraceId);
  if (app === '') b.app.fill(0, 4 * i, 4 * i + 4);
  else appWords(app, b.app, 4 * i);
  b.loc[i] = loc;
  return i;
}

/** Row i of `b` as a plain object, for tests comparing two ways of filling a batch. */
export function joinRow(b: JoinBatch, i: number): Record<string, number> {
  return {
    idA: b.idA[i], idB: b.idB[i], idC: b.idC[i], idD: b.idD[i], gkey: b.gkey[i], gchk: b.gchk[i], skey: b.skey[i],
    reqSeq: b.reqSeq[i], respSeq: b.respSeq[i], startUs: b.startUs[i], endUs: b.endUs[i], srcPort: b.srcPort[i], dstPort: b.dstPort[i],
    srcIpH: b.srcIpH[i], dstIpH: b.dstIpH[i], flags: b.flags[i], appSampled: b.appSampled[i],
    app0: b.app[4 * i], app1: b.app[4 * i + 1], app2: b.app[4 * i + 2], app3: b.app[4 * i + 3], loc: b.loc[i],
  };
}
