// Routing on real sockets: destination from Host and absolute-form, route matches (path, method,
// headers, first wins), no route → 404 with a reason, weighted split 90/10 within ±2 %.
import t from 'tap';
import { request } from 'undici';
import { startUpstream, startProxyProcess, pool, load } from '../fixtures/mesh.ts';

t.test('routes by host, path, method and headers; 404 with reason otherwise', async (t) => {
  const v1 = await startUpstream();
  const v2 = await startUpstream();
  const admin = await startUpstream();
  const p = await startProxyProcess({
    config: {
      version: 'r1',
      services: [
        {
          name: 'api',
          hosts: ['api.shop', 'api.shop.svc.cluster.local'],
          endpoints: [{ address: v1.address }],
          routes: [
            { name: 'canary-header', match: { headers: [{ name: 'X-Canary', value: '1' }] }, backends: [{ service: 'api-v2', weight: 1 }] },
            { name: 'admin-post', match: { path: { prefix: '/admin' }, method: 'POST' }, backends: [{ service: 'api-admin', weight: 1 }] },
            { name: 'exact', match: { path: { exact: '/v2' } }, backends: [{ service: 'api-v2', weight: 1 }] },
            { name: 'rest', match: { path: { prefix: '/' } } },
          ],
        },
        { name: 'api-v2', endpoints: [{ address: v2.address }] },
        { name: 'api-admin', endpoints: [{ address: admin.address }] },
        { name: 'closed', endpoints: [{ address: v1.address }], routes: [{ name: 'only-get', match: { method: 'GET', path: { prefix: '/open' } } }] },
      ],
    },
  });
  t.teardown(async () => {
    await p.stop();
    await Promise.all([v1.close(), v2.close(), admin.close()]);
  });
  const get = async (host: string, path: string, opts: { method?: string; headers?: Record<string, string> } = {}) => {
    const r = await request(`${p.outboundUrl}${path}`, { method: (opts.method ?? 'GET') as 'GET', headers: { host, ...opts.headers } });
    return { status: r.statusCode, from: r.headers['x-upstream'], reason: r.headers['meshlet-proxy-error'], body: await r.body.text() };
  };
  t.equal((await get('api', '/x')).from, String(v1.port), 'plain host → service itself (catch-all route)');
  t.equal((await get('api.shop:8080', '/x')).from, String(v1.port), 'an alias with a port');
  t.equal((await get('API.Shop.svc.cluster.local', '/x')).from, String(v1.port), 'host match is case-insensitive');
  t.equal((await get('api', '/x', { headers: { 'x-canary': '1' } })).from, String(v2.port), 'header match (first route) wins');
  t.equal((await get('api', '/admin/users', { method: 'POST' })).from, String(admin.port), 'prefix + method');
  t.equal((await get('api', '/admin/users')).from, String(v1.port), 'same path, other method → next route');
  t.equal((await get('api', '/adminx', { method: 'POST' })).from, String(v1.port), 'prefix matches on segment boundaries');
  t.equal((await get('api', '/v2')).from, String(v2.port), 'exact path');
  t.equal((await get('api', '/v2/more')).from, String(v1.port), 'exact does not match longer paths');
  const unknown = await get('nowhere', '/');
  t.equal(unknown.status, 404);
  t.equal(unknown.reason, 'no-route');
  t.match(unknown.body, /no service for host "nowhere"/);
  const noRoute = await get('closed', '/elsewhere');
  t.equal(noRoute.status, 404);
  t.equal(noRoute.reason, 'no-route');
  t.match(noRoute.body, /no route of service "closed"/);
  // Absolute-form (an app using the proxy as HTTP_PROXY) routes by the URL's authority.
  const abs = await new Promise<{ status: number; from: string | undefined }>((resolve, reject) => {
    import('node:http').then(({ request: req }) => {
      const r = req({ host: '127.0.0.1', port: p.outboundPort, path: 'http://api-v2/abs?q=1', headers: { host: 'api-v2' } }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, from: res.headers['x-upstream'] as string | undefined });
      });
      r.on('error', reject);
      r.end();
    }, reject);
  });
  t.equal(abs.from, String(v2.port), 'absolute-form request-target');
  t.equal(v2.seen.at(-1)?.url, '/abs?q=1', 'forwarded in origin-form with the query');
});

