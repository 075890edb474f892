// The kubelet's HTTP probes of an injected app, through a real proxy with a mesh identity: every
// port takes only mTLS and the policies deny everyone, yet a plaintext GET of a path the Pod's spec
// probes (what the injector writes into MESHLET_PROBE_PATHS, here from inject() itself) reaches the
// app, as the kubelet's does under Linkerd. Any other plaintext request on that port is refused, a
// port without probes still refuses plaintext at the first byte, and a malformed variable stops
// the proxy at start.
import t from 'tap';
import net from 'node:net';
import http2 from 'node:http2';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject, type PodLike } from '../../injector/inject.ts';
import { defaultSettings } from '../../injector/settings.ts';
import { proxyArgv } from '../../proxy/launch.ts';
import { startUpstream, startProxyProcess, metricValue, reservedPort, type ProxyProcess, type Upstream } from '../fixtures/mesh.ts';
import { startControlPlane, identityArgs, type ControlPlane } from '../fixtures/control-plane.ts';

/** One plaintext request as the kubelet sends it (Connection: close), read raw: status, lower-case headers, body. */
function plain(port: number, method: string, target: string, body = ''): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () =>
      s.write(`${method} ${target} HTTP/1.1\r\nHost: 10.0.0.7:8080\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n${body ? `Content-Length: ${body.length}\r\n` : ''}\r\n${body}`),
    );
    let text = '';
    s.on('data', (d) => (text += d.toString()));
    s.on('error', reject);
    s.on('close', () => {
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [line = '', ...fields] = head.split('\r\n');
      const headers = Object.fromEntries(fields.map((f) => [f.slice(0, f.indexOf(':')).toLowerCase(), f.slice(f.indexOf(':') + 1).trim()]));
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(line)?.[1] ?? 0), headers, body: rest.join('\r\n\r\n') });
    });
  });
}

let cp: ControlPlane;
let app: Upstream;
let metricsApp: Upstream;
let proxy: ProxyProcess;

/** The proxy environment the injector writes for a Pod whose app probes these ports. */
function injectedEnv(appPort: number, metricsPort: number): Record<string, string> {
  const pod: PodLike = {
    metadata: { name: 'api-1', namespace: 'shop' },
    spec: {
      containers: [{
        name: 'app', image: 'api:1',
        ports: [{ name: 'http', containerPort: appPort }, { name: 'metrics', containerPort: metricsPort }],
        livenessProbe: { httpGet: { path: '/healthz', port: 'http' } },
        readinessProbe: { httpGet: { path: '/ready?verbose=1', port: appPort } },
      }],
    },
  };
  const r = inject(pod, defaultSettings({ trustAnchorsPem: '-----BEGIN CERTIFICATE-----' }));
  if (r.outcome !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`);
  const containers = r.patch.flatMap((op) => ('value' in op ? (Array.isArray(op.value) ? op.value : [op.value]) : [])) as Array<{ name?: string; env?: Array<{ name: string; value?: string }> }>;
  const env = containers.find((c) => c?.name === 'meshlet-proxy')?.env ?? [];
  return Object.fromEntries(env.filter((e) => e.value !== undefined && e.name.startsWith('MESHLET_') && /PORTS|PROBE/.test(e.name)).map((e) => [e.name, e.value!]));
}

t.before(async () => {
  cp = await startControlPlane();
  app = await startUpstream((req, res) => {
    req.resume();
    res.end(`app ${req.method} ${req.url}`);
  });
  metricsApp = await startUpstream((req, res) => {
    req.resume();
    res.end('metrics');
  });
  const env = injectedEnv(app.port, metricsApp.port);
  proxy = await startProxyProcess({
    config: { version: 'p1', services: [], inbound: { defaultPolicy: 'deny' } },
    appPort: app.port,
    workload: 'api',
    env: { MESHLET_APP_PORTS: env.MESHLET_APP_PORTS, MESHLET_PROBE_PATHS: env.MESHLET_PROBE_PATHS },
    args: identityArgs(cp, 'shop', 'api'),
  });
});
t.teardown(async () => {
  await proxy?.stop();
  await app?.close();
  await metricsApp?.close();
  await cp?.stop();
});

t.test('the injector hands the proxy the paths of the httpGet probes on the ports it takes', async (t) => {
  const env = injectedEnv(app.port, metricsApp.port);
  t.same(JSON.parse(env.MESHLET_PROBE_PATHS!), { [app.port]: ['/healthz', '/ready'] }, 'a named port resolved, the query left out');
});

t.test("a plaintext GET of a probed path reaches the app on a strict port whose policies deny everyone (the kubelet's probe)", async (t) => {
  const before = app.hits;
  const live = await plain(proxy.inboundPort, 'GET', '/healthz');
  t.equal(live.status, 200, 'liveness');
  t.equal(live.body, 'app GET /healthz');
  const ready = await plain(proxy.inboundPort, 'GET', '/ready?verbose=1');
  t.equal(ready.status, 200, 'readiness, with its query');
  t.equal(ready.body, 'app GET /ready?verbose=1');
  t.equal(app.hits, before + 2, 'both reached the app');
  const m = await proxy.metrics();
  t.equal(metricValue(m, 'meshlet_authz_decisions_total', { policy: 'probe', decision: 'allow' }), 2, 'counted as probes');
});

t.test('any other plaintext request on that port is refused before the app', async (t) => {
  const before = app.hits;
  for (const [method, target, body, what] of [
    ['GET', '/admin', '', 'another path'],
    ['POST', '/healthz', 'x', 'POST to the probed path'],
    ['GET', '/healthz/../admin', '', 'a dot segment past the probed path'],
    ['GET', '/healthzz', '', 'a longer path'],
    // The policies' path stops at '#', yet the app gets it all: Go's http.FileServer serves /admin for this one.
    ['GET', '/healthz#/../admin', '', 'a fragment hiding a dot segment'],
  ] as const) {
    const r = await plain(proxy.inboundPort, method, target, body);
    t.equal(r.status, 403, `${what}: 403`);
    t.equal(r.headers['meshlet-proxy-error'], 'forbidden', `${what}: the proxy's own answer`);
  }
  t.equal(app.hits, before, 'none reached the app');
  t.equal(metricValue(await proxy.metrics(), 'meshlet_authz_decisions_total', { policy: 'strict-mtls', decision: 'deny' }), 5, 'refused as plaintext on a strict port');
});

