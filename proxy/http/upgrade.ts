// Upgrade (WebSocket) pass-through: after routing picks an endpoint, the request head is written
// to a fresh upstream connection (mTLS with the endpoint's identity checked when the config names
// one, like every other request). The protocol switches only on the upstream's 101 (RFC 9110
// §7.8): until then every client byte after the request is held; any other answer is forwarded
// with `connection: close`, and both connections close without the held bytes ever going upstream.
import type { Socket } from 'node:net';
import { HeadError, headEnd, parseResponseHead, type RequestHead, type ResponseHead } from '../http1/head.ts';
import { BodyFraming } from '../http1/body-framing.ts';
import { ChunkedScanner } from '../http1/chunked.ts';
import type { RuntimeConfig } from '../config/compile.ts';
import type { Direction, Peer } from './exchange.ts';
import { forwardRequestHeaders, forwardResponseHeaders } from './headers.ts';
import { pathOf } from '../policy/route-match.ts';
import { extractParent, pushPropagationHeaders, type HopSpan, type ParentContext, type Tracing } from '../telemetry/trace.ts';
import { PROXY_ERROR_HEADER, STATUS_TEXT, ProxyError, fromUpstreamError } from '../errors.ts';
import type { Deadline, Deadlines } from './deadlines.ts';

/** How an upgrade ended for the access log and metrics: the status the client got (101 when it switched, 0 when it left first) and the proxy's reason, if any. */
export interface UpgradeOutcome {
  status: number;
  reason: string;
  /** What went wrong, with the reason ('' when nothing did). */
  message: string;
  /** The upstream address dialled ('' when refused before a dial). */
  endpoint: string;
  traceId: string;
  /** Outbound: the service, endpoint and mTLS the request was routed to, as far as routing got (metrics labels). */
  dst?: UpgradeDestination | undefined;
}

/** Where routing sent an outbound upgrade, for its metrics labels (a plain request's come from its Exchange). */
export interface UpgradeDestination {
  service: string;
  /** The endpoint's `workload` and `namespace` labels ('' before an endpoint is picked). */
  workload: string;
  namespace: string;
  /** The endpoint is dialled with mTLS (it names an identity). */
  tls: boolean;
}

/** `done` is called once, when the client has its answer (the 101 included) or has left. */
export type UpgradeHandler = (req: RequestHead, socket: Socket, head: Buffer, cfg: RuntimeConfig, peer: Peer, done: (o: UpgradeOutcome) => void) => void;

/** Where an upgrade goes, or the proxy error that refuses it. */
export type UpgradeTarget =
  | {
      address: string;
      /** Opens the upstream connection (TCP, or mTLS checking the endpoint's identity). */
      dial: (callback: (err: Error | null, socket: Socket | null) => void) => void;
      /** Sent as `meshlet-dst-port` to a meshed endpoint's inbound proxy (inbound/app-port.ts). */
      dstPort?: string;
      /** How long the upstream has, from the request written whole (head and body, if any), to send its response head (else 504 per-try-timeout). */
      responseTimeoutMs: number;
      /** How long the whole exchange has, from the upgrade's arrival to the upstream's response head, a request body included (else 504 request-timeout); 0: no bound. */
      requestTimeoutMs: number;
      dst?: UpgradeDestination;
    }
  | { error: ProxyError; dst?: UpgradeDestination };

const DST_PORT_HEADER = 'meshlet-dst-port';

/** Where the request goes upstream: the origin-form target and the authority sent as Host (listener.ts targetOf). */
export interface UpgradeRequestTarget {
  target: string;
  authority: string;
  /** Lower-case host without port ('' when the request names none). */
  host: string;
}

/** This hop's telemetry: the direction names the span and decides its kind, as for other requests. */
export interface UpgradeTelemetry {
  direction: Direction;
  tracing: Tracing;
}

const NO_ATTRS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** The largest upstream response head read before the switch; larger is a 502. */
export const MAX_UPGRADE_RESPONSE_HEAD = 64 * 1024;

/** How long a connection this proxy has finished answering may keep sending (read and dropped) before it is closed. */
const LINGER_MS = 2000;

const EMPTY = Buffer.alloc(0);