t.test("a service of one port (a Kubernetes Service's second port) takes the requests whose Host names that port; the others, the service of the host", async (t) => {
  const web = await startUpstream();
  const metrics = await startUpstream();
  const p = await startProxyProcess({
    config: {
      version: 'p1',
      services: [
        { name: 'api.shop', hosts: ['api', '10.96.0.12'], endpoints: [{ address: web.address }] },
        { name: 'api.shop:9090', port: 9090, hosts: ['api', '10.96.0.12'], endpoints: [{ address: metrics.address }] },
      ],
    },
  });
  t.teardown(async () => {
    await p.stop();
    await Promise.all([web.close(), metrics.close()]);
  });
  const from = async (host: string) => {
    const r = await request(`${p.outboundUrl}/x`, { headers: { host } });
    await r.body.text();
    return r.headers['x-upstream'];
  };
  t.equal(await from('api:9090'), String(metrics.port), 'api:9090 → the 9090 service');
  t.equal(await from('api.shop:9090'), String(metrics.port), 'by its canonical name');
  t.equal(await from('10.96.0.12:9090'), String(metrics.port), 'by cluster IP');
  t.equal(await from('api'), String(web.port), 'no port → the service of the host');
  t.equal(await from('api:80'), String(web.port), 'another port → the service of the host');
  const m = await p.metrics();
  t.match(m, /dst_service="api\.shop:9090"/, 'labelled with the port in metrics');
  // A service of one port must be named for it, and cannot share a host and port with another.
  const bad = { name: 'api.shop:9090', port: 9091, endpoints: [{ address: metrics.address }] };
  p.writeConfig({ version: 'p2', services: [{ name: 'api.shop', endpoints: [{ address: web.address }] }, bad] });
  for (const end = Date.now() + 10_000; !p.stderr().includes('config refused') && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50));
  t.match(p.stderr(), /a service for one port is named <service>:<port> and sets that port; \\"api\.shop:9090\\" has port 9091/, 'refused, saying why');
  t.equal(JSON.parse(await (await request(`${p.adminUrl}/config`)).body.text()).version, 'p1', 'the config in force stays');
});

t.test('meshlet-dst-override names the service when Host does not (a meshed ingress); it is not forwarded, Host goes on as sent', async (t) => {
  const web = await startUpstream();
  const admin = await startUpstream();
  const p = await startProxyProcess({
    config: {
      version: 'o1',
      services: [
        { name: 'web.shop', hosts: ['web', 'web.shop.svc.cluster.local'], endpoints: [{ address: web.address }] },
        { name: 'web.shop:9090', port: 9090, hosts: ['web', 'web.shop.svc.cluster.local'], endpoints: [{ address: admin.address }] },
      ],
    },
  });
  t.teardown(async () => {
    await p.stop();
    await Promise.all([web.close(), admin.close()]);
  });
  const send = async (headers: Record<string, string>) => {
    const r = await request(`${p.outboundUrl}/cart`, { headers });
    return { status: r.statusCode, from: r.headers['x-upstream'], reason: r.headers['meshlet-proxy-error'], body: await r.body.text() };
  };
  t.equal((await send({ host: 'shop.example.com' })).reason, 'no-route', 'the public host names no service');
  const viaOverride = await send({ host: 'shop.example.com', 'meshlet-dst-override': 'web.shop.svc.cluster.local:80' });
  t.equal(viaOverride.from, String(web.port), 'routed by the override');
  t.equal(web.seen[0]?.headers.host, 'shop.example.com', 'the upstream gets Host as sent');
  t.equal(web.seen[0]?.headers['meshlet-dst-override'], undefined, 'and not the override');
  t.equal((await send({ host: 'shop.example.com', 'meshlet-dst-override': 'web:9090' })).from, String(admin.port), "the override's port picks a Service's other port");
  const unknown = await send({ host: 'web', 'meshlet-dst-override': 'nowhere.shop' });
  t.equal(unknown.status, 404, 'an override naming no service: 404, never a fallback to Host');
  t.match(unknown.body, /no service for host "nowhere\.shop" \(meshlet-dst-override\)/);
});

t.test('a 90/10 split over 10 000 requests lands within ±2 %', async (t) => {
  const v1 = await startUpstream();
  const v2 = await startUpstream();
  const p = await startProxyProcess({
    config: {
      version: 's1',
      services: [
        { name: 'api', endpoints: [], routes: [{ name: 'split', backends: [{ service: 'api-v1', weight: 90 }, { service: 'api-v2', weight: 10 }] }] },
        { name: 'api-v1', endpoints: [{ address: v1.address }] },
        { name: 'api-v2', endpoints: [{ address: v2.address }] },
      ],
    },
    args: ['--access-log', 'off'],
  });
  const client = pool(p.outboundUrl);
  t.teardown(async () => {
    await client.close();
    await p.stop();
    await Promise.all([v1.close(), v2.close()]);
  });
  const r = await load(client, { count: 10_000, concurrency: 32, host: 'api', timeoutMs: 90_000 });
  t.equal(r.errors.length, 0, 'no client errors');
  t.equal(r.statuses.get(200), 10_000, 'all 200');
  const share = v2.hits / (v1.hits + v2.hits);
  t.ok(Math.abs(share - 0.1) <= 0.02, `v2 share ${(share * 100).toFixed(2)} % is 10 ± 2 %`);
  t.equal(v1.hits + v2.hits, 10_000, 'every request reached exactly one backend');
});
