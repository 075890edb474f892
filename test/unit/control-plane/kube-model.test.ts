// Kubernetes objects → MeshModel without I/O (kube-model.ts), and the source's machinery (kube-source.ts)
// on fake informers: restart backoff, cache kept across failures, debounce bounds, no emit on an idle re-list.
import t from 'tap';
import type { KubernetesObject, V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import {
  isMeshedPod,
  meshModelFromKubernetes,
  modelHash,
  objectName,
  podInput,
  serviceFromKubernetes,
  serviceInput,
  sliceInput,
  splitsFromHTTPRoute,
  workloadOf,
  type KubeObjects,
  type KubeProblem,
} from '../../../control-plane/config/kube-model.ts';
import { KubernetesSource, ResilientInformer, httpStatusOf, planRestart, type KubernetesSourceOptions, type SourceInformer, type WatchedKind } from '../../../control-plane/config/kube-source.ts';
import type { KubePodInput, MeshModel } from '../../../control-plane/config/model.ts';
import { modelProblems, prepare, viewFor, type ProxyInfo } from '../../../control-plane/config/translate.ts';

const TD = 'cluster.local';
const V = 'meshlet.io/v1alpha1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitUntil(ok: () => boolean, timeoutMs = 2000): Promise<void> {
  for (const end = performance.now() + timeoutMs; !ok(); await sleep(10)) if (performance.now() > end) throw new Error('timed out');
}

// ---- fixtures ----------------------------------------------------------------------------------

function pod(ns: string, name: string, o: { sa?: string; containers?: string[]; init?: string[]; annotations?: Record<string, string>; labels?: Record<string, string>; owner?: { kind: string; name: string } } = {}): V1Pod {
  return {
    metadata: {
      namespace: ns,
      name,
      labels: o.labels ?? {},
      annotations: o.annotations ?? {},
      ...(o.owner ? { ownerReferences: [{ apiVersion: 'apps/v1', kind: o.owner.kind, name: o.owner.name, uid: 'u', controller: true }] } : {}),
    },
    spec: {
      serviceAccountName: o.sa ?? 'default',
      containers: (o.containers ?? ['app']).map((n) => ({ name: n, image: 'x' })),
      ...(o.init ? { initContainers: o.init.map((n) => ({ name: n, image: 'x' })) } : {}),
    },
  };
}
const meshedPod = (ns: string, name: string, sa: string, labels: Record<string, string> = {}) => pod(ns, name, { sa, containers: ['app', 'meshlet-proxy'], labels });

function service(ns: string, name: string, ports: NonNullable<V1Service['spec']>['ports'] = [{ name: 'http', port: 80, targetPort: 8080 as never }], type?: string): V1Service {
  return { metadata: { namespace: ns, name }, spec: { ports, ...(type ? { type } : {}) } };
}

interface Ep {
  ip: string;
  pod?: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
}
function slice(ns: string, svc: string, name: string, eps: Ep[], ports: V1EndpointSlice['ports'] = [{ name: 'http', port: 8080, protocol: 'TCP' }], addressType = 'IPv4'): V1EndpointSlice {
  return {
    metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svc } },
    addressType,
    ports,
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      conditions: { ...(e.ready !== undefined ? { ready: e.ready } : {}), ...(e.serving !== undefined ? { serving: e.serving } : {}), ...(e.terminating !== undefined ? { terminating: e.terminating } : {}) },
      ...(e.pod ? { targetRef: { kind: 'Pod', namespace: ns, name: e.pod } } : {}),
    })),
  };
}

const cr = (kind: string, ns: string, name: string, spec: unknown, extra: Record<string, unknown> = {}) => ({
  apiVersion: V,
  kind,
  metadata: { namespace: ns, name, resourceVersion: '1', uid: 'x', generation: 1, ...extra },
  spec,
});
const split = (ns: string, name: string, weights: [number, number], svc = 'web') =>
  cr('TrafficSplit', ns, name, { service: svc, backends: [{ service: `${svc}-v1`, weight: weights[0] }, { service: `${svc}-v2`, weight: weights[1] }] });

function shop(extra: Partial<KubeObjects> = {}): KubeObjects {
  const ns = 'shop';
  return {
    services: [service(ns, 'web'), service(ns, 'web-v1'), service(ns, 'web-v2'), service(ns, 'legacy')],
    endpointSlices: [
      slice(ns, 'web', 'web-a', [{ ip: '10.0.0.1', pod: 'web-v1-a' }, { ip: '10.0.0.2', pod: 'web-v2-a' }]),
      slice(ns, 'web-v1', 'web-v1-a', [{ ip: '10.0.0.1', pod: 'web-v1-a' }]),
      slice(ns, 'web-v2', 'web-v2-a', [{ ip: '10.0.0.2', pod: 'web-v2-a' }]),
      slice(ns, 'legacy', 'legacy-a', [{ ip: '10.0.0.9', pod: 'legacy' }]),
    ],
    pods: [meshedPod(ns, 'web-v1-a', 'web', { version: 'v1' }), meshedPod(ns, 'web-v2-a', 'web', { version: 'v2' }), pod(ns, 'legacy', { sa: 'legacy' })],
    trafficSplits: [],
    authorizationPolicies: [],
    httpRoutes: [],
    ...extra,
  };
}

const client: ProxyInfo = { namespace: 'shop', workload: 'frontend', serviceAccount: 'frontend', identity: `spiffe://${TD}/ns/shop/sa/frontend`, services: ['frontend'] };
const svcOf = (m: MeshModel, ns: string, name: string) => m.services.find((s) => s.namespace === ns && s.name === name);

// ---- pods ----------------------------------------------------------------------------------------

t.test('isMeshedPod: the proxy container or a native sidecar; an opt-in annotation alone is not enough', async (t) => {
  t.equal(isMeshedPod(pod('a', 'p', { containers: ['app', 'meshlet-proxy'] })), true, 'a container named meshlet-proxy');
  t.equal(isMeshedPod(pod('a', 'p', { init: ['meshlet-proxy'] })), true, 'an init container (native sidecar)');
  t.equal(isMeshedPod(pod('a', 'p', { annotations: { 'meshlet.io/inject': 'enabled' } })), false, 'annotated but not injected: plaintext, no identity');
  t.equal(isMeshedPod(pod('a', 'p', { annotations: { 'meshlet.io/inject': 'disabled' } })), false);
  t.equal(isMeshedPod(pod('a', 'p', { containers: ['app', 'envoy'] })), false);
  t.equal(isMeshedPod({ metadata: {} }), false, 'no spec at all');
});

t.test('workloadOf and podInput: Deployment through the ReplicaSet hash, other owners as they are, label fallback', async (t) => {
  t.equal(workloadOf(pod('a', 'web-7d9f-x', { owner: { kind: 'ReplicaSet', name: 'web-7d9f' }, labels: { 'pod-template-hash': '7d9f' } })), 'web');
  t.equal(workloadOf(pod('a', 'db-0', { owner: { kind: 'StatefulSet', name: 'db' } })), 'db');
  t.equal(workloadOf(pod('a', 'x', { owner: { kind: 'ReplicaSet', name: 'plain-rs' } })), 'plain-rs', 'a bare ReplicaSet');
  t.equal(workloadOf(pod('a', 'x', { labels: { 'app.kubernetes.io/name': 'cart' } })), 'cart');
  t.equal(workloadOf(pod('a', 'x')), undefined);
  t.same(podInput(pod('a', 'x', { sa: 'svc', labels: { version: 'v3' } })), { namespace: 'a', name: 'x', serviceAccountName: 'svc', labels: { version: 'v3' }, meshed: false });
  t.equal(podInput({ metadata: { namespace: 'a', name: 'x' }, spec: { containers: [] } })?.serviceAccountName, 'default');
  t.equal(podInput({ metadata: { name: 'x' } }), undefined, 'no namespace');
});

