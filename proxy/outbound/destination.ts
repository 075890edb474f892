// Outbound stage 1: which service does the app want? The Host (or absolute-form authority)
// names it, and its port where a service claims that port (a Service's second port); a host the
// config does not know is a 404 `no-route`, never a guess.
import type { Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { serviceFor } from '../config/compile.ts';

export const destination: Stage = (next) => (ex) => {
  const svc = serviceFor(ex.config, ex.authority, ex.hostHeader);
  if (!svc) return Promise.reject(new ProxyError('no-route', `no service for host "${ex.authority}"`));
  ex.service = svc;
  return next(ex);
};
