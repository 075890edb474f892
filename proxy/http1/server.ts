// The server side of an HTTP/1.1 connection: reads request heads (strictly, head.ts), frames
// request bodies, writes one response at a time in order, keeps the connection alive when both
// sides allow it, and hands Upgrade requests their socket. No Node HTTP machinery on this path.
import type { Socket } from 'node:net';
import { BodySource } from './body.ts';
import { BodyFraming } from './body-framing.ts';
import { ChunkedError, ChunkedScanner, LAST_CHUNK, chunkPrefix } from './chunked.ts';
import { detectForeign, type Foreign } from './first-bytes.ts';
import { HeadError, headEnd, hasBareLfLines, parseRequestHead, type Framing, type RequestHead } from './head.ts';


export type HeadProblem = 'bad-request' | 'header-too-large' | 'header-timeout';

/** How a response ended: all of it sent, abandoned by the proxy, or the client left first. */
export type ResponseOutcome = 'finished' | 'destroyed' | 'client-gone';

export interface ServerHooks {
  /** A request head arrived; its body (if any) streams through `req.body`; answer through `req`. */
  request(req: ServerRequest): void;
  /** Connection: upgrade. The socket is the handler's from here on; `rest` is what followed the head. */
  upgrade(head: RequestHead, socket: Socket, rest: Buffer): void;
  /** A head that cannot be served: the bytes to answer with (the connection then closes). */
  refuse(problem: HeadProblem, message: string): string;
  /** A connection whose first bytes are not HTTP/1 (TLS, HTTP/2, other): the bytes to answer with (then it closes). */
  foreign(what: Foreign): Buffer;
  /**
   * A connection that opened with the HTTP/2 preface, when the owner serves HTTP/2: the connection
   * is the hook's from here on (paused); `read` is every byte read of it so far. Absent: foreign().
   */
  http2?(conn: ServerConnection, read: Buffer): void;
}

export interface ServerLimits {
  /** Monotonic milliseconds (the proxy's clock). */
  now(): number;
  /** Largest request head (request line and fields), bytes. */
  maxHeaderSize: number;
  /** A head must arrive within this once its first byte has (slow-loris guard). */
  headersTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
}

/** A response body up to this size that has fully arrived goes out with its head in one write. */
const WHOLE_MAX = 16 * 1024;

/** A request body left unread when its response ends is read and dropped up to this; past it the connection closes. */
const MAX_DISCARD = 256 * 1024;

/** Connection phases: reading a head, reading a body, waiting for the response, closing. */
const P = { HEAD: 0, BODY: 1, WAIT: 2, DONE: 3 } as const;

/**
 * One request and its response. `write`/`end` follow the response framing chosen at `writeHead`:
 * the body bytes given are as the upstream framed them (a chunked body with its chunk framing).
 */
export class ServerRequest {
  readonly head: RequestHead;
  /** The request body, or undefined when it has none. */
  readonly body: BodySource | undefined;
  readonly socket: Socket;
  readonly #conn: ServerConnection;
  status = 0;
  headersSent = false;
  finished = false;
  destroyed = false;
  /** How `write` frames what it is given. */
  #mode: 'raw' | 'encode' | 'decode' | 'none' = 'raw';
  #decoder: ChunkedScanner | undefined;
  #onDone: ((how: ResponseOutcome, err: Error | undefined) => void) | undefined;

  constructor(conn: ServerConnection, head: RequestHead, body: BodySource | undefined, socket: Socket) {
    this.#conn = conn;
    this.head = head;
    this.body = body;
    this.socket = socket;
  }

  /** Called once when the response is over: sent whole, abandoned by us (destroy), or the client went away first. */
  onDone(fn: (how: ResponseOutcome, err: Error | undefined) => void): void {
    this.#onDone = fn;
  }