/**
 * The request head for the upstream, built as for any request (http/headers.ts): absolute-form
 * becomes origin-form with the target's authority as Host (RFC 9112 §3.2.2), hop-by-hop fields
 * and those named in Connection are removed, except that the upgrade itself needs `Upgrade` and
 * `Connection: upgrade`; trace context continues with this hop's span; meshlet-dst-port only as
 * this hop sets it; a chunked body stays chunked.
 */
function requestHead(req: RequestHead, to: UpgradeRequestTarget, dstPort: string | undefined, span: HopSpan, parent: ParentContext | undefined): string {
  const fields = forwardRequestHeaders(req, parent?.source === 'traceparent' ? 'replace' : 'restart');
  pushPropagationHeaders(fields, span, parent);
  let h = `${req.method} ${to.target} HTTP/1.1\r\n${fieldLines(fields)}host: ${to.authority}\r\nupgrade: ${req.get('upgrade') ?? ''}\r\nconnection: upgrade\r\n`;
  if (dstPort !== undefined) h += `${DST_PORT_HEADER}: ${dstPort}\r\n`;
  if (req.framing.kind === 'chunked') h += 'transfer-encoding: chunked\r\n';
  return h + '\r\n';
}

/**
 * End a client connection this proxy has answered: what it sends from here on is read and
 * dropped (closing with unread bytes would reset the connection and could lose the answer), and
 * it is closed when the client closes or LINGER_MS after the answer was flushed.
 */
function finish(socket: Socket, last?: string): void {
  if (socket.destroyed) return;
  socket.on('data', () => {});
  socket.resume();
  const linger = () => {
    const t = setTimeout(() => socket.destroy(), LINGER_MS);
    t.unref();
    socket.once('close', () => clearTimeout(t));
  };
  if (last === undefined) socket.end(linger);
  else socket.end(last, 'latin1', linger);
}

