// HTTP/1.1 message heads (RFC 9112), parsed strictly and without I/O: the framing a proxy
// forwards must mean the same thing to every hop, so anything ambiguous is an error, not a guess.
import { listHas } from './field-list.ts';

/** How a message body is delimited on the wire. */
export type Framing =
  /** No body (a request without Content-Length or Transfer-Encoding; HEAD, 1xx, 204, 304 responses). */
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' }
  /** A response read until the connection closes (no length, no chunked). */
  | { readonly kind: 'close' };

export const NO_BODY: Framing = Object.freeze({ kind: 'none' });
export const CHUNKED: Framing = Object.freeze({ kind: 'chunked' });
export const UNTIL_CLOSE: Framing = Object.freeze({ kind: 'close' });

/** A head that cannot be forwarded; `message` says why (it goes into the 400 / 502 body). */
export class HeadError extends Error {
  override readonly name = 'HeadError';
}

/** Header fields as received: names keep their case, values are trimmed of surrounding OWS. */
export interface Fields {
  /** Flat [name, value, name, value, ...]. */
  readonly raw: readonly string[];
  /** The names in lower case, one per field (raw's names, in order). */
  readonly lower: readonly string[];
  /** Lower-case name → value; repeated fields joined with ", " (as Node's req.headers). Built on first use. */
  readonly headers: Readonly<Record<string, string>>;
  /** The value of one field by lower-case name (repeated fields joined), without building `headers`. */
  get(lower: string): string | undefined;
}

/**
 * Where the head in `buf` ends: the index of its empty line's CRLF CRLF, or -1. A loop over the
 * bytes rather than Buffer#indexOf: for a head of a few hundred bytes the call into C++ cost more
 * than the search (~2 µs a request in a proxy's profile at ~1000 rps, two heads per request).
 */
export function headEnd(buf: Uint8Array): number {
  const n = buf.length;
  // A CR LF CR LF has its second LF at i + 3; step over bytes that cannot start one.
  for (let i = 0; i + 3 < n; i++) {
    if (buf[i + 3] !== 10) {
      if (buf[i + 3] !== 13) i += 3;
      continue;
    }
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13) return i;
  }
  return -1;
}

const LFLF = Buffer.from('\n\n');

/** Two LFs in a row: lines ended by a bare LF, so a head whose CRLF CRLF will never come (malformed, refused at once). */
export function hasBareLfLines(buf: Buffer): boolean {
  return buf.indexOf(LFLF) !== -1;
}

// ---- character classes (RFC 9110 §5.6.2 tchar, §5.5 field-vchar) ----

/** 1 for the octets of a token (methods, field names); a request line starts with one. */
export const TCHAR = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;
for (const ch of "!#$%&'*+-.^_`|~") TCHAR[ch.charCodeAt(0)] = 1;

/** Field value octets: HTAB, SP, VCHAR, obs-text. CR, LF, NUL and other controls are not. */
const VCHAR = new Uint8Array(256);
VCHAR[9] = 1;
for (let c = 0x20; c <= 0x7e; c++) VCHAR[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VCHAR[c] = 1;

/** Request-target octets: visible ASCII only. */
function isTargetChar(c: number): boolean {
  return c > 0x20 && c < 0x7f;
}

/** Host field octets: reg-name, IP literal and port characters (RFC 3986 authority without userinfo). */
const HOSTCHAR = new Uint8Array(256);
for (let c = 0x30; c <= 0x39; c++) HOSTCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) HOSTCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) HOSTCHAR[c] = 1;
for (const ch of "-._~!$&'()*+,;=:%[]") HOSTCHAR[ch.charCodeAt(0)] = 1;

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}


