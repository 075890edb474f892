// Outbound stage 3 (above split and balance, so a retry may land elsewhere): budgeted retries
// with full-jitter backoff, and the whole-request deadline. Only replayable bodies are retried:
// a body up to maxBufferedBody is read first; a larger or unsized one is streamed once (HTTP/2
// says through RetryHooks: its body streams while a copy is kept).
import type { Random } from '../../api/runtime.ts';
import type { Exchange, Stage, UpstreamResponse } from '../http/exchange.ts';
import { ProxyError, isProxyError } from '../errors.ts';
import { backoffDelay } from '../policy/backoff.ts';
import { isRetryable, type AttemptOutcome } from '../policy/retry-decision.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import type { Deadlines } from '../http/deadlines.ts';

/** What an attempt's error means for retrying; undefined: never retry (the proxy's own refusals). */
export function outcomeOfError(err: unknown): AttemptOutcome | undefined {
  if (!isProxyError(err)) return undefined;
  switch (err.code) {
    case 'connect-refused':
    case 'connect-timeout':
    case 'connect-failed':
    case 'tls-failed':
    case 'identity-mismatch':
      return err.beforeRequest ? { kind: 'connect-failed' } : { kind: 'reset-before-response' };
    case 'upstream-reset':
      // beforeRequest only from HTTP/2: the session closed before the stream was opened, or the
      // endpoint refused the stream (REFUSED_STREAM: not processed, RFC 9113 §8.7), as Envoy's
      // refused-stream. The body rule still applies: one already read without a copy is not sent again.
      return err.beforeRequest ? { kind: 'connect-failed' } : { kind: 'reset-before-response' };
    case 'per-try-timeout':
      return { kind: 'timeout' };
    default:
      return undefined;
  }
}

/** Read a small body whole so it can be sent again; leave large or unsized ones streaming. */
export async function makeReplayable(ex: Exchange, maxBuffered: number): Promise<boolean> {
  const body = ex.body;
  if (body.kind !== 'stream') return true;
  const f = body.source.framing;
  if (f.kind !== 'length' || f.length > maxBuffered) return false;
  // A body that fails while it is read here failed on the client's side (it left mid-upload):
  // the request was bad, as when a streamed body fails (errors.ts MESHLET_CLIENT_BODY), not the upstream.
  const data = await body.source.readAll().catch((err: unknown) => {
    throw isProxyError(err) ? err : new ProxyError('bad-request', `the request body failed: ${(err as Error).message}`, { cause: err });
  });
  ex.body = { kind: 'buffer', data };
  return true;
}

/**
 * What a protocol whose request body and answers the stage cannot read itself tells it: HTTP/2
 * (h2RetryHooks in http2/forward.ts) streams the body to the first attempt while keeping a copy, and a gRPC
 * answer may fail inside an HTTP 200. HTTP/1 passes none and takes the plain path.
 */
export interface RetryHooks {
  /** The attempt's outcome from its response (a trailers-only gRPC answer: its grpc-status). */
  outcomeOf(res: UpstreamResponse, ex: Exchange): AttemptOutcome;
  /** Whether the request body can be sent again now (read whole within the bound, or not read yet). */
  bodyReplayable(ex: Exchange): boolean;
  /** The whole-request timeout (ms, 0: none) given the route's: a request may ask for less (grpc-timeout). */
  requestTimeout(ex: Exchange, routeMs: number): number;
}

export function retry(random: Random, metrics: ProxyMetrics, deadlines: Deadlines, hooks?: RetryHooks): Stage {
  return (next) => async (ex) => {
    const route = ex.route!;
    const policy = route.retry;
    const budget = ex.service!.budget;
    const timeoutMs = hooks === undefined ? route.timeouts.request : hooks.requestTimeout(ex, route.timeouts.request);
    ex.deadline = timeoutMs > 0 ? ex.startMs + timeoutMs : Infinity;
    let timedOut = false;
    let wake: (() => void) | undefined;
    // Armed for the deadline itself (the endpoint cuts per-try timeouts to the same instant).
    const timer =
      timeoutMs > 0
        ? deadlines.at(ex.deadline, () => {
            timedOut = true;
            ex.abortAttempt?.(new ProxyError('request-timeout', `no response within ${timeoutMs} ms`));
            wake?.();
          })
        : undefined;
    budget.recordRequest();
    try {
      // Buffer for every method, not only the retry methods: a failed connect sent nothing, so
      // any request may be retried (retry-decision.ts), but only if its body can be sent again.
      // The deadline covers a body that is slow to arrive, too.
      const replayable =
        ex.body.kind !== 'stream'
          ? true
          : policy.attempts > 1
          ? await new Promise<boolean>((resolve, reject) => {
              wake = () => reject(new ProxyError('request-timeout', `request body not received within ${timeoutMs} ms`));
              makeReplayable(ex, policy.maxBufferedBody).then(resolve, reject);
            }).finally(() => (wake = undefined))
          : false;
      for (;;) {
        if (timedOut) throw new ProxyError('request-timeout', `no response within ${timeoutMs} ms (${ex.attempts} attempts)`);
        ex.attempts++;
        let res: UpstreamResponse | undefined;
        let err: unknown;
        try {
          res = await next(ex);
        } catch (e) {
          err = e;
        }
        if (timedOut) {
          res?.body.discard();
          throw new ProxyError('request-timeout', `no response within ${timeoutMs} ms (${ex.attempts} attempts)`, { cause: err });
        }
        if (ex.clientGone) {
          if (res) return res;
          throw err;
        }
        const outcome: AttemptOutcome | undefined = res ? (hooks === undefined ? { kind: 'status', status: res.status } : hooks.outcomeOf(res, ex)) : outcomeOfError(err);
        const wanted =
          outcome !== undefined &&
          (outcome.kind !== 'status' || policy.statuses.has(outcome.status)) &&
          isRetryable({
            method: ex.method,
            attempt: ex.attempts,
            maxAttempts: policy.attempts,
            outcome,
            statuses: policy.statuses,
            grpcStatuses: policy.grpcStatuses,
            methods: policy.methods,
            bodyReplayable: replayable && (hooks === undefined || hooks.bodyReplayable(ex)),
          });
        if (!wanted) {
          if (res) return res;
          throw err;
        }
        if (!budget.tryWithdraw()) {
          metrics.budgetExhausted.labels(ex.service!.name).inc();
          if (res) return res;
          const last = err as ProxyError;
          throw new ProxyError('budget-exhausted', `retry budget of "${ex.service!.name}" exhausted; last attempt: ${last.code}: ${last.message}`, { cause: err });
        }
        res?.body.discard();
        const delay = backoffDelay(ex.attempts, policy.backoff, random);
        if (delay > 0) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, delay);
            wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
          wake = undefined;
          if (timedOut) throw new ProxyError('request-timeout', `no response within ${timeoutMs} ms (${ex.attempts} attempts)`, { cause: err });
        }
        metrics.retries.labels(ex.service!.name, outcome.kind === 'status' ? String(outcome.status) : outcome.kind === 'grpc-status' ? `grpc-${outcome.code}` : outcome.kind).inc();
      }
    } finally {
      if (timer) deadlines.cancel(timer);
    }
  };
}