// ---- services ------------------------------------------------------------------------------------

t.test('serviceFromKubernetes: endpoints with identities for meshed Pods only, labels, ports resolved', async (t) => {
  const s = serviceInput(service('shop', 'web', [{ name: 'metrics', port: 9090, targetPort: 9090 as never }, { name: 'http', port: 80, targetPort: 'web' as never }]))!;
  const pods = new Map<string, KubePodInput>([
    ['shop/a', podInput(meshedPod('shop', 'a', 'web', { version: 'v1', 'pod-template-hash': 'h1' }))!],
    ['shop/b', podInput(pod('shop', 'b', { sa: 'web', owner: { kind: 'StatefulSet', name: 'web' }, labels: { 'app.kubernetes.io/version': '2' } }))!],
  ]);
  const sl = [
    sliceInput(slice('shop', 'web', 's1', [{ ip: '10.0.0.2', pod: 'a' }, { ip: '10.0.0.1', pod: 'b' }, { ip: '10.0.0.3' }], [{ name: 'http', port: 8080 }, { name: 'metrics', port: 9090 }]))!,
    sliceInput(slice('other', 'web', 's2', [{ ip: '10.9.9.9' }]))!, // another namespace's web
  ];
  const m = serviceFromKubernetes(s, sl, pods, TD);
  t.equal(m.source, 'Service/shop/web');
  t.same(m.ports, [{ port: 9090, name: 'metrics', targetPort: 9090 }, { port: 80, name: 'http', targetPort: 8080 }], 'the named targetPort from the slice port of the same name');
  t.same(m.endpoints, [
    { address: '10.0.0.1:8080', ready: true, labels: { pod: 'b', workload: 'web', version: '2' } },
    { address: '10.0.0.2:8080', ready: true, identity: `spiffe://${TD}/ns/shop/sa/web`, labels: { pod: 'a', version: 'v1' } },
    { address: '10.0.0.3:8080', ready: true, labels: {} },
  ], 'the http port only; an unmeshed or unknown Pod has no identity; sorted');
});

t.test('a Service selector reaches the model (what a proxy\'s labels are matched against); none or an empty one: no selector', async (t) => {
  const withSelector: V1Service = { metadata: { namespace: 'shop', name: 'billing-svc' }, spec: { selector: { app: 'billing' }, ports: [{ port: 80, targetPort: 8080 as never }] } };
  t.same(serviceInput(withSelector)?.selector, { app: 'billing' });
  t.same(serviceFromKubernetes(serviceInput(withSelector)!, [], new Map(), TD).selector, { app: 'billing' });
  t.equal(serviceInput(service('shop', 'web'))?.selector, undefined, 'a Service without selector (endpoints by hand)');
  t.equal(serviceInput({ ...withSelector, spec: { ...withSelector.spec, selector: {} } })?.selector, undefined, 'an empty selector selects nothing');
  const { model } = meshModelFromKubernetes({ services: [withSelector], endpointSlices: [], pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [] });
  t.same(model.services[0]?.selector, { app: 'billing' });
});

const withIps = (spec: Partial<NonNullable<V1Service['spec']>>): V1Service => ({ metadata: { namespace: 'shop', name: 'web' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 as never }], ...spec } });

t.test("a Service's cluster IPs are hosts of it in every caller's view (IPv6 in brackets); a headless Service has none", async (t) => {
  t.same(serviceInput(withIps({ clusterIP: '10.96.0.12', clusterIPs: ['10.96.0.12', 'fd00::c'] }))?.clusterIPs, ['10.96.0.12', 'fd00::c'], 'clusterIPs (dual stack)');
  t.same(serviceInput(withIps({ clusterIP: '10.96.0.12' }))?.clusterIPs, ['10.96.0.12'], 'clusterIP alone (an older object)');
  t.equal(serviceInput(withIps({ clusterIP: 'None', clusterIPs: ['None'] }))?.clusterIPs, undefined, 'headless');
  t.equal(serviceInput(withIps({}))?.clusterIPs, undefined, 'none assigned');
  const { model } = meshModelFromKubernetes({ services: [withIps({ clusterIP: '10.96.0.12', clusterIPs: ['10.96.0.12', 'fd00::c'] })], endpointSlices: [], pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [] });
  for (const ns of ['shop', 'other']) {
    const v = viewFor(model, { namespace: ns, workload: 'caller', serviceAccount: 'caller', identity: `spiffe://${TD}/ns/${ns}/sa/caller`, services: ['caller'] }, 'test');
    t.same(v.config?.services.find((s) => s.name === 'web.shop')?.hosts?.filter((h) => /^[[\d]/.test(h)), ['10.96.0.12', '[fd00::c]'], `a caller in ${ns}`);
  }
});

t.test("a Service's other TCP ports are services of their own (web.shop:9090) on the same endpoints at that port's target; a caller naming the port reaches them", async (t) => {
  const svc = service('shop', 'web', [
    { name: 'http', port: 80, targetPort: 'http' as never },
    { name: 'metrics', port: 9090, targetPort: 9100 as never },
    { name: 'grpc', port: 9000, targetPort: 'grpc' as never },
    { name: 'alt', port: 8081, targetPort: 'http' as never },
    { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 as never },
    { name: 'later', port: 7000, targetPort: 'nope' as never },
  ]);
  const sl = slice('shop', 'web', 'web-a', [{ ip: '10.0.0.1', pod: 'web-a' }, { ip: 'fd00::2', pod: 'web-b' }], [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'grpc', port: 9001, protocol: 'TCP' }]);
  const m = serviceFromKubernetes(serviceInput(svc)!, [sliceInput(sl)!], new Map(), TD);
  t.same(m.otherPorts, [{ port: 9090, targetPort: 9100 }, { port: 9000, targetPort: 9001 }], "TCP ports with a known target other than the HTTP port's: a named one from the slice; not UDP, not one unresolved, not one on the HTTP port's target");
  const { model } = meshModelFromKubernetes({ services: [svc], endpointSlices: [sl], pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [] });
  const v = viewFor(model, client, 'test');
  const byName = new Map(v.config?.services.map((s) => [s.name, s]));
  t.same(byName.get('web.shop')?.endpoints.map((e) => e.address), ['10.0.0.1:8080', '[fd00::2]:8080'], 'the service itself: the HTTP port');
  t.same(byName.get('web.shop:9090'), { name: 'web.shop:9090', port: 9090, hosts: byName.get('web.shop')?.hosts, endpoints: [{ address: '10.0.0.1:9100' }, { address: '[fd00::2]:9100' }] }, 'web.shop:9090: the same hosts, the endpoints on 9100');
  t.same(byName.get('web.shop:9000')?.endpoints.map((e) => e.address), ['10.0.0.1:9001', '[fd00::2]:9001']);
  t.same(v.problems, [], 'a valid view');
});

const headless = (name: string): V1Service => ({ metadata: { namespace: 'shop', name }, spec: { clusterIP: 'None', ports: [{ name: 'http', port: 9200, targetPort: 9200 as never }] } });

