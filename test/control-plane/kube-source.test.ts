// KubernetesSource against a real kube-apiserver: stored Services, EndpointSlices and Pods become services with
// endpoints and identities; kubectl-applied TrafficSplits reach the model and a client's view; idle re-lists emit nothing.
import { randomUUID } from 'node:crypto';
import t, { type Test } from 'tap';
import { CoreV1Api, DiscoveryV1Api, type V1EndpointSlice } from '@kubernetes/client-node';
import { KubernetesSource, type KubernetesSourceOptions } from '../../control-plane/config/kube-source.ts';
import type { KubeProblem } from '../../control-plane/config/kube-model.ts';
import type { MeshModel } from '../../control-plane/config/model.ts';
import { viewFor, type ProxyInfo } from '../../control-plane/config/translate.ts';
import { HTTPROUTE_CRD, startKube, type Kube } from '../fixtures/kube.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;
const V = 'meshlet.io/v1alpha1';
const TD = 'cluster.local';

let kube: Kube | undefined;
const k = (): Kube => {
  if (!kube) throw new Error('the API server did not start (see t.before)');
  return kube;
};

t.before(async () => {
  kube = await startKube();
  t.comment(`kube-apiserver ready in ${kube.startupMs} ms`);
  const applied = await kube.kubectl(['apply', '--server-side', '-f', CRDS]);
  if (applied.code !== 0) throw new Error(`applying the CRDs failed: ${applied.stderr}`);
  const est = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io', 'crd/servicepolicies.meshlet.io']);
  if (est.code !== 0) throw new Error(`CRDs not Established: ${est.stderr}`);
  // Right after Established, lists can still answer 429 "storage is (re)initializing" for a moment
  // (the source retries those; the tests below want a settled server so they can assert no errors).
  for (let i = 0; ; i++) {
    const r = await kube.kubectl(['get', 'trafficsplits,authorizationpolicies,servicepolicies', '-A']);
    if (r.code === 0) break;
    if (i > 50) throw new Error(`the CRDs do not list: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 200));
  }
});
t.teardown(async () => {
  await kube?.stop();
});

// ---- helpers -------------------------------------------------------------------------------------

interface Emit {
  at: number;
  model: MeshModel;
  problems: readonly KubeProblem[];
}

/** A started source that records every emit; stopped at the end of the test. */
async function watch(tt: Test, o: Partial<KubernetesSourceOptions> = {}) {
  const emits: Emit[] = [];
  const errors: string[] = [];
  const source = new KubernetesSource({
    kc: k().kc,
    onChange: (model, problems) => emits.push({ at: performance.now(), model, problems }),
    onError: (e) => errors.push(`${e.source}: ${e.message}`),
    ...o,
  });
  tt.teardown(() => source.stop());
  await source.start();
  return { source, emits, errors };
}

async function waitFor<T>(what: string, get: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const core = () => k().kc.makeApiClient(CoreV1Api);
const discovery = () => k().kc.makeApiClient(DiscoveryV1Api);

/** A stored Pod (never runs): a meshlet-proxy container when meshed, a Deployment-style owner. */
async function createPod(ns: string, name: string, sa: string, o: { meshed: boolean; version?: string; workload?: string }): Promise<void> {
  const hash = '6f7c9';
  await core().createNamespacedPod({
    namespace: ns,
    body: {
      metadata: {
        name,
        labels: { 'pod-template-hash': hash, ...(o.version ? { version: o.version } : {}) },
        ...(o.workload ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${o.workload}-${hash}`, uid: randomUUID(), controller: true }] } : {}),
      },
      spec: {
        serviceAccountName: sa,
        containers: [{ name: 'app', image: 'example/app' }, ...(o.meshed ? [{ name: 'meshlet-proxy', image: 'example/meshlet' }] : [])],
      },
    },
  });
}

async function createService(ns: string, name: string): Promise<void> {
  await core().createNamespacedService({ namespace: ns, body: { metadata: { name }, spec: { clusterIP: 'None', ports: [{ name: 'http', port: 80, targetPort: 'http' }] } } });
}

const sliceBody = (ns: string, svc: string, name: string, eps: Array<[ip: string, pod: string]>): V1EndpointSlice => ({
  metadata: { name, labels: { 'kubernetes.io/service-name': svc } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: eps.map(([ip, pod]) => ({ addresses: [ip], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: ns, name: pod } })),
});

