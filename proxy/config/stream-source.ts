// Config from the control plane: holds the stream (mTLS with the proxy's own leaf), applies each
// version through the same ConfigStore as the file source, and ACKs or NACKs it. When the control
// plane is gone the proxy keeps serving what it has and reconnects with jittered backoff, resuming
// from the version it runs.
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import type { SecureContext } from 'node:tls';
import type { Random } from '../../api/runtime.ts';
import { applyDelta, CONFIG_ACK_PATH, DELTA_BASE_PATH, encodeParams, MAX_STREAM_LINE_BYTES, parseStreamMessage, type Ack, type StreamParams } from '../../api/config-stream.ts';
import type { Problem } from '../../api/proxy-config.ts';
import { encodeLabels, type PodLabels } from '../../api/pod-labels.ts';
import type { ConfigStore } from './store.ts';

export interface StreamSourceOptions {
  /** Control-plane replicas; a lost or refused stream moves to the next one. */
  urls: readonly string[];
  /** The SPIFFE ID the control plane must present. */
  controlPlaneIdentity: string;
  /** The proxy's client context (leaf + bundle); undefined until it has a certificate. */
  context: () => SecureContext | undefined;
  store: ConfigStore;
  self: Omit<StreamParams, 'version' | 'labels'>;
  /**
   * The Pod's labels (--pod-labels-file), read again at every connect and every `labelsPollMs`:
   * the control plane matches Service selectors against them. Throws when they cannot be read.
   * Absent: none are sent (the control plane then knows only the services in `self`).
   */
  labels?: () => PodLabels;
  /** How often to look for changed labels (a relabelled Pod) and reconnect with them; default 10 s. */
  labelsPollMs?: number;
  random: Random;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Test hook: refuse versions matching this (to exercise NACK end to end). */
  refuseVersion?: RegExp;
  onState?: (connected: boolean) => void;
  /** A message (line) longer than this drops the stream. Default MAX_STREAM_LINE_BYTES. */
  maxLineBytes?: number;
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
  /** The labels last read well (what the stream sends), and the last reading problem (logged once). */
  #labels: PodLabels | undefined;
  #labelsProblem: string | undefined;
  #labelsPoll: NodeJS.Timeout | undefined;

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
    if (this.#o.labels) {
      this.#labelsPoll = setInterval(() => this.#pollLabels(), this.#o.labelsPollMs ?? 10_000);
      this.#labelsPoll.unref();
    }
    this.#connect();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#silence);
    clearInterval(this.#labelsPoll);
    this.#req?.destroy();
  }

  /** Reads the labels; on failure keeps the last good ones (undefined before any) and logs the problem once. */
  #readLabels(): PodLabels | undefined {
    try {
      this.#labels = this.#o.labels!();
      this.#labelsProblem = undefined;
    } catch (e) {
      const problem = (e as Error).message;
      if (problem !== this.#labelsProblem) this.#o.log('cannot read the pod labels; the config stream keeps the last ones read', { level: 'warn', problem });
      this.#labelsProblem = problem;
    }
    return this.#labels;
  }

  /**
   * The kubelet rewrites the downward-API file when the Pod is relabelled: the stream reconnects
   * with the new labels, so the Services that select the Pod (and their policies) follow.
   */
  #pollLabels(): void {
    const before = this.#labels;
    const now = this.#readLabels();
    if (before === undefined || now === undefined || encodeLabels(before) === encodeLabels(now)) return;
    const req = this.#req;
    if (!req || !this.#connected) return; // the next connect sends them
    this.#o.log('pod labels changed; reconnecting the config stream with them', { labels: encodeLabels(now) });
    this.#fail(req, 'pod labels changed');
    req.destroy();
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
    const labels = this.#o.labels ? this.#readLabels() : undefined;
    // Without its labels the proxy would get fewer policies than its Pod's Services have (fail
    // open): it waits for a good read instead (main.ts read them once at start).
    if (this.#o.labels && !labels) return this.#retry(`cannot read the pod labels: ${this.#labelsProblem}`);
    const opts = this.#options(encodeParams({ ...this.#o.self, ...(labels ? { labels } : {}), version: this.#o.store.current?.version ?? '' }), 'GET');
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
      // The refusal's message says what is wrong (a malformed hello); keep a bounded part of it.
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body = (body + c).slice(0, 1000)));
      res.on('error', () => this.#fail(req, `control plane answered ${res.statusCode}`));
      res.on('end', () => {
        let message = '';
        try {
          message = String((JSON.parse(body) as { message?: unknown }).message ?? '');
        } catch {
          /* not JSON: the status says enough */
        }
        this.#fail(req, `control plane answered ${res.statusCode}${message ? `: ${message}` : ''}`);
      });
      return;
    }
    this.#failures = 0;
    this.#lastError = undefined;
    this.#setConnected(true);
    const lines = new LineSplitter(this.#o.maxLineBytes ?? MAX_STREAM_LINE_BYTES);
    res.on('data', (chunk: Buffer) => {
      if (req !== this.#req) return; // dropped (a line over the bound): what is still in flight is not read
      this.#heard = true;
      const r = lines.push(chunk);
      for (const line of r.lines) if (line) this.#message(line);
      if (r.overflow) {
        // Logged by #fail ("config stream lost; reconnecting") and shown as lastError at /ready.
        this.#fail(req, `a message from the control plane is longer than ${lines.maxBytes} bytes, the most a proxy reads: stream dropped`);
        req.destroy();
      }
    });
    res.on('end', () => this.#fail(req, 'the control plane closed the stream'));
    res.on('error', (err) => this.#fail(req, err.message));
  }

  #message(line: string): void {
    // Checked before any field is read: a malformed message (a control plane of another version,
    // a bug) is refused, never thrown in the stream's data handler, where it would end the proxy.
    const parsed = parseStreamMessage(line);
    if (!parsed.ok) {
      this.#o.log('unusable message from the control plane', { line: line.slice(0, 200), problems: parsed.problems });
      if (parsed.version !== undefined) {
        this.#o.store.refuse(parsed.problems, `control plane version ${parsed.version}`);
        this.#ack({ stream: this.#stream, version: parsed.version, ok: false, problems: parsed.problems });
      }
      return;
    }
    const m = parsed.message;
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

/**
 * NDJSON lines from byte chunks, each line at most `maxBytes`: the bytes of an unfinished line are
 * held as received (no string per chunk, no rescan of what is held), and once they pass the bound
 * the caller is told to drop the stream, so a sender that never ends a line cannot grow the
 * proxy's memory. Lines are decoded as UTF-8 whole, so a character split between chunks survives.
 */
export class LineSplitter {
  readonly maxBytes: number;
  #held: Buffer[] = [];
  #heldBytes = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** The lines `chunk` completes, in order; `overflow` once the unfinished line is over the bound (push nothing more). */
  push(chunk: Buffer): { lines: string[]; overflow: boolean } {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      if (this.#heldBytes + nl - start > this.maxBytes) return { lines, overflow: true };
      this.#held.push(chunk.subarray(start, nl));
      lines.push(Buffer.concat(this.#held, this.#heldBytes + nl - start).toString('utf8'));
      this.#held = [];
      this.#heldBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      this.#held.push(chunk.subarray(start));
      this.#heldBytes += chunk.length - start;
    }
    return { lines, overflow: this.#heldBytes > this.maxBytes };
  }
}
