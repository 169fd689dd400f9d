// Per-trace sampling, decided once for a whole trace from its trace id, so that every linker
// (and Datadog's own agents, which use the same hash) keeps or drops the same traces, and late
// spans follow the decision recorded for their trace (DataKit let the second window's part of
// a trace escape the decision, §3.6).
//
// Precedence, first match wins:
//   1. keep_error_traces and the trace has an error          → keep (even over an app drop flag)
//   2. an application flag (app_span_sampled 1 / -1)         → keep / drop; when spans disagree
//      the span closest to the root decides, and keep wins a tie at the same depth
//   3. the rate: (low 64 bits of the trace id × 1111111111111111111) mod 2^64 < rate × 2^64
//      (Knuth's multiplicative hash, as Datadog's samplers do).
import type { EbpfSpan } from '../../span/span.js';

const KNUTH = 1111111111111111111n;
const MASK64 = (1n << 64n) - 1n;

/** The rate threshold as a BigInt: rate × 2^64 (2^64 keeps everything). */
export function rateThreshold(rate: number): bigint {
  if (rate >= 1) return 1n << 64n;
  if (rate <= 0) return 0n;
  return BigInt(Math.floor(rate * 18446744073709551616));
}

/** Rate decision for a 32-hex trace id. */
export function keptByRate(traceId: string, threshold: bigint): boolean {
  const low = BigInt('0x' + traceId.slice(16));
  return ((low * KNUTH) & MASK64) < threshold;
}

/** A span counts as an error: status error, a 5xx, or an exchange that never got a response (0). */
export function isErrorSpan(span: EbpfSpan): boolean {
  return span.status === 'error' || span.httpStatusCode >= 500 || span.httpStatusCode === 0;
}
