// Tests for api/resources.ts: each kind's valid shape, and invalid documents reporting every
// problem at once with its exact path.
import { test } from 'tap';
import {
  endpointIdentity,
  kindOf,
  parseResource,
  proxyAuthorizationRules,
  resourceKey,
  type AuthorizationPolicy,
  type MeshService,
  type Resource,
} from '../../../api/resources.ts';
import type { Problem } from '../../../api/proxy-config.ts';

const V = 'meshlet.io/v1alpha1';

const split = (spec: unknown, metadata: unknown = { name: 'web-canary', namespace: 'shop' }) => ({ apiVersion: V, kind: 'TrafficSplit', metadata, spec });
const policy = (spec: unknown) => ({ apiVersion: V, kind: 'AuthorizationPolicy', metadata: { name: 'billing', namespace: 'shop' }, spec });
const service = (spec: unknown, name = 'web') => ({ apiVersion: V, kind: 'MeshService', metadata: { name, namespace: 'shop' }, spec });

function ok(doc: unknown): Resource {
  const r = parseResource(doc);
  if (!r.ok) throw new Error(`unexpected problems: ${JSON.stringify(r.problems)}`);
  return r.value as Resource;
}
function problems(doc: unknown): Problem[] {
  const r = parseResource(doc);
  if (r.ok) throw new Error('expected problems');
  return r.problems;
}
const paths = (ps: Problem[]) => ps.map((p) => p.path).toSorted();

test('a weighted TrafficSplit with header matches parses, deep-frozen, keyed kind/namespace/name', async (t) => {
  const doc = split({
    service: 'web',
    backends: [{ service: 'web-v1', weight: 90 }, { service: 'web-v2', weight: 10 }, { service: 'web-v3', weight: 0 }],
    matches: [{ headers: [{ name: 'x-canary', value: '1' }] }, { path: { prefix: '/api' }, method: 'GET' }],
  });
  const r = ok(doc);
  t.equal(resourceKey(r), 'TrafficSplit/shop/web-canary');
  t.ok(Object.isFrozen(r) && Object.isFrozen(r.spec) && Object.isFrozen((r.spec as { backends: object[] }).backends[0]));
  t.not(r, doc, 'a copy, not the input');
  t.equal(resourceKey(ok(split({ service: 'web', backends: [{ service: 'web', weight: 1 }] }, { name: 'x' }))), 'TrafficSplit/default/x', 'namespace defaults to default; the apex may be a backend');
});

test('TrafficSplit: every problem reported together, each at its path', async (t) => {
  const ps = problems(
    split({
      service: 'Web!',
      backends: [{ service: 'v1', weight: 10 }, { service: 'v2', weight: -1 }, { service: 'v1', weight: 1.5 }, { service: 'v3' }],
      matches: [{ method: 'FETCH', path: { exact: 'no-slash' } }, { path: { exact: '/a', prefix: '/b' } }, { headers: [{ value: 'x' }] }],
      extra: true,
    }),
  );
  t.same(paths(ps), [
    '/spec/backends/1/weight',
    '/spec/backends/2/service',
    '/spec/backends/2/weight',
    '/spec/backends/3/weight',
    '/spec/extra',
    '/spec/matches/0/method',
    '/spec/matches/0/path/exact',
    '/spec/matches/1/path/prefix',
    '/spec/matches/2/headers/0/name',
    '/spec/service',
  ]);
  const byPath = new Map(ps.map((p) => [p.path, p.message]));
  t.match(byPath.get('/spec/backends/2/service'), /duplicate backend "v1" \(also \/spec\/backends\/0\)/);
  t.match(byPath.get('/spec/backends/3/weight'), /missing required field "weight"/);
  t.match(byPath.get('/spec/matches/0/method'), /expected one of GET, HEAD, .*got "FETCH"/);
  t.match(byPath.get('/spec/extra'), /unknown field "extra"/);
  t.equal(ps.filter((p) => p.path === '/spec/backends/3/weight').length, 1, 'a missing field is reported once');
});

test('TrafficSplit: no backends, all-zero weights, empty matches', async (t) => {
  t.same(paths(problems(split({ service: 'web', backends: [] }))), ['/spec/backends']);
  const zero = problems(split({ service: 'web', backends: [{ service: 'a', weight: 0 }, { service: 'b', weight: 0 }] }));
  t.same(zero, [{ path: '/spec/backends', message: 'all backend weights are 0: the split would send traffic nowhere' }]);
  t.same(paths(problems(split({ service: 'web', backends: [{ service: 'a', weight: 1 }], matches: [] }))), ['/spec/matches']);
  t.same(paths(problems(split({ service: 'web' }))), ['/spec/backends']);
});

