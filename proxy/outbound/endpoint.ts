// Outbound terminal: send the attempt to the chosen endpoint's connection pool. The per-try
// timeout is the route's, shortened to what is left of the whole-request deadline. A meshed
// (mTLS) endpoint is told which port was dialled (`meshlet-dst-port`, see inbound/app-port.ts).
import type { Pool } from '../http1/client.ts';
import type { Clock } from '../../api/runtime.ts';
import type { EndpointState } from '../config/compile.ts';
import type { Handler } from '../http/exchange.ts';
import { dispatchOnce } from '../http/dispatch.ts';
import type { Deadlines } from '../http/deadlines.ts';

/** The port part of each endpoint's address, computed once per endpoint (endpoints outlive config versions). */
const ports = new WeakMap<EndpointState, string>();

function dstPortOf(ep: EndpointState): string {
  let p = ports.get(ep);
  if (p === undefined) {
    p = ep.address.slice(ep.address.lastIndexOf(':') + 1);
    ports.set(ep, p);
  }
  return p;
}

export function endpoint(clock: Clock, deadlines: Deadlines): Handler {
  return (ex) => {
    const perTry = Math.min(ex.route?.timeouts.perTry ?? 0, Math.max(1, ex.deadline - clock.now()));
    const ep = ex.endpoint!;
    return dispatchOnce(ep.client as Pool, ex, ep.identity === undefined ? undefined : dstPortOf(ep), perTry, deadlines);
  };
}
