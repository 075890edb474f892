// Inbound terminal: forward to the local application over a keep-alive pool on loopback.
// No retries here: the caller's outbound proxy owns retries, timeouts and breaking.
import type { Pool } from '../http1/client.ts';
import type { Handler } from '../http/exchange.ts';
import { dispatchOnce } from '../http/dispatch.ts';

/** `address`: the app's host:port, for the access log. */
export function app(pool: Pool, address: string): Handler {
  return (ex) => {
    ex.attempts = 1;
    ex.appAddress = address;
    return dispatchOnce(pool, ex, undefined);
  };
}
