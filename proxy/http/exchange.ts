// The request's journey as one object: what each stage learned (service, route, backend,
// endpoint, attempts) travels with it, so the log line and metrics read one place.
import type { BodySource } from '../http1/body.ts';
import type { Framing } from '../http1/head.ts';
import type { RuntimeConfig, ServiceRuntime, RouteRuntime, EndpointState } from '../config/compile.ts';
import type { HopSpan } from '../telemetry/trace.ts';
import type { ProxyError } from '../errors.ts';

export type Direction = 'inbound' | 'outbound';

/** The request body as the upstream attempt sends it. */
export type RequestBody =
  | { kind: 'none' }
  /** Fully read (small enough to replay on retry). */
  | { kind: 'buffer'; data: Buffer }
  /** Streamed once; a request with such a body is never retried. */
  | { kind: 'stream'; source: BodySource };

/** Request fields by lower-case name; a repeated field's values joined with ", ". */
export interface RequestFields {
  get(lower: string): string | undefined;
}

export interface Peer {
  /** SPIFFE ID of an mTLS peer, "" for plaintext. */
  readonly identity: string;
  readonly tls: boolean;
}

export interface Exchange {
  readonly direction: Direction;
  /** The request's fields by lower-case name, as received (HTTP/1: the parsed head; HTTP/2: the stream's headers). */
  readonly head: RequestFields;
  readonly method: string;
  /** Request-target as sent to the upstream: origin-form (`/a?b`). */
  readonly target: string;
  /** Path without query, for route and policy matches. */
  readonly path: string;
  /** Host (lower-case, no port) named by the request. */
  readonly authority: string;
  /** The Host header value to send upstream. */
  readonly hostHeader: string;
  /** Request headers to forward: a flat [name, value, ...] list, case kept, hop-by-hop removed. */
  readonly headers: string[];
  readonly startMs: number;
  /** The config snapshot this request runs with, start to end. */
  readonly config: RuntimeConfig;
  readonly peer: Peer;
  readonly span: HopSpan;
  body: RequestBody;
  service: ServiceRuntime | undefined;
  route: RouteRuntime | undefined;
  backend: ServiceRuntime | undefined;
  endpoint: EndpointState | undefined;
  /** Inbound: the local app's host:port the request went to (outbound: see endpoint). */
  appAddress: string | undefined;
  attempts: number;
  /** Absolute deadline (clock ms) of the whole request, until response headers. */
  deadline: number;
  /** Set when the client went away; stages stop retrying and abort attempts. */
  clientGone: boolean;
  /** Abort the attempt in progress (set by the endpoint stage while an attempt runs). */
  abortAttempt: ((reason: Error) => void) | undefined;
  /** The proxy error the request was answered with (set by the listener's rescue). */
  error: ProxyError | undefined;
  /** Measured and logged (once). */
  measured: boolean;
}

/** Where a response body goes: the client's response (http1/server.ts). */
export interface BodySink {
  write(chunk: Buffer): boolean;
  end(): void;
  destroy(err: Error): void;
  once(event: 'drain', fn: () => void): unknown;
}

export interface UpstreamBody {
  /** Stream the body into the sink; buffered chunks first. */
  pipeTo(sink: BodySink): void;
  /** The whole body when it has already arrived (and nothing was piped yet): taken, no longer pending. */
  takeWhole(): Buffer | undefined;
  /** Throw the body away and free the connection (a retried attempt). */
  discard(): void;
  /** Stop the body mid-way (the client left): the upstream connection is closed, onDone sees a failure. */
  readonly abort: (reason: Error) => void;
  /** Called once when the body ended (ok) or failed. */
  onDone(fn: (ok: boolean) => void): void;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly statusText: string;
  /** Flat raw headers with case kept, hop-by-hop removed. */
  readonly headers: string[];
  /** How the body is framed as it comes (a chunked body keeps its chunk framing). */
  readonly framing: Framing;
  readonly body: UpstreamBody;
}

export type Handler = (ex: Exchange) => Promise<UpstreamResponse>;
export type Stage = (next: Handler) => Handler;

/** Compose stages outermost first: compose([a, b, c], end) = a(b(c(end))). */
export function compose(stages: readonly Stage[], end: Handler): Handler {
  let h = end;
  for (let i = stages.length - 1; i >= 0; i--) h = stages[i]!(h);
  return h;
}