async function createSlice(ns: string, svc: string, name: string, eps: Array<[string, string]>): Promise<void> {
  await discovery().createNamespacedEndpointSlice({ namespace: ns, body: sliceBody(ns, svc, name, eps) });
}

const splitDoc = (ns: string, name: string, backends: Array<[string, number]>, service = 'web') => ({
  apiVersion: V,
  kind: 'TrafficSplit',
  metadata: { name, namespace: ns },
  spec: { service, backends: backends.map(([s, weight]) => ({ service: s, weight })) },
});

async function kubectlApply(doc: unknown): Promise<void> {
  const r = await k().kubectl(['apply', '-f', '-'], { input: JSON.stringify(doc) });
  if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
}

/** A meshed web (v1, v2 behind web-v1/web-v2/web) and an unmeshed legacy service in `ns`. */
async function shop(ns: string): Promise<void> {
  await Promise.all([
    createPod(ns, 'web-v1-a', 'web', { meshed: true, version: 'v1', workload: 'web-v1' }),
    createPod(ns, 'web-v2-a', 'web', { meshed: true, version: 'v2', workload: 'web-v2' }),
    createPod(ns, 'legacy-a', 'legacy', { meshed: false }),
    ...['web', 'web-v1', 'web-v2', 'legacy'].map((s) => createService(ns, s)),
  ]);
  await Promise.all([
    createSlice(ns, 'web', 'web-x1', [['10.1.0.1', 'web-v1-a'], ['10.1.0.2', 'web-v2-a']]),
    createSlice(ns, 'web-v1', 'web-v1-x1', [['10.1.0.1', 'web-v1-a']]),
    createSlice(ns, 'web-v2', 'web-v2-x1', [['10.1.0.2', 'web-v2-a']]),
    createSlice(ns, 'legacy', 'legacy-x1', [['10.1.0.9', 'legacy-a']]),
  ]);
}

const svcIn = (m: MeshModel | undefined, ns: string, name: string) => m?.services.find((s) => s.namespace === ns && s.name === name);
const clientIn = (ns: string): ProxyInfo => ({ namespace: ns, workload: 'frontend', serviceAccount: 'frontend', identity: `spiffe://${TD}/ns/${ns}/sa/frontend`, services: ['frontend'] });
const routesOf = (m: MeshModel, ns: string, svc: string) => {
  const v = viewFor(m, clientIn(ns), 'test');
  if (!v.config) throw new Error(`no view: ${JSON.stringify(v.problems)}`);
  return v.config.services.find((s) => s.name === `${svc}.${ns}`)?.routes;
};

// ---- tests ---------------------------------------------------------------------------------------

