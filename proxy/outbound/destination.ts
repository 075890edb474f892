// Outbound stage 1: which service does the app want? The Host (or absolute-form authority)
// names it, and its port where a service claims that port (a Service's second port); a host the
// config does not know is a 404 `no-route`, never a guess. A caller whose Host is not the service
// it calls (a meshed ingress controller forwards `Host: shop.example.com`) names the service in
// `meshlet-dst-override: <host[:port]>` instead, as Linkerd's l5d-dst-override; the header is
// never forwarded (http/headers.ts), and Host goes on as sent.
import type { Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { serviceFor } from '../config/compile.ts';
import { DST_OVERRIDE_HEADER } from '../http/headers.ts';
import { hostOf } from '../http/listener.ts';

export const destination: Stage = (next) => (ex) => {
  const override = ex.head.get(DST_OVERRIDE_HEADER);
  const svc = override === undefined ? serviceFor(ex.config, ex.authority, ex.hostHeader) : serviceFor(ex.config, hostOf(override.trim()), override.trim());
  if (!svc) {
    const named = override === undefined ? `host "${ex.authority}"` : `host "${hostOf(override.trim())}" (${DST_OVERRIDE_HEADER})`;
    return Promise.reject(new ProxyError('no-route', `no service for ${named}`));
  }
  ex.service = svc;
  return next(ex);
};
