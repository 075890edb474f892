// The last step of an HTTP/2 request: one stream on the endpoint's session (sessions.ts), its
// request body sent by request-body.ts (from the caller's stream, or a retry's copy), resolved at
// the response headers; the body and trailers are relayed after (relay). The outbound terminal,
// the inbound one (to the app, h2c), and what the retry and balance stages read of an HTTP/2
// answer (h2RetryHooks, h2Verdict).
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Clock } from '../../api/runtime.ts';
import type { Exchange, Handler, UpstreamBody, UpstreamResponse, BodySink } from '../http/exchange.ts';
import { ProxyError, fromUpstreamError } from '../errors.ts';
import type { Deadline, Deadlines } from '../http/deadlines.ts';
import type { RetryHooks } from '../outbound/retry.ts';
import { isFailureStatus } from '../outbound/balance.ts';
import { fieldsOf, formatGrpcTimeout, forwardH2ResponseHeaders, headerObject, isEndpointFailure, isGrpc } from './fields.ts';
import type { H2RequestBody } from './request-body.ts';
import type { H2Sessions } from './sessions.ts';
import { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } from './node-http2.ts';


/** What an HTTP/2 exchange carries besides the Exchange: the caller's stream. */
export interface H2Request {
  readonly stream: ServerHttp2Stream;
  /** The request body, as each attempt sends it. */
  readonly body: H2RequestBody;
  /** A gRPC request (content-type application/grpc*): the proxy's errors go back as grpc-status. */
  readonly grpc: boolean;
  /** The caller's grpc-timeout (ms), if it sent a valid one. */
  readonly grpcTimeoutMs: number | undefined;
  /** The whole-request timeout in force is the caller's grpc-timeout (it expiring is DEADLINE_EXCEEDED). */
  callersDeadline: boolean;
}

export type H2Exchange = Exchange & { readonly h2: H2Request };

/** A flat [name, value, ...] list, as the pipeline's response headers are, from a response header block. */
function responseList(headers: IncomingHttpHeaders, raw: readonly string[] | undefined): string[] {
  return forwardH2ResponseHeaders(fieldsOf(headers, raw ?? rawOf(headers)));
}

/** Node gives a raw list with 'response' only in some versions: build one from the object. */
function rawOf(headers: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(k, x);
    else out.push(k, String(v));
  }
  return out;
}

const EMPTY_FRAMING = { kind: 'none' } as const;

/**
 * The upstream's response body and trailers, relayed onto the caller's stream. `onDone` reports
 * whether the upstream stream ended cleanly; `grpcStatus` is the grpc-status it answered with
 * (trailers, or the headers of a trailers-only answer).
 */
export class H2Body implements UpstreamBody {
  readonly #up: ClientHttp2Stream;
  #trailers: OutgoingHttpHeaders | undefined;
  #done: Array<(ok: boolean) => void> | undefined = [];
  #ok = false;
  /** Ended by this proxy (a discarded attempt, a caller that left), not by the endpoint. */
  #cancelled = false;
  readonly #grpc: boolean;
  grpcStatus: string | undefined;
  /** The grpc-status of the response headers: only a trailers-only answer has one there. */
  readonly headerGrpcStatus: string | undefined;

