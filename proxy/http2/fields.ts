// HTTP/2 fields at the proxy: a stream's headers as the pipeline reads them, the fields forwarded
// to the next hop (RFC 9113 §8.2.2: connection-specific fields dropped, `te: trailers` kept, the
// HTTP/1 hop-by-hop and trace rules of http/headers.ts otherwise), and the gRPC form of the
// proxy's own errors. Guarantees: pure.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { forwardRequestHeaders, forwardResponseHeaders, type RawFields, type TraceFields } from '../http/headers.ts';
import type { RequestFields } from '../http/exchange.ts';
import { PROXY_ERROR_HEADER, type ProxyError } from '../errors.ts';

/** A stream's regular fields (pseudo-headers left out): raw for forwarding, by name for lookups. */
export interface H2Fields extends RawFields, RequestFields {}

/**
 * The regular fields of a header block as Node gives it: `raw` is Node's flat [name, value, ...]
 * list (lower-case names, repeats kept), `headers` the same by name (repeats joined).
 */
export function fieldsOf(headers: IncomingHttpHeaders, raw: readonly string[]): H2Fields {
  const out: string[] = [];
  const lower: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* : */) continue;
    out.push(name, raw[i + 1]!);
    lower.push(name);
  }
  return {
    raw: out,
    lower,
    get: (name) => {
      const v = headers[name];
      return Array.isArray(v) ? v.join(', ') : v;
    },
  };
}

/** HTTP2-Settings is HTTP/1's Upgrade to h2c: connection-specific too (Node refuses to send it). */
const H2_ONLY_CONNECTION_SPECIFIC = 'http2-settings';

/**
 * Request fields for the next hop: HTTP/1's rules (hop-by-hop, Host, meshlet-dst-port and this
 * hop's trace fields removed), and `te: trailers` kept, the one TE an HTTP/2 request may carry
 * (RFC 9113 §8.2.2; gRPC servers expect it).
 */
export function forwardH2RequestHeaders(f: H2Fields, trace: TraceFields): string[] {
  const out = forwardRequestHeaders(f, trace);
  if (f.lower.includes(H2_ONLY_CONNECTION_SPECIFIC)) dropName(out, H2_ONLY_CONNECTION_SPECIFIC);
  const te = f.get('te');
  if (te !== undefined && te.split(',').some((t) => t.trim().toLowerCase() === 'trailers')) out.push('te', 'trailers');
  return out;
}

/** Response fields (or trailers) for the next hop: hop-by-hop and connection-specific removed. */
export function forwardH2ResponseHeaders(f: RawFields): string[] {
  const out = forwardResponseHeaders(f);
  if (f.lower.includes(H2_ONLY_CONNECTION_SPECIFIC)) dropName(out, H2_ONLY_CONNECTION_SPECIFIC);
  return out;
}

function dropName(list: string[], name: string): void {
  for (let i = list.length - 2; i >= 0; i -= 2) if (list[i]!.toLowerCase() === name) list.splice(i, 2);
}

/** A flat [name, value, ...] list into Node's header object (a repeated name becomes an array). */
export function headerObject(list: readonly string[], into: OutgoingHttpHeaders = {}): OutgoingHttpHeaders {
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!.toLowerCase();
    const v = list[i + 1]!;
    const had = into[name];
    if (had === undefined) into[name] = v;
    else if (Array.isArray(had)) had.push(v);
    else into[name] = [String(had), v];
  }
  return into;
}

/** A gRPC request (gRPC over HTTP/2: `application/grpc`, `application/grpc+proto`, ...). */
export function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.startsWith('application/grpc');
}

/**
 * The gRPC status of a proxy error, by its HTTP status, as Linkerd's proxy answers gRPC callers
 * (linkerd-app-core errors/respond.rs): 403 PERMISSION_DENIED (7), 404 NOT_FOUND (5), every 502,
 * 503 and 504 UNAVAILABLE (14): a route or per-try timeout is the proxy's deadline, not the
 * caller's, so it is not DEADLINE_EXCEEDED, and UNAVAILABLE is the code gRPC clients may retry.
 * A request the proxy cannot read is INTERNAL (13), gRPC's mapping of HTTP 400.
 */
