// A message body arriving on a connection, handed to one consumer with flow control: bytes come
// as the wire framed them (chunked bodies keep their chunk framing), the consumer pauses the
// connection by returning false, and bytes that came before it attached wait, bounded.
import type { Framing } from './head.ts';

export interface BodyConsumer {
  /** A piece of the body; return false to pause the source until `resume()`. */
  data(chunk: Buffer): boolean;
  end(): void;
  error(err: Error): void;
}

/** Where the source's bytes come from: the connection pauses and resumes reading for it. */
export interface BodyFlow {
  pause(): void;
  resume(): void;
  /** The consumer attached (a server answers `Expect: 100-continue` here). */
  started(): void;
}

/** Bytes a body buffers before anyone reads it, before the connection stops reading. */
const HIGH_WATER = 64 * 1024;

export class BodySource {
  /** The body's framing as received: 'length' (Content-Length) or 'chunked'. */
  readonly framing: Framing;
  readonly #flow: BodyFlow;
  #queue: Buffer[] | undefined;
  #queued = 0;
  #consumer: BodyConsumer | undefined;
  #ended = false;
  #error: Error | undefined;
  #paused = false;
  /** Bytes received so far. */
  received = 0;

  constructor(framing: Framing, flow: BodyFlow) {
    this.framing = framing;
    this.#flow = flow;
  }

  get ended(): boolean {
    return this.#ended;
  }

  get failed(): Error | undefined {
    return this.#error;
  }

  get consumed(): boolean {
    return this.#consumer !== undefined;
  }

  // ---- the connection's side ----

  push(chunk: Buffer): void {
    this.received += chunk.length;
    const c = this.#consumer;
    if (c) {
      if (!c.data(chunk)) this.#pause();
      return;
    }
    (this.#queue ??= []).push(chunk);
    this.#queued += chunk.length;
    if (this.#queued > HIGH_WATER) this.#pause();
  }

  end(): void {
    if (this.#ended || this.#error) return;
    this.#ended = true;
    this.#consumer?.end();
  }

  fail(err: Error): void {
    if (this.#ended || this.#error) return;
    this.#error = err;
    this.#consumer?.error(err);
  }

  // ---- the consumer's side ----

  /** Attach the one consumer: queued bytes first, then live ones, then end or error. */
  start(consumer: BodyConsumer): void {
    if (this.#consumer) throw new Error('a body has one consumer');
    this.#consumer = consumer;
    this.#flow.started();
    const q = this.#queue;
    this.#queue = undefined;
    this.#queued = 0;
    let more = true;
    if (q) for (const chunk of q) more = consumer.data(chunk) && more;
    if (this.#ended) consumer.end();
    else if (this.#error) consumer.error(this.#error);
    else if (more) this.resume();
    else this.#pause();
  }

  /** Read the whole body (a small one, for replay). */
  readAll(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      this.start({
        data: (c) => {
          chunks.push(c);
          return true;
        },
        end: () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)),
        error: reject,
      });
    });
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#flow.resume();
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.#flow.pause();
  }
}
