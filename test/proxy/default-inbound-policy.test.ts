// Incremental adoption through a real proxy with a mesh identity: the config is what the control
// plane pushes in a cluster (default all-authenticated, no permissive port). With the Pod's
// config.meshlet.io/default-inbound-policy: all-unauthenticated (MESHLET_DEFAULT_INBOUND_POLICY,
// here from inject() itself) an unmeshed, plaintext client reaches the app and a meshed one still
// does over mTLS; without it the same plaintext client is refused at the first byte. A port an
// AuthorizationPolicy guards still refuses plaintext (403, the policy named); deny lets nothing in
// that no policy allows; a bad value stops the proxy at start.
import t from 'tap';
import net from 'node:net';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { inject, type PodLike } from '../../injector/inject.ts';
import { defaultSettings } from '../../injector/settings.ts';
import { proxyArgv } from '../../proxy/launch.ts';
import type { ProxyConfig } from '../../api/proxy-config.ts';
import { startUpstream, startProxyProcess, metricValue, reservedPort, type ProxyProcess, type Upstream } from '../fixtures/mesh.ts';
import { startControlPlane, identityArgs, type ControlPlane } from '../fixtures/control-plane.ts';

const TD = 'spiffe://cluster.local';
const WEB = `${TD}/ns/shop/sa/web`;
const API = `${TD}/ns/shop/sa/api`;

/** MESHLET_DEFAULT_INBOUND_POLICY as the injector writes it for a Pod with these annotations. */
function injectedPolicy(annotations: Record<string, string>): string {
  const pod: PodLike = { metadata: { name: 'api-1', namespace: 'shop', annotations }, spec: { containers: [{ name: 'app', image: 'api:1', ports: [{ containerPort: 8080 }] }] } };
  const r = inject(pod, defaultSettings({ trustAnchorsPem: '-----BEGIN CERTIFICATE-----' }));
  if (r.outcome !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`);
  const containers = r.patch.flatMap((op) => ('value' in op ? (Array.isArray(op.value) ? op.value : [op.value]) : [])) as Array<{ name?: string; env?: Array<{ name: string; value?: string }> }>;
  const value = containers.find((c) => c?.name === 'meshlet-proxy')?.env?.find((e) => e.name === 'MESHLET_DEFAULT_INBOUND_POLICY')?.value;
  if (value === undefined) throw new Error('the injected proxy has no MESHLET_DEFAULT_INBOUND_POLICY');
  return value;
}

/** What the control plane pushes in a cluster: the mesh default, no permissive port; `policies` guard ports. */
const clusterConfig = (version: string, policies: NonNullable<ProxyConfig['inbound']>['policies'] = []): ProxyConfig => ({ version, services: [], inbound: { defaultPolicy: 'all-authenticated', policies } });

/** One plaintext request, as an unmeshed client sends it: the status line and body, or how the connection ended. */
function plaintext(port: number, path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: api.shop.svc\r\nConnection: close\r\n\r\n`));
    let text = '';
    s.on('data', (d) => (text += d.toString()));
    s.on('error', () => resolve(text || 'reset'));
    s.on('close', () => resolve(text || 'closed'));
  });
}

let cp: ControlPlane;
let app: Upstream;
let open: ProxyProcess;
let strict: ProxyProcess;
let web: ProxyProcess;

t.before(async () => {
  cp = await startControlPlane();
  app = await startUpstream((req, res) => {
    req.resume();
    res.end(`app ${req.url}`);
  });
  open = await startProxyProcess({
    config: clusterConfig('o1'),
    appPort: app.port,
    workload: 'api',
    env: { MESHLET_DEFAULT_INBOUND_POLICY: injectedPolicy({ 'config.meshlet.io/default-inbound-policy': 'all-unauthenticated' }) },
    args: identityArgs(cp, 'shop', 'api'),
  });
  strict = await startProxyProcess({
    config: clusterConfig('s1'),
    appPort: app.port,
    workload: 'api',
    env: { MESHLET_DEFAULT_INBOUND_POLICY: injectedPolicy({}) },
    args: identityArgs(cp, 'shop', 'api'),
  });
  web = await startProxyProcess({
    config: { version: 'w1', services: [{ name: 'api', endpoints: [{ address: `127.0.0.1:${open.inboundPort}`, identity: API }] }] },
    workload: 'web',
    args: identityArgs(cp, 'shop', 'web'),
  });
});
t.teardown(async () => {
  await web?.stop();
  await open?.stop();
  await strict?.stop();
  await app?.close();
  await cp?.stop();
});

