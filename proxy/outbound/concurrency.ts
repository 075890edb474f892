// Outbound stage 5: the backend service's concurrency limit (Envoy's max_requests and
// max_pending_requests). Over the limit the proxy answers 503 at once instead of queueing.
import type { Stage, UpstreamResponse } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';

export function concurrency(metrics: ProxyMetrics): Stage {
  return (next) => async (ex) => {
    const svc = ex.backend!;
    let slot = svc.limit.acquire();
    if (slot === undefined) {
      metrics.loadShed.labels(svc.name).inc();
      throw new ProxyError('concurrency-limit', `service "${svc.name}" has ${svc.limit.inFlight} requests in flight and ${svc.limit.pending} pending`, { beforeRequest: true });
    }
    if (typeof slot !== 'function') {
      // Waiting for a slot: the whole-request timeout (retry stage) may end the wait; a slot
      // granted after that is handed straight back.
      const waiting = slot;
      let gaveUp = false;
      const abandoned = new Promise<never>((_, reject) => {
        ex.abortAttempt = (reason) => {
          gaveUp = true;
          reject(reason);
        };
      });
      void waiting.then((r) => gaveUp && r());
      try {
        slot = await Promise.race([waiting, abandoned]);
      } finally {
        ex.abortAttempt = undefined;
      }
    }
    const release = slot;
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
