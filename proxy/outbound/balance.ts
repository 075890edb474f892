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

export function balance(clock: Clock, random: Random, metrics: ProxyMetrics): Stage {
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
    ep.accrual.onResult(!isFailureStatus(res.status), ticket);
    if (ep.accrual.ejections > ejectionsBefore) metrics.ejections.labels(svc.name).inc();
    return res;
  };
}
