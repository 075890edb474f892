// The Service dashboard's "Requests in flight" against a real Prometheus scraping two real proxies:
// web calls api, api calls nothing. Both are services with proxies: the panel must show each
// one's in-flight requests, the leaf's included (its proxy has inbound series only).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { request } from 'undici';
import { findPrometheus, startPrometheus } from '../../demo/prometheus.ts';
import { reservedPort, startProxyProcess, startUpstream } from '../fixtures/mesh.ts';

if (!findPrometheus()) throw new Error('prometheus not found: apt-get install prometheus (scripts/install-deps.sh does it)');

const GRAFANA = new URL('../../manifests/grafana/', import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** One series whose value is 2. */
const two = (xs: Array<{ value: number }>) => xs.length === 1 && xs[0]!.value === 2;

t.test("a leaf service's requests in flight show on its Service dashboard", async (t) => {
  const timers: NodeJS.Timeout[] = [];
  const api = await startUpstream((req, res) => {
    req.resume();
    if (req.url === '/hold') timers.push(setTimeout(() => res.end('held'), 6000));
    else res.end('ok');
  });
  const apiPort = Number(api.address.split(':')[1]);
  const apiProxy = await startProxyProcess({ config: { version: 'a1', services: [], inbound: { ports: [{ port: apiPort, permissive: true }], defaultPolicy: 'all' } }, appPort: apiPort, workload: 'api', args: ['--namespace', 'shop'] });
  const webProxy = await startProxyProcess({ config: { version: 'w1', services: [{ name: 'api', endpoints: [{ address: `127.0.0.1:${apiProxy.inboundPort}` }] }] }, workload: 'web', args: ['--namespace', 'shop'] });
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-inflight-'));
  const prom = await startPrometheus(
    dir,
    { controlPlane: '127.0.0.1:1', proxies: [{ workload: 'web', namespace: 'shop', admin: `127.0.0.1:${webProxy.adminPort}` }, { workload: 'api', namespace: 'shop', admin: `127.0.0.1:${apiProxy.adminPort}` }] },
    { port: await reservedPort(), scrapeInterval: '1s' },
  );
  t.teardown(async () => {
    prom.process.kill('SIGTERM');
    for (const x of timers) clearTimeout(x);
    await webProxy.stop('SIGKILL');
    await apiProxy.stop('SIGKILL');
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const get = async (path: string) => (await request(`${webProxy.outboundUrl}${path}`, { headers: { host: 'api' } })).body.text();
  for (let i = 0; i < 3; i++) await get('/');
  // Prometheus applies new targets after up to ~5 s: wait until both proxies have been scraped.
  for (let i = 0; i < 150; i++) {
    const up = (await (await fetch(`${prom.url}/api/v1/query?${new URLSearchParams({ query: 'meshlet_requests_total' })}`)).json()) as { data: { result: unknown[] } };
    if (up.data.result.length >= 2) break;
    await sleep(100);
  }
  const held = [get('/hold'), get('/hold')];
  const dash = JSON.parse(readFileSync(join(GRAFANA, 'meshlet-service.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  const expr = dash.panels.find((p) => p.title === 'Requests in flight')!.targets![0]!.expr;
  const panel = async (service: string): Promise<Array<{ instance: string; value: number }>> => {
    const q = expr.replaceAll('$namespace', 'shop').replaceAll('$service', service);
    const r = (await (await fetch(`${prom.url}/api/v1/query?${new URLSearchParams({ query: q })}`)).json()) as { data: { result: Array<{ metric: { instance: string }; value: [number, string] }> } };
    return r.data.result.map((s) => ({ instance: s.metric.instance, value: Number(s.value[1]) }));
  };
  // Each proxy is scraped every second, not at the same moment, while the two requests are held
  // (6 s): wait until both panels have seen them.
  let leaf: Array<{ instance: string; value: number }> = [];
  let caller: Array<{ instance: string; value: number }> = [];
  for (let i = 0; i < 45 && !(two(leaf) && two(caller)); i++) {
    await sleep(100);
    [leaf, caller] = await Promise.all([panel('api'), panel('web')]);
  }
  t.same(leaf, [{ instance: `127.0.0.1:${apiProxy.adminPort}`, value: 2 }], "api (calls nothing): its proxy's two held requests");
  t.same(caller, [{ instance: `127.0.0.1:${webProxy.adminPort}`, value: 2 }], "web: its proxy's two calls out");
  await Promise.all(held);
});
