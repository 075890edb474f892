// The last step of every attempt: one request to one endpoint over an undici connection pool,
// with raw callbacks instead of streams. Resolves at response headers; the body streams after.
import type { Dispatcher } from 'undici';
import type { Exchange, UpstreamBody, UpstreamResponse, BodySink } from './exchange.ts';
import { forwardResponseHeaders } from './headers.ts';
import { ProxyError, fromUpstreamError } from '../errors.ts';

type Controller = Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestStart']>>[0];

/** Handler for one attempt: a promise for the head, then a body that can be piped or discarded. */
class Attempt implements Dispatcher.DispatchHandler, UpstreamBody {
  #resolve: (r: UpstreamResponse) => void;
  #reject: (e: unknown) => void;
  #controller: Controller | undefined;
  #started = false;
  #sink: BodySink | undefined;
  #pending: Buffer[] | undefined;
  #ended = false;
  #failed: Error | undefined;
  #discarded = false;
  #done: Array<(ok: boolean) => void> | undefined;
  #resume = () => this.#controller?.resume();

  constructor(resolve: (r: UpstreamResponse) => void, reject: (e: unknown) => void) {
    this.#resolve = resolve;
    this.#reject = reject;
  }

  abort(reason: Error): void {
    if (this.#controller) this.#controller.abort(reason);
    else this.#failed = reason;
  }

  onRequestStart(controller: Controller): void {
    this.#controller = controller;
    if (this.#failed) controller.abort(this.#failed);
  }

  onResponseStart(controller: Controller, statusCode: number, _headers: unknown, statusText: string): void {
    if (statusCode < 200) return; // 1xx informational: not forwarded (100-continue is handled by Node)
    this.#started = true;
    const raw = (controller as unknown as { rawHeaders: Buffer[] }).rawHeaders ?? [];
    this.#resolve({ status: statusCode, statusText, headers: forwardResponseHeaders(raw), body: this });
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.#discarded) return;
    const sink = this.#sink;
    if (sink) {
      if (!sink.write(chunk)) {
        controller.pause();
        sink.once('drain', this.#resume);
      }
    } else (this.#pending ??= []).push(chunk);
  }

  onResponseEnd(): void {
    this.#ended = true;
    if (this.#sink) this.#sink.end();
    this.#finish(true);
  }

  onResponseError(_controller: Controller, err: Error): void {
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
    if (this.#pending) {
      for (const c of this.#pending) sink.write(c);
      this.#pending = undefined;
    }
    if (this.#ended) sink.end();
    else if (this.#failed) sink.destroy(this.#failed);
  }

  discard(): void {
    this.#discarded = true;
    this.#pending = undefined;
    if (!this.#ended && !this.#failed) this.#controller?.abort(new ProxyError('upstream-error', 'response discarded for a retry'));
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

/**
 * Send the exchange's request to `client` (an undici Dispatcher) once. `dstPort`: the port of the
 * endpoint address, sent as `meshlet-dst-port` to a meshed (mTLS) endpoint's inbound proxy.
 */
export function dispatchOnce(client: Dispatcher, ex: Exchange, perTryMs: number, dstPort?: string): Promise<UpstreamResponse> {
  return new Promise<UpstreamResponse>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const attempt = new Attempt(
      (r) => {
        clearTimeout(timer);
        ex.abortAttempt = undefined;
        resolve(r);
      },
      (e) => {
        clearTimeout(timer);
        ex.abortAttempt = undefined;
        reject(e);
      },
    );
    const body = ex.body;
    // A copy: a pool may queue the options and read them later; the exchange keeps its list for retries.
    const headers = dstPort === undefined ? ex.headers.concat('host', ex.hostHeader) : ex.headers.concat('host', ex.hostHeader, 'meshlet-dst-port', dstPort);
    const opts: Dispatcher.DispatchOptions = {
      path: ex.target,
      method: ex.method as Dispatcher.HttpMethod,
      headers,
      body: body.kind === 'buffer' ? body.data : body.kind === 'stream' ? body.source : null,
      headersTimeout: 0,
      bodyTimeout: 300_000,
    };
    ex.abortAttempt = (reason) => attempt.abort(reason);
    if (perTryMs > 0) {
      timer = setTimeout(() => attempt.abort(new ProxyError('per-try-timeout', `no response headers within ${perTryMs} ms`)), perTryMs);
    }
    client.dispatch(opts, attempt);
  });
}
