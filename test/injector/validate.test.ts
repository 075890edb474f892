// The meshlet.io validator's decision (injector/validate.ts), without sockets: a ServicePolicy that
// fails the control plane's check is denied with every problem and its path, exactly the problems
// the Kubernetes source reports for the same object; a good one is allowed; what is not the
// validator's business is allowed unchecked; a malformed review gets a clear 400 and never a throw.
import t from 'tap';
import type { V1Service } from '@kubernetes/client-node';
import { meshModelFromKubernetes } from '../../control-plane/config/kube-model.ts';
import { validateReview } from '../../injector/validate.ts';

const V = 'meshlet.io/v1alpha1';
const GROUP = { group: 'meshlet.io', version: 'v1alpha1' };
const sp = (spec: unknown, meta: Record<string, unknown> = { name: 'api', namespace: 'shop' }) => ({ apiVersion: V, kind: 'ServicePolicy', metadata: meta, spec });
interface ReviewOpts { kind?: string; resource?: string; group?: string; operation?: string; subResource?: string; namespace?: string }
const reviewOf = (object: unknown, o: ReviewOpts = {}) => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: {
    uid: 'c0ffee00-0000-4000-8000-000000000001',
    kind: { ...GROUP, group: o.group ?? GROUP.group, kind: o.kind ?? 'ServicePolicy' },
    resource: { ...GROUP, group: o.group ?? GROUP.group, resource: o.resource ?? 'servicepolicies' },
    ...(o.subResource ? { subResource: o.subResource } : {}),
    operation: o.operation ?? 'CREATE',
    namespace: o.namespace ?? 'shop',
    object,
  },
});
const validate = (review: unknown) => validateReview(JSON.stringify(review));
type Response = { uid: string; allowed: boolean; status?: { code: number; reason: string; message: string } };
const responseOf = (a: ReturnType<typeof validateReview>) => (a.body as { response: Response }).response;

const BAD: Array<[string, Record<string, unknown>, string[]]> = [
  ['a backoff base over the default cap of 250', { retry: { backoff: { base: 500 } } }, ['/spec/retry/backoff/base: backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default)']],
  ['an ejection base over the default maximum of 60000', { breaker: { baseEjection: 70_000 } }, ['/spec/breaker/baseEjection: baseEjection is larger than maxEjection: 70000 ms (set here) > 60000 ms (the default)']],
  ['a cap under the default base of 25', { retry: { backoff: { cap: 10 } } }, ['/spec/retry/backoff/cap: backoff base is larger than its cap: 25 ms (the default) > 10 ms (set here)']],
];

t.test('a ServicePolicy that fails a check needing the proxy defaults is denied, every problem with its path', async (t) => {
  for (const [what, policy, problems] of BAD) {
    const a = validate(reviewOf(sp({ targetRef: { service: 'api' }, ...policy })));
    t.equal(a.status, 200, what);
    t.equal(a.outcome, 'denied', what);
    t.equal(a.kind, 'ServicePolicy');
    const r = responseOf(a);
    t.equal(r.uid, 'c0ffee00-0000-4000-8000-000000000001', `${what}: the review's uid`);
    t.equal(r.allowed, false, what);
    t.same([r.status?.code, r.status?.reason], [422, 'Invalid']);
    t.equal(r.status?.message, `ServicePolicy "api" in shop is invalid (the meshlet control plane would not apply it): ${problems.join('; ')}`, what);
  }
  // Two problems at once: both are named.
  const both = responseOf(validate(reviewOf(sp({ targetRef: { service: 'api' }, retry: { backoff: { base: 500 } }, breaker: { baseEjection: 70_000 } }))));
  t.match(both.status?.message, /\/spec\/retry\/backoff\/base: backoff base is larger than its cap.*; \/spec\/breaker\/baseEjection: baseEjection is larger than maxEjection/);
});

