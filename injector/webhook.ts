// The control plane's admission webhook server: POST /inject (the proxy injector: the API server
// sends each Pod CREATE the mutating configuration selects; review.ts answers) and POST /validate
// (the meshlet.io validator: each CREATE/UPDATE the validating configuration selects; validate.ts
// answers). Guarantees: a bad request gets a clear 4xx and a log line and the server keeps serving;
// new connections always get the current certificate.

import { readFileSync, statSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Clock } from '../api/runtime.ts';
import type { WallClock } from '../control-plane/ca/index.ts';
import { makeServingCredentials, servingRenewAtMs, type ServingCredentials, type ServingNames } from '../control-plane/certify/serving-cert.ts';
import type { ControlPlaneService, HostPort, Log } from '../control-plane/control-plane.ts';
import { FirstRequestDeadlineError, firstRequestDeadline } from '../control-plane/first-request-deadline.ts';
import type { CaDocument } from '../control-plane/store/ca-document.ts';
import type { InjectorMetrics, ValidationMetrics } from './metrics.ts';
import { review } from './review.ts';
import type { InjectSettings } from './settings.ts';
import { validateReview } from './validate.ts';

export const WEBHOOK_PATH = '/inject';
/** The validating webhook's path (manifests/webhook/validatingwebhookconfiguration.yaml). */
export const VALIDATE_PATH = '/validate';
/** The API server caps objects near 1.5 MiB (etcd); a review carries the object once for CREATE. */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
export const WEBHOOK_SERVICE = 'meshlet-webhook';
/** A connection must finish its TLS handshake, and then start its first request, within this. */
const FIRST_REQUEST_MS = 10_000;

export interface TlsPair {
  cert: string;
  key: string;
}

/** Where the serving certificate comes from: asked on every new connection, so it must be cheap when unchanged. */
export interface CredentialSource {
  /** The pair to use now; the same object while it is unchanged. */
  current(): TlsPair;
}

/**
 * A leaf from the meshlet CA (DNS names meshlet-webhook.<ns>.svc ...), re-issued when the CA state
 * changes (rotation) or 70 % into its life. The API server checks it against the webhook's caBundle
 * (the trust bundle).
 */
export function caCredentials(o: { ca: () => CaDocument | undefined; names: ServingNames; wallClock: WallClock }): CredentialSource {
  let forDoc: CaDocument | undefined;
  let creds: ServingCredentials | undefined;
  let pair: TlsPair | undefined;
  return {
    current() {
      const doc = o.ca();
      if (!doc) {
        if (pair) return pair; // keep serving with the last one; the CA comes back on the next reload
        throw new Error('no CA state loaded: cannot issue the webhook serving certificate');
      }
      if (!creds || !pair || doc !== forDoc || o.wallClock.nowMs() >= servingRenewAtMs(creds)) {
        creds = makeServingCredentials(doc.state, o.names, { now: o.wallClock.nowMs() });
        forDoc = doc;
        pair = { cert: creds.certChainPem, key: creds.keyPem };
      }
      return pair;
    },
  };
}

/** PEM files (a Secret from cert-manager, say): re-read when their mtime changes, checked at most every 10 s. */
export function fileCredentials(o: { certFile: string; keyFile: string; clock: Clock; checkEveryMs?: number }): CredentialSource {
  const stamp = () => `${statSync(o.certFile).mtimeMs}:${statSync(o.keyFile).mtimeMs}`;
  const read = (): TlsPair => ({ cert: readFileSync(o.certFile, 'utf8'), key: readFileSync(o.keyFile, 'utf8') });
  let seen = stamp();
  let pair = read();
  let checkedAt = o.clock.now();
  return {
    current() {
      if (o.clock.now() - checkedAt < (o.checkEveryMs ?? 10_000)) return pair;
      checkedAt = o.clock.now();
      try {
        const s = stamp();
        if (s !== seen) {
          pair = read();
          seen = s;
        }
      } catch {
        // Mid-rotation (a Secret volume swaps a symlink): keep the last good pair, look again later.
      }
      return pair;
    },
  };
}

export interface WebhookOptions {
  listen: HostPort;
  credentials: (ctx: { ca: () => CaDocument | undefined }) => CredentialSource;
  settings: (ca: CaDocument | undefined) => InjectSettings;
  metrics: InjectorMetrics;
  validationMetrics: ValidationMetrics;
  log: Log;
  clock: Clock;
  maxBodyBytes?: number;
}

export interface Webhook extends ControlPlaneService {
  address(): AddressInfo | undefined;
}

const json = (res: http.ServerResponse, status: number, body: unknown, close = false): void => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(close ? { connection: 'close' } : {}) });
  res.end(text);
};

