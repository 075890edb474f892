// A Pod's own default inbound policy (MESHLET_DEFAULT_INBOUND_POLICY): how it combines with the
// config's default, with policies guarding a port, with plaintext and with probes; the variable's parser.
import t from 'tap';
import { inboundDecision } from '../../../proxy/inbound/authorize.ts';
import { authorize } from '../../../proxy/policy/authorize.ts';
import { parseDefaultInboundPolicy } from '../../../api/default-inbound-policy.ts';
import type { AuthorizationPolicyConfig } from '../../../api/proxy-config.ts';
import type { RuntimeConfig } from '../../../proxy/config/compile.ts';

const WEB = 'spiffe://cluster.local/ns/shop/sa/web';
const PLAIN = { identity: '', tls: false };
const MESHED = { identity: WEB, tls: true };
const guard: AuthorizationPolicyConfig = { name: 'metrics-scrapers', port: 9090, rules: [{ identities: [WEB] }] };
const inbound = (defaultPolicy: RuntimeConfig['inbound']['defaultPolicy'], policies: AuthorizationPolicyConfig[] = []): RuntimeConfig['inbound'] => ({ ports: new Map(), defaultPolicy, policies });
const probes = new Map([[8080, new Set(['/healthz'])]]);

t.test('all-unauthenticated: a plaintext peer is allowed where no policy guards the port, and the decision names that default', async (t) => {
  const d = inboundDecision(inbound('all-authenticated'), 8080, PLAIN, { method: 'POST', path: '/orders', target: '/orders' }, true, undefined, 'all-unauthenticated');
  t.same(d, { allowed: true, policy: 'default:all-unauthenticated' });
  t.same(inboundDecision(inbound('all-authenticated'), 8080, MESHED, { method: 'GET', path: '/', target: '/' }, true, undefined, 'all-unauthenticated'), { allowed: true, policy: 'default:all-unauthenticated' }, 'a meshed peer too');
  t.same(inboundDecision(inbound('deny'), 8080, PLAIN, { method: 'GET', path: '/', target: '/' }, true, undefined, 'all-unauthenticated'), { allowed: true, policy: 'default:all-unauthenticated' }, "the Pod's own default wins over the config's (deny)");
});

t.test("without a Pod default, the config's default decides (today's behaviour)", async (t) => {
  const d = inboundDecision(inbound('all-authenticated'), 8080, PLAIN, { method: 'GET', path: '/', target: '/' }, true);
  t.match(d, { allowed: false, policy: 'default:all-authenticated', reason: /allows only authenticated \(mTLS\) peers/ });
  t.same(inboundDecision(inbound('all'), 8080, PLAIN, { method: 'GET', path: '/', target: '/' }, true), { allowed: true, policy: 'default:all' });
});

t.test('all-authenticated and deny as the Pod default replace a permissive config default', async (t) => {
  t.match(inboundDecision(inbound('all'), 8080, PLAIN, { method: 'GET', path: '/', target: '/' }, true, undefined, 'all-authenticated'), { allowed: false, policy: 'default:all-authenticated' });
  t.same(inboundDecision(inbound('all'), 8080, MESHED, { method: 'GET', path: '/', target: '/' }, true, undefined, 'all-authenticated'), { allowed: true, policy: 'default:all-authenticated' });
  t.match(inboundDecision(inbound('all'), 8080, MESHED, { method: 'GET', path: '/', target: '/' }, true, undefined, 'deny'), { allowed: false, policy: 'default:deny', reason: /default policy \(deny\)/ });
  t.same(inboundDecision(inbound('all', [guard]), 9090, MESHED, { method: 'GET', path: '/', target: '/' }, true, undefined, 'deny'), { allowed: true, policy: 'metrics-scrapers' }, 'deny: what a policy allows still passes');
});

t.test('a port a policy guards: the policy decides; a plaintext peer has no identity and is refused, whatever the default', async (t) => {
  const d = inboundDecision(inbound('all-authenticated', [guard]), 9090, PLAIN, { method: 'GET', path: '/metrics', target: '/metrics' }, true, undefined, 'all-unauthenticated');
  t.match(d, { allowed: false, policy: 'metrics-scrapers', reason: /no rule of metrics-scrapers allows an unauthenticated \(plaintext\) peer to GET \/metrics: a policy names identities, so it allows only meshed \(mTLS\) clients/ });
  t.same(inboundDecision(inbound('all-authenticated', [guard]), 9090, MESHED, { method: 'GET', path: '/metrics', target: '/metrics' }, true, undefined, 'all-unauthenticated'), { allowed: true, policy: 'metrics-scrapers' });
  t.same(inboundDecision(inbound('all-authenticated', [guard]), 8080, PLAIN, { method: 'GET', path: '/', target: '/' }, true, undefined, 'all-unauthenticated'), { allowed: true, policy: 'default:all-unauthenticated' }, 'the other port, unguarded, takes it');
});

t.test('a plaintext request on a port that does not take plaintext is refused before the default is read; probes pass', async (t) => {
  t.match(inboundDecision(inbound('all'), 8080, PLAIN, { method: 'GET', path: '/', target: '/' }, false), { allowed: false, policy: 'strict-mtls', reason: /port 8080 accepts only mTLS .*config\.meshlet\.io\/default-inbound-policy: all-unauthenticated lets unmeshed clients in/ }, 'the 403 says how to let them in');
  t.same(inboundDecision(inbound('all-authenticated'), 8080, PLAIN, { method: 'GET', path: '/healthz', target: '/healthz' }, false, probes, 'deny'), { allowed: true, policy: 'probe' });
});

t.test('authorize: all-unauthenticated allows as all does, under its own name', async (t) => {
  t.same(authorize([], 'all-unauthenticated', { port: 1, identity: '', method: 'GET', path: '/' }), { allowed: true, policy: 'default:all-unauthenticated' });
  t.same(authorize([], 'all', { port: 1, identity: '', method: 'GET', path: '/' }), { allowed: true, policy: 'default:all' });
});

t.test('parseDefaultInboundPolicy: the three values; unset or empty is none; anything else names the variable and the values', async (t) => {
  for (const v of ['all-unauthenticated', 'all-authenticated', 'deny'] as const) t.equal(parseDefaultInboundPolicy(v, 'X'), v);
  t.equal(parseDefaultInboundPolicy(' deny ', 'X'), 'deny');
  t.equal(parseDefaultInboundPolicy(undefined, 'X'), undefined);
  t.equal(parseDefaultInboundPolicy('', 'X'), undefined);
  t.throws(() => parseDefaultInboundPolicy('all', 'MESHLET_DEFAULT_INBOUND_POLICY'), /MESHLET_DEFAULT_INBOUND_POLICY: "all" is not a default inbound policy; want one of all-unauthenticated, all-authenticated, deny/);
  t.throws(() => parseDefaultInboundPolicy('cluster-authenticated', 'X'), /not a default inbound policy/);
});
