// The agent: kernel capture → connections and HTTP parsing → spans → the linker.
//
//   startCapture (loader child) ──events──▶ createConnTable ──spans──▶ createSender ──▶ linker
//          ▲ addPid/removePid                    │ thread groups, trace context
//   createProcSelector (/proc every second, exec/exit events)
//
// GET /metrics on metrics_listen shows every counter (Prometheus text).
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import type { AddressInfo } from 'node:net';
import { checkAgentCanTrace, parseListen, type AgentConfig } from '../config/config.js';
import { seqError, type SeqError } from '../errors.js';
import { createRegistry, CONTENT_TYPE, type Registry } from '../metrics/registry.js';
import { startCapture as realStartCapture, EXEC_ENV_MAX, isExecEnvName, type Capture, type CaptureOptions } from './capture/loader.js';
import type { CaptureEvent, StatsEvent } from './capture/event.js';
import { createClock } from './clock.js';
import { createConnTable, type ConnTable } from './conn.js';
import { createProcSelector, SERVICE_ENV, type ProcSelector } from './procs.js';
import { createSender, type Sender, type SenderStats } from './sender.js';
import { createThreadGroups, threadKey, type ThreadGroups } from './threadgroup.js';
import { createGoTracer, type GoStats } from './go/golang.js';
import { createTlsTracer, type TlsStats } from './tls/openssl.js';

/** A process picked up after the start is named on stderr once traced this long (ms). */
const NAME_AFTER_MS = 1000;

export interface AgentOptions {
  /** Capture source (default: the eBPF loader). */
  startCapture?: (opts: CaptureOptions) => Promise<Capture>;
  /** /proc (tests may point elsewhere). */
  procRoot?: string;
  /** Process rescan period, ms (default 1000). */
  scanIntervalMs?: number;
  /** Sender tuning (tests use short intervals). */
  flushIntervalMs?: number;
  retryInitialMs?: number;
  log?: (msg: string) => void;
}

export interface AgentStats {
  captureMode: 'socket' | 'syscall';
  /** The kernel side's counters, over every loader this agent ran. */
  capture: StatsEvent;
  /** Loaders started again after one stopped. */
  loaderRestarts: number;
  /** Sockets whose data events the capture stopped sending (not HTTP/1: ConnTableOptions.onNotHttp). */
  socketsMuted: number;
  events: Record<CaptureEvent['kind'], number>;
  eventErrors: number;
  /** Events of processes traced from their exec and then not selected: dropped. */
  rejectedEvents: number;
  conns: ConnTable['stats'];
  groups: ThreadGroups['stats'];
  procs: ProcSelector['stats'];
  sender: SenderStats;
  pidErrors: number;
  go: GoStats;
  tls: TlsStats;
}

export interface Agent {
  close(): Promise<void>;
  /** `http://host:port/metrics`, or '' when metrics_listen is empty. */
  metricsUrl: string;
  stats(): AgentStats;
  /** The linker URL spans go to. */
  ingestUrl: string;
}

