// An HTTP/2 listener: serves the connections handed to it (h2c whose preface the HTTP/1 listener
// detected, h2 over mTLS from the inbound acceptor's ALPN), builds an Exchange per stream, runs the
// direction's pipeline and relays the answer. Proxy errors become responses here (gRPC callers
// get grpc-status, errors.ts' codes in `meshlet-proxy-error` for all); every stream is measured,
// logged and traced once through http/record.ts, as HTTP/1 requests are.
import type { Http2Server, Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { ConfigStore } from '../config/store.ts';
import type { Handler, Peer, UpstreamResponse } from '../http/exchange.ts';
import { ProxyError, isProxyError, fromUpstreamError } from '../errors.ts';
import { hostOf } from '../http/listener.ts';
import { PLAINTEXT, recordExchange, recordOther, type RecordDeps } from '../http/record.ts';
import { pathOf } from '../policy/route-match.ts';
import { extractParent, pushPropagationHeaders } from '../telemetry/trace.ts';
import { errorAnswer, fieldsOf, forwardH2RequestHeaders, headerObject, isGrpc, parseGrpcTimeout } from './fields.ts';
import { H2Body, type H2Exchange } from './forward.ts';
import { H2RequestBody } from './request-body.ts';
import { NGHTTP2_FLAG_END_STREAM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, nodeHttp2 } from './node-http2.ts';


export interface H2ListenerDeps extends RecordDeps {
  readonly store: ConfigStore;
  readonly handler: Handler;
}

/** What a stream answered, for its measurement. */
interface Answer {
  status: number;
  grpcStatus: string | undefined;
  body: H2Body | undefined;
}

const NO_ATTRS: Record<string, string> = Object.freeze({}) as Record<string, string>;

export class H2Listener {
  readonly #d: H2ListenerDeps;
  /** Made at the first connection (node-http2.ts). */
  #server: Http2Server | undefined;
  readonly #peers = new WeakMap<Http2Session, Peer>();
  readonly #sessions = new Set<Http2Session>();
  #nextPeer: Peer = PLAINTEXT;
  #inFlight = 0;
  #draining = false;
  #idle: (() => void) | undefined;

  constructor(d: H2ListenerDeps) {
    this.#d = d;
    d.metrics.inFlightOf(d.direction, () => this.#inFlight);
  }

  #serverNow(): Http2Server {
    if (this.#server) return this.#server;
    // Only streams: the connection-level limits are Node's (header list 64 KiB, session memory 10 MB).
    const server = nodeHttp2().createServer({ maxHeaderListPairs: 256 });
    server.on('session', (s: Http2Session) => {
      // Node makes the session inside emit('connection'), synchronously: the peer accept() set is this one's.
      this.#peers.set(s, this.#nextPeer);
      this.#sessions.add(s);
      s.on('error', () => {});
      s.once('close', () => this.#sessions.delete(s));
      s.setTimeout(65_000, () => s.close());
      if (this.#draining) s.close();
    });
    server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, raw: string[]) => this.#onStream(stream, headers, flags, raw));
    this.#server = server;
    return server;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Serve HTTP/2 on a connection: plaintext after its preface was read (`read`), or TLS that chose h2. */
  accept(socket: Socket, peer: Peer, read?: Buffer): void {
    // The HTTP/1 listener's sockets are half-open (a client's FIN leaves them writable). A session
    // needs the socket to close when its client does, or its streams never close (nor their
    // upstream streams, nor the connection): Node's own HTTP/2 servers take no half-open sockets.
    socket.allowHalfOpen = false;
    if (read) socket.unshift(read);
    else {
      // Handed over by the HTTP/1 listener (read given), a connection was counted there already.
      const open = this.#d.metrics.connections.labels(this.#d.direction);
      open.inc();
      this.#d.metrics.connectionsTotal.labels(this.#d.direction).inc();
      socket.once('close', () => open.dec());
    }
    this.#nextPeer = peer;
    try {
      this.#serverNow().emit('connection', socket);
    } finally {
      this.#nextPeer = PLAINTEXT;
    }
  }

  /** GOAWAY to every session; in-flight streams finish, up to graceMs; then every session is closed. */
  async drain(graceMs: number): Promise<void> {
    this.#draining = true;
    for (const s of this.#sessions) s.close();
    if (this.#inFlight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs);
        this.#idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    for (const s of this.#sessions) s.destroy();
  }

  #onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, raw: string[]): void {
    const d = this.#d;
    const startMs = d.clock.now();
    stream.on('error', () => {});
    const peer = this.#peers.get(stream.session!) ?? PLAINTEXT;
    const method = headers[':method'] ?? '';
    const rawPath = headers[':path'] ?? '';
    const authority = headers[':authority'] ?? headers.host ?? '';
    const grpc = isGrpc(headers['content-type']);
    const cfg = d.store.current;
    const early = (e: ProxyError) => {
      d.metrics.proxyErrors.labels(d.direction, e.code).inc();
      d.recentErrors?.record({ direction: d.direction, reason: e.code, message: e.message, authority: hostOf(authority), service: '', endpoint: '', peer: peer.identity, attempts: 0 });
      const a = this.#writeError(stream, e, grpc);
      recordOther(d, { method, authority, path: pathOf(rawPath), status: a.status, code: e.code, durMs: d.clock.now() - startMs, peer });
    };
    if (!cfg) return early(new ProxyError('no-config', 'the proxy has no config yet'));
    // CONNECT (and extended CONNECT, RFC 8441) has no :path; WebSocket over HTTP/2 is not proxied.
    if (method === 'CONNECT' || headers[':protocol'] !== undefined) return early(new ProxyError('bad-request', 'CONNECT over HTTP/2 is not proxied (WebSocket over HTTP/2 neither): use HTTP/1.1 for tunnels and upgrades'));
    const host = hostOf(authority);
    if (host === '') return early(new ProxyError('bad-request', 'the request names no host (no :authority, no Host)'));
    const fields = fieldsOf(headers, raw);
    const parent = extractParent(fields);
    const path = pathOf(rawPath);
    const span = d.tracing.start(`${method} ${d.direction}`, d.direction === 'inbound' ? 'server' : 'client', parent, d.tracing.exporting ? spanAttributes(stream, method, path, host, authority, d.direction, fields.get('user-agent')) : NO_ATTRS);
    const fwd = forwardH2RequestHeaders(fields, parent?.source === 'traceparent' ? 'replace' : 'restart');
    pushPropagationHeaders(fwd, span, parent);
    const ex: H2Exchange = {
      direction: d.direction,
      head: fields,
      method,
      target: rawPath,
      path,
      authority: host,
      hostHeader: authority,
      headers: fwd,
      startMs,
      config: cfg,
      peer,
      span,
      body: { kind: 'none' },
      service: undefined,
      route: undefined,
      backend: undefined,
      endpoint: undefined,
      appAddress: undefined,
      attempts: 0,
      deadline: Infinity,
      clientGone: false,
      abortAttempt: undefined,
      error: undefined,
      measured: false,
      h2: { stream, body: new H2RequestBody(stream, (flags & NGHTTP2_FLAG_END_STREAM) !== 0), grpc, grpcTimeoutMs: grpc ? parseGrpcTimeout(fields.get('grpc-timeout')) : undefined, callersDeadline: false },
    };
    const answer: Answer = { status: 0, grpcStatus: undefined, body: undefined };
    this.#inFlight++;
    stream.once('close', () => {
      if (!ex.error) {
        // Reset by the caller, or closed under us with no code (its connection went: the session's
        // streams are destroyed with NO_ERROR) before any answer: the caller is gone.
        if (stream.rstCode !== NGHTTP2_NO_ERROR) ex.clientGone = answer.body === undefined || stream.rstCode !== NGHTTP2_INTERNAL_ERROR;
        else if (answer.body === undefined) ex.clientGone = true;
        // An upstream stream still open has no one to answer: cancel it. Once it has closed (the
        // usual end: the answer was relayed whole) there is nothing to give up; building the error
        // anyway (an Error: its stack) on every stream's close was ~7 % of an HTTP/2 proxy's CPU.
        if (ex.abortAttempt !== undefined && answer.body?.closed !== true) ex.abortAttempt(new ProxyError('upstream-error', 'the caller reset the HTTP/2 stream or left'));
      }
      this.#done(ex, stream, answer);
    });
    d.handler(ex).then(
      (up) => this.#respond(ex, up, answer),
      (err) => this.#rescue(ex, err, answer),
    );
  }

  #respond(ex: H2Exchange, up: UpstreamResponse, answer: Answer): void {
    const stream = ex.h2.stream;
    if (stream.closed || stream.destroyed || !(up.body instanceof H2Body)) {
      up.body.discard();
      return;
    }
    // The answer is the caller's: no retry will need the request body again (a bidi call's copy is freed).
    ex.h2.body.release();
    const headers = headerObject(up.headers, { ':status': up.status });
    try {
      up.body.relay(stream, headers);
    } catch (err) {
      // Headers Node will not send (a status outside 100-599, a repeated content-type): nothing
      // was sent; the caller gets the proxy's 502 instead of the proxy throwing (it would exit).
      up.body.discard();
      this.#rescue(ex, new ProxyError('upstream-error', `the upstream's response cannot be sent on over HTTP/2: ${(err as Error).message}`, { cause: err }), answer);
      return;
    }
    answer.status = up.status;
    answer.body = up.body;
    // A caller that leaves mid-body cancels the upstream stream: its slot and the endpoint's load are freed now.
    ex.abortAttempt = up.body.abort;
  }

  #rescue(ex: H2Exchange, err: unknown, answer: Answer): void {
    const e = isProxyError(err) ? err : fromUpstreamError(err, false);
    ex.error = e;
    const stream = ex.h2.stream;
    if (stream.headersSent || stream.closed || stream.destroyed) {
      if (!stream.closed) stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const a = this.#writeError(stream, e, ex.h2.grpc, ex.h2.callersDeadline);
    answer.status = a.status;
    answer.grpcStatus = a.grpcStatus;
  }

  #writeError(stream: ServerHttp2Stream, e: ProxyError, grpc: boolean, callersDeadline = false): { status: number; grpcStatus: string | undefined } {
    const a = errorAnswer(e, grpc, callersDeadline);
    if (stream.closed || stream.destroyed) return a;
    if (a.body === undefined) stream.respond(a.headers, { endStream: true });
    else {
      stream.respond(a.headers);
      stream.end(a.body);
    }
    return a;
  }

  #done(ex: H2Exchange, stream: ServerHttp2Stream, answer: Answer): void {
    if (ex.measured) return;
    ex.measured = true;
    this.#inFlight--;
    const status = answer.status;
    const grpcStatus = answer.body?.grpcStatus ?? answer.grpcStatus;
    // A gRPC answer is a success when its grpc-status is 0 (OK), as Linkerd classifies gRPC.
    const ok = status > 0 && status < 500 && !ex.error && stream.rstCode === NGHTTP2_NO_ERROR && (grpcStatus === undefined || grpcStatus === '0');
    recordExchange(this.#d, ex, status, ok);
    if (this.#inFlight === 0) this.#idle?.();
  }
}

/** OpenTelemetry HTTP semantic conventions for a stream's span (http/listener.ts spanAttributes for HTTP/1). */
function spanAttributes(stream: ServerHttp2Stream, method: string, path: string, host: string, authority: string, direction: string, ua: string | undefined): Record<string, string | number> {
  const socket = stream.session?.socket;
  const a: Record<string, string | number> = {
    'http.request.method': method,
    'url.path': path,
    'url.scheme': (socket as { encrypted?: boolean } | undefined)?.encrypted ? 'https' : 'http',
    'server.address': host,
    'network.protocol.version': '2',
    'network.peer.address': socket?.remoteAddress ?? '',
    'network.peer.port': socket?.remotePort ?? 0,
    'meshlet.direction': direction,
  };
  const port = /:(\d+)$/.exec(authority)?.[1];
  if (port) a['server.port'] = Number(port);
  if (direction === 'inbound') a['client.address'] = socket?.remoteAddress ?? '';
  if (ua) a['user_agent.original'] = ua;
  return a;
}