t.test("the webhook denies exactly what the control plane's Kubernetes source reports Invalid, with the same problems", async (t) => {
  const service: V1Service = { metadata: { namespace: 'shop', name: 'api' }, spec: { ports: [{ name: 'http', port: 80 }] } };
  const specs: Array<Record<string, unknown>> = [
    ...BAD.map(([, policy]) => policy),
    { retry: { backoff: { base: 500 } }, breaker: { baseEjection: 70_000 }, timeouts: { perTry: 2000, request: 1000 } },
    { timeouts: { request: -1 }, retry: { attempts: 0 } },
    { timeouts: { request: 300 }, retry: { attempts: 2, backoff: { base: 50, cap: 400 } }, breaker: { consecutiveFailures: 3 } },
    { timeouts: { perTry: 20_000 } }, // over the default request timeout: the control plane does not check that, so neither does the webhook
  ];
  for (const policy of specs) {
    const object = sp({ targetRef: { service: 'api' }, ...policy }, { name: 'api', namespace: 'shop', uid: 'u1', generation: 1 });
    const source = meshModelFromKubernetes({ services: [service], endpointSlices: [], pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [], servicePolicies: [object] });
    const reported = source.problems.filter((p) => p.effect?.reason === 'Invalid').map((p) => `${p.field}: ${p.message.replace(/: the ServicePolicy is not applied$/, '')}`);
    const a = validate(reviewOf(object));
    t.equal(a.outcome, reported.length > 0 ? 'denied' : 'allowed', JSON.stringify(policy));
    const denied = a.outcome === 'denied' ? (a.fields.problems as string[]) : [];
    t.same(denied.toSorted(), reported.toSorted(), `${JSON.stringify(policy)}: the same problems`);
  }
});

t.test('a good ServicePolicy is allowed, on CREATE and UPDATE; the namespace may come from the request; generateName is fine', async (t) => {
  const good = { targetRef: { service: 'api' }, timeouts: { request: 2000, perTry: 500 }, retry: { attempts: 3, backoff: { base: 50, cap: 400 } } };
  for (const operation of ['CREATE', 'UPDATE']) {
    const a = validate(reviewOf(sp(good), { operation }));
    t.same([a.outcome, responseOf(a).allowed], ['allowed', true], operation);
  }
  const noNamespace = validate(reviewOf(sp(good, { name: 'api' }), { namespace: 'shop' }));
  t.equal(noNamespace.outcome, 'allowed', 'metadata.namespace absent: the request names it');
  const generated = validate(reviewOf(sp(good, { generateName: 'api-', namespace: 'shop' })));
  t.equal(generated.outcome, 'allowed', 'generateName: the name the API server makes from it is valid');
  const badGenerated = responseOf(validate(reviewOf(sp({ targetRef: { service: 'api' }, retry: { backoff: { base: 500 } } }, { generateName: 'api-', namespace: 'shop' }))));
  t.match(badGenerated.status?.message, /^ServicePolicy "api-\*" in shop is invalid/);
  // Metadata the control plane does not read (labels, annotations, managedFields) is not checked either.
  const labelled = validate(reviewOf(sp(good, { name: 'api', namespace: 'shop', labels: { ['x'.repeat(400)]: 'y' }, managedFields: [{}] })));
  t.equal(labelled.outcome, 'allowed');
});

t.test('a TrafficSplit or AuthorizationPolicy sent by a configuration that lists them gets the control plane check too', async (t) => {
  const split = { apiVersion: V, kind: 'TrafficSplit', metadata: { name: 'web', namespace: 'shop' }, spec: { service: 'web', backends: [{ service: 'v1', weight: 0 }] } };
  const a = validate(reviewOf(split, { kind: 'TrafficSplit', resource: 'trafficsplits' }));
  t.equal(a.outcome, 'denied');
  t.match(responseOf(a).status?.message, /^TrafficSplit "web" in shop is invalid .*\/spec\/backends: all backend weights are 0/);
  const policy = { apiVersion: V, kind: 'AuthorizationPolicy', metadata: { name: 'b', namespace: 'shop' }, spec: { targetRef: { service: 'billing' }, rules: [] } };
  t.equal(validate(reviewOf(policy, { kind: 'AuthorizationPolicy', resource: 'authorizationpolicies' })).outcome, 'allowed');
});

