// What every seqtrace HTTP server shares: one error handler turning SeqError (and Fastify's
// own errors) into `{code, message}` with the right status, a 404 in the same shape, and a
// constant-time bearer-token check.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SeqError, seqError } from '../errors.js';

/** Fastify's own errors, mapped onto seqtrace codes. */
function fromFastify(e: FastifyError, bodyLimit: number): SeqError | undefined {
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return seqError('SEQ_ERR_BODY_TOO_LARGE', `${e.message}: over the limit of ${bodyLimit} bytes (max_body_bytes)`, 413);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return seqError('SEQ_ERR_UNSUPPORTED_MEDIA', e.message, 415);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return seqError('SEQ_ERR_BAD_BODY', e.message, 400);
    case 'FST_ERR_VALIDATION':
      return seqError('SEQ_ERR_BAD_QUERY', e.message, 400);
  }
  if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) return seqError('SEQ_ERR_BAD_QUERY', e.message, e.statusCode);
  return undefined;
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | SeqError, req: FastifyRequest, reply: FastifyReply) => {
    const e = err instanceof SeqError ? err : fromFastify(err as FastifyError, app.initialConfig.bodyLimit ?? 1048576);
    if (!e) {
      req.log.error({ err }, 'unexpected failure');
      return reply.status(500).send({ code: 'SEQ_ERR_INTERNAL', message: `internal error: ${err.message}` });
    }
    if (e.status >= 500) req.log.error({ code: e.code }, e.message);
    return reply.status(e.status).send({ code: e.code, message: e.message });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.status(404).send({ code: 'SEQ_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
}

/** A hook that answers 401 SEQ_ERR_UNAUTHORIZED unless `Authorization: Bearer <token>` matches; no-op for ''. */
export function bearerGuard(token: string, what: string) {
  const want = Buffer.from(token);
  return async (req: FastifyRequest): Promise<void> => {
    if (token === '') return;
    // The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    const got = Buffer.from(m ? m[1] : '');
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      throw seqError('SEQ_ERR_UNAUTHORIZED', `${what} requires the header "Authorization: Bearer <token>" with the configured token`, 401);
    }
  };
}
