// Outbound stage 5: the backend service's concurrency limit (Envoy's max_requests and
// max_pending_requests). Over the limit the proxy answers 503 at once instead of queueing.
import type { Exchange, Stage, UpstreamResponse } from '../http/exchange.ts';
import type { ServiceRuntime } from '../config/compile.ts';
import type { Release } from '../policy/concurrency-limit.ts';
import { ProxyError } from '../errors.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';

export function concurrency(metrics: ProxyMetrics): Stage {
  return (next) => async (ex) => {
    const svc = ex.backend!;
    const release = svc.limit.tryAcquire() ?? (await waitForSlot(ex, svc, metrics));
    let res: UpstreamResponse;
    try {
      res = await next(ex);
    } catch (err) {
      release();
      throw err;
    }
    res.body.onDone(release);
    return res;
  };
}

/**
 * No slot free: wait in the service's line, or be refused at once when the line is full. A
 * request that gives up while waiting (its deadline passed, its client left: `abortAttempt`)
 * leaves the line at once, so it does not hold a pending place nobody will use.
 */
async function waitForSlot(ex: Exchange, svc: ServiceRuntime, metrics: ProxyMetrics): Promise<Release> {
  const gaveUp = new AbortController();
  const waiting = svc.limit.acquire(gaveUp.signal);
  if (waiting === undefined) {
    metrics.loadShed.labels(svc.name).inc();
    throw new ProxyError('concurrency-limit', `service "${svc.name}" has ${svc.limit.inFlight} requests in flight and ${svc.limit.pending} pending`, { beforeRequest: true });
  }
  if (typeof waiting === 'function') return waiting;
  ex.abortAttempt = (reason) => gaveUp.abort(reason);
  let release: Release;
  try {
    release = await waiting;
  } finally {
    ex.abortAttempt = undefined;
  }
  // Given a slot in the same turn as giving up: hand it straight back.
  if (gaveUp.signal.aborted) {
    release();
    throw gaveUp.signal.reason;
  }
  return release;
}
