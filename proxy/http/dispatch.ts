// The last step of every attempt: one request to one endpoint over a keep-alive pool
// (http1/client.ts). Resolves at response headers; the body streams after, or is discarded.
import type { ClientAttempt, Pool, ResponseHandler } from '../http1/client.ts';
import type { ResponseHead } from '../http1/head.ts';
import type { Exchange, UpstreamBody, UpstreamResponse, BodySink } from './exchange.ts';
import { forwardResponseHeaders } from './headers.ts';
import { ProxyError, fromUpstreamError } from '../errors.ts';
import type { Deadline, Deadlines } from './deadlines.ts';

const EMPTY = Buffer.alloc(0);

/** Body bytes an attempt holds before its response is piped to the client, before it pauses the upstream. */
const PENDING_LIMIT = 64 * 1024;

/** One attempt: a promise for the head, then a body that can be piped or discarded. */
class Attempt implements ResponseHandler, UpstreamBody {
  #resolve: (r: UpstreamResponse) => void;
  #reject: (e: unknown) => void;
  #client: ClientAttempt | undefined;
  #started = false;
  #sink: BodySink | undefined;
  #pending: Buffer[] | undefined;
  #pendingBytes = 0;
  #ended = false;
  #failed: Error | undefined;
  #discarded = false;
  #done: Array<(ok: boolean) => void> | undefined;
  #resume = () => this.#client?.resume();

  constructor(resolve: (r: UpstreamResponse) => void, reject: (e: unknown) => void) {
    this.#resolve = resolve;
    this.#reject = reject;
  }

  start(client: ClientAttempt): void {
    this.#client = client;
  }

  /**
   * Give the attempt up. An arrow field, so the exchange can hold it as `abortAttempt` while the
   * attempt runs. The closure this replaces, `(r) => attempt.abort(r)` made inside dispatchOnce's
   * Promise executor, kept each request's objects alive through two scavenges: at ~1000 rps a
   * quarter of all allocation (~0.7 MB per scavenge) went to the old generation as garbage and
   * scavenges paused 1.5-6 ms instead of ~0.4. The same closure made outside the executor did
   * not (measured with --trace-gc-nvp; README "Benchmark"; test/proxy/gc.test.ts guards it).
   */
  readonly abort = (reason: Error): void => {
    this.#client?.abort(reason);
  };

  head(res: ResponseHead): void {
    this.#started = true;
    this.#resolve({ status: res.status, statusText: res.reason, headers: forwardResponseHeaders(res), framing: res.framing, body: this });
    if (res.framing.kind === 'none') this.#ended = true;
  }

  data(chunk: Buffer): boolean {
    if (this.#discarded) return true;
    const sink = this.#sink;
    if (sink) {
      if (sink.write(chunk)) return true;
      sink.once('drain', this.#resume);
      return false;
    }
    (this.#pending ??= []).push(chunk);
    this.#pendingBytes += chunk.length;
    return this.#pendingBytes < PENDING_LIMIT;
  }

  end(): void {
    this.#ended = true;
    if (this.#sink) this.#sink.end();
    this.#finish(true);
  }

  error(err: Error): void {
    if (!this.#started) {
      this.#reject(fromUpstreamError(err, false));
      this.#finish(false);
      return;
    }
    this.#failed = err;
    this.#sink?.destroy(err);
    this.#finish(false);
  }

  pipeTo(sink: BodySink): void {
    this.#sink = sink;
    const pending = this.#pending;
    if (pending) {
      this.#pending = undefined;
      this.#pendingBytes = 0;
      let more = true;
      for (const c of pending) more = sink.write(c);
      if (!this.#ended && !this.#failed) {
        if (more) this.#resume();
        else sink.once('drain', this.#resume);
      }
    }
    if (this.#ended) sink.end();
    else if (this.#failed) sink.destroy(this.#failed);
  }

  takeWhole(): Buffer | undefined {
    if (!this.#ended || this.#failed || this.#sink) return undefined;
    const p = this.#pending;
    this.#pending = undefined;
    this.#pendingBytes = 0;
    this.#discarded = true;
    return p === undefined ? EMPTY : p.length === 1 ? p[0]! : Buffer.concat(p);
  }

  discard(): void {
    this.#discarded = true;
    this.#pending = undefined;
    if (!this.#ended && !this.#failed) this.#client?.abort(new ProxyError('upstream-error', 'response discarded for a retry'));
  }

  onDone(fn: (ok: boolean) => void): void {
    if (this.#ended || (this.#failed && this.#started)) fn(this.#ended);
    else (this.#done ??= []).push(fn);
  }

  #finish(ok: boolean): void {
    const d = this.#done;
    this.#done = undefined;
    if (d) for (const fn of d) fn(ok);
  }
}

/** The request head for the upstream: request line, forwarded fields, Host, this hop's fields, framing. */
export function requestHead(ex: Exchange, dstPort: string | undefined): string {
  let h = `${ex.method} ${ex.target} HTTP/1.1\r\n`;
  const headers = ex.headers;
  for (let i = 0; i < headers.length; i += 2) h += `${headers[i]}: ${headers[i + 1]}\r\n`;
  h += `host: ${ex.hostHeader}\r\n`;
  if (dstPort !== undefined) h += `meshlet-dst-port: ${dstPort}\r\n`;
  // A Content-Length came with the fields; a chunked body goes on chunked, as it came.
  const body = ex.body;
  if (body.kind === 'stream' && body.source.framing.kind === 'chunked') h += 'transfer-encoding: chunked\r\n';
  return h + '\r\n';
}

const perTryTimeout = (ms: number) => new ProxyError('per-try-timeout', `no response headers within ${ms} ms`);

/**
 * Send the exchange's request through `pool` once. `dstPort`: the port of the endpoint address,
 * sent as `meshlet-dst-port` to a meshed (mTLS) endpoint's inbound proxy. `perTryMs` > 0: the
 * attempt is aborted with `per-try-timeout` if no response head came within it (armed on
 * `deadlines`, which a per-try timeout requires). It counts from dispatch, or for a body still
 * streaming in from the client from when that body has been sent whole (as Envoy's per-try
 * timeout): a slow upload is the client's pace, not a slow upstream.
 */
export function dispatchOnce(pool: Pool, ex: Exchange, dstPort: string | undefined, perTryMs = 0, deadlines?: Deadlines): Promise<UpstreamResponse> {
  return new Promise<UpstreamResponse>((resolve, reject) => {
    let timer: Deadline | undefined;
    let settled = false;
    const attempt = new Attempt(
      (r) => {
        settled = true;
        if (timer) deadlines!.cancel(timer);
        ex.abortAttempt = undefined;
        resolve(r);
      },
      (e) => {
        settled = true;
        if (timer) deadlines!.cancel(timer);
        ex.abortAttempt = undefined;
        reject(e);
      },
    );
    const body = ex.body;
    ex.abortAttempt = attempt.abort;
    const uploading = body.kind === 'stream' && !body.source.ended;
    if (perTryMs > 0 && !uploading) timer = deadlines!.after(perTryMs, () => attempt.abort(perTryTimeout(perTryMs)));
    attempt.start(
      pool.request(
        {
          method: ex.method,
          head: requestHead(ex, dstPort),
          body: body.kind === 'buffer' ? body.data : body.kind === 'stream' ? body.source : undefined,
          onSent:
            perTryMs > 0 && uploading
              ? () => {
                  if (!settled) timer = deadlines!.after(perTryMs, () => attempt.abort(perTryTimeout(perTryMs)));
                }
              : undefined,
        },
        attempt,
      ),
    );
  });
}
