// The request path's timers: every request arms a whole-request deadline and a per-try timeout,
// and nearly every request cancels both. Node's setTimeout keeps one timer list per duration and
// drops a list when it empties, so at a moderate rate (one or two requests in flight) each request
// made and dropped two lists: an insert into a dictionary-mode object through the runtime,
// priority-queue work and an async id, ~3 % of a proxy's CPU samples at ~1000 rps. Here the due
// times sit in a binary heap under one Node timer, and cancelling a deadline leaves that timer
// armed: it wakes once at the time it was set for, finds nothing due and, if deadlines remain,
// is set again for the earliest. A proxy with no requests wakes at most once more and sleeps.
import type { Clock } from '../../api/runtime.ts';

/** Node's timers by default; tests pass their own. */
export interface TimerApi {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const nodeTimers: TimerApi = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** An armed deadline, to cancel; opaque to callers. */
export interface Deadline {
  readonly due: number;
}

class Entry implements Deadline {
  readonly due: number;
  readonly fire: () => void;
  /** Position in the heap; -1 once fired or cancelled. */
  index: number;
  constructor(due: number, fire: () => void, index: number) {
    this.due = due;
    this.fire = fire;
    this.index = index;
  }
}

export class Deadlines {
  readonly #clock: Clock;
  readonly #timers: TimerApi;
  readonly #heap: Entry[] = [];
  #handle: unknown;
  /** When the Node timer is set to wake (Infinity: not set). */
  #wakeAt = Infinity;

  constructor(clock: Clock, timers: TimerApi = nodeTimers) {
    this.#clock = clock;
    this.#timers = timers;
  }

  /** Deadlines armed and neither fired nor cancelled. */
  get pending(): number {
    return this.#heap.length;
  }

  /** Call `fire` once the clock reaches `due` (clock milliseconds), unless cancelled first. */
  at(due: number, fire: () => void): Deadline {
    const heap = this.#heap;
    const e = new Entry(due, fire, heap.length);
    heap.push(e);
    this.#up(e.index);
    if (due < this.#wakeAt) this.#wake(due);
    return e;
  }

  /** Call `fire` `ms` milliseconds from now, unless cancelled first. */
  after(ms: number, fire: () => void): Deadline {
    return this.at(this.#clock.now() + ms, fire);
  }

  /** Forget a deadline; cancelling one that already fired or was cancelled does nothing. */
  cancel(d: Deadline): void {
    const e = d as Entry;
    if (e.index >= 0) this.#removeAt(e.index);
  }

  readonly #onTimer = (): void => {
    this.#handle = undefined;
    this.#wakeAt = Infinity;
    const heap = this.#heap;
    const now = this.#clock.now();
    try {
      while (heap.length > 0 && heap[0]!.due <= now) {
        const e = heap[0]!;
        this.#removeAt(0);
        e.fire();
      }
    } finally {
      // A deadline armed by a fire() may have set the timer for later than one still waiting.
      if (heap.length > 0 && heap[0]!.due < this.#wakeAt) this.#wake(heap[0]!.due);
    }
  };

  #wake(due: number): void {
    if (this.#handle !== undefined) this.#timers.clear(this.#handle);
    this.#wakeAt = due;
    // Node's timers count whole milliseconds from the loop's cached time: a wake-up a little early
    // finds nothing due and sets the timer again.
    this.#handle = this.#timers.set(this.#onTimer, Math.max(1, Math.ceil(due - this.#clock.now())));
  }

  #removeAt(i: number): void {
    const heap = this.#heap;
    const gone = heap[i]!;
    gone.index = -1;
    const last = heap.pop()!;
    if (i === heap.length) return;
    heap[i] = last;
    last.index = i;
    this.#up(i);
    this.#down(last.index);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const e = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (parent.due <= e.due) break;
      heap[i] = parent;
      parent.index = i;
      i = p;
    }
    heap[i] = e;
    e.index = i;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const e = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r]!.due < heap[l]!.due ? r : l;
      const child = heap[c]!;
      if (child.due >= e.due) break;
      heap[i] = child;
      child.index = i;
      i = c;
    }
    heap[i] = e;
    e.index = i;
  }
}