t.test('the injector writes the annotation, and all-authenticated without it', async (t) => {
  t.equal(injectedPolicy({ 'config.meshlet.io/default-inbound-policy': 'all-unauthenticated' }), 'all-unauthenticated');
  t.equal(injectedPolicy({}), 'all-authenticated', "meshlet's safe default");
});

t.test('all-unauthenticated: an unmeshed client reaches the app in plaintext, a meshed one over mTLS', async (t) => {
  const before = app.hits;
  const got = await plaintext(open.inboundPort, '/orders');
  t.match(got, /^HTTP\/1\.1 200 /, 'plaintext answered');
  t.match(got, /app \/orders$/, 'by the app');
  const meshed = await request(`${web.outboundUrl}/orders/7`, { headers: { host: 'api' } });
  t.equal(meshed.statusCode, 200, 'mTLS still works on the same port');
  t.equal(await meshed.body.text(), 'app /orders/7');
  t.equal(app.hits, before + 2);
  const m = await open.metrics();
  t.equal(metricValue(m, 'meshlet_authz_decisions_total', { policy: 'default:all-unauthenticated', decision: 'allow' }), 2, 'both decided by the Pod\'s default, named so');
  await new Promise((r) => setTimeout(r, 250));
  const log = open.stdout().trim().split('\n').map((l) => JSON.parse(l) as { peer: string; path: string });
  t.equal(log.find((l) => l.path === '/orders')?.peer, '', 'the plaintext request has no peer identity');
  t.equal(log.find((l) => l.path === '/orders/7')?.peer, WEB, 'the mTLS one has its peer');
  const shown = (await (await fetch(`${open.adminUrl}/config`)).json()) as { defaultInboundPolicy: string | null; config: ProxyConfig };
  t.equal(shown.defaultInboundPolicy, 'all-unauthenticated', "admin /config shows the Pod's default (meshlet proxy-config, diagnose read it)");
  t.equal(shown.config.inbound?.defaultPolicy, 'all-authenticated', "beside the config's, which it replaces");
  t.equal(((await (await fetch(`${strict.adminUrl}/config`)).json()) as { defaultInboundPolicy: string | null }).defaultInboundPolicy, 'all-authenticated');
});

t.test('without it (all-authenticated, the default) the same plaintext client is refused at the first byte', async (t) => {
  const before = app.hits;
  const got = await plaintext(strict.inboundPort, '/orders');
  t.notMatch(got, /^HTTP/, 'no HTTP answer');
  t.equal(app.hits, before, 'nothing reached the app');
  t.equal(metricValue(await strict.metrics(), 'meshlet_tls_handshake_failures_total', { direction: 'inbound', reason: 'plaintext-on-strict-port' }), 1);
});

t.test('a port an AuthorizationPolicy guards refuses plaintext even with all-unauthenticated; the mTLS peer it names gets in', async (t) => {
  open.writeConfig(clusterConfig('o2', [{ name: 'web-only', port: app.port, rules: [{ identities: [WEB] }] }]));
  await open.waitForVersion('o2');
  const before = app.hits;
  const got = await plaintext(open.inboundPort, '/orders');
  t.match(got, /^HTTP\/1\.1 403 /, '403');
  t.match(got, /meshlet-proxy-error: forbidden/i, "the proxy's own answer");
  t.match(got, /no rule of web-only allows an unauthenticated \(plaintext\) peer to GET \/orders: a policy names identities, so it allows only meshed \(mTLS\) clients/, 'says why');
  t.equal(app.hits, before, 'nothing reached the app');
  const meshed = await request(`${web.outboundUrl}/orders/8`, { headers: { host: 'api' } });
  t.equal(meshed.statusCode, 200, 'the named mTLS peer is allowed');
  await meshed.body.text();
  const m = await open.metrics();
  t.equal(metricValue(m, 'meshlet_authz_decisions_total', { policy: 'web-only', decision: 'deny' }), 1, 'the policy decided the plaintext request');
  t.equal(metricValue(m, 'meshlet_authz_decisions_total', { policy: 'web-only', decision: 'allow' }), 1);
  open.writeConfig(clusterConfig('o3'));
  await open.waitForVersion('o3');
  t.match(await plaintext(open.inboundPort, '/orders'), /^HTTP\/1\.1 200 /, 'the policy gone, the Pod default lets plaintext in again');
});

