// Inbound stage 1: the authorization decision for this peer, method and path on this port.
// A denied request is answered 403 `forbidden` here and never reaches the app.
import type { Exchange, Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { authorize } from '../policy/authorize.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';

/**
 * `plaintextAllowed` is asked per request: a connection accepted while the port was permissive
 * gets no more requests through once the port turns strict.
 */
export function authorization(metrics: ProxyMetrics, appPort: number, plaintextAllowed: (ex: Exchange) => boolean): Stage {
  return (next) => (ex) => {
    const inbound = ex.config.inbound;
    if (!ex.peer.tls && !plaintextAllowed(ex)) {
      metrics.authzDecision('strict-mtls', false);
      return Promise.reject(new ProxyError('forbidden', `port ${appPort} accepts only mTLS (it is not permissive)`));
    }
    const d = authorize(inbound.policies, inbound.defaultPolicy, { port: appPort, identity: ex.peer.identity, method: ex.method, path: ex.path });
    metrics.authzDecision(d.policy, d.allowed);
    if (!d.allowed) return Promise.reject(new ProxyError('forbidden', d.reason));
    return next(ex);
  };
}
