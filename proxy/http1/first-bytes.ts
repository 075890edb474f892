// Before a connection's first request head: is it HTTP/1 at all? A TLS ClientHello (an app calling
// https:// through interception), the HTTP/2 preface (gRPC, prior knowledge) and bytes no request
// line starts with are told apart, so server.ts refuses them at once, in terms their client reads,
// instead of waiting 30 s for a CRLF that never comes. Guarantees: pure; looks at the bytes given only.
import { serverNameOf } from './client-hello.ts';
import { TCHAR } from './head.ts';

export type Foreign =
  /** A TLS handshake record (0x16 0x03 ..); the server name of its ClientHello when it has one. */
  | { protocol: 'tls'; serverName: string | undefined }
  /** The HTTP/2 connection preface (RFC 9113 §3.4), sent by clients with prior knowledge. */
  | { protocol: 'http2' }
  /** A first byte no HTTP/1 request line starts with; `first` shows up to 8 bytes in hex. */
  | { protocol: 'unknown'; first: string };

const TLS_HANDSHAKE = 0x16;
/** A TLSPlaintext record holds at most 2^14 bytes (RFC 8446 §5.1): a ClientHello is waited for up to that. */
const MAX_RECORD = 16384;
/** The preface's request line. The PRI method is reserved for it (RFC 9113 §3.4, §11.6): no HTTP/1 request starts so. */
const PRI_LINE = Buffer.from('PRI * HTTP/2.0\r\n');

const hex = (b: Uint8Array): string => Array.from(b.subarray(0, 8), (c) => c.toString(16).padStart(2, '0')).join(' ');

/**
 * What the first bytes of a connection are, when they are not (the start of) an HTTP/1 request:
 * undefined when they may be one (the HTTP/1 parser decides), 'more' when a few more bytes will
 * tell (a TLS record not yet whole, a prefix of the HTTP/2 preface line). `final`: no more bytes
 * will come (the head timeout ran out); decide on what is here.
 */
export function detectForeign(buf: Uint8Array, final: boolean): Foreign | 'more' | undefined {
  const b0 = buf[0];
  if (b0 === undefined) return undefined;
  if (b0 === TLS_HANDSHAKE) {
    if (buf.length < 2) return final ? { protocol: 'unknown', first: hex(buf) } : 'more';
    if (buf[1] !== 3) return { protocol: 'unknown', first: hex(buf) };
    if (!final) {
      // The whole ClientHello record, for its server name; a client sends it in one go.
      if (buf.length < 5) return 'more';
      const length = (buf[3]! << 8) | buf[4]!;
      if (length <= MAX_RECORD && buf.length < 5 + length) return 'more';
    }
    return { protocol: 'tls', serverName: serverNameOf(buf) };
  }
  if (b0 === PRI_LINE[0]) {
    const n = Math.min(buf.length, PRI_LINE.length);
    for (let i = 1; i < n; i++) if (buf[i] !== PRI_LINE[i]) return undefined;
    if (n === PRI_LINE.length) return { protocol: 'http2' };
    return final ? undefined : 'more';
  }
  if (TCHAR[b0] === 1) return undefined;
  // A CR alone may be the start of an empty line before the request line (RFC 9112 §2.2).
  if (b0 === 13 && buf.length === 1 && !final) return 'more';
  return { protocol: 'unknown', first: hex(buf) };
}

/**
 * A fatal handshake_failure alert (RFC 8446 §6): a TLS client fails its handshake at once with an
 * error it understands, not "wrong version number" from reading an HTTP answer.
 */
export const TLS_HANDSHAKE_FAILURE = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 40]);

/** HTTP_1_1_REQUIRED (RFC 9113 §7): "use HTTP/1.1 instead". */
const HTTP_1_1_REQUIRED = 0x0d;
const SETTINGS = 0x4;
const GOAWAY = 0x7;
const MAX_DEBUG = 256;

/**
 * The server's connection preface (an empty SETTINGS frame must come first, RFC 9113 §3.4), then
 * GOAWAY with last stream 0 (no stream was processed) and HTTP_1_1_REQUIRED, `debug` (ASCII, cut
 * to 256 bytes) as its debug data.
 */
export function http2Refusal(debug: string): Buffer {
  const text = Buffer.from(debug.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_DEBUG), 'latin1');
  const settings = Buffer.from([0, 0, 0, SETTINGS, 0, 0, 0, 0, 0]);
  const len = 8 + text.length;
  const goaway = Buffer.from([len >> 16, (len >> 8) & 0xff, len & 0xff, GOAWAY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, HTTP_1_1_REQUIRED]);
  return Buffer.concat([settings, goaway, text]);
}