t.test('what is not the validator\'s business is allowed unchecked (skipped), never denied', async (t) => {
  const bad = sp({ targetRef: { service: 'api' }, retry: { backoff: { base: 500 } } });
  const cases: Array<[string, unknown]> = [
    ['another group', reviewOf({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }, { group: '', kind: 'ConfigMap', resource: 'configmaps' })],
    ['a DELETE', reviewOf(bad, { operation: 'DELETE' })],
    ['a status write', reviewOf(bad, { operation: 'UPDATE', subResource: 'status' })],
    ['an object being deleted (a finalizer removed)', reviewOf(sp({ retry: { backoff: { base: 500 } } }, { name: 'api', namespace: 'shop', deletionTimestamp: '2026-12-07T00:00:00Z', finalizers: [] }), { operation: 'UPDATE' })],
    ['a meshlet.io kind it has no check for', reviewOf({ apiVersion: V, kind: 'MeshService', metadata: { name: 'x' } }, { kind: 'MeshService', resource: 'meshservices' })],
  ];
  for (const [what, review] of cases) {
    const a = validate(review);
    t.same([a.status, a.outcome, responseOf(a).allowed], [200, 'skipped', true], what);
    t.type(a.fields.why, 'string', `${what}: the log says why`);
  }
});

t.test('malformed AdmissionReviews: a clear 400 or a denial, never a throw', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['an empty body', '', /^empty body: expected an AdmissionReview \(admission\.k8s\.io\/v1\) as JSON$/],
    ['not JSON', '{"apiVersion": ', /^body is not JSON \(.+\): expected an AdmissionReview/],
    ['a JSON array', '[1, 2]', /^body is not a JSON object/],
    ['JSON null', 'null', /^body is not a JSON object/],
    ['another kind', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'TokenReview' }), /expected kind AdmissionReview, apiVersion admission\.k8s\.io\/v1; got kind "TokenReview"/],
    ['v1beta1', JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'x' } }), /admissionReviewVersions: \[v1\]/],
    ['no request', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /^the AdmissionReview has no request$/],
    ['a request that is a string', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: 'x' }), /^the AdmissionReview has no request$/],
    ['no uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { operation: 'CREATE' } }), /^the AdmissionReview request has no uid$/],
  ];
  for (const [what, body, error] of cases) {
    const a = validateReview(body);
    t.equal(a.status, 400, what);
    t.same([a.kind, a.outcome], ['other', 'error'], what);
    t.match((a.body as { error: string }).error, error, what);
    t.match(a.fields.error, error, `${what}: logged`);
  }
  // Readable reviews with nonsense inside: answered with their uid, denied or allowed, no throw.
  const noObject = validate({ ...reviewOf(undefined), request: { ...reviewOf(undefined).request, object: undefined } });
  t.same([noObject.status, noObject.outcome, responseOf(noObject).allowed, responseOf(noObject).status?.code], [200, 'error', false, 400]);
  t.match(responseOf(noObject).status?.message, 'the AdmissionReview request has no object (the ServicePolicy)');
  const shapes: unknown[] = [
    'a string', 42, [], { metadata: 7 }, { metadata: { name: 7 }, spec: null }, sp(null), sp('x'), sp({ targetRef: 'api', retry: [] }),
    sp({ targetRef: { service: 'api' }, retry: { backoff: null } }), { ...sp({ targetRef: { service: 'api' } }), metadata: null },
  ];
  for (const object of shapes) {
    const a = validate(reviewOf(object));
    t.equal(a.status, 200, JSON.stringify(object));
    t.equal(responseOf(a).uid, 'c0ffee00-0000-4000-8000-000000000001');
    if (a.outcome === 'denied') t.match(responseOf(a).status?.message, /^ServicePolicy .* is invalid .*: \/\S*: /, `${JSON.stringify(object)}: named problems`);
    else t.equal(a.outcome, 'error', `${JSON.stringify(object)}: not an object at all`);
  }
  const noResource = validate({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u', object: {} } });
  t.same([noResource.status, noResource.outcome, responseOf(noResource).allowed], [200, 'skipped', true], 'no resource: not a meshlet.io request');
});
