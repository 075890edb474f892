// The last proxy-made errors, for `meshlet diagnose` (admin GET /errors): a fixed ring of small
// records plus the last one of each reason (so a burst of one reason, e.g. breaker-open, does not
// hide the one that opened the breaker), written only when the proxy answers with its own error.
import type { RecentError } from '../../api/proxy-admin.ts';
import type { WallClock } from '../identity/identity.ts';

export type { RecentError };

export class RecentErrors {
  readonly #ring: Array<RecentError | undefined>;
  readonly #clock: WallClock;
  /** At most one per reason (a closed set of codes). */
  readonly #lastByReason = new Map<string, RecentError>();
  #next = 0;
  /** Errors recorded since start (the ring keeps the last `capacity`). */
  total = 0;

  constructor(clock: WallClock, capacity = 64) {
    this.#ring = Array.from<RecentError | undefined>({ length: capacity });
    this.#clock = clock;
  }

  record(e: Omit<RecentError, 'at'>): void {
    (e as RecentError).at = this.#clock.nowMs();
    this.#ring[this.#next] = e as RecentError;
    this.#lastByReason.set(e.reason, e as RecentError);
    this.#next = (this.#next + 1) % this.#ring.length;
    this.total++;
  }

  /** The last error of each reason seen, newest first. */
  lastByReason(): RecentError[] {
    return [...this.#lastByReason.values()].toSorted((a, b) => b.at - a.at);
  }

  /** Newest first. */
  list(): RecentError[] {
    const out: RecentError[] = [];
    for (let i = 1; i <= this.#ring.length; i++) {
      const e = this.#ring[(this.#next - i + this.#ring.length) % this.#ring.length];
      if (e) out.push(e);
    }
    return out;
  }
}
