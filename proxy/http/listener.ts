// A listener: accepts HTTP/1.1 connections (http1/server.ts), builds the Exchange, runs the
// direction's pipeline and writes the answer; a connection that opens with the HTTP/2 preface is
// handed to the HTTP/2 listener (http2/server.ts). The one place HTTP/1 proxy errors become
// responses (with `meshlet-proxy-error`), and where every HTTP/1 request is measured, logged and
// traced once (http/record.ts).
import net, { type Socket, type AddressInfo } from 'node:net';
import type { Clock } from '../../api/runtime.ts';
import type { ConfigStore } from '../config/store.ts';
import type { Direction, Exchange, Handler, Peer, UpstreamResponse } from './exchange.ts';
import { forwardRequestHeaders } from './headers.ts';
import { ERROR_STATUS, PROXY_ERROR_HEADER, STATUS_TEXT, ProxyError, isProxyError, fromUpstreamError, type ProxyErrorCode } from '../errors.ts';
import { pathOf } from '../policy/route-match.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { RecentErrors } from '../telemetry/recent-errors.ts';
import { extractParent, pushPropagationHeaders, type Tracing } from '../telemetry/trace.ts';
import type { UpgradeHandler } from './upgrade.ts';
import { PLAINTEXT, recordExchange, recordOther, type OtherRequest, type Workload } from './record.ts';
import { ServerConnection, type HeadProblem, type ServerHooks, type ServerLimits, type ServerRequest } from '../http1/server.ts';
import type { RequestHead } from '../http1/head.ts';
import type { Foreign } from '../http1/first-bytes.ts';
import { unsupportedProtocolAnswer, unsupportedProtocolMessage } from './unsupported-protocol.ts';

export type { Workload } from './record.ts';

/** Where a connection that opens with the HTTP/2 preface goes (http2/server.ts). */
export interface Http2Acceptor {
  /** `read`: the bytes already read of the connection (the preface, at least its first line). */
  accept(socket: Socket, peer: Peer, read?: Buffer): void;
}

export interface ListenerDeps {
  direction: Direction;
  clock: Clock;
  store: ConfigStore;
  handler: Handler;
  upgrade: UpgradeHandler;
  metrics: ProxyMetrics;
  accessLog: AccessLog;
  tracing: Tracing;
  self: Workload;
  /** Largest request head accepted; larger gets 431. */
  maxHeaderSize: number;
  /** Peer of a connection (mTLS identity); plaintext listeners return the empty peer. */
  peerOf?: (socket: Socket) => Peer;
  /** The last proxy-made errors (admin /errors); written only when the proxy answers an error. */
  recentErrors?: RecentErrors;
  /** Serves connections that open with the HTTP/2 preface; absent: they get GOAWAY (HTTP_1_1_REQUIRED). */
  http2?: Http2Acceptor;
}

const NO_ATTRS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** Split a Host / authority into lower-case host without port. */
export function hostOf(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return authority.slice(0, end + 1).toLowerCase();
  }
  const colon = authority.indexOf(':');
  return (colon === -1 ? authority : authority.slice(0, colon)).toLowerCase();
}

