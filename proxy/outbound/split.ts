// Outbound stage 4 (below retry, so a retry may land on another backend): weighted pick of a
// backend service. Reads the route of this request's config snapshot, so a split change applies
// to the next request while in-flight ones finish where they are. A backend that cannot take the
// request (no ready endpoint, every one ejected) gives way to the others (policy/split.ts).
import type { Random } from '../../api/runtime.ts';
import type { Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import type { ServiceRuntime } from '../config/compile.ts';
import { pickAdmitting } from '../policy/split.ts';

/** Whether a backend can take a request now: one of its ready endpoints' breakers admits one. */
export function backendAdmits(b: { service: ServiceRuntime }): boolean {
  for (const ep of b.service.ready) if (ep.accrual.isAvailable()) return true;
  return false;
}

export function split(random: Random): Stage {
  return (next) => (ex) => {
    const backends = ex.route!.backends;
    const b = pickAdmitting(backends, random, backendAdmits);
    if (!b || b.weight === 0) return Promise.reject(new ProxyError('no-endpoints', `route "${ex.route!.name}" has no backend with weight > 0`));
    ex.backend = b.service;
    return next(ex);
  };
}
