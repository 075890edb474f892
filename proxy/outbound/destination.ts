// Outbound stage 1: which service does the app want? The Host (or absolute-form authority)
// names it, and its port where a service claims that port (a Service's second port); a host the
// config does not know is a 404 `no-route`, never a guess, unless the proxy passes hosts outside
// the mesh through (passthrough.ts, which says which it never does). A caller whose Host is not
// the service it calls (a meshed ingress controller forwards `Host: shop.example.com`) names the
// service in `meshlet-dst-override: <host[:port]>` instead, as Linkerd's l5d-dst-override: that
// must be a service of the config. The header is never forwarded (http/headers.ts), and Host
// goes on as sent.
import type { Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { serviceFor, type RuntimeConfig, type ServiceRuntime } from '../config/compile.ts';
import { DST_OVERRIDE_HEADER } from '../http/headers.ts';
import { hostOf } from '../http/listener.ts';
import type { Passthrough } from './passthrough.ts';

/**
 * The service of a request for `host` (lower-case, no port) with `authority` (as sent) and the
 * override header's value, if any; else the 404 that says why there is none. Also the upgrade
 * path's choice (proxy.ts).
 */
export function destinationOf(cfg: RuntimeConfig, host: string, authority: string, override: string | undefined, passthrough: Passthrough | undefined): ServiceRuntime | ProxyError {
  if (override !== undefined) {
    const o = override.trim();
    return serviceFor(cfg, hostOf(o), o) ?? new ProxyError('no-route', `no service for host "${hostOf(o)}" (${DST_OVERRIDE_HEADER})`);
  }
  return serviceFor(cfg, host, authority) ?? passthrough?.serviceFor(cfg, host, authority) ?? new ProxyError('no-route', `no service for host "${host}"`);
}

export function destination(passthrough?: Passthrough): Stage {
  return (next) => (ex) => {
    const svc = destinationOf(ex.config, ex.authority, ex.hostHeader, ex.head.get(DST_OVERRIDE_HEADER), passthrough);
    if (svc instanceof ProxyError) return Promise.reject(svc);
    ex.service = svc;
    return next(ex);
  };
}
