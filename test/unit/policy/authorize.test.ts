// The inbound authorization decision: identity × method × path, policies per port, the default.
import t from 'tap';
import { authorize, pathForms } from '../../../proxy/policy/authorize.ts';
import type { AuthorizationPolicyConfig } from '../../../api/proxy-config.ts';

const FRONTEND = 'spiffe://cluster.local/ns/shop/sa/frontend';
const ADMIN = 'spiffe://cluster.local/ns/ops/sa/admin';
const OTHER = 'spiffe://cluster.local/ns/shop/sa/worker';

const billing: AuthorizationPolicyConfig[] = [
  {
    name: 'billing',
    port: 8080,
    rules: [
      { identities: [FRONTEND], methods: ['GET'], paths: ['/billing/*'] },
      { identities: ['spiffe://cluster.local/ns/ops/sa/*'] },
    ],
  },
];

t.test('frontend may GET /billing/* but not POST, and nothing else', async (t) => {
  const cases: Array<[string, string, string, boolean]> = [
    [FRONTEND, 'GET', '/billing/invoices', true],
    [FRONTEND, 'GET', '/billing/', true],
    [FRONTEND, 'POST', '/billing/invoices', false],
    [FRONTEND, 'GET', '/admin', false],
    [FRONTEND, 'GET', '/billingx', false],
    [ADMIN, 'DELETE', '/anything', true],
    [OTHER, 'GET', '/billing/invoices', false],
    ['', 'GET', '/billing/invoices', false],
  ];
  for (const [identity, method, path, allowed] of cases) {
    const d = authorize(billing, 'all', { port: 8080, identity, method, path });
    t.equal(d.allowed, allowed, `${identity || 'plaintext'} ${method} ${path} → ${allowed ? 'allow' : 'deny'}`);
    if (!d.allowed) t.match(d.reason, /no rule of billing allows/);
  }
});

t.test('a policy for another port does not apply; the default does', async (t) => {
  t.equal(authorize(billing, 'deny', { port: 9090, identity: FRONTEND, method: 'POST', path: '/x' }).allowed, false, 'deny default');
  t.equal(authorize(billing, 'all', { port: 9090, identity: '', method: 'POST', path: '/x' }).allowed, true, 'all default lets plaintext in');
  const d = authorize(billing, 'all-authenticated', { port: 9090, identity: '', method: 'GET', path: '/' });
  t.equal(d.allowed, false, 'all-authenticated refuses plaintext');
  t.equal(d.policy, 'default:all-authenticated');
  t.equal(authorize(billing, 'all-authenticated', { port: 9090, identity: OTHER, method: 'GET', path: '/' }).allowed, true, 'all-authenticated admits any mTLS peer');
});

t.test('an empty rule list denies everything on its port', async (t) => {
  const d = authorize([{ name: 'lockdown', rules: [] }], 'all', { port: 1, identity: ADMIN, method: 'GET', path: '/' });
  t.equal(d.allowed, false);
  t.equal(d.policy, 'lockdown');
});

t.test('"*" means any authenticated peer, never plaintext', async (t) => {
  const p: AuthorizationPolicyConfig[] = [{ name: 'any', rules: [{ identities: ['*'] }] }];
  t.equal(authorize(p, 'deny', { port: 1, identity: OTHER, method: 'GET', path: '/' }).allowed, true);
  t.equal(authorize(p, 'deny', { port: 1, identity: '', method: 'GET', path: '/' }).allowed, false);
});

const frontendGets = (path: string) => authorize(billing, 'deny', { port: 8080, identity: FRONTEND, method: 'GET', path });

t.test('a path rule must allow the path as sent and as an app resolves it (dot segments, encoded dots and slashes)', async (t) => {
  t.same(pathForms('/billing/invoices'), ['/billing/invoices'], 'a plain path has one form');
  t.same(pathForms('/billing/../admin'), ['/billing/../admin', '/admin']);
  t.same(pathForms('/billing/%2E%2e/admin'), ['/billing/%2E%2e/admin', '/admin']);
  t.same(pathForms('/billing/..%2fadmin'), ['/billing/..%2fadmin', '/admin']);
  t.same(pathForms('/billing\\..\\admin'), ['/billing\\..\\admin', '/admin']);
  t.same(pathForms('/billing/x//../../admin'), ['/billing/x//../../admin', '/billing/admin', '/admin'], 'with and without merged slashes');
  t.same(pathForms('/../../etc'), ['/../../etc', '/etc'], '.. stops at the root');
  t.same(pathForms('/billing/x/..'), ['/billing/x/..', '/billing/']);
  t.same(pathForms('/billing/a.b/./c'), ['/billing/a.b/./c', '/billing/a.b/c']);
  t.equal(frontendGets('/billing/../admin').allowed, false);
  t.match(frontendGets('/billing/%2e%2e/admin'), { allowed: false, reason: /GET \/billing\/%2e%2e\/admin \(resolved: \/admin\)/ });
  t.equal(frontendGets('/billing/x/../invoices').allowed, true, 'resolving under the prefix is fine');
  t.equal(frontendGets('/billing/a.json').allowed, true);
});
