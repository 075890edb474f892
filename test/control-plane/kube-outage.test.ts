// The control plane's Kubernetes source against a real kube-apiserver that lacks the meshlet CRDs,
// then stops and comes back (etcd keeps the cluster), with real control-plane and proxy processes:
// Services reach proxies before the CRDs exist and the CRDs' objects once they do; through the
// outage proxies keep their config and /metrics says the watches are down, not that all is well;
// what was deleted while it was not watching, history compacted, leaves no ghost in any view; a
// kind RBAC does not let it list keeps it not ready, saying so, until the permission is granted.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubeForFile, serviceYaml } from '../fixtures/kube.ts';
import { identityArgs, startControlPlane } from '../fixtures/control-plane.ts';
import { metricValue, startProxyProcess, type ProxyProcess } from '../fixtures/mesh.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;
const k = kubeForFile(t);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Running {
  version: string;
  config: { services: Array<{ name: string; endpoints: Array<{ address: string }>; routes?: unknown[] }> };
}
const running = async (p: ProxyProcess): Promise<Running> => (await (await fetch(`${p.adminUrl}/config`)).json()) as Running;
const metrics = async (adminUrl: string): Promise<string> => (await fetch(`${adminUrl}/metrics`)).text();

async function until(what: string, ok: () => Promise<boolean>, timeoutMs: number, detail: () => string = () => ''): Promise<void> {
  for (const end = Date.now() + timeoutMs; !(await ok()); await sleep(100)) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}\n${detail()}`);
  }
}

async function apply(ns: string, yaml: string): Promise<void> {
  for (let i = 0; ; i++) {
    const r = await k().kubectl(['apply', '-n', ns, '-f', '-'], { input: yaml });
    if (r.code === 0) return;
    if (i > 50) throw new Error(`kubectl apply failed: ${r.stderr}`);
    await sleep(200); // a fresh CRD's storage may answer 429 for a moment
  }
}

t.test('meshlet CRDs not installed: Services still reach proxies, the error names the CRD, and splits apply once it is installed', async (t) => {
  const shop = await k().newNamespace('shop');
  await apply(shop, serviceYaml('api', '10.1.0.1') + '---\n' + serviceYaml('api-v2', '10.1.0.2'));
  const cp = await startControlPlane({ args: ['--kubeconfig', k().kubeconfigPath] });
  t.teardown(() => cp.stop());
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => proxy.stop());
  const api = `api.${shop}`;
  const got = await running(proxy);
  t.ok(got.config.services.some((s) => s.name === api && s.endpoints.length === 1), `the proxy's first config has ${api}: ${JSON.stringify(got.config.services.map((s) => s.name))}`);
  t.match(cp.stderr(), /the CRD trafficsplits\.meshlet\.io is not installed \(kubectl apply -k manifests\/, or meshlet install\)/, 'the log names the CRD to install');
  const ready = (await (await fetch(`${cp.adminUrl}/ready`)).json()) as { ready: boolean; kubernetes: { informers: Array<{ kind: string; absent: boolean }> } };
  t.equal(ready.ready, true, 'ready: it serves the cluster as it is');
  t.same(ready.kubernetes.informers.filter((i) => i.absent).map((i) => i.kind).toSorted(), ['AuthorizationPolicy', 'ServicePolicy', 'TrafficSplit'], '/ready lists the kinds that are not served');

  t.equal((await k().kubectl(['apply', '--server-side', '-f', CRDS])).code, 0, 'CRDs installed');
  await apply(shop, `apiVersion: meshlet.io/v1alpha1
kind: TrafficSplit
metadata: { name: api }
spec: { service: api, backends: [{ service: api, weight: 90 }, { service: api-v2, weight: 10 }] }
`);
  await until('the split reaches the proxy', async () => JSON.stringify((await running(proxy)).config.services.find((s) => s.name === api)?.routes ?? []).includes('api-v2'), 45_000, cp.stderr);
  t.pass('the TrafficSplit applied after the CRD was installed reaches the proxy');
});

t.test('API server outage: proxies keep their config, /metrics says the watches are down, and a change after it reaches the proxy', async (t) => {
  const shop = await k().newNamespace('shop');
  await apply(shop, serviceYaml('api', '10.2.0.1'));
  const cp = await startControlPlane({ args: ['--kubeconfig', k().kubeconfigPath] });
  t.teardown(() => cp.stop());
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => proxy.stop());
  const before = await running(proxy);
  let m = await metrics(cp.adminUrl);
  t.equal(metricValue(m, 'meshlet_cp_kube_synced'), 1, 'synced');
  t.equal(metricValue(m, 'meshlet_cp_kube_watch_up', { kind: 'Service' }), 1, 'the Service watch is up');

  await k().stopApiserver();
  await until('the watches are reported down', async () => metricValue(await metrics(cp.adminUrl), 'meshlet_cp_kube_watch_up', { kind: 'Service' }) === 0, 20_000, cp.stderr);
  m = await metrics(cp.adminUrl);
  t.pass('meshlet_cp_kube_watch_up{kind="Service"} is 0 while the API server is gone');
  t.ok(metricValue(m, 'meshlet_cp_kube_watch_restarts_total', { kind: 'Service' }) >= 1, 'and the restarts are counted');
  t.equal(metricValue(m, 'meshlet_cp_kube_synced'), 1, 'the last state listed stays in force');
  t.equal((await fetch(`${cp.adminUrl}/ready`)).status, 200, 'ready: it serves that state to proxies');
  await sleep(3000);
  t.equal((await running(proxy)).version, before.version, 'the proxy keeps its config through the outage');
  const late = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => late.stop());
  t.equal((await running(late)).version, before.version, 'a proxy started during the outage gets a certificate and the last state listed');

  await k().startApiserver();
  await apply(shop, serviceYaml('db', '10.2.0.2'));
  await until('the change made after the outage reaches the proxy', async () => (await running(proxy)).config.services.some((s) => s.name === `db.${shop}`), 45_000, cp.stderr);
  t.pass(`db.${shop}, created after the API server came back, reaches the proxy`);
  await until('the watches are reported up', async () => metricValue(await metrics(cp.adminUrl), 'meshlet_cp_kube_watch_up', { kind: 'Service' }) === 1, 10_000);
  t.pass('and the Service watch is reported up again');
});

