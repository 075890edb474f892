// Service stage, before the balancer: Envoy-style circuit breaker on concurrency (max_requests, max_pending).
// Guarantees: at most maxInFlight slots held, at most maxPending waiters (FIFO); overflow is refused at once.
/*
 * acquire() answers in one of three ways:
 *   a release function   a slot was free; call it when the request is done (twice frees one slot)
 *   a Promise            the caller waits in line; it resolves to a release function (FIFO), or
 *                        rejects with signal.reason if the signal aborts first (and leaves the line)
 *   undefined            the line is full: answer 503 at once
 * A released slot passes straight to the first waiter, so a newcomer cannot overtake the line.
 */

export type Release = () => void;

/** A waiter in the line; also its own abort listener (no closure per waiter). */
class Waiter {
  prev: Waiter | undefined = undefined;
  next: Waiter | undefined = undefined;
  readonly line: Line;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (release: Release) => void;
  readonly reject: (reason: unknown) => void;
  constructor(line: Line, signal: AbortSignal | undefined, resolve: (r: Release) => void, reject: (e: unknown) => void) {
    this.line = line;
    this.signal = signal;
    this.resolve = resolve;
    this.reject = reject;
  }
  /** The signal aborted while waiting: leave the line and reject. */
  handleEvent(): void {
    if (this.line.remove(this)) this.reject(this.signal?.reason);
  }
}

/** FIFO of waiters as a doubly linked list: O(1) push, shift and removal from the middle. */
class Line {
  first: Waiter | undefined = undefined;
  last: Waiter | undefined = undefined;
  size = 0;
  push(w: Waiter): void {
    w.prev = this.last;
    if (this.last) this.last.next = w;
    else this.first = w;
    this.last = w;
    this.size += 1;
  }
  shift(): Waiter | undefined {
    const w = this.first;
    if (w) this.remove(w);
    return w;
  }
  /** False if w is not in the line (already granted or abandoned). */
  remove(w: Waiter): boolean {
    if (w.prev === undefined && this.first !== w) return false;
    if (w.prev) w.prev.next = w.next;
    else this.first = w.next;
    if (w.next) w.next.prev = w.prev;
    else this.last = w.prev;
    w.prev = undefined;
    w.next = undefined;
    this.size -= 1;
    return true;
  }
}

export class ConcurrencyLimit {
  readonly #maxInFlight: number;
  readonly #maxPending: number;
  readonly #line = new Line();
  #inFlight = 0;

  constructor(maxInFlight: number, maxPending: number) {
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new Error(`maxInFlight must be an integer >= 1, got ${maxInFlight}`);
    if (!Number.isInteger(maxPending) || maxPending < 0) throw new Error(`maxPending must be an integer >= 0, got ${maxPending}`);
    this.#maxInFlight = maxInFlight;
    this.#maxPending = maxPending;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get pending(): number {
    return this.#line.size;
  }

  /** A free slot's release function, or undefined when none is free (never queues). */
  tryAcquire(): Release | undefined {
    if (this.#inFlight >= this.#maxInFlight) return undefined;
    this.#inFlight += 1;
    return this.#releaser();
  }

  /** See the top of the file. An already-aborted signal gets a rejected promise and takes nothing. */
  acquire(signal?: AbortSignal): Release | Promise<Release> | undefined {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#inFlight < this.#maxInFlight) {
      this.#inFlight += 1;
      return this.#releaser();
    }
    if (this.#line.size >= this.#maxPending) return undefined;
    const { promise, resolve, reject } = Promise.withResolvers<Release>();
    const w = new Waiter(this.#line, signal, resolve, reject);
    this.#line.push(w);
    signal?.addEventListener('abort', w, { once: true });
    return promise;
  }

  #releaser(): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#free();
    };
  }

  #free(): void {
    const w = this.#line.shift();
    if (w === undefined) {
      this.#inFlight -= 1;
      return;
    }
    // Hand the slot straight to the first waiter: inFlight stays the same.
    w.signal?.removeEventListener('abort', w);
    w.resolve(this.#releaser());
  }
}