t.test("a headless Service's Pods are services of their own: by IP, and a StatefulSet Pod by <hostname>.<service>.<ns>.svc; a Pod behind two headless Services keeps its IP for the one where it has a hostname", async (t) => {
  const sl = (svc: string): V1EndpointSlice => {
    const s = slice('shop', svc, `${svc}-a`, [{ ip: '10.0.0.1', pod: 'es-0' }, { ip: '10.0.0.2', pod: 'es-1' }], [{ name: 'http', port: 9200, protocol: 'TCP' }]);
    // The EndpointSlice controller sets a hostname only in the Service a Pod's spec.subdomain names (the StatefulSet's).
    if (svc === 'es') [s.endpoints![0]!.hostname, s.endpoints![1]!.hostname] = ['es-0', 'es-1'];
    return s;
  };
  t.equal(serviceInput(headless('es'))?.headless, true);
  t.equal(serviceInput(service('shop', 'web'))?.headless, undefined, 'a Service with a cluster IP is not headless');
  const { model } = meshModelFromKubernetes({ services: [headless('es'), headless('es-discovery'), service('shop', 'web')], endpointSlices: [sl('es'), sl('es-discovery'), slice('shop', 'web', 'web-a', [{ ip: '10.0.0.9' }])], pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [] });
  const other = { ...client, namespace: 'other', identity: `spiffe://${TD}/ns/other/sa/frontend` };
  const byName = (c: ProxyInfo) => new Map(viewFor(model, c, 'test').config?.services.map((s) => [s.name, s]));
  const own = byName(client);
  t.same(own.get('es-0.es.shop'), { name: 'es-0.es.shop', hosts: ['es-0.es', 'es-0.es.shop.svc', 'es-0.es.shop.svc.cluster.local', '10.0.0.1'], endpoints: [{ address: '10.0.0.1:9200' }] }, 'a StatefulSet Pod: its DNS names and its IP');
  t.same(own.get('es-1.es.shop')?.hosts, ['es-1.es', 'es-1.es.shop.svc', 'es-1.es.shop.svc.cluster.local', '10.0.0.2']);
  t.same(own.get('ip-10-0-0-1.es-discovery.shop'), { name: 'ip-10-0-0-1.es-discovery.shop', hosts: [], endpoints: [{ address: '10.0.0.1:9200' }] }, "the other headless Service: its Pods named by IP, which the StatefulSet's Service keeps (it sorts first, and still loses it)");
  t.notOk([...own.keys()].some((n) => n.endsWith('.web.shop')), "a Service with a cluster IP: no service per Pod");
  t.same(byName(other).get('es-0.es.shop')?.hosts, ['es-0.es.shop.svc', 'es-0.es.shop.svc.cluster.local', '10.0.0.1'], 'from another namespace: no short name');
  t.same(viewFor(model, client, 'test').problems, [], 'a valid view');
});

const clashService = (ns: string, name: string, spec: Record<string, unknown>): V1Service => ({ metadata: { namespace: ns, name }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 as never }], ...spec } });
/** A Service's slice whose endpoints may have a hostname. */
const clashSlice = (ns: string, svc: string, eps: Array<[ip: string, hostname?: string]>): V1EndpointSlice => {
  const s = slice(ns, svc, `${svc}-a`, eps.map(([ip]) => ({ ip })));
  eps.forEach(([, h], i) => h !== undefined && (s.endpoints![i]!.hostname = h));
  return s;
};
const clashViews = (services: V1Service[], endpointSlices: V1EndpointSlice[]) => {
  const { model } = meshModelFromKubernetes({ services, endpointSlices, pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [] });
  return [client, { ...client, namespace: 'other', identity: `spiffe://${TD}/ns/other/sa/frontend` }].map((c) => viewFor(model, c, 'test'));
};
const servicesOf = (v: ReturnType<typeof viewFor>) => new Map(v.config?.services.map((s) => [s.name, s]));

t.test("names and hosts that clash across Services and Pods leave every caller's view valid: a shared hostname is one service, a Service keeps what it claims", async (t) => {

  // A Deployment whose Pod template sets hostname: web and subdomain: web: every replica has that hostname (its DNS name answers with all).
  const shared = clashViews([clashService('shop', 'web', { clusterIP: 'None' })], [clashSlice('shop', 'web', [['10.0.0.1', 'web'], ['10.0.0.2', 'web']])]);
  for (const v of shared) t.same(v.problems, [], `a shared hostname: a valid view (${v.config ? 'one' : 'none'})`);
  const own = servicesOf(shared[0]!);
  t.same(own.get('web.web.shop')?.endpoints.map((e) => e.address), ['10.0.0.1:8080', '10.0.0.2:8080'], 'the hostname: one service of every Pod that has it');
  t.same(own.get('ip-10-0-0-2.web.shop')?.hosts, ['10.0.0.2'], 'each of those Pods: its IP');

  // A Pod's <hostname>.<service> (short, in its namespace) is the other namespace's Service api in namespace db.
  const short = clashViews([clashService('shop', 'db', { clusterIP: 'None' }), clashService('db', 'api', {})], [clashSlice('shop', 'db', [['10.0.0.1', 'api']]), clashSlice('db', 'api', [['10.0.0.9']])]);
  t.same(short[0]!.problems, [], "a Pod's short name that is another Service's: a valid view");
  t.same(servicesOf(short[0]!).get('api.db')?.endpoints.map((e) => e.address), ['10.0.0.9:8080'], 'api.db is the Service');
  t.notOk(servicesOf(short[0]!).get('api.db.shop')?.hosts?.includes('api.db'), 'the Pod is left without it');

  // Two Services listing one cluster IP (a list taken while the IP moved), and that IP a headless Service's Pod's too.
  const ips = clashViews([clashService('shop', 'a', { clusterIP: '10.0.0.5', clusterIPs: ['10.0.0.5'] }), clashService('shop', 'b', { clusterIP: '10.0.0.5', clusterIPs: ['10.0.0.5'] }), clashService('shop', 'db', { clusterIP: 'None' })], [clashSlice('shop', 'a', [['10.0.1.1']]), clashSlice('shop', 'b', [['10.0.1.2']]), clashSlice('shop', 'db', [['10.0.0.5']])]);
  for (const v of ips) t.same(v.problems, [], 'one IP, three claims: a valid view');
  const m = servicesOf(ips[0]!);
  t.ok(m.get('a.shop')?.hosts?.includes('10.0.0.5'), 'the first Service by name keeps the IP');
  t.notOk(m.get('b.shop')?.hosts?.includes('10.0.0.5'), 'the second does not');
  t.same(m.get('ip-10-0-0-5.db.shop')?.hosts, [], 'nor the Pod');
});

t.test("a headless Service's other ports are services of each of its Pods too: es-0.es:9114 and <Pod IP>:9114 reach port 9114, not the HTTP port", async (t) => {
  const es: V1Service = { metadata: { namespace: 'shop', name: 'es' }, spec: { clusterIP: 'None', ports: [{ name: 'http', port: 9200, targetPort: 9200 as never }, { name: 'metrics', port: 9114, targetPort: 'metrics' as never }] } };
  const sl = slice('shop', 'es', 'es-a', [{ ip: '10.0.0.1' }, { ip: '10.0.0.2' }], [{ name: 'http', port: 9200, protocol: 'TCP' }, { name: 'metrics', port: 9115, protocol: 'TCP' }]);
  sl.endpoints![0]!.hostname = 'es-0';
  const { model } = meshModelFromKubernetes({ services: [es], endpointSlices: [sl], pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [] });
  const v = viewFor(model, client, 'test');
  t.same(v.problems, [], 'a valid view');
  const byName = new Map(v.config?.services.map((s) => [s.name, s]));
  t.same(byName.get('es-0.es.shop:9114'), { name: 'es-0.es.shop:9114', port: 9114, hosts: ['es-0.es', 'es-0.es.shop.svc', 'es-0.es.shop.svc.cluster.local', '10.0.0.1'], endpoints: [{ address: '10.0.0.1:9115' }] }, "a StatefulSet Pod's second port: its names and IP on that port, the port's target");
  t.same(byName.get('ip-10-0-0-2.es.shop:9114'), { name: 'ip-10-0-0-2.es.shop:9114', port: 9114, hosts: ['10.0.0.2'], endpoints: [{ address: '10.0.0.2:9115' }] }, 'a Pod without a hostname: its IP on that port');
  t.same(byName.get('es-0.es.shop')?.endpoints, [{ address: '10.0.0.1:9200' }], 'the Pod itself: the HTTP port');
});

