// Outbound stage 4 (below retry, so a retry may land on another backend): weighted pick of a
// backend service. Reads the route of this request's config snapshot, so a split change applies
// to the next request while in-flight ones finish where they are.
import type { Random } from '../../api/runtime.ts';
import type { Stage } from '../http/exchange.ts';
import { ProxyError } from '../errors.ts';
import { pickWeighted } from '../policy/split.ts';

export function split(random: Random): Stage {
  return (next) => (ex) => {
    const backends = ex.route!.backends;
    const b = backends.length === 1 ? backends[0] : pickWeighted(backends, random);
    if (!b || b.weight === 0) return Promise.reject(new ProxyError('no-endpoints', `route "${ex.route!.name}" has no backend with weight > 0`));
    ex.backend = b.service;
    return next(ex);
  };
}
