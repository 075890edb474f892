// Wall-clock time for certificates (validity windows, expiry, rotation waits), injected everywhere.
// Guarantees: the CA never reads Date.now() itself; tests move time by hand.

/** Milliseconds since the Unix epoch. Not monotonic: use api/runtime.ts `Clock` for durations. */
export interface WallClock {
  nowMs(): number;
}

export const systemWallClock: WallClock = { nowMs: () => Date.now() };

/** A wall clock tests set and move by hand. */
export class ManualWallClock implements WallClock {
  #t: number;
  constructor(startMs: number) {
    this.#t = startMs;
  }
  nowMs(): number {
    return this.#t;
  }
  advance(ms: number): void {
    this.#t += ms;
  }
  set(ms: number): void {
    this.#t = ms;
  }
}