t.test('serviceFromKubernetes: readiness, terminating, duplicates across slices, IPv6, port choice', async (t) => {
  const svc = serviceInput(service('shop', 'web', [{ name: 'grpc', port: 90, protocol: 'UDP', targetPort: 'grpc' as never }, { port: 81, targetPort: 8081 as never }]))!;
  const sl = [
    sliceInput(slice('shop', 'web', 'old', [{ ip: '10.0.0.1', ready: false }, { ip: '10.0.0.2', ready: false, terminating: true }, { ip: '10.0.0.3', ready: false, serving: true, terminating: true }], [{ port: 8081 }]))!,
    sliceInput(slice('shop', 'web', 'new', [{ ip: '10.0.0.1', ready: true }, { ip: '10.0.0.4' }], [{ port: 8081 }]))!,
    sliceInput(slice('shop', 'web', 'v6', [{ ip: 'fd00::1' }], [{ port: 8081 }], 'IPv6'))!,
  ];
  const m = serviceFromKubernetes(svc, sl, new Map(), TD);
  t.same(m.endpoints.map((e) => [e.address, e.ready]), [
    ['10.0.0.1:8081', true], // in two slices: ready wins
    ['10.0.0.3:8081', false], // terminating but serving: kept, not ready
    ['10.0.0.4:8081', true], // no ready condition: ready
    ['[fd00::1]:8081', true],
  ]);
  t.same(m.ports, [{ port: 90, name: 'grpc', targetPortName: 'grpc' }, { port: 81, targetPort: 8081 }], 'a named targetPort no slice resolves is left out (its name kept: a policy on it guards every port)');
  const noSlice = serviceFromKubernetes(serviceInput(service('shop', 'x', [{ port: 80 }]))!, [sliceInput(slice('shop', 'x', 'p', [{ ip: '10.1.1.1' }], []))!], new Map(), TD);
  t.same(noSlice.endpoints.map((e) => e.address), ['10.1.1.1:80'], 'no slice port: the Service\'s target (= port when unset)');
});

// ---- the whole model -----------------------------------------------------------------------------

t.test('meshModelFromKubernetes: services, a 90/10 split a client proxy sees, identities', async (t) => {
  const { model, problems } = meshModelFromKubernetes(shop({ trafficSplits: [split('shop', 'canary', [90, 10])] }));
  t.same(problems, []);
  t.same(model.services.map((s) => `${s.namespace}/${s.name}`), ['shop/legacy', 'shop/web', 'shop/web-v1', 'shop/web-v2']);
  t.same(svcOf(model, 'shop', 'legacy')?.endpoints, [{ address: '10.0.0.9:8080', ready: true, labels: { pod: 'legacy' } }], 'not meshed: no identity');
  t.equal(svcOf(model, 'shop', 'web-v1')?.endpoints[0]?.identity, `spiffe://${TD}/ns/shop/sa/web`);
  const v = viewFor(model, client, 'v1');
  t.ok(v.config, JSON.stringify(v.problems));
  t.same(v.config?.services.find((s) => s.name === 'web.shop')?.routes, [{ name: 'split:canary', backends: [{ service: 'web-v1.shop', weight: 90 }, { service: 'web-v2.shop', weight: 10 }] }]);
});

t.test('a mesh-wide problem names MeshModel, as in folder mode (not MeshModel//); an object keeps kind/namespace/name', async (t) => {
  const { model, problems } = meshModelFromKubernetes(shop({ trafficSplits: [cr('TrafficSplit', 'shop', 'broken', { service: 'web', backends: [{ service: 'web-v1', weight: -1 }] })] }), { trustDomain: 'Not_A_Domain' });
  const named = problems.map((p) => [objectName(p), p.field]);
  t.same(named, [['MeshModel', '/trustDomain'], ['TrafficSplit/shop/broken', '/spec/backends/0/weight']]);
  t.same(modelProblems(prepare(model)).map((p) => [p.object, p.path]), [['MeshModel', '/trustDomain']], 'folder mode lists the translation problem by the same name');
});

t.test('invalid CRs are reported with kind/namespace/name/field; the rest of the model applies', async (t) => {
  const broken = cr('TrafficSplit', 'shop', 'broken', { service: 'web', backends: [{ service: 'web-v1', weight: -1 }] });
  const dangling = cr('TrafficSplit', 'shop', 'dangling', { service: 'web', backends: [{ service: 'web-v1', weight: 1 }, { service: 'web-v3', weight: 1 }] });
  const badPolicy = cr('AuthorizationPolicy', 'shop', 'nobody', { targetRef: { service: 'web' }, rules: [{ from: {} }] });
  const goodPolicy = cr('AuthorizationPolicy', 'shop', 'web', { targetRef: { service: 'web' }, rules: [{ from: { namespaces: ['shop'] } }] });
  const { model, problems } = meshModelFromKubernetes(shop({ trafficSplits: [broken, dangling, split('shop', 'canary', [90, 10], 'web')], authorizationPolicies: [badPolicy, goodPolicy] }));
  t.same(problems.map((p) => [p.kind, p.namespace, p.name, p.field]), [
    ['AuthorizationPolicy', 'shop', 'nobody', '/spec/rules/0/from'],
    ['TrafficSplit', 'shop', 'broken', '/spec/backends/0/weight'],
    // Its known backend makes it a second split of every request to web, after canary: ignored.
    ['TrafficSplit', 'shop', 'dangling', '/spec'],
    ['TrafficSplit', 'shop', 'dangling', '/spec/backends/1/service'],
  ]);
  t.match(problems.find((p) => p.name === 'dangling' && p.field === '/spec/backends/1/service')?.message, /unknown service "web-v3\.shop"/);
  t.same(model.trafficSplits.map((s) => s.name), ['canary', 'dangling'], 'the broken one is out; the dangling one waits for its service');
  t.same(model.authorizationPolicies.map((p) => p.metadata.name), ['web']);
  t.same(model.authorizationPolicies[0]?.metadata, { name: 'web', namespace: 'shop' }, 'only name and namespace: a status write does not change the model');
  const v = viewFor(model, client, 'v1');
  t.same(v.config?.services.find((s) => s.name === 'web.shop')?.routes?.map((r) => r.name), ['split:canary'], 'the valid split still applies');
});

t.test('the hash ignores informer order, resourceVersions, status and Pod churn that changes nothing', async (t) => {
  const objs = shop({ trafficSplits: [split('shop', 'a', [1, 1]), split('shop', 'b', [1, 1], 'web-v1')] });
  const base = meshModelFromKubernetes(objs);
  const reversed: KubeObjects = Object.fromEntries(Object.entries(objs).map(([k, v]) => [k, v.toReversed()])) as unknown as KubeObjects;
  t.equal(modelHash(meshModelFromKubernetes(reversed).model, meshModelFromKubernetes(reversed).problems), modelHash(base.model, base.problems), 'a re-list in another order');
  const bumped = {
    ...objs,
    trafficSplits: objs.trafficSplits.map((s) => ({ ...(s as object), metadata: { ...(s as { metadata: object }).metadata, resourceVersion: '99' }, status: { conditions: [{ type: 'Accepted', status: 'True' }] } })),
    pods: objs.pods.map((p) => ({ ...p, status: { phase: 'Running', podIP: '10.0.0.1' } })),
  };
  const b = meshModelFromKubernetes(bumped);
  t.equal(modelHash(b.model, b.problems), modelHash(base.model, base.problems), 'status and resourceVersion');
  const changed = meshModelFromKubernetes({ ...objs, trafficSplits: [split('shop', 'a', [1, 2])] });
  t.not(modelHash(changed.model, changed.problems), modelHash(base.model, base.problems));
});