t.test('Services, EndpointSlices, Pods and a kubectl-applied TrafficSplit: 90/10, 50/50 within a second, deleted; slices scale', async (tt) => {
  const ns = await k().newNamespace('kube-source');
  const { source, emits, errors } = await watch(tt);
  await shop(ns);

  const model = await waitFor('the shop services with their endpoints', () => {
    const m = source.model;
    return svcIn(m, ns, 'web')?.endpoints.length === 2 && svcIn(m, ns, 'legacy')?.endpoints.length === 1 && svcIn(m, ns, 'web-v2')?.endpoints.length === 1 && m;
  });
  const webId = `spiffe://${TD}/ns/${ns}/sa/web`;
  tt.same(svcIn(model, ns, 'web')?.endpoints, [
    { address: '10.1.0.1:8080', ready: true, identity: webId, labels: { pod: 'web-v1-a', workload: 'web-v1', version: 'v1' } },
    { address: '10.1.0.2:8080', ready: true, identity: webId, labels: { pod: 'web-v2-a', workload: 'web-v2', version: 'v2' } },
  ], 'meshed Pods: identity from their service account; workload from the ReplicaSet owner');
  tt.same(svcIn(model, ns, 'legacy')?.endpoints, [{ address: '10.1.0.9:8080', ready: true, labels: { pod: 'legacy-a' } }], 'a Pod without the proxy: no identity');
  tt.same(svcIn(model, ns, 'web')?.ports, [{ port: 80, name: 'http', targetPort: 8080 }], 'the named targetPort resolved from the slice');

  await kubectlApply(splitDoc(ns, 'canary', [['web-v1', 90], ['web-v2', 10]]));
  let m = await waitFor('the 90/10 split', () => source.model?.trafficSplits.some((s) => s.namespace === ns) && source.model);
  tt.same(routesOf(m, ns, 'web'), [{ name: 'split:canary', backends: [{ service: `web-v1.${ns}`, weight: 90 }, { service: `web-v2.${ns}`, weight: 10 }] }], 'a client proxy\'s view splits 90/10');

  const before = emits.length;
  await kubectlApply(splitDoc(ns, 'canary', [['web-v1', 50], ['web-v2', 50]]));
  const stored = performance.now();
  const fifty = await waitFor('the 50/50 split', () => emits.find((e, i) => i >= before && e.model.trafficSplits.some((s) => s.namespace === ns && s.backends[0]?.weight === 50)));
  tt.ok(fifty.at - stored < 1000, `emitted ${Math.round(fifty.at - stored)} ms after kubectl apply returned`);
  tt.same(routesOf(fifty.model, ns, 'web')?.[0]?.backends?.map((b) => b.weight), [50, 50]);
  tt.equal(emits.length, before + 1, 'one change, one emit');

  // A split naming a service that does not exist: reported, and the rest still applies.
  await kubectlApply(splitDoc(ns, 'typo', [['web-v1', 1], ['web-v3', 1]], 'web-v1'));
  const typo = await waitFor('the problem of the dangling split', () => source.problems.find((p) => p.namespace === ns && p.name === 'typo'));
  tt.match(typo, { kind: 'TrafficSplit', namespace: ns, name: 'typo', field: '/spec/backends/1/service', message: /unknown service "web-v3/ });
  tt.same(routesOf(source.model!, ns, 'web')?.[0]?.backends?.map((b) => b.weight), [50, 50], 'the good split still applies');

  const del = await k().kubectl(['delete', '-n', ns, 'trafficsplit', 'canary', 'typo']);
  tt.equal(del.code, 0, del.stderr);
  m = await waitFor('the splits gone', () => !source.model?.trafficSplits.some((s) => s.namespace === ns) && source.model);
  tt.equal(routesOf(m, ns, 'web'), undefined, 'traffic goes back to the Service\'s own endpoints');
  tt.same(source.problems.filter((p) => p.namespace === ns), []);

  // Scale: a second web-v1 Pod joins the slice.
  await createPod(ns, 'web-v1-b', 'web', { meshed: true, version: 'v1', workload: 'web-v1' });
  await discovery().replaceNamespacedEndpointSlice({
    name: 'web-v1-x1',
    namespace: ns,
    body: sliceBody(ns, 'web-v1', 'web-v1-x1', [['10.1.0.1', 'web-v1-a'], ['10.1.0.3', 'web-v1-b']]),
  });
  m = await waitFor('two web-v1 endpoints', () => svcIn(source.model, ns, 'web-v1')?.endpoints.length === 2 && source.model);
  tt.same(svcIn(m, ns, 'web-v1')?.endpoints.map((e) => [e.address, e.identity]), [['10.1.0.1:8080', webId], ['10.1.0.3:8080', webId]]);
  tt.same(errors, [], 'no informer errors');
});

t.test('a second TrafficSplit of every request to an apex is reported and ignored: the one in force keeps the traffic', async (tt) => {
  const ns = await k().newNamespace('kube-split-conflict');
  await shop(ns);
  const { source } = await watch(tt, { namespace: ns });
  await kubectlApply(splitDoc(ns, 'web-canary', [['web-v1', 90], ['web-v2', 10]]));
  await waitFor('the canary split', () => source.model?.trafficSplits.some((s) => s.name === 'web-canary'));
  await new Promise((r) => setTimeout(r, 1100)); // creationTimestamp has whole seconds
  // Sorted by name, "a-test" came first and took every request from the canary in force.
  await kubectlApply(splitDoc(ns, 'a-test', [['web-v2', 100]]));
  const conflict = await waitFor('the conflict reported', () => source.problems.find((p) => p.namespace === ns && p.kind === 'TrafficSplit'));
  tt.match(conflict, { name: 'a-test', field: '/spec', message: /TrafficSplit\/.*\/web-canary already splits every request/ }, 'the newcomer is the one reported');
  tt.same(routesOf(source.model!, ns, 'web'), [{ name: 'split:web-canary', backends: [{ service: `web-v1.${ns}`, weight: 90 }, { service: `web-v2.${ns}`, weight: 10 }] }], 'the older split still applies');
  const del = await k().kubectl(['delete', '-n', ns, 'trafficsplit', 'web-canary']);
  tt.equal(del.code, 0, del.stderr);
  const m = await waitFor('the canary gone', () => !source.model?.trafficSplits.some((s) => s.name === 'web-canary') && source.model);
  tt.same(routesOf(m, ns, 'web'), [{ name: 'split:a-test', backends: [{ service: `web-v2.${ns}`, weight: 100 }] }], 'once it is deleted, the other applies');
});

t.test('a re-list that changes nothing emits nothing (namespace-scoped source, resync every 500 ms)', async (tt) => {
  const ns = await k().newNamespace('kube-resync');
  await shop(ns);
  await kubectlApply(splitDoc(ns, 'canary', [['web-v1', 90], ['web-v2', 10]]));
  const { source, emits } = await watch(tt, { namespace: ns, resyncMs: 500 });
  tt.equal(emits.length, 1, 'the initial model');
  tt.equal(svcIn(source.model, ns, 'web')?.endpoints.length, 2);
  tt.equal(source.model?.trafficSplits.length, 1);

  await waitFor('two re-lists of every kind', () => source.status().informers.every((i) => i.relists >= 2), 5000);
  await new Promise((r) => setTimeout(r, 200)); // past the debounce of the last swap
  tt.equal(emits.length, 1, `no emit after ${Math.min(...source.status().informers.map((i) => i.relists))} re-lists of every kind`);
  tt.same(source.status().informers.map((i) => i.restarts), [0, 0, 0, 0, 0, 0]);

  await kubectlApply(splitDoc(ns, 'canary', [['web-v1', 10], ['web-v2', 90]]));
  await waitFor('an emit for a real change', () => emits.length === 2);
  tt.same(emits[1]?.model.trafficSplits[0]?.backends.map((b) => b.weight), [10, 90]);
});

t.test('HTTPRoute: skipped while the Gateway API is not served; watched once its CRD appears', async (tt) => {
  const ns = await k().newNamespace('kube-route');
  await shop(ns);
  const { source, errors } = await watch(tt, { namespace: ns, discoveryMs: 300 });
  tt.equal(source.status().httpRoutes, false, 'no HTTPRoute CRD: not watched');

  await kubectlApply(HTTPROUTE_CRD);
  const est = await k().kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/httproutes.gateway.networking.k8s.io']);
  tt.equal(est.code, 0, est.stderr);
  await waitFor('the HTTPRoute informer', () => source.status().httpRoutes, 5000);

  await kubectlApply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'web', namespace: ns },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web-v1', port: 80, weight: 70 }, { name: 'web-v2', port: 80, weight: 30 }] }] },
  });
  const m = await waitFor('the route as a split', () => source.model?.trafficSplits.some((s) => s.source === `HTTPRoute/${ns}/web`) && source.model);
  tt.same(routesOf(m, ns, 'web'), [{ name: 'split:web-00', backends: [{ service: `web-v1.${ns}`, weight: 70 }, { service: `web-v2.${ns}`, weight: 30 }] }]);
  // Discovery can list a new CRD a moment before its storage serves (429 "storage is
  // (re)initializing"): the HTTPRoute informer then restarts with backoff, and nothing else fails.
  const routes = source.status().informers.find((i) => i.kind === 'HTTPRoute');
  tt.ok(errors.every((e) => e.startsWith('HTTPRoute: ')), `only transient HTTPRoute errors: ${JSON.stringify(errors)}`);
  tt.equal(routes?.restarts, errors.length, `restarted after each (${errors.length})`);
  tt.equal(routes?.synced, true);
});

