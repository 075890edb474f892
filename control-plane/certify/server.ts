// The Certify listener: HTTPS with the control plane's own leaf, bodies capped, JSON in and out.
// Guarantees: socket I/O only (decisions are CertifyService's); a body over the cap is never buffered.

import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { firstRequestDeadline } from '../first-request-deadline.ts';
import { CERTIFY_PATH, type CertifyOutcome, type CertifyService } from './certify.ts';
import { MAX_BODY_BYTES } from './request.ts';
import type { ServingCredentials } from './serving-cert.ts';

/** After a 413, how much more of the body is read and dropped before the connection is cut. */
const DRAIN_BYTES = 1024 * 1024;
/** A connection must finish its TLS handshake, and then start its first request, within this. */
const FIRST_REQUEST_MS = 10_000;

/**
 * More handlers on the same port (8443), by exact path. The seam for the config stream (another
 * issue): `routes: { '/v1/config': handler }`. Certify owns /v1/certify; every other path is 404.
 */
export type Route = (req: IncomingMessage, res: ServerResponse) => void;

export interface CertifyServerOptions {
  service: CertifyService;
  credentials: ServingCredentials;
  routes?: Readonly<Record<string, Route>>;
  maxBodyBytes?: number;
}

export interface CertifyServer {
  readonly server: https.Server;
  listen(host: string, port: number): Promise<AddressInfo>;
  /** Swap the serving certificate for new connections (open ones keep theirs). */
  setCredentials(c: ServingCredentials): void;
  close(): Promise<void>;
}

/**
 * Client certificates are asked for but not required: Certify callers have none yet; the config
 * stream requires one (it checks `socket.authorized` and the peer's SPIFFE ID itself).
 */
function tlsOptions(c: ServingCredentials): https.ServerOptions {
  return { cert: c.certChainPem, key: c.keyPem, minVersion: 'TLSv1.3', requestCert: true, rejectUnauthorized: false, ca: c.bundlePems };
}

function send(res: ServerResponse, out: CertifyOutcome, close = false): void {
  const body = JSON.stringify(out.ok ? out.body : { error: out.reason, message: out.message }) + '\n';
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' };
  if (!out.ok && out.status === 405) headers.allow = 'POST';
  if (!out.ok && out.status === 401) headers['www-authenticate'] = 'Bearer';
  if (close) headers.connection = 'close';
  res.writeHead(out.status, headers);
  res.end(body);
}

export function createCertifyServer(o: CertifyServerOptions): CertifyServer {
  const max = o.maxBodyBytes ?? MAX_BODY_BYTES;
  const routes = o.routes ?? {};
  const server = https.createServer({ ...tlsOptions(o.credentials), requestTimeout: 15_000, headersTimeout: 10_000, keepAliveTimeout: 5_000, maxHeaderSize: 16 * 1024 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const extra = path === CERTIFY_PATH ? undefined : routes[path];
    if (extra) return extra(req, res);
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const tooLarge = (): void => {
      over = true;
      chunks.length = 0;
      send(res, o.service.refuse('body-too-large', `body larger than ${max} bytes`), true);
    };
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > max) tooLarge();
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Past the cap nothing is kept: the rest is read and dropped (so the client sees the 413
      // instead of a reset), up to DRAIN_BYTES more, then the connection is cut.
      if (over) {
        if (size > max + DRAIN_BYTES) req.destroy();
        return;
      }
      if (size > max) return tooLarge();
      chunks.push(c);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (over) return;
      o.service
        .handle({ method: req.method ?? '', path, contentType: req.headers['content-type'], authorization: req.headers.authorization, body: Buffer.concat(chunks) })
        .then((out) => send(res, out), (e: Error) => send(res, o.service.refuse('internal', e.message)));
    });
  });
  server.on('tlsClientError', () => {}); // a failed handshake is the client's problem; nothing to serve
  firstRequestDeadline(server, FIRST_REQUEST_MS);

  return {
    server,
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      }),
    setCredentials: (c) => server.setSecureContext(tlsOptions(c)),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
