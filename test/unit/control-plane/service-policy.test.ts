// ServicePolicy (timeouts, retries, breaker for one Service) and HTTPRoute rule timeouts, without
// I/O: parseResource runs MeshService.spec.policy's checks, kube-model keeps a policy's last valid
// version, translate applies the oldest policy per Service and reports the others and the unknown.
import t from 'tap';
import type { V1Service } from '@kubernetes/client-node';
import { parseResource, type Resource } from '../../../api/resources.ts';
import { meshModelFromKubernetes, splitsFromHTTPRoute, type KubeObjects } from '../../../control-plane/config/kube-model.ts';
import { modelFromResources } from '../../../control-plane/config/model.ts';
import { desiredStatus, statusTarget } from '../../../control-plane/config/resource-status.ts';
import { viewFor, type ProxyInfo } from '../../../control-plane/config/translate.ts';

const V = 'meshlet.io/v1alpha1';
const client: ProxyInfo = { namespace: 'shop', workload: 'frontend', serviceAccount: 'frontend', identity: 'spiffe://cluster.local/ns/shop/sa/frontend', services: ['frontend'] };

const service = (name: string): V1Service => ({ metadata: { namespace: 'shop', name }, spec: { ports: [{ name: 'http', port: 80 }] } });
const sp = (name: string, spec: Record<string, unknown>, meta: Record<string, unknown> = {}) => ({
  apiVersion: V,
  kind: 'ServicePolicy',
  metadata: { namespace: 'shop', name, uid: `uid-${name}`, generation: 1, creationTimestamp: '2026-01-01T00:00:00Z', ...meta },
  spec,
});
const objects = (o: Partial<KubeObjects> = {}): KubeObjects => ({ services: ['api', 'web'].map(service), endpointSlices: [], pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [], ...o });
const serviceIn = (m: ReturnType<typeof meshModelFromKubernetes>['model'], name: string) => viewFor(m, client, 'v1').config?.services.find((s) => s.name === name);

t.test('parseResource: a ServicePolicy gets exactly the checks of MeshService.spec.policy, merged values included', async (t) => {
  const policies: Array<Record<string, unknown>> = [
    { retry: { backoff: { base: 500 } } },
    { timeouts: { perTry: 2000, request: 1000 } },
    { breaker: { maxEjection: 10 } },
    { retry: { attempts: 0, methods: ['FETCH'] }, timeouts: { request: -1 } },
    { timeouts: { request: 300 }, retry: { attempts: 2, budget: { ratio: 0.1 } }, breaker: { consecutiveFailures: 3 } },
  ];
  for (const policy of policies) {
    const asKind = parseResource(sp('api', { targetRef: { service: 'api' }, ...policy }));
    const asMeshService = parseResource({ apiVersion: V, kind: 'MeshService', metadata: { name: 'api' }, spec: { endpoints: [], policy } });
    const problems = (r: typeof asKind, from: RegExp) => (r.ok ? [] : r.problems.map((p) => `${p.path.replace(from, '')} ${p.message}`));
    t.same(problems(asKind, /^\/spec/), problems(asMeshService, /^\/spec\/policy/), JSON.stringify(policy));
  }
  const merged = parseResource(sp('api', { targetRef: { service: 'api' }, retry: { backoff: { base: 500 } } }));
  t.same(merged.ok ? [] : merged.problems, [{ path: '/spec/retry/backoff/base', message: 'backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default)' }]);
  const noTarget = parseResource(sp('api', { timeouts: { request: 300 } }));
  t.same(noTarget.ok ? [] : noTarget.problems, [{ path: '/spec/targetRef', message: 'missing required field "targetRef"' }]);
});

t.test('a ServicePolicy sets its Service\'s timeouts, retry and breaker in every caller\'s view', async (t) => {
  const before = meshModelFromKubernetes(objects());
  t.same(serviceIn(before.model, 'api.shop')?.timeouts, undefined, 'without one: the proxy defaults');
  const { model, problems } = meshModelFromKubernetes(objects({ servicePolicies: [sp('api', { targetRef: { service: 'api' }, timeouts: { request: 300 }, retry: { attempts: 2 }, breaker: { consecutiveFailures: 3 } })] }));
  t.same(problems, []);
  t.match(serviceIn(model, 'api.shop'), { timeouts: { request: 300 }, retry: { attempts: 2 }, breaker: { consecutiveFailures: 3 } });
  t.same(serviceIn(model, 'web.shop')?.timeouts, undefined, 'other services keep the defaults');
});

