// Inbound stage 1: the authorization decision for this peer, method and path on this port.
// A denied request is answered 403 `forbidden` here and never reaches the app.
import type { Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { authorize } from '../policy/authorize.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';

export function authorization(metrics: ProxyMetrics, appPort: number): Stage {
  return (next) => (ex) => {
    const inbound = ex.config.inbound;
    const d = authorize(inbound.policies, inbound.defaultPolicy, { port: appPort, identity: ex.peer.identity, method: ex.method, path: ex.path });
    metrics.authz.labels(d.policy, d.allowed ? 'allow' : 'deny').inc();
    if (!d.allowed) return Promise.reject(new ProxyError('forbidden', d.reason));
    return next(ex);
  };
}
