// Inbound terminal: forward to the local application over a keep-alive pool on loopback.
// No retries here: the caller's outbound proxy owns retries, timeouts and breaking.
import type { Pool } from '../http1/client.ts';
import type { Handler } from '../http/exchange.ts';
import { dispatchOnce } from '../http/dispatch.ts';

export function app(pool: Pool): Handler {
  return (ex) => {
    ex.attempts = 1;
    return dispatchOnce(pool, ex, undefined);
  };
}