export async function startAgent(cfg: AgentConfig, opts: AgentOptions = {}): Promise<Agent> {
  checkAgentCanTrace(cfg);
  const log = opts.log ?? ((m: string) => console.error(m));
  const host = cfg.host || hostname();
  const sender: Sender = createSender({
    traceServer: cfg.trace_server, ingestToken: cfg.ingest_token, sendBufferBytes: cfg.send_buffer_bytes,
    flushIntervalMs: opts.flushIntervalMs, retryInitialMs: opts.retryInitialMs, log,
  });
  const clock = createClock();
  const clockTimer = setInterval(() => clock.refresh(), 60_000);
  clockTimer.unref();
  const groups = createThreadGroups();
  const events: Record<CaptureEvent['kind'], number> = { data: 0, close: 0, shutdown: 0, exec: 0, exit: 0, thread: 0, thread_exit: 0, goroutine: 0, stats: 0 };
  let eventErrors = 0;
  let rejectedEvents = 0;
  let pidErrors = 0;
  let lastErrorLog = 0;
  const rateLog = (m: string) => {
    const now = Date.now();
    if (now - lastErrorLog > 10_000) { lastErrorLog = now; log(m); }
  };

  // Pids chosen before the capture runs are handed to the loader at start; later ones by command.
  let capture = null as Capture | null; // (not narrowed to null: launch() sets it)
  const initialPids = new Set<number>();
  // Go processes: goroutine ids and parents (src/agent/go), told to the kernel once traced.
  const golang = createGoTracer({ capture: () => capture, procRoot: opts.procRoot, log, setThreadLinks: (pid, links) => procs.setThreadLinks(pid, links) });
  // Processes using OpenSSL: its probes, so their HTTPS is seen (src/agent/tls).
  const tls = createTlsTracer({ enabled: cfg.trace_tls, capture: () => capture, procRoot: opts.procRoot, log });
  const onTraced = (pid: number, again: boolean) => Promise.all([golang.onTraced(pid, again), tls.onTraced(pid)]);
  // Removed while the loader was starting: the kernel may trace them since their exec.
  const removedAtStart = new Set<number>();
  // Processes the kernel traced from their exec until the agent decided against them: what they
  // did meanwhile comes after the exec event and is dropped, up to their exit (or their being
  // selected after all: a later scan that finds them renamed into trace_nameset).
  const rejected = new Set<number>();
  const pidCommand = (verb: 'add' | 'remove', pid: number) => {
    if (verb === 'add') rejected.delete(pid);
    if (!capture) {
      if (verb === 'add') { initialPids.add(pid); removedAtStart.delete(pid); }
      else { initialPids.delete(pid); removedAtStart.add(pid); }
      return;
    }
    (verb === 'add' ? capture.addPid(pid).then(() => { sayTraced(pid); return onTraced(pid, false); }) : capture.removePid(pid)).catch((e: Error) => {
      pidErrors++;
      // A process that exited between the scan and the command is not worth a message.
      rateLog(`seqtrace agent: ${verb} pid ${pid}: ${e.message}`);
    });
  };
  // Each process picked up after the start, named (the start line counts the others): "is my
  // service traced?" answered on stderr. Not with trace_all_process: every process on the host.
  // Named once it has been traced for a second, under the name it has then: a service's
  // environment reaches every helper it runs (a pyenv shim's dozen shells and readlinks before
  // the exec of python3), and a line for each would bury the services' own.
  const toName = new Map<number, number>(); // pid → when to name it (ms), in that order
  const sayTraced = (pid: number) => {
    if (!cfg.trace_all_process && !toName.has(pid)) toName.set(pid, Date.now() + NAME_AFTER_MS);
  };
  const nameTraced = (now: number) => {
    for (const [pid, at] of toName) {
      if (at > now) break;
      toName.delete(pid);
      const p = procs.info(pid);
      if (p?.traced) log(`seqtrace agent: tracing pid ${pid} (${p.comm}) as service ${p.service}`);
    }
  };
  const procs = createProcSelector({
    cfg,
    addPid: (pid) => pidCommand('add', pid),
    removePid: (pid) => pidCommand('remove', pid),
    denyPids: () => (capture ? [process.pid, capture.loaderPid] : [process.pid]),
    procRoot: opts.procRoot,
    intervalMs: 0, // the timer starts once capture runs
  });
  // Once a traced server answered until the close, every loader sends shutdown events.
  let wantShutdowns = false;
  // Sockets found not to carry HTTP/1: the capture stops sending their bytes (a loader that
  // refuses, one built before muting was, is not asked again).
  let socketsMuted = 0;
  let muteRefused = false;
  function mute(sockId: number): void {
    if (muteRefused || !capture) return;
    capture.mute(sockId).then((ok) => {
      if (ok) socketsMuted++;
      else muteRefused = true;
    }, (e: Error) => rateLog(`seqtrace agent: ${e.message}`));
  }
  function askShutdowns(c: Capture | null): void {
    if (wantShutdowns && c) c.wantShutdowns().catch((e: Error) => rateLog(`seqtrace agent: ${e.message}`));
  }
  const conns = createConnTable({
    host, convToDdtrace: cfg.conv_to_ddtrace, groups, procs, clock, requestIdHeaders: cfg.request_id_headers,
    onSpan: (span) => sender.send(span),
    onUntilClose: () => {
      if (wantShutdowns) return;
      wantShutdowns = true;
      askShutdowns(capture);
    },
    onNotHttp: mute,
    onTlsHandshake: (pid) => tls.onHandshake(pid),
  });

  function onEvents(batch: CaptureEvent[]): void {
    for (let i = 0; i < batch.length; i++) {
      const ev = batch[i];
      events[ev.kind]++;
      if (rejected.size > 0 && ev.kind !== 'stats' && ev.kind !== 'exec' && ev.kind !== 'exit' && rejected.has(ev.pid)) {
        rejectedEvents++;
        continue;
      }
      try {
        switch (ev.kind) {
          case 'data': conns.onData(ev); break;
          case 'close': conns.onClose(ev); break;
          case 'shutdown': conns.onShutdown(ev); break;
          case 'exec': {
            const traced = procs.onExec(ev.pid, ev.ppid, ev.provisional, ev.comm, ev.env);
            if (traced || !ev.provisional) rejected.delete(ev.pid);
            else rejected.add(ev.pid);
            // A traced process's new image (a shell's exec of curl) may use OpenSSL where the
            // old did not (no `add` comes for one traced before), once its libraries are mapped.
            if (traced) tls.onExec(ev.pid);
            break;
          }
          case 'thread':
            // A handler that starts threads for its downstream calls: the new thread joins
            // the group its creator serves now (if exactly one), until that group closes;
            // whether its calls keep it is decided then (thread_exit, below).
            // The kernel reports this before the new thread runs, so it precedes its calls.
            groups.inherit(threadKey(ev.pid, ev.ptid, 0), threadKey(ev.pid, ev.tid, 0), ev.pid);
            break;
          case 'thread_exit':
            // A thread that ends before its creator's request ends was started for it; one
            // that lives on is taken for a pool's worker (threadgroup.ts, settle).
            groups.threadExit(threadKey(ev.pid, ev.tid, 0), ev.tsNs);
            procs.onThreadExit(ev.pid, ev.tid);
            break;
          case 'goroutine':
            // The same for a goroutine started by another (a handler's fan-out).
            groups.inherit(threadKey(ev.pid, 0, ev.pgoid), threadKey(ev.pid, 0, ev.goid), ev.pid);
            break;
          case 'exit':
            // Exit events come for every process on the host: keep the common case cheap.
            conns.onProcessExit(ev.pid, ev.tsNs);
            groups.dropProcess(ev.pid, ev.tsNs);
            procs.onExit(ev.pid);
            tls.onExit(ev.pid);
            rejected.delete(ev.pid);
            break;
          case 'stats': break;
        }
      } catch (e) {
        // One malformed sequence must not stop the agent: count it, say it, go on.
        eventErrors++;
        rateLog(`seqtrace agent: ${seqError('SEQ_ERR_AGENT', `event ${ev.kind} failed: ${(e as Error).stack ?? e}`).message}`);
      }
    }
    // Events come in time order: everything up to the last one's time is in.
    for (let i = batch.length - 1; i >= 0; i--) {
      const ev = batch[i];
      if (ev.kind !== 'stats') {
        groups.advance(ev.tsNs);
        break;
      }
    }
  }

  procs.scan();
  const start = opts.startCapture ?? realStartCapture;
  const mode = cfg.capture_mode as CaptureOptions['mode'];
  // What selects and names a process, read by the loader at its exec (procs.ts, onExec).
  const execEnv = [...new Set([...SERVICE_ENV, ...cfg.trace_envset])].filter(isExecEnvName).slice(0, EXEC_ENV_MAX);
  // Counters of the loaders that stopped: a restarted loader counts from 0, the metrics go on.
  let before: StatsEvent = { kind: 'stats', ringbufDrops: 0, events: 0, truncated: 0, loaderCpuNs: 0, late: 0 };
  let loaderRestarts = 0;
  let stopping = false;
  let restartTimer: NodeJS.Timeout | null = null;
  let loaderSince = 0; // when the running loader started (ms)
  let restartDelay = 0; // the last wait before a restart (ms)
  let launching: Promise<Capture> | null = null;
  // What the loader that stopped had been told: told the next one again, not counted again.
  const toldBefore = new Set<number>();

  /**
   * Start a loader with the pids traced now, then settle what changed while it started. Pids
   * chosen or dropped meanwhile (the exec of a service started then reaches onEvents with the
   * loader's first frames, before `capture` is set) are added now, or removed if the loader
   * was given them; a Go process's probes are named to it. (Until 2026-12-06 the first were
   * never added: a service started during the start, 0.4 s in socket mode and 3.2 s in
   * syscall mode here, was counted as traced and never was.)
   */
  function launch(): Promise<Capture> {
    const p = launchOnce();
    launching = p;
    void p.then(() => { launching = null; }, () => { launching = null; });
    return p;
  }

  async function launchOnce(): Promise<Capture> {
    const atStart = new Set(initialPids);
    const c = await start({
      mode, captureBytes: cfg.capture_bytes, pids: [...atStart], provisionalExec: true, execEnv, onEvents, onError: loaderStopped,
    });
    capture = c;
    loaderSince = Date.now();
    askShutdowns(c);
    for (const pid of new Set([...atStart, ...initialPids, ...removedAtStart])) {
      if (!procs.isTraced(pid)) {
        if (atStart.has(pid) || removedAtStart.has(pid)) void c.removePid(pid).catch(() => {});
      } else if (atStart.has(pid)) void onTraced(pid, toldBefore.has(pid));
      else pidCommand('add', pid);
    }
    initialPids.clear();
    removedAtStart.clear();
    toldBefore.clear();
    return c;
  }

  /**
   * The loader stopped after it had started (it crashed, was killed, sent a bad frame): the
   * kernel side went with it. Start another after 1 s; while starting fails, or a loader stops
   * within a minute of its start (a fault that comes back), wait twice as long each time, up to
   * 30 s. What the processes did meanwhile is not seen (each connection skips the bytes by
   * their sequence numbers), everything else goes on.
   */
  function loaderStopped(err: SeqError): void {
    const dead = capture;
    // Stopped as soon as it was ready, before launch() got it: once it has.
    if (!dead && launching && !stopping) {
      void launching.then(() => loaderStopped(err), () => {});
      return;
    }
    log(`seqtrace agent: ${err.code}: ${err.message}`);
    if (stopping || !dead) return;
    before = sumStats(before, dead.stats());
    capture = null;
    // What is traced now is what the next loader is given (pidCommand adds to it meanwhile).
    for (const pid of procs.tracedPids()) { initialPids.add(pid); toldBefore.add(pid); }
    golang.reset();
    tls.reset();
    let delay = restartDelay > 0 && Date.now() - loaderSince < 60_000 ? Math.min(restartDelay * 2, 30_000) : 1000;
    const retry = () => {
      restartTimer = null;
      if (stopping) return;
      launch().then((c) => {
        restartDelay = delay;
        loaderRestarts++;
        log(`seqtrace agent: the eBPF loader runs again (restart ${loaderRestarts}), tracing ${procs.stats.traced} processes`);
        if (stopping) void c.close();
      }, (e: Error) => {
        if (stopping) return;
        delay = Math.min(delay * 2, 30_000);
        log(`seqtrace agent: restarting the eBPF loader failed, again in ${delay / 1000} s: ${e.message}`);
        restartTimer = setTimeout(retry, delay);
      });
    };
    restartTimer = setTimeout(retry, delay);
  }

  let first: Capture;
  try {
    first = await launch();
  } catch (e) {
    procs.close();
    clearInterval(clockTimer);
    await sender.close(0);
    throw e;
  }
  let ticks = 0;
  const scanTimer = setInterval(() => {
    procs.scan();
    nameTraced(Date.now());
    // Connections whose close was never seen (lost in a full ring buffer) must not stay forever.
    if (++ticks % 10 === 0) conns.expireIdle();
  }, opts.scanIntervalMs ?? 1000);
  scanTimer.unref();
  // Time passes for the inheritances waiting to be decided even when no events come (the
  // exits they hold should reach the linker with their peers). An event reaches the agent
  // within ≈ 75 ms of its time (docs/kernel.md, "Batches and order"): 250 ms back is safely
  // behind what has been read.
  const decideTimer = setInterval(() => groups.advance(Number(process.hrtime.bigint()) - 250e6), 100);
  decideTimer.unref();

  /** The running loader's counters (none while it restarts) on top of those of the loaders before. */
  const captureStats = (): StatsEvent => (capture ? sumStats(before, capture.stats()) : before);
  const stats = (): AgentStats => ({
    captureMode: (capture ?? first).mode, capture: captureStats(), loaderRestarts, socketsMuted, events, eventErrors, rejectedEvents, conns: conns.stats, groups: groups.stats,
    procs: procs.stats, sender: sender.stats(), pidErrors, go: golang.stats, tls: tls.stats,
  });
  // Collectors read one snapshot taken per scrape, not one stats() per metric.
  let snap: AgentStats = stats();
  const registry = agentMetrics(() => snap, () => groups.openCount(), () => conns.pendingExchanges());

  let server: Server | null = null;
  let metricsUrl = '';
  if (cfg.metrics_listen) {
    const l = parseListen(cfg.metrics_listen)!;
    server = createServer((req, res) => {
      if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
        snap = stats();
        res.writeHead(200, { 'content-type': CONTENT_TYPE });
        res.end(registry.render());
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found: the agent serves GET /metrics\n');
      }
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(l.port, l.host, () => resolve());
      });
    } catch (e) {
      clearInterval(scanTimer);
      clearInterval(decideTimer);
      procs.close();
      stopping = true;
      await capture?.close();
      await sender.close(0);
      throw seqError('SEQ_ERR_CONFIG', `cannot listen on inputs.ebpf.metrics_listen = "${cfg.metrics_listen}": ${(e as Error).message}`);
    }
    const a = server.address() as AddressInfo;
    metricsUrl = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics`;
  }

  // One line that says the agent works and what it watches: an agent that traces nothing
  // (a service started without any trace_envset variable) otherwise looks like a broken one.
  log(`seqtrace agent: capturing in ${first.mode} mode, tracing ${describeSelection(cfg, procs.stats.traced)}; ` +
    `spans to ${sender.url}${metricsUrl ? `, metrics on ${metricsUrl}` : ''}`);

  let closed: Promise<void> | null = null;
  return {
    metricsUrl,
    ingestUrl: sender.url,
    stats,
    close() {
      closed ??= (async () => {
        clearInterval(scanTimer);
        clearInterval(decideTimer);
        clearInterval(clockTimer);
        procs.close();
        stopping = true;
        if (restartTimer) clearTimeout(restartTimer);
        await capture?.close();
        conns.clear();
        groups.flush(); // exits held for a decision go out with what is known now
        await sender.close(3000);
        if (server) await new Promise<void>((r) => server!.close(() => r()));
      })();
      return closed;
    },
  };
}

/** Two loaders' counters added up. */
function sumStats(a: StatsEvent, b: StatsEvent): StatsEvent {
  return {
    kind: 'stats', ringbufDrops: a.ringbufDrops + b.ringbufDrops, events: a.events + b.events,
    truncated: a.truncated + b.truncated, loaderCpuNs: a.loaderCpuNs + b.loaderCpuNs, late: a.late + b.late,
  };
}

/** Which processes the configuration selects, in the seed's words, and how many are traced now. */
export function describeSelection(
  cfg: Pick<AgentConfig, 'trace_all_process' | 'trace_envset' | 'trace_nameset' | 'trace_namedenyset'>, tracedNow: number,
): string {
  const ways = cfg.trace_all_process ? ['every process'] : [
    ...(cfg.trace_envset.length ? [`any process with ${cfg.trace_envset.join(', ')} in its environment`] : []),
    ...(cfg.trace_nameset.length ? [`any process named ${cfg.trace_nameset.join(', ')}`] : []),
  ];
  const deny = cfg.trace_namedenyset.length ? `, never ${cfg.trace_namedenyset.join(', ')}` : '';
  return `${ways.join(' or ') || 'no process (trace_envset and trace_nameset are empty)'} (${tracedNow} now)${deny}`;
}

function agentMetrics(s: () => AgentStats, openGroups: () => number, pendingExchanges: () => number): Registry {
  const r = createRegistry();
  const p = 'seqtrace_agent_';
  r.collect(`${p}capture_events_total`, 'events the kernel emitted', 'counter', () => s().capture.events);
  r.collect(`${p}capture_drops_total`, 'events lost because the ring buffer was full', 'counter', () => s().capture.ringbufDrops);
  r.collect(`${p}capture_truncated_total`, 'captures cut short in the kernel', 'counter', () => s().capture.truncated);
  r.collect(`${p}capture_late_events_total`, 'events the loader got after it had written out later ones (out of time order)', 'counter', () => s().capture.late);
  r.collect(`${p}loader_cpu_seconds_total`, 'CPU time of the eBPF loader process', 'counter', () => s().capture.loaderCpuNs / 1e9);
  r.collect(`${p}loader_restarts_total`, 'eBPF loaders started again after one stopped (crashed, killed): what the kernel saw in between is lost', 'counter', () => s().loaderRestarts);
  r.collect(`${p}events_total`, 'events received from the capture, by kind', 'counter', () => Object.entries(s().events).map(([kind, n]) => [{ kind }, n]));
  r.collect(`${p}event_errors_total`, 'events whose processing failed', 'counter', () => s().eventErrors);
  r.collect(`${p}rejected_events_total`, 'events of processes the kernel traced from their exec until the agent decided not to trace them: dropped', 'counter', () => s().rejectedEvents);
  r.collect(`${p}parse_errors_total`, 'calls where an HTTP start line was due and none was found', 'counter', () => s().conns.parse.parseErrors);
  r.collect(`${p}http_truncated_total`, 'messages whose start line or headers were not fully captured', 'counter', () => s().conns.parse.truncated);
  r.collect(`${p}chunked_framing_lost_total`, 'chunked bodies whose chunk sizes fell in uncaptured bytes', 'counter', () => s().conns.parse.chunkedLost);
  r.collect(`${p}trace_context_invalid_total`, 'trace headers present but malformed', 'counter', () => s().conns.trace.invalid);
  r.collect(`${p}spans_total`, 'spans made', 'counter', () => s().conns.spans);
  r.collect(`${p}spans_failed_total`, 'spans of exchanges that ended without a complete response', 'counter', () => s().conns.failedSpans);
  r.collect(`${p}exchanges_dropped_total`, 'requests forgotten (connection evicted, too many pipelined)', 'counter', () => s().conns.droppedExchanges);
  r.collect(`${p}orphan_responses_total`, 'responses with no request seen', 'counter', () => s().conns.orphanResponses);
  r.collect(`${p}connections_tracked`, 'connections tracked now', 'gauge', () => s().conns.tracked);
  r.collect(`${p}exchanges_pending`, 'requests waiting for their responses, over all tracked connections', 'gauge', pendingExchanges);
  r.collect(`${p}connections_evicted_total`, 'connections evicted from the bounded table', 'counter', () => s().conns.evicted);
  r.collect(`${p}connections_expired_total`, 'connections forgotten after 120 s without a call (15 min for a client waiting for its answer): their close was not seen', 'counter', () => s().conns.expired);
  r.collect(`${p}connections_unclassified_total`, 'calls on connections before any request was seen', 'counter', () => s().conns.unclassified);
  r.collect(`${p}connections_other_protocol_total`, 'connections taken for another protocol than HTTP/1 (4 turns between sending and receiving, or 64 calls one way, without a request start: a database, a cache, a log stream): their calls since are not parsed', 'counter', () => s().conns.otherProtocol);
  r.collect(`${p}sockets_muted_total`, 'sockets whose bytes the kernel stopped capturing, not carrying HTTP/1 (other protocol, HTTP/2, WebSocket, tunnel)', 'counter', () => s().socketsMuted);
  r.collect(`${p}connections_protocol_switched_total`, 'connections that left HTTP/1 (101 Switching Protocols: WebSocket, h2c; a CONNECT tunnel) or began as HTTP/2 (its preface): their calls since are not parsed', 'counter', () => s().conns.protocolSwitches);
  r.collect(`${p}unix_messages_paired_total`, 'messages on Unix sockets whose two ends were both seen and given one id (the spans\' req_seq / resp_seq)', 'counter', () => s().conns.unix.paired);
  r.collect(`${p}unix_messages_unpaired_total`, 'messages on Unix sockets only one end reported (its peer not traced, tracing begun mid-exchange, a pipelining client)', 'counter', () => s().conns.unix.unpaired);
  r.collect(`${p}thread_groups_opened_total`, 'thread groups opened (entries)', 'counter', () => s().groups.opened);
  r.collect(`${p}thread_group_joins_total`, 'exit spans that joined a thread group', 'counter', () => s().groups.joined);
  r.collect(`${p}thread_group_ambiguous_total`, 'exit spans that found several open groups on their thread and joined none', 'counter', () => s().groups.ambiguous);
  r.collect(`${p}thread_group_request_id_joins_total`, 'exit spans that joined the open entry of their process whose request or response carried the same X-Request-ID, their thread having no single open group', 'counter', () => s().groups.byRequestId + s().conns.answeredRequestIds);
  r.collect(`${p}thread_group_inherited_total`, 'threads created while their creator served one entry (they join its group until it closes)', 'counter', () => s().groups.inherited);
  r.collect(`${p}thread_group_pooled_total`, 'exits that joined an inherited group but were sent without it: their thread outlived the group (a pool\'s worker)', 'counter', () => s().groups.pooled);
  r.collect(`${p}thread_groups_open`, 'thread groups open now', 'gauge', openGroups);
  r.collect(`${p}spans_sent_total`, 'spans the linker accepted', 'counter', () => s().sender.sent);
  r.collect(`${p}spans_dropped_total`, 'spans dropped because the send buffer was full', 'counter', () => s().sender.dropped);
  r.collect(`${p}spans_send_failed_total`, 'spans given up on after sending failed', 'counter', () => s().sender.failed);
  r.collect(`${p}spans_rejected_by_linker_total`, 'spans the linker rejected as malformed', 'counter', () => s().sender.rejectedByLinker);
  r.collect(`${p}send_retries_total`, 'retried POSTs to the linker', 'counter', () => s().sender.retries);
  r.collect(`${p}send_queue_spans`, 'spans waiting to be sent', 'gauge', () => s().sender.queueDepth + s().sender.inFlight);
  r.collect(`${p}send_queue_bytes`, 'bytes held for sending: the batch being built plus the compressed queue (bounded by send_buffer_bytes)', 'gauge', () => s().sender.queueBytes);
  r.collect(`${p}traced_processes`, 'processes selected for tracing', 'gauge', () => s().procs.traced);
  r.collect(`${p}environ_unreadable_total`, 'processes whose environment could not be read (another user\'s without CAP_SYS_PTRACE, or one the kernel protects even then): trace_envset cannot select them, they go by their name', 'counter', () => s().procs.environUnreadable);
  r.collect(`${p}go_processes_total`, 'Go processes traced, by how: goroutine (followed) or thread (binary unreadable: Go < 1.17, not amd64, its pclntab not found; calls joined to requests by X-Request-ID only)', 'counter', () => [[{ by: 'goroutine' }, s().go.byGoroutine], [{ by: 'thread' }, s().go.byThread]]);
  r.collect(`${p}go_errors_total`, 'Go processes whose offsets or uprobes the kernel refused (calls joined to requests by X-Request-ID only)', 'counter', () => s().go.errors);
  r.collect(`${p}tls_processes_total`, 'processes whose OpenSSL calls are probed (their HTTPS seen in plaintext)', 'counter', () => s().tls.processes);
  r.collect(`${p}tls_errors_total`, 'processes whose OpenSSL probes the kernel refused (their HTTPS not seen)', 'counter', () => s().tls.errors);
  r.collect(`${p}tls_unseen_connections_total`, 'connections that began a TLS handshake whose plaintext the capture does not get (TLS not from OpenSSL with a socket BIO: Go, Java, Node.js; or begun before the probes were on the process): muted', 'counter', () => s().conns.tlsUnseen);
  r.collect(`${p}pid_command_errors_total`, 'add/remove pid commands the loader refused', 'counter', () => s().pidErrors);
  return r;
}