t.test('deletes made while the control plane was not watching, their history compacted away in etcd: no ghost service or endpoint', async (t) => {
  const shop = await k().newNamespace('shop');
  await apply(shop, serviceYaml('api', '10.3.0.1') + '---\n' + serviceYaml('db', '10.3.0.2'));
  const cp = await startControlPlane({ args: ['--kubeconfig', k().kubeconfigPath] });
  t.teardown(() => cp.stop());
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => proxy.stop());
  const names = async () => (await running(proxy)).config.services.filter((s) => s.name.endsWith(`.${shop}`)).map((s) => `${s.name}=${s.endpoints.map((e) => e.address).join(',')}`);
  t.same(await names(), [`api.${shop}=10.3.0.1:8080`, `db.${shop}=10.3.0.2:8080`], 'the proxy runs both');

  // The control plane is frozen (its watches fall behind), db is deleted and api moves, etcd
  // forgets that history, and the API server restarts (its watch cache starts after it).
  cp.proc.kill('SIGSTOP');
  t.teardown(() => void cp.proc.kill('SIGCONT'));
  t.equal((await k().kubectl(['delete', '-n', shop, 'service/db', 'endpointslice/db-1'])).code, 0, 'db deleted');
  for (let i = 10; i < 15; i++) await apply(shop, serviceYaml('api', `10.3.0.${i}`));
  t.ok((await k().compactEtcd()) > 0, 'etcd compacted');
  await k().stopApiserver();
  await k().startApiserver();
  cp.proc.kill('SIGCONT');

  const want = [`api.${shop}=10.3.0.14:8080`];
  await until('the proxy converges', async () => JSON.stringify(await names()) === JSON.stringify(want), 45_000, cp.stderr);
  t.same(await names(), want, 'db is gone and api has only its last endpoint');
});

t.test('RBAC refuses one kind (403): not ready, naming it and the error, no config to proxies; ready and serving once granted', async (t) => {
  const ns = await k().newNamespace('rbac');
  await apply(ns, serviceYaml('api', '10.4.0.1'));
  const read = ['get', 'list', 'watch'];
  const role = (crs: string[]) => JSON.stringify({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    metadata: { name: `meshlet-cp-${ns}` },
    rules: [
      { apiGroups: [''], resources: ['services', 'pods'], verbs: read },
      { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: read },
      { apiGroups: ['meshlet.io'], resources: crs, verbs: read },
    ],
  });
  const kubectl = async (args: string[], input?: string) => {
    const r = await k().kubectl(args, input === undefined ? undefined : { input });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await kubectl(['create', 'serviceaccount', 'cp', '-n', ns]);
  await kubectl(['apply', '-f', '-'], role(['trafficsplits', 'authorizationpolicies'])); // no servicepolicies
  await kubectl(['create', 'clusterrolebinding', `meshlet-cp-${ns}`, `--clusterrole=meshlet-cp-${ns}`, `--serviceaccount=${ns}:cp`]);
  const token = (await kubectl(['create', 'token', 'cp', '-n', ns, '--duration=10m'])).trim();
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-rbac-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'cp',
    clusters: [{ name: 'c', cluster: { server: k().server, 'certificate-authority-data': Buffer.from(k().caPem).toString('base64') } }],
    users: [{ name: 'cp', user: { token } }],
    contexts: [{ name: 'cp', context: { cluster: 'c', user: 'cp' } }],
  }), { mode: 0o600 });

  const cp = await startControlPlane({ args: ['--kubeconfig', kubeconfig], until: 'live' });
  t.teardown(() => cp.stop());
  const ready = async () => {
    const r = await fetch(`${cp.adminUrl}/ready`);
    return { status: r.status, reasons: ((await r.json()) as { reasons: string[] }).reasons.join('; ') };
  };
  await until('/ready names the refused kind', async () => (await ready()).reasons.includes('HTTP 403'), 20_000, cp.stderr);
  const refused = await ready();
  t.equal(refused.status, 503, 'not ready');
  t.match(refused.reasons, /has not listed .*ServicePolicy \(HTTP 403: servicepolicies\.meshlet\.io is forbidden: User "system:serviceaccount:[^"]+:cp" cannot list resource "servicepolicies"[^)]*\) yet/, `the reason names the kind and RBAC's answer: ${refused.reasons}`);
  t.notMatch(refused.reasons, /has not listed [^;]*\bService \(/, 'and only the kinds it cannot list');

  await kubectl(['apply', '-f', '-'], role(['trafficsplits', 'authorizationpolicies', 'servicepolicies']));
  await until('ready once granted', async () => (await ready()).status === 200, 45_000, cp.stderr);
  t.pass('ready once the permission is granted, without a restart');
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, ns, 'web') });
  t.teardown(() => proxy.stop());
  t.ok((await running(proxy)).config.services.some((s) => s.name === `api.${ns}`), 'and a proxy gets the cluster');
});