  #settle(how: ResponseOutcome, err?: Error): void {
    const fn = this.#onDone;
    this.#onDone = undefined;
    fn?.(how, err);
  }

  /**
   * The response head. `headers` is a flat [name, value, ...] list without hop-by-hop fields;
   * `framing` is how the body that follows is framed (for a forwarded response: as upstream sent
   * it; Content-Length, when it applies, is already among `headers`).
   */
  writeHead(status: number, reason: string, headers: readonly string[], framing: Framing): void {
    if (this.headersSent || this.destroyed) return;
    const h = this.#head(status, reason, headers, framing);
    // Corked until the body's first bytes (or the end) join the head in one write.
    this.#conn.cork();
    this.socket.write(h, 'latin1');
  }

  /**
   * A whole response whose body is already here (the common small one): head and body leave in
   * one write of one string (latin1 maps bytes 1:1), without corking. `body` is framed as
   * `framing` says, like write()'s chunks.
   */
  writeWhole(status: number, reason: string, headers: readonly string[], framing: Framing, body: Buffer): void {
    if (this.headersSent || this.destroyed) return;
    const h = this.#head(status, reason, headers, framing);
    if (this.#mode === 'none' || body.length === 0) this.socket.write(h, 'latin1');
    else if (this.#mode === 'raw' && body.length <= WHOLE_MAX) this.socket.write(h + body.toString('latin1'), 'latin1');
    else {
      this.#conn.cork();
      this.socket.write(h, 'latin1');
      this.write(body);
    }
    this.end();
  }

  /** The head as text; decides how write() frames the body and whether the connection stays. */
  #head(status: number, reason: string, headers: readonly string[], framing: Framing): string {
    this.headersSent = true;
    this.status = status;
    const minor = this.head.minor;
    const keepAlive = this.#conn.keepAliveAfter(this);
    let h = `HTTP/1.1 ${status} ${reason}\r\n`;
    for (let i = 0; i < headers.length; i += 2) h += `${headers[i]}: ${headers[i + 1]}\r\n`;
    const noBody = this.head.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    let close = !keepAlive;
    if (noBody || framing.kind === 'none' || framing.kind === 'length') {
      this.#mode = noBody ? 'none' : 'raw';
    } else if (framing.kind === 'chunked') {
      if (minor === 1) {
        h += 'transfer-encoding: chunked\r\n';
        this.#mode = 'raw';
      } else {
        this.#mode = 'decode';
        this.#decoder = new ChunkedScanner((b, s, e) => this.#send(b.subarray(s, e)));
        close = true;
      }
    } else if (minor === 1) {
      // Upstream closes to end its body: to a keep-alive client, chunk it ourselves.
      h += 'transfer-encoding: chunked\r\n';
      this.#mode = 'encode';
    } else {
      this.#mode = 'raw';
      close = true;
    }
    if (close) {
      h += 'connection: close\r\n';
      this.#conn.closeAfter(this);
    } else if (minor === 0) h += 'connection: keep-alive\r\n';
    return h + '\r\n';
  }

  #send(chunk: Buffer): boolean {
    return this.socket.write(chunk);
  }

  /** A piece of the response body; false when the socket's buffer is full (wait for 'drain'). */
  write(chunk: Buffer): boolean {
    if (this.finished || this.destroyed) return true;
    switch (this.#mode) {
      case 'none':
        return true;
      case 'raw':
        return this.socket.write(chunk);
      case 'encode': {
        if (chunk.length === 0) return true;
        const s = this.socket;
        s.cork();
        s.write(chunkPrefix(chunk.length), 'latin1');
        s.write(chunk);
        const ok = s.write('\r\n', 'latin1');
        s.uncork();
        return ok;
      }
      case 'decode':
        try {
          this.#decoder!.scan(chunk);
        } catch (e) {
          this.destroy(e as Error);
          return true;
        }
        return this.socket.writableLength < 64 * 1024;
    }
  }

  /** The response is complete. */
  end(): void {
    if (this.finished || this.destroyed) return;
    if (this.#mode === 'encode') this.socket.write(LAST_CHUNK, 'latin1');
    this.finished = true;
    this.#conn.uncork();
    this.#settle('finished');
    this.#conn.finished(this);
  }

  /** A whole response at once (the proxy's own answers): head and body in one write. */
  respond(status: number, reason: string, headers: readonly string[], body: string): void {
    const b = Buffer.from(body);
    this.writeWhole(status, reason, [...headers, 'content-length', String(b.length)], { kind: 'length', length: b.length }, b);
  }

  /** Abandon the response (the upstream failed mid-body): the client sees the connection close. */
  destroy(err?: Error): void {
    if (this.destroyed || this.finished) return;
    this.destroyed = true;
    this.#conn.uncork();
    this.socket.destroy();
    this.#settle('destroyed', err);
  }

  once(event: 'drain', fn: () => void): void {
    this.socket.once(event, fn);
  }

  /** Internal: the connection closed. */
  closed(): void {
    if (this.finished || this.destroyed) return;
    this.destroyed = true;
    this.#settle('client-gone');
  }
}

