// One object the apiserver accepts but the mesh cannot use affects only itself: an HTTPRoute (the
// Gateway API stand-in CRD keeps any spec) with a weight of -1, a TrafficSplit whose routes add up
// past what a service may have, route names that two objects share. Real kube-apiserver, real
// control plane, a real proxy fed by it: after each bad object, a change to an unrelated Service
// still reaches the proxy, the good splits stay in force, and /config-problems names the bad one.
import t from 'tap';
import { HTTPROUTE_CRD, startKube } from '../fixtures/kube.ts';
import { identityArgs, startControlPlane } from '../fixtures/control-plane.ts';
import { startProxyProcess } from '../fixtures/mesh.ts';
import type { ProxyConfig } from '../../api/proxy-config.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const service = (name: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
// No traffic here, so any routable address does (EndpointSlices refuse loopback).
const slice = (svc: string, ips: string[]) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: `${svc}-1`, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions: { ready: true } })),
});
const routesOf = (cfg: ProxyConfig | undefined, name: string) => cfg?.services.find((s) => s.name === name)?.routes?.map((r) => r.name);
const splitDoc = (name: string, matches: unknown[] | undefined) => ({
  apiVersion: 'meshlet.io/v1alpha1',
  kind: 'TrafficSplit',
  metadata: { name },
  spec: { service: 'api', backends: [{ service: 'api-v2', weight: 1 }], ...(matches ? { matches } : {}) },
});

