// Inbound stage 1: the authorization decision for this peer, method and path on this port.
// A denied request is answered 403 `forbidden` here and never reaches the app.
import type { Exchange, Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { authorize, type AuthzDecision } from '../policy/authorize.ts';
import type { RuntimeConfig } from '../config/compile.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import { NO_PROBES, type ProbePaths } from '../../api/probe-paths.ts';
import type { DefaultInboundPolicy } from '../../api/default-inbound-policy.ts';
import { isProbe } from './probes.ts';

/** What the decision reads of a request: the policies its method and path (no query), a probe its target as the app gets it. */
export interface InboundRequest {
  readonly method: string;
  readonly path: string;
  readonly target: string;
}

/**
 * The inbound decision for one request, plain or upgrade: a plaintext GET of a path the Pod's
 * kubelet probes on this port (`probes`) is allowed whatever the policies say (the kubelet has no
 * mesh identity, as Linkerd authorizes probes by default); any other plaintext peer on a port that
 * is not permissive (`plaintextAllowed` false) is refused before any policy is read; else the
 * policies decide, and where none guards the port, the default: the Pod's own (`podDefault`,
 * MESHLET_DEFAULT_INBOUND_POLICY) when it has one, else the config's (the control plane's). Pure.
 */
export function inboundDecision(inbound: RuntimeConfig['inbound'], appPort: number, peer: { identity: string; tls: boolean }, req: InboundRequest, plaintextAllowed: boolean, probes: ProbePaths = NO_PROBES, podDefault?: DefaultInboundPolicy): AuthzDecision {
  const { method, path } = req;
  if (!peer.tls) {
    if (isProbe(probes, appPort, method, req.target)) return { allowed: true, policy: 'probe' };
    if (!plaintextAllowed) return { allowed: false, policy: 'strict-mtls', reason: `port ${appPort} accepts only mTLS (it is not permissive; the Pod's config.meshlet.io/default-inbound-policy: all-unauthenticated lets unmeshed clients in)` };
  }
  return authorize(inbound.policies, podDefault ?? inbound.defaultPolicy, { port: appPort, identity: peer.identity, method, path });
}

/**
 * `plaintextAllowed` is asked per request: a connection accepted while the port was permissive
 * gets no more requests through once the port turns strict.
 */
export function authorization(metrics: ProxyMetrics, appPort: number, plaintextAllowed: (ex: Exchange) => boolean, probes: ProbePaths = NO_PROBES, podDefault?: DefaultInboundPolicy): Stage {
  return (next) => (ex) => {
    const d = inboundDecision(ex.config.inbound, appPort, ex.peer, ex, ex.peer.tls || plaintextAllowed(ex), probes, podDefault);
    metrics.authzDecision(d.policy, d.allowed);
    if (!d.allowed) return Promise.reject(new ProxyError('forbidden', d.reason));
    return next(ex);
  };
}
