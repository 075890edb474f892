// The CRDs (manifests/crds/, generated from api/resources.ts) on a real kube-apiserver: each kind
// of nonsense in a TrafficSplit, AuthorizationPolicy or ServicePolicy is refused by `kubectl apply` with a
// message a service owner can act on (OpenAPI bounds and enums, and the CEL rules), and nothing
// is stored; good ones are accepted, and `kubectl get` shows the printer columns.
import t from 'tap';
import { kubeForFile } from '../fixtures/kube.ts';

const V = 'meshlet.io/v1alpha1';

const k = kubeForFile(t, { crds: true });

const split = (ns: string, spec: unknown, name = 'web-canary') => ({ apiVersion: V, kind: 'TrafficSplit', metadata: { name, namespace: ns }, spec });
const policy = (ns: string, spec: unknown, name = 'billing') => ({ apiVersion: V, kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec });
const servicePolicy = (ns: string, spec: unknown, name = 'api') => ({ apiVersion: V, kind: 'ServicePolicy', metadata: { name, namespace: ns }, spec });
const apply = (doc: unknown) => k().kubectl(['apply', '-f', '-'], { input: JSON.stringify(doc) });

const METHODS = '"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"';

/** [what is wrong, spec, the message kubectl must print]. */
const BAD_SPLITS: Array<[string, unknown, string]> = [
  ['no backends', { service: 'web', backends: [] }, 'spec.backends in body should have at least 1 items'],
  ['backends missing', { service: 'web' }, 'spec.backends: Required value'],
  ['a negative weight', { service: 'web', backends: [{ service: 'web-v1', weight: -1 }] }, 'spec.backends[0].weight in body should be greater than or equal to 0'],
  ['all weights zero', { service: 'web', backends: [{ service: 'web-v1', weight: 0 }, { service: 'web-v2', weight: 0 }] }, 'at least one backend needs a weight above 0; all-zero weights would send traffic nowhere'],
  ['a duplicate backend', { service: 'web', backends: [{ service: 'web-v1', weight: 1 }, { service: 'web-v1', weight: 2 }] }, 'each backend service may be listed only once'],
  ['an unknown method', { service: 'web', backends: [{ service: 'web-v1', weight: 1 }], matches: [{ method: 'FETCH' }] }, `spec.matches[0].method: Unsupported value: "FETCH": supported values: ${METHODS}`],
  ['both exact and prefix', { service: 'web', backends: [{ service: 'web-v1', weight: 1 }], matches: [{ path: { exact: '/a', prefix: '/b' } }] }, 'exactly one of exact, prefix must be set'],
  ['a fractional weight', { service: 'web', backends: [{ service: 'web-v1', weight: 1.5 }] }, 'spec.backends[0].weight in body must be of type integer'],
  ['an invalid service name', { service: 'Web!', backends: [{ service: 'web-v1', weight: 1 }] }, 'spec.service in body should match'],
];

const BAD_POLICIES: Array<[string, unknown, string]> = [
  ['an unknown method', { targetRef: { service: 'billing' }, rules: [{ from: { namespaces: ['shop'] }, to: { methods: ['FETCH'] } }] }, `spec.rules[0].to.methods[0]: Unsupported value: "FETCH": supported values: ${METHODS}`],
  ['a rule from nobody', { targetRef: { service: 'billing' }, rules: [{ from: {} }] }, 'from must name at least one identity, namespace or service account (namespaces: ["*"] for every meshed workload)'],
  ['an empty to', { targetRef: { service: 'billing' }, rules: [{ from: { namespaces: ['*'] }, to: {} }] }, 'to must list methods or paths; leave it out to allow every request'],
  ['no target', { rules: [] }, 'spec.targetRef: Required value'],
  ['port 0', { targetRef: { service: 'billing', port: 0 }, rules: [] }, 'spec.targetRef.port in body should be greater than or equal to 1'],
  ['an identity that is not a SPIFFE ID', { targetRef: { service: 'billing' }, rules: [{ from: { identities: ['frontend'] } }] }, 'spec.rules[0].from.identities[0] in body should match'],
  ['a path without a leading slash', { targetRef: { service: 'billing' }, rules: [{ from: { namespaces: ['*'] }, to: { paths: ['billing/*'] } }] }, 'spec.rules[0].to.paths[0] in body should match'],
];

