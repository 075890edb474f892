// A mesh past what one proxy config holds (10 000 services, 1024 inbound policies): every view
// stays valid, deterministic and bounded, and the overflow is reported once, on what caused it.
import t from 'tap';
import { MAX_POLICIES, MAX_SERVICES, parseProxyConfig, type ProxyConfig } from '../../../api/proxy-config.ts';
import { parseResource, type AuthorizationPolicy } from '../../../api/resources.ts';
import { authorize } from '../../../proxy/policy/authorize.ts';
import { emptyModel, splitFromResource, type MeshModel, type ModelService } from '../../../control-plane/config/model.ts';
import { canonicalJson, configHash, modelProblems, prepare, viewOf, type ProxyInfo } from '../../../control-plane/config/translate.ts';
import { desiredStatus } from '../../../control-plane/config/resource-status.ts';

const TD = 'cluster.local';
const service = (namespace: string, name: string): ModelService => ({
  namespace,
  name,
  ports: [],
  endpoints: [{ address: '10.0.0.1:8080', ready: true, identity: `spiffe://${TD}/ns/${namespace}/sa/${name}`, labels: {} }],
  source: `MeshService/${namespace}/${name}`,
});
const proxy = (namespace: string, services: string[], workload = 'caller'): ProxyInfo => ({ namespace, workload, serviceAccount: workload, identity: `spiffe://${TD}/ns/${namespace}/sa/${workload}`, services });

/** `bulk` services spread over namespaces a-ns … j-ns, plus `shop` (web, its canary backends in `zz-canary`, billing). */
function bigMesh(bulk: number): MeshModel {
  const services: ModelService[] = [];
  for (let i = 0; i < bulk; i++) services.push(service(`${String.fromCharCode(97 + (i % 10))}-ns`, `s${String(i).padStart(5, '0')}`));
  services.push(service('shop', 'web'), service('shop', 'billing'), service('zz-canary', 'web-v2'));
  const split = parseResource({
    apiVersion: 'meshlet.io/v1alpha1',
    kind: 'TrafficSplit',
    metadata: { namespace: 'shop', name: 'web-canary' },
    spec: { service: 'web', backends: [{ service: 'web', weight: 90 }, { service: 'web-v2.zz-canary', weight: 10 }] },
  });
  if (!split.ok || split.value.kind !== 'TrafficSplit') throw new Error('fixture');
  return { ...emptyModel(), services, trafficSplits: [splitFromResource(split.value)] };
}

function validView(m: ReturnType<typeof prepare>, p: ProxyInfo): ProxyConfig {
  const v = viewOf(m, p, 'v1');
  if (!v.config) throw new Error(`no view: ${JSON.stringify(v.problems.slice(0, 3))}`);
  const parsed = parseProxyConfig(JSON.parse(JSON.stringify(v.config)));
  if (!parsed.ok) throw new Error(`invalid view: ${JSON.stringify(parsed.problems.slice(0, 3))}`);
  return v.config as ProxyConfig;
}