t.test('HTTPRoute naming one Service parent twice (two ports): applied once, and every view stays valid', async (tt) => {
  await kubectlApply(HTTPROUTE_CRD); // idempotent: the test above may have installed it
  const est = await k().kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/httproutes.gateway.networking.k8s.io']);
  tt.equal(est.code, 0, est.stderr);
  const ns = await k().newNamespace('kube-route-ports');
  await shop(ns);
  const { source } = await watch(tt, { namespace: ns, discoveryMs: 300 });
  await waitFor('the HTTPRoute informer', () => source.status().httpRoutes, 5000);
  await kubectlApply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'web', namespace: ns },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }, { group: '', kind: 'Service', name: 'web', port: 8080 }],
      rules: [{ matches: [{ headers: [{ name: 'x-canary', value: '1' }] }], backendRefs: [{ name: 'web-v2', port: 80 }] }],
    },
  });
  const m = await waitFor('the route as a split', () => source.model?.trafficSplits.some((s) => s.source === `HTTPRoute/${ns}/web`) && source.model);
  // Before: one split per parentRef, so two routes named split:web-00:0, and a view that does not
  // validate: no proxy of the mesh got any config change any more.
  tt.same(routesOf(m, ns, 'web'), [
    { name: 'split:web-00:0', match: { headers: [{ name: 'x-canary', value: '1' }] }, backends: [{ service: `web-v2.${ns}`, weight: 1 }] },
    { name: 'default' },
  ]);
  tt.same(source.problems.filter((p) => p.namespace === ns), [], 'nothing to report');
});

