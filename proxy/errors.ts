// Typed proxy errors. Stages throw or return these; the listener (http/listener.ts), for an
// upgrade http/upgrade.ts, and for HTTP/2 http2/server.ts (gRPC: grpc-status, http2/fields.ts)
// turn them into responses, each carrying a `meshlet-proxy-error` header with its stable code.

export const ERROR_STATUS = {
  'bad-request': 400,
  'header-too-large': 431,
  'no-route': 404,
  forbidden: 403,
  'no-endpoints': 503,
  'breaker-open': 503,
  'concurrency-limit': 503,
  'budget-exhausted': 503,
  'connect-refused': 502,
  'connect-timeout': 504,
  'connect-failed': 502,
  'identity-mismatch': 502,
  'tls-failed': 502,
  'upstream-reset': 502,
  'upstream-error': 502,
  'per-try-timeout': 504,
  'request-timeout': 504,
  /** A client did not send its whole request head in time (slow or stalled client; not an upstream's timeout). */
  'header-timeout': 408,
  /** No config yet: no file read, or no first view from the control plane. */
  'no-config': 503,
  /**
   * A connection whose first bytes are neither HTTP/1 nor the HTTP/2 preface (served as HTTP/2):
   * TLS (answered with a TLS alert) or anything else (this 400).
   */
  'unsupported-protocol': 400,
} as const;

/** Reason phrases of the statuses the proxy answers with itself (not node:http's STATUS_CODES: loading node:http costs memory). */
export const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 408: 'Request Timeout', 431: 'Request Header Fields Too Large', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' };

export type ProxyErrorCode = keyof typeof ERROR_STATUS;
export const PROXY_ERROR_CODES = Object.keys(ERROR_STATUS) as ProxyErrorCode[];
export const PROXY_ERROR_HEADER = 'meshlet-proxy-error';

export class ProxyError extends Error {
  readonly code: ProxyErrorCode;
  /** true when nothing of the request reached the upstream application (safe to retry any method). */
  readonly beforeRequest: boolean;
  constructor(code: ProxyErrorCode, message: string, opts?: { cause?: unknown; beforeRequest?: boolean }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ProxyError';
    this.code = code;
    this.beforeRequest = opts?.beforeRequest ?? false;
  }
  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export function isProxyError(e: unknown): e is ProxyError {
  return e instanceof ProxyError;
}

const NOT_FROM_BUNDLE = "the endpoint's certificate is not signed by the mesh's trust bundle";
/**
 * What the certificate check of an outbound handshake found, by the verify code Node gives as
 * `err.code`. The trust bundle is the only trust: Node's own advice for these (its system CA store,
 * --use-system-ca) does not apply to a mesh, so the message is ours, with the code for searching.
 */
const CERT_PROBLEMS: Readonly<Record<string, string>> = {
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: NOT_FROM_BUNDLE,
  UNABLE_TO_GET_ISSUER_CERT: NOT_FROM_BUNDLE,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: NOT_FROM_BUNDLE,
  CERT_UNTRUSTED: NOT_FROM_BUNDLE,
  DEPTH_ZERO_SELF_SIGNED_CERT: "the endpoint's certificate is self-signed, not signed by the mesh's trust bundle",
  SELF_SIGNED_CERT_IN_CHAIN: "the endpoint's certificate chains to a root that is not in the mesh's trust bundle",
  CERT_HAS_EXPIRED: 'a certificate the endpoint presented has expired',
  CERT_NOT_YET_VALID: 'a certificate the endpoint presented is not valid yet (is a clock behind?)',
  CERT_SIGNATURE_FAILURE: "a signature in the endpoint's certificate chain does not verify",
  INVALID_CA: "the endpoint's chain has a certificate that is not a CA where a CA must be",
  CERT_CHAIN_TOO_LONG: "the endpoint's certificate chain is longer than allowed",
  INVALID_PURPOSE: "the endpoint's certificate is not for TLS server use",
};

/** Node's advice to use the system CA store, cut from a message (for codes not in CERT_PROBLEMS). */
const cutSystemCaHint = (msg: string): string => msg.replace(/;[^;]*--use-system-ca\b.*$/, '');

/** Map a low-level socket or HTTP/1 client error (http1/client.ts, http/connector.ts) from an upstream attempt to a proxy error. */
export function fromUpstreamError(err: unknown, responseStarted: boolean): ProxyError {
  if (err instanceof ProxyError) return err;
  const e = err as { code?: string; message?: string } | undefined;
  const code = e?.code ?? '';
  const msg = e?.message ?? String(err);
  if (code === 'ECONNREFUSED') return new ProxyError('connect-refused', `connection refused: ${msg}`, { cause: err, beforeRequest: true });
  if (code === 'MESHLET_CONNECT_TIMEOUT') return new ProxyError('connect-timeout', `connect timed out: ${msg}`, { cause: err, beforeRequest: true });
  if (code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EAI_AGAIN') {
    return new ProxyError('connect-failed', `cannot connect: ${msg}`, { cause: err, beforeRequest: true });
  }
  // The client's own body failed (it closed mid-body, or sent malformed chunks): the request was bad, not the upstream.
  if (code === 'MESHLET_CLIENT_BODY') return new ProxyError('bad-request', msg, { cause: err });
  if (code === 'MESHLET_POOL_CLOSED') return new ProxyError('connect-failed', `not sent: ${msg}`, { cause: err, beforeRequest: true });
  if (code === 'MESHLET_IDENTITY_MISMATCH') return new ProxyError('identity-mismatch', msg, { cause: err, beforeRequest: true });
  if (code === 'MESHLET_NO_IDENTITY') return new ProxyError('tls-failed', msg, { cause: err, beforeRequest: true });
  const problem = CERT_PROBLEMS[code];
  if (problem) return new ProxyError('tls-failed', `TLS failed: ${problem} (${code})`, { cause: err, beforeRequest: true });
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /certificate|handshake|SSL/i.test(msg)) {
    return new ProxyError('tls-failed', `TLS failed: ${cutSystemCaHint(msg)}`, { cause: err, beforeRequest: true });
  }
  if (!responseStarted && (code === 'ECONNRESET' || code === 'EPIPE' || code === 'MESHLET_UPSTREAM_CLOSED')) {
    return new ProxyError('upstream-reset', `upstream closed the connection before responding: ${msg}`, { cause: err });
  }
  return new ProxyError('upstream-error', msg, { cause: err });
}
