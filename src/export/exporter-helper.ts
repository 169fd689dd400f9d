// The one retry-and-queue helper: the linker's OTLP exporter and the agent's sender to the
// linker both use it. The caller enqueues items and returns at once (never blocks, never
// awaits the network); the helper batches them by size or time, sends one batch at a time,
// retries what is worth retrying with exponential backoff and jitter (honouring Retry-After),
// and counts everything it sends, gives up on or drops, so nothing is lost silently.
//
// Bounded memory: the queue holds at most `maxQueue` units (items, or what `weigh` says, e.g.
// bytes); beyond that the OLDEST items are dropped and counted (fresh spans are worth more).

import http from 'node:http';
import https from 'node:https';

export type Verdict = 'retry' | 'drop';

/** An HTTP answer that is not 2xx; `send` implementations throw it so `classify` can judge. */
export class HttpStatusError extends Error {
  readonly status: number;
  /** From Retry-After, when the server sent one. */
  readonly retryAfterMs?: number;
  constructor(status: number, message: string, retryAfterMs?: number) {
    super(message);
    this.name = 'HttpStatusError';
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** `Retry-After` as seconds or an HTTP date → milliseconds from `nowMs`; undefined when absent or bad. */
export function parseRetryAfter(value: string | null | undefined, nowMs = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** The statuses OTLP/HTTP says to retry: throttled or a gateway/server that may come back. */
/**
 * Runs `fn` with a signal that aborts when `parent` does or after `ms`. Not
 * `AbortSignal.any([parent, AbortSignal.timeout(ms)])`: on Node 20 the composite signal can be
 * collected before its timeout fires, and the request then hangs (seen in CI: a 300 ms
 * timeout that took 17 s). Here the timer holds the controller until it is cleared.
 */
export async function withTimeout<R>(parent: AbortSignal, ms: number, fn: (signal: AbortSignal) => Promise<R>): Promise<R> {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort(parent.reason);
  if (parent.aborted) onAbort();
  else parent.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => ctl.abort(new DOMException(`timed out after ${ms} ms`, 'TimeoutError')), ms);
  try {
    return await fn(ctl.signal);
  } finally {
    clearTimeout(timer);
    parent.removeEventListener('abort', onAbort);
  }
}

/** What came back for one POST: the body read whole. */
export interface HttpAnswer {
  status: number;
  body: Buffer;
  contentType: string;
  retryAfter: string | undefined;
}

/**
 * One POST with node:http(s) on a keep-alive `agent` (the caller's: how many connections it
 * may hold is its choice). node:http rather than fetch: measured here, a 425 KB request to a
 * local receiver costs 1.4 ms of CPU with node:http against 3.1 ms with fetch
 * (docs/export.md), and undici's streams and promises per request cost the agent more per
 * batch than gzip did. The answer's body is always read: an unread one keeps the connection
 * from being reused. `idleTimeoutMs`: give up when the socket stays silent that long.
 */
export function httpPost(url: URL, agent: http.Agent, headers: Record<string, string>, body: Uint8Array,
  signal: AbortSignal, idleTimeoutMs?: number): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST', agent, signal, headers: { ...headers, 'content-length': String(body.length) },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({
        status: res.statusCode ?? 0,
        body: Buffer.concat(chunks),
        contentType: String(res.headers['content-type'] ?? ''),
        retryAfter: res.headers['retry-after'],
      }));
      res.on('error', reject);
    });
    if (idleTimeoutMs) req.setTimeout(idleTimeoutMs, () => req.destroy(new Error(`no answer within ${idleTimeoutMs / 1000} s`)));
    req.on('error', (e) => reject(signal.aborted && signal.reason instanceof Error ? signal.reason : e));
    req.end(body);
  });
}

export const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

/**
 * The default verdict: retry network errors, timeouts and 429/502/503/504; drop every other
 * HTTP status (a 400 or 401 will not get better by sending the same request again).
 */
export function classifyHttpError(err: unknown): Verdict {
  if (err instanceof HttpStatusError) return RETRYABLE_STATUS.has(err.status) ? 'retry' : 'drop';
  return 'retry';
}

export interface RetryPolicy {
  /** First backoff; doubled on each retry up to maxMs, with ±50% jitter. */
  initialMs: number;
  maxMs: number;
  /** A batch is given up on once it has been retried for this long. */
  maxElapsedMs: number;
}

export type GiveUpReason = 'rejected' | 'retries-exhausted' | 'stopped';

