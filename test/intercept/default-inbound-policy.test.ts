// Meshing a server before its clients, with real interception rules: an unmeshed "pod" (a network
// namespace with no rules and no proxy) calls a meshed one (intercept.sh and a proxy with an
// identity from a real control plane, both configured by what inject() writes for the Pod, and the
// config the control plane pushes in a cluster: all-authenticated, no permissive port). With
// config.meshlet.io/default-inbound-policy: all-unauthenticated its plaintext request reaches the
// app through the proxy; without the annotation the same request is refused at the proxy.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inject, type PodLike } from '../../injector/inject.ts';
import { defaultSettings } from '../../injector/settings.ts';
import { cli } from '../fixtures/control-plane.ts';
import { createNetnsPair, curlIn, plainEnv, requireTools, startProxyIn, startServerIn, type NetnsPair, type NetnsProxy, type Seen } from '../fixtures/netns.ts';

requireTools();

const SCRIPT = fileURLToPath(new URL('../../proxy/intercept/intercept.sh', import.meta.url));
const CP_MAIN = fileURLToPath(new URL('../../control-plane/main.ts', import.meta.url));
const APP_UID = 1001;

/** The env inject() gives meshlet-init and meshlet-proxy for an api Pod on 8080 with these annotations. */
function injected(annotations: Record<string, string>): { init: Record<string, string>; proxy: Record<string, string> } {
  const pod: PodLike = { metadata: { name: 'api-1', namespace: 'shop', annotations }, spec: { containers: [{ name: 'app', image: 'api:1', ports: [{ containerPort: 8080 }] }] } };
  const r = inject(pod, defaultSettings({ trustAnchorsPem: '-----BEGIN CERTIFICATE-----' }));
  if (r.outcome !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`);
  const containers = r.patch.flatMap((op) => ('value' in op ? (Array.isArray(op.value) ? op.value : [op.value]) : [])) as Array<{ name?: string; env?: Array<{ name: string; value?: string }> }>;
  const envOf = (name: string) => Object.fromEntries((containers.find((c) => c?.name === name)?.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
  return { init: envOf('meshlet-init'), proxy: envOf('meshlet-proxy') };
}

let pair: NetnsPair;
let caDir: string;
let anchors: string;
let token: string;
let meshed: string;
let unmeshed: string;
let apiIp: string;

t.before(async () => {
  pair = await createNetnsPair('mldip');
  unmeshed = pair.pod;
  meshed = pair.peer;
  apiIp = pair.peerIp;
  const r = await pair.exec(meshed, [SCRIPT], { env: plainEnv(injected({}).init) });
  if (r.code !== 0) throw new Error(`intercept.sh failed: ${r.stderr}`);
  // The control plane runs beside the api pod (8443 is not an app port: not redirected).
  caDir = mkdtempSync(join(tmpdir(), 'meshlet-netns-dip-'));
  const caFile = join(caDir, 'ca.json');
  cli('identity', 'init', '--ca-file', caFile);
  const cp = pair.spawn(meshed, [process.execPath, CP_MAIN, '--ca-file', caFile, '--listen', `${apiIp}:8443`, '--admin-listen', '127.0.0.1:9990']);
  let cpErr = '';
  cp.stderr!.on('data', (c: Buffer) => (cpErr += c.toString()));
  for (let i = 0; ; i++) {
    const ready = await pair.exec(meshed, ['curl', '-sf', '--max-time', '1', 'http://127.0.0.1:9990/ready']);
    if (ready.code === 0) break;
    if (cp.exitCode !== null || i > 200) throw new Error(`control plane not ready: ${cpErr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  anchors = (JSON.parse(readFileSync(caFile, 'utf8')) as { anchor: { certPem: string } }).anchor.certPem;
  token = cli('identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', 'shop', '--service-account', 'api').trim();
  await startServerIn(pair, meshed, '0.0.0.0', 8080, 'api', { uid: APP_UID });
});

t.teardown(async () => {
  await pair?.cleanup();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

/** The api Pod's proxy, with the env inject() writes for these annotations; resolves once it has its certificate. */
async function apiProxy(t: Test, annotations: Record<string, string>): Promise<NetnsProxy> {
  const env = injected(annotations).proxy;
  const proxy = await startProxyIn(pair, meshed, {
    config: { version: 'a1', services: [], inbound: { defaultPolicy: 'all-authenticated' } },
    files: { 'anchors.pem': anchors, token },
    args: (dir) => ['--outbound-listen', '127.0.0.1:4140', '--inbound-listen', '0.0.0.0:4143', '--admin-listen', '127.0.0.1:4191', '--app', '127.0.0.1:8080', '--workload', 'api', '--namespace', 'shop',
      '--control-plane', `https://${apiIp}:8443`, '--trust-anchors', join(dir, 'anchors.pem'), '--bootstrap-token-file', join(dir, 'token')],
    env: { MESHLET_APP_PORTS: env.MESHLET_APP_PORTS, MESHLET_DEFAULT_INBOUND_POLICY: env.MESHLET_DEFAULT_INBOUND_POLICY },
  });
  t.teardown(() => proxy.stop());
  for (let i = 0; ; i++) {
    const r = await pair.exec(meshed, ['curl', '-sf', '--max-time', '1', 'http://127.0.0.1:4191/ready']);
    if (r.code === 0) return proxy;
    if (i > 200) throw new Error(`api proxy not ready: ${r.stdout}\n${proxy.stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('without the annotation (all-authenticated): the unmeshed client is refused at the meshed pod', async (t) => {
  const proxy = await apiProxy(t, {});
  const r = await curlIn(pair, unmeshed, [`http://${apiIp}:8080/before`]);
  t.not(r.code, 0, `curl fails: ${r.stderr.trim()}`);
  t.equal(r.status, 0, 'no HTTP answer');
  await new Promise((r) => setTimeout(r, 250));
  t.notOk(proxy.accessLog().some((l) => l.path === '/before'), 'no request reached the HTTP layer');
});

t.test('with config.meshlet.io/default-inbound-policy: all-unauthenticated: the unmeshed client reaches the app in plaintext, through the proxy', async (t) => {
  t.equal(injected({ 'config.meshlet.io/default-inbound-policy': 'all-unauthenticated' }).init.MESHLET_INBOUND_PORTS, '8080', 'the port is still redirected to the proxy');
  const proxy = await apiProxy(t, { 'config.meshlet.io/default-inbound-policy': 'all-unauthenticated' });
  const r = await curlIn(pair, unmeshed, [`http://${apiIp}:8080/after`]);
  t.equal(r.status, 200, r.stderr + r.body);
  const s = JSON.parse(r.body) as Seen;
  t.equal(s.server, 'api');
  t.equal(s.url, '/after');
  t.equal(s.remote, '127.0.0.1', 'delivered by the proxy (iptables sent the connection to it)');
  await proxy.waitForLog((l) => l.direction === 'inbound' && l.path === '/after');
  t.equal(proxy.accessLog().find((l) => l.path === '/after')?.peer, '', 'a plaintext peer, no identity');
});
