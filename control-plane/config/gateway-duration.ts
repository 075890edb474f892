// HTTPRoute `rules[].timeouts` (GEP-1742) in the proxy's terms, and the Gateway API duration
// format they are written in (GEP-2257: "10s", "500ms", "1h30m"). Pure: ms, or what is wrong.
import type { Timeouts } from '../../api/proxy-config.ts';

/** The longest timeout a proxy runs (api/proxy-config.ts Duration's maximum): what "0s" (no timeout) becomes. */
export const LONGEST_TIMEOUT_MS = 3_600_000;

const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };
/** GEP-2257: one to four components of one to five digits and a unit; no sign, no fraction. */
const FORMAT = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const COMPONENT = /([0-9]{1,5})(h|ms|m|s)/g;

/**
 * A GEP-2257 duration in milliseconds, or why it is not one. As Go's time.ParseDuration reads it
 * (which GEP-2257 requires), components add up in any order: "1m30s" and "30s1m" are 90 000.
 */
export function parseGatewayDuration(text: unknown): number | string {
  if (typeof text !== 'string') return `expected a duration string such as "10s" or "500ms", got ${JSON.stringify(text) ?? 'nothing'}`;
  if (!FORMAT.test(text)) {
    return `"${text}" is not a Gateway API duration: one to four parts of up to five digits, each followed by h, m, s or ms (e.g. "10s", "500ms", "1m30s")`;
  }
  let ms = 0;
  for (const [, digits, unit] of text.matchAll(COMPONENT)) ms += Number(digits) * (UNIT_MS[unit!] ?? Number.NaN);
  return ms;
}

/**
 * A rule's `timeouts` as the route's own, or [field under timeouts, what is wrong]:
 * - `request` (the whole exchange, retries included) → the route's request timeout;
 * - `backendRequest` (one call to a backend) → its per-try timeout.
 * "0s" is no timeout, which GEP-1742 says an implementation that cannot disable a timeout reads as
 * the longest it can set (1 h); a backendRequest of "0s" is then bounded by the request timeout
 * only. Longer than 1 h is refused (no proxy would keep it), as is a backendRequest longer than
 * the request (the Gateway API's own rule).
 */
export function ruleTimeouts(t: unknown): Timeouts | [string, string] {
  if (t === undefined) return {};
  if (t === null || typeof t !== 'object' || Array.isArray(t)) return ['', 'timeouts is not an object'];
  const given = t as Record<string, unknown>;
  const ms: { request?: number; backendRequest?: number } = {};
  for (const field of ['request', 'backendRequest'] as const) {
    if (given[field] === undefined) continue;
    const v = parseGatewayDuration(given[field]);
    if (typeof v === 'string') return [`/${field}`, v];
    if (v > LONGEST_TIMEOUT_MS) return [`/${field}`, `"${given[field] as string}" is longer than the longest timeout a proxy runs (1h); "0s" means no timeout (1h)`];
    ms[field] = v;
  }
  const { request, backendRequest } = ms;
  if (request && backendRequest && backendRequest > request) {
    return ['/backendRequest', `backendRequest (${given.backendRequest as string}) is longer than request (${given.request as string}), which covers every call to a backend`];
  }
  const out: Timeouts = {};
  if (request !== undefined) out.request = request || LONGEST_TIMEOUT_MS;
  if (backendRequest !== undefined) out.perTry = backendRequest || (out.request ?? LONGEST_TIMEOUT_MS);
  return out;
}
