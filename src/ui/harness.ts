// Shared by the UI tests and bench/ui.ts: a real server (the linker, or the query API and UI
// over a SQLite store) and a real headless Chromium (Debian's) driven by playwright-core.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { chromium, type BrowserContext } from 'playwright-core';
import { loadConfig } from '../config/config.js';
import { startLinker } from '../linker/service.js';
import { queryRoutes } from '../query/routes.js';
import { encodeSpans } from '../span/lineprotocol.js';
import type { EbpfSpan } from '../span/span.js';
import { openSqliteStore, type SqliteStore } from '../storage/sqlite.js';
import type { TraceReader, TraceWriter } from '../storage/store.js';
import { uiRoutes } from './routes.js';

export const CHROMIUM = process.env.SEQTRACE_CHROMIUM ?? '/usr/bin/chromium';

export interface UiServer {
  /** Base URL of the UI and the query API. */
  url: string;
  store: TraceWriter & TraceReader;
  /** Sends spans the way an agent does (line protocol on POST /v1/bpftracing); linker mode only. */
  post(spans: EbpfSpan[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * The real linker (`startLinker`: ingest, joiner, SQLite, query API, UI) on an ephemeral
 * port, with a short window and every trace kept, so posted spans are linked and stored
 * within a second.
 */
export async function startLinkerUi(over: Record<string, string> = {}): Promise<UiServer> {
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-ui-'));
  try {
    const { linker: cfg } = loadConfig({
      env: {
        ENV_HTTP_LISTEN: '127.0.0.1:0', ENV_INPUT_EBPFTRACE_SQLITE_PATH: join(dir, 'db'),
        ENV_INPUT_EBPFTRACE_WINDOW: '300ms', ENV_INPUT_EBPFTRACE_SAMPLING_RATE: '1', ...over,
      },
    });
    const linker = await startLinker(cfg, { logger: false, flushIntervalMs: 100 });
    return {
      url: linker.queryUrl,
      store: linker.store,
      async post(spans) {
        const r = await fetch(`${linker.url}/v1/bpftracing`, { method: 'POST', body: encodeSpans(spans) });
        const body = await r.text();
        if (r.status !== 200 || JSON.parse(body).rejected) throw new Error(`ingest answered ${r.status}: ${body}`);
      },
      async close() {
        await linker.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * The query API and the UI over a SQLite store filled directly with `commit` (the bench:
 * 100,000 traces through HTTP and the joiner would measure the linker, not the UI).
 */
export async function startStoreUi(): Promise<UiServer & { store: SqliteStore }> {
  const dir = mkdtempSync(join(tmpdir(), 'seqtrace-ui-'));
  const store = openSqliteStore(dir, {
    retentionMaxAgeMs: 365 * 24 * 3600_000, retentionMaxBytes: 64 * 1024 ** 3, sweepIntervalMs: 0, exportQueue: false,
  });
  const app = Fastify();
  try {
    await app.register(queryRoutes(store));
    await app.register(uiRoutes());
    await app.listen({ port: 0, host: '127.0.0.1' });
  } catch (e) {
    await app.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    store,
    async post() {
      throw new Error('startStoreUi has no linker: commit() to the store');
    },
    async close() {
      await app.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/**
 * Headless Chromium with a fresh profile, and nothing that reaches the network by itself
 * (the machine has no outside network; these flags keep Chromium from trying).
 */
export async function launchBrowser(viewport = { width: 1400, height: 900 }): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'seqtrace-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport,
      args: [
        ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--no-first-run', '--disable-quic', '--disable-dev-shm-usage',
      ],
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    throw new Error(`cannot start Chromium at ${CHROMIUM} (scripts/install.sh --test installs Debian's chromium): ${(e as Error).message}`);
  }
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
