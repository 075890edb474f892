// The proxy config document's validation: every problem reported at once with its path, and a
// valid document comes back frozen.
import t from 'tap';
import { parseProxyConfig, formatProblems } from '../../../api/proxy-config.ts';

const good = {
  version: 'v1',
  services: [
    { name: 'api', hosts: ['api.shop'], endpoints: [{ address: '127.0.0.1:8080', identity: 'spiffe://cluster.local/ns/shop/sa/api' }], routes: [{ name: 'split', backends: [{ service: 'api', weight: 9 }, { service: 'api-v2', weight: 1 }] }] },
    { name: 'api-v2', endpoints: [{ address: '[::1]:8081', ready: false }], timeouts: { perTry: 100, request: 200 }, retry: { backoff: { base: 10, cap: 20 } }, breaker: { baseEjection: 10, maxEjection: 20 } },
  ],
  inbound: { ports: [{ port: 8080, permissive: true }], defaultPolicy: 'deny', policies: [{ name: 'p', rules: [{ identities: ['spiffe://cluster.local/ns/shop/sa/*'], methods: ['GET'], paths: ['/billing/*'] }] }] },
};

t.test('a valid document is accepted and frozen', async (t) => {
  const r = parseProxyConfig(good);
  t.ok(r.ok, r.ok ? '' : formatProblems(r.problems));
  if (!r.ok) return;
  t.ok(Object.isFrozen(r.value.services[0]!.routes![0]!.backends), 'deeply frozen');
  t.not(r.value, good, 'a copy, not the caller object');
});

t.test('structural problems: every one with its path', async (t) => {
  const r = parseProxyConfig({
    version: '',
    services: [{ name: 'API', endpoints: [{ address: 'no-port' }, { address: '1.2.3.4:80', identity: 'spiffe://x/ns/a' }], routes: [{ name: 'r', match: { method: 'FETCH', path: { regex: '.*' } } }] }],
    extra: true,
  });
  t.notOk(r.ok);
  if (r.ok) return;
  const paths = r.problems.map((p) => p.path);
  for (const p of ['/version', '/services/0/name', '/services/0/endpoints/0/address', '/services/0/endpoints/1/identity', '/services/0/routes/0/match/method', '/services/0/routes/0/match/path', '/extra']) {
    t.ok(paths.some((x) => x.startsWith(p)), `${p} reported`);
  }
});

t.test('semantic problems: every one with its path', async (t) => {
  const r = parseProxyConfig({
    version: 'v',
    services: [
      { name: 'a', endpoints: [], routes: [{ name: 'r', backends: [{ service: 'nope', weight: 1 }, { service: 'a', weight: 0 }, { service: 'a', weight: 0 }] }, { name: 'r', backends: [{ service: 'a', weight: 0 }] }], timeouts: { perTry: 500, request: 100 }, retry: { backoff: { base: 300, cap: 100 } }, breaker: { baseEjection: 5000, maxEjection: 1000 } },
      { name: 'a', hosts: ['x'], endpoints: [] },
      { name: 'b', hosts: ['X'], endpoints: [] },
    ],
    inbound: { ports: [{ port: 1 }, { port: 1 }], policies: [{ name: 'p', rules: [{ identities: ['frontend'] }] }] },
  });
  t.notOk(r.ok);
  if (r.ok) return;
  const text = formatProblems(r.problems);
  t.match(text, /\/services\/0\/routes\/0\/backends\/0\/service: unknown service "nope"/);
  t.match(text, /\/services\/0\/routes\/0\/backends\/2\/service: duplicate backend "a"/);
  t.match(text, /\/services\/0\/routes\/1\/name: duplicate route name "r"/);
  t.match(text, /\/services\/0\/routes\/1\/backends: all backend weights are 0/);
  t.match(text, /\/services\/0\/timeouts\/perTry: perTry timeout is longer/);
  t.match(text, /\/services\/0\/retry\/backoff: backoff base is larger than its cap/);
  t.match(text, /\/services\/0\/breaker\/baseEjection/);
  t.match(text, /\/services\/1\/name: duplicate service "a"/);
  t.match(text, /\/services\/2\/hosts: host "X" is already claimed by service "a"/);
  t.match(text, /\/inbound\/ports\/1\/port: duplicate inbound port 1/);
  t.match(text, /\/inbound\/policies\/0\/rules\/0\/identities\/0: "frontend" is neither/);
});

