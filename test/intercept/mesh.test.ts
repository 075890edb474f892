// Two meshed "pods" in network namespaces, each with the rules of intercept.sh and a proxy (UID
// 2102) holding an identity from a real control plane: the web app's plain http:// requests leave
// through its proxy, cross to the api pod over mTLS (the api side sees the web identity), and
// reach the app port the caller dialled (8080 or 9090) through `meshlet-dst-port`. A port the
// api proxy does not serve gets a clear 400; plaintext and app-supplied headers cannot steer.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cli } from '../fixtures/control-plane.ts';
import { createNetnsPair, curlIn, plainEnv, requireTools, startProxyIn, startServerIn, type NetnsPair, type NetnsProxy, type Seen } from '../fixtures/netns.ts';

requireTools();

const SCRIPT = fileURLToPath(new URL('../../proxy/intercept/intercept.sh', import.meta.url));
const CP_MAIN = fileURLToPath(new URL('../../control-plane/main.ts', import.meta.url));
const TD = 'spiffe://cluster.local';
const WEB = `${TD}/ns/shop/sa/web`;
const API = `${TD}/ns/shop/sa/api`;
const APP_UID = 1001;

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
  // The api pod serves 8080 and 9090; 7070 is redirected too, but its proxy does not list it.
  await intercept(webNs, {});
  await intercept(apiNs, { MESHLET_INBOUND_PORTS: '8080,9090,7070' });

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
  api = await startProxyIn(pair, apiNs, {
    // 8080 is permissive (plaintext allowed, as for an unmeshed client); 9090 is strict.
    config: { version: 'a1', services: [], inbound: { defaultPolicy: 'all', ports: [{ port: 8080, permissive: true }] } },
    files: { 'anchors.pem': anchors, token: token('api') },
    args: (dir) => [...listeners, '--workload', 'api', ...identityArgs(dir)],
    env: { MESHLET_APP_PORTS: '8080,9090' },
  });
  const endpoint = (port: number) => [{ address: `${apiIp}:${port}`, identity: API }];
  web = await startProxyIn(pair, webNs, {
    config: {
      version: 'w1',
      services: [
        { name: 'api.shop', hosts: ['api.shop.svc.cluster.local'], endpoints: endpoint(8080) },
        { name: 'api-admin.shop', hosts: ['api-admin.shop.svc.cluster.local'], endpoints: endpoint(9090) },
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

t.test('the caller dialled 9090: meshlet-dst-port takes the request to the app on 9090', async (t) => {
  const r = await appGet('api-admin.shop.svc.cluster.local', 9090, '/admin');
  t.equal(r.status, 200, r.stderr + r.body);
  const s = seen(r.body);
  t.equal(s.server, 'api-admin');
  t.equal(s.localPort, 9090);
  t.equal(s.headers['meshlet-dst-port'], undefined);
  await api.waitForLog((l) => l.direction === 'inbound' && l.path === '/admin' && l.peer === WEB);
});

t.test('a port the api proxy does not serve: 400 with the reason, the app never sees it', async (t) => {
  const r = await appGet('api-old.shop.svc.cluster.local', 7070, '/old');
  t.equal(r.status, 400, r.body);
  t.equal(r.headers['meshlet-proxy-error'], 'bad-request');
  t.match(r.body, /meshlet-dst-port "7070" is not one of this workload's app ports \(8080, 9090\)/);
});

t.test('the app cannot steer: its own meshlet-dst-port is replaced by the port it dialled', async (t) => {
  const r = await appGet('api.shop.svc.cluster.local', 8080, '/steer', ['-H', 'meshlet-dst-port: 9090']);
  t.equal(r.status, 200, r.stderr + r.body);
  t.equal(seen(r.body).server, 'api');
});

t.test('plaintext (an unmeshed client) reaches only the first app port; its header is ignored and stripped', async (t) => {
  // UID 2102 in the web pod is not intercepted: a plaintext client straight to the api pod.
  const r = await curlIn(pair, webNs, ['-H', 'meshlet-dst-port: 9090', `http://${apiIp}:8080/plain`], { uid: 2102 });
  t.equal(r.status, 200, r.stderr + r.body);
  const s = seen(r.body);
  t.equal(s.server, 'api', 'the --app port, not 9090');
  t.equal(s.headers['meshlet-dst-port'], undefined);
  // The documented limitation: without SO_ORIGINAL_DST the proxy cannot tell that a plaintext
  // connection was for 9090; it goes to the first app port.
  const other = await curlIn(pair, webNs, [`http://${apiIp}:9090/plain`], { uid: 2102 });
  t.equal(other.status, 200, other.stderr);
  t.equal(seen(other.body).server, 'api', 'plaintext dialled to 9090 lands on the first app port (README: Interception)');
});
