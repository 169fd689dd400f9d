// Shared by the UI tests and bench/ui.ts: a real Fastify server (query API + UI) over a
// real SQLite store, and a real headless Chromium (Debian's) driven by playwright-core.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { chromium, type BrowserContext } from 'playwright-core';
import { queryRoutes } from '../query/routes.js';
import { openSqliteStore, type SqliteStore } from '../storage/sqlite.js';
import { uiRoutes } from './routes.js';

export const CHROMIUM = process.env.SEQTRACE_CHROMIUM ?? '/usr/bin/chromium';

export interface UiServer {
  url: string;
  store: SqliteStore;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** A store in a fresh temp dir and a server on an ephemeral port with the API and the UI. */
export async function startUiServer(): Promise<UiServer> {
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
    app,
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