t.test("deny: a meshed peer no policy allows is refused, even where the config's default lets everyone in", async (t) => {
  const deny = await startProxyProcess({
    config: { version: 'd1', services: [], inbound: { defaultPolicy: 'all' } },
    appPort: app.port,
    workload: 'vault',
    env: { MESHLET_DEFAULT_INBOUND_POLICY: injectedPolicy({ 'config.meshlet.io/default-inbound-policy': 'deny' }) },
    args: identityArgs(cp, 'shop', 'vault'),
  });
  t.teardown(() => deny.stop());
  const caller = await startProxyProcess({
    config: { version: 'c1', services: [{ name: 'vault', endpoints: [{ address: `127.0.0.1:${deny.inboundPort}`, identity: `${TD}/ns/shop/sa/vault` }] }] },
    workload: 'web',
    args: identityArgs(cp, 'shop', 'web'),
  });
  t.teardown(() => caller.stop());
  const before = app.hits;
  const r = await request(`${caller.outboundUrl}/secret`, { headers: { host: 'vault' } });
  t.equal(r.statusCode, 403);
  t.match(await r.body.text(), /the default policy \(deny\) denies requests no policy allows/);
  t.equal(app.hits, before);
  t.equal(metricValue(await deny.metrics(), 'meshlet_authz_decisions_total', { policy: 'default:deny', decision: 'deny' }), 1, "the Pod's default, not the config's all");
});

t.test('all-unauthenticated: an unmeshed HTTP/2 client (h2c, prior knowledge: a plaintext gRPC client) reaches an h2c app too', async (t) => {
  const h2app = http2.createServer((req, res) => {
    req.resume();
    res.end(`h2 app ${req.url}`);
  });
  await new Promise<void>((r) => h2app.listen(0, '127.0.0.1', r));
  t.teardown(() => h2app.close());
  const appPort = (h2app.address() as AddressInfo).port;
  const proxy = await startProxyProcess({
    config: clusterConfig('h1'),
    appPort,
    workload: 'grpc-api',
    env: { MESHLET_DEFAULT_INBOUND_POLICY: injectedPolicy({ 'config.meshlet.io/default-inbound-policy': 'all-unauthenticated' }) },
    args: identityArgs(cp, 'shop', 'grpc-api'),
  });
  t.teardown(() => proxy.stop());
  const session = http2.connect(`http://127.0.0.1:${proxy.inboundPort}`);
  session.on('error', () => {});
  const got = await new Promise<{ status: unknown; body: string }>((resolve, reject) => {
    const r = session.request({ ':path': '/echo.Echo/Unary', ':authority': 'grpc-api' }, { endStream: true });
    let status: unknown;
    let body = '';
    r.on('response', (h) => (status = h[':status']));
    r.on('data', (c: Buffer) => (body += c.toString()));
    r.on('end', () => resolve({ status, body }));
    r.on('error', reject);
  });
  session.close();
  t.equal(got.status, 200);
  t.equal(got.body, 'h2 app /echo.Echo/Unary');
  t.equal(metricValue(await proxy.metrics(), 'meshlet_authz_decisions_total', { policy: 'default:all-unauthenticated', decision: 'allow' }), 1);
});

t.test('a bad MESHLET_DEFAULT_INBOUND_POLICY stops the proxy at start, exit 2, naming the variable and the values', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-default-policy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ version: 'b1', services: [] }));
  const [outbound, inbound, admin] = [await reservedPort(), await reservedPort(), await reservedPort()];
  const r = spawnSync(process.execPath, proxyArgv(['--config', join(dir, 'config.json'), '--outbound-listen', `127.0.0.1:${outbound}`, '--inbound-listen', `127.0.0.1:${inbound}`, '--app', '127.0.0.1:8080', '--admin-listen', `127.0.0.1:${admin}`]), {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, MESHLET_DEFAULT_INBOUND_POLICY: 'permissive' },
  });
  t.equal(r.status, 2);
  t.match(r.stderr, /MESHLET_DEFAULT_INBOUND_POLICY: "permissive" is not a default inbound policy; want one of all-unauthenticated, all-authenticated, deny/);
});