export function grpcStatusOf(httpStatus: number): number {
  if (httpStatus === 403) return 7;
  if (httpStatus === 404) return 5;
  if (httpStatus === 502 || httpStatus === 503 || httpStatus === 504) return 14;
  if (httpStatus === 400 || httpStatus === 408 || httpStatus === 431) return 13;
  return 2;
}

/** Milliseconds per grpc-timeout unit (gRPC over HTTP/2: Hours, Minutes, Seconds, milli-, micro-, nanoseconds). */
const GRPC_TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/**
 * A caller's grpc-timeout in whole milliseconds (rounded up), or undefined when absent or not of
 * the form gRPC defines (1 to 8 digits and a unit): then the route's timeouts alone apply.
 */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined || value.length < 2 || value.length > 9) return undefined;
  const unit = GRPC_TIMEOUT_UNIT_MS[value[value.length - 1]!];
  const digits = value.slice(0, -1);
  if (unit === undefined || !/^[0-9]+$/.test(digits)) return undefined;
  return Math.ceil(Number(digits) * unit);
}

/** A grpc-timeout value for `ms` milliseconds (at most 8 digits: whole seconds past ~27 h). */
export function formatGrpcTimeout(ms: number): string {
  const m = Math.max(0, Math.ceil(ms));
  return m <= 99_999_999 ? `${m}m` : `${Math.min(99_999_999, Math.ceil(m / 1000))}S`;
}

/**
 * gRPC codes that say the endpoint failed, for its breaker: UNKNOWN (2), DEADLINE_EXCEEDED (4),
 * INTERNAL (13), UNAVAILABLE (14), DATA_LOSS (15): Linkerd's default gRPC failure codes but
 * PERMISSION_DENIED (7), which a healthy endpoint answers a caller it does not allow (an inbound
 * proxy's authorization deny among them): ejecting for it would take working endpoints away from
 * everyone. The others (NOT_FOUND, INVALID_ARGUMENT, ...) are the application's answers, as a 4xx is.
 */
export function isEndpointFailure(grpcStatus: string): boolean {
  return grpcStatus === '14' || grpcStatus === '13' || grpcStatus === '2' || grpcStatus === '4' || grpcStatus === '15';
}

/** grpc-message is percent-encoded outside printable ASCII, and '%' itself (gRPC over HTTP/2). */
export function grpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/** The proxy's own answer to a stream: headers, and a body unless it is a gRPC trailers-only answer. */
export interface ErrorAnswer {
  readonly headers: OutgoingHttpHeaders;
  readonly body: string | undefined;
  /** The HTTP status sent (200 for a gRPC answer). */
  readonly status: number;
  /** The grpc-status sent, for a gRPC caller. */
  readonly grpcStatus: string | undefined;
}

/**
 * A proxy error as the caller reads it: for gRPC, a trailers-only response (HTTP 200, grpc-status
 * and grpc-message, END_STREAM on the headers) as Linkerd sends; else the HTTP/1 answer (status,
 * text body). Both carry `meshlet-proxy-error` with the error's code. `callersDeadline`: the
 * whole-request timeout was the caller's grpc-timeout.
 */
export function errorAnswer(e: ProxyError, grpc: boolean, callersDeadline = false): ErrorAnswer {
  if (grpc) {
    // The caller's own grpc-timeout passed (not the route's): DEADLINE_EXCEEDED, as its client says too.
    const code = callersDeadline && e.code === 'request-timeout' ? '4' : String(grpcStatusOf(e.status));
    return {
      headers: { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': code, 'grpc-message': grpcMessage(`meshlet: ${e.code}: ${e.message}`), [PROXY_ERROR_HEADER]: e.code },
      body: undefined,
      status: 200,
      grpcStatus: code,
    };
  }
  return { headers: { ':status': e.status, [PROXY_ERROR_HEADER]: e.code, 'content-type': 'text/plain; charset=utf-8' }, body: `meshlet: ${e.code}: ${e.message}\n`, status: e.status, grpcStatus: undefined };
}