t.test('an edit that fails a merged check keeps the last valid version in force; without one, nothing applies', async (t) => {
  const good = sp('api', { targetRef: { service: 'api' }, timeouts: { request: 300 } });
  const first = meshModelFromKubernetes(objects({ servicePolicies: [good] }));
  const bad = sp('api', { targetRef: { service: 'api' }, timeouts: { request: 300 }, retry: { backoff: { base: 500 } } }, { generation: 2 });
  const after = meshModelFromKubernetes(objects({ servicePolicies: [bad] }), {}, first.kept);
  t.same(serviceIn(after.model, 'api.shop')?.timeouts, { request: 300 }, 'the previous policy stays');
  t.same(after.problems.map((p) => [p.kind, p.name, p.field, p.message, p.effect?.reason]), [
    ['ServicePolicy', 'api', '/spec/retry/backoff/base', "backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default): the ServicePolicy's last valid version (generation 1) stays in force", 'Invalid'],
  ]);
  const status = desiredStatus(statusTarget('ServicePolicy', bad)!, after.problems, 0);
  t.match(status.conditions?.find((c) => c.type === 'Accepted'), { status: 'False', reason: 'Invalid', observedGeneration: 2 });
  t.equal(
    status.conditions?.find((c) => c.type === 'Accepted')?.message,
    "/spec/retry/backoff/base: backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default): the ServicePolicy's last valid version (generation 1) stays in force",
    'the status says which version is in force',
  );
  const again = meshModelFromKubernetes(objects({ servicePolicies: [{ ...bad, metadata: { ...bad.metadata, generation: 3 } }] }), {}, after.kept);
  t.match(again.problems[0]?.message, /\(generation 1\) stays in force$/, 'a second bad edit still names the valid generation, not its own');
  const { generation: _, ...noGeneration } = good.metadata;
  const unnumbered = meshModelFromKubernetes(objects({ servicePolicies: [bad] }), {}, meshModelFromKubernetes(objects({ servicePolicies: [{ ...good, metadata: noGeneration }] })).kept);
  t.match(unnumbered.problems[0]?.message, /: the ServicePolicy's last valid version stays in force$/, 'without metadata.generation: no number');
  t.same([...after.kept.keys()], ['uid-api'], 'the valid version is still the one kept');

  const fresh = meshModelFromKubernetes(objects({ servicePolicies: [bad] }));
  t.same(serviceIn(fresh.model, 'api.shop')?.timeouts, undefined, 'no valid version seen: not applied');
  t.match(fresh.problems[0]?.message, /: the ServicePolicy is not applied$/);
  t.same([...fresh.kept.keys()], []);

  const recreated = meshModelFromKubernetes(objects({ servicePolicies: [{ ...bad, metadata: { ...bad.metadata, uid: 'uid-other' } }] }), {}, first.kept);
  t.same(serviceIn(recreated.model, 'api.shop')?.timeouts, undefined, 'a re-created object (another uid) does not inherit the old one\'s version');
  const deleted = meshModelFromKubernetes(objects(), {}, first.kept);
  t.same([...deleted.kept.keys()], [], 'a deleted policy is forgotten');
});

t.test('two ServicePolicies for one Service: the older applies, the newer is Conflicted; equal age: by name', async (t) => {
  const older = sp('b-older', { targetRef: { service: 'api' }, timeouts: { request: 300 } }, { creationTimestamp: '2026-01-01T00:00:00Z' });
  const newer = sp('a-newer', { targetRef: { service: 'api' }, timeouts: { request: 900 } }, { creationTimestamp: '2026-01-02T00:00:00Z' });
  const { model, problems } = meshModelFromKubernetes(objects({ servicePolicies: [newer, older] }));
  t.same(serviceIn(model, 'api.shop')?.timeouts, { request: 300 });
  t.same(problems.map((p) => [p.name, p.field, p.message, p.effect]), [
    ['a-newer', '/spec/targetRef', 'ServicePolicy/shop/b-older already sets the policy of api.shop; this one is ignored (delete one, or merge them)', { reason: 'Conflicted', applies: false, reference: false }],
  ]);
  const same = meshModelFromKubernetes(objects({ servicePolicies: [{ ...newer, metadata: { ...newer.metadata, creationTimestamp: '2026-01-01T00:00:00Z' } }, older] }));
  t.same(serviceIn(same.model, 'api.shop')?.timeouts, { request: 900 }, 'same second: the first by name (a-newer)');
  t.same(same.problems.map((p) => p.name), ['b-older']);
});

t.test('a ServicePolicy for a Service that does not exist is reported and applies once it exists', async (t) => {
  const orphan = sp('gone', { targetRef: { service: 'gone' }, timeouts: { request: 300 } });
  const { problems } = meshModelFromKubernetes(objects({ servicePolicies: [orphan] }));
  t.same(problems.map((p) => [p.name, p.field, p.message, p.effect]), [
    ['gone', '/spec/targetRef/service', 'unknown service "gone.shop": the policy applies once it exists', { reason: 'ServiceNotFound', applies: false, reference: true }],
  ]);
  const status = desiredStatus(statusTarget('ServicePolicy', orphan)!, problems, 0);
  t.same(status.conditions?.map((c) => [c.type, c.status, c.reason]), [['Accepted', 'False', 'ServiceNotFound'], ['ResolvedRefs', 'False', 'ServiceNotFound']]);
  const later = meshModelFromKubernetes(objects({ services: ['api', 'gone'].map(service), servicePolicies: [orphan] }));
  t.same(later.problems, []);
  t.same(serviceIn(later.model, 'gone.shop')?.timeouts, { request: 300 });
});

t.test('folder mode reads ServicePolicy too; a MeshService with its own spec.policy keeps it and the ServicePolicy is Conflicted', async (t) => {
  const ms = (name: string, policy?: object) => res({ apiVersion: V, kind: 'MeshService', metadata: { name, namespace: 'shop' }, spec: { endpoints: [], ...(policy ? { policy } : {}) } });
  const model = modelFromResources([ms('api'), ms('web', { timeouts: { request: 100 } }), res(sp('api', { targetRef: { service: 'api' }, timeouts: { request: 300 } })), res(sp('web', { targetRef: { service: 'web' }, timeouts: { request: 900 } }))]);
  const view = viewFor(model, client, 'v1');
  t.same(view.config?.services.find((s) => s.name === 'api.shop')?.timeouts, { request: 300 });
  t.same(view.config?.services.find((s) => s.name === 'web.shop')?.timeouts, { request: 100 });
  t.same(view.problems.map((p) => [p.object, p.message]), [['ServicePolicy/shop/web', 'MeshService/shop/web (spec.policy) already sets the policy of web.shop; this one is ignored (delete one, or merge them)']]);
});

function res(doc: unknown): Resource {
  const r = parseResource(doc);
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.value;
}

const route = (rules: unknown[]) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { namespace: 'shop', name: 'api', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'api' }], rules } });