/** One accepted connection. */
export class ServerConnection {
  readonly socket: Socket;
  readonly #hooks: ServerHooks;
  readonly #limits: ServerLimits;
  #phase: number = P.HEAD;
  #buf: Buffer | undefined;
  #current: ServerRequest | undefined;
  #body: BodySource | undefined;
  /** Where the current request body ends. */
  #framing: BodyFraming | undefined;
  /** Read and drop the rest of the body (its response ended first). */
  #discarding = false;
  #discarded = 0;
  #closeAfter = false;
  #draining = false;
  #clientEnded = false;
  #readPaused = false;
  #bodyPaused = false;
  /** When the current head began arriving, or the connection went idle (ms, the owner's clock). */
  #since: number;
  #detached = false;
  /** No request head has been read yet: the first bytes may be another protocol (first-bytes.ts). */
  #fresh = true;

  constructor(socket: Socket, hooks: ServerHooks, limits: ServerLimits) {
    this.socket = socket;
    this.#hooks = hooks;
    this.#limits = limits;
    this.#since = limits.now();
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
    socket.on('error', () => socket.destroy());
  }

  /** Nothing in progress: no request, no partial head. */
  get idle(): boolean {
    return this.#phase === P.HEAD && this.#buf === undefined && !this.#detached;
  }

  /** Stop keeping the connection alive: responses say `connection: close`; idle ones close now. */
  drain(): void {
    this.#draining = true;
    if (this.idle) this.socket.destroy();
  }

