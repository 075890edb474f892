// Two meshed "pods" in network namespaces, each with the rules of intercept.sh and a proxy (UID
// 2102) holding an identity from a real control plane: the web app's plain http:// requests leave
// through its proxy, cross to the api pod over mTLS (the api side sees the web identity), and
// reach the app port the caller dialled (8080, 9090 or 9191): each app port is redirected to an
// inbound listener of its own (MESHLET_INBOUND_PORT_MAP), so plaintext from outside the pod (a
// kubelet probe, an unmeshed client) reaches the port it dialled too, or is refused where that
// port is strict. A port the api proxy does not serve gets a clear 400; headers cannot steer plaintext.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from '../fixtures/control-plane.ts';
import { metricValue } from '../fixtures/mesh.ts';
import { createNetnsPair, curlIn, plainEnv, requireTools, startProxyIn, startServerIn, type NetnsPair, type NetnsProxy, type Seen } from '../fixtures/netns.ts';

requireTools();

const SCRIPT = fileURLToPath(new URL('../../proxy/intercept/intercept.sh', import.meta.url));
const CP_MAIN = fileURLToPath(new URL('../../control-plane/main.ts', import.meta.url));
const TD = 'spiffe://cluster.local';
const WEB = `${TD}/ns/shop/sa/web`;
const API = `${TD}/ns/shop/sa/api`;
const APP_UID = 1001;
const PORT_MAP = '9090=4144,9191=4145';

let pair: NetnsPair;
let web: NetnsProxy;
let api: NetnsProxy;
let caDir: string;
let webNs: string;
let apiNs: string;
let apiIp: string;
let nowhere: string;

async function intercept(ns: string, env: Record<string, string>): Promise<void> {
  const r = await pair.exec(ns, [SCRIPT], { env: plainEnv(env) });
  if (r.code !== 0) throw new Error(`intercept.sh in ${ns} failed: ${r.stderr}`);
}