export interface ExporterHelperOptions<T> {
  /** Sends one batch; resolves on success, throws otherwise. `signal` aborts at stop(). */
  send(batch: T[], signal: AbortSignal): Promise<void>;
  /** Most items in one batch. */
  maxBatch: number;
  /** Queue capacity, in units of `weigh` (default: items). */
  maxQueue: number;
  /** A partial batch is sent after waiting this long. */
  flushIntervalMs: number;
  /** Batches sent at the same time (each retried on its own); default 1, which keeps order. */
  maxInFlight?: number;
  retry: RetryPolicy;
  /** retry or drop a failed batch; default classifyHttpError. */
  classify?(err: unknown): Verdict;
  /** Size of one item in queue units (e.g. bytes); default 1. */
  weigh?(item: T): number;
  /** Called once per batch that succeeded. */
  onSent?(batch: T[]): void;
  /** Called once per batch given up on (already counted); the error that ended it, if any. */
  onGiveUp?(batch: T[], reason: GiveUpReason, err: unknown): void;
  /** Called when items were dropped because the queue was full (already counted). */
  onDrop?(count: number): void;
  /** Jitter source in [0, 1); default Math.random (tests pin it). */
  random?(): number;
}

export interface ExporterStats {
  /** Items whose batch was sent successfully. */
  sent: number;
  /** Items given up on after sending failed: rejected (not retryable), retries exhausted, or stop(). */
  failed: number;
  /** Part of `failed`: items whose batch got an answer not worth retrying (e.g. 400). */
  rejected: number;
  /** Items dropped because the queue was full. */
  dropped: number;
  /** Retry attempts (a batch sent 3 times counts 2). */
  retries: number;
  /** Items waiting in the queue (not counting the batch in flight). */
  queueDepth: number;
  /** Items in the batch being sent or retried. */
  inFlight: number;
  batchesSent: number;
  batchesFailed: number;
}

export interface ExporterHelper<T> {
  /** Queues one item; returns at once. False when the queue was full (an older item was dropped to make room, or this one if it alone exceeds the capacity). */
  enqueue(item: T): boolean;
  /** Queue units still free (for producers that can wait instead of dropping). */
  room(): number;
  /** Sends everything queued now (and what arrives meanwhile); resolves when the queue is empty and nothing is in flight. */
  flush(): Promise<void>;
  /**
   * Stops accepting items, sends what is queued within `timeoutMs` (retries included), then
   * aborts what is left (counted as failed, reason `stopped`) and resolves.
   */
  stop(timeoutMs?: number): Promise<void>;
  stats(): ExporterStats;
}

