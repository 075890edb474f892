// Outbound stage 2: the service's routes in order, first match wins (path, method, headers).
// No matching route is a 404 `no-route` with the service named in the message.
import type { Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { matchRoute } from '../policy/route-match.ts';

export const route: Stage = (next) => (ex) => {
  const svc = ex.service!;
  const r = matchRoute(svc.routes, { method: ex.method, path: ex.path, headers: ex.head });
  if (!r) return Promise.reject(new ProxyError('no-route', `no route of service "${svc.name}" matches ${ex.method} ${ex.path}`));
  ex.route = r;
  return next(ex);
};
