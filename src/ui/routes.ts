// The web UI: static files (plain ES modules, no build step) served by the linker's Fastify
// app beside the query API. Every client-side route answers with index.html so that a
// deep link (/trace/<id>, /map, /search?…) opens directly.
//
// Assets are read once at registration, with a strong ETag and a gzip copy made then, so
// serving is a Map lookup: no disk reads, no compression per request.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export interface UiOptions {
  /** Folder of the static files; defaults to src/ui/public of this checkout. */
  publicDir?: string;
  /** URL prefix of the assets (default `/ui/`). */
  assetPrefix?: string;
}

interface Asset {
  body: Buffer;
  gzip?: Buffer;
  etag: string;
  type: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** Client-side routes of the single-page app; each serves index.html. */
export const UI_PAGES = ['/', '/search', '/trace/:traceId', '/map'] as const;

/**
 * Where the static files are: beside this module when run from source (tsx), or in the
 * checkout's src/ui/public when run from dist/ (tsc does not copy non-TS files, and the UI
 * needs no build of its own).
 */
export function defaultPublicDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const candidates = [join(here, 'public'), join(here, '..', '..', 'src', 'ui', 'public')];
  for (const dir of candidates) if (existsSync(join(dir, 'index.html'))) return dir;
  throw new Error(`seqtrace UI files not found; looked in ${candidates.join(', ')}`);
}

function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) { walk(full); continue; }
      const type = TYPES[extname(name)];
      if (!type) continue; // tsconfig, notes: not served
      const body = readFileSync(full);
      const etag = `"${createHash('sha1').update(body).digest('base64url').slice(0, 22)}"`;
      // Text compresses well; images are already compressed and small files gain nothing.
      const gzip = type.startsWith('image/png') || body.length < 1024 ? undefined : gzipSync(body, { level: 9 });
      assets.set(relative(dir, full).split(sep).join('/'), { body, gzip, etag, type });
    }
  };
  walk(dir);
  return assets;
}

function send(req: FastifyRequest, reply: FastifyReply, asset: Asset, cacheControl: string) {
  reply.header('content-type', asset.type);
  reply.header('etag', asset.etag);
  // Revalidate each time: files keep their names across versions, and a 304 costs little.
  reply.header('cache-control', cacheControl);
  reply.header('vary', 'accept-encoding');
  reply.header('x-content-type-options', 'nosniff');
  const inm = req.headers['if-none-match'];
  if (inm && inm.split(',').some((t) => t.trim() === asset.etag || t.trim() === `W/${asset.etag}`)) {
    return reply.code(304).send();
  }
  const ae = req.headers['accept-encoding'];
  if (asset.gzip && typeof ae === 'string' && /\bgzip\b/.test(ae)) {
    reply.header('content-encoding', 'gzip');
    return reply.send(asset.gzip);
  }
  return reply.send(asset.body);
}

/**
 * Fastify plugin: the UI at `/`, its client routes, and its assets under `/ui/`.
 * Register it on the same app as the query routes (`/api/...`); it adds no `/api` route.
 */
export function uiRoutes(opts: UiOptions = {}) {
  const dir = opts.publicDir ?? defaultPublicDir();
  const prefix = opts.assetPrefix ?? '/ui/';
  const assets = loadAssets(dir);
  const index = assets.get('index.html');
  if (!index) throw new Error(`seqtrace UI: ${join(dir, 'index.html')} is missing`);

  return async function ui(app: FastifyInstance): Promise<void> {
    const page = (req: FastifyRequest, reply: FastifyReply) => send(req, reply, index, 'no-cache');
    for (const path of UI_PAGES) app.get(path, page);
    app.get(`${prefix}*`, (req, reply) => {
      const name = (req.params as { '*': string })['*'];
      const asset = assets.get(name);
      if (!asset) {
        return reply.code(404).send({ code: 'SEQ_ERR_NOT_FOUND', message: `no UI asset named "${name}"` });
      }
      return send(req, reply, asset, 'no-cache');
    });
    app.get('/favicon.ico', (req, reply) => {
      const icon = assets.get('favicon.svg');
      if (!icon) return reply.code(404).send();
      return send(req, reply, icon, 'public, max-age=86400');
    });
  };
}