test('envelope: not a mapping, wrong apiVersion, unknown kind, missing metadata, metadata typos', async (t) => {
  t.same(problems('hello'), [{ path: '/', message: 'expected a mapping with apiVersion, kind, metadata and spec' }]);
  t.same(paths(problems({ apiVersion: 'v1', kind: 'Service' })), ['/apiVersion', '/kind']);
  t.same(paths(problems({ ...split({ service: 'web', backends: [{ service: 'a', weight: 1 }] }), apiVersion: 'split.smi-spec.io/v1alpha4' })), ['/apiVersion']);
  t.same(paths(problems({ apiVersion: V, kind: 'TrafficSplit', spec: { service: 'web', backends: [{ service: 'a', weight: 1 }] } })), ['/metadata']);
  t.same(paths(problems(split({ service: 'web', backends: [{ service: 'a', weight: 1 }] }, { name: 'x', namepsace: 'shop' }))), ['/metadata/namepsace']);
  t.same(paths(problems(split({ service: 'web', backends: [{ service: 'a', weight: 1 }] }, { name: 'Bad_Name' }))), ['/metadata/name']);
});

test('an object read back from Kubernetes (server-set metadata, status) parses', async (t) => {
  const doc = {
    ...split({ service: 'web', backends: [{ service: 'a', weight: 1 }] }),
    metadata: {
      name: 'web-canary', namespace: 'shop', uid: 'c0ffee', resourceVersion: '42', generation: 3, creationTimestamp: '2025-01-01T00:00:00Z',
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' }, managedFields: [{ manager: 'kubectl' }],
    },
    status: { observedGeneration: 3, conditions: [{ type: 'Accepted', status: 'True', reason: 'Valid', lastTransitionTime: '2025-01-01T00:00:00Z' }] },
  };
  t.equal(ok(doc).metadata.generation, 3);
});

const FRONTEND_GET_BILLING = {
  targetRef: { service: 'billing', port: 8080 },
  rules: [
    { from: { serviceAccounts: [{ name: 'frontend' }] }, to: { methods: ['GET'], paths: ['/billing/*'] } },
    { from: { namespaces: ['ops'], identities: ['spiffe://cluster.local/ns/audit/sa/reader'], serviceAccounts: [{ namespace: 'batch', name: 'report' }] } },
    { from: { namespaces: ['*'] }, to: { paths: ['/healthz'] } },
  ],
};

test('AuthorizationPolicy: "frontend may GET /billing/* but not POST" and its proxy rules', async (t) => {
  const p = ok(policy(FRONTEND_GET_BILLING)) as AuthorizationPolicy;
  t.same(proxyAuthorizationRules(p, 'cluster.local'), [
    { identities: ['spiffe://cluster.local/ns/shop/sa/frontend'], methods: ['GET'], paths: ['/billing/*'] },
    { identities: ['spiffe://cluster.local/ns/audit/sa/reader', 'spiffe://cluster.local/ns/ops/sa/*', 'spiffe://cluster.local/ns/batch/sa/report'] },
    { identities: ['*'], paths: ['/healthz'] },
  ]);
  t.same((ok(policy({ targetRef: { service: 'billing' }, rules: [] })) as AuthorizationPolicy).spec.rules, [], 'an empty rule list (deny all) is valid');
});

test('AuthorizationPolicy: every problem at once', async (t) => {
  const ps = problems(
    policy({
      targetRef: { service: 'billing', port: 0 },
      rules: [
        { from: {}, to: { methods: ['GET', 'FETCH'], paths: ['billing', '/a*b', '/ok*'] } },
        { from: { identities: ['frontend'], namespaces: ['Shop'], serviceAccounts: [{ namespace: 'shop' }] }, to: {} },
        { to: { methods: ['GET'] } },
      ],
    }),
  );
  t.same(paths(ps), [
    '/spec/rules/0/from',
    '/spec/rules/0/to/methods/1',
    '/spec/rules/0/to/paths/0',
    '/spec/rules/0/to/paths/1',
    '/spec/rules/1/from/identities/0',
    '/spec/rules/1/from/namespaces/0',
    '/spec/rules/1/from/serviceAccounts/0/name',
    '/spec/rules/1/to',
    '/spec/rules/2/from',
    '/spec/targetRef/port',
  ]);
  t.match(ps.find((p) => p.path === '/spec/rules/0/from')?.message, /at least one identity, namespace or service account/);
  t.same(paths(problems(policy({ targetRef: { service: 'billing' } }))), ['/spec/rules'], 'rules is required: absent is not "deny all"');
});