t.test('HTTPRoute rules[].timeouts: request → the route\'s request timeout, backendRequest → its per-try timeout', async (t) => {
  const r = route([
    { matches: [{ path: { type: 'PathPrefix', value: '/slow' } }], backendRefs: [{ name: 'api' }], timeouts: { request: '300ms' } },
    { matches: [{ path: { type: 'PathPrefix', value: '/both' } }], backendRefs: [{ name: 'api' }], timeouts: { request: '10s', backendRequest: '2s' } },
    { backendRefs: [{ name: 'api' }], timeouts: { request: '0s' } },
  ]);
  const { splits, problems } = splitsFromHTTPRoute(r);
  t.same(problems, []);
  t.same(splits.map((s) => s.timeouts), [{ request: 300 }, { request: 10_000, perTry: 2000 }, { request: 3_600_000 }]);
  const { model } = meshModelFromKubernetes(objects({ httpRoutes: [r] }));
  t.same(serviceIn(model, 'api.shop')?.routes?.map((x) => [x.name, x.timeouts]), [
    // A request timeout alone also bounds each attempt, so "request: 30s" is not cut at the default perTry of 10 s.
    ['split:api-00:0', { request: 300, perTry: 300 }],
    ['split:api-01:0', { request: 10_000, perTry: 2000 }],
    ['split:api-02', { request: 3_600_000, perTry: 3_600_000 }],
  ]);
  const withPolicy = meshModelFromKubernetes(objects({ httpRoutes: [r], servicePolicies: [sp('api', { targetRef: { service: 'api' }, timeouts: { perTry: 100 } })] }));
  t.same(serviceIn(withPolicy.model, 'api.shop')?.routes?.[0]?.timeouts, { request: 300 }, 'a perTry the ServicePolicy sets stays in force on the route');
});

t.test('HTTPRoute timeouts that cannot be kept: the rule is left out and reported; the others apply', async (t) => {
  const { splits, problems } = splitsFromHTTPRoute(route([
    { backendRefs: [{ name: 'api' }], timeouts: { request: '300' } },
    { backendRefs: [{ name: 'api' }], timeouts: { backendRequest: '1.5s' } },
    { backendRefs: [{ name: 'api' }], timeouts: { request: '1s', backendRequest: '2s' } },
    { backendRefs: [{ name: 'api' }], timeouts: { request: '2h' } },
    { backendRefs: [{ name: 'api' }], timeouts: 'fast' },
    { matches: [{ path: { type: 'PathPrefix', value: '/ok' } }], backendRefs: [{ name: 'api' }], timeouts: { request: '1s', backendRequest: '0s' } },
  ]));
  t.same(problems.map((p) => [p.field, p.message, p.effect?.reason]), [
    ['/spec/rules/0/timeouts/request', '"300" is not a Gateway API duration: one to four parts of up to five digits, each followed by h, m, s or ms (e.g. "10s", "500ms", "1m30s"): the rule is not applied', 'UnsupportedValue'],
    ['/spec/rules/1/timeouts/backendRequest', '"1.5s" is not a Gateway API duration: one to four parts of up to five digits, each followed by h, m, s or ms (e.g. "10s", "500ms", "1m30s"): the rule is not applied', 'UnsupportedValue'],
    ['/spec/rules/2/timeouts/backendRequest', 'backendRequest (2s) is longer than request (1s), which covers every call to a backend: the rule is not applied', 'UnsupportedValue'],
    ['/spec/rules/3/timeouts/request', '"2h" is longer than the longest timeout a proxy runs (1h); "0s" means no timeout (1h): the rule is not applied', 'UnsupportedValue'],
    ['/spec/rules/4/timeouts', 'timeouts is not an object: the rule is not applied', 'UnsupportedValue'],
  ]);
  t.same(splits.map((s) => [s.name, s.timeouts]), [['api-05', { request: 1000, perTry: 1000 }]], 'backendRequest 0s: bounded by the request only');
});