const BAD_SERVICE_POLICIES: Array<[string, unknown, string]> = [
  ['no target', { timeouts: { request: 300 } }, 'spec.targetRef: Required value'],
  ['a timeout written as a duration string', { targetRef: { service: 'api' }, timeouts: { request: '300ms' } }, 'spec.timeouts.request: Invalid value: "string": spec.timeouts.request in body must be of type number'],
  ['a negative timeout', { targetRef: { service: 'api' }, timeouts: { perTry: -1 } }, 'spec.timeouts.perTry in body should be greater than or equal to 0'],
  ['perTry longer than request', { targetRef: { service: 'api' }, timeouts: { perTry: 2000, request: 1000 } }, 'timeouts.perTry is longer than timeouts.request (the whole request, retries included)'],
  ['a backoff base above its cap', { targetRef: { service: 'api' }, retry: { backoff: { base: 500, cap: 100 } } }, 'retry.backoff.base is larger than retry.backoff.cap'],
  ['an ejection base above its maximum', { targetRef: { service: 'api' }, breaker: { baseEjection: 5000, maxEjection: 1000 } }, 'breaker.baseEjection is larger than breaker.maxEjection'],
  ['zero attempts', { targetRef: { service: 'api' }, retry: { attempts: 0 } }, 'spec.retry.attempts in body should be greater than or equal to 1'],
  ['an unknown retry method', { targetRef: { service: 'api' }, retry: { methods: ['FETCH'] } }, `spec.retry.methods[0]: Unsupported value: "FETCH": supported values: ${METHODS}`],
  ['a target that is no Service name', { targetRef: { service: 'Api' } }, 'spec.targetRef.service in body should match'],
];

t.test('a bad ServicePolicy is refused with a readable message and nothing is stored', async (t) => {
  const ns = await k().newNamespace('sp-bad');
  for (const [what, spec, message] of BAD_SERVICE_POLICIES) {
    const r = await apply(servicePolicy(ns, spec));
    t.not(r.code, 0, `${what}: refused`);
    t.match(r.stderr, `The ServicePolicy "api" is invalid`, what);
    t.match(r.stderr, message, `${what}: says "${message}"`);
  }
  const left = await k().kubectl(['get', 'servicepolicies', '-n', ns, '-o', 'name']);
  t.equal(left.stdout, '', 'none was stored');
});

t.test('a good ServicePolicy is accepted; kubectl get shows target, timeout and attempts; a bad update leaves it as it was', async (t) => {
  const ns = await k().newNamespace('sp-good');
  const r = await apply(servicePolicy(ns, { targetRef: { service: 'api' }, timeouts: { request: 300, perTry: 100 }, retry: { attempts: 2, backoff: { base: 10, cap: 50 } }, breaker: { consecutiveFailures: 5 } }));
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'servicepolicy.meshlet.io/api created');
  const table = await k().kubectl(['get', 'servicepolicies', '-n', ns]);
  const [header, row] = table.stdout.trim().split('\n');
  t.same(header?.split(/\s+/), ['NAME', 'TARGET', 'TIMEOUT', 'ATTEMPTS', 'ACCEPTED', 'AGE']);
  t.match(row, /^api\s+api\s+300\s+2\s+\d+s$/);
  const short = await k().kubectl(['get', 'svcpolicy', 'api', '-n', ns, '-o', 'name']);
  t.equal(short.stdout.trim(), 'servicepolicy.meshlet.io/api', 'short name svcpolicy');
  const all = await k().kubectl(['get', 'meshlet', '-n', ns, '-o', 'name']);
  t.same(all.stdout.trim().split('\n'), ['servicepolicy.meshlet.io/api'], 'in the "meshlet" category');

  const update = await apply(servicePolicy(ns, { targetRef: { service: 'api' }, timeouts: { request: 300, perTry: 1000 } }));
  t.not(update.code, 0);
  t.match(update.stderr, 'timeouts.perTry is longer than timeouts.request');
  const stored = await k().kubectl(['get', 'svcpolicy', 'api', '-n', ns, '-o', 'jsonpath={.spec.timeouts.perTry}']);
  t.equal(stored.stdout, '100', 'the stored policy is unchanged');
});

t.test('a bad TrafficSplit is refused with a readable message and nothing is stored', async (t) => {
  const ns = await k().newNamespace('ts-bad');
  for (const [what, spec, message] of BAD_SPLITS) {
    const r = await apply(split(ns, spec));
    t.not(r.code, 0, `${what}: refused`);
    t.match(r.stderr, `The TrafficSplit "web-canary" is invalid`, what);
    t.match(r.stderr, message, `${what}: says "${message}"`);
  }
  const left = await k().kubectl(['get', 'trafficsplits', '-n', ns, '-o', 'name']);
  t.equal(left.stdout, '', 'none was stored');
});