/** The proxy's own answer to an upgrade it cannot serve: the status with its standard reason phrase, and the error code. */
function refuse(socket: Socket, e: ProxyError): void {
  const body = `meshlet: ${e.code}: ${e.message}\n`;
  finish(socket, `HTTP/1.1 ${e.status} ${STATUS_TEXT[e.status] ?? 'Error'}\r\n${PROXY_ERROR_HEADER}: ${e.code}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

function fieldLines(fields: readonly string[]): string {
  let s = '';
  for (let i = 0; i < fields.length; i += 2) s += `${fields[i]}: ${fields[i + 1]}\r\n`;
  return s;
}

/** One upgrade request, from the dial to the switch (101) or to the end of the upstream's other answer. */
class PendingUpgrade {
  readonly #req: RequestHead;
  readonly #client: Socket;
  readonly #to: UpgradeRequestTarget;
  readonly #span: HopSpan;
  readonly #parent: ParentContext | undefined;
  #spanEnded = false;
  #upstream: Socket | undefined;
  /** The request's own body still to forward (an upgrade request may carry one), before anything is held. */
  readonly #body: BodyFraming | undefined;
  /** Client bytes after the request: sent upstream only after a 101. */
  readonly #held: Buffer[] = [];
  #clientEnded = false;
  /** Upstream bytes before the final response head was complete. */
  #buf: Buffer = EMPTY;
  readonly #deadlines: Deadlines;
  /**
   * The upstream's time to answer (the target's responseTimeoutMs), armed once the request has
   * gone out whole: at the head when there is no body, else when its last byte is written (as a
   * plain request's per-try timeout, dispatch.ts): a slow body is the client's pace, not a slow upstream.
   */
  #timer: Deadline | undefined;
  #responseTimeoutMs = 0;
  /** The whole exchange's bound (the target's requestTimeoutMs), armed at the start: a client that never finishes its body cannot hold two connections. */
  #wholeTimer: Deadline | undefined;
  /** A final response head came, or the upgrade failed: the wait is over. */
  #settled = false;
  readonly #done: (o: UpgradeOutcome) => void;
  #reported = false;
  #endpoint = '';
  #dst: UpgradeDestination | undefined;

  constructor(req: RequestHead, client: Socket, to: UpgradeRequestTarget, span: HopSpan, parent: ParentContext | undefined, deadlines: Deadlines, done: (o: UpgradeOutcome) => void) {
    this.#done = done;
    this.#deadlines = deadlines;
    this.#req = req;
    this.#client = client;
    this.#to = to;
    this.#span = span;
    this.#parent = parent;
    this.#body = req.framing.kind === 'length' || req.framing.kind === 'chunked' ? new BodyFraming(req.framing) : undefined;
    client.on('error', () => client.destroy());
    client.once('close', () => {
      // Gone while waiting for the answer; after it, the answer or the tunnel ends the span.
      if (!this.#settled) {
        this.#endSpan(0, 'client-gone');
        this.#report(0, 'client-gone');
      }
      this.#settle();
      this.#upstream?.destroy();
    });
  }

  start(t: Exclude<UpgradeTarget, { error: ProxyError }>, rest: Buffer): void {
    const client = this.#client;
    this.#endpoint = t.address;
    this.#dst = t.dst;
    const whole = t.requestTimeoutMs;
    if (whole > 0) this.#wholeTimer = this.#deadlines.after(whole, () => this.#fail(new ProxyError('request-timeout', `no response to the upgrade within ${whole} ms (its request body included)`)));
    t.dial((err, upstream) => {
      if (err || !upstream) return this.#fail(fromUpstreamError(err, false));
      if (client.destroyed) return upstream.destroy();
      this.#upstream = upstream;
      upstream.on('data', this.#onHead);
      upstream.on('error', this.#onUpstreamError);
      upstream.once('close', this.#onUpstreamClose);
      this.#responseTimeoutMs = t.responseTimeoutMs;
      upstream.write(requestHead(this.#req, this.#to, t.dstPort, this.#span, this.#parent), 'latin1');
      if (!this.#body || this.#body.done) this.#armResponseTimeout();
      this.#take(rest);
      if (this.#body && !this.#body.done && !this.#settled) {
        client.on('data', this.#take);
        client.once('end', this.#onClientEnd);
        client.resume();
      }
    });
  }

  /** The request is upstream whole: the upstream's time to answer starts. */
  #armResponseTimeout(): void {
    const ms = this.#responseTimeoutMs;
    // 0: none, as for plain requests (a passed-through host's upgrade: outbound/passthrough.ts).
    if (this.#settled || this.#timer || ms <= 0) return;
    this.#timer = this.#deadlines.after(ms, () => this.#fail(new ProxyError('per-try-timeout', `the upstream sent no response to the upgrade within ${ms} ms`)));
  }

  /** The client finished sending: before its body's end, the request is cut and the client taken as gone (as for plain requests, http1/server.ts). */
  readonly #onClientEnd = (): void => {
    this.#clientEnded = true;
    if (!this.#settled && this.#body && !this.#body.done) this.#client.destroy();
  };

  /** Client bytes while waiting: the request body goes upstream as it comes; what follows it is held (reading stops). */
  readonly #take = (chunk: Buffer): void => {
    if (this.#settled) return;
    const body = this.#body;
    if (body && !body.done) {
      let end: number;
      try {
        end = body.end(chunk);
      } catch (e) {
        return this.#fail(new ProxyError('bad-request', `malformed chunked body: ${(e as Error).message}`));
      }
      const part = end === -1 ? chunk : chunk.subarray(0, end);
      if (part.length > 0 && !this.#upstream!.write(part)) {
        this.#client.pause();
        this.#upstream!.once('drain', () => {
          if (!this.#settled && !body.done) this.#client.resume();
        });
      }
      if (end === -1) return;
      this.#armResponseTimeout();
      chunk = chunk.subarray(end);
    }
    this.#stopReading();
    if (chunk.length > 0) this.#held.push(chunk);
  };

  #stopReading(): void {
    this.#client.pause();
    this.#client.off('data', this.#take);
  }

  readonly #onUpstreamError = (err: Error): void => this.#fail(fromUpstreamError(err, false));
  readonly #onUpstreamClose = (): void => this.#fail(new ProxyError('upstream-reset', 'the upstream closed the connection before answering the upgrade'));

  #settle(): void {
    this.#settled = true;
    if (this.#timer) this.#deadlines.cancel(this.#timer);
    if (this.#wholeTimer) this.#deadlines.cancel(this.#wholeTimer);
    this.#timer = undefined;
    this.#wholeTimer = undefined;
  }

  /** The upgrade failed before any answer reached the client: the proxy answers with the error. */
  #fail(e: ProxyError): void {
    if (this.#settled) return;
    this.#settle();
    this.#stopReading();
    this.#upstream?.destroy();
    this.#endSpan(e.status, e.code);
    this.#report(e.status, e.code, e.message);
    refuse(this.#client, e);
  }

  /** Once: the client has its answer (101 or other), the proxy's error, or has left. */
  #report(status: number, reason: string, message = ''): void {
    if (this.#reported) return;
    this.#reported = true;
    this.#done({ status, reason, message, endpoint: this.#endpoint, traceId: this.#span.traceId, dst: this.#dst });
  }

  /** Once: at the proxy's error, at the end of a non-101 answer, or when the tunnel closes (101). */
  #endSpan(status: number, errorReason: string): void {
    if (this.#spanEnded) return;
    this.#spanEnded = true;
    this.#span.end({ status, errorReason, attributes: { 'server.address': this.#to.host, 'url.path': pathOf(this.#to.target) } });
  }

  /** Upstream bytes until the final response head: 1xx other than 101 are skipped. */
  readonly #onHead = (chunk: Buffer): void => {
    if (this.#settled) return;
    let buf = this.#buf.length > 0 ? Buffer.concat([this.#buf, chunk]) : chunk;
    for (;;) {
      const end = headEnd(buf);
      if ((end === -1 ? buf.length : end + 4) > MAX_UPGRADE_RESPONSE_HEAD) {
        return this.#fail(new ProxyError('upstream-error', `the upstream's response head is larger than ${MAX_UPGRADE_RESPONSE_HEAD} bytes`));
      }
      if (end === -1) {
        this.#buf = buf;
        return;
      }
      let res: ResponseHead;
      try {
        res = parseResponseHead(buf.toString('latin1', 0, end), this.#req.method);
      } catch (e) {
        if (e instanceof HeadError) return this.#fail(new ProxyError('upstream-error', `the upstream sent a malformed response head: ${e.message}`));
        throw e;
      }
      buf = buf.subarray(end + 4);
      if (res.status === 101) return this.#switch(res, buf);
      if (res.status >= 200) return this.#answer(res, buf);
    }
  };

  /** Stop reading the upstream for the head: from here on its bytes are the tunnel's or the answer's body. */
  #detachUpstream(): Socket {
    const upstream = this.#upstream!;
    this.#settle();
    this.#stopReading();
    this.#buf = EMPTY;
    upstream.pause();
    upstream.off('data', this.#onHead);
    upstream.off('error', this.#onUpstreamError);
    upstream.off('close', this.#onUpstreamClose);
    return upstream;
  }

  /** 101: the 101 head and what followed it to the client, the held bytes upstream, then bytes flow both ways untouched. */
  #switch(res: ResponseHead, rest: Buffer): void {
    const upstream = this.#detachUpstream();
    const client = this.#client;
    let head = `HTTP/1.1 101 ${res.reason}\r\n${fieldLines(forwardResponseHeaders(res))}`;
    const proto = res.get('upgrade');
    if (proto !== undefined) head += `upgrade: ${proto}\r\n`;
    client.write(`${head}connection: upgrade\r\n\r\n`, 'latin1');
    this.#report(101, '');
    if (rest.length > 0) client.write(rest);
    for (const b of this.#held) upstream.write(b);
    this.#held.length = 0;
    if (this.#clientEnded) upstream.end();
    const close = () => {
      upstream.destroy();
      client.destroy();
      this.#endSpan(101, '');
    };
    upstream.once('error', close);
    upstream.once('close', close);
    upstream.pipe(client);
    if (!this.#clientEnded) client.pipe(upstream);
  }

  /**
   * Any other final answer: forwarded with `connection: close` and its body followed to its end
   * (until the upstream closes when it has no length); then both connections close.
   */
  #answer(res: ResponseHead, rest: Buffer): void {
    const upstream = this.#detachUpstream();
    const client = this.#client;
    this.#held.length = 0;
    const framing = res.framing;
    // An HTTP/1.0 client cannot read chunked: decode it (the connection's close ends the body).
    const decode = framing.kind === 'chunked' && this.#req.minor === 0;
    const te = framing.kind === 'chunked' && !decode ? 'transfer-encoding: chunked\r\n' : '';
    client.write(`HTTP/1.1 ${res.status} ${res.reason}\r\n${fieldLines(forwardResponseHeaders(res))}${te}connection: close\r\n\r\n`, 'latin1');
    this.#endSpan(res.status, '');
    this.#report(res.status, '');
    const done = () => {
      upstream.removeAllListeners('data');
      upstream.destroy();
      finish(client);
    };
    if (framing.kind === 'none') return done();
    const scanner = decode ? new ChunkedScanner((b, s, e) => client.write(b.subarray(s, e))) : undefined;
    const body = scanner ? undefined : new BodyFraming(framing);
    const onBody = (chunk: Buffer): void => {
      let end: number;
      try {
        end = scanner ? scanner.scan(chunk) : body!.end(chunk);
      } catch {
        // Malformed chunked framing after the head went out: the client can only see a cut body.
        upstream.destroy();
        client.destroy();
        return;
      }
      if (!scanner) {
        const part = end === -1 ? chunk : chunk.subarray(0, end);
        if (part.length > 0 && !client.write(part)) {
          upstream.pause();
          client.once('drain', () => upstream.resume());
        }
      }
      if (end !== -1) done();
    };
    upstream.on('data', onBody);
    upstream.on('error', () => client.destroy());
    // The upstream closed: the end of an until-close body; for a counted or chunked one, a cut.
    upstream.once('end', () => (framing.kind === 'close' ? done() : client.destroy()));
    upstream.once('close', () => {
      if (!client.writableEnded) client.destroy();
    });
    if (rest.length > 0) onBody(rest);
    if (!upstream.destroyed) upstream.resume();
  }
}

/** The span's attributes at its start: like other requests' (listener.ts spanAttributes), server.port when the authority names one. */
function upgradeSpanAttributes(req: RequestHead, to: UpgradeRequestTarget, direction: string): Record<string, string | number> {
  const a: Record<string, string | number> = { 'http.request.method': req.method, 'url.path': pathOf(to.target), 'server.address': to.host, 'meshlet.direction': direction, 'meshlet.upgrade': req.get('upgrade') ?? '' };
  const port = /:(\d+)$/.exec(to.authority)?.[1];
  if (port) a['server.port'] = Number(port);
  return a;
}

/**
 * `targetOf` gives the origin-form target and authority (listener.ts targetOf); each upgrade gets
 * this hop's span, continuing the caller's trace context as other requests do (listener.ts). The
 * wait for the upstream's answer is armed on `deadlines`, the request path's timers (on its clock).
 */
export function makeUpgradeHandler(pick: (req: RequestHead, cfg: RuntimeConfig, peer: Peer) => UpgradeTarget, targetOf: (req: RequestHead) => UpgradeRequestTarget, telemetry: UpgradeTelemetry, deadlines: Deadlines): UpgradeHandler {
  const { direction, tracing } = telemetry;
  return (req, socket, head, cfg, peer, done) => {
    const to = targetOf(req);
    const parent = extractParent(req);
    const attrs = tracing.exporting ? upgradeSpanAttributes(req, to, direction) : NO_ATTRS;
    const span = tracing.start(`${req.method} ${direction}`, direction === 'inbound' ? 'server' : 'client', parent, attrs);
    const t = to.host === '' ? { error: new ProxyError('bad-request', 'the request names no host (no Host header, no absolute-form target)') } : pick(req, cfg, peer);
    if ('error' in t) {
      socket.on('error', () => socket.destroy());
      span.end({ status: t.error.status, errorReason: t.error.code, attributes: { 'server.address': to.host, 'url.path': pathOf(to.target) } });
      done({ status: t.error.status, reason: t.error.code, message: t.error.message, endpoint: '', traceId: span.traceId, dst: t.dst });
      return refuse(socket, t.error);
    }
    new PendingUpgrade(req, socket, to, span, parent, deadlines, done).start(t, head);
  };
}
