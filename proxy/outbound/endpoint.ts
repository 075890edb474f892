// Outbound terminal: send the attempt to the chosen endpoint's connection pool. The per-try
// timeout is the route's, shortened to what is left of the whole-request deadline.
import type { Dispatcher } from 'undici';
import type { Clock } from '../../api/runtime.ts';
import type { Handler } from '../http/exchange.ts';
import { dispatchOnce } from '../http/dispatch.ts';

export function endpoint(clock: Clock): Handler {
  return (ex) => {
    const perTry = Math.min(ex.route?.timeouts.perTry ?? 0, Math.max(1, ex.deadline - clock.now()));
    return dispatchOnce(ex.endpoint!.client as Dispatcher, ex, perTry);
  };
}