/** Request-target and authority of origin-form or absolute-form requests. */
export function targetOf(url: string, hostHeader: string): { target: string; authority: string; host: string } {
  if (url.charCodeAt(0) === 47 /* / */) return { target: url, authority: hostHeader, host: hostOf(hostHeader) };
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)([^#]*)/.exec(url);
  if (m) {
    const authority = m[1]!.replace(/^[^@]*@/, '');
    const rest = m[2] || '/';
    return { target: rest.startsWith('/') ? rest : `/${rest}`, authority, host: hostOf(authority) };
  }
  return { target: url, authority: hostHeader, host: hostOf(hostHeader) };
}


export class Listener {
  /** Accepts plaintext connections (outbound); the inbound side hands connections to accept(). */
  readonly server: net.Server;
  readonly #d: ListenerDeps;
  #inFlight = 0;
  /** Upgrade requests, from their head until the client's connection closes (the tunnel's end, after a 101). Not in the in-flight gauge: drain waits for them too. */
  #upgrades = 0;
  #draining = false;
  /** prom-client hashes labels on every labels() call: keep the children (per connection, not per request). */
  readonly #openGauge: { inc(): void; dec(): void };
  readonly #acceptedCounter: { inc(): void };
  #idle: (() => void) | undefined;
  readonly #conns = new Set<ServerConnection>();
  readonly #hooks: ServerHooks;
  readonly #limits: ServerLimits;
  readonly #sweeper: NodeJS.Timeout;

  constructor(deps: ListenerDeps) {
    this.#d = deps;
    deps.metrics.inFlightOf(deps.direction, () => this.#inFlight);
    this.#openGauge = deps.metrics.connections.labels(deps.direction);
    this.#acceptedCounter = deps.metrics.connectionsTotal.labels(deps.direction);
    this.#limits = { now: () => deps.clock.now(), maxHeaderSize: deps.maxHeaderSize, headersTimeoutMs: 30_000, keepAliveTimeoutMs: 65_000 };
    this.#hooks = {
      request: (req) => this.#onRequest(req),
      upgrade: (head, socket, rest) => this.#onUpgrade(head, socket, rest),
      refuse: (problem, message) => this.#refusal(problem, message),
      foreign: (what) => this.#foreignRefusal(what),
    };
    const h2 = deps.http2;
    if (h2) {
      // The connection leaves this listener (its drain and sweeps): the HTTP/2 server owns it now.
      this.#hooks.http2 = (conn, read) => {
        this.#conns.delete(conn);
        h2.accept(conn.socket, deps.peerOf?.(conn.socket) ?? PLAINTEXT, read);
      };
    }
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => this.accept(socket));
    // One timer for every connection's head and idle timeouts.
    this.#sweeper = setInterval(() => {
      const now = deps.clock.now();
      for (const c of this.#conns) c.sweep(now);
    }, 1000);
    this.#sweeper.unref();
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Serve HTTP/1.1 on an accepted connection (plaintext, or TLS already handshaken). */
  accept(socket: Socket): void {
    this.#openGauge.inc();
    this.#acceptedCounter.inc();
    socket.setNoDelay(true);
    const conn = new ServerConnection(socket, this.#hooks, this.#limits);
    this.#conns.add(conn);
    socket.once('close', () => {
      this.#openGauge.dec();
      this.#conns.delete(conn);
    });
    if (this.#draining) conn.drain();
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * Stop accepting; let in-flight requests and open upgrade tunnels (WebSocket) finish, up to
   * graceMs; then close every connection, tunnels included.
   */
  async drain(graceMs: number): Promise<void> {
    this.#draining = true;
    this.server.close();
    for (const c of this.#conns) c.drain();
    if (this.#inFlight + this.#upgrades > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs);
        this.#idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    clearInterval(this.#sweeper);
    for (const c of this.#conns) c.socket.destroy();
  }

  /** The answer to a head that cannot be served (counted and logged like any proxy error). */
  #refusal(problem: HeadProblem, message: string): string {
    const status = ERROR_STATUS[problem];
    this.#recordRefusal(problem, message, '', status);
    return refusalResponse(problem, status, message);
  }

  /**
   * The answer to a connection that is not HTTP/1, refused at its first bytes: recorded as
   * `unsupported-protocol` with the TLS server name as its authority; status 0 where no HTTP
   * answer goes back (TLS gets an alert, HTTP/2 a GOAWAY).
   */
  #foreignRefusal(what: Foreign): Buffer {
    const code = 'unsupported-protocol';
    const message = unsupportedProtocolMessage(what, this.#d.direction);
    const status = what.protocol === 'unknown' ? ERROR_STATUS[code] : 0;
    this.#recordRefusal(code, message, what.protocol === 'tls' ? (what.serverName ?? '') : '', status);
    return unsupportedProtocolAnswer(what, () => refusalResponse(code, ERROR_STATUS[code], message));
  }

  /** A refusal before any request: one count, one /errors entry, one access-log line. */
  #recordRefusal(code: ProxyErrorCode, message: string, authority: string, status: number): void {
    const d = this.#d;
    d.metrics.proxyErrors.labels(d.direction, code).inc();
    d.recentErrors?.record({ direction: d.direction, reason: code, message, authority, service: '', endpoint: '', peer: '', attempts: 0 });
    this.#measureOther({ method: '', authority, path: '', status, code, durMs: 0 });
  }

  /**
   * A request measured without an exchange: answered before routing (a head refused, no config,
   * no host), or an upgrade (measured when the client has its answer). One access-log line and
   * one count in the request metrics, like every other request.
   */
  #measureOther(o: OtherRequest): void {
    recordOther(this.#d, o);
  }

  #onUpgrade(head: RequestHead, socket: Socket, rest: Buffer): void {
    const d = this.#d;
    const cfg = d.store.current;
    if (!cfg) {
      socket.destroy();
      return;
    }
    const peer = d.peerOf?.(socket) ?? PLAINTEXT;
    const startMs = d.clock.now();
    this.#upgrades++;
    socket.once('close', () => {
      this.#upgrades--;
      this.#idleNow();
    });
    d.upgrade(head, socket, rest, cfg, peer, (o) => {
      const code = o.reason;
      if (code && code !== 'client-gone') {
        d.metrics.proxyErrors.labels(d.direction, code).inc();
        d.recentErrors?.record({ direction: d.direction, reason: code, message: o.message, authority: hostOf(head.host), service: o.dst?.service ?? '', endpoint: o.endpoint, peer: peer.identity, attempts: o.endpoint ? 1 : 0 });
      }
      this.#measureOther({ method: head.method, authority: head.host, path: pathOf(targetOf(head.target, head.host).target), status: o.status, code, durMs: d.clock.now() - startMs, upstream: o.endpoint, traceId: o.traceId, peer, dst: o.dst });
    });
  }

  #onRequest(req: ServerRequest): void {
    const d = this.#d;
    const cfg = d.store.current;
    const startMs = d.clock.now();
    const head = req.head;
    if (!cfg) {
      this.#respondError(req, new ProxyError('no-config', 'the proxy has no config yet'), startMs);
      return;
    }
    const { target, authority, host } = targetOf(head.target, head.host);
    if (host === '') {
      this.#respondError(req, new ProxyError('bad-request', 'the request names no host (no Host header, no absolute-form target)'), startMs);
      return;
    }
    const parent = extractParent(head);
    const path = pathOf(target);
    const span = d.tracing.start(
      `${head.method} ${d.direction}`,
      d.direction === 'inbound' ? 'server' : 'client',
      parent,
      d.tracing.exporting ? spanAttributes(req, path, host, authority, d.direction) : NO_ATTRS,
    );
    const headers = forwardRequestHeaders(head, parent?.source === 'traceparent' ? 'replace' : 'restart');
    pushPropagationHeaders(headers, span, parent);
    const ex: Exchange = {
      direction: d.direction,
      head,
      method: head.method,
      target,
      path,
      authority: host,
      hostHeader: authority,
      headers,
      startMs,
      config: cfg,
      peer: d.peerOf?.(req.socket) ?? PLAINTEXT,
      span,
      body: req.body ? { kind: 'stream', source: req.body } : { kind: 'none' },
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
    };
    this.#inFlight++;
    req.onDone((how, err) => {
      if (how === 'client-gone') {
        ex.clientGone = true;
        ex.abortAttempt?.(new ProxyError('upstream-error', 'client closed the connection'));
      } else if (how === 'destroyed' && err && !ex.error) ex.error = fromUpstreamError(err, true);
      this.#done(ex, req);
    });
    d.handler(ex).then(
      (up) => this.#respond(ex, req, up),
      (err) => this.#rescue(ex, req, err),
    );
  }

  #respond(ex: Exchange, req: ServerRequest, up: UpstreamResponse): void {
    if (req.destroyed) {
      up.body.discard();
      return;
    }
    if (this.#draining) up.headers.push('connection', 'close');
    const whole = up.body.takeWhole();
    if (whole) {
      req.writeWhole(up.status, up.statusText, up.headers, up.framing, whole);
      return;
    }
    req.writeHead(up.status, up.statusText, up.headers, up.framing);
    // A client that leaves mid-body stops the upstream too: its connection and the backend's
    // concurrency slot are freed now, not when a long (or endless) body would have ended.
    ex.abortAttempt = up.body.abort;
    up.body.pipeTo(req);
  }

  /** The one place a proxy error becomes a response. */
  #rescue(ex: Exchange, req: ServerRequest, err: unknown): void {
    const e = isProxyError(err) ? err : fromUpstreamError(err, false);
    ex.error = e;
    if (req.headersSent || req.destroyed) {
      req.destroy();
      return;
    }
    this.#writeError(req, e);
  }

  #writeError(req: ServerRequest, e: ProxyError): void {
    const headers = [PROXY_ERROR_HEADER, e.code, 'content-type', 'text/plain; charset=utf-8'];
    if (this.#draining) headers.push('connection', 'close');
    req.respond(e.status, STATUS_TEXT[e.status] ?? 'Error', headers, `meshlet: ${e.code}: ${e.message}\n`);
  }

  #respondError(req: ServerRequest, e: ProxyError, startMs: number): void {
    const d = this.#d;
    d.metrics.proxyErrors.labels(d.direction, e.code).inc();
    d.recentErrors?.record({ direction: d.direction, reason: e.code, message: e.message, authority: hostOf(req.head.host), service: '', endpoint: '', peer: '', attempts: 0 });
    this.#writeError(req, e);
    this.#measureOther({ method: req.head.method, authority: req.head.host, path: pathOf(req.head.target), status: e.status, code: e.code, durMs: d.clock.now() - startMs });
  }


  /** Measure, log and trace a finished request, once. */
  #done(ex: Exchange, req: ServerRequest): void {
    if (ex.measured) return;
    ex.measured = true;
    const d = this.#d;
    this.#inFlight--;
    const status = req.headersSent ? req.status : 0;
    recordExchange(d, ex, status, status > 0 && status < 500 && !ex.error && req.finished);
    this.#idleNow();
  }

  /** Ends a drain's wait once no request is in flight and no upgrade is open. */
  #idleNow(): void {
    if (this.#inFlight === 0 && this.#upgrades === 0) this.#idle?.();
  }
}

/** The proxy's own answer to a request it cannot read, closing the connection. */
function refusalResponse(code: ProxyErrorCode, status: number, message: string): string {
  const body = `meshlet: ${code}: ${message}\n`;
  return `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\n${PROXY_ERROR_HEADER}: ${code}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

/** OpenTelemetry HTTP semantic conventions (stable attributes) for a hop's span. */
function spanAttributes(req: ServerRequest, path: string, host: string, authority: string, direction: string): Record<string, string | number> {
  const a: Record<string, string | number> = {
    'http.request.method': req.head.method,
    'url.path': path,
    'url.scheme': (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
    'server.address': host,
    'network.protocol.version': req.head.minor === 1 ? '1.1' : '1.0',
    'network.peer.address': req.socket.remoteAddress ?? '',
    'network.peer.port': req.socket.remotePort ?? 0,
    'meshlet.direction': direction,
  };
  const port = /:(\d+)$/.exec(authority)?.[1];
  if (port) a['server.port'] = Number(port);
  if (direction === 'inbound') a['client.address'] = req.socket.remoteAddress ?? '';
  const ua = req.head.get('user-agent');
  if (ua) a['user_agent.original'] = ua;
  return a;
}
