// The config push: every proxy holds a stream (mTLS; identity from its certificate) and gets its
// own view, versioned; it ACKs or NACKs each version (as xDS does). Changes are debounced (100 ms,
// never held past 500 ms) and a view whose version did not change is never re-sent. Once a proxy
// holds a view, the next is sent as a delta (changed services only) when that is under half the
// size of the full view; a NACK (the proxy does not run the delta's base, or refused a version)
// makes the next send a full one. A stream whose proxy is not reading what it was sent (a
// stopped or stuck process) is written nothing more until it drains, then gets the latest view.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { randomUUID } from 'node:crypto';
import type { Tracer } from '@opentelemetry/api';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Clock } from '../../api/runtime.ts';
import type { ProxyConfig } from '../../api/proxy-config.ts';
import { CONFIG_ACK_PATH, CONFIG_STREAM_PATH, DELTA_BASE_PATH, decodeParams, MAX_STREAM_LINE_BYTES, nackField, parseAck, type StreamMessage, type StreamParams } from '../../api/config-stream.ts';
import { deltaOf } from './diff.ts';
import { identityParts } from './mesh-views.ts';

/** Who is on the other end of a stream. */
export interface ProxyInfo extends StreamParams {
  stream: string;
  identity: string;
}

/**
 * A proxy's view, with a version that changes exactly when the view does; or why it cannot be
 * built (`error`); or why there is none yet (`pending`: the source has not listed): either way the
 * proxy is sent nothing and keeps what it runs.
 */
export type View = { version: string; config: ProxyConfig } | { error: string } | { pending: string };

export interface ViewProvider {
  view(p: ProxyInfo): View;
}

export interface ProxyStatus {
  stream: string;
  identity: string;
  workload: string;
  namespace: string;
  pod: string;
  connectedAt: string;
  sent: string | null;
  acked: string | null;
  lastAckAt: string | null;
  /**
   * The proxy's refusal of the version last sent, until it ACKs a version sent since (the same
   * one resent, a fix, or a revert to what it ran): null while the proxy runs what it was sent.
   */
  nack: { version: string; reason: string; at: string } | null;
}

interface Conn {
  info: ProxyInfo;
  res: ServerResponse;
  sent: string;
  /** The view last sent (shared with every proxy of that view), the base of the next delta; undefined: send a full one. */
  sentConfig: ProxyConfig | undefined;
  /** Clock time the current change was first seen (for change → ACK latency). */
  changeAt: number | undefined;
  /**
   * The proxy has not read what was written (Node's buffer is past its high-water mark): nothing
   * more is written until it drains, then the latest view goes. Only the latest view matters, so
   * a proxy that stops reading costs the buffer it had, not every version and ping since.
   */
  blocked: boolean;
  status: ProxyStatus;
}

export interface PushOptions {
  views: ViewProvider;
  clock: Clock;
  registry: Registry;
  debounceMs?: number;
  maxDelayMs?: number;
  pingMs?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Exports a span per config sent (control-plane/tracing.ts); undefined: no spans. */
  tracer?: Tracer;
}