  constructor(up: ClientHttp2Stream, headers: IncomingHttpHeaders) {
    this.#up = up;
    const g = headers['grpc-status'];
    if (typeof g === 'string') this.grpcStatus = this.headerGrpcStatus = g;
    this.#grpc = isGrpc(headers['content-type']);
    up.on('trailers', (t: IncomingHttpHeaders) => {
      const list = forwardH2ResponseHeaders(fieldsOf(t, rawOf(t)));
      this.#trailers = headerObject(list);
      const s = t['grpc-status'];
      if (typeof s === 'string') this.grpcStatus = s;
    });
    up.once('close', () => {
      this.#ok = up.rstCode === NGHTTP2_NO_ERROR;
      const d = this.#done;
      this.#done = undefined;
      if (d) for (const fn of d) fn(this.#ok);
    });
  }

  /**
   * Answer the caller: `headers` (with :status) and, unless the upstream ended with its headers
   * (a trailers-only gRPC answer goes on as one), the body with backpressure both ways and the
   * trailers after it. An upstream reset mid-body resets the caller's stream; a caller that
   * leaves cancels the upstream stream.
   */
  relay(down: ServerHttp2Stream, headers: OutgoingHttpHeaders): void {
    const up = this.#up;
    if (up.endAfterHeaders) {
      down.respond(headers, { endStream: true });
      return;
    }
    down.respond(headers, { waitForTrailers: true });
    down.once('wantTrailers', () => {
      // No trailers: Node ends the stream with an empty DATA frame.
      if (!down.destroyed) down.sendTrailers(this.#trailers ?? {});
    });
    up.once('close', () => {
      if (up.rstCode !== NGHTTP2_NO_ERROR && !down.destroyed) down.close(NGHTTP2_INTERNAL_ERROR);
    });
    up.pipe(down);
  }

  pipeTo(_sink: BodySink): void {
    throw new Error('an HTTP/2 response body is relayed onto a stream (H2Body.relay), not piped');
  }

  takeWhole(): Buffer | undefined {
    return undefined;
  }

  discard(): void {
    this.#cancelled = true;
    if (!this.#up.closed) this.#up.close(NGHTTP2_CANCEL);
  }

  readonly abort = (_reason: Error): void => {
    this.#cancelled = true;
    if (!this.#up.closed) this.#up.close(NGHTTP2_CANCEL);
  };

  /**
   * The endpoint's verdict for its breaker, as Linkerd classifies gRPC: an HTTP 5xx, or a
   * trailers-only answer by its grpc-status, now; a gRPC answer with a body once it ends, by the
   * grpc-status of its trailers (a reset, or no grpc-status at all, is a failure too); any other
   * answer by its status. undefined: this proxy ended the stream itself, which says nothing.
   */
  verdict(status: number, report: (success: boolean | undefined) => void): void {
    if (isFailureStatus(status)) report(false);
    else if (this.headerGrpcStatus !== undefined) report(!isEndpointFailure(this.headerGrpcStatus));
    else if (!this.#grpc) report(true);
    else this.onDone((ok) => report(this.#cancelled ? undefined : ok && this.grpcStatus !== undefined && !isEndpointFailure(this.grpcStatus)));
  }

  /** The upstream stream has closed (ended, reset or cancelled). */
  get closed(): boolean {
    return this.#done === undefined;
  }

  onDone(fn: (ok: boolean) => void): void {
    if (this.#done === undefined) fn(this.#ok);
    else this.#done.push(fn);
  }
}

/** A stream error before the response headers, as a proxy error. */
function streamError(err: Error & { code?: string }, address: string): ProxyError {
  if (err.code === 'ERR_HTTP2_STREAM_ERROR' || err.code === 'ERR_HTTP2_SESSION_ERROR' || err.code === 'ERR_HTTP2_GOAWAY_SESSION' || err.code === 'ERR_HTTP2_STREAM_CANCEL') {
    return new ProxyError('upstream-reset', `${address} reset the HTTP/2 stream before responding: ${err.message}`, { cause: err });
  }
  return fromUpstreamError(err, false);
}

/** The endpoint refused the stream (REFUSED_STREAM): not processed, so retried like a failed connect (retry.ts). */
const refusedStream = (address: string) => new ProxyError('upstream-reset', `${address} refused the stream (REFUSED_STREAM)`, { beforeRequest: true });

const perTryTimeout = (ms: number) => new ProxyError('per-try-timeout', `no response headers within ${ms} ms`);

/**
 * Send the exchange as one stream on `session` (awaited: a connect failure is the attempt's).
 * `extra`: fields for this hop (meshlet-dst-port); `keep`: bytes of the request body to keep for a
 * retry (request-body.ts; 0: none); `grpcTimeout`: replaces the caller's grpc-timeout. `perTryMs`
 * > 0: aborted with per-try-timeout without response headers within it, counted from when the
 * request body has been sent whole (a client-streaming call's upload is the caller's pace), as
 * HTTP/1's dispatchOnce counts it.
 */
export function dispatchH2(session: Promise<ClientHttp2Session>, ex: H2Exchange, address: string, extra: readonly string[], perTryMs: number, deadlines: Deadlines | undefined, keep: number, grpcTimeout?: string): Promise<UpstreamResponse> {
  return new Promise<UpstreamResponse>((resolve, reject) => {
    let up: ClientHttp2Stream | undefined;
    let timer: Deadline | undefined;
    let settled = false;
    const settle = (err: Error | undefined, res?: UpstreamResponse) => {
      if (settled) return;
      settled = true;
      if (timer) deadlines!.cancel(timer);
      ex.abortAttempt = undefined;
      if (err) {
        if (up && !up.closed) up.close(NGHTTP2_CANCEL);
        reject(err);
      } else resolve(res!);
    };
    ex.abortAttempt = (reason) => settle(reason);
    const arm = () => {
      if (perTryMs > 0 && !settled) timer = deadlines!.after(perTryMs, () => settle(perTryTimeout(perTryMs)));
    };
    session.then(
      (s) => {
        if (settled) return;
        const body = ex.h2.body;
        const headers: OutgoingHttpHeaders = { ':method': ex.method, ':path': ex.target, ':authority': ex.hostHeader };
        headerObject(ex.headers, headers);
        headerObject(extra, headers);
        if (grpcTimeout !== undefined) headers['grpc-timeout'] = grpcTimeout;
        let stream: ClientHttp2Stream;
        try {
          stream = s.request(headers, { endStream: body.empty });
        } catch (err) {
          // A session that just closed (GOAWAY between get and request): nothing was sent.
          settle(new ProxyError('upstream-reset', `${address}: the HTTP/2 session closed before the request: ${(err as Error).message}`, { cause: err, beforeRequest: true }));
          return;
        }
        up = stream;
        // REFUSED_STREAM comes as an 'error' (before 'close'): the endpoint did not process it.
        stream.on('error', (err: Error) => settle(stream.rstCode === NGHTTP2_REFUSED_STREAM ? refusedStream(address) : streamError(err, address)));
        stream.once('close', () => {
          // Settled already (answered, or failed): no error to build. Building one anyway (an Error:
          // its stack) on every stream's close was 6.7 % of an HTTP/2 proxy's CPU.
          if (settled) return;
          if (stream.rstCode === NGHTTP2_REFUSED_STREAM) settle(refusedStream(address));
          else settle(new ProxyError('upstream-reset', `${address} closed the stream before responding (code ${stream.rstCode})`));
        });
        stream.once('response', (h: IncomingHttpHeaders, _flags: number, raw?: string[]) => {
          const status = Number(h[':status']);
          settle(undefined, { status, statusText: '', headers: responseList(h, raw), framing: EMPTY_FRAMING, body: new H2Body(stream, h) });
        });
        body.sendTo(stream, keep, arm);
      },
      (err: unknown) => settle(fromUpstreamError(err, false)),
    );
  });
}

/** The port part of an endpoint address. */
const portOf = (address: string): string => address.slice(address.lastIndexOf(':') + 1);

/**
 * Outbound terminal: a stream on the chosen endpoint's session. The per-try timeout is the
 * route's, cut to what is left of the whole-request deadline; a meshed endpoint's proxy is told
 * the port dialled (`meshlet-dst-port`), as over HTTP/1, and the upstream what is left of the
 * caller's grpc-timeout.
 */
export function h2Endpoint(clock: Clock, deadlines: Deadlines, sessions: H2Sessions): Handler {
  return (ex) => {
    const h = ex as H2Exchange;
    const ep = ex.endpoint!;
    const perTry = Math.min(ex.route?.timeouts.perTry ?? 0, Math.max(1, ex.deadline - clock.now()));
    const connect = ex.route?.timeouts.connect ?? 1000;
    const extra = ep.identity === undefined ? [] : ['meshlet-dst-port', portOf(ep.address)];
    // A copy is kept only where a retry could send it: a method the route retries (a connect
    // failure, retried for any method, happens before any of the body is read).
    const r = ex.route?.retry;
    const keep = r !== undefined && r.attempts > 1 && r.methods.has(ex.method) ? r.maxBufferedBody : 0;
    // The upstream learns what is left of the caller's deadline (a retry has less), as gRPC clients send it.
    const g = h.h2.grpcTimeoutMs;
    const left = g === undefined ? undefined : formatGrpcTimeout(ex.startMs + g - clock.now());
    return dispatchH2(sessions.get(ep.address, ep.identity, connect, ep.lookup), h, ep.address, extra, perTry, deadlines, keep, left);
  };
}

/** Inbound terminal: a stream on the session to the local app (h2c). No retries, no timeout: the caller's proxy owns them. */
export function h2App(sessions: H2Sessions, address: string): Handler {
  return (ex) => {
    ex.attempts = 1;
    ex.appAddress = address;
    return dispatchH2(sessions.get(address, undefined, 1000), ex as H2Exchange, address, [], 0, undefined, 0);
  };
}

/**
 * What the retry stage (outbound/retry.ts) reads of an HTTP/2 request: a trailers-only gRPC
 * answer's grpc-status is its outcome (Envoy retries gRPC on the codes of the response headers
 * only: trailers come after a body the caller already has); the body is replayable as
 * request-body.ts says.
 */
export const h2RetryHooks: RetryHooks = {
  outcomeOf(res, ex) {
    const g = (ex as H2Exchange).h2.grpc ? (res.body as H2Body).headerGrpcStatus : undefined;
    return g === undefined ? { kind: 'status', status: res.status } : { kind: 'grpc-status', code: Number(g) };
  },
  bodyReplayable: (ex) => (ex as H2Exchange).h2.body.replayable,
  // The smaller of the route's timeout and the caller's grpc-timeout (Envoy's grpc_timeout_header_max
  // without a cap): past the caller's deadline nobody waits for the answer.
  requestTimeout(ex, routeMs) {
    const h2 = (ex as H2Exchange).h2;
    const g = h2.grpcTimeoutMs;
    if (g === undefined || (routeMs > 0 && routeMs < g)) return routeMs;
    h2.callersDeadline = true;
    return Math.max(1, g);
  },
};

/** The balance stage's verdict of an HTTP/2 answer for the endpoint's breaker (H2Body.verdict). */
export function h2Verdict(res: UpstreamResponse, report: (success: boolean | undefined) => void): void {
  (res.body as H2Body).verdict(res.status, report);
}