t.test('10 001 services and more: every view is valid, holds 10 000, its own namespace and split backends first; reported once', async (t) => {
  const m = bigMesh(MAX_SERVICES + 500);
  const prepared = prepare(m);
  const shop = validView(prepared, proxy('shop', ['frontend']));
  const names = new Set(shop.services.map((s) => s.name));
  t.equal(shop.services.length, MAX_SERVICES, 'filled up to the limit');
  t.ok(names.has('web.shop') && names.has('billing.shop'), 'the caller\'s own namespace is in');
  t.ok(names.has('web-v2.zz-canary'), 'and the backend its split sends to, although its namespace sorts last');
  t.same(shop.services.find((s) => s.name === 'web.shop')?.routes?.[0]?.backends?.map((b) => b.service), ['web.shop', 'web-v2.zz-canary'], 'so the split applies');
  t.ok(names.has('s00000.a-ns') && !names.has(`s${MAX_SERVICES + 499}.j-ns`), 'the rest by namespace and name: the first in, the last out');

  const other = validView(prepared, proxy('j-ns', ['x']));
  t.equal(other.services.length, MAX_SERVICES);
  t.ok(other.services.some((s) => s.name === `s${MAX_SERVICES + 499}.j-ns`), 'another namespace\'s view has its own namespace first');

  const again = validView(prepare(bigMesh(MAX_SERVICES + 500)), proxy('shop', ['frontend']));
  t.equal(canonicalJson(again), canonicalJson(shop), 'an equal model gives a byte-identical view');
  t.equal(configHash(again), configHash(shop), 'and the same version');

  const problems = modelProblems(prepared);
  t.same(problems.map((p) => [p.object, p.path]), [['MeshModel', '/services']], 'one problem for the whole model, not one per view');
  t.match(problems[0]?.message, /the mesh has 10503 services; a proxy's view holds at most 10000.*own namespace first.*at least 503 are left out/);

  const full = prepare(bigMesh(MAX_SERVICES - 3));
  t.equal(validView(full, proxy('a-ns', ['x'])).services.length, MAX_SERVICES, 'at the limit every service is in every view');
  t.same(modelProblems(full), [], 'and nothing is reported');
});

const policy = (namespace: string, name: string, target: string, port?: number): AuthorizationPolicy => {
  const r = parseResource({
    apiVersion: 'meshlet.io/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { namespace, name },
    spec: { targetRef: { service: target, ...(port !== undefined ? { port } : {}) }, rules: [{ from: { serviceAccounts: [{ name: 'frontend' }] } }] },
  });
  if (!r.ok || r.value.kind !== 'AuthorizationPolicy') throw new Error('fixture');
  return r.value;
};
const policies = (n: number, target: string) => Array.from({ length: n }, (_, i) => policy('shop', `p${String(i).padStart(4, '0')}`, target));
const frontendId = `spiffe://${TD}/ns/shop/sa/frontend`;
const allowed = (cfg: ProxyConfig, port: number) => authorize(cfg.inbound?.policies ?? [], cfg.inbound?.defaultPolicy ?? 'all-authenticated', { port, identity: frontendId, method: 'GET', path: '/' }).allowed;

t.test('more than 1024 AuthorizationPolicies on one service: its proxies deny every inbound request (fail closed), each policy says why, others unaffected', async (t) => {
  const guardWeb = policy('shop', 'web-readers', 'web');
  const m: MeshModel = { ...emptyModel(), services: [service('shop', 'web'), service('shop', 'billing')], authorizationPolicies: [...policies(MAX_POLICIES + 1, 'billing'), guardWeb] };
  const prepared = prepare(m);
  const billing = validView(prepared, proxy('shop', ['billing'], 'billing'));
  t.same(billing.inbound?.policies, [{ name: 'meshlet/too-many-policies:billing.shop', rules: [] }], 'one policy that allows nothing stands in for them');
  t.notOk(allowed(billing, 8080), 'a caller every policy allowed is denied');
  t.notOk(allowed(billing, 9999), 'on every port');

  const web = validView(prepared, proxy('shop', ['web'], 'web'));
  t.same(web.inbound?.policies?.map((p) => p.name), ['shop/web-readers'], 'another service\'s proxies keep their policies');
  t.ok(allowed(web, 8080), 'and allow what they allow');
  t.equal(validView(prepared, proxy('shop', ['frontend'])).services.length, 2, 'callers of billing are unaffected');

  const problems = modelProblems(prepared);
  t.equal(problems.length, MAX_POLICIES + 1, 'one problem per policy (its status), none on web-readers');
  t.same(problems[0]?.effect, { reason: 'TooManyPolicies', applies: false, reference: false });
  t.match(problems[0]?.message, /billing\.shop has 1025 AuthorizationPolicies; a proxy takes at most 1024: none of them applies and billing\.shop's proxies deny every inbound request/);

  const status = desiredStatus(
    { kind: 'AuthorizationPolicy', namespace: 'shop', name: 'p0000', uid: 'u', generation: 1, resourceVersion: '1', status: undefined },
    problems.map((p) => ({ kind: 'AuthorizationPolicy', namespace: 'shop', name: p.object.split('/')[2]!, field: p.path, message: p.message, ...(p.effect ? { effect: p.effect } : {}) })),
    0,
  );
  t.match(status.conditions?.find((c) => c.type === 'Accepted'), { status: 'False', reason: 'TooManyPolicies' }, 'Accepted=False with the reason');

  const exactly = prepare({ ...m, authorizationPolicies: policies(MAX_POLICIES, 'billing') });
  t.equal(validView(exactly, proxy('shop', ['billing'], 'billing')).inbound?.policies?.length, MAX_POLICIES, 'with 1024 all of them apply');
  t.same(modelProblems(exactly), [], 'and nothing is reported');
});

const half = (target: string) => Array.from({ length: 600 }, (_, i) => policy('shop', `${target}-${i}`, target));

t.test('a proxy serving two services whose policies add up past 1024 denies every inbound request; each service alone is unaffected', async (t) => {
  const m: MeshModel = { ...emptyModel(), services: [service('shop', 'a'), service('shop', 'b')], authorizationPolicies: [...half('a'), ...half('b')] };
  const prepared = prepare(m);
  const v = viewOf(prepared, proxy('shop', ['a', 'b'], 'ab'), 'v1');
  t.same(v.config?.inbound?.policies, [{ name: 'meshlet/too-many-policies:a.shop,b.shop', rules: [] }]);
  t.match(v.problems, [{ object: 'ProxyConfig/shop/ab', path: '/inbound/policies', message: /have 1200 AuthorizationPolicies together; a proxy takes at most 1024/ }]);
  t.equal(validView(prepared, proxy('shop', ['a'], 'a')).inbound?.policies?.length, 600);
  t.same(modelProblems(prepared), [], 'no policy is at fault');
});
