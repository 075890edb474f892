// Config from the control plane: holds the stream (mTLS with the proxy's own leaf), applies each
// version through the same ConfigStore as the file source, and ACKs or NACKs it. When the control
// plane is gone the proxy keeps serving what it has and reconnects with jittered backoff, resuming
// from the version it runs.
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { SecureContext } from 'node:tls';
import type { Random } from '../../api/runtime.ts';
import { applyDelta, CONFIG_ACK_PATH, DELTA_BASE_PATH, encodeParams, type Ack, type StreamMessage, type StreamParams } from '../../api/config-stream.ts';
import type { Problem } from '../../api/proxy-config.ts';
import type { ConfigStore } from './store.ts';

export interface StreamSourceOptions {
  /** Control-plane replicas; a lost or refused stream moves to the next one. */
  urls: readonly string[];
  /** The SPIFFE ID the control plane must present. */
  controlPlaneIdentity: string;
  /** The proxy's client context (leaf + bundle); undefined until it has a certificate. */
  context: () => SecureContext | undefined;
  store: ConfigStore;
  self: Omit<StreamParams, 'version'>;
  random: Random;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Test hook: refuse versions matching this (to exercise NACK end to end). */
  refuseVersion?: RegExp;
  onState?: (connected: boolean) => void;
}

/**
 * Reconnect delay: jittered, 100 ms doubling to 1 s, so a restarted control plane is back in
 * every proxy's view within about a second (the attempts are cheap: one TLS connect each).
 */
export function reconnectDelay(failures: number, random: Random): number {
  const ceiling = Math.min(1000, 100 * 2 ** Math.min(failures, 10));
  return ceiling / 2 + random() * (ceiling / 2);
}

export class StreamConfigSource {
  readonly #o: StreamSourceOptions;
  #req: ReturnType<typeof https.request> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failures = 0;
  #closed = false;
  #connected = false;
  #lastError: string | undefined;
  #stream = '';
  /** Which replica the stream uses (advances on every failure). */
  #replica = 0;
  /** While a stream is up: checks for silence (see #watchSilence). */
  #silence: NodeJS.Timeout | undefined;
  /** Bytes arrived since the last silence check (a flag, not a clock read per chunk). */
  #heard = false;
  #quietChecks = 0;

  constructor(o: StreamSourceOptions) {
    this.#o = o;
  }

  get connected(): boolean {
    return this.#connected;
  }

