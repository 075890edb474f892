// Retry stage, after an attempt ended: may the request be sent again? (undici retry-handler, Envoy retry_on.)
// Guarantees: never past maxAttempts, never without a replayable body, never a possibly-processed non-idempotent request.
/*
 * Outcomes:
 *   connect-failed          no byte of the request left this proxy, so it is safe to retry for
 *                           ANY method (Envoy's reset-before-request). The caller must report it
 *                           only when the TCP/TLS connect itself failed, never for a reused
 *                           connection that broke after the request was written; or (HTTP/2) when
 *                           the endpoint refused the stream: REFUSED_STREAM promises it was not
 *                           processed (RFC 9113 §8.7; Envoy's refused-stream).
 *   reset-before-response   the upstream may have acted on it: configured methods only.
 *   status                  a configured status, configured methods only.
 *   grpc-status             a gRPC answer with a configured grpc-status in its headers (a
 *                           trailers-only answer: nothing of a body was relayed yet), configured
 *                           methods only (gRPC calls are POST), as Envoy's retry_on gRPC codes.
 *   timeout (per try)       the upstream may still be working on it: configured methods only.
 * The budget (retry-budget.ts) and the whole-request deadline are checked by the caller.
 */

export const DEFAULT_RETRY = Object.freeze({
  /** Total attempts including the first. */
  attempts: 3,
  statuses: Object.freeze([502, 503, 504]) as readonly number[],
  /** UNAVAILABLE: the code gRPC names as safe to retry, and the proxies' own 502/503/504 for gRPC callers (http2/fields.ts). */
  grpcStatuses: Object.freeze([14]) as readonly number[],
  methods: Object.freeze(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']) as readonly string[],
  /** Request bodies larger than this are sent once, never buffered for replay. */
  maxBufferedBody: 65536,
});

export type AttemptOutcome =
  | { kind: 'status'; status: number }
  | { kind: 'grpc-status'; code: number }
  | { kind: 'connect-failed' }
  | { kind: 'reset-before-response' }
  | { kind: 'timeout' };

export interface RetryInput {
  method: string;
  /** Attempts made so far (1 after the first attempt). */
  attempt: number;
  /** Total attempts allowed, including the first. */
  maxAttempts: number;
  outcome: AttemptOutcome;
  statuses: ReadonlySet<number>;
  grpcStatuses: ReadonlySet<number>;
  methods: ReadonlySet<string>;
  /** The whole body is buffered (or there is none), so it can be sent again. */
  bodyReplayable: boolean;
}

export function isRetryable(input: RetryInput): boolean {
  if (input.attempt >= input.maxAttempts || !input.bodyReplayable) return false;
  const o = input.outcome;
  if (o.kind === 'connect-failed') return true;
  if (!input.methods.has(input.method)) return false;
  if (o.kind === 'status') return input.statuses.has(o.status);
  return o.kind === 'grpc-status' ? input.grpcStatuses.has(o.code) : true;
}