export function createExporterHelper<T>(opts: ExporterHelperOptions<T>): ExporterHelper<T> {
  if (!(opts.maxBatch > 0) || !(opts.maxQueue > 0) || !(opts.flushIntervalMs > 0)) {
    throw new RangeError(`exporter helper: maxBatch (${opts.maxBatch}), maxQueue (${opts.maxQueue}) and flushIntervalMs (${opts.flushIntervalMs}) must be greater than 0`);
  }
  const classify = opts.classify ?? classifyHttpError;
  const weigh = opts.weigh;
  const random = opts.random ?? Math.random;

  // A FIFO as an array with a moving head: shift() would be O(n) per item.
  let queue: T[] = [];
  let weights: number[] = [];
  let head = 0;
  let queuedUnits = 0;

  const stats: ExporterStats = { sent: 0, failed: 0, rejected: 0, dropped: 0, retries: 0, queueDepth: 0, inFlight: 0, batchesSent: 0, batchesFailed: 0 };

  /** Batches being sent or retried now. */
  let sending = 0;
  const maxInFlight = Math.max(1, opts.maxInFlight ?? 1);
  let stopping = false;
  let stopped = false;
  let flushWanted = false;
  let timer: NodeJS.Timeout | undefined;
  const abort = new AbortController();
  let idleWaiters: (() => void)[] = [];

  const depth = () => queue.length - head;

  function compact(): void {
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      if (weigh) weights = weights.slice(head);
      head = 0;
    }
  }

  function dropOldest(): void {
    if (head >= queue.length) return;
    queuedUnits -= weigh ? weights[head] : 1;
    (queue as (T | undefined)[])[head] = undefined;
    head++;
    stats.dropped++;
  }

  function enqueue(item: T): boolean {
    if (stopping) {
      stats.dropped++;
      opts.onDrop?.(1);
      return false;
    }
    const w = weigh ? weigh(item) : 1;
    if (w > opts.maxQueue) {
      stats.dropped++;
      opts.onDrop?.(1);
      return false;
    }
    let full = false;
    const before = stats.dropped;
    while (queuedUnits + w > opts.maxQueue && depth() > 0) {
      full = true;
      dropOldest();
    }
    if (full) {
      compact();
      opts.onDrop?.(stats.dropped - before);
    }
    queue.push(item);
    if (weigh) weights[queue.length - 1] = w;
    queuedUnits += w;
    if (depth() >= opts.maxBatch) kick();
    else armTimer();
    return !full;
  }

  function armTimer(): void {
    if (timer || sending >= maxInFlight) return;
    timer = setTimeout(() => {
      timer = undefined;
      flushWanted = true;
      kick();
    }, opts.flushIntervalMs);
    timer.unref();
  }

  function takeBatch(): T[] {
    const n = Math.min(opts.maxBatch, depth());
    const batch = queue.slice(head, head + n);
    for (let i = head; i < head + n; i++) {
      queuedUnits -= weigh ? weights[i] : 1;
      (queue as (T | undefined)[])[i] = undefined;
    }
    head += n;
    if (head === queue.length) {
      queue = [];
      weights = [];
      head = 0;
    } else compact();
    return batch;
  }

  function kick(): void {
    while (!stopped && sending < maxInFlight) {
      if (depth() === 0) {
        flushWanted = false;
        settleIdle();
        return;
      }
      if (depth() < opts.maxBatch && !flushWanted && !stopping) {
        armTimer();
        return;
      }
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      sending++;
      const batch = takeBatch();
      stats.inFlight += batch.length;
      void sendWithRetry(batch).finally(() => {
        sending--;
        stats.inFlight -= batch.length;
        // Keep sending while a flush is pending or full batches are waiting.
        kick();
      });
    }
  }

  function settleIdle(): void {
    if (sending > 0 || depth() > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const w of waiters) w();
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (abort.signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        abort.signal.removeEventListener('abort', done);
        resolve();
      }
      abort.signal.addEventListener('abort', done, { once: true });
    });
  }

  function giveUp(batch: T[], reason: GiveUpReason, err: unknown): void {
    stats.failed += batch.length;
    if (reason === 'rejected') stats.rejected += batch.length;
    stats.batchesFailed++;
    opts.onGiveUp?.(batch, reason, err);
  }

  async function sendWithRetry(batch: T[]): Promise<void> {
    const started = Date.now();
    let backoff = opts.retry.initialMs;
    for (;;) {
      if (abort.signal.aborted) return giveUp(batch, 'stopped', undefined);
      try {
        await opts.send(batch, abort.signal);
        stats.sent += batch.length;
        stats.batchesSent++;
        opts.onSent?.(batch);
        return;
      } catch (err) {
        if (abort.signal.aborted) return giveUp(batch, 'stopped', err);
        if (classify(err) === 'drop') return giveUp(batch, 'rejected', err);
        // Full jitter around the backoff spreads retries of many senders; Retry-After is a floor.
        let wait = backoff * (0.5 + random());
        const after = err instanceof HttpStatusError ? err.retryAfterMs : undefined;
        if (after !== undefined) wait = Math.max(wait, after);
        if (Date.now() - started + wait > opts.retry.maxElapsedMs) return giveUp(batch, 'retries-exhausted', err);
        await sleep(wait);
        if (abort.signal.aborted) return giveUp(batch, 'stopped', err);
        stats.retries++;
        backoff = Math.min(backoff * 2, opts.retry.maxMs);
      }
    }
  }

  return {
    enqueue,
    room: () => Math.max(0, opts.maxQueue - queuedUnits),
    flush(): Promise<void> {
      if (sending === 0 && depth() === 0) return Promise.resolve();
      return new Promise((resolve) => {
        idleWaiters.push(resolve);
        flushWanted = true;
        kick();
      });
    },
    async stop(timeoutMs = 5000): Promise<void> {
      if (stopped) return;
      stopping = true;
      if (timer) {
        clearTimeout(timer);
        timer = undefined;
      }
      let deadline: NodeJS.Timeout | undefined;
      const drained = this.flush();
      const timedOut = new Promise<void>((resolve) => {
        deadline = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([drained, timedOut]);
      clearTimeout(deadline);
      if (sending > 0 || depth() > 0) {
        // Out of time: abort the batch in flight and give up on what is still queued.
        abort.abort();
        const rest = takeAll();
        if (rest.length) giveUp(rest, 'stopped', undefined);
        // send() is told through its signal; a send that ignores it is not waited for long.
        await Promise.race([drained, new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())]);
      }
      stopped = true;
    },
    stats: () => ({ ...stats, queueDepth: depth() }),
  };

  function takeAll(): T[] {
    const rest = queue.slice(head);
    queue = [];
    weights = [];
    head = 0;
    queuedUnits = 0;
    return rest;
  }
}
