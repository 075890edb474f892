// Where a message body ends, read after read: a Content-Length counted down, a chunked body
// scanned as it passes (chunked.ts), or a body that ends only when the connection closes. One
// rule for the server's request bodies and the client's response bodies.
import { ChunkedScanner } from './chunked.ts';
import type { Framing } from './head.ts';

export class BodyFraming {
  /** Bytes of a counted body still to come. */
  #remaining: number;
  readonly #scanner: ChunkedScanner | undefined;
  readonly #untilClose: boolean;
  #done: boolean;

  constructor(f: Framing) {
    this.#remaining = f.kind === 'length' ? f.length : 0;
    this.#scanner = f.kind === 'chunked' ? new ChunkedScanner() : undefined;
    this.#untilClose = f.kind === 'close';
    this.#done = f.kind === 'none' || (f.kind === 'length' && f.length === 0);
  }

  get done(): boolean {
    return this.#done;
  }

  /** Bytes still to come; Infinity when the body does not say (chunked, until close). */
  get remaining(): number {
    return this.#scanner || this.#untilClose ? Infinity : this.#remaining;
  }

  /**
   * The index in `chunk` just past the body's end, or -1 when all of `chunk` is body and more is
   * to come. Throws ChunkedError on malformed chunked framing.
   */
  end(chunk: Buffer): number {
    if (this.#done) return 0;
    if (this.#untilClose) return -1;
    if (this.#scanner) {
      const end = this.#scanner.scan(chunk);
      if (end !== -1) this.#done = true;
      return end;
    }
    if (chunk.length < this.#remaining) {
      this.#remaining -= chunk.length;
      return -1;
    }
    const end = this.#remaining;
    this.#remaining = 0;
    this.#done = true;
    return end;
  }
}

