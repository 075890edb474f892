// Inbound: the kubelet's HTTP probes of the app. The kubelet probes the Pod IP in plaintext, from
// the node, with no mesh identity; iptables sends those connections to the proxy like any other.
// On a port that takes only mTLS they would be refused, and the kubelet would restart an app that
// is fine, or never send it traffic. So, as Linkerd authorizes probe routes by default, a plaintext
// GET of a path the Pod's spec probes on that port is let through: the injector reads the Pod's
// httpGet probes and hands their paths over (api/probe-paths.ts). Nothing else about the port
// changes: any other plaintext request on it is still refused.
import type { ProbePaths } from '../../api/probe-paths.ts';

/**
 * Whether a plaintext request is one of the kubelet's probes of this port. `target` is the
 * request-target as the app will get it: only its query is set aside, so anything else after the
 * probed path (a `#...`, which the policies' path stops at but an app may resolve, as Go's
 * http.FileServer cleans `/healthz#/../admin` to `/admin`) makes it no probe. Pure.
 */
export function isProbe(probes: ProbePaths, appPort: number, method: string, target: string): boolean {
  if (method !== 'GET') return false;
  const paths = probes.get(appPort);
  if (paths === undefined) return false;
  const q = target.indexOf('?');
  return paths.has(q < 0 ? target : target.slice(0, q));
}