t.test('schema and semantic problems are reported together, in one pass', async (t) => {
  const r = parseProxyConfig({
    version: 'v',
    services: [
      { name: 'a', endpoints: [{ address: 'no-port' }], routes: [{ name: 'r', backends: [{ service: 'ghost', weight: 1 }] }] },
      { name: 'a', endpoints: [], retry: { attempts: 0, backoff: { base: 300, cap: 100 } } },
      { name: 'b', endpoints: 'none', routes: [{ name: 'z', backends: [{ service: 'a', weight: 0 }] }] },
    ],
  });
  t.notOk(r.ok);
  if (r.ok) return;
  const text = formatProblems(r.problems);
  t.match(text, /\/services\/0\/endpoints\/0\/address: /, 'schema: bad address');
  t.match(text, /\/services\/1\/retry\/attempts: /, 'schema: attempts 0');
  t.match(text, /\/services\/2\/endpoints: /, 'schema: endpoints not a list');
  t.match(text, /\/services\/0\/routes\/0\/backends\/0\/service: unknown service "ghost"/, 'semantic, in a service with a schema problem');
  t.match(text, /\/services\/1\/name: duplicate service "a"/);
  t.match(text, /\/services\/1\/retry\/backoff: backoff base is larger than its cap/, 'semantic, in the same policy as a schema problem');
  t.match(text, /\/services\/2\/routes\/0\/backends: all backend weights are 0/);
});

t.test('semantic checks skip what has not the shape they read, and never throw', async (t) => {
  const docs = [
    { version: 'v', services: [null, 5, 'x', { routes: 'x' }, { name: 3, hosts: [1, null], routes: [null, 7, { name: 1, backends: [null, 7, { service: 2 }] }] }] },
    { version: 'v', services: [{ name: 'a', endpoints: [], timeouts: 'x', retry: { backoff: 'x' }, breaker: [], routes: [{ name: 'r', retry: null, timeouts: { perTry: 'x', request: 1 } }] }] },
    { version: 'v', services: {}, inbound: { ports: [null, { port: 'x' }], policies: [null, { rules: [null, { identities: [5, null] }] }] } },
    { version: 'v', services: [], inbound: 'x' },
  ];
  for (const doc of docs) {
    const r = parseProxyConfig(doc);
    t.notOk(r.ok, 'refused, by the schema');
  }
});

t.test('a retry budget on a route is refused: the budget is per service', async (t) => {
  const r = parseProxyConfig({
    version: 'v',
    services: [{ name: 'a', endpoints: [], retry: { budget: { ratio: 0.1 } }, routes: [{ name: 'r', retry: { attempts: 2, budget: { ratio: 1 } } }] }],
  });
  t.notOk(r.ok, 'refused (it used to be accepted and ignored)');
  if (r.ok) return;
  t.same(r.problems, [{ path: '/services/0/routes/0/retry/budget', message: 'the retry budget is per service: set it on the service' }], 'only the route\'s budget, in a sentence');
});

t.test('an endpoint port above 65535 (or 0) is refused with its path', async (t) => {
  const r = parseProxyConfig({
    version: 'v',
    services: [{ name: 'a', endpoints: [{ address: '127.0.0.1:99999' }, { address: '[::1]:0' }, { address: 'db.local:65535' }, { address: '10.0.0.1:1' }] }],
  });
  t.notOk(r.ok);
  if (r.ok) return;
  t.same(r.problems, [
    { path: '/services/0/endpoints/0/address', message: 'port 99999 is out of range (1-65535)' },
    { path: '/services/0/endpoints/1/address', message: 'port 0 is out of range (1-65535)' },
  ]);
});

t.test('a service host with a port is refused: matching strips the port from Host', async (t) => {
  const r = parseProxyConfig({
    version: 'v',
    services: [{ name: 'a', hosts: ['other:8080', 'api.shop', '[::1]:80', '[::1]', 'fe80::1', '10.0.0.1'], endpoints: [] }],
  });
  t.notOk(r.ok);
  if (r.ok) return;
  t.same(r.problems, [
    { path: '/services/0/hosts/0', message: 'hosts are host names without a port: write "other", not "other:8080" (a service for one port sets "port")' },
    { path: '/services/0/hosts/2', message: 'hosts are host names without a port: write "[::1]", not "[::1]:80" (a service for one port sets "port")' },
    { path: '/services/0/hosts/4', message: 'not a host name: an IPv6 address is written in brackets ([::1]), without a port' },
  ]);
});

t.test('not an object at all', async (t) => {
  for (const doc of [null, 42, 'x', [], undefined]) {
    const r = parseProxyConfig(doc);
    t.notOk(r.ok, `${JSON.stringify(doc)} refused`);
  }
});

t.test('retry.grpcStatuses: gRPC codes 1..16 only (0 is OK, not a failure), every bad one with its path', async (t) => {
  const ok = parseProxyConfig({ version: 'v', services: [{ name: 'a', endpoints: [], retry: { grpcStatuses: [14, 8] }, routes: [{ name: 'r', retry: { grpcStatuses: [1] } }] }] });
  t.ok(ok.ok, ok.ok ? '' : formatProblems(ok.problems));
  const r = parseProxyConfig({ version: 'v', services: [{ name: 'a', endpoints: [], retry: { grpcStatuses: [0, 17, 'UNAVAILABLE'] } }] });
  t.notOk(r.ok);
  if (r.ok) return;
  const paths = r.problems.map((p) => p.path);
  for (const p of ['/services/0/retry/grpcStatuses/0', '/services/0/retry/grpcStatuses/1', '/services/0/retry/grpcStatuses/2']) t.ok(paths.includes(p), `${p} reported`);
});
