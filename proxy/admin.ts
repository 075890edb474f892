// The admin server: /live, /ready (200 once config is loaded and not draining, with the reason
// otherwise), /metrics (the proxy's own registry), /config (the config in force, its version, and
// the Pod's own default inbound policy that replaces the config's, if it has one),
// /errors (the last errors the proxy answered itself, newest first).
import type { ErrorsDocument } from '../api/proxy-admin.ts';
import type * as HttpModule from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ConfigStore } from './config/store.ts';
import type { ProxyMetrics } from './telemetry/metrics.ts';
import type { RecentErrors } from './telemetry/recent-errors.ts';

// Not `import http from 'node:http'`: the ESM facade of node:http reads every export, which loads
// Node's bundled undici, http2 and zlib (~14 MB of RSS per proxy, measured). require() does not.
const http = process.getBuiltinModule('node:http') as typeof HttpModule;

export interface AdminDeps {
  store: ConfigStore;
  metrics: ProxyMetrics;
  /** Extra readiness conditions (certificate, control plane...), each a reason or undefined. */
  notReady: () => string[];
  /** Extra detail shown at /ready (identity, renewal errors). */
  detail?: () => Record<string, unknown>;
  recentErrors?: RecentErrors;
  /** The Pod's own default inbound policy (MESHLET_DEFAULT_INBOUND_POLICY), shown at /config: it replaces the config's. */
  defaultInboundPolicy?: string | undefined;
}

export function adminServer(d: AdminDeps): HttpModule.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown) => {
      const s = JSON.stringify(body, null, 2) + '\n';
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
      res.end(s);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'method not allowed' });
    switch (path) {
      case '/live':
        return json(200, { live: true });
      case '/ready': {
        const reasons = d.store.current ? [] : ['no config loaded yet'];
        reasons.push(...d.notReady());
        const last = d.store.lastError;
        return json(reasons.length === 0 ? 200 : 503, { ready: reasons.length === 0, reasons, version: d.store.current?.version ?? null, lastRefusal: last ?? null, ...d.detail?.() });
      }
      case '/metrics':
        d.metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': d.metrics.registry.contentType });
            res.end(text);
          },
          (err: Error) => json(500, { error: err.message }),
        );
        return;
      case '/config': {
        const cur = d.store.current;
        return json(cur ? 200 : 503, { version: cur?.version ?? null, config: cur?.doc ?? null, defaultInboundPolicy: d.defaultInboundPolicy ?? null, lastRefusal: d.store.lastError ?? null });
      }
      case '/errors':
        return json(200, { total: d.recentErrors?.total ?? 0, errors: d.recentErrors?.list() ?? [], lastByReason: d.recentErrors?.lastByReason() ?? [] } satisfies ErrorsDocument);
      default:
        return json(404, { error: `unknown admin path ${path}`, paths: ['/live', '/ready', '/metrics', '/config', '/errors'] });
    }
  });
}

export function listenAdmin(server: HttpModule.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server.address() as AddressInfo));
  });
}