t.test('a bad AuthorizationPolicy is refused with a readable message and nothing is stored', async (t) => {
  const ns = await k().newNamespace('ap-bad');
  for (const [what, spec, message] of BAD_POLICIES) {
    const r = await apply(policy(ns, spec));
    t.not(r.code, 0, `${what}: refused`);
    t.match(r.stderr, `The AuthorizationPolicy "billing" is invalid`, what);
    t.match(r.stderr, message, `${what}: says "${message}"`);
  }
  const left = await k().kubectl(['get', 'authorizationpolicies', '-n', ns, '-o', 'name']);
  t.equal(left.stdout, '', 'none was stored');
});

t.test('a good TrafficSplit is accepted; kubectl get shows service and backends; a bad update leaves it as it was', async (t) => {
  const ns = await k().newNamespace('ts-good');
  const good = split(ns, {
    service: 'web',
    backends: [{ service: 'web-v1', weight: 90 }, { service: 'web-v2', weight: 10 }],
    matches: [{ headers: [{ name: 'x-canary', value: '1' }] }, { path: { prefix: '/api' }, method: 'GET' }],
  });
  const r = await apply(good);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'trafficsplit.meshlet.io/web-canary created');

  const table = await k().kubectl(['get', 'trafficsplits', '-n', ns]);
  t.equal(table.code, 0, table.stderr);
  const [header, row, ...more] = table.stdout.trim().split('\n');
  // ACCEPTED is the control plane's to write (test/control-plane/kube-status.test.ts); none runs here,
  // so the cell is empty.
  t.same(header?.split(/\s+/), ['NAME', 'SERVICE', 'BACKENDS', 'ACCEPTED', 'AGE']);
  t.match(row, /^web-canary\s+web\s+\[\{"service":"web-v1","weight":90\},\{"service":"web-v2","weight":10\}\]\s+\d+s$/);
  t.same(more, []);
  const short = await k().kubectl(['get', 'ts', 'web-canary', '-n', ns, '-o', 'name']);
  t.equal(short.stdout.trim(), 'trafficsplit.meshlet.io/web-canary', 'short name ts');

  const update = await apply(split(ns, { service: 'web', backends: [{ service: 'web-v1', weight: 0 }, { service: 'web-v2', weight: 0 }] }));
  t.not(update.code, 0);
  t.match(update.stderr, 'all-zero weights would send traffic nowhere');
  const stored = await k().kubectl(['get', 'ts', 'web-canary', '-n', ns, '-o', 'jsonpath={.spec.backends[*].weight}']);
  t.equal(stored.stdout, '90 10', 'the stored split is unchanged');
});

t.test('a good AuthorizationPolicy is accepted; kubectl get shows the target (and the port with -o wide)', async (t) => {
  const ns = await k().newNamespace('ap-good');
  const good = policy(ns, {
    targetRef: { service: 'billing', port: 8080 },
    rules: [
      { from: { serviceAccounts: [{ name: 'frontend' }] }, to: { methods: ['GET'], paths: ['/billing/*'] } },
      { from: { identities: [`spiffe://cluster.local/ns/${ns}/sa/admin`], namespaces: ['ops'] } },
    ],
  });
  const r = await apply(good);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'authorizationpolicy.meshlet.io/billing created');

  const table = await k().kubectl(['get', 'authorizationpolicies', '-n', ns]);
  const [header, row] = table.stdout.trim().split('\n');
  t.same(header?.split(/\s+/), ['NAME', 'TARGET', 'ACCEPTED', 'AGE']);
  t.match(row, /^billing\s+billing\s+\d+s$/);
  const wide = await k().kubectl(['get', 'authzpolicy', '-n', ns, '-o', 'wide']);
  const [wideHeader, wideRow] = wide.stdout.trim().split('\n');
  t.same(wideHeader?.split(/\s+/), ['NAME', 'TARGET', 'PORT', 'ACCEPTED', 'REASON', 'AGE']);
  t.match(wideRow, /^billing\s+billing\s+8080\s+\d+s$/);

  // Both kinds are in the "meshlet" category.
  await apply(split(ns, { service: 'web', backends: [{ service: 'web-v1', weight: 1 }] }));
  const all = await k().kubectl(['get', 'meshlet', '-n', ns, '-o', 'name']);
  t.same(all.stdout.trim().split('\n').toSorted(), ['authorizationpolicy.meshlet.io/billing', 'trafficsplit.meshlet.io/web-canary']);
});
