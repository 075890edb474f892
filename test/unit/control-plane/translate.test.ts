// Tests for control-plane/config (model, translate, diff): the mesh model → each proxy's view, without I/O.
// Every view built here is checked with parseProxyConfig; determinism is checked on the JSON bytes.
import t, { type Test } from 'tap';
import { parseProxyConfig, type ProxyConfig, type Service } from '../../../api/proxy-config.ts';
import { parseResource, type Resource } from '../../../api/resources.ts';
import { authorize } from '../../../proxy/policy/authorize.ts';
import { diffViews } from '../../../control-plane/config/diff.ts';
import { modelFromResources, type MeshModel, type ModelOptions } from '../../../control-plane/config/model.ts';
import { canonicalJson, configHash, modelProblems, prepare, servedServices, viewFor, viewOf, type ProxyInfo, type View, type ViewOptions } from '../../../control-plane/config/translate.ts';

const V = 'meshlet.io/v1alpha1';
const TD = 'cluster.local';

function res(doc: unknown): Resource {
  const r = parseResource(doc);
  if (!r.ok) throw new Error(`fixture does not parse: ${JSON.stringify(r.problems)}`);
  return r.value as Resource;
}
const meshService = (namespace: string, name: string, spec: object) => res({ apiVersion: V, kind: 'MeshService', metadata: { name, namespace }, spec });
const trafficSplit = (namespace: string, name: string, spec: object) => res({ apiVersion: V, kind: 'TrafficSplit', metadata: { name, namespace }, spec });
const authzPolicy = (namespace: string, name: string, spec: object) => res({ apiVersion: V, kind: 'AuthorizationPolicy', metadata: { name, namespace }, spec });

const web = meshService('shop', 'web', {
  ports: [{ port: 80, name: 'http' }],
  endpoints: [
    { address: '10.0.0.2:8080', serviceAccount: 'web', labels: { workload: 'web', version: 'v1' } },
    { address: '10.0.0.1:8080', serviceAccount: 'web', labels: { workload: 'web', version: 'v2' } },
  ],
  policy: { timeouts: { perTry: 500, request: 2000 }, retry: { attempts: 2 }, breaker: { consecutiveFailures: 5 } },
});
const webV1 = meshService('shop', 'web-v1', { endpoints: [{ address: '10.0.0.2:8080', serviceAccount: 'web', labels: { version: 'v1' } }] });
const webV2 = meshService('shop', 'web-v2', { endpoints: [{ address: '10.0.0.1:8080', serviceAccount: 'web', labels: { version: 'v2' } }] });
const billing = meshService('shop', 'billing', { ports: [{ port: 80 }], endpoints: [{ address: '10.0.1.1:9000', serviceAccount: 'billing' }] });
const canary = (weights: [number, number] = [90, 10], extra: object = {}) =>
  trafficSplit('shop', 'web-canary', { service: 'web', backends: [{ service: 'web-v1', weight: weights[0] }, { service: 'web-v2', weight: weights[1] }], ...extra });

const frontend: ProxyInfo = { namespace: 'shop', workload: 'frontend', serviceAccount: 'frontend', identity: `spiffe://${TD}/ns/shop/sa/frontend`, services: ['frontend'] };
const billingProxy: ProxyInfo = { namespace: 'shop', workload: 'billing', serviceAccount: 'billing', identity: `spiffe://${TD}/ns/shop/sa/billing`, services: ['billing'] };

const model = (resources: Resource[], opts: ModelOptions = {}): MeshModel => modelFromResources(resources, opts);

/** The view, asserted valid: config present and passing parseProxyConfig. */
function view(tt: Test, m: MeshModel, proxy: ProxyInfo = frontend, version = 'v1', options: ViewOptions = {}): { config: ProxyConfig; problems: View['problems'] } {
  const v = viewFor(m, proxy, version, options);
  if (!v.config) throw new Error(`no config: ${JSON.stringify(v.problems)}`);
  const parsed = parseProxyConfig(JSON.parse(JSON.stringify(v.config)));
  tt.ok(parsed.ok, 'the view passes parseProxyConfig', parsed.ok ? {} : { problems: parsed.problems });
  return { config: v.config as ProxyConfig, problems: v.problems };
}
const svc = (cfg: ProxyConfig, name: string): Service => {
  const s = cfg.services.find((x) => x.name === name);
  if (!s) throw new Error(`no service ${name} in ${cfg.services.map((x) => x.name).join(', ')}`);
  return s;
};

