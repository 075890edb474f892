// The client side of HTTP/1.1: a keep-alive pool of connections to one endpoint, one request at
// a time per connection. A request's head (and small body) go out in one write; the response
// head is parsed strictly (head.ts) and its body handed on as framed, with flow control.
import type { Socket } from 'node:net';
import type { BodySource } from './body.ts';
import { BodyFraming } from './body-framing.ts';
import { HeadError, headEnd, hasBareLfLines, parseResponseHead, type ResponseHead } from './head.ts';

/** Opens a connection to the pool's endpoint (TCP, or mTLS with the peer's identity checked). */
export type Dial = (callback: (err: Error | null, socket: Socket | null) => void) => void;

export interface ClientRequest {
  method: string;
  /** The whole request head: request line, fields (framing ones included) and the empty line. */
  head: string;
  /** The body: bytes known up front, a streamed source, or none. */
  body: Buffer | BodySource | undefined;
  /** Called once a streamed body has been written whole. */
  onSent?: () => void;
}

export interface ResponseHandler {
  /** The final response head (1xx interim responses are skipped). */
  head(res: ResponseHead): void;
  /** Body bytes as the upstream framed them; return false to pause until `resume()`. */
  data(chunk: Buffer): boolean;
  end(): void;
  /** The attempt failed, before or after the head. */
  error(err: Error): void;
}

export interface PoolOptions {
  /** Monotonic milliseconds. */
  now(): number;
  /** How long an idle connection is kept when the server does not say (`Keep-Alive: timeout=N`). */
  keepAliveTimeoutMs: number;
  /** Upper bound on what a server's keep-alive hint may ask for. */
  keepAliveMaxTimeoutMs: number;
  /** Idle connections kept; more are closed as they go idle. */
  maxIdle?: number;
  /**
   * A connection carrying a request that stays silent this long (no byte either way) is given up:
   * a stalled response body, or a head that never comes where no per-try timeout is set.
   */
  silenceTimeoutMs: number;
}

/** Why an attempt failed at the socket level; `code` is what errors.ts classifies. */
export class UpstreamSocketError extends Error {
  readonly code: string;
  constructor(code: string, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'UpstreamSocketError';
    this.code = code;
  }
}


/** Largest response head accepted from an upstream. */
const MAX_RESPONSE_HEAD = 64 * 1024;

/** Attempt phases. */
const A = { CONNECTING: 0, HEAD: 1, BODY: 2, DONE: 3 } as const;

/** One request on one connection. */
export class ClientAttempt {
  readonly #req: ClientRequest;
  readonly #handler: ResponseHandler;
  #conn: ClientConnection | undefined;
  #phase: number = A.CONNECTING;
  #aborted: Error | undefined;
  /** The request (head and body) is all written: the connection may be reused. */
  #sent = false;

  constructor(req: ClientRequest, handler: ResponseHandler) {
    this.#req = req;
    this.#handler = handler;
  }

  get method(): string {
    return this.#req.method;
  }

