// A listener: accepts HTTP/1.1, builds the Exchange, runs the direction's pipeline and writes
// the answer. The one place proxy errors become responses (with `meshlet-proxy-error`), and where
// every request is measured, logged and traced once. Node's parser refuses ambiguous framing.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket, AddressInfo } from 'node:net';
import type { Clock } from '../../api/runtime.ts';
import type { ConfigStore } from '../config/store.ts';
import type { Direction, Exchange, Handler, Peer, UpstreamResponse } from './exchange.ts';
import { forwardRequestHeaders } from './headers.ts';
import { PROXY_ERROR_HEADER, ProxyError, isProxyError, fromUpstreamError } from '../errors.ts';
import { pathOf } from '../policy/route-match.ts';
import type { ProxyMetrics } from '../telemetry/metrics.ts';
import type { AccessLog } from '../telemetry/access-log.ts';
import type { RecentErrors } from '../telemetry/recent-errors.ts';
import { extractParent, propagationHeaders, type Tracing } from '../telemetry/trace.ts';
import type { UpgradeHandler } from './upgrade.ts';

export interface Workload {
  workload: string;
  namespace: string;
  /** This workload's own service name (inbound destination label). */
  service: string;
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
}

const PLAINTEXT: Peer = Object.freeze({ identity: '', tls: false });
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
  readonly server: http.Server;
  readonly #d: ListenerDeps;
  #inFlight = 0;
  #draining = false;
  /** prom-client hashes labels on every labels() call: keep the child. */
  readonly #inFlightGauge: { inc(): void; dec(): void };
  #idle: (() => void) | undefined;
  readonly #sockets = new Set<Socket>();

  constructor(deps: ListenerDeps) {
    this.#d = deps;
    this.#inFlightGauge = deps.metrics.inFlight.labels(deps.direction);
    this.server = http.createServer(
      {
        maxHeaderSize: deps.maxHeaderSize,
        insecureHTTPParser: false,
        // Checked in #onRequest so the 400 carries the proxy's reason header.
        requireHostHeader: false,
        // Bodies may stream for long; the per-try and request timeouts govern waiting for heads.
        requestTimeout: 0,
        headersTimeout: 30_000,
        keepAliveTimeout: 65_000,
        noDelay: true,
      },
      (req, res) => this.#onRequest(req, res),
    );
    this.server.on('clientError', (err: Error & { code?: string }, socket: Socket) => this.#onClientError(err, socket));
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.server.on('connection', (socket: Socket) => {
      const m = deps.metrics;
      m.connections.labels(deps.direction).inc();
      m.connectionsTotal.labels(deps.direction).inc();
      this.#sockets.add(socket);
      socket.once('close', () => {
        m.connections.labels(deps.direction).dec();
        this.#sockets.delete(socket);
      });
    });
  }

  get inFlight(): number {
    return this.#inFlight;
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

  /** Stop accepting; let in-flight requests finish (up to graceMs); then close every connection. */
  async drain(graceMs: number): Promise<void> {
    this.#draining = true;
    this.server.close();
    this.server.closeIdleConnections();
    if (this.#inFlight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs);
        this.#idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    for (const s of this.#sockets) s.destroy();
  }

  #onClientError(err: Error & { code?: string }, socket: Socket): void {
    const d = this.#d;
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const code = tooLarge ? 'header-too-large' : 'bad-request';
    const status = tooLarge ? 431 : 400;
    d.metrics.proxyErrors.labels(d.direction, code).inc();
    d.recentErrors?.record({ direction: d.direction, reason: code, message: `${err.code ?? ''} ${err.message}`, authority: '', service: '', endpoint: '', peer: '', attempts: 0 });
    const body = `meshlet: ${code}: ${err.code ?? ''} ${err.message}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n${PROXY_ERROR_HEADER}: ${code}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  #onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const d = this.#d;
    const cfg = d.store.current;
    if (!cfg) {
      socket.destroy();
      return;
    }
    d.upgrade(req, socket, head, cfg, d.peerOf?.(req.socket) ?? PLAINTEXT);
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const d = this.#d;
    const cfg = d.store.current;
    const startMs = d.clock.now();
    if (!cfg) {
      this.#respondError(req, res, new ProxyError('no-config', 'the proxy has no config yet'), startMs, undefined);
      return;
    }
    const hostHeader = req.headers.host ?? '';
    const { target, authority, host } = targetOf(req.url ?? '/', hostHeader);
    if (host === '') {
      this.#respondError(req, res, new ProxyError('bad-request', 'the request names no host (no Host header, no absolute-form target)'), startMs, undefined);
      return;
    }
    const parent = extractParent(req.headers);
    const usedB3 = parent !== undefined && req.headers['traceparent'] === undefined;
    const path = pathOf(target);
    const span = d.tracing.start(
      `${req.method} ${d.direction}`,
      d.direction === 'inbound' ? 'server' : 'client',
      parent,
      d.tracing.exporting ? spanAttributes(req, path, host, authority, d.direction) : NO_ATTRS,
    );
    const headers = forwardRequestHeaders(req.rawHeaders, true);
    for (const h of propagationHeaders(span, usedB3)) headers.push(h);
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    const ex: Exchange = {
      direction: d.direction,
      req,
      method: req.method ?? 'GET',
      target,
      path,
      authority: host,
      hostHeader: authority,
      headers,
      startMs,
      config: cfg,
      peer: d.peerOf?.(req.socket) ?? PLAINTEXT,
      span,
      usedB3,
      body: hasBody ? { kind: 'stream', source: req } : { kind: 'none' },
      service: undefined,
      route: undefined,
      backend: undefined,
      endpoint: undefined,
      attempts: 0,
      deadline: Infinity,
      clientGone: false,
      abortAttempt: undefined,
    };
    this.#inFlight++;
    this.#inFlightGauge.inc();
    res.once('close', () => {
      if (!res.writableFinished) {
        ex.clientGone = true;
        ex.abortAttempt?.(new ProxyError('upstream-error', 'client closed the connection'));
      }
      this.#done(ex, res, undefined);
    });
    if (!hasBody) req.resume();
    d.handler(ex).then(
      (up) => this.#respond(ex, res, up),
      (err) => this.#rescue(ex, res, err),
    );
  }

  #respond(ex: Exchange, res: ServerResponse, up: UpstreamResponse): void {
    if (res.destroyed) {
      up.body.discard();
      return;
    }
    if (this.#draining) up.headers.push('connection', 'close');
    res.writeHead(up.status, up.statusText, up.headers);
    up.body.pipeTo(res);
  }

  /** The one place a proxy error becomes a response. */
  #rescue(ex: Exchange, res: ServerResponse, err: unknown): void {
    const e = isProxyError(err) ? err : fromUpstreamError(err, false);
    (res as ServerResponse & { meshletError?: ProxyError }).meshletError = e;
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    this.#writeError(res, e);
  }

  #writeError(res: ServerResponse, e: ProxyError): void {
    const body = `meshlet: ${e.code}: ${e.message}\n`;
    res.writeHead(e.status, {
      [PROXY_ERROR_HEADER]: e.code,
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      ...(this.#draining ? { connection: 'close' } : {}),
    });
    res.end(body);
  }

  #respondError(req: IncomingMessage, res: ServerResponse, e: ProxyError, startMs: number, _ex: undefined): void {
    req.resume();
    this.#d.metrics.proxyErrors.labels(this.#d.direction, e.code).inc();
    this.#d.recentErrors?.record({ direction: this.#d.direction, reason: e.code, message: e.message, authority: hostOf(req.headers.host ?? ''), service: '', endpoint: '', peer: '', attempts: 0 });
    this.#writeError(res, e);
    void startMs;
  }

  /** Measure, log and trace a finished request, once. */
  #done(ex: Exchange, res: ServerResponse, _unused: undefined): void {
    const d = this.#d;
    this.#inFlight--;
    this.#inFlightGauge.dec();
    const err = (res as ServerResponse & { meshletError?: ProxyError }).meshletError;
    const status = res.writableFinished || res.headersSent ? res.statusCode : 0;
    const durMs = d.clock.now() - ex.startMs;
    const reason = err?.code ?? (ex.clientGone ? 'client-gone' : '');
    const ok = status > 0 && status < 500 && !err && res.writableFinished;
    if (err) d.metrics.proxyErrors.labels(d.direction, err.code).inc();
    const outbound = d.direction === 'outbound';
    const dst = outbound ? (ex.backend?.name ?? ex.service?.name ?? 'unknown') : d.self.service;
    const dstEp = ex.endpoint;
    if (err) d.recentErrors?.record({ direction: d.direction, reason: err.code, message: err.message, authority: ex.authority, service: dst, endpoint: dstEp?.address ?? '', peer: ex.peer.identity, attempts: ex.attempts });
    d.metrics.observe(
      {
        direction: d.direction,
        src_workload: outbound ? d.self.workload : '',
        src_namespace: outbound ? d.self.namespace : '',
        src_identity: ex.peer.identity,
        dst_service: dst,
        dst_workload: outbound ? (dstEp?.labels['workload'] ?? '') : d.self.workload,
        dst_namespace: outbound ? (dstEp?.labels['namespace'] ?? '') : d.self.namespace,
        status_code: String(status),
        classification: ok ? 'success' : 'failure',
        error_reason: reason,
        tls: outbound ? (dstEp?.identity ? 'true' : 'false') : ex.peer.tls ? 'true' : 'false',
      },
      durMs / 1000,
    );
    if (d.accessLog.enabled) d.accessLog.write({
      ts: new Date().toISOString(),
      direction: d.direction,
      method: ex.method,
      authority: ex.hostHeader,
      path: ex.path,
      status,
      duration_ms: Math.round(durMs * 1000) / 1000,
      upstream: dstEp?.address ?? '',
      attempts: ex.attempts,
      error: reason,
      trace_id: ex.span.traceId,
      peer: ex.peer.identity,
      route: ex.route?.name ?? '',
      dst_service: dst,
    });
    if (d.tracing.exporting) ex.span.end({ status, errorReason: reason, attributes: { 'meshlet.attempts': ex.attempts, 'server.address': ex.authority, 'meshlet.dst_service': dst, 'url.path': ex.path } });
    if (this.#inFlight === 0) this.#idle?.();
  }
}

/** OpenTelemetry HTTP semantic conventions (stable attributes) for a hop's span. */
function spanAttributes(req: IncomingMessage, path: string, host: string, authority: string, direction: string): Record<string, string | number> {
  const a: Record<string, string | number> = {
    'http.request.method': req.method ?? '',
    'url.path': path,
    'url.scheme': (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
    'server.address': host,
    'network.protocol.version': req.httpVersion,
    'network.peer.address': req.socket.remoteAddress ?? '',
    'network.peer.port': req.socket.remotePort ?? 0,
    'meshlet.direction': direction,
  };
  const port = /:(\d+)$/.exec(authority)?.[1];
  if (port) a['server.port'] = Number(port);
  if (direction === 'inbound') a['client.address'] = req.socket.remoteAddress ?? '';
  const ua = req.headers['user-agent'];
  if (ua) a['user_agent.original'] = ua;
  return a;
}