t.test('a 90/10 TrafficSplit: the apex splits to canonical backend names; backends keep their own endpoints', async (tt) => {
  const { config, problems } = view(tt, model([web, webV1, webV2, canary()]));
  tt.same(problems, []);
  tt.same(config.services.map((s) => s.name), ['web-v1.shop', 'web-v2.shop', 'web.shop'], 'sorted canonical names');
  const apex = svc(config, 'web.shop');
  tt.same(apex.routes, [{ name: 'split:web-canary', backends: [{ service: 'web-v1.shop', weight: 90 }, { service: 'web-v2.shop', weight: 10 }] }]);
  tt.same(apex.hosts, ['web', 'web.shop', 'web.shop.svc', 'web.shop.svc.cluster.local']);
  tt.same(apex.timeouts, { perTry: 500, request: 2000 }, 'MeshService policy → timeouts');
  tt.same(apex.retry, { attempts: 2 });
  tt.same(apex.breaker, { consecutiveFailures: 5 });
  tt.equal(svc(config, 'web-v1.shop').routes, undefined, 'a backend is not itself split');
  tt.same(svc(config, 'web-v2.shop').endpoints, [{ address: '10.0.0.1:8080', identity: `spiffe://${TD}/ns/shop/sa/web`, labels: { version: 'v2' } }]);
  tt.same(apex.endpoints.map((e) => e.address), ['10.0.0.1:8080', '10.0.0.2:8080'], 'endpoints sorted by address');
  tt.ok(Object.isFrozen(config) && Object.isFrozen(apex.routes), 'deep-frozen');
});

t.test('a split with header matches: matching routes split, then a default route to the apex\'s own endpoints', async (tt) => {
  const matches = [{ headers: [{ name: 'x-canary', value: '1' }] }, { path: { prefix: '/beta' }, method: 'GET' }];
  const { config } = view(tt, model([web, webV1, webV2, canary([0, 100], { matches })]));
  const backends = [{ service: 'web-v1.shop', weight: 0 }, { service: 'web-v2.shop', weight: 100 }];
  tt.same(svc(config, 'web.shop').routes, [
    { name: 'split:web-canary:0', match: { headers: [{ name: 'x-canary', value: '1' }] }, backends },
    { name: 'split:web-canary:1', match: { path: { prefix: '/beta' }, method: 'GET' }, backends },
    { name: 'default' },
  ]);
});

t.test('a matched split and a catch-all split of one apex: matched routes first; a second catch-all is reported and ignored', async (tt) => {
  const header = trafficSplit('shop', 'a-header', { service: 'web', backends: [{ service: 'web-v2', weight: 1 }], matches: [{ headers: [{ name: 'x-canary' }] }] });
  const other = trafficSplit('shop', 'z-other', { service: 'web', backends: [{ service: 'web', weight: 1 }] });
  const { config, problems } = view(tt, model([web, webV1, webV2, other, canary(), header]));
  tt.same(svc(config, 'web.shop').routes?.map((r) => r.name), ['split:a-header:0', 'split:web-canary']);
  tt.same(problems.map((p) => [p.object, p.path, p.effect]), [['TrafficSplit/shop/z-other', '/spec', { reason: 'Conflicted', applies: false, reference: false }]]);
  tt.match(problems[0]?.message, /TrafficSplit\/shop\/web-canary already splits every request to web\.shop/);
});

