// Outbound stage 6: pick an endpoint of the backend (power of two choices over peak-EWMA load)
// among those whose breaker admits a request; feed each response's verdict back to the breaker.
// No endpoints: 503 `no-endpoints`; every endpoint ejected: 503 `breaker-open`, at once.
import type { Clock, Random } from '../../api/runtime.ts';
import type { EndpointState } from '../config/compile.ts';
import type { Stage, UpstreamResponse } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { pickP2C } from '../policy/balancer.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';

const loadOf = (ep: EndpointState) => ep.load;

/** A response is a failure for the breaker when the upstream answered 5xx or the attempt failed. */
export const isFailureStatus = (status: number): boolean => status >= 500;

/**
 * For a protocol whose answers may fail after their headers (gRPC: grpc-status in the trailers):
 * reports the endpoint's verdict once it is known (undefined: none, the proxy ended it itself).
 * HTTP/1 passes none: its verdict is the response status, at once.
 */
export type Verdict = (res: UpstreamResponse, report: (success: boolean | undefined) => void) => void;

export function balance(clock: Clock, random: Random, metrics: ProxyMetrics, verdictOf?: Verdict): Stage {
  return (next) => async (ex) => {
    const svc = ex.backend!;
    const ready = svc.ready;
    if (ready.length === 0) throw new ProxyError('no-endpoints', `service "${svc.name}" has no ready endpoints`, { beforeRequest: true });
    let candidates: EndpointState[] | readonly EndpointState[] = ready;
    for (let i = 0; i < ready.length; i++) {
      if (!ready[i]!.accrual.isAvailable()) {
        candidates = ready.filter((ep) => ep.accrual.isAvailable());
        break;
      }
    }
    const ep = candidates.length === 1 ? candidates[0] : pickP2C(candidates, loadOf, random);
    if (!ep) throw new ProxyError('breaker-open', `all ${ready.length} endpoints of "${svc.name}" are ejected`, { beforeRequest: true });
    ex.endpoint = ep;
    const ejectionsBefore = ep.accrual.ejections;
    const ticket = ep.accrual.onDispatch();
    const started = clock.now();
    ep.load.start();
    let res: UpstreamResponse;
    try {
      res = await next(ex);
    } catch (err) {
      ep.load.finish(clock.now() - started);
      const e = err as ProxyError;
      // Failures of the client's making (it left, or its body broke off) say nothing about the endpoint.
      if (ex.clientGone || e.code === 'bad-request') ep.accrual.onCancel(ticket);
      else ep.accrual.onResult(false, ticket);
      if (ep.accrual.ejections > ejectionsBefore) metrics.ejections.labels(svc.name).inc();
      throw e;
    }
    ep.load.finish(clock.now() - started);
    if (verdictOf === undefined) {
      ep.accrual.onResult(!isFailureStatus(res.status), ticket);
      if (ep.accrual.ejections > ejectionsBefore) metrics.ejections.labels(svc.name).inc();
    } else {
      verdictOf(res, (success) => {
        if (success === undefined) return ep.accrual.onCancel(ticket);
        const before = ep.accrual.ejections;
        ep.accrual.onResult(success, ticket);
        if (ep.accrual.ejections > before) metrics.ejections.labels(svc.name).inc();
      });
    }
    return res;
  };
}
