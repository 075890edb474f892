// Balancer stage, per backend service: which endpoint takes this request. Power of two choices
// over peak-EWMA load (Finagle, Linkerd). Guarantees: of two distinct random endpoints, the cheaper.
import type { Clock, Random } from '../../api/runtime.ts';

/*
 * cost = rtt * (inFlight + 1), where rtt is a peak-sensitive EWMA of response latency:
 *   - a latency above the current estimate replaces it at once (react to trouble now);
 *   - otherwise est = est * d + latency * (1 - d), d = exp(-elapsed / decayMs);
 *   - between responses the estimate decays toward 0 by the same d (reading cost() does not
 *     change state), so an endpoint that was slow and then got no traffic is tried again.
 * A new endpoint starts at defaultRttMs. The estimate is floored at MIN_RTT_MS so that
 * inFlight still separates endpoints whose estimate has decayed to ~0.
 */

export interface EndpointLoadOptions {
  /** EWMA time constant tau (ms). Default 10000. */
  decayMs?: number;
  /** Estimate for an endpoint with no responses yet (ms). Default 30. */
  defaultRttMs?: number;
}

export const DEFAULT_DECAY_MS = 10_000;
export const DEFAULT_RTT_MS = 30;
const MIN_RTT_MS = 1e-3;

export class EndpointLoad {
  readonly #clock: Clock;
  readonly #decayMs: number;
  #rtt: number;
  #stamp: number;
  #inFlight = 0;

  constructor(clock: Clock, opts?: EndpointLoadOptions) {
    const decayMs = opts?.decayMs ?? DEFAULT_DECAY_MS;
    const rtt = opts?.defaultRttMs ?? DEFAULT_RTT_MS;
    if (!Number.isFinite(decayMs) || decayMs <= 0) throw new Error(`decayMs must be a finite number > 0, got ${decayMs}`);
    if (!Number.isFinite(rtt) || rtt < 0) throw new Error(`defaultRttMs must be a finite number >= 0, got ${rtt}`);
    this.#clock = clock;
    this.#decayMs = decayMs;
    this.#rtt = rtt;
    this.#stamp = clock.now();
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** A request was sent to this endpoint. */
  start(): void {
    this.#inFlight += 1;
  }

  /** That request finished (response headers, or an error) after latencyMs. */
  finish(latencyMs: number): void {
    if (this.#inFlight > 0) this.#inFlight -= 1;
    const now = this.#clock.now();
    const d = this.#decay(now);
    const est = this.#rtt * d;
    this.#rtt = latencyMs > est ? latencyMs : est + latencyMs * (1 - d);
    this.#stamp = now;
  }

  /** Current latency estimate (ms), decayed to now. */
  rtt(): number {
    return this.#rtt * this.#decay(this.#clock.now());
  }

  cost(): number {
    const rtt = this.rtt();
    return (rtt > MIN_RTT_MS ? rtt : MIN_RTT_MS) * (this.#inFlight + 1);
  }

  #decay(now: number): number {
    const elapsed = now - this.#stamp;
    return elapsed > 0 ? Math.exp(-elapsed / this.#decayMs) : 1;
  }
}

/** Two distinct random candidates, the one with the lower cost wins (ties: the first drawn). */
export function pickP2C<T>(candidates: readonly T[], load: (c: T) => EndpointLoad, random: Random): T | undefined {
  const n = candidates.length;
  if (n < 2) return candidates[0];
  const i = Math.min(n - 1, Math.floor(random() * n));
  let j = Math.min(n - 2, Math.floor(random() * (n - 1)));
  if (j >= i) j += 1;
  const a = candidates[i]!;
  const b = candidates[j]!;
  return load(b).cost() < load(a).cost() ? b : a;
}
