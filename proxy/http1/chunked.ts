// The chunked transfer coding (RFC 9112 §7.1), checked byte by byte as a body passes: the proxy
// forwards chunked bodies as they came, so it only needs to know where each one ends and that its
// framing is unambiguous (bare LF, sizes that are not hex, junk after a chunk are refused).

/** Scanner states. */
const S = {
  SIZE: 0,
  EXT: 1,
  SIZE_LF: 2,
  DATA: 3,
  DATA_CR: 4,
  DATA_LF: 5,
  TRAILER_START: 6,
  TRAILER: 7,
  TRAILER_LF: 8,
  END_LF: 9,
  DONE: 10,
  TRAILER_NAME: 11,
} as const;

/** Field-name octets (RFC 9110 tchar). */
const TCHAR = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

/** Fields that frame or route a message: never in a trailer (RFC 9110 §6.5.1), where a next hop could merge them. */
const FORBIDDEN_TRAILERS = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'te', 'upgrade', 'keep-alive']);

/** Longest chunk-size line extension, and trailer section, accepted. */
const MAX_EXT = 4096;
const MAX_TRAILERS = 16 * 1024;

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

export class ChunkedError extends Error {
  override readonly name = 'ChunkedError';
}

/**
 * Scans a chunked body across any number of buffers. `scan` returns the index just past the end
 * of the body in `buf` (the last chunk and trailers included), or -1 when all of `buf` belongs to
 * the body and more is needed; it throws ChunkedError on malformed framing. With `onData`, the
 * chunk data ranges are reported too (to decode the body for an HTTP/1.0 peer).
 */
export class ChunkedScanner {
  #state: number = S.SIZE;
  #size = 0;
  #digits = 0;
  #remaining = 0;
  #ext = 0;
  #trailers = 0;
  /** The trailer field name being read, lower case. */
  #name = '';
  readonly #onData: ((buf: Buffer, start: number, end: number) => void) | undefined;

  constructor(onData?: (buf: Buffer, start: number, end: number) => void) {
    this.#onData = onData;
  }

  get done(): boolean {
    return this.#state === S.DONE;
  }

  scan(buf: Buffer, start = 0): number {
    let i = start;
    const n = buf.length;
    while (i < n) {
      const c = buf[i]!;
      switch (this.#state) {
        case S.SIZE: {
          const h = hexValue(c);
          if (h >= 0) {
            if (++this.#digits > 13) throw new ChunkedError('a chunk size of more than 13 hex digits');
            this.#size = this.#size * 16 + h;
          } else if (this.#digits === 0) throw new ChunkedError('a chunk size that is not a hex number');
          else if (c === 59 /* ; */) {
            this.#state = S.EXT;
            this.#ext = 0;
          } else if (c === 13) this.#state = S.SIZE_LF;
          else throw new ChunkedError('junk after a chunk size');
          i++;
          break;
        }
        case S.EXT:
          if (c === 13) this.#state = S.SIZE_LF;
          else if ((c < 32 && c !== 9) || c === 127) throw new ChunkedError('a control character in a chunk extension');
          else if (++this.#ext > MAX_EXT) throw new ChunkedError('a chunk extension longer than 4 KiB');
          i++;
          break;
        case S.SIZE_LF:
          if (c !== 10) throw new ChunkedError('a CR without LF after a chunk size');
          i++;
          if (this.#size === 0) {
            this.#state = S.TRAILER_START;
          } else {
            this.#remaining = this.#size;
            this.#state = S.DATA;
          }
          this.#size = 0;
          this.#digits = 0;
          break;
        case S.DATA: {
          const take = Math.min(this.#remaining, n - i);
          if (this.#onData) this.#onData(buf, i, i + take);
          this.#remaining -= take;
          i += take;
          if (this.#remaining === 0) this.#state = S.DATA_CR;
          break;
        }
        case S.DATA_CR:
          if (c !== 13) throw new ChunkedError('chunk data longer than its size');
          this.#state = S.DATA_LF;
          i++;
          break;
        case S.DATA_LF:
          if (c !== 10) throw new ChunkedError('a CR without LF after chunk data');
          this.#state = S.SIZE;
          i++;
          break;
        case S.TRAILER_START:
          if (c === 13) this.#state = S.END_LF;
          else if (c === 10) throw new ChunkedError('a bare LF in the trailer section');
          else if (c === 32 || c === 9) throw new ChunkedError('obsolete line folding in the trailer section');
          else if (TCHAR[c] !== 1) throw new ChunkedError('a trailer line that is not a field (name: value)');
          else {
            this.#state = S.TRAILER_NAME;
            this.#name = String.fromCharCode(c >= 65 && c <= 90 ? c | 0x20 : c);
          }
          if (++this.#trailers > MAX_TRAILERS) throw new ChunkedError('a trailer section larger than 16 KiB');
          i++;
          break;
        case S.TRAILER_NAME:
          if (c === 58 /* : */) {
            if (FORBIDDEN_TRAILERS.has(this.#name)) throw new ChunkedError(`a ${this.#name} field in the trailer section`);
            this.#state = S.TRAILER;
          } else if (TCHAR[c] !== 1) throw new ChunkedError('a trailer line that is not a field (name: value)');
          else if (this.#name.length < 32) this.#name += String.fromCharCode(c >= 65 && c <= 90 ? c | 0x20 : c);
          if (++this.#trailers > MAX_TRAILERS) throw new ChunkedError('a trailer section larger than 16 KiB');
          i++;
          break;
        case S.TRAILER:
          if (c === 13) this.#state = S.TRAILER_LF;
          else if ((c < 32 && c !== 9) || c === 127) throw new ChunkedError('a control character in a trailer field');
          if (++this.#trailers > MAX_TRAILERS) throw new ChunkedError('a trailer section larger than 16 KiB');
          i++;
          break;
        case S.TRAILER_LF:
          if (c !== 10) throw new ChunkedError('a CR without LF in the trailer section');
          this.#state = S.TRAILER_START;
          i++;
          break;
        case S.END_LF:
          if (c !== 10) throw new ChunkedError('a CR without LF at the end of a chunked body');
          this.#state = S.DONE;
          return i + 1;
        default:
          return i;
      }
    }
    return -1;
  }
}

/** A chunk of data in the chunked coding (for bodies whose length the proxy does not know). */
export function chunkPrefix(length: number): string {
  return `${length.toString(16)}\r\n`;
}

export const LAST_CHUNK = '0\r\n\r\n';