function spiffeOf(req: IncomingMessage): string | undefined {
  const s = req.socket as TLSSocket;
  if (!s.authorized) return undefined;
  const san = s.getPeerCertificate?.()?.subjectaltname ?? '';
  return san.split(', ').find((x) => x.startsWith('URI:spiffe://'))?.slice(4);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export class ConfigPushServer {
  readonly #o: PushOptions;
  readonly #conns = new Map<string, Conn>();
  #timer: NodeJS.Timeout | undefined;
  #firstPendingAt: number | undefined;
  readonly #ping: NodeJS.Timeout;
  readonly #pingMs: number;
  readonly #lines = new Map<string, string>();
  readonly #m;

  constructor(o: PushOptions) {
    this.#o = o;
    const registers = [o.registry];
    this.#m = {
      connected: new Gauge({ name: 'meshlet_cp_connected_proxies', help: 'Proxies holding a config stream.', registers }),
      pushes: new Counter({ name: 'meshlet_cp_pushes_total', help: 'Config versions sent to proxies, by kind (full view or delta).', labelNames: ['kind'], registers }),
      pushBytes: new Histogram({ name: 'meshlet_cp_push_size_bytes', help: 'Size of each config sent.', buckets: [1e3, 1e4, 1e5, 1e6, 1e7], registers }),
      ackLatency: new Histogram({ name: 'meshlet_cp_change_to_ack_seconds', help: 'From a change seen by the control plane to the proxy ACKing it.', buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers }),
      nacks: new Counter({ name: 'meshlet_cp_nacks_total', help: 'Config versions refused by proxies, by first reason.', labelNames: ['reason'], registers }),
      viewErrors: new Counter({ name: 'meshlet_cp_view_errors_total', help: 'Views that could not be built (the proxy keeps its last good config).', registers }),
    };
    this.#pingMs = o.pingMs ?? 15_000;
    this.#ping = setInterval(() => this.#broadcast({ type: 'ping' }), this.#pingMs);
    this.#ping.unref();
  }

  routes(): Record<string, (req: IncomingMessage, res: ServerResponse) => void> {
    return { [CONFIG_STREAM_PATH]: (req, res) => this.#stream(req, res), [CONFIG_ACK_PATH]: (req, res) => this.#ack(req, res) };
  }

  /** The model changed: recompute views soon (debounced), send those whose version moved. */
  changed(): void {
    const now = this.#o.clock.now();
    this.#firstPendingAt ??= now;
    for (const c of this.#conns.values()) c.changeAt ??= now;
    clearTimeout(this.#timer);
    const maxDelay = this.#o.maxDelayMs ?? 500;
    const wait = Math.min(this.#o.debounceMs ?? 100, Math.max(0, this.#firstPendingAt + maxDelay - now));
    this.#timer = setTimeout(() => {
      this.#firstPendingAt = undefined;
      this.#lines.clear();
      for (const c of this.#conns.values()) this.#push(c);
    }, wait);
  }

  status(): ProxyStatus[] {
    return [...this.#conns.values()].map((c) => ({ ...c.status }));
  }

  close(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#ping);
    for (const c of this.#conns.values()) c.res.end();
    this.#conns.clear();
  }

  #stream(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET') return json(res, 405, { error: 'method-not-allowed' });
    const identity = spiffeOf(req);
    if (!identity) return json(res, 401, { error: 'no-client-certificate', message: 'the config stream needs the proxy\'s mTLS certificate from Certify' });
    const decoded = decodeParams(req.url ?? '/');
    if (!decoded.ok) {
      this.#o.log?.('config stream refused: malformed hello', { identity, problem: decoded.problem, level: 'warn' });
      return json(res, 400, { error: 'bad-hello', message: `${decoded.problem} (the proxy's --pod-labels-file must hold the Pod's labels as the kubelet writes them)` });
    }
    const params = decoded.params;
    const info: ProxyInfo = { ...params, stream: randomUUID(), identity };
    const c: Conn = {
      info,
      res,
      sent: params.version,
      sentConfig: undefined,
      changeAt: undefined,
      blocked: false,
      // The namespace shown is the certificate's, as the view's is (mesh-views.ts), not what the proxy claims.
      status: { stream: info.stream, identity, workload: info.workload, namespace: identityParts(identity)?.namespace ?? info.namespace, pod: info.pod, connectedAt: new Date().toISOString(), sent: null, acked: params.version || null, lastAckAt: null, nack: null },
    };
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.write(JSON.stringify({ type: 'hello', stream: info.stream, pingMs: this.#pingMs } satisfies StreamMessage) + '\n');
    this.#conns.set(info.stream, c);
    this.#m.connected.set(this.#conns.size);
    this.#o.log?.('proxy connected', { identity, workload: info.workload, resumeFrom: params.version || null });
    res.on('close', () => {
      this.#conns.delete(info.stream);
      this.#m.connected.set(this.#conns.size);
      this.#o.log?.('proxy disconnected', { identity, workload: info.workload });
    });
    this.#push(c);
  }

  #push(c: Conn): void {
    if (c.blocked) return; // the drain pushes the latest view
    const v = this.#o.views.view(c.info);
    if ('pending' in v) {
      this.#o.log?.('no view yet; the proxy is sent one once there is', { identity: c.info.identity, reason: v.pending });
      return;
    }
    if ('error' in v) {
      this.#m.viewErrors.inc();
      this.#o.log?.('cannot build view; the proxy keeps what it has', { identity: c.info.identity, error: v.error });
      return;
    }
    if (v.version === c.sent) {
      c.changeAt = undefined;
      return;
    }
    // Proxies that share a view share its serialization (one string per version), and proxies
    // that move between the same two versions share the delta's.
    const full = this.#line(v.version, () => ({ type: 'config', version: v.version, config: v.config }));
    // A proxy drops a longer line and reconnects, to get it again: sending it would loop forever.
    // (UTF-8 takes at most 3 bytes per UTF-16 unit: most views need no byte count.)
    if (full.length * 3 > MAX_STREAM_LINE_BYTES && Buffer.byteLength(full) > MAX_STREAM_LINE_BYTES) {
      this.#m.viewErrors.inc();
      this.#o.log?.('cannot send view: larger than a proxy reads; the proxy keeps what it has', { identity: c.info.identity, version: v.version, bytes: Buffer.byteLength(full), max: MAX_STREAM_LINE_BYTES });
      return;
    }
    let line = full;
    let kind = 'full';
    if (c.sentConfig !== undefined && c.sentConfig.version === c.sent) {
      const prev = c.sentConfig;
      const delta = this.#line(`${prev.version}>${v.version}`, () => deltaOf(prev, v.config));
      if (delta.length * 2 < full.length) {
        line = delta;
        kind = 'delta';
      }
    }
    const span = this.#o.tracer?.startSpan('config push', {
      kind: 4, // PRODUCER: a message sent on the proxy's stream
      attributes: { 'meshlet.proxy.identity': c.info.identity, 'meshlet.proxy.workload': c.info.workload, 'meshlet.proxy.namespace': c.info.namespace, 'meshlet.config.version': v.version, 'meshlet.config.previous_version': c.sent, 'messaging.message.body.size': Buffer.byteLength(line) },
    });
    this.#write(c, line);
    c.sent = v.version;
    c.sentConfig = v.config;
    c.status.sent = v.version;
    this.#m.pushes.labels(kind).inc();
    this.#m.pushBytes.observe(Buffer.byteLength(line));
    span?.end();
  }

  /** One serialization per message key (a version, or `from>to` for a delta), kept until the next change. */
  #line(key: string, message: () => StreamMessage): string {
    let line = this.#lines.get(key);
    if (line === undefined) {
      line = JSON.stringify(message()) + '\n';
      if (this.#lines.size > 10_000) this.#lines.clear();
      this.#lines.set(key, line);
    }
    return line;
  }

  #broadcast(m: StreamMessage): void {
    const line = JSON.stringify(m) + '\n';
    // A blocked stream still has bytes on the way: its proxy's silence check is not starved.
    for (const c of this.#conns.values()) if (!c.blocked) this.#write(c, line);
  }

  /** Write a line; past the buffer's high-water mark the stream is blocked until it drains. */
  #write(c: Conn, line: string): void {
    if (c.res.write(line)) return;
    c.blocked = true;
    c.res.once('drain', () => {
      c.blocked = false;
      this.#push(c);
    });
  }

  #ack(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') return json(res, 405, { error: 'method-not-allowed' });
    const identity = spiffeOf(req);
    if (!identity) return json(res, 401, { error: 'no-client-certificate' });
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => {
      body += d;
      if (body.length > 1_000_000) req.destroy();
    });
    req.on('end', () => {
      // Checked whole before a field is read: a malformed one (problems that are not a list of
      // {path, message}) threw in this handler and ended the control plane.
      const parsed = parseAck(body);
      if (!parsed.ok) return json(res, 400, { error: 'bad-ack', message: parsed.problem });
      const ack = parsed.ack;
      const c = this.#conns.get(ack.stream);
      if (!c || c.info.identity !== identity) return json(res, 404, { error: 'unknown-stream' });
      const now = new Date().toISOString();
      if (ack.ok) {
        c.status.acked = ack.version;
        c.status.lastAckAt = now;
        // The proxy runs what it was last sent: an earlier refusal is over.
        if (ack.version === c.sent) c.status.nack = null;
        if (ack.version === c.sent && c.changeAt !== undefined) {
          this.#m.ackLatency.observe((this.#o.clock.now() - c.changeAt) / 1000);
          c.changeAt = undefined;
        }
      } else {
        const reason = ack.problems?.map((p) => `${p.path}: ${p.message}`).join('; ') || 'refused';
        // A refusal of a version no longer the one sent (its answer came late) is counted and
        // logged, but the status follows the proxy's answer to the version sent since.
        if (ack.version === c.sent) c.status.nack = { version: ack.version, reason, at: now };
        // Bounded label: the top-level field of the first problem (services, inbound, ...), from a closed set.
        this.#m.nacks.labels(nackField(ack.problems)).inc();
        this.#o.log?.('proxy refused config', { identity, version: ack.version, reason });
        // The proxy runs something older than what was sent: the next send is a full view, and
        // when it refused a delta only because it lacks the base, that full view goes now.
        c.sentConfig = undefined;
        if (ack.version === c.sent && ack.problems?.[0]?.path === DELTA_BASE_PATH) {
          c.sent = c.status.acked ?? '';
          this.#push(c);
        }
      }
      json(res, 200, { ok: true });
    });
  }
}