t.test('an apex has at most 256 routes: splits are admitted oldest first; one that does not fit is reported, the rest of the mesh unaffected', async (tt) => {
  // 17 splits of 16 matches each: each valid alone, together 272 routes + the catch-all.
  const splits = Array.from({ length: 17 }, (_, k) => {
    const doc = { apiVersion: V, kind: 'TrafficSplit', metadata: { name: `s${String(k).padStart(2, '0')}`, namespace: 'shop', creationTimestamp: `2026-01-01T00:00:${String(16 - k).padStart(2, '0')}Z` }, spec: { service: 'web', backends: [{ service: 'web-v2', weight: 1 }], matches: Array.from({ length: 16 }, (_, i) => ({ path: { prefix: `/p${k}/${i}` } })) } };
    return res(doc);
  });
  const { config, problems } = view(tt, model([web, webV1, webV2, billing, canary(), ...splits]));
  const routes = svc(config, 'web.shop').routes ?? [];
  tt.equal(routes.length, 15 * 16 + 1, 'fifteen matched splits (240 routes) and the catch-all');
  tt.equal(routes.at(-1)?.name, 'split:web-canary', 'the catch-all keeps its place');
  tt.notOk(routes.some((r) => /^split:s0[01]:/.test(r.name)), 'the two newest splits (s00, s01) are the ones left out, not older ones');
  const conflicted = { reason: 'Conflicted', applies: false, reference: false };
  tt.same(problems.map((p) => [p.object, p.path, p.effect]), [['TrafficSplit/shop/s00', '/spec', conflicted], ['TrafficSplit/shop/s01', '/spec', conflicted]]);
  tt.match(problems[0]?.message, /web\.shop may have at most 256 routes: older splits use 240 and s00's 16 matches do not fit/);
  tt.ok(svc(config, 'billing.shop'), 'other services are in the view');
});

t.test('deleting the split: the apex goes back to its own endpoints (no routes)', async (tt) => {
  const before = view(tt, model([web, webV1, webV2, canary()])).config;
  const after = view(tt, model([web, webV1, webV2])).config;
  tt.equal(svc(after, 'web.shop').routes, undefined);
  tt.same(svc(after, 'web.shop').endpoints, svc(before, 'web.shop').endpoints);
  tt.not(configHash(before), configHash(after));
});

t.test('cross-namespace naming: the short name is the caller\'s own namespace\'s service, never another\'s', async (tt) => {
  const shopApi = meshService('shop', 'api', { endpoints: [{ address: '10.1.0.1:80', serviceAccount: 'api' }] });
  const billingApi = meshService('billing', 'api', { endpoints: [{ address: '10.2.0.1:80', serviceAccount: 'api' }] });
  const m = model([shopApi, billingApi]);
  const inShop = view(tt, m, frontend).config;
  tt.same(svc(inShop, 'api.shop').hosts, ['api', 'api.shop', 'api.shop.svc', 'api.shop.svc.cluster.local']);
  tt.same(svc(inShop, 'api.billing').hosts, ['api.billing', 'api.billing.svc', 'api.billing.svc.cluster.local']);
  const inBilling = view(tt, m, { ...frontend, namespace: 'billing' }).config;
  tt.ok(svc(inBilling, 'api.billing').hosts?.includes('api'));
  tt.notOk(svc(inBilling, 'api.shop').hosts?.includes('api'));
  const other = view(tt, m, { ...frontend, namespace: 'elsewhere' }).config;
  tt.notOk(other.services.some((s) => s.hosts?.includes('api')), 'a third namespace gets no short name at all');
  tt.equal(svc(view(tt, model([shopApi], { clusterDomain: 'corp.internal' })).config, 'api.shop').hosts?.at(-1), 'api.shop.svc.corp.internal');
});

t.test('split names resolve in the split\'s namespace; a split from another namespace applies only to callers there', async (tt) => {
  const webOther = meshService('other', 'web', { endpoints: [{ address: '10.3.0.1:80' }] });
  const producer = trafficSplit('shop', 'to-other', { service: 'web', backends: [{ service: 'web', weight: 50 }, { service: 'web.other', weight: 50 }] });
  const consumer = trafficSplit('lab', 'web-lab', { service: 'web.shop', backends: [{ service: 'web-v2.shop', weight: 1 }] });
  const m = model([web, webV2, webOther, producer, consumer]);
  const fromShop = view(tt, m).config;
  tt.same(svc(fromShop, 'web.shop').routes, [{ name: 'split:to-other', backends: [{ service: 'web.shop', weight: 50 }, { service: 'web.other', weight: 50 }] }]);
  const fromLab = view(tt, m, { ...frontend, namespace: 'lab' }).config;
  tt.same(svc(fromLab, 'web.shop').routes, [{ name: 'split:web-lab', backends: [{ service: 'web-v2.shop', weight: 1 }] }], 'the consumer split replaces the producer split for its namespace');
});

t.test('endpoints: not ready kept with ready:false; unmeshed without identity; identity from identity or serviceAccount+namespace', async (tt) => {
  const mixed = meshService('shop', 'mixed', {
    endpoints: [
      { address: '10.0.9.1:80', serviceAccount: 'mixed' },
      { address: '10.0.9.2:80', serviceAccount: 'mixed', ready: false },
      { address: '10.0.9.3:80', serviceAccount: 'runner', namespace: 'ci' },
      { address: '10.0.9.4:80', identity: 'spiffe://example.org/ns/x/sa/y' },
      { address: 'legacy.local:80' },
    ],
  });
  const { config } = view(tt, model([mixed]));
  tt.same(svc(config, 'mixed.shop').endpoints, [
    { address: '10.0.9.1:80', identity: 'spiffe://cluster.local/ns/shop/sa/mixed' },
    { address: '10.0.9.2:80', identity: 'spiffe://cluster.local/ns/shop/sa/mixed', ready: false },
    { address: '10.0.9.3:80', identity: 'spiffe://cluster.local/ns/ci/sa/runner' },
    { address: '10.0.9.4:80', identity: 'spiffe://example.org/ns/x/sa/y' },
    { address: 'legacy.local:80' },
  ]);
  const td = view(tt, model([mixed], { trustDomain: 'example.org' })).config;
  tt.equal(svc(td, 'mixed.shop').endpoints[0]?.identity, 'spiffe://example.org/ns/shop/sa/mixed', 'serviceAccount identities use the model\'s trust domain');
});

t.test('an address listed twice (a Pod in two EndpointSlices) is one endpoint, ready if either says so', async (tt) => {
  const m: MeshModel = {
    ...model([]),
    services: [{ namespace: 'shop', name: 'db', ports: [], source: 'Service/shop/db', endpoints: [
      { address: '10.0.5.1:5432', ready: false, labels: {} },
      { address: '10.0.5.1:5432', ready: true, labels: { pod: 'db-0' } },
    ] }],
  };
  tt.same(svc(view(tt, m).config, 'db.shop').endpoints, [{ address: '10.0.5.1:5432', labels: { pod: 'db-0' } }]);
});

t.test('"frontend may GET /billing/* but not POST" lands only in the billing proxy\'s view', async (tt) => {
  const policy = authzPolicy('shop', 'billing-readers', {
    targetRef: { service: 'billing' },
    rules: [{ from: { serviceAccounts: [{ name: 'frontend' }] }, to: { methods: ['GET'], paths: ['/billing/*'] } }],
  });
  const m = model([web, billing, policy], { defaultPolicy: 'deny' });
  const b = view(tt, m, billingProxy).config;
  tt.same(b.inbound, {
    defaultPolicy: 'deny',
    policies: [{ name: 'shop/billing-readers', rules: [{ identities: ['spiffe://cluster.local/ns/shop/sa/frontend'], methods: ['GET'], paths: ['/billing/*'] }] }],
  });
  const ask = (method: string, path: string, identity = frontend.identity) => authorize(b.inbound?.policies ?? [], b.inbound?.defaultPolicy ?? 'all-authenticated', { port: 80, identity, method, path }).allowed;
  tt.ok(ask('GET', '/billing/invoices/7'), 'frontend GET allowed');
  tt.notOk(ask('POST', '/billing/invoices'), 'frontend POST denied');
  tt.notOk(ask('GET', '/billing/x', 'spiffe://cluster.local/ns/shop/sa/web'), 'another identity denied');
  tt.same(view(tt, m, frontend).config.inbound, { defaultPolicy: 'deny', policies: [] }, 'not in the frontend proxy\'s view');
  tt.same(view(tt, m, { ...billingProxy, services: ['billing.shop'] }).config.inbound, b.inbound, 'canonical names in proxy.services work too');
  tt.same(view(tt, m, { ...billingProxy, namespace: 'other', services: ['billing'] }).config.inbound?.policies, [], 'billing in another namespace is another service');
});

t.test('a policy on a Service port guards the app (target) port; an unknown port is reported', async (tt) => {
  const base = model([authzPolicy('shop', 'p80', { targetRef: { service: 'api', port: 80 }, rules: [] }), authzPolicy('shop', 'p81', { targetRef: { service: 'api', port: 81 }, rules: [] })]);
  const m: MeshModel = {
    ...base,
    services: [{ namespace: 'shop', name: 'api', ports: [{ port: 80, name: 'http', targetPort: 8080 }], source: 'Service/shop/api', endpoints: [{ address: '10.0.0.7:8080', ready: true, identity: `spiffe://${TD}/ns/shop/sa/api`, labels: {} }] }],
  };
  const { config, problems } = view(tt, m, { ...billingProxy, services: ['api'] });
  tt.same(config.inbound?.policies, [{ name: 'shop/p80', port: 8080, rules: [] }, { name: 'shop/p81', port: 81, rules: [] }]);
  tt.same(problems.map((p) => [p.object, p.path, p.effect]), [['AuthorizationPolicy/shop/p81', '/spec/targetRef/port', { reason: 'PortNotFound', applies: true, reference: true }]], 'the policy applies, a reference unresolved');
  tt.same(view(tt, m, frontend).problems, [], 'a policy problem is reported in the views of the proxies that serve its target, not of its callers');
});

t.test('a policy whose target service does not exist is reported (ResolvedRefs), and still guards a proxy that serves that name', async (tt) => {
  const m = model([web, authzPolicy('shop', 'typo', { targetRef: { service: 'billnig' }, rules: [] })]);
  const problem = {
    object: 'AuthorizationPolicy/shop/typo',
    path: '/spec/targetRef/service',
    message: 'unknown service "billnig.shop": the policy guards only proxies that serve billnig (their --service; an injected proxy\'s is its workload name)',
    effect: { reason: 'ServiceNotFound', applies: true, reference: true },
  };
  tt.same(modelProblems(prepare(m)), [problem], 'in the model\'s problems (/config-problems, status)');
  const serving = view(tt, m, { ...billingProxy, services: ['billnig'] });
  tt.same(serving.config.inbound?.policies, [{ name: 'shop/typo', rules: [] }], 'a proxy that serves the name gets the policy: it is in force there');
  tt.same(serving.problems, [problem], 'and its view reports the problem');
  tt.same(view(tt, m, billingProxy).problems, [], 'the views of other proxies do not');
});

t.test('a split backend naming a missing service is left out with a problem: its share goes to the others; the config stays valid', async (tt) => {
  const { config, problems } = view(tt, model([web, webV1, canary()]));
  tt.same(svc(config, 'web.shop').routes?.map((r) => r.backends), [[{ service: 'web-v1.shop', weight: 90 }]], 'a typo in the canary name does not take the traffic away from web-v1');
  tt.same(problems, [
    {
      object: 'TrafficSplit/shop/web-canary',
      path: '/spec/backends/1/service',
      message: 'unknown service "web-v2.shop": left out of the split (its weight 10 goes to the other backends) until it exists',
      effect: { reason: 'BackendNotFound', applies: true, reference: true },
    },
  ]);
  const onlyUnknown = view(tt, model([web, webV1, trafficSplit('shop', 'u', { service: 'web', backends: [{ service: 'web-v9', weight: 1 }] })]));
  tt.equal(svc(onlyUnknown.config, 'web.shop').routes, undefined, 'no known backend: the split is not applied');
  tt.same(onlyUnknown.problems.map((p) => [p.path, p.effect]), [
    ['/spec/backends', { reason: 'BackendNotFound', applies: false, reference: false }],
    ['/spec/backends/0/service', { reason: 'BackendNotFound', applies: true, reference: true }],
  ], 'the split is off; the reference is the backend\'s');
  // A TrafficSplit of weights 0 does not parse; an HTTPRoute rule's does.
  const zeroes: MeshModel = { ...model([web, webV1]), trafficSplits: [{ source: 'HTTPRoute/shop/r', namespace: 'shop', name: 'r-00', service: 'web', backends: [{ service: 'web-v1', weight: 0 }] }] };
  tt.same(view(tt, zeroes).problems.map((p) => [p.path, p.effect?.reason]), [['/spec/backends', 'Invalid']], 'every backend known, none with weight: invalid');
  const noApex = view(tt, model([webV1, webV2, canary()]));
  tt.same(noApex.problems.map((p) => [p.path, p.effect]), [['/spec/service', { reason: 'ServiceNotFound', applies: false, reference: true }]], 'an unknown apex is in no view, so every view reports it');
  tt.same(modelProblems(prepare(model([webV1, canary()]))).map((p) => p.path), ['/spec/service'], 'modelProblems: every problem once');
  const dupes = view(tt, model([web, webV1, trafficSplit('shop', 'd', { service: 'web', backends: [{ service: 'web-v1', weight: 1 }, { service: 'web-v1.shop', weight: 1 }] })]));
  tt.same(dupes.problems.map((p) => [p.message, p.effect?.reason]), [['backend "web-v1.shop" is listed twice: the split is not applied', 'Invalid']]);
});

t.test('an invalid model never gives an invalid config: config undefined, every problem named', async (tt) => {
  const m: MeshModel = { ...model([]), services: [{ namespace: 'shop', name: 'bad', ports: [], source: 'Service/shop/bad', endpoints: [{ address: 'no-port', ready: true, labels: {} }] }] };
  const v = viewFor(m, frontend, 'v1');
  tt.equal(v.config, undefined);
  tt.same(v.problems.map((p) => [p.object, p.path]), [['ProxyConfig/shop/frontend', '/services/0/endpoints/0/address']]);
  const td = viewFor(model([web], { trustDomain: 'Not A Domain' }), frontend, 'v1');
  tt.equal(td.config, undefined);
  tt.ok(td.problems.some((p) => p.object === 'MeshModel' && p.path === '/trustDomain'));
  tt.equal(viewFor(model([]), frontend, '').config, undefined, 'an empty version is refused too');
});

t.test('a service defined twice: the first is kept, the second reported', async (tt) => {
  const again = meshService('shop', 'web', { endpoints: [{ address: '10.9.9.9:80' }] });
  const { config, problems } = view(tt, model([web, again]));
  tt.equal(svc(config, 'web.shop').endpoints.length, 2);
  tt.same(problems.map((p) => p.message), ['service "web.shop" is already defined by MeshService/shop/web; this one is ignored']);
});

t.test('determinism: equal models give byte-identical views and equal hashes; a weight change changes the hash', async (tt) => {
  const policy = authzPolicy('shop', 'b', { targetRef: { service: 'billing' }, rules: [{ from: { namespaces: ['shop'] } }] });
  const opts = { trustBundle: ['-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----', '-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n'] };
  const a = view(tt, model([web, webV1, webV2, billing, canary(), policy], opts), billingProxy, 'v7').config;
  const b = view(tt, model([policy, canary(), billing, webV2, webV1, web], { trustBundle: opts.trustBundle.toReversed() }), billingProxy, 'v7').config;
  tt.equal(JSON.stringify(a), JSON.stringify(b), 'byte-identical JSON whatever the source order');
  tt.equal(canonicalJson(a), JSON.stringify(a), 'keys come out sorted');
  tt.equal(configHash(a), configHash(b));
  tt.equal(a.trustBundle, '-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n', 'anchors sorted, joined');
  const renamed = view(tt, model([web, webV1, webV2, billing, canary(), policy], opts), billingProxy, 'v8').config;
  tt.equal(configHash(renamed), configHash(a), 'the version is not part of the hash');
  const shifted = view(tt, model([web, webV1, webV2, billing, canary([89, 11]), policy], opts), billingProxy, 'v7').config;
  tt.not(configHash(shifted), configHash(a), 'a weight change changes the hash');
  tt.match(configHash(a), /^[0-9a-f]{64}$/);
});

t.test('prepare once, view many: viewOf equals viewFor', async (tt) => {
  const m = model([web, webV1, webV2, billing, canary()]);
  const prepared = prepare(m);
  for (const proxy of [frontend, billingProxy, { ...frontend, namespace: 'lab' }]) {
    tt.equal(JSON.stringify(viewOf(prepared, proxy, 'v1')), JSON.stringify(viewFor(m, proxy, 'v1')));
  }
});

t.test('the visibility hook narrows the outbound view but keeps every split backend', async (tt) => {
  const far = meshService('far', 'thing', { endpoints: [{ address: '10.8.0.1:80' }] });
  const onlyApex: ViewOptions = { visible: (s) => s.name === 'web' };
  const { config } = view(tt, model([web, webV1, webV2, billing, far, canary()]), frontend, 'v1', onlyApex);
  tt.same(config.services.map((s) => s.name), ['web-v1.shop', 'web-v2.shop', 'web.shop']);
  const sameNs: ViewOptions = { visible: (s, p) => s.namespace === p.namespace };
  tt.notOk(view(tt, model([web, far]), frontend, 'v1', sameNs).config.services.some((s) => s.name === 'thing.far'));
  const prepared = prepare(model([web, far]));
  const names = (o: ViewOptions) => viewOf(prepared, frontend, 'v1', o).config?.services.map((s) => s.name);
  tt.same([names(sameNs), names({}), names(sameNs)], [['web.shop'], ['thing.far', 'web.shop'], ['web.shop']], 'one prepared model, several hooks: no memo mix-up');
  tt.equal(viewOf(prepared, frontend, 'a').config?.services, viewOf(prepared, billingProxy, 'b').config?.services, 'views of one namespace share one frozen services array');
});

t.test('diffViews: which services changed, were removed, and whether inbound or bundle changed', async (tt) => {
  const a = view(tt, model([web, webV1, webV2, billing, canary()])).config;
  tt.same(diffViews(a, a), { changed: false, upserted: [], removed: [], inbound: false, trustBundle: false });
  tt.equal(diffViews(a, view(tt, model([web, webV1, webV2, billing, canary()]), frontend, 'v9').config).changed, false, 'a new version alone is no change');
  const halves = view(tt, model([web, webV1, webV2, billing, canary([50, 50])]), frontend, 'v2').config;
  tt.same(diffViews(a, halves), { changed: true, upserted: ['web.shop'], removed: [], inbound: false, trustBundle: false }, 'a weight change touches only the apex');
  const gone = view(tt, model([web, webV1, billing]), frontend, 'v3').config;
  tt.same(diffViews(a, gone), { changed: true, upserted: ['web.shop'], removed: ['web-v2.shop'], inbound: false, trustBundle: false });
  const fresh = diffViews(undefined, a);
  tt.same([fresh.changed, fresh.upserted, fresh.inbound, fresh.trustBundle], [true, ['billing.shop', 'web-v1.shop', 'web-v2.shop', 'web.shop'], true, true], 'nothing before: all of it');
  const policy = authzPolicy('shop', 'x', { targetRef: { service: 'frontend' }, rules: [] });
  tt.same(diffViews(a, view(tt, model([web, webV1, webV2, billing, canary(), policy], { trustBundle: ['PEM'] })).config), { changed: true, upserted: [], removed: [], inbound: true, trustBundle: true });
});

// ---- Services that select the proxy's Pod (Kubernetes) ------------------------------------------

/** Kubernetes-shaped: Service billing-svc selects app=billing, port 80 → the Pods' 8080; Deployment `billing` runs them. */
function selectedModel(policySpec: object = { targetRef: { service: 'billing-svc' }, rules: [{ from: { serviceAccounts: [{ name: 'frontend' }] } }] }, ports: MeshModel['services'][number]['ports'] = [{ port: 80, name: 'http', targetPort: 8080 }]): MeshModel {
  const base = model([authzPolicy('shop', 'billing-frontend-only', policySpec)]);
  return {
    ...base,
    services: [
      { namespace: 'shop', name: 'billing-svc', selector: { app: 'billing' }, ports, source: 'Service/shop/billing-svc', endpoints: [{ address: '10.0.1.1:8080', ready: true, identity: `spiffe://${TD}/ns/shop/sa/billing`, labels: {} }] },
      { namespace: 'other', name: 'billing-svc', selector: { app: 'billing' }, ports, source: 'Service/other/billing-svc', endpoints: [] },
      { namespace: 'shop', name: 'manual', ports: [], source: 'Service/shop/manual', endpoints: [] },
    ],
  };
}
const billingPod: ProxyInfo = { ...billingProxy, labels: { app: 'billing', 'pod-template-hash': '5d8f' } };

t.test('a policy on a Service guards the Pods its selector matches, under any workload name', async (tt) => {
  const m = selectedModel();
  const p = prepare(m);
  tt.same(servedServices(p, billingPod), ['billing-svc.shop', 'billing.shop'], 'its own name and the Service that selects it');
  const { config } = view(tt, m, billingPod);
  tt.same(config.inbound?.policies?.map((x) => x.name), ['shop/billing-frontend-only']);
  const ask = (identity: string, port = 8080) => authorize(config.inbound?.policies ?? [], config.inbound?.defaultPolicy ?? 'all-authenticated', { port, identity, method: 'GET', path: '/' }).allowed;
  tt.ok(ask(frontend.identity), 'frontend allowed');
  tt.notOk(ask(`spiffe://${TD}/ns/shop/sa/web`), 'another meshed caller denied (it was allowed by the default before)');

  tt.same(servedServices(p, { ...billingPod, labels: { app: 'web' } }), ['billing.shop'], 'labels the selector does not match');
  tt.same(servedServices(p, { ...billingPod, labels: undefined }), ['billing.shop'], 'an older proxy (no labels reported): what it claims, as before');
  tt.same(servedServices(p, { ...billingPod, labels: {} }), ['billing.shop'], 'a Pod without labels');
  tt.same(servedServices(p, { ...billingPod, namespace: 'other' }), ['billing-svc.other', 'billing.other'], 'only Services of the namespace of its certificate');
  tt.same(servedServices(p, { ...billingPod, services: ['billing-svc'] }), ['billing-svc.shop'], 'claimed and selected: once');
  tt.same(view(tt, m, { ...billingPod, labels: { app: 'web' } }).config.inbound?.policies, [], 'not selected: not guarded by it');
});

t.test('the selected Service\'s port 80 → targetPort 8080: the policy guards app port 8080, not 80', async (tt) => {
  const m = selectedModel({ targetRef: { service: 'billing-svc', port: 80 }, rules: [] });
  const { config, problems } = view(tt, m, billingPod);
  tt.same(problems, []);
  tt.same(config.inbound?.policies, [{ name: 'shop/billing-frontend-only', port: 8080, rules: [] }]);
  const allowed = (port: number) => authorize(config.inbound?.policies ?? [], 'all-authenticated', { port, identity: frontend.identity, method: 'GET', path: '/' }).allowed;
  tt.notOk(allowed(8080), 'a request to the app port the Service port reaches is guarded (rules: [] deny)');
  tt.ok(allowed(9090), 'another app port: the default');
});

t.test('a named targetPort no EndpointSlice resolves yet: the policy guards every app port (fail closed) and says why', async (tt) => {
  const m = selectedModel({ targetRef: { service: 'billing-svc', port: 80 }, rules: [] }, [{ port: 80, name: 'http', targetPortName: 'web' }]);
  const { config, problems } = view(tt, m, billingPod);
  tt.same(config.inbound?.policies, [{ name: 'shop/billing-frontend-only', rules: [] }], 'no port: every port');
  tt.same(problems.map((p) => [p.object, p.path, p.effect]), [['AuthorizationPolicy/shop/billing-frontend-only', '/spec/targetRef/port', { reason: 'PortNotFound', applies: true, reference: true }]]);
  tt.match(problems[0]?.message, /container port named "web", which no EndpointSlice resolves yet; the policy guards every app port/);
});

t.test('folder mode is unchanged: MeshServices have no selector, labels select nothing', async (tt) => {
  const m = model([billing, web, authzPolicy('shop', 'p', { targetRef: { service: 'web' }, rules: [] })]);
  tt.same(servedServices(prepare(m), { ...billingPod, labels: { app: 'web', workload: 'web' } }), ['billing.shop']);
  tt.same(view(tt, m, { ...billingPod, labels: { app: 'web', workload: 'web' } }).config.inbound?.policies, []);
});
