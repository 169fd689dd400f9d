// Every error seqtrace reports to a user is registered here once, with a stable code.
// docs/errors.md documents each code; a test checks that the two lists agree.

export const ERRORS = {
  SEQ_ERR_CONFIG: 'a configuration value is invalid',
  SEQ_ERR_CONFIG_FILE: 'the configuration file cannot be read or parsed',
  SEQ_ERR_BAD_SPAN: 'a span in an ingest batch is malformed',
  SEQ_ERR_BAD_BODY: 'an ingest body cannot be decoded at all',
  SEQ_ERR_BODY_TOO_LARGE: 'an ingest body or batch exceeds a configured limit',
  SEQ_ERR_UNSUPPORTED_MEDIA: 'an ingest body has a content type or encoding that is not accepted',
  SEQ_ERR_UNAUTHORIZED: 'a request lacks the token the server requires',
  SEQ_ERR_STORAGE_FULL: 'storage cannot accept new data (disk full); accepted data is kept',
  SEQ_ERR_STORAGE: 'storage failed to read or write',
  SEQ_ERR_NOT_FOUND: 'the requested trace or resource does not exist',
  SEQ_ERR_BAD_QUERY: 'a query parameter is invalid',
  SEQ_ERR_EXPORT: 'exporting to the OTLP endpoint failed',
  SEQ_ERR_EBPF_UNAVAILABLE: 'eBPF cannot be loaded on this machine (privileges, BTF, kernel)',
  SEQ_ERR_EBPF_LOAD: 'the eBPF programs failed to load or attach',
  SEQ_ERR_AGENT: 'the agent failed at run time',
  SEQ_ERR_INTERNAL: 'an unexpected failure inside seqtrace (a bug)',
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class SeqError extends Error {
  readonly code: ErrorCode;
  /** HTTP status to answer with when the error reaches a client. */
  readonly status: number;
  constructor(code: ErrorCode, message: string, status = 500) {
    super(message);
    this.name = 'SeqError';
    this.code = code;
    this.status = status;
  }
}

export function seqError(code: ErrorCode, message: string, status?: number): SeqError {
  return new SeqError(code, message, status);
}