t.test('ExternalName services and slices without a service label are left out', async (t) => {
  const { model } = meshModelFromKubernetes({
    ...shop(),
    services: [service('shop', 'ext', [{ port: 80 }], 'ExternalName'), service('shop', 'web')],
    endpointSlices: [{ ...slice('shop', 'web', 'orphan', [{ ip: '10.0.0.5' }]), metadata: { namespace: 'shop', name: 'orphan' } }],
  });
  t.same(model.services.map((s) => [s.name, s.endpoints.length]), [['web', 0]]);
});

// ---- HTTPRoute -----------------------------------------------------------------------------------

const route = (ns: string, name: string, spec: unknown) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { namespace: ns, name }, spec });

t.test('HTTPRoute with a Service parent: one split per rule, weights, matches, consumer routes', async (t) => {
  const r = route('shop', 'web', {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }, { name: 'some-gateway' }],
    rules: [
      { matches: [{ headers: [{ name: 'x-canary', value: '1' }] }, { path: { type: 'Exact', value: '/beta' }, method: 'GET' }], backendRefs: [{ name: 'web-v2', port: 80 }] },
      { backendRefs: [{ name: 'web-v1', port: 80, weight: 90 }, { name: 'web-v2', port: 80, weight: 10 }] },
    ],
  });
  const { splits, problems } = splitsFromHTTPRoute(r);
  t.same(problems, []);
  t.same(splits, [
    { source: 'HTTPRoute/shop/web', namespace: 'shop', name: 'web-00', service: 'web', backends: [{ service: 'web-v2', weight: 1 }], matches: [{ headers: [{ name: 'x-canary', value: '1' }] }, { path: { exact: '/beta' }, method: 'GET' }] },
    { source: 'HTTPRoute/shop/web', namespace: 'shop', name: 'web-01', service: 'web', backends: [{ service: 'web-v1', weight: 90 }, { service: 'web-v2', weight: 10 }] },
  ]);
  const { model, problems: mp } = meshModelFromKubernetes(shop({ httpRoutes: [r] }));
  t.same(mp, []);
  t.same(viewFor(model, client, 'v1').config?.services.find((s) => s.name === 'web.shop')?.routes?.map((x) => x.name), ['split:web-00:0', 'split:web-00:1', 'split:web-01']);

  const consumer = splitsFromHTTPRoute(route('lab', 'try', { parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'shop' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [{ name: 'web-v2', namespace: 'shop' }] }] }));
  t.same(consumer.splits, [{ source: 'HTTPRoute/lab/try', namespace: 'lab', name: 'try-00', service: 'web.shop', backends: [{ service: 'web-v2.shop', weight: 1 }] }], 'prefix / is every request');
  t.same(splitsFromHTTPRoute(route('shop', 'gw', { parentRefs: [{ name: 'gateway' }], rules: [{ backendRefs: [{ name: 'web' }] }] })), { splits: [], problems: [] }, 'Gateway parents are not the mesh\'s');
});

t.test('HTTPRoute rules the proxy cannot honour are reported and not applied; the others are', async (t) => {
  const { splits, problems } = splitsFromHTTPRoute(route('shop', 'web', {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
    rules: [
      { matches: [{ path: { type: 'RegularExpression', value: '/a.*' } }], backendRefs: [{ name: 'web-v1' }] },
      { filters: [{ type: 'RequestHeaderModifier' }], backendRefs: [{ name: 'web-v1' }] },
      { backendRefs: [{ name: 'bucket', kind: 'Bucket', group: 'storage.example' }] },
      { matches: [{ queryParams: [{ name: 'a', value: 'b' }] }], backendRefs: [{ name: 'web-v1' }] },
      { matches: [{ headers: [{ name: 'bad header', value: 'x' }] }], backendRefs: [{ name: 'web-v1' }] },
      {},
      { backendRefs: [{ name: 'web-v2', weight: 0 }, { name: 'web-v1' }] },
    ],
  }));
  t.same(problems.map((p) => p.field), ['/spec/rules/0/matches/0', '/spec/rules/1/filters', '/spec/rules/2/backendRefs/0/kind', '/spec/rules/3/matches/0', '/spec/rules/4/matches/0', '/spec/rules/5/backendRefs']);
  t.ok(problems.every((p) => p.kind === 'HTTPRoute' && p.namespace === 'shop' && p.name === 'web'));
  t.same(splits.map((s) => [s.name, s.backends]), [['web-06', [{ service: 'web-v2', weight: 0 }, { service: 'web-v1', weight: 1 }]]]);
});

t.test('an HTTPRoute beyond the proxy\'s limits is its own problem: every view stays valid and the others apply', async (t) => {
  const parent = [{ group: '', kind: 'Service', name: 'web' }];
  const bad = route('shop', 'bad', {
    parentRefs: parent,
    rules: [
      { backendRefs: [{ name: 'web-v1', weight: -1 }] },
      { backendRefs: [{ name: 'web-v1', weight: 1.5 }] },
      { backendRefs: [{ name: 'web-v1', weight: 2 ** 53 }] },
      { backendRefs: [{ name: 'web-v1', weight: '5' }] },
      { backendRefs: Array.from({ length: 65 }, (_, i) => ({ name: `web-v${i}` })) },
      { matches: Array.from({ length: 65 }, (_, i) => ({ path: { type: 'Exact', value: `/p${i}` } })), backendRefs: [{ name: 'web-v1' }] },
      { matches: [{ headers: [{ name: 'x-canary', value: 1 }] }], backendRefs: [{ name: 'web-v1' }] },
      { matches: [{ path: { type: 'PathPrefix', value: 'beta' } }], backendRefs: [{ name: 'web-v1' }] },
      { matches: [{ headers: Array.from({ length: 17 }, (_, i) => ({ name: `h${i}`, value: 'x' })) }], backendRefs: [{ name: 'web-v1' }] },
    ],
  });
  const { splits, problems } = splitsFromHTTPRoute(bad);
  t.same(splits, [], 'no rule applies');
  t.same(problems.map((p) => [p.field, p.message]), [
    ['/spec/rules/0/backendRefs/0/weight', 'weight -1 is not an integer from 0 to 1000000: the rule is not applied'],
    ['/spec/rules/1/backendRefs/0/weight', 'weight 1.5 is not an integer from 0 to 1000000: the rule is not applied'],
    ['/spec/rules/2/backendRefs/0/weight', 'weight 9007199254740992 is not an integer from 0 to 1000000: the rule is not applied'],
    ['/spec/rules/3/backendRefs/0/weight', 'weight "5" is not an integer from 0 to 1000000: the rule is not applied'],
    ['/spec/rules/4/backendRefs', '65 backendRefs; at most 64 are supported: the rule is not applied'],
    ['/spec/rules/5/matches', '65 matches; at most 64 are supported (as in Gateway API): the rule is not applied'],
    ['/spec/rules/6/matches/0', 'header match value 1 is not a string: the rule is not applied'],
    ['/spec/rules/7/matches/0', 'path value "beta" does not start with /: the rule is not applied'],
    ['/spec/rules/8/matches/0', "the match does not fit the proxy's route matches (headers: Expected array length to be less or equal to 16): the rule is not applied"],
  ]);
  // Each rule alone, with a good split of another service beside it: the client's view is valid
  // and carries the good split; the bad rule is reported on its HTTPRoute.
  const good = split('shop', 'legacy-canary', [1, 1], 'web');
  for (const [i, rule] of (bad.spec as { rules: unknown[] }).rules.entries()) {
    const one = route('shop', `bad${i}`, { parentRefs: parent, rules: [rule] });
    const { model, problems: mp } = meshModelFromKubernetes(shop({ httpRoutes: [one], trafficSplits: [good] }));
    const v = viewFor(model, client, 'v1');
    t.ok(v.config, `rule ${i}: the view is valid`, { problems: v.problems });
    t.same(v.config?.services.find((s) => s.name === 'web.shop')?.routes?.map((r) => r.name), ['split:legacy-canary'], `rule ${i}: the good split applies`);
    t.same(mp.map((p) => p.kind + '/' + p.name), [`HTTPRoute/bad${i}`], `rule ${i}: reported on its HTTPRoute only`);
  }
});

