// Retry stage: may this request be retried at all, given how many retries the service already got?
// Guarantees: retries in any window of windowMs <= ratio * (requests of a window as long) +
// minPerSecond * windowSeconds; memory is constant.
import type { Clock } from '../../api/runtime.ts';

export interface RetryBudgetConfig {
  /** Retries may add this fraction of (first-attempt) requests. */
  ratio: number;
  /** Plus this many retries per second of window, even with no requests. */
  minPerSecond: number;
  /** Window over which requests and retries are counted (ms). */
  windowMs: number;
}

export const DEFAULT_BUDGET: Readonly<RetryBudgetConfig> = Object.freeze({ ratio: 0.2, minPerSecond: 10, windowMs: 10_000 });

const BUCKETS = 10;
const mod = (i: number, n: number): number => ((i % n) + n) % n;

/**
 * A sliding window kept as rings of time buckets (windowMs / BUCKETS each). A bucket expires
 * whole, so each side errs towards fewer retries: requests (which earn retries) count for 90 % to
 * 100 % of windowMs, retries (which spend them) for 100 % to 110 %, in a ring one bucket longer.
 * With retries forgotten early instead, a burst at the end of one bucket and another a window
 * later could pass twice the bound inside one window. Call recordRequest() for first attempts
 * only: if retries were recorded too they would feed the budget and the bound would become
 * ratio / (1 - ratio).
 */
export class RetryBudget {
  readonly #ratio: number;
  readonly #reserve: number;
  readonly #bucketMs: number;
  readonly #clock: Clock;
  readonly #requests = new Float64Array(BUCKETS);
  readonly #retries = new Float64Array(BUCKETS + 1);
  #head: number; // absolute index (floor(now / bucketMs)) of the newest bucket
  #requestTotal = 0;
  #retryTotal = 0;

  constructor(cfg: RetryBudgetConfig, clock: Clock) {
    const { ratio, minPerSecond, windowMs } = cfg;
    if (!Number.isFinite(ratio) || ratio < 0) throw new Error(`retry budget ratio must be a finite number >= 0, got ${ratio}`);
    if (!Number.isFinite(minPerSecond) || minPerSecond < 0) throw new Error(`retry budget minPerSecond must be a finite number >= 0, got ${minPerSecond}`);
    if (!Number.isFinite(windowMs) || windowMs <= 0) throw new Error(`retry budget windowMs must be a finite number > 0, got ${windowMs}`);
    this.#ratio = ratio;
    this.#reserve = (minPerSecond * windowMs) / 1000;
    this.#bucketMs = windowMs / BUCKETS;
    this.#clock = clock;
    this.#head = Math.floor(clock.now() / this.#bucketMs);
  }

  /** A first attempt was sent: it earns `ratio` of a retry. */
  recordRequest(): void {
    this.#requests[mod(this.#advance(), BUCKETS)]! += 1;
    this.#requestTotal += 1;
  }

  /** Take one retry from the budget; false (and nothing taken) when it is spent. */
  tryWithdraw(): boolean {
    const bucket = this.#advance();
    if (this.#ratio * this.#requestTotal + this.#reserve - this.#retryTotal < 1) return false;
    this.#retries[mod(bucket, BUCKETS + 1)]! += 1;
    this.#retryTotal += 1;
    return true;
  }

  /** Retries that may be taken now (fractional). For status pages and tests. */
  get available(): number {
    this.#advance();
    return Math.max(0, this.#ratio * this.#requestTotal + this.#reserve - this.#retryTotal);
  }

  /** Expire buckets the clock has left behind; returns the current bucket's absolute index. */
  #advance(): number {
    const now = Math.floor(this.#clock.now() / this.#bucketMs);
    if (now > this.#head) {
      const gap = now - this.#head;
      for (let i = 1; i <= Math.min(gap, BUCKETS); i++) {
        const slot = mod(this.#head + i, BUCKETS);
        this.#requestTotal -= this.#requests[slot]!;
        this.#requests[slot] = 0;
      }
      for (let i = 1; i <= Math.min(gap, BUCKETS + 1); i++) {
        const slot = mod(this.#head + i, BUCKETS + 1);
        this.#retryTotal -= this.#retries[slot]!;
        this.#retries[slot] = 0;
      }
      // Everything expired: reset exactly, so float error cannot accumulate.
      if (gap >= BUCKETS) this.#requestTotal = 0;
      if (gap >= BUCKETS + 1) this.#retryTotal = 0;
      this.#head = now;
    }
    // A clock that steps back keeps counting into the newest bucket.
    return this.#head;
  }
}