t.test('a plaintext upgrade of a probed path is no probe (the kubelet never upgrades): no tunnel to an app that accepts any', async (t) => {
  // An app that takes WebSocket upgrades on every path, as a `ws` server attached to the HTTP server does.
  const upgrades: string[] = [];
  const onUpgrade = (req: { url?: string }, socket: net.Socket) => {
    upgrades.push(req.url ?? '');
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\ntunnel open');
  };
  app.server.on('upgrade', onUpgrade);
  t.teardown(() => app.server.off('upgrade', onUpgrade));
  const got = await new Promise<string>((resolve) => {
    const s = net.connect(proxy.inboundPort, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nHost: 10.0.0.7:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'));
    let text = '';
    s.on('data', (d) => (text += d.toString()));
    s.on('error', () => resolve(text));
    s.on('close', () => resolve(text));
  });
  t.match(got, /^HTTP\/1\.1 403 /, `refused: ${JSON.stringify(got.slice(0, 60))}`);
  t.same(upgrades, [], 'the app saw no upgrade');
});

t.test('over plaintext HTTP/2 (h2c) too, a probed path followed by a fragment is no probe', async (t) => {
  const before = app.hits;
  const session = http2.connect(`http://127.0.0.1:${proxy.inboundPort}`);
  t.teardown(() => session.destroy());
  session.on('error', () => {});
  const answer = await new Promise<{ status: number; error: string }>((resolve, reject) => {
    const r = session.request({ ':path': '/healthz#/../admin', ':authority': '10.0.0.7:8080' }, { endStream: true });
    r.on('response', (h) => resolve({ status: Number(h[':status']), error: String(h['meshlet-proxy-error']) }));
    r.on('error', reject);
    r.resume();
  });
  t.same(answer, { status: 403, error: 'forbidden' }, 'refused as plaintext on a strict port, before the app');
  t.equal(app.hits, before, 'the app was not asked');
});

t.test('a port without probes still refuses plaintext at the first byte', async (t) => {
  // The proxy's second app port, on the first listener: a plaintext caller cannot name it (meshlet-dst-port is honoured over mTLS only),
  // so check the listener of a proxy whose only port has no probes.
  const other = await startProxyProcess({
    config: { version: 'p2', services: [], inbound: { defaultPolicy: 'all' } },
    appPort: metricsApp.port,
    workload: 'metrics',
    env: { MESHLET_PROBE_PATHS: '' },
    args: identityArgs(cp, 'shop', 'metrics'),
  });
  t.teardown(() => other.stop());
  const got = await new Promise<string>((resolve) => {
    const s = net.connect(other.inboundPort, '127.0.0.1', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    let text = '';
    s.on('data', (d) => (text += d.toString()));
    s.on('error', () => resolve(text || 'reset'));
    s.on('close', () => resolve(text || 'closed'));
  });
  t.notMatch(got, /^HTTP/, 'no HTTP answer: refused at the first byte');
  t.equal(metricValue(await other.metrics(), 'meshlet_tls_handshake_failures_total', { direction: 'inbound', reason: 'plaintext-on-strict-port' }), 1);
});

t.test('a malformed MESHLET_PROBE_PATHS stops the proxy at start, exit 2, naming the variable', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-probes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ version: 'b1', services: [] }));
  const [outbound, inbound, admin] = [await reservedPort(), await reservedPort(), await reservedPort()];
  for (const [value, message] of [
    ['/healthz', /MESHLET_PROBE_PATHS: not JSON/],
    ['{"9999":["/healthz"]}', /MESHLET_PROBE_PATHS: port 9999 is not one of the app's ports \(8080\)/],
    ['{"8080":["healthz"]}', /MESHLET_PROBE_PATHS: port 8080: "healthz" is not a path starting with \//],
    ['{"8080":"/healthz"}', /MESHLET_PROBE_PATHS: port 8080: not a list of paths/],
  ] as const) {
    const r = spawnSync(process.execPath, proxyArgv(['--config', join(dir, 'config.json'), '--outbound-listen', `127.0.0.1:${outbound}`, '--inbound-listen', `127.0.0.1:${inbound}`, '--app', '127.0.0.1:8080', '--admin-listen', `127.0.0.1:${admin}`]), {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, MESHLET_PROBE_PATHS: value },
    });
    t.equal(r.status, 2, `${value}: exit 2`);
    t.match(r.stderr, message, `${value}: says what is wrong`);
  }
});
