// Outbound stage 1: which service does the app want? The Host (or absolute-form authority)
// names it; a host the config does not know is a 404 `no-route`, never a guess.
import type { Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';

export const destination: Stage = (next) => (ex) => {
  const svc = ex.config.byHost.get(ex.authority);
  if (!svc) return Promise.reject(new ProxyError('no-route', `no service for host "${ex.authority}"`));
  ex.service = svc;
  return next(ex);
};