t.test('route names stay unique: one Service named twice as a parent, an HTTPRoute rule and a TrafficSplit of one name', async (t) => {
  const twice = route('shop', 'web', {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }, { kind: 'Service', name: 'web', namespace: 'shop' }, { kind: 'Service', name: 'web.shop' }],
    rules: [{ matches: [{ path: { value: '/a' } }], backendRefs: [{ name: 'web-v1' }] }],
  });
  t.same(splitsFromHTTPRoute(twice).splits.map((s) => s.service), ['web'], 'one parent');
  // TrafficSplit `web-00` and the HTTPRoute `web`'s rule 0 are both split `web-00` of web.
  const ts = cr('TrafficSplit', 'shop', 'web-00', { service: 'web', backends: [{ service: 'web-v2', weight: 1 }], matches: [{ path: { prefix: '/b' } }] });
  const { model, problems } = meshModelFromKubernetes(shop({ httpRoutes: [twice], trafficSplits: [ts] }));
  t.same(problems, []);
  const v = viewFor(model, client, 'v1');
  const routes = v.config?.services.find((s) => s.name === 'web.shop')?.routes ?? [];
  t.same(routes.map((r) => [r.match?.path, r.backends?.[0]?.service]), [[{ prefix: '/a' }, 'web-v1.shop'], [{ prefix: '/b' }, 'web-v2.shop'], [undefined, undefined]], 'both apply');
  t.equal(new Set(routes.map((r) => r.name)).size, 3, `unique names: ${routes.map((r) => r.name).join(', ')}`);
});

t.test('a Service with more endpoints than a proxy takes: the ready ones are kept and it is reported; every view stays valid', async (t) => {
  // 11 EndpointSlices of 1000 (the most a slice holds): 11 000 endpoints, the last 500 not ready.
  const big = Array.from({ length: 11 }, (_, k) =>
    slice('shop', 'big', `big-${k}`, Array.from({ length: 1000 }, (_, i) => ({ ip: `10.1.${k * 4 + (i >> 8)}.${i & 255}`, ready: k * 1000 + i < 10_500 }))),
  );
  const objects = shop();
  const { model, problems } = meshModelFromKubernetes({ ...objects, services: [...objects.services, service('shop', 'big')], endpointSlices: [...objects.endpointSlices, ...big] });
  t.same(problems.map((p) => [p.kind, p.namespace, p.name, p.field]), [['Service', 'shop', 'big', '/endpoints']]);
  t.match(problems[0]?.message, /11000 endpoints; a proxy takes at most 10000 per service: 1000 .* are left out/);
  const v = viewFor(model, client, 'v1');
  t.ok(v.config, 'the view is valid', { problems: v.problems });
  const eps = v.config?.services.find((s) => s.name === 'big.shop')?.endpoints ?? [];
  t.equal(eps.length, 10_000);
  t.equal(eps.filter((e) => e.ready === false).length, 0, 'the 500 not ready are the first left out');
  t.ok(v.config?.services.some((s) => s.name === 'web.shop'), 'the other services are there');
});

// ---- restarts ------------------------------------------------------------------------------------

t.test('planRestart: exponential, capped, jittered between half and full, reset after a healthy run', async (t) => {
  const p = { baseMs: 100, maxMs: 1000, resetAfterMs: 5000 };
  t.same([0, 1, 2, 3, 4, 10].map((a) => planRestart(a, 0, p, 1).delayMs), [100, 200, 400, 800, 1000, 1000], 'ceilings');
  t.same([0, 1, 2].map((a) => planRestart(a, 0, p, 0).delayMs), [50, 100, 200], 'never below half the ceiling');
  t.equal(planRestart(3, 0, p, 0.5).delayMs, 600);
  t.same(planRestart(2, 0, p, 0), { delayMs: 200, attempt: 3 }, 'the attempt count grows');
  t.same(planRestart(7, 5000, p, 1), { delayMs: 100, attempt: 1 }, 'a run of resetAfterMs starts over');
  t.same(planRestart(7, 4999, p, 1).delayMs, 1000);
  t.equal(planRestart(0, 0, p, 7).delayMs, 100, 'random is clamped');
  const q = { ...p, unreachableMaxMs: 300 };
  t.same([0, 1, 2, 10].map((a) => planRestart(a, 0, q, 1, true).delayMs), [100, 200, 300, 300], 'no HTTP answer: capped at unreachableMaxMs');
  t.equal(planRestart(10, 0, q, 1, false).delayMs, 1000, 'an HTTP answer (429, 503) keeps the full backoff');
  t.equal(planRestart(10, 0, p, 1, true).delayMs, 1000, 'no unreachableMaxMs: maxMs');
});

t.test('httpStatusOf: an answer\'s status, not a connection error\'s or a DOMException\'s code', async (t) => {
  t.equal(httpStatusOf(Object.assign(new Error('HTTP-Code: 403'), { code: 403 })), 403, 'ApiException (a list)');
  t.equal(httpStatusOf(Object.assign(new Error('Gone'), { statusCode: 410 })), 410, 'a watch');
  t.equal(httpStatusOf(new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) })), undefined, 'refused');
  t.equal(httpStatusOf(new DOMException('aborted', 'TimeoutError')), undefined, 'a timeout (DOMException code 23)');
});

// A fake API: objects per kind, informers that list them and see later writes, failures on demand.
class FakeApi {
  readonly objects = new Map<WatchedKind, Map<string, KubernetesObject>>();
  readonly live = new Set<FakeInformer>();
  created = 0;
  failStarts = new Map<WatchedKind, number>();
  /** Every list of the kind fails with this (an ApiException-like error) until deleted. */
  failWith = new Map<WatchedKind, unknown>();

  put(kind: WatchedKind, o: KubernetesObject): void {
    const key = `${o.metadata?.namespace}/${o.metadata?.name}`;
    const m = this.objects.get(kind) ?? new Map();
    m.set(key, o);
    this.objects.set(kind, m);
    for (const i of this.live) if (i.kind === kind) i.see(key, o);
  }
  remove(kind: WatchedKind, key: string): void {
    this.objects.get(kind)?.delete(key);
    for (const i of this.live) if (i.kind === kind) i.see(key, undefined);
  }
  /** The watch of `kind` dies (as when the API server goes away). */
  breakWatch(kind: WatchedKind): void {
    for (const i of this.live) if (i.kind === kind) i.fail(new Error(`${kind} watch: connection reset`));
  }
  factory = (kind: WatchedKind): SourceInformer => {
    this.created++;
    return new FakeInformer(kind, this);
  };
}