export function createWebhook(o: WebhookOptions): Webhook {
  let server: https.Server | undefined;
  let addr: AddressInfo | undefined;
  const maxBody = o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;

  const handle = (ca: () => CaDocument | undefined, req: http.IncomingMessage, res: http.ServerResponse): void => {
    const path = (req.url ?? '').split('?')[0];
    const validating = path === VALIDATE_PATH;
    const reject = (status: number, error: string, close = false) => {
      o.log('warn', 'webhook request refused', { status, error, method: req.method, path: req.url, remote: req.socket.remoteAddress });
      // No review was answered: no duration.
      if (validating) o.validationMetrics.count('other', 'error');
      else o.metrics.count({ outcome: 'error', reason: 'bad-review' });
      json(res, status, { error }, close);
    };
    if (path !== WEBHOOK_PATH && !validating) return reject(404, `no such path ${JSON.stringify(path)}: the webhook answers POST ${WEBHOOK_PATH} (the injector) and POST ${VALIDATE_PATH} (the meshlet.io validator)`);
    if (req.method !== 'POST') return reject(405, `method ${req.method} not allowed: POST an AdmissionReview to ${path}`);
    // Past the limit the body is read and dropped, then answered: a reply (and close) while the client is
    // still sending would reach it as a connection reset instead of the 413. Far past it, just hang up.
    let oversized = Number(req.headers['content-length'] ?? 0) > maxBody;
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBody) oversized = true;
      if (size > 16 * maxBody) {
        done = true;
        o.log('warn', 'webhook request refused', { status: 413, error: `body past ${16 * maxBody} bytes; connection closed`, remote: req.socket.remoteAddress });
        req.destroy();
      }
      if (!oversized) chunks.push(c);
    });
    req.on('error', () => {
      done = true; // the client went away; nothing to answer
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      if (oversized) return reject(413, `body larger than ${maxBody} bytes: not an AdmissionReview for one object`, true);
      const t0 = o.clock.now();
      const body = Buffer.concat(chunks).toString('utf8');
      if (validating) {
        const v = validateReview(body);
        json(res, v.status, v.body);
        const seconds = (o.clock.now() - t0) / 1000;
        o.validationMetrics.observe(v.kind, v.outcome, seconds);
        const msg = v.status === 400 ? 'malformed AdmissionReview' : v.outcome === 'denied' ? `${v.kind} refused` : v.outcome === 'allowed' ? `${v.kind} admitted` : v.outcome === 'skipped' ? 'not validated (allowed)' : `${v.kind} review refused`;
        o.log(v.outcome === 'allowed' ? 'info' : 'warn', msg, { ...v.fields, path: VALIDATE_PATH, kind: v.kind, outcome: v.outcome, ms: Math.round(seconds * 1e5) / 100 });
        return;
      }
      const a = review(body, () => o.settings(ca()));
      json(res, a.status, a.body);
      const seconds = (o.clock.now() - t0) / 1000;
      o.metrics.observe(a.outcome, seconds);
      const level = a.outcome.outcome === 'error' ? 'warn' : 'info';
      const msg = a.status === 400 ? 'malformed AdmissionReview' : a.outcome.outcome === 'injected' ? 'proxy injected' : a.outcome.outcome === 'skipped' ? 'Pod left alone' : 'Pod refused';
      o.log(level, msg, { ...a.fields, outcome: a.outcome.outcome, reason: a.outcome.reason, ms: Math.round(seconds * 1e5) / 100 });
    });
  };

  return {
    name: 'webhook',
    address: () => addr,
    async start(ctx) {
      const creds = o.credentials(ctx);
      let pair = creds.current();
      const s = https.createServer({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }, (req, res) => handle(ctx.ca, req, res));
      // Before the TLS socket is made for a connection: swap in a renewed certificate if there is one.
      // (SNICallback would not do: clients that dial an IP, like the API server with a url, send no SNI.)
      s.prependListener('connection', () => {
        try {
          const next = creds.current();
          if (next !== pair) {
            s.setSecureContext({ cert: next.cert, key: next.key });
            pair = next;
          }
        } catch (e) {
          o.log('error', 'webhook serving certificate not renewed; keeping the current one', { error: (e as Error).message });
        }
      });
      s.headersTimeout = 10_000;
      s.requestTimeout = 15_000;
      s.keepAliveTimeout = 30_000;
      // A client that stalls is told as such (not as the "socket hang up" its close gives the handshake).
      firstRequestDeadline(s, FIRST_REQUEST_MS, (e, remote) => o.log('warn', `webhook connection ${e.message}`, { remote }));
      s.on('tlsClientError', (e) => {
        if (!(e instanceof FirstRequestDeadlineError)) o.log('warn', 'webhook TLS handshake failed', { error: e.message });
      });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(o.listen.port, o.listen.host, () => {
          s.off('error', reject);
          resolve();
        });
      });
      server = s;
      addr = s.address() as AddressInfo;
      o.log('info', 'injector webhook serving', { listen: `${addr.address}:${addr.port}`, path: WEBHOOK_PATH, validate: VALIDATE_PATH });
    },
    notReady: () => (server ? [] : ['not listening yet']),
    async close() {
      const s = server;
      server = undefined;
      if (!s) return;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeIdleConnections();
      });
    },
  };
}