t.before(async () => {
  pair = await createNetnsPair('mlmesh');
  webNs = pair.pod;
  apiNs = pair.peer;
  apiIp = pair.peerIp;
  nowhere = `${pair.prefix}.99`;
  // The api pod serves 8080, 9090 and 9191, each redirected to its own proxy listener (as the
  // injector assigns them); 7070 is redirected too, to the first listener, but its proxy does not list it.
  await intercept(webNs, {});
  await intercept(apiNs, { MESHLET_INBOUND_PORTS: '8080,9090,9191,7070', MESHLET_INBOUND_PORT_MAP: PORT_MAP });

  // The control plane runs beside the api pod (port 8443 is not redirected there).
  caDir = mkdtempSync(join(tmpdir(), 'meshlet-netns-cp-'));
  const caFile = join(caDir, 'ca.json');
  cli('identity', 'init', '--ca-file', caFile);
  const cp = pair.spawn(apiNs, [process.execPath, CP_MAIN, '--ca-file', caFile, '--listen', `${apiIp}:8443`, '--admin-listen', '127.0.0.1:9990', '--reload-interval', '1s']);
  let cpErr = '';
  cp.stderr!.on('data', (c: Buffer) => (cpErr += c.toString()));
  for (let i = 0; ; i++) {
    const r = await pair.exec(apiNs, ['curl', '-sf', '--max-time', '1', 'http://127.0.0.1:9990/ready']);
    if (r.code === 0) break;
    if (cp.exitCode !== null || i > 200) throw new Error(`control plane not ready: ${cpErr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const anchors = (JSON.parse(readFileSync(caFile, 'utf8')) as { anchor: { certPem: string } }).anchor.certPem;
  const token = (sa: string) => cli('identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', 'shop', '--service-account', sa).trim();
  const identityArgs = (dir: string) => ['--control-plane', `https://${apiIp}:8443`, '--trust-anchors', join(dir, 'anchors.pem'), '--bootstrap-token-file', join(dir, 'token'), '--namespace', 'shop'];
  const listeners = ['--outbound-listen', '127.0.0.1:4140', '--inbound-listen', '0.0.0.0:4143', '--admin-listen', '127.0.0.1:4191', '--app', '127.0.0.1:8080'];

  await startServerIn(pair, apiNs, '0.0.0.0', 8080, 'api', { uid: APP_UID });
  await startServerIn(pair, apiNs, '0.0.0.0', 9090, 'api-admin', { uid: APP_UID });
  await startServerIn(pair, apiNs, '0.0.0.0', 9191, 'api-metrics', { uid: APP_UID });
  api = await startProxyIn(pair, apiNs, {
    // 8080 and 9090 are permissive (plaintext allowed, as for a kubelet probe or an unmeshed client); 9191 is strict.
    config: { version: 'a1', services: [], inbound: { defaultPolicy: 'all', ports: [{ port: 8080, permissive: true }, { port: 9090, permissive: true }] } },
    files: { 'anchors.pem': anchors, token: token('api') },
    args: (dir) => [...listeners, '--workload', 'api', ...identityArgs(dir)],
    env: { MESHLET_APP_PORTS: '8080,9090,9191', MESHLET_INBOUND_PORT_MAP: PORT_MAP },
  });
  const endpoint = (port: number) => [{ address: `${apiIp}:${port}`, identity: API }];
  web = await startProxyIn(pair, webNs, {
    config: {
      version: 'w1',
      services: [
        { name: 'api.shop', hosts: ['api.shop.svc.cluster.local'], endpoints: endpoint(8080) },
        { name: 'api-admin.shop', hosts: ['api-admin.shop.svc.cluster.local'], endpoints: endpoint(9090) },
        { name: 'api-metrics.shop', hosts: ['api-metrics.shop.svc.cluster.local'], endpoints: endpoint(9191) },
        { name: 'api-old.shop', hosts: ['api-old.shop.svc.cluster.local'], endpoints: endpoint(7070), retry: { attempts: 1 } },
      ],
    },
    files: { 'anchors.pem': anchors, token: token('web') },
    args: (dir) => [...listeners, '--workload', 'web', ...identityArgs(dir)],
  });
  // Both proxies hold a certificate before the tests start.
  for (const ns of [webNs, apiNs]) {
    for (let i = 0; ; i++) {
      const r = await pair.exec(ns, ['curl', '-sf', '--max-time', '1', 'http://127.0.0.1:4191/ready']);
      if (r.code === 0) break;
      if (i > 200) throw new Error(`proxy in ${ns} not ready: ${r.stdout}\n${ns === webNs ? web.stderr() : api.stderr()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});

t.teardown(async () => {
  await web?.stop();
  await api?.stop();
  await pair?.cleanup();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

/** The web app (UID 1001) requests http://<host>:<port><path>, the name resolving to an address where nothing listens. */
function appGet(host: string, port: number, path: string, extra: string[] = []) {
  return curlIn(pair, webNs, ['--resolve', `${host}:${port}:${nowhere}`, ...extra, `http://${host}:${port}${path}`], { uid: APP_UID });
}

const seen = (body: string): Seen => JSON.parse(body) as Seen;

t.test('a plain http:// request from the web app reaches the api app over mTLS with the web identity', async (t) => {
  const r = await appGet('api.shop.svc.cluster.local', 8080, '/hello');
  t.equal(r.status, 200, r.stderr + r.body);
  const s = seen(r.body);
  t.equal(s.server, 'api');
  t.equal(s.url, '/hello');
  t.equal(s.remote, '127.0.0.1', 'delivered by the api proxy');
  t.equal(s.headers['meshlet-dst-port'], undefined, 'the inbound side strips meshlet-dst-port');
  await api.waitForLog((l) => l.direction === 'inbound' && l.path === '/hello');
  const line = api.accessLog().find((l) => l.path === '/hello')!;
  t.equal(line.peer, WEB, 'the api side sees mTLS from the web identity');
  await web.waitForLog((l) => l.direction === 'outbound' && l.path === '/hello' && l.upstream === `${apiIp}:8080`);
});

t.test('a Service on port 80 (no port in Host) whose endpoint is the app on 8080', async (t) => {
  const r = await appGet('api.shop.svc.cluster.local', 80, '/svc-port');
  t.equal(r.status, 200, r.stderr + r.body);
  const s = seen(r.body);
  t.equal(s.server, 'api');
  t.equal(s.headers['host'], 'api.shop.svc.cluster.local');
});

t.test('the caller dialled 9090: its listener (and meshlet-dst-port) take the request to the app on 9090', async (t) => {
  const r = await appGet('api-admin.shop.svc.cluster.local', 9090, '/admin');
  t.equal(r.status, 200, r.stderr + r.body);
  const s = seen(r.body);
  t.equal(s.server, 'api-admin');
  t.equal(s.localPort, 9090);
  t.equal(s.headers['meshlet-dst-port'], undefined);
  await api.waitForLog((l) => l.direction === 'inbound' && l.path === '/admin' && l.peer === WEB);
});

t.test('the caller dialled 9191, a strict port: over mTLS it reaches the app on 9191', async (t) => {
  const r = await appGet('api-metrics.shop.svc.cluster.local', 9191, '/metrics');
  t.equal(r.status, 200, r.stderr + r.body);
  const s = seen(r.body);
  t.equal(s.server, 'api-metrics');
  t.equal(s.localPort, 9191);
  await api.waitForLog((l) => l.direction === 'inbound' && l.path === '/metrics' && l.peer === WEB);
});

t.test("a call by the api Pod's IP (no service names it) reaches that Pod over mTLS on the port dialled", async (t) => {
  // Was: 404 no-route. The IP is an endpoint of the config, so the web proxy knows its identity;
  // passthrough is off in this proxy (no --outbound-passthrough): a Pod the mesh knows is no host outside it.
  for (const [port, server] of [
    [8080, 'api'],
    [9191, 'api-metrics'],
  ] as const) {
    const r = await curlIn(pair, webNs, [`http://${apiIp}:${port}/by-pod-ip`], { uid: APP_UID });
    t.equal(r.status, 200, `:${port}: ${r.stderr}${r.body}`);
    t.equal(seen(r.body).server, server, `:${port} is answered by the server on ${port}`);
    await api.waitForLog((l) => l.direction === 'inbound' && l.path === '/by-pod-ip' && l.upstream === `127.0.0.1:${port}` && l.peer === WEB);
  }
  await web.waitForLog((l) => l.direction === 'outbound' && l.path === '/by-pod-ip' && l.upstream === `${apiIp}:9191` && (l as { dst_service?: string }).dst_service === 'api.shop');
});

t.test('a port the api proxy does not serve: 400 with the reason, the app never sees it', async (t) => {
  const r = await appGet('api-old.shop.svc.cluster.local', 7070, '/old');
  t.equal(r.status, 400, r.body);
  t.equal(r.headers['meshlet-proxy-error'], 'bad-request');
  t.match(r.body, /meshlet-dst-port "7070" is not one of this workload's app ports \(8080, 9090, 9191\)/);
});

t.test('the app cannot steer: its own meshlet-dst-port is replaced by the port it dialled', async (t) => {
  const r = await appGet('api.shop.svc.cluster.local', 8080, '/steer', ['-H', 'meshlet-dst-port: 9090']);
  t.equal(r.status, 200, r.stderr + r.body);
  t.equal(seen(r.body).server, 'api');
});

t.test('plaintext from outside the pod (a kubelet probe, an unmeshed client) reaches the port it dialled, through the proxy', async (t) => {
  // UID 2102 in the web pod is not intercepted: a plaintext client straight to the api pod, as the
  // kubelet probing :8080/healthz and :9090/healthz would be.
  for (const [port, server] of [
    [8080, 'api'],
    [9090, 'api-admin'],
  ] as const) {
    const r = await curlIn(pair, webNs, [`http://${apiIp}:${port}/healthz`], { uid: 2102 });
    t.equal(r.status, 200, `:${port}: ${r.stderr}${r.body}`);
    const s = seen(r.body);
    t.equal(s.server, server, `:${port}/healthz is answered by the server on ${port}`);
    t.equal(s.localPort, port);
    t.equal(s.remote, '127.0.0.1', `:${port}: delivered by the api proxy`);
    await api.waitForLog((l) => l.direction === 'inbound' && l.path === '/healthz' && l.upstream === `127.0.0.1:${port}` && l.peer === '');
  }
  // A plaintext client's meshlet-dst-port is not believed, and never reaches the app.
  const steer = await curlIn(pair, webNs, ['-H', 'meshlet-dst-port: 9090', `http://${apiIp}:8080/plain`], { uid: 2102 });
  t.equal(steer.status, 200, steer.stderr + steer.body);
  t.equal(seen(steer.body).server, 'api', 'the port dialled (8080), not the header');
  t.equal(seen(steer.body).headers['meshlet-dst-port'], undefined);
});

t.test("plaintext to a strict port is refused by that port's listener, not handed to another port's server", async (t) => {
  const refusals = async () => {
    const m = await pair.exec(apiNs, ['curl', '-sf', '--max-time', '2', 'http://127.0.0.1:4191/metrics']);
    return metricValue(m.stdout, 'meshlet_tls_handshake_failures_total', { direction: 'inbound', reason: 'plaintext-on-strict-port' });
  };
  const before = await refusals();
  const r = await curlIn(pair, webNs, [`http://${apiIp}:9191/plain-strict`], { uid: 2102 });
  t.not(r.code, 0, `curl gets no HTTP answer: ${r.stderr.trim()}`);
  t.equal(r.status, 0);
  t.equal(await refusals(), before + 1, 'refused as plaintext on a strict port (9191, not the permissive 8080)');
  await new Promise((r) => setTimeout(r, 200));
  t.notOk(api.accessLog().some((l) => l.path === '/plain-strict'), 'no request was served');
});
