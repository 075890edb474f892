// The control plane's admin server: /live (the process answers), /ready (200 once the CA is
// loaded and Certify serves, with the reasons otherwise), /metrics. Guarantees: GET/HEAD only, no secrets.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface AdminDeps {
  registry: Registry;
  /** Why the control plane is not ready; [] when it is. */
  notReady: () => string[];
  /** Extra fields for /ready (CA phase, serials, last reload error). */
  status?: () => Record<string, unknown>;
  /** More read-only JSON documents by exact path (e.g. /proxies for `meshlet proxy-status`). */
  documents?: Readonly<Record<string, () => unknown>>;
}

export function createAdminServer(d: AdminDeps): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      const s = JSON.stringify(body, null, 2) + '\n';
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
      res.end(req.method === 'HEAD' ? undefined : s);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method not allowed' });
    switch (path) {
      case '/live':
        return json(200, { live: true });
      case '/ready': {
        const reasons = d.notReady();
        return json(reasons.length === 0 ? 200 : 503, { ready: reasons.length === 0, reasons, ...d.status?.() });
      }
      case '/metrics':
        d.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': d.registry.contentType });
            res.end(text);
          },
          (e: Error) => json(500, { error: e.message }),
        );
        return;
      default: {
        const doc = path === undefined ? undefined : d.documents?.[path];
        if (doc) return json(200, doc());
        return json(404, { error: `unknown admin path ${path}`, paths: ['/live', '/ready', '/metrics', ...Object.keys(d.documents ?? {})] });
      }
    }
  });
}

export function listen(server: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