test('MeshService: endpoints by identity or service account, policy reused from the proxy config', async (t) => {
  const s = ok(
    service({
      ports: [{ port: 80, name: 'http' }],
      endpoints: [
        { address: '127.0.0.1:8081', serviceAccount: 'web', labels: { version: 'v1' } },
        { address: '127.0.0.1:8082', serviceAccount: 'web', namespace: 'other', ready: false },
        { address: '[::1]:8083', identity: 'spiffe://example.org/ns/shop/sa/web' },
        { address: 'legacy.local:80' },
      ],
      policy: { timeouts: { perTry: 500, request: 2000 }, retry: { attempts: 2 }, breaker: { consecutiveFailures: 5 } },
    }),
  ) as MeshService;
  t.same(
    s.spec.endpoints.map((ep) => endpointIdentity(ep, 'shop', 'cluster.local')),
    ['spiffe://cluster.local/ns/shop/sa/web', 'spiffe://cluster.local/ns/other/sa/web', 'spiffe://example.org/ns/shop/sa/web', undefined],
  );
  t.equal(kindOf(s), 'MeshService');
  t.equal(kindOf({ apiVersion: 'v1', kind: 'MeshService' }), undefined);
  t.equal(kindOf(null), undefined);
});

test('MeshService: every problem at once, including the proxy config\'s policy rules', async (t) => {
  const ps = problems(
    service(
      {
        ports: [{ port: 80, name: 'http' }, { port: 80, name: 'http' }, { port: 70000 }],
        endpoints: [
          { address: '10.0.0.1:80', identity: 'spiffe://cluster.local/ns/shop/sa/web', serviceAccount: 'web' },
          { address: '10.0.0.1:80', namespace: 'shop' },
          { address: 'no-port' },
        ],
        policy: { timeouts: { perTry: 3000, request: 1000 }, retry: { backoff: { base: 500, cap: 100 } }, breaker: { baseEjection: 9, maxEjection: 1 } },
      },
      'web.shop',
    ),
  );
  t.same(paths(ps), [
    '/metadata/name',
    '/spec/endpoints/0/serviceAccount',
    '/spec/endpoints/1/address',
    '/spec/endpoints/1/namespace',
    '/spec/endpoints/2/address',
    '/spec/policy/breaker/baseEjection',
    '/spec/policy/retry/backoff',
    '/spec/policy/timeouts/perTry',
    '/spec/ports/1/name',
    '/spec/ports/1/port',
    '/spec/ports/2/port',
  ]);
});

test('MeshService: the policy\'s rules are checked even where its schema failed', async (t) => {
  const ps = problems(service({ endpoints: [], policy: { retry: { attempts: 0, backoff: { base: 500, cap: 100 } }, timeouts: { perTry: 3000, request: 1000, connect: -1 } } }));
  t.same(paths(ps), ['/spec/policy/retry/attempts', '/spec/policy/retry/backoff', '/spec/policy/timeouts/connect', '/spec/policy/timeouts/perTry']);
});

test('MeshService: the policy is checked with the defaults the proxy will use, as proxies would refuse it', async (t) => {
  const ps = problems(service({ endpoints: [], policy: { retry: { backoff: { base: 1000 } }, breaker: { baseEjection: 120_000 } } }));
  t.same(paths(ps), ['/spec/policy/breaker/baseEjection', '/spec/policy/retry/backoff/base']);
  const text = ps.map((p) => p.message).join('\n');
  t.match(text, /1000 ms \(set here\) > 250 ms \(the default\)/);
  t.match(text, /120000 ms \(set here\) > 60000 ms \(the default\)/);
});

test('MeshService: an endpoint port out of range is refused, as proxies would', async (t) => {
  const ps = problems(service({ endpoints: [{ address: '127.0.0.1:99999' }, { address: '127.0.0.1:8080' }] }));
  t.same(ps, [{ path: '/spec/endpoints/0/address', message: 'port 99999 is out of range (1-65535)' }]);
});