/** Header fields as received: names keep their case, values are trimmed of surrounding OWS. */
class ParsedFields implements Fields {
  readonly raw: string[];
  /** Lower-case names, parallel to raw's names. */
  readonly #lower: string[];
  #headers: Record<string, string> | undefined;
  constructor(from: { raw: string[]; lower: string[] }) {
    this.raw = from.raw;
    this.#lower = from.lower;
  }
  /** The lower-case names, parallel to raw's names. */
  get lower(): string[] {
    return this.#lower;
  }
  get headers(): Readonly<Record<string, string>> {
    if (this.#headers) return this.#headers;
    const h: Record<string, string> = Object.create(null) as Record<string, string>;
    const lower = this.#lower;
    for (let i = 0; i < lower.length; i++) {
      const name = lower[i]!;
      const v = this.raw[2 * i + 1]!;
      const prev = h[name];
      h[name] = prev === undefined ? v : `${prev}, ${v}`;
    }
    return (this.#headers = h);
  }
  get(lower: string): string | undefined {
    let out: string | undefined;
    const names = this.#lower;
    for (let i = 0; i < names.length; i++) {
      if (names[i] === lower) {
        const v = this.raw[2 * i + 1]!;
        out = out === undefined ? v : `${out}, ${v}`;
      }
    }
    return out;
  }
}

/** What the framing-relevant fields said, gathered in one pass. */
interface Scan {
  raw: string[];
  lower: string[];
  contentLength: string | undefined;
  contentLengths: number;
  transferEncoding: string | undefined;
  connection: string | undefined;
  host: string | undefined;
  hosts: number;
  upgrade: boolean;
  expect: string | undefined;
  keepAliveField: string | undefined;
}

/**
 * Field lines from `from` (just after the start line's CRLF) to the end of `s` (the head without
 * its final CRLF CRLF). Rejects obs-fold, whitespace before the colon, empty names, bare CR or LF
 * and control characters in values.
 */
function scanFields(s: string, from: number): Scan {
  const raw: string[] = [];
  const lower: string[] = [];
  const out: Scan = { raw, lower, contentLength: undefined, contentLengths: 0, transferEncoding: undefined, connection: undefined, host: undefined, hosts: 0, upgrade: false, expect: undefined, keepAliveField: undefined };
  let pos = from;
  const n = s.length;
  while (pos < n) {
    let eol = s.indexOf('\r\n', pos);
    if (eol === -1) eol = n;
    const first = s.charCodeAt(pos);
    if (first === 32 || first === 9) throw new HeadError('obsolete line folding (a field line starting with whitespace) is not accepted');
    let colon = pos;
    while (colon < eol && TCHAR[s.charCodeAt(colon)] === 1) colon++;
    if (colon === eol || s.charCodeAt(colon) !== 58 /* : */) {
      const c = s.charCodeAt(colon);
      if (colon < eol && (c === 32 || c === 9)) throw new HeadError('whitespace between a field name and its colon');
      throw new HeadError(colon === pos ? 'a field line without a name' : 'a field name with a character that is not a token character');
    }
    if (colon === pos) throw new HeadError('a field line without a name');
    let a = colon + 1;
    let b = eol;
    while (a < b && (s.charCodeAt(a) === 32 || s.charCodeAt(a) === 9)) a++;
    while (b > a && (s.charCodeAt(b - 1) === 32 || s.charCodeAt(b - 1) === 9)) b--;
    for (let i = a; i < b; i++) {
      if (VCHAR[s.charCodeAt(i)] !== 1) throw new HeadError(s.charCodeAt(i) === 13 || s.charCodeAt(i) === 10 ? 'a bare CR or LF in the head' : 'a control character in a field value');
    }
    const name = s.slice(pos, colon);
    const value = s.slice(a, b);
    const l = name.toLowerCase();
    raw.push(name, value);
    lower.push(l);
    switch (l.length) {
      case 4:
        if (l === 'host') {
          out.host = value;
          out.hosts++;
        }
        break;
      case 6:
        if (l === 'expect') out.expect = out.expect === undefined ? value : `${out.expect}, ${value}`;
        break;
      case 7:
        if (l === 'upgrade') out.upgrade = true;
        break;
      case 10:
        if (l === 'connection') out.connection = out.connection === undefined ? value : `${out.connection}, ${value}`;
        else if (l === 'keep-alive') out.keepAliveField = value;
        break;
      case 14:
        if (l === 'content-length') {
          out.contentLength = value;
          out.contentLengths++;
        }
        break;
      case 17:
        if (l === 'transfer-encoding') out.transferEncoding = out.transferEncoding === undefined ? value : `${out.transferEncoding}, ${value}`;
        break;
    }
    pos = eol + 2;
  }
  return out;
}

/** 1*DIGIT, at most 15 digits (a safe integer); NaN otherwise. */
function parseLength(v: string): number {
  if (v.length === 0 || v.length > 15) return NaN;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const d = v.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return NaN;
    n = n * 10 + d;
  }
  return n;
}

/**
 * Transfer-Encoding must be exactly `chunked` (any case, surrounding whitespace allowed). Other
 * codings (gzip, deflate, identity...) are refused, not passed on: this hop re-frames bodies as
 * chunked and would forward bytes still coded without saying so (RFC 9112 §6.1). Content-Encoding
 * is how applications compress; transfer codings other than chunked are all but unused.
 */
function checkChunkedOnly(te: string): void {
  const codings = te.split(',');
  for (let i = 0; i < codings.length; i++) {
    const c = codings[i]!.trim().toLowerCase();
    if (c === '') throw new HeadError('an empty transfer coding in Transfer-Encoding');
    if (c === 'chunked') {
      if (i !== codings.length - 1) throw new HeadError('Transfer-Encoding names chunked before another coding');
    } else if (!isToken(c.split(';')[0]!.trim())) throw new HeadError('a malformed transfer coding in Transfer-Encoding');
    else throw new HeadError(`the transfer coding "${c}" is not supported (only chunked is; compress with Content-Encoding)`);
  }
}

/** Absolute-form: a scheme of letters (as llhttp reads it), "://", an authority; the listener reads them (targetOf). */
const ABSOLUTE = /^[a-zA-Z]+:\/\/[^/?#]/;

/**
 * RFC 9112 §3.2: origin-form (`/path?query`), absolute-form (`http://host/path`, an app using the
 * proxy as HTTP_PROXY), or asterisk-form for OPTIONS. Authority-form belongs to CONNECT, which a
 * sidecar does not tunnel.
 */
function checkTargetForm(method: string, target: string): void {
  const c = target.charCodeAt(0);
  if (c === 47 /* / */) return;
  if (target === '*') {
    if (method === 'OPTIONS') return;
    throw new HeadError('the asterisk-form request-target is for OPTIONS only');
  }
  if (method === 'CONNECT') throw new HeadError('CONNECT tunnels are not proxied here');
  if (!ABSOLUTE.test(target)) throw new HeadError('a request-target that is neither origin-form (/path) nor absolute-form (http://host/path)');
}

function versionOf(s: string, at: number): 0 | 1 | -1 {
  if (!s.startsWith('HTTP/1.', at)) return -1;
  const d = s.charCodeAt(at + 7);
  return d === 49 ? 1 : d === 48 ? 0 : -1;
}

function keepAliveOf(minor: 0 | 1, connection: string | undefined): boolean {
  if (connection === undefined) return minor === 1;
  if (listHas(connection, 'close', true)) return false;
  return minor === 1 || listHas(connection, 'keep-alive', true);
}

/**
 * A request head: `s` is the head as latin1 text, from the request line up to (not including)
 * the CRLF CRLF that ends it. Throws HeadError for anything that is not a well-formed, unambiguous
 * HTTP/1.0 or HTTP/1.1 request.
 */
export function parseRequestHead(s: string): RequestHead {
  const eol = s.indexOf('\r\n');
  const lineEnd = eol === -1 ? s.length : eol;
  let i = 0;
  while (i < lineEnd && TCHAR[s.charCodeAt(i)] === 1) i++;
  if (i === 0 || s.charCodeAt(i) !== 32) throw new HeadError('a malformed request line (method)');
  const method = s.slice(0, i);
  const t0 = i + 1;
  let t1 = t0;
  while (t1 < lineEnd && isTargetChar(s.charCodeAt(t1))) t1++;
  if (t1 === t0 || s.charCodeAt(t1) !== 32) throw new HeadError('a malformed request line (request-target)');
  const target = s.slice(t0, t1);
  checkTargetForm(method, target);
  const minor = versionOf(s, t1 + 1);
  if (minor === -1 || t1 + 9 !== lineEnd) throw new HeadError('a malformed request line (only HTTP/1.0 and HTTP/1.1 are spoken here)');
  const f = eol === -1 ? scanFields('', 0) : scanFields(s, eol + 2);
  if (f.hosts > 1) throw new HeadError('more than one Host field');
  const host = f.host ?? '';
  if (minor === 1 && f.hosts === 0) throw new HeadError('an HTTP/1.1 request without a Host field');
  for (let k = 0; k < host.length; k++) if (HOSTCHAR[host.charCodeAt(k)] !== 1) throw new HeadError('a Host field that is not an authority');
  let framing: Framing = NO_BODY;
  if (f.transferEncoding !== undefined) {
    if (f.contentLengths > 0) throw new HeadError('both Content-Length and Transfer-Encoding (ambiguous framing)');
    if (minor === 0) throw new HeadError('Transfer-Encoding in an HTTP/1.0 request');
    checkChunkedOnly(f.transferEncoding);
    framing = CHUNKED;
  } else if (f.contentLengths > 0) {
    if (f.contentLengths > 1) throw new HeadError('more than one Content-Length field (ambiguous framing)');
    const n = parseLength(f.contentLength!);
    if (Number.isNaN(n)) throw new HeadError('a Content-Length that is not a decimal number');
    framing = n === 0 ? NO_BODY : { kind: 'length', length: n };
  }
  const upgrade = f.upgrade && f.connection !== undefined && listHas(f.connection, 'upgrade', true);
  const expectContinue = f.expect !== undefined && listHas(f.expect, '100-continue', true);
  return new RequestHead(f, method, target, minor, host, framing, keepAliveOf(minor, f.connection), upgrade, expectContinue);
}

/** A request head (parseRequestHead). */
export class RequestHead extends ParsedFields {
  readonly method: string;
  readonly target: string;
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  readonly minor: 0 | 1;
  /** The Host field ('' when absent: allowed for HTTP/1.0 only). */
  readonly host: string;
  readonly framing: Framing;
  /** The connection may carry another request after this one. */
  readonly keepAlive: boolean;
  /** Connection: upgrade with an Upgrade field (WebSocket and friends). */
  readonly upgrade: boolean;
  /** Expect: 100-continue. */
  readonly expectContinue: boolean;
  constructor(f: { raw: string[]; lower: string[] }, method: string, target: string, minor: 0 | 1, host: string, framing: Framing, keepAlive: boolean, upgrade: boolean, expectContinue: boolean) {
    super(f);
    this.method = method;
    this.target = target;
    this.minor = minor;
    this.host = host;
    this.framing = framing;
    this.keepAlive = keepAlive;
    this.upgrade = upgrade;
    this.expectContinue = expectContinue;
  }
}

/** A response head (parseResponseHead). */
export class ResponseHead extends ParsedFields {
  readonly status: number;
  readonly reason: string;
  readonly minor: 0 | 1;
  /** With the request method considered: HEAD responses have no body whatever the fields say. */
  readonly framing: Framing;
  readonly keepAlive: boolean;
  /** Seconds from `Keep-Alive: timeout=N`, when the server says how long it keeps idle connections. */
  readonly keepAliveTimeout: number | undefined;
  constructor(f: { raw: string[]; lower: string[] }, status: number, reason: string, minor: 0 | 1, framing: Framing, keepAlive: boolean, keepAliveTimeout: number | undefined) {
    super(f);
    this.status = status;
    this.reason = reason;
    this.minor = minor;
    this.framing = framing;
    this.keepAlive = keepAlive;
    this.keepAliveTimeout = keepAliveTimeout;
  }
}

/** Seconds of `timeout=N` in a Keep-Alive field. */
function keepAliveSeconds(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /(?:^|[,;\s])timeout\s*=\s*(\d{1,6})/i.exec(v);
  return m ? Number(m[1]) : undefined;
}

/**
 * A response head, as `parseRequestHead` (the status line instead of the request line). `method`
 * is the request's: a HEAD response never has a body. Content-Length repeated with one value is
 * taken as that value (RFC 9110 §8.6); differing values, or Content-Length with Transfer-Encoding,
 * are refused: the response could be split differently by the next hop.
 */
export function parseResponseHead(s: string, method: string): ResponseHead {
  const eol = s.indexOf('\r\n');
  const lineEnd = eol === -1 ? s.length : eol;
  const minor = versionOf(s, 0);
  if (minor === -1 || s.charCodeAt(8) !== 32) throw new HeadError('a malformed status line (only HTTP/1.0 and HTTP/1.1 are spoken here)');
  const s0 = s.charCodeAt(9) - 48;
  const s1 = s.charCodeAt(10) - 48;
  const s2 = s.charCodeAt(11) - 48;
  if (!(s0 >= 1 && s0 <= 5) || !(s1 >= 0 && s1 <= 9) || !(s2 >= 0 && s2 <= 9)) throw new HeadError('a malformed status code');
  const status = s0 * 100 + s1 * 10 + s2;
  let reason = '';
  if (lineEnd > 12) {
    if (s.charCodeAt(12) !== 32) throw new HeadError('a malformed status line');
    for (let i = 13; i < lineEnd; i++) if (VCHAR[s.charCodeAt(i)] !== 1) throw new HeadError('a control character in the reason phrase');
    reason = s.slice(13, lineEnd);
  }
  const f = eol === -1 ? scanFields('', 0) : scanFields(s, eol + 2);
  let length = NaN;
  if (f.contentLengths > 0) {
    length = parseLength(f.contentLength!);
    if (Number.isNaN(length)) throw new HeadError('a Content-Length that is not a decimal number');
    if (f.contentLengths > 1) {
      const values: string[] = [];
      for (let i = 0; i < f.lower.length; i++) if (f.lower[i] === 'content-length') values.push(...f.raw[2 * i + 1]!.split(','));
      for (const v of values) if (parseLength(v.trim()) !== length) throw new HeadError('Content-Length fields that disagree (ambiguous framing)');
    }
  }
  let framing: Framing;
  if (status < 200 || status === 204 || status === 304 || method === 'HEAD') framing = NO_BODY;
  else if (f.transferEncoding !== undefined) {
    if (f.contentLengths > 0) throw new HeadError('both Content-Length and Transfer-Encoding (ambiguous framing)');
    checkChunkedOnly(f.transferEncoding);
    framing = CHUNKED;
  } else if (!Number.isNaN(length)) framing = length === 0 ? NO_BODY : { kind: 'length', length };
  else framing = UNTIL_CLOSE;
  const keepAlive = framing.kind !== 'close' && keepAliveOf(minor, f.connection);
  return new ResponseHead(f, status, reason, minor, framing, keepAlive, keepAliveSeconds(f.keepAliveField));
}
