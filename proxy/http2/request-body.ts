// The request body of an HTTP/2 stream as each attempt sends it (forward.ts): the first attempt
// reads it from the caller's stream as it arrives (flow control end to end: a gRPC client stream
// or bidi call is never held back), keeping a copy up to a bound when the route may retry; a later
// attempt sends the copy. Guarantees: replayable only when no byte of it was read yet, or when it
// ended within the bound; a body still streaming, or larger, is sent once.
import type { ClientHttp2Stream, ServerHttp2Stream } from 'node:http2';

export class H2RequestBody {
  readonly #down: ServerHttp2Stream;
  /** The request ended with its headers (END_STREAM on HEADERS). */
  readonly empty: boolean;
  #chunks: Buffer[] = [];
  #bytes = 0;
  #keep = 0;
  #started = false;
  #ended: boolean;
  #overflowed = false;

  constructor(down: ServerHttp2Stream, empty: boolean) {
    this.#down = down;
    this.empty = empty;
    this.#ended = empty;
  }

  /** Whether another attempt can send the whole body: none of it read yet, or all of it kept. */
  get replayable(): boolean {
    return !this.#started || (this.#ended && !this.#overflowed);
  }

  /**
   * Send the body on `up` (a stream opened without END_STREAM unless `empty`). The first call reads
   * the caller's stream, keeping up to `keep` bytes for a replay (0: none, a plain pipe); a later
   * call replays what was kept (call it only while `replayable`). `sent` runs once the whole body
   * has been handed to `up`.
   */
  sendTo(up: ClientHttp2Stream, keep: number, sent: () => void): void {
    if (this.empty) {
      sent();
      return;
    }
    if (this.#started) {
      for (const c of this.#chunks) up.write(c);
      up.end();
      sent();
      return;
    }
    this.#started = true;
    this.#keep = keep;
    const down = this.#down;
    down.once('end', () => {
      this.#ended = true;
      sent();
    });
    if (keep > 0) down.on('data', this.#copy);
    else this.#overflowed = true; // nothing kept: never replayable once read
    down.pipe(up);
  }

  /** No attempt will follow (the answer is the caller's now): stop copying, free what was kept. */
  release(): void {
    if (!this.#overflowed) this.#down.off('data', this.#copy);
    this.#overflowed = true;
    this.#chunks = [];
  }

  readonly #copy = (chunk: Buffer): void => {
    if (this.#overflowed) return;
    this.#bytes += chunk.length;
    if (this.#bytes > this.#keep) {
      this.#overflowed = true;
      this.#chunks = [];
      this.#down.off('data', this.#copy);
      return;
    }
    this.#chunks.push(chunk);
  };
}