t.test('a bad TrafficSplit or HTTPRoute is reported and breaks no other object', async (t) => {
  const kube = await startKube();
  t.teardown(() => kube.stop());
  const apply = async (doc: unknown, ns: string): Promise<void> => {
    for (let i = 0; ; i++) {
      const r = await kube.kubectl(['apply', '-n', ns, '-f', '-'], { input: JSON.stringify(doc) });
      if (r.code === 0) return;
      if (i > 30) throw new Error(`kubectl apply failed: ${r.stderr}`);
      await sleep(200); // a fresh CRD's storage may answer 429 for a moment
    }
  };
  t.equal((await kube.kubectl(['apply', '--server-side', '-f', CRDS])).code, 0, 'meshlet CRDs applied');
  await apply(HTTPROUTE_CRD, 'default');
  await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/httproutes.gateway.networking.k8s.io']);
  const shop = await kube.newNamespace('shop');
  // No traffic here, so any routable address does (EndpointSlices refuse loopback).
  for (const name of ['api', 'api-v1', 'api-v2', 'db']) await apply(service(name), shop);
  for (const [name, ip] of [['api', '10.9.0.1'], ['api-v1', '10.9.0.2'], ['api-v2', '10.9.0.3']] as const) await apply(slice(name, [ip]), shop);

  const cp = await startControlPlane({ args: ['--kubeconfig', kube.kubeconfigPath] });
  t.teardown(() => cp.stop());
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => proxy.stop());

  const running = async (): Promise<ProxyConfig | undefined> => {
    const r = await fetch(`${proxy.adminUrl}/config`);
    return r.status === 200 ? ((await r.json()) as { config: ProxyConfig }).config : undefined;
  };
  /** Polls the proxy's running config until `ok` (bounded: 15 s). */
  const until = async (what: string, ok: (cfg: ProxyConfig | undefined) => boolean): Promise<ProxyConfig | undefined> => {
    let cfg: ProxyConfig | undefined;
    for (let i = 0; i < 300; i++) {
      cfg = await running();
      if (ok(cfg)) return cfg;
      await sleep(50);
    }
    t.fail(`${what}: not within 15 s`, { running: JSON.stringify(cfg)?.slice(0, 2000), problems: await (await fetch(`${cp.adminUrl}/config-problems`)).json() });
    return cfg;
  };
  const problems = async () => (await (await fetch(`${cp.adminUrl}/config-problems`)).json()) as Array<{ object: string; path: string; message: string }>;
  /** The unrelated Service db gets one more endpoint; the proxy must see it. */
  const dbIps: string[] = [];
  const dbMoves = async (what: string): Promise<void> => {
    dbIps.push(`10.9.1.${dbIps.length + 1}`);
    await apply(slice('db', dbIps), shop);
    const want = `${dbIps.at(-1)}:8080`;
    const cfg = await until(`${what}: db's new endpoint reaches the proxy`, (c) => c?.services.find((s) => s.name === `db.${shop}`)?.endpoints.some((e) => e.address === want) === true);
    t.ok(cfg?.services.find((s) => s.name === `db.${shop}`)?.endpoints.some((e) => e.address === want), `${what}: db's new endpoint reached the proxy`);
  };

  await apply(splitDoc('api-header', [{ headers: [{ name: 'x-canary', value: '1' }] }]), shop);
  await until('the good split applies', (c) => routesOf(c, `api.${shop}`)?.[0] === 'split:api-header:0');
  await dbMoves('before any bad object');

  // 1. An HTTPRoute with a negative weight (the stand-in CRD, like a missing CRD schema, keeps it).
  await apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'api' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'api' }], rules: [{ backendRefs: [{ name: 'api-v1', weight: -1 }, { name: 'api-v2', weight: 1 }] }] },
  }, shop);
  await dbMoves('after an HTTPRoute with weight -1');
  t.match(await problems(), [{ object: `HTTPRoute/${shop}/api`, path: '/spec/rules/0/backendRefs/0/weight', message: /weight -1 is not an integer from 0 to 1000000/ }], 'the HTTPRoute is reported at its field');

  // 2. The HTTPRoute fixed, with matches: its rule 0 is split `api-00`, the name of a TrafficSplit.
  await apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'api' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'api' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [{ name: 'api-v1' }] }] },
  }, shop);
  await apply(splitDoc('api-00', [{ path: { prefix: '/b' } }]), shop);
  await dbMoves('after a TrafficSplit named like an HTTPRoute rule');
  const both = await until('both matched splits apply', (c) => (routesOf(c, `api.${shop}`) ?? []).length === 4);
  t.same(both?.services.find((s) => s.name === `api.${shop}`)?.routes?.map((r) => r.match?.path ?? null), [{ prefix: '/a' }, { prefix: '/b' }, null, null], 'the HTTPRoute rule and the TrafficSplit both route');

  // 3. Sixteen TrafficSplits of sixteen matches: each valid, the CRD accepts them; together
  // more routes than api may have. The ones that do not fit are reported, nothing else changes.
  for (let k = 0; k < 16; k++) {
    await apply(splitDoc(`many-${String(k).padStart(2, '0')}`, Array.from({ length: 16 }, (_, i) => ({ path: { prefix: `/m${k}/${i}` } }))), shop);
  }
  await dbMoves('after sixteen splits of sixteen matches');
  const listed = await problems();
  const conflicted = listed.filter((p) => p.object.startsWith(`TrafficSplit/${shop}/many-`));
  t.ok(conflicted.length >= 1, `the splits that do not fit are reported: ${conflicted.map((p) => p.object).join(', ')}`);
  t.ok(conflicted.every((p) => /api\.\S+ may have at most 256 routes/.test(p.message)), 'saying why');
  t.notOk(listed.some((p) => p.object.startsWith('ProxyConfig/')), 'no proxy view is invalid');
  const cfg = await running();
  t.equal(routesOf(cfg, `api.${shop}`)?.slice(0, 1)[0], 'split:api-00:0', 'the older splits stay in force');
  t.ok((routesOf(cfg, `api.${shop}`)?.length ?? 0) <= 256, 'within the proxy\'s limit');
  const left = conflicted[0]?.object.split('/')[2] ?? 'none';
  let reason = '';
  for (let i = 0; i < 100 && reason !== 'Conflicted'; i++) {
    reason = (await kube.kubectl(['get', 'trafficsplit', '-n', shop, left, '-o', 'jsonpath={.status.conditions[?(@.type=="Accepted")].reason}'])).stdout;
    if (reason !== 'Conflicted') await sleep(100);
  }
  t.equal(reason, 'Conflicted', `${left}'s status says Accepted=False, Conflicted`);
});