  detail(): { connected: boolean; replica: string; lastError: string | null } {
    return { connected: this.#connected, replica: this.#o.urls[this.#replica % this.#o.urls.length]!, lastError: this.#lastError ?? null };
  }

  start(): void {
    this.#connect();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#silence);
    this.#req?.destroy();
  }

  /**
   * The control plane pings every `pingMs` (it says so in its hello). A stream that brings nothing
   * for three pings is dead even if its socket looks open (a partition that drops packets, a
   * middlebox that forgot the connection): close it and reconnect, rather than miss every push
   * while /ready reports connected.
   */
  #watchSilence(pingMs: number): void {
    clearInterval(this.#silence);
    this.#heard = true;
    this.#quietChecks = 0;
    this.#silence = setInterval(() => {
      if (this.#heard) {
        this.#heard = false;
        this.#quietChecks = 0;
      } else if (++this.#quietChecks >= 3) {
        const req = this.#req;
        if (!req) return;
        this.#fail(req, `no message from the control plane for ${(3 * pingMs) / 1000} s (it pings every ${pingMs / 1000} s): reconnecting`);
        req.destroy();
      }
    }, pingMs);
    this.#silence.unref();
  }

  #options(path: string, method: string): (https.RequestOptions & { secureContext: SecureContext }) | undefined {
    const secureContext = this.#o.context();
    if (!secureContext) return undefined;
    const u = new URL(path, this.#o.urls[this.#replica % this.#o.urls.length]);
    const want = this.#o.controlPlaneIdentity;
    return {
      hostname: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port,
      path: u.pathname + u.search,
      method,
      secureContext,
      minVersion: 'TLSv1.3',
      agent: false,
      checkServerIdentity: (_h, cert) => ((cert.subjectaltname ?? '').split(', ').includes(`URI:${want}`) ? undefined : new Error(`the control plane presented ${cert.subjectaltname ?? 'no SAN'}, not ${want}`)),
    };
  }

  #setConnected(v: boolean): void {
    if (this.#connected === v) return;
    this.#connected = v;
    this.#o.onState?.(v);
  }

  #retry(reason: string): void {
    clearInterval(this.#silence);
    this.#silence = undefined;
    this.#setConnected(false);
    if (this.#closed) return;
    this.#lastError = reason;
    this.#failures++;
    this.#replica++; // fail over to the next replica (the same one when there is only one)
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#connect(), reconnectDelay(this.#failures, this.#o.random));
    this.#timer.unref();
  }

  #connect(): void {
    if (this.#closed) return;
    const opts = this.#options(encodeParams({ ...this.#o.self, version: this.#o.store.current?.version ?? '' }), 'GET');
    if (!opts) return this.#retry('no certificate yet');
    const req = https.request(opts, (res) => this.#read(res, req));
    this.#req = req;
    req.on('error', (err) => this.#fail(req, err.message));
    req.end();
  }

  /** The stream of `req` failed: once per stream (a destroyed stream's late events are ignored). */
  #fail(req: ReturnType<typeof https.request>, reason: string): void {
    if (req !== this.#req) return;
    this.#req = undefined;
    if (this.#connected && !this.#closed) this.#o.log('config stream lost; reconnecting', { reason });
    this.#retry(reason);
  }

  #read(res: IncomingMessage, req: ReturnType<typeof https.request>): void {
    if (res.statusCode !== 200) {
      res.resume();
      return this.#fail(req, `control plane answered ${res.statusCode}`);
    }
    this.#failures = 0;
    this.#lastError = undefined;
    this.#setConnected(true);
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      this.#heard = true;
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line) this.#message(line);
      }
    });
    res.on('end', () => this.#fail(req, 'the control plane closed the stream'));
    res.on('error', (err) => this.#fail(req, err.message));
  }

  #message(line: string): void {
    let m: StreamMessage;
    try {
      m = JSON.parse(line) as StreamMessage;
    } catch {
      this.#o.log('unreadable message from the control plane', { line: line.slice(0, 200) });
      return;
    }
    if (m.type === 'hello') {
      this.#stream = m.stream;
      if (typeof m.pingMs === 'number' && m.pingMs > 0) this.#watchSilence(m.pingMs);
    }
    if (m.type !== 'config' && m.type !== 'delta') return;
    let problems: Problem[] | undefined;
    // A delta applies to the version this proxy runs, else the control plane sends the full view.
    const doc = m.type === 'config' ? m.config : this.#o.store.current && applyDelta(this.#o.store.current.doc, m);
    if (doc === undefined) {
      problems = [{ path: DELTA_BASE_PATH, message: `delta from ${m.type === 'delta' ? m.base : '?'}, but this proxy runs ${this.#o.store.current?.version ?? 'no config'}: send the full view` }];
    } else if (this.#o.refuseVersion?.test(m.version)) {
      problems = [{ path: '/version', message: `refused by test hook (--refuse-config-version): ${m.version}` }];
      this.#o.store.refuse(problems, 'control plane');
    } else {
      const r = this.#o.store.apply(doc, `control plane version ${m.version}${m.type === 'delta' ? ' (delta)' : ''}`);
      if (!r.ok) problems = r.problems;
    }
    this.#ack({ stream: this.#stream, version: m.version, ok: problems === undefined, ...(problems ? { problems } : {}) });
  }

  #ack(a: Ack): void {
    const opts = this.#options(CONFIG_ACK_PATH, 'POST');
    if (!opts) return;
    const body = JSON.stringify(a);
    const req = https.request({ ...opts, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => res.resume());
    req.on('error', (err) => this.#o.log('ACK failed', { error: err.message }));
    req.end(body);
  }
}