  /** Called by the owner's sweep: closes a connection whose head or idle time ran out. */
  sweep(now: number): void {
    if (this.#detached) return;
    if (this.#phase === P.DONE) {
      // Closing (refused, or closed after a response): the client had time to read our answer.
      if (now - this.#since > 5000) this.socket.destroy();
      return;
    }
    if (this.#phase !== P.HEAD) return;
    if (this.#buf !== undefined) {
      if (now - this.#since <= this.#limits.headersTimeoutMs) return;
      if (this.#fresh && this.#notHttp1(this.#buf, true)) return;
      this.#refuse('header-timeout', `the request head did not arrive within ${this.#limits.headersTimeoutMs} ms`);
    } else if (now - this.#since > this.#limits.keepAliveTimeoutMs) this.socket.destroy();
  }

  // ---- for ServerRequest ----

  #corked = false;

  /** Hold writes until the end of this turn (or uncork()): a response head and its first body bytes go out in one write. */
  cork(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.socket.cork();
    queueMicrotask(this.#uncorkSoon);
  }

  uncork(): void {
    if (!this.#corked) return;
    this.#corked = false;
    this.socket.uncork();
  }

  readonly #uncorkSoon = (): void => this.uncork();

  keepAliveAfter(req: ServerRequest): boolean {
    return req.head.keepAlive && !this.#draining && !this.#closeAfter && !this.#clientEnded;
  }

  closeAfter(_req: ServerRequest): void {
    this.#closeAfter = true;
  }

  finished(req: ServerRequest): void {
    if (req !== this.#current) return;
    const body = this.#body;
    if (body && !body.ended) {
      // The response ended before its request body: read the rest and drop it, or give up on the connection.
      const unread = this.#framing!.remaining;
      if (this.#closeAfter || this.#draining || unread > MAX_DISCARD || (req.head.expectContinue && !body.consumed)) this.#closeAfter = true;
      else {
        this.#discarding = true;
        this.#resumeBody();
      }
    }
    if (this.#closeAfter || this.#draining || this.#clientEnded || !req.head.keepAlive) {
      this.#phase = P.DONE;
      this.#since = this.#limits.now();
      this.#current = undefined;
      this.socket.end();
      this.#resumeRead(); // keep reading (and dropping) so the client gets our FIN, not a reset
      return;
    }
    if (this.#phase === P.WAIT) this.#next();
  }

  // ---- reading ----

  #onData = (chunk: Buffer): void => {
    switch (this.#phase) {
      case P.HEAD:
        if (this.#buf === undefined) {
          // The first bytes of a head: its timeout runs from here, however slowly the rest comes.
          this.#since = this.#limits.now();
          this.#buf = chunk;
        } else this.#buf = Buffer.concat([this.#buf, chunk]);
        this.#parseHeads();
        return;
      case P.BODY:
        this.#bodyData(chunk);
        return;
      case P.WAIT:
        // Pipelined: the next request waits for this response.
        this.#buf = this.#buf === undefined ? chunk : Buffer.concat([this.#buf, chunk]);
        this.#pauseRead();
        return;
      default:
        return; // closing: dropped
    }
  };

  #onEnd = (): void => {
    this.#clientEnded = true;
    if (this.#phase === P.BODY) {
      this.#body?.fail(new Error('the client closed the connection before the request body ended'));
      this.socket.destroy();
    } else if (this.#phase === P.WAIT) {
      // The client closed its side while its request is being answered: taken as gone (its
      // request is cancelled upstream), as hyper (Linkerd) does by default and nginx does (499).
      // Half-closing to say "done sending, still reading" is legal but rare and not supported.
      this.socket.destroy();
    } else this.socket.end();
  };

  #onClose = (): void => {
    this.#phase = P.DONE;
    if (this.#body && !this.#body.ended) this.#body.fail(new Error('the client connection closed before the request body ended'));
    this.#current?.closed();
  };

  /** The next pipelined request, once the previous one is done both ways. */
  #next(): void {
    this.#current = undefined;
    this.#body = undefined;
    this.#framing = undefined;
    this.#phase = P.HEAD;
    this.#since = this.#limits.now();
    this.#resumeRead();
    if (this.#buf !== undefined) this.#parseHeads();
  }

  #parseHeads(): void {
    let buf = this.#buf!;
    // RFC 9112 §2.2: empty lines before a request line are ignored.
    let start = 0;
    while (start + 1 < buf.length && buf[start] === 13 && buf[start + 1] === 10) start += 2;
    if (start > 0) buf = buf.subarray(start);
    if (buf.length === 0) {
      this.#buf = undefined;
      return;
    }
    const end = headEnd(buf);
    const max = this.#limits.maxHeaderSize;
    if (end === -1) {
      this.#buf = buf;
      // Off the hot path: a whole head in the first packet never comes here.
      if (this.#fresh && this.#notHttp1(buf, false)) return;
      if (buf.length > max) return this.#refuse('header-too-large', `the request head is larger than ${max} bytes`);
      if (hasBareLfLines(buf)) return this.#refuse('bad-request', 'a bare LF in the request head');
      return;
    }
    if (end + 4 > max) return this.#refuse('header-too-large', `the request head is larger than ${max} bytes`);
    let head: RequestHead;
    try {
      head = parseRequestHead(buf.toString('latin1', 0, end));
    } catch (e) {
      if (!(e instanceof HeadError)) throw e;
      // The HTTP/2 preface has a CRLF CRLF, and random TLS bytes may: the parser refuses both.
      if (this.#fresh && this.#notHttp1(buf, false)) return;
      return this.#refuse('bad-request', e.message);
    }
    this.#fresh = false;
    const rest = buf.subarray(end + 4);
    this.#buf = undefined;
    if (head.upgrade) {
      this.#detach();
      this.#hooks.upgrade(head, this.socket, rest);
      return;
    }
    const framing = head.framing;
    let body: BodySource | undefined;
    if (framing.kind === 'length' || framing.kind === 'chunked') {
      body = new BodySource(framing, this.#bodyFlow);
      this.#framing = new BodyFraming(framing);
      this.#discarding = false;
      this.#discarded = 0;
      this.#phase = P.BODY;
    } else this.#phase = P.WAIT;
    this.#body = body;
    const req = new ServerRequest(this, head, body, this.socket);
    this.#current = req;
    if (rest.length > 0) {
      if (body) {
        // Body bytes that came with the head are checked first: a malformed chunked body in the
        // same packet is refused before anything is forwarded.
        this.#bodyData(rest);
        if (this.#phase === P.DONE) return;
      } else {
        this.#buf = rest;
        this.#pauseRead();
      }
    }
    this.#hooks.request(req);
  }

  #bodyData(chunk: Buffer): void {
    const body = this.#body!;
    let end: number;
    try {
      end = this.#framing!.end(chunk);
    } catch (e) {
      const err = e as ChunkedError;
      body.fail(err);
      if (!this.#current?.headersSent) this.#refuse('bad-request', `malformed chunked body: ${err.message}`);
      else this.socket.destroy();
      return;
    }
    const complete = end !== -1;
    const whole = end === -1 || end === chunk.length;
    const take = whole ? chunk : chunk.subarray(0, end);
    const rest = whole ? undefined : chunk.subarray(end);
    if (this.#discarding) {
      this.#discarded += take.length;
      if (this.#discarded > MAX_DISCARD && !complete) {
        this.socket.destroy();
        return;
      }
    } else body.push(take);
    if (rest) this.#buf = this.#buf === undefined ? rest : Buffer.concat([this.#buf, rest]);
    if (!complete) return;
    body.end();
    const req = this.#current;
    if (req?.finished) {
      if (this.#phase !== P.DONE) this.#next();
    } else {
      this.#phase = P.WAIT;
      if (this.#buf !== undefined) this.#pauseRead();
    }
  }

  /**
   * The first bytes of the connection, before any head: true when they are another protocol (now
   * refused, or HTTP/2 handed to the hook that serves it) or need a few more bytes to tell; false
   * when they may be HTTP/1.
   */
  #notHttp1(buf: Buffer, final: boolean): boolean {
    const what = detectForeign(buf, final);
    if (what === undefined) return false;
    if (what === 'more') return true;
    if (what.protocol === 'http2' && this.#hooks.http2) {
      this.#detach();
      this.#buf = undefined;
      this.#hooks.http2(this, buf);
    } else this.#close(this.#hooks.foreign(what));
    return true;
  }

  /** Answer a head we cannot serve, then close (reading on, and dropping, until the client closes). */
  #refuse(problem: HeadProblem, message: string): void {
    this.#close(this.#hooks.refuse(problem, message));
  }

  #close(answer: string | Buffer): void {
    this.#phase = P.DONE;
    this.#since = this.#limits.now();
    this.#buf = undefined;
    if (this.socket.writable) this.socket.end(answer, 'latin1');
    else this.socket.destroy();
  }

  #detach(): void {
    this.#detached = true;
    this.#phase = P.DONE;
    // Not flowing until the upgrade handler pipes it: nothing the client sends next is lost.
    this.socket.pause();
    this.socket.off('data', this.#onData);
    this.socket.off('end', this.#onEnd);
    this.socket.off('close', this.#onClose);
  }

  // ---- flow control: the body consumer's pauses and the pipelining hold are separate reasons ----

  readonly #bodyFlow = {
    started: (): void => {
      const req = this.#current;
      if (req && req.head.expectContinue && req.head.minor === 1 && !req.headersSent) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
    },
    pause: (): void => {
      this.#bodyPaused = true;
      this.socket.pause();
    },
    resume: (): void => this.#resumeBody(),
  };

  #resumeBody(): void {
    this.#bodyPaused = false;
    if (!this.#readPaused) this.socket.resume();
  }

  #pauseRead(): void {
    this.#readPaused = true;
    this.socket.pause();
  }

  #resumeRead(): void {
    this.#readPaused = false;
    if (!this.#bodyPaused) this.socket.resume();
  }
}
