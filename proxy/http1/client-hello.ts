// The server name (SNI) of a TLS ClientHello that reached an HTTP/1 listener, for the message that
// refuses it (first-bytes.ts). Guarantees: reads only the bytes given and inside every length the
// ClientHello states; any length that does not fit, or a name that is not a DNS name, gives undefined.

/** TLS record header: content type 22 (handshake), version 3.x, a 2-byte length (RFC 8446 §5.1). */
const RECORD_HEADER = 5;
const HANDSHAKE = 0x16;
const CLIENT_HELLO = 1;
const SERVER_NAME_EXTENSION = 0;
const HOST_NAME = 0;

/** Reads big-endian integers inside [pos, end); a read past `end` makes the cursor bad, never throws or reads beyond. */
class Cursor {
  readonly #b: Uint8Array;
  pos: number;
  readonly end: number;
  ok = true;

  constructor(b: Uint8Array, pos: number, end: number) {
    this.#b = b;
    this.pos = pos;
    this.end = Math.min(end, b.length);
  }

  #take(n: number): number {
    if (!this.ok || this.pos + n > this.end) {
      this.ok = false;
      return -1;
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(): number {
    const at = this.#take(1);
    return at === -1 ? 0 : this.#b[at]!;
  }

  u16(): number {
    const at = this.#take(2);
    return at === -1 ? 0 : (this.#b[at]! << 8) | this.#b[at + 1]!;
  }

  u24(): number {
    const at = this.#take(3);
    return at === -1 ? 0 : (this.#b[at]! << 16) | (this.#b[at + 1]! << 8) | this.#b[at + 2]!;
  }

  skip(n: number): void {
    this.#take(n);
  }

  /** A cursor over the next `n` bytes (bounded by this one's end); this one moves past them. */
  sub(n: number): Cursor {
    const at = this.#take(n);
    const c = new Cursor(this.#b, at === -1 ? this.end : at, at === -1 ? this.end : at + n);
    c.ok = at !== -1;
    return c;
  }

  /** As sub(), cut to the bytes left: a length that runs past what is here (a record not whole) reads what is. */
  subUpTo(n: number): Cursor {
    return this.sub(Math.min(n, this.end - this.pos));
  }

  bytes(n: number): Uint8Array | undefined {
    const at = this.#take(n);
    return at === -1 ? undefined : this.#b.subarray(at, at + n);
  }
}

/** A DNS name as SNI carries it (RFC 6066 §3: no trailing dot, ASCII): letters, digits, '-', '_', '.'; at most 253. */
function dnsName(b: Uint8Array): string | undefined {
  if (b.length === 0 || b.length > 253) return undefined;
  let s = '';
  for (const c of b) {
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f;
    if (!ok) return undefined;
    s += String.fromCharCode(c);
  }
  return s.toLowerCase();
}

/**
 * The host name a ClientHello asks for, from the bytes of a connection's first TLS record (its
 * header included). Only the first record is read: a ClientHello split over records (rare: one
 * holds 16 KiB) gives the name only if it is in the first. undefined when there is none, or the
 * bytes are not a well-formed ClientHello as far as they go.
 */
export function serverNameOf(buf: Uint8Array): string | undefined {
  if (buf.length < RECORD_HEADER || buf[0] !== HANDSHAKE || buf[1] !== 3) return undefined;
  const record = new Cursor(buf, RECORD_HEADER, RECORD_HEADER + ((buf[3]! << 8) | buf[4]!));
  if (record.u8() !== CLIENT_HELLO) return undefined;
  const hello = record.subUpTo(record.u24());
  hello.skip(2 + 32); // legacy_version, random
  hello.skip(hello.u8()); // legacy_session_id
  hello.skip(hello.u16()); // cipher_suites
  hello.skip(hello.u8()); // legacy_compression_methods
  const extensions = hello.subUpTo(hello.u16());
  // Each extension is at least 4 bytes: the loop ends within (end - pos) / 4 turns.
  while (extensions.ok && extensions.pos < extensions.end) {
    const type = extensions.u16();
    const body = extensions.sub(extensions.u16());
    if (!extensions.ok) return undefined;
    if (type !== SERVER_NAME_EXTENSION) continue;
    const list = body.sub(body.u16());
    while (list.ok && list.pos < list.end) {
      const nameType = list.u8();
      const name = list.bytes(list.u16());
      if (name === undefined) return undefined;
      if (nameType === HOST_NAME) return dnsName(name);
    }
    return undefined;
  }
  return undefined;
}