  /** Give up: the connection is closed (it may be mid-message) and the handler told, once. */
  abort(err: Error): void {
    if (this.#phase === A.DONE) return;
    if (this.#phase === A.CONNECTING) {
      this.#aborted = err;
      this.#fail(err);
      return;
    }
    const conn = this.#conn;
    this.#fail(err);
    conn?.destroy();
  }

  /** Read on after `data` returned false. */
  resume(): void {
    if (this.#phase === A.BODY) this.#conn?.socket.resume();
  }

  // ---- for the connection ----

  /** Aborted before a connection was ready (the pool keeps the connection for the next request). */
  get aborted(): boolean {
    return this.#aborted !== undefined;
  }

  /** The connection is ready: write the request. */
  attached(conn: ClientConnection): void {
    this.#conn = conn;
    this.#phase = A.HEAD;
    const s = conn.socket;
    const body = this.#req.body;
    if (body === undefined || Buffer.isBuffer(body)) {
      // One write of one string (latin1 maps bytes 1:1): head, and a small body with it.
      if (body === undefined || body.length === 0) s.write(this.#req.head, 'latin1');
      else if (body.length <= 16 * 1024) s.write(this.#req.head + body.toString('latin1'), 'latin1');
      else {
        s.cork();
        s.write(this.#req.head, 'latin1');
        s.write(body);
        s.uncork();
      }
      this.#sent = true;
      return;
    }
    s.write(this.#req.head, 'latin1');
    body.start({
      data: (chunk) => {
        if (this.#phase === A.DONE || s.destroyed) return true;
        conn.active = true; // a slow upload is not a silent upstream
        if (s.write(chunk)) return true;
        s.once('drain', () => body.resume());
        return false;
      },
      end: () => {
        this.#sent = true;
        this.#req.onSent?.();
      },
      error: (err) => this.abort(new UpstreamSocketError('MESHLET_CLIENT_BODY', `the request body failed: ${err.message}`, err)),
    });
  }

  /** The response head arrived. */
  responded(res: ResponseHead): void {
    this.#phase = A.BODY;
    this.#handler.head(res);
  }

  data(chunk: Buffer): boolean {
    if (this.#phase !== A.BODY) return true;
    return this.#handler.data(chunk);
  }

  /** The response ended; whether the connection may carry another request. */
  completed(reusable: boolean): boolean {
    if (this.#phase === A.DONE) return false;
    this.#phase = A.DONE;
    this.#handler.end();
    return reusable && this.#sent;
  }

  /** The connection failed (or could not be made). */
  failed(err: Error): void {
    this.#fail(err);
  }

  #fail(err: Error): void {
    if (this.#phase === A.DONE) return;
    this.#phase = A.DONE;
    this.#handler.error(err);
  }
}

/** Connection states. */
const C = { IDLE: 0, HEAD: 1, BODY: 2, CLOSED: 3 } as const;

class ClientConnection {
  readonly socket: Socket;
  readonly #pool: Pool;
  #state: number = C.IDLE;
  #attempt: ClientAttempt | undefined;
  #buf: Buffer | undefined;
  #res: ResponseHead | undefined;
  /** Where the current response body ends. */
  #framing: BodyFraming | undefined;
  #error: Error | undefined;
  /** Idle until (pool clock); set when released. */
  expires = 0;
  /** Bytes moved since the pool's last silence check (a flag, not a clock read per read). */
  active = true;
  /** Silence checks in a row that found nothing moved. */
  quiet = 0;

  constructor(pool: Pool, socket: Socket) {
    this.#pool = pool;
    this.socket = socket;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', (err: Error) => {
      this.#error = err;
    });
    socket.on('close', this.#onClose);
  }

  get idle(): boolean {
    return this.#state === C.IDLE;
  }

  /** Carrying a request (from its head written to its response's end). */
  get busy(): boolean {
    return this.#state === C.HEAD || this.#state === C.BODY;
  }

  start(attempt: ClientAttempt): void {
    this.#attempt = attempt;
    this.active = true;
    this.quiet = 0;
    this.#state = C.HEAD;
    this.#res = undefined;
    attempt.attached(this);
  }

  destroy(): void {
    if (this.#state === C.CLOSED) return;
    this.#state = C.CLOSED;
    this.#attempt = undefined;
    this.#pool.forget(this);
    this.socket.destroy();
  }

  #onData = (chunk: Buffer): void => {
    this.active = true;
    if (this.#state === C.HEAD) {
      this.#buf = this.#buf === undefined ? chunk : Buffer.concat([this.#buf, chunk]);
      this.#parseHead();
    } else if (this.#state === C.BODY) this.#body(chunk);
    else this.destroy(); // bytes nobody asked for: the connection cannot be trusted
  };

  #parseHead(): void {
    const attempt = this.#attempt!;
    for (;;) {
      const buf = this.#buf!;
      const end = headEnd(buf);
      if (end === -1 ? buf.length > MAX_RESPONSE_HEAD : end + 4 > MAX_RESPONSE_HEAD) {
        return this.#failed(new UpstreamSocketError('MESHLET_BAD_RESPONSE', `the upstream's response head is larger than ${MAX_RESPONSE_HEAD} bytes`));
      }
      if (end === -1) {
        // Lines ended by a bare LF: the CRLF CRLF this waits for would never come.
        if (hasBareLfLines(buf)) this.#failed(new UpstreamSocketError('MESHLET_BAD_RESPONSE', 'the upstream sent a malformed response: a bare LF in the head'));
        return;
      }
      let res: ResponseHead;
      try {
        res = parseResponseHead(buf.toString('latin1', 0, end), attempt.method);
      } catch (e) {
        if (e instanceof HeadError) return this.#failed(new UpstreamSocketError('MESHLET_BAD_RESPONSE', `the upstream sent a malformed response: ${e.message}`));
        throw e;
      }
      const rest = buf.subarray(end + 4);
      this.#buf = rest.length > 0 ? rest : undefined;
      if (res.status < 200) {
        // 100 Continue, 103 Early Hints: interim, not forwarded. 101 only answers an upgrade, which never comes here.
        if (res.status === 101) return this.#failed(new UpstreamSocketError('MESHLET_BAD_RESPONSE', 'the upstream switched protocols without being asked to'));
        if (this.#buf === undefined) return;
        continue;
      }
      this.#res = res;
      this.#framing = new BodyFraming(res.framing);
      this.#state = C.BODY;
      attempt.responded(res);
      if (this.#state !== C.BODY) return; // aborted from the handler
      const more = this.#buf;
      this.#buf = undefined;
      // A response without a body (HEAD, 204, 304, length 0) followed by bytes: they are not the
      // next response (RFC 9112 §6.3), and the connection is not reused.
      if (this.#framing.done) return this.#complete(more);
      if (more !== undefined) this.#body(more);
      return;
    }
  }

  #body(chunk: Buffer): void {
    const attempt = this.#attempt!;
    let end: number;
    try {
      end = this.#framing!.end(chunk);
    } catch (e) {
      return this.#failed(new UpstreamSocketError('MESHLET_BAD_RESPONSE', `the upstream sent a malformed chunked body: ${(e as Error).message}`));
    }
    const complete = end !== -1;
    const whole = end === -1 || end === chunk.length;
    const take = whole ? chunk : chunk.subarray(0, end);
    const rest = whole ? undefined : chunk.subarray(end);
    if (take.length > 0 && !attempt.data(take)) this.socket.pause();
    if (this.#state !== C.BODY) return;
    if (complete) this.#complete(rest);
  }

  #complete(rest: Buffer | undefined): void {
    const attempt = this.#attempt!;
    const res = this.#res!;
    this.#attempt = undefined;
    this.#res = undefined;
    this.#framing = undefined;
    // Idle from here: any byte the upstream sends before the next request destroys the connection.
    this.#state = C.IDLE;
    const reusable = attempt.completed(res.keepAlive && rest === undefined && res.framing.kind !== 'close');
    if (this.#state !== C.IDLE) return;
    if (!reusable) return this.destroy();
    this.socket.resume();
    this.#pool.release(this, res.keepAliveTimeout);
  }

  /** The pool found the connection silent for its whole silence timeout while carrying a request. */
  silent(timeoutMs: number): void {
    if (!this.busy) return;
    const where = this.#state === C.HEAD ? 'before responding' : 'in the middle of the response body';
    this.#failed(new UpstreamSocketError('MESHLET_UPSTREAM_SILENT', `the upstream sent nothing for ${timeoutMs} ms ${where}`));
  }

  #onEnd = (): void => {
    if (this.#state === C.BODY && this.#res!.framing.kind === 'close') {
      this.#complete(undefined);
      return;
    }
    if (this.#state === C.HEAD || this.#state === C.BODY) {
      this.#failed(new UpstreamSocketError(this.#state === C.HEAD ? 'MESHLET_UPSTREAM_CLOSED' : 'MESHLET_UPSTREAM_TRUNCATED', this.#state === C.HEAD ? 'the upstream closed the connection before responding' : 'the upstream closed the connection in the middle of the response body'));
      return;
    }
    this.destroy();
  };

  #onClose = (): void => {
    const state = this.#state;
    this.#state = C.CLOSED;
    this.#pool.forget(this);
    const attempt = this.#attempt;
    this.#attempt = undefined;
    if (attempt && (state === C.HEAD || state === C.BODY)) {
      const e = this.#error as (Error & { code?: string }) | undefined;
      const code = e?.code ?? (state === C.HEAD ? 'MESHLET_UPSTREAM_CLOSED' : 'MESHLET_UPSTREAM_TRUNCATED');
      const where = state === C.HEAD ? 'before responding' : 'in the middle of the response body';
      attempt.failed(new UpstreamSocketError(code, e ? `the upstream connection failed ${where}: ${e.message}` : `the upstream connection closed ${where}`, e));
    }
  };

  #failed(err: Error): void {
    const attempt = this.#attempt;
    this.#attempt = undefined;
    this.destroy();
    attempt?.failed(err);
  }
}

/** Keep-alive connections to one endpoint. */
export class Pool {
  readonly #dial: Dial;
  readonly #o: PoolOptions;
  readonly #idle: ClientConnection[] = [];
  readonly #all = new Set<ClientConnection>();
  #timer: NodeJS.Timeout | undefined;
  /** Runs while the pool has connections. */
  #silence: NodeJS.Timeout | undefined;
  /** Retired (close): no idle connection is kept. */
  #closed = false;
  /** Destroyed: no request is taken. */
  #destroyed = false;

  constructor(dial: Dial, o: PoolOptions) {
    this.#dial = dial;
    this.#o = o;
  }

  request(req: ClientRequest, handler: ResponseHandler): ClientAttempt {
    const attempt = new ClientAttempt(req, handler);
    if (this.#destroyed) {
      queueMicrotask(() => attempt.failed(new UpstreamSocketError('MESHLET_POOL_CLOSED', 'the connection pool is closed')));
      return attempt;
    }
    const now = this.#o.now();
    let conn: ClientConnection | undefined;
    while ((conn = this.#idle.pop()) !== undefined) {
      if (conn.expires > now && !conn.socket.destroyed) break;
      conn.destroy();
    }
    if (conn) {
      conn.start(attempt);
      return attempt;
    }
    // A new connection; an attempt aborted while it was being made leaves it idle for the next.
    this.#dial((err, socket) => {
      if (err || !socket) return attempt.failed(err ?? new UpstreamSocketError('MESHLET_CONNECT', 'connect failed'));
      const c = new ClientConnection(this, socket);
      this.#add(c);
      if (this.#destroyed) {
        c.destroy();
        return attempt.failed(new UpstreamSocketError('MESHLET_POOL_CLOSED', 'the connection pool is closed'));
      }
      if (attempt.aborted) return this.release(c);
      c.start(attempt);
    });
    return attempt;
  }

  /** A connection finished a request and may carry another. */
  release(conn: ClientConnection, hintSeconds?: number): void {
    if (this.#closed || this.#idle.length >= (this.#o.maxIdle ?? 256)) return conn.destroy();
    const o = this.#o;
    // A server's hint, less a second (its timer and ours do not start at the same instant).
    const keep = hintSeconds === undefined ? o.keepAliveTimeoutMs : Math.min(o.keepAliveMaxTimeoutMs, hintSeconds * 1000 - 1000);
    if (keep <= 0) return conn.destroy();
    conn.expires = o.now() + keep;
    this.#idle.push(conn);
    if (this.#timer === undefined) this.#arm(keep);
  }

  /** A connection closed. */
  forget(conn: ClientConnection): void {
    this.#all.delete(conn);
    if (this.#all.size === 0 && this.#silence !== undefined) {
      clearInterval(this.#silence);
      this.#silence = undefined;
    }
    const i = this.#idle.indexOf(conn);
    if (i !== -1) this.#idle.splice(i, 1);
  }

  /**
   * Retire the pool (its endpoint left the config): idle connections close now, busy ones when
   * their response ends. Requests still come from config snapshots that name the endpoint (the
   * requests in flight when the config changed, and their retries): they are served on
   * connections that close after them, not refused.
   */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    // Deleting from a Set while iterating it is safe (destroy() forgets the connection).
    for (const c of this.#all) if (c.idle) c.destroy();
  }

  /** Destroy every connection, busy ones too, and take no more requests (the proxy is stopping). */
  destroy(): void {
    this.#destroyed = true;
    this.close();
    for (const c of this.#all) c.destroy();
  }

  #add(c: ClientConnection): void {
    this.#all.add(c);
    if (this.#silence !== undefined) return;
    // Four checks per silence timeout: a busy connection that moved no byte in four in a row is
    // given up (between 1 and 1.25 timeouts of silence), with no timer work per read or write.
    const timeoutMs = this.#o.silenceTimeoutMs;
    this.#silence = setInterval(() => {
      for (const conn of this.#all) {
        if (!conn.busy) continue;
        if (conn.active) {
          conn.active = false;
          conn.quiet = 0;
        } else if (++conn.quiet >= 4) conn.silent(timeoutMs);
      }
    }, timeoutMs / 4);
    this.#silence.unref();
  }

  /** One timer per pool closes expired idle connections (taking one also checks its expiry). */
  #arm(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const now = this.#o.now();
      let next = Infinity;
      for (const c of this.#idle.slice()) {
        if (c.expires <= now) c.destroy();
        else next = Math.min(next, c.expires - now);
      }
      if (next !== Infinity) this.#arm(next);
    }, ms);
    this.#timer.unref();
  }
}