t.test("a Service's cluster IP, as the API server assigned it, is a host of the service in a caller's view (an app calling http://<ClusterIP>/ or $WEB_SERVICE_HOST); its second port is a service of its own", async (tt) => {
  const ns = await k().newNamespace('kube-cluster-ip');
  const { source } = await watch(tt, { namespace: ns });
  const created = await core().createNamespacedService({ namespace: ns, body: { metadata: { name: 'api' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'metrics', port: 9090, targetPort: 9100 }] } } });
  const ip = created.spec?.clusterIP;
  tt.ok(ip && ip !== 'None', `the API server assigned a cluster IP (${ip})`);
  const m = await waitFor('the Service in the model', () => svcIn(source.model, ns, 'api') && source.model);
  const view = viewFor(m, clientIn('elsewhere'), 'test');
  tt.ok(view.config?.services.find((s) => s.name === `api.${ns}`)?.hosts?.includes(ip!), `a caller in another namespace reaches api.${ns} by ${ip}`);
  const metrics = view.config?.services.find((s) => s.name === `api.${ns}:9090`);
  tt.equal(metrics?.port, 9090, 'the second port is a service of its own: a caller naming api:9090 reaches port 9100 of the Pods, not the HTTP port');
  tt.ok(metrics?.hosts?.includes(ip!), 'by cluster IP too');
});

t.test("a headless Service's StatefulSet Pods are services of their own: an app calling http://es-0.es.<ns>.svc:9200/ reaches that Pod", async (tt) => {
  const ns = await k().newNamespace('kube-headless');
  const { source } = await watch(tt, { namespace: ns });
  await core().createNamespacedService({ namespace: ns, body: { metadata: { name: 'es' }, spec: { clusterIP: 'None', ports: [{ name: 'http', port: 9200, targetPort: 9200 }] } } });
  await discovery().createNamespacedEndpointSlice({
    namespace: ns,
    body: {
      metadata: { name: 'es-x1', labels: { 'kubernetes.io/service-name': 'es' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 9200, protocol: 'TCP' }],
      endpoints: [{ addresses: ['10.1.0.1'], hostname: 'es-0', conditions: { ready: true } }, { addresses: ['10.1.0.2'], hostname: 'es-1', conditions: { ready: true } }],
    },
  });
  const m = await waitFor('the slice in the model', () => svcIn(source.model, ns, 'es')?.endpoints.length === 2 && source.model);
  const view = viewFor(m, clientIn('elsewhere'), 'test');
  const pod = view.config?.services.find((s) => s.name === `es-0.es.${ns}`);
  tt.same(pod?.endpoints.map((e) => e.address), ['10.1.0.1:9200'], 'that Pod only');
  tt.same(pod?.hosts, [`es-0.es.${ns}.svc`, `es-0.es.${ns}.svc.cluster.local`, '10.1.0.1'], 'by its DNS names and its IP');
});
