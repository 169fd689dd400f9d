// The query API (docs/query-api.md): a Fastify plugin over a TraceReader. The linker service
// registers it (`app.register(queryRoutes(store))`) and handles the query token itself.
import type { FastifyError, FastifyPluginAsync } from 'fastify';
import { SeqError } from '../errors.js';
import type { TraceQuery, TraceReader } from '../storage/store.js';
import { badQuery, parseDurationUs, parseLimit, parseTimeUs, parseTraceId, singleParams } from './params.js';

const SEARCH_PARAMS = ['service', 'operation', 'status', 'minDuration', 'maxDuration', 'start', 'end', 'limit', 'cursor'] as const;
const RANGE_PARAMS = ['start', 'end'] as const;
const HOUR_US = 3_600_000_000;

export function parseSearch(query: unknown): TraceQuery {
  const p = singleParams(query, SEARCH_PARAMS);
  const q: TraceQuery = {};
  if (p.service !== undefined) q.service = p.service;
  if (p.operation !== undefined) q.operation = p.operation;
  if (p.status !== undefined) {
    if (p.status !== 'ok' && p.status !== 'warning' && p.status !== 'error') throw badQuery('status', p.status, 'ok, warning or error');
    q.status = p.status;
  }
  if (p.minDuration !== undefined) q.minDurationUs = parseDurationUs('minDuration', p.minDuration);
  if (p.maxDuration !== undefined) q.maxDurationUs = parseDurationUs('maxDuration', p.maxDuration);
  if (q.minDurationUs !== undefined && q.maxDurationUs !== undefined && q.minDurationUs > q.maxDurationUs) {
    throw badQuery('minDuration', p.minDuration, `at most maxDuration (${p.maxDuration})`);
  }
  if (p.start !== undefined) q.startUs = parseTimeUs('start', p.start);
  if (p.end !== undefined) q.endUs = parseTimeUs('end', p.end);
  if (q.startUs !== undefined && q.endUs !== undefined && q.startUs > q.endUs) throw badQuery('start', p.start, `not after end (${p.end})`);
  if (p.limit !== undefined) q.limit = parseLimit(p.limit);
  if (p.cursor !== undefined) q.cursor = p.cursor;
  return q;
}

export function queryRoutes(reader: TraceReader, opts: { now?: () => number } = {}): FastifyPluginAsync {
  const now = opts.now ?? Date.now;
  return async (app) => {
    app.setErrorHandler((err: FastifyError | SeqError, _req, reply) => {
      if (err instanceof SeqError) return reply.code(err.status).send({ code: err.code, message: err.message });
      if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
        return reply.code(err.statusCode).send({ code: 'SEQ_ERR_BAD_QUERY', message: err.message });
      }
      app.log.error(err);
      return reply.code(500).send({ code: 'SEQ_ERR_STORAGE', message: `query failed: ${err.message}` });
    });

    app.get('/api/traces', async (req) => reader.findTraces(parseSearch(req.query)));

    app.get<{ Params: { traceId: string } }>('/api/traces/:traceId', async (req) => {
      singleParams(req.query, []);
      const traceId = parseTraceId(req.params.traceId);
      const spans = await reader.getTrace(traceId);
      if (!spans) throw new SeqError('SEQ_ERR_NOT_FOUND', `trace ${traceId} is not stored (unknown id, not sampled, or deleted by retention)`, 404);
      return { traceId, spans };
    });

    app.get('/api/services', async (req) => {
      singleParams(req.query, []);
      return { services: await reader.services() };
    });

    app.get<{ Params: { service: string } }>('/api/services/:service/operations', async (req) => {
      singleParams(req.query, []);
      return { operations: await reader.operations(req.params.service) };
    });

    app.get('/api/dependencies', async (req) => {
      const p = singleParams(req.query, RANGE_PARAMS);
      const endUs = p.end !== undefined ? parseTimeUs('end', p.end) : now() * 1000;
      const startUs = p.start !== undefined ? parseTimeUs('start', p.start) : endUs - HOUR_US;
      if (startUs > endUs) throw badQuery('start', p.start ?? startUs, `not after end (${p.end ?? endUs})`);
      return { edges: await reader.dependencies(startUs, endUs) };
    });
  };
}