class FakeInformer implements SourceInformer {
  readonly cache = new Map<string, KubernetesObject>();
  readonly #events: Array<() => void> = [];
  readonly #errors: Array<(e: unknown) => void> = [];
  readonly kind: WatchedKind;
  readonly api: FakeApi;
  constructor(kind: WatchedKind, api: FakeApi) {
    this.kind = kind;
    this.api = api;
  }
  onEvent(cb: () => void): void {
    this.#events.push(cb);
  }
  onError(cb: (e: unknown) => void): void {
    this.#errors.push(cb);
  }
  async start(): Promise<void> {
    await sleep(1);
    if (this.api.failWith.has(this.kind)) return this.fail(this.api.failWith.get(this.kind));
    const left = this.api.failStarts.get(this.kind) ?? 0;
    if (left > 0) {
      this.api.failStarts.set(this.kind, left - 1);
      this.fail(new Error(`${this.kind} list: 503`));
      return;
    }
    for (const [k, o] of this.api.objects.get(this.kind) ?? []) {
      this.cache.set(k, o);
      for (const cb of this.#events) cb();
    }
    this.api.live.add(this);
  }
  async stop(): Promise<void> {
    this.api.live.delete(this);
    this.fail(new Error('aborted')); // ListWatch's aborted watch reports an error after stop, too
  }
  list(): readonly KubernetesObject[] {
    return [...this.cache.values()];
  }
  see(key: string, o: KubernetesObject | undefined): void {
    if (o) this.cache.set(key, o);
    else this.cache.delete(key);
    for (const cb of this.#events) cb();
  }
  fail(e: unknown): void {
    this.api.live.delete(this);
    for (const cb of this.#errors) cb(e);
  }
}

t.test('ResilientInformer: failed lists are retried with growing jittered delays; the first list resolves start()', async (t) => {
  const api = new FakeApi();
  api.put('Service', service('shop', 'web'));
  api.failStarts.set('Service', 3);
  const delays: number[] = [];
  let changes = 0;
  const inf = new ResilientInformer({
    kind: 'Service',
    factory: api.factory,
    policy: { baseMs: 10, maxMs: 40, resetAfterMs: 10_000 },
    random: () => 1,
    onChange: () => changes++,
    onRestart: (_k, _e, ms) => delays.push(ms),
  });
  t.teardown(() => inf.stop());
  await inf.start();
  t.same(delays, [10, 20, 40], 'three failures, three restarts');
  t.match(inf.status(), { kind: 'Service', synced: true, restarts: 3, lastError: 'Service list: 503' });
  t.equal(inf.list().length, 1);
  t.equal(changes, 1, 'one change: the cache swapped in (list events of a pending informer are not forwarded)');
});

t.test('ResilientInformer: an unreachable API server is retried at most every unreachableMaxMs; its first answers start the backoff over', async (t) => {
  const api = new FakeApi();
  api.put('Service', service('shop', 'web'));
  const refused = new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:6443') });
  api.failWith.set('Service', refused);
  const delays: string[] = [];
  const inf = new ResilientInformer({
    kind: 'Service',
    factory: api.factory,
    policy: { baseMs: 5, maxMs: 1000, resetAfterMs: 10_000, unreachableMaxMs: 20 },
    random: () => 1,
    onChange: () => {},
    onRestart: (_k, e, ms) => delays.push(`${(e as Error).message} ${ms}`),
  });
  t.teardown(() => inf.stop());
  void inf.start();
  await waitUntil(() => delays.length >= 5);
  api.failWith.set('Service', Object.assign(new Error('HTTP-Code: 429'), { code: 429, body: '{"message":"storage is (re)initializing"}' }));
  await waitUntil(() => delays.some((d) => d.startsWith('HTTP-Code: 429')));
  api.failWith.delete('Service');
  await inf.start();
  t.same(delays.slice(0, 5), ['fetch failed 5', 'fetch failed 10', 'fetch failed 20', 'fetch failed 20', 'fetch failed 20'], 'refused: doubling, capped at unreachableMaxMs');
  t.equal(delays.find((d) => d.startsWith('HTTP-Code: 429')), 'HTTP-Code: 429 5', 'the first answer (429) starts at baseMs, not at the ceiling the refusals reached');
  t.match(inf.status(), { synced: true, watching: true });
});

t.test('ResilientInformer: a broken watch is replaced; the old cache serves until the new list; stale errors are ignored', async (t) => {
  const api = new FakeApi();
  api.put('Pod', pod('shop', 'a'));
  const restarts: string[] = [];
  const inf = new ResilientInformer({
    kind: 'Pod',
    factory: api.factory,
    policy: { baseMs: 60, maxMs: 60, resetAfterMs: 10_000 },
    random: () => 1,
    onChange: () => {},
    onRestart: (k, e) => restarts.push(`${k}: ${(e as Error).message}`),
  });
  t.teardown(() => inf.stop());
  await inf.start();
  api.breakWatch('Pod');
  api.put('Pod', pod('shop', 'b')); // written while nobody watches
  t.same(inf.list().map((p) => p.metadata?.name), ['a'], 'the failed informer\'s cache stays in force');
  t.same(restarts, ['Pod: Pod watch: connection reset'], 'one restart, and the abort error of the retired informer is ignored');
  await sleep(120);
  t.same(inf.list().map((p) => p.metadata?.name).toSorted(), ['a', 'b'], 'the replacement re-listed');
  t.equal(api.live.size, 1, 'one live informer');
  inf.relist();
  await sleep(20);
  t.match(inf.status(), { restarts: 1, relists: 1 });
  t.equal(api.created, 3);
});

// ---- the source on fake informers ------------------------------------------------------------------

function fakeSource(api: FakeApi, o: { routes?: () => boolean | Promise<boolean>; debounceMs?: number; maxDelayMs?: number; discoveryMs?: number; onObjects?: KubernetesSourceOptions['onObjects'] } = {}) {
  const emits: Array<{ at: number; model: MeshModel; problems: readonly unknown[] }> = [];
  const errors: string[] = [];
  const source = new KubernetesSource({
    informerFactory: api.factory,
    hasHTTPRoute: async () => (await o.routes?.()) ?? false,
    onChange: (model, problems) => emits.push({ at: performance.now(), model, problems }),
    onError: (e) => errors.push(`${e.source}: ${e.message}`),
    ...(o.onObjects ? { onObjects: o.onObjects } : {}),
    restart: { baseMs: 20, maxMs: 20, resetAfterMs: 10_000 },
    resyncMs: 0,
    discoveryMs: o.discoveryMs ?? 0,
    ...(o.debounceMs !== undefined ? { debounceMs: o.debounceMs } : {}),
    ...(o.maxDelayMs !== undefined ? { maxDelayMs: o.maxDelayMs } : {}),
  });
  return { source, emits, errors };
}

function seed(api: FakeApi): void {
  const objs = shop();
  for (const s of objs.services) api.put('Service', s);
  for (const s of objs.endpointSlices) api.put('EndpointSlice', s);
  for (const p of objs.pods) api.put('Pod', p);
}

t.test('KubernetesSource: one emit after every kind listed; bursts coalesce; a re-list or broken watch that changes nothing emits nothing', async (t) => {
  const api = new FakeApi();
  seed(api);
  api.failStarts.set('TrafficSplit', 2);
  const { source, emits, errors } = fakeSource(api);
  t.teardown(() => source.stop());
  const first = await source.start();
  t.equal(emits.length, 1, 'exactly one emit for the initial state');
  t.equal(emits[0]?.model, first);
  t.same(first.services.map((s) => s.name), ['legacy', 'web', 'web-v1', 'web-v2']);
  t.same(errors, ['TrafficSplit: TrafficSplit list: 503', 'TrafficSplit: TrafficSplit list: 503'], 'list failures reported, retried, and nothing emitted before all kinds listed');

  const t0 = performance.now();
  for (let i = 0; i < 5; i++) api.put('TrafficSplit', split('shop', 'canary', [100 - i * 10, i * 10]) as KubernetesObject);
  await sleep(250);
  t.equal(emits.length, 2, 'a burst of five writes is one emit');
  t.ok(emits[1]!.at - t0 >= 90, 'after the quiet period');
  t.same(emits[1]?.model.trafficSplits[0]?.backends.map((b) => b.weight), [60, 40], 'the last state');

  api.put('Pod', { ...pod('shop', 'legacy', { sa: 'legacy' }), status: { phase: 'Running' } } as KubernetesObject);
  api.breakWatch('Service');
  await sleep(100);
  source.resync();
  await sleep(250);
  t.equal(emits.length, 2, 'Pod status churn, a re-list and a watch restart that change nothing emit nothing');
  t.ok(source.status().informers.every((i) => i.synced));
  t.match(source.status().informers.find((i) => i.kind === 'Service'), { restarts: 1, relists: 1 });
  t.ok(source.status().informers.every((i) => i.relists === 1), 'every kind re-listed');

  api.remove('TrafficSplit', 'shop/canary');
  await sleep(250);
  t.equal(emits.length, 3);
  t.same(emits[2]?.model.trafficSplits, []);
});

/** What the client library throws for a list the API server refused. */
const apiError = (code: number, message: string) => Object.assign(new Error(`HTTP-Code: ${code}`), { code, body: JSON.stringify({ kind: 'Status', message }) });

t.test('KubernetesSource: a CRD not installed (404) does not hold back the first model, and joins once installed', async (t) => {
  const api = new FakeApi();
  seed(api);
  api.failWith.set('TrafficSplit', apiError(404, 'the server could not find the requested resource'));
  const { source, emits, errors } = fakeSource(api);
  t.teardown(() => source.stop());
  const first = await source.start();
  t.same(first.services.map((s) => s.name), ['legacy', 'web', 'web-v1', 'web-v2'], 'the Services, Pods and other kinds are emitted');
  t.match(errors[0], /^TrafficSplit: HTTP 404: the server could not find the requested resource: the CRD trafficsplits\.meshlet\.io is not installed \(kubectl apply -k manifests\/, or meshlet install\)/, 'the error names the CRD to install');
  t.match(source.status().informers.find((i) => i.kind === 'TrafficSplit'), { synced: false, absent: true, watching: false });

  api.failWith.delete('TrafficSplit'); // installed, with a split
  api.put('TrafficSplit', split('shop', 'canary', [90, 10]) as KubernetesObject);
  await waitUntil(() => emits.length === 2);
  t.same(emits[1]?.model.trafficSplits.map((s) => s.name), ['canary'], 'its objects join the model once it lists');
  t.match(source.status().informers.find((i) => i.kind === 'TrafficSplit'), { synced: true, absent: false, watching: true });

  // The CRD deleted while watched (the API server deletes its objects first: the watch sees them go).
  const seen = errors.length;
  api.failWith.set('TrafficSplit', apiError(404, 'the server could not find the requested resource'));
  api.breakWatch('TrafficSplit');
  await waitUntil(() => errors.length >= seen + 2); // the broken watch, then the 404 of its replacement
  t.match(errors.at(-1), /the CRD trafficsplits\.meshlet\.io is not installed \(kubectl apply -k manifests\/, or meshlet install\) any more; the TrafficSplit objects listed last stay in force until it is$/, 'a 404 after listing names the CRD too');
  t.match(source.status().informers.find((i) => i.kind === 'TrafficSplit'), { synced: true, absent: false, watching: false });
});

t.test('KubernetesSource: the first model waits for API discovery to answer, and carries the HTTPRoutes it finds', async (t) => {
  const api = new FakeApi();
  seed(api);
  api.put('HTTPRoute', route('shop', 'web', { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web-v1', weight: 90 }, { name: 'web-v2', weight: 10 }] }] }) as KubernetesObject);
  let asked = 0;
  const { source, emits, errors } = fakeSource(api, {
    routes: async () => {
      if (++asked <= 2) throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:6443') });
      return true;
    },
  });
  t.teardown(() => source.stop());
  const first = await source.start();
  t.equal(asked, 3, 'discovery retried until it answered');
  t.same(errors.slice(0, 2), Array(2).fill('discovery: fetch failed: connect ECONNREFUSED 127.0.0.1:6443: cannot tell whether HTTPRoutes are served; the first model waits for the answer'));
  t.same(first.trafficSplits.map((s) => s.source), ['HTTPRoute/shop/web'], 'the first model has the HTTPRoute\'s split');
  t.equal(emits.length, 1);
  t.equal(source.status().discoveryError, undefined);
});

t.test('KubernetesSource: a kind it may not list (403) or that fails (503) holds back the first model until it lists', async (t) => {
  for (const err of [apiError(403, 'authorizationpolicies.meshlet.io is forbidden'), apiError(503, 'unavailable')]) {
    const api = new FakeApi();
    seed(api);
    api.failWith.set('AuthorizationPolicy', err);
    const { source, emits } = fakeSource(api);
    t.teardown(() => source.stop());
    let started = false;
    source.start().then(() => (started = true), () => {});
    await sleep(150);
    t.equal(emits.length, 0, `HTTP ${err.code}: nothing is emitted (a model without AuthorizationPolicies would fail open)`);
    t.equal(started, false);
    api.failWith.delete('AuthorizationPolicy');
    await waitUntil(() => started);
    t.equal(emits.length, 1, 'the first model once it lists');
  }
});

t.test('KubernetesSource: onObjects after every rebuild, emitted or not, with the status as held and the problems in force', async (t) => {
  const api = new FakeApi();
  seed(api);
  const canary = split('shop', 'canary', [90, 10]);
  api.put('TrafficSplit', canary as KubernetesObject);
  api.put('TrafficSplit', cr('TrafficSplit', 'shop', 'typo', { service: 'web-v1', backends: [{ service: 'nope', weight: 1 }] }) as KubernetesObject);
  const seen: Array<{ splits: readonly unknown[]; problems: readonly KubeProblem[] }> = [];
  const { source, emits } = fakeSource(api, { onObjects: (o, problems) => seen.push({ splits: o.trafficSplits, problems }) });
  t.teardown(() => source.stop());
  await source.start();
  t.equal(seen.length, 1, 'with the first emit');
  t.equal(seen[0]?.problems, source.problems, 'the problems /config-problems lists');
  t.same(seen[0]?.problems.map((p) => `${p.name} ${p.field}`), ['typo /spec/backends', 'typo /spec/backends/0/service']);
  const status = { observedGeneration: 1, conditions: [{ type: 'Accepted', status: 'True' }] };
  api.put('TrafficSplit', { ...canary, metadata: { ...canary.metadata, resourceVersion: '2' }, status } as KubernetesObject);
  await sleep(250);
  t.equal(emits.length, 1, 'a status write changes no model: nothing emitted');
  t.equal(seen.length, 2, 'but onObjects sees it');
  const held = seen[1]?.splits.find((o) => (o as typeof canary).metadata.name === 'canary') as { status?: unknown } | undefined;
  t.same(held?.status, status, 'status as the informer holds it');
  t.equal(seen[1]?.problems, seen[0]?.problems);
});

t.test('KubernetesSource: steady changes still emit at least every maxDelayMs', async (t) => {
  const api = new FakeApi();
  seed(api);
  const { source, emits } = fakeSource(api, { debounceMs: 100, maxDelayMs: 300 });
  t.teardown(() => source.stop());
  await source.start();
  const t0 = performance.now();
  for (let i = 1; i <= 20; i++) {
    api.put('TrafficSplit', split('shop', 'canary', [100 - i, i]) as KubernetesObject);
    await sleep(50);
  }
  const during = emits.filter((e) => e.at > t0).map((e) => e.at - t0);
  t.ok(during.length >= 2, `emits during a 1 s stream of changes 50 ms apart: ${during.map(Math.round).join(', ')}`);
  t.ok(during[0]! < 300 + 60, 'the first within maxDelayMs');
});

t.test('KubernetesSource: HTTPRoute is watched only while discovery serves it', async (t) => {
  const api = new FakeApi();
  seed(api);
  let served = false;
  const { source, emits } = fakeSource(api, { routes: () => served, discoveryMs: 50 });
  t.teardown(() => source.stop());
  await source.start();
  t.equal(source.status().httpRoutes, false, 'absent at start: skipped, no error');
  api.put('HTTPRoute', route('shop', 'web', { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web-v1', weight: 1 }] }] }) as KubernetesObject);
  served = true;
  await sleep(400);
  t.equal(source.status().httpRoutes, true);
  t.same(source.model?.trafficSplits.map((s) => s.source), ['HTTPRoute/shop/web']);
  served = false;
  await sleep(400);
  t.equal(source.status().httpRoutes, false);
  t.same(emits.at(-1)?.model.trafficSplits, [], 'routes gone with the CRD');
});
