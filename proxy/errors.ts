// Typed proxy errors. Stages throw or return these; exactly one place (http/respond.ts) turns
// them into HTTP responses, each carrying a `meshlet-proxy-error` header with its stable code.

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
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /certificate|handshake|SSL/i.test(msg)) {
    return new ProxyError('tls-failed', `TLS failed: ${msg}`, { cause: err, beforeRequest: true });
  }
  if (!responseStarted && (code === 'ECONNRESET' || code === 'EPIPE' || code === 'MESHLET_UPSTREAM_CLOSED')) {
    return new ProxyError('upstream-reset', `upstream closed the connection before responding: ${msg}`, { cause: err });
  }
  return new ProxyError('upstream-error', msg, { cause: err });
}
