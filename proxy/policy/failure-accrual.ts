// Balancer stage, per endpoint: is this endpoint ejected? Consecutive-failure accrual (linkerd2-proxy).
// Guarantees: an ejected endpoint takes no request until its ejection ends, then exactly one probe.
import type { Clock, Random } from '../../api/runtime.ts';
import { cappedExponential } from '../../api/backoff.ts';
import { DEFAULT_EJECTION } from '../../api/proxy-config.ts';

/*
 * States:
 *   closed     Requests flow. `consecutiveFailures` failures in a row (a success resets the
 *              count) eject the endpoint: -> open (ejection k = 1).
 *   open       No requests until the ejection time has passed; isAvailable() then moves to
 *              probation. Results arriving now belong to requests sent before the ejection
 *              and are ignored.
 *   probation  Exactly one probe may be dispatched. Its success -> closed (k resets to 0, the
 *              failure count starts from 0); its failure -> open with ejection k + 1. Other
 *              results (stragglers from before the ejection) are ignored.
 *
 * Telling the probe's result from a straggler's needs a correlation: onDispatch() returns a
 * ticket (the breaker's generation, a number) and onResult/onCancel take it back. A result
 * whose ticket is from an earlier generation is stale and ignored, in every state.
 *
 * Ejection k lasts min(maxEjection, nominal * (1 + 0.5 * random())), nominal = min(maxEjection,
 * baseEjection * 2^(k-1)): jitter added on top of the nominal time (as linkerd2-proxy's
 * exponential backoff adds it), so ejected endpoints do not come back in lockstep, and an
 * ejection is never shorter than baseEjection nor longer than maxEjection.
 */

export interface FailureAccrualConfig {
  /** Consecutive failures that eject the endpoint. */
  consecutiveFailures: number;
  /** Nominal first ejection (ms); doubles per consecutive ejection. */
  baseEjection: number;
  /** Longest ejection (ms). */
  maxEjection: number;
}

/** The ejection times are written beside the config schema, which validates against them. */
export const DEFAULT_FAILURE_ACCRUAL: Readonly<FailureAccrualConfig> = Object.freeze({
  consecutiveFailures: 7,
  ...DEFAULT_EJECTION,
});

export type BreakerState = 'closed' | 'open' | 'probation';

/** Fill in defaults and refuse nonsense. Call once at config time. */
export function makeFailureAccrualConfig(cfg: Partial<FailureAccrualConfig>): FailureAccrualConfig {
  const out = { ...DEFAULT_FAILURE_ACCRUAL, ...stripUndefined(cfg) };
  if (!Number.isInteger(out.consecutiveFailures) || out.consecutiveFailures < 1) {
    throw new Error(`consecutiveFailures must be an integer >= 1, got ${out.consecutiveFailures}`);
  }
  for (const k of ['baseEjection', 'maxEjection'] as const) {
    if (!Number.isFinite(out[k]) || out[k] < 0) throw new Error(`${k} must be a finite number >= 0 ms, got ${out[k]}`);
  }
  if (out.baseEjection > out.maxEjection) {
    throw new Error(`baseEjection (${out.baseEjection} ms) is larger than maxEjection (${out.maxEjection} ms)`);
  }
  return Object.freeze(out);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

export class FailureAccrual {
  readonly #cfg: FailureAccrualConfig;
  readonly #clock: Clock;
  readonly #random: Random;
  #state: BreakerState = 'closed';
  /** Bumped on every state change; tickets from older generations are stale. */
  #generation = 0;
  #failures = 0;
  /** Consecutive ejections without a successful probe (k of the current/last ejection). */
  #streak = 0;
  #openUntil = 0;
  #probeInFlight = false;
  #ejections = 0;

  constructor(cfg: Partial<FailureAccrualConfig>, clock: Clock, random: Random) {
    this.#cfg = makeFailureAccrualConfig(cfg);
    this.#clock = clock;
    this.#random = random;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Total times ejected, for metrics. */
  get ejections(): number {
    return this.#ejections;
  }

  /** Clock time (ms) the current ejection ends; meaningful while open. */
  get openUntil(): number {
    return this.#openUntil;
  }

  /** May this endpoint take a request now? Moves open -> probation once the ejection has passed. */
  isAvailable(): boolean {
    if (this.#state === 'closed') return true;
    if (this.#state === 'open') {
      if (this.#clock.now() < this.#openUntil) return false;
      this.#enter('probation');
    }
    return !this.#probeInFlight;
  }

  /**
   * A request was sent to this endpoint. Returns the ticket to hand back to onResult/onCancel.
   * In probation the first dispatch is the probe. Call only after isAvailable() said true.
   */
  onDispatch(): number {
    if (this.#state === 'probation') this.#probeInFlight = true;
    return this.#generation;
  }

  /** The request with this ticket ended with a verdict (classified once, STYLE.md §8). */
  onResult(success: boolean, ticket: number): void {
    if (ticket !== this.#generation) return; // sent before the last state change: stale
    if (this.#state === 'closed') {
      if (success) this.#failures = 0;
      else if (++this.#failures >= this.#cfg.consecutiveFailures) this.#eject();
    } else if (this.#state === 'probation' && this.#probeInFlight) {
      if (success) {
        this.#streak = 0;
        this.#enter('closed');
      } else {
        this.#eject();
      }
    }
    // open: only stale tickets can exist (the generation changed on ejection).
  }

  /** The request with this ticket ended without a verdict (the caller gave up): a probe slot is freed. */
  onCancel(ticket: number): void {
    if (ticket === this.#generation && this.#state === 'probation') this.#probeInFlight = false;
  }

  #eject(): void {
    this.#streak += 1;
    this.#ejections += 1;
    const { baseEjection, maxEjection } = this.#cfg;
    const nominal = cappedExponential(baseEjection, maxEjection, this.#streak);
    this.#openUntil = this.#clock.now() + Math.min(maxEjection, nominal * (1 + 0.5 * this.#random()));
    this.#enter('open');
  }

  #enter(state: BreakerState): void {
    this.#state = state;
    this.#generation += 1;
    this.#failures = 0;
    this.#probeInFlight = false;
  }
}
