// CertifyService and its intake with a stub TokenReviewer and a hand-moved wall clock: every
// branch of the decision, including the ones a real API server will not produce (403, 503).

import t from 'tap';
import { Registry } from 'prom-client';
import { ManualClock } from '../../../api/runtime.ts';
import { ManualWallClock, generateKeyPair, initCa, makeCsr, spiffeIdOf, verifyChain } from '../../../control-plane/ca/index.ts';
import { CertifyService, type HttpInput } from '../../../control-plane/certify/certify.ts';
import { REFUSAL_REASONS, REFUSAL_STATUS } from '../../../control-plane/certify/refusals.ts';
import { parseCertifyRequest } from '../../../control-plane/certify/request.ts';
import { identityFromReview, type TokenReviewer, type TokenReviewResult } from '../../../control-plane/certify/token-reviewer.ts';
import { generateBootstrapKey, issueBootstrapToken } from '../../../control-plane/identity/bootstrap-token.ts';
import { CaMetrics } from '../../../control-plane/metrics.ts';
import type { CaDocument } from '../../../control-plane/store/ca-document.ts';
import { parseSpiffeId } from '../../../control-plane/ca/spiffe.ts';

const T0 = Date.UTC(2030, 0, 1);
const state = initCa({ now: T0 });
const key = generateBootstrapKey();
const doc: CaDocument = { state, bootstrapKey: key };
const csr = makeCsr({ privateKey: generateKeyPair().privateKey, uriSans: ['spiffe://cluster.local/ns/kube-system/sa/admin'] });

class StubReviewer implements TokenReviewer {
  calls: Array<{ token: string; audiences: readonly string[] }> = [];
  readonly answer: TokenReviewResult | Error;
  constructor(answer: TokenReviewResult | Error) {
    this.answer = answer;
  }
  async review(token: string, audiences: readonly string[]): Promise<TokenReviewResult> {
    this.calls.push({ token, audiences });
    if (this.answer instanceof Error) throw this.answer;
    return this.answer;
  }
}

const SA = (ns: string, sa: string): TokenReviewResult => ({ authenticated: true, username: `system:serviceaccount:${ns}:${sa}`, audiences: ['meshlet'] });

function setup(o: { reviewer?: TokenReviewer; doc?: CaDocument | undefined; leafTtlMs?: number } = {}) {
  const wall = new ManualWallClock(T0 + 1000);
  const metrics = new CaMetrics(new Registry(), { defaultMetrics: false });
  const svc = new CertifyService({ ca: () => ('doc' in o ? o.doc : doc), reviewer: o.reviewer, leafTtlMs: o.leafTtlMs, wallClock: wall, clock: new ManualClock(), metrics });
  const post = (body: unknown, headers: { authorization?: string; contentType?: string } = {}): Promise<ReturnType<CertifyService['handle']> extends Promise<infer R> ? R : never> => {
    const input: HttpInput = {
      method: 'POST', path: '/v1/certify', contentType: headers.contentType ?? 'application/json', authorization: headers.authorization,
      body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    };
    return svc.handle(input);
  };
  const count = async (name: string, labels: Record<string, string> = {}): Promise<number> => {
    const m = await metrics.registry.getSingleMetric(name)?.get();
    return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0);
  };
  return { svc, wall, metrics, post, count };
}

t.test('kubernetes proof: the reviewed service account is the identity, the CSR names are ignored', async (t) => {
  const reviewer = new StubReviewer(SA('shop', 'cart'));
  const { post, count } = setup({ reviewer });
  const out = await post({ csr, token: 'tok', kind: 'kubernetes' });
  if (!out.ok) return t.fail(out.message);
  t.equal(out.body.identity, 'spiffe://cluster.local/ns/shop/sa/cart');
  t.equal(spiffeIdOf(out.body.certificate).uri, 'spiffe://cluster.local/ns/shop/sa/cart');
  t.equal(verifyChain(out.body.certificate, out.body.chain, out.body.trustBundle, T0 + 2000).uri, out.body.identity);
  t.same(reviewer.calls, [{ token: 'tok', audiences: ['meshlet'] }], 'reviewed once, for audience meshlet');
  t.equal(await count('meshlet_ca_certificates_issued_total', { proof: 'kubernetes' }), 1);
  t.equal((await post({ csr, kind: 'kubernetes' }, { authorization: 'Bearer tok' })).status, 200, 'token in the header');
});

t.test('kubernetes proof refusals', async (t) => {
  const cases: Array<[string, TokenReviewResult | Error, number, string]> = [
    ['not authenticated', { authenticated: false, error: 'invalid bearer token' }, 401, 'token-invalid'],
    ['authenticated for no audience (audience-agnostic authenticator)', { authenticated: true, username: 'system:serviceaccount:a:b' }, 401, 'token-audience'],
    ['authenticated for another audience', { authenticated: true, username: 'system:serviceaccount:a:b', audiences: ['api'] }, 401, 'token-audience'],
    ['a user, not a service account', { authenticated: true, username: 'alice', audiences: ['meshlet'] }, 403, 'not-service-account'],
    ['a node', { authenticated: true, username: 'system:node:n1', audiences: ['meshlet'] }, 403, 'not-service-account'],
    ['a malformed service-account name', { authenticated: true, username: 'system:serviceaccount:a:b:c', audiences: ['meshlet'] }, 403, 'not-service-account'],
    ['an invalid namespace', { authenticated: true, username: 'system:serviceaccount:A_B:c', audiences: ['meshlet'] }, 403, 'not-service-account'],
    ['the API server is unreachable', new Error('connect ECONNREFUSED'), 503, 'review-unavailable'],
  ];
  for (const [what, answer, status, reason] of cases) {
    const { post, count } = setup({ reviewer: new StubReviewer(answer) });
    const out = await post({ csr, token: 'tok', kind: 'kubernetes' });
    t.equal(out.status, status, what);
    t.equal(out.ok ? '' : out.reason, reason, what);
    t.equal(await count('meshlet_ca_certificates_refused_total', { reason }), 1, `${what}: counted`);
    t.equal(await count('meshlet_ca_certificates_issued_total'), 0, `${what}: nothing signed`);
  }
  const { post } = setup();
  const disabled = await post({ csr, token: 'tok', kind: 'kubernetes' });
  t.equal(disabled.ok ? '' : disabled.reason, 'proof-kind-disabled', 'no reviewer: kubernetes proof is off');
});

t.test('bootstrap proof', async (t) => {
  const { post, wall } = setup();
  const id = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart');
  const token = issueBootstrapToken(id, { ttlMs: 60_000, now: wall.nowMs(), key });
  const ok = await post({ csr, token, kind: 'bootstrap' });
  t.equal(ok.ok && ok.body.identity, id.uri);
  const foreignTd = issueBootstrapToken(parseSpiffeId('spiffe://other.example/ns/shop/sa/cart'), { ttlMs: 60_000, now: wall.nowMs(), key });
  const td = await post({ csr, token: foreignTd, kind: 'bootstrap' });
  t.equal(td.ok ? '' : `${td.status} ${td.reason}`, '403 wrong-trust-domain');
  wall.advance(60_000);
  const expired = await post({ csr, token, kind: 'bootstrap' });
  t.equal(expired.ok ? '' : `${expired.status} ${expired.reason}`, '401 token-expired');
  const noKey = setup({ doc: { state } });
  const off = await noKey.post({ csr, token, kind: 'bootstrap' });
  t.equal(off.ok ? '' : off.reason, 'proof-kind-disabled');
});

t.test('a bootstrap token meeting a state with no key re-reads the state first, at most once a second', async (t) => {
  const wall = new ManualWallClock(T0 + 1000);
  const clock = new ManualClock();
  const metrics = new CaMetrics(new Registry(), { defaultMetrics: false });
  let current: CaDocument = { state };
  let refreshes = 0;
  let onDisk: CaDocument = { state };
  const svc = new CertifyService({ ca: () => current, refresh: async () => { refreshes++; current = onDisk; }, wallClock: wall, clock, metrics });
  const token = issueBootstrapToken(parseSpiffeId('spiffe://cluster.local/ns/shop/sa/cart'), { ttlMs: 60_000, now: wall.nowMs(), key });
  const certify = () => svc.certify({ kind: 'bootstrap', csrPem: csr, token });

  const before = await certify();
  t.equal(before.ok ? '' : before.reason, 'proof-kind-disabled', 'no key anywhere: refused');
  t.equal(refreshes, 1, 'after re-reading the state once');
  onDisk = { state, bootstrapKey: key }; // `meshlet identity bootstrap-token` made the key
  clock.advance(999);
  const soon = await certify();
  t.equal(soon.ok ? '' : soon.reason, 'proof-kind-disabled', 'within a second of the last re-read: refused without another');
  t.equal(refreshes, 1);
  clock.advance(1);
  const after = await certify();
  t.equal(after.ok && after.body.identity, 'spiffe://cluster.local/ns/shop/sa/cart', 'a second later: re-read, key found, issued');
  t.equal(refreshes, 2);
  await certify();
  t.equal(refreshes, 2, 'a state with a key is not re-read');
  const kube = await svc.certify({ kind: 'kubernetes', csrPem: csr, token: 'tok' });
  t.equal(kube.ok ? '' : kube.reason, 'proof-kind-disabled', 'a Kubernetes token never makes it re-read');
  t.equal(refreshes, 2);
});

t.test('the CA itself: not loaded, issuer expired, TTL capped', async (t) => {
  const none = await setup({ doc: undefined, reviewer: new StubReviewer(SA('a', 'b')) }).post({ csr, token: 't', kind: 'kubernetes' });
  t.equal(none.ok ? '' : `${none.status} ${none.reason}`, '503 ca-unavailable');
  const late = setup({ reviewer: new StubReviewer(SA('a', 'b')) });
  late.wall.set(state.issuer.notAfterMs + 1);
  const expired = await late.post({ csr, token: 't', kind: 'kubernetes' });
  t.equal(expired.ok ? '' : `${expired.status} ${expired.reason}`, '503 ca-unavailable');
  const short = await setup({ reviewer: new StubReviewer(SA('a', 'b')), leafTtlMs: 3_600_000 }).post({ csr, token: 't', kind: 'kubernetes' });
  t.equal(short.ok && Date.parse(short.body.notAfter) - (T0 + 1000), 3_600_000, '1 h leaf');
  const long = await setup({ reviewer: new StubReviewer(SA('a', 'b')), leafTtlMs: 10 * 86_400_000 }).post({ csr, token: 't', kind: 'kubernetes' });
  t.equal(long.ok && Date.parse(long.body.notAfter) - (T0 + 1000), 86_400_000, "capped at the CA's 24 h");
});

t.test('intake: bad requests are refused before any proof is checked', async (t) => {
  const reviewer = new StubReviewer(SA('a', 'b'));
  const { post, svc } = setup({ reviewer });
  const cases: Array<[string, unknown, { authorization?: string; contentType?: string }, string]> = [
    ['not JSON', '{', {}, 'bad-body'],
    ['an array', '[]', {}, 'bad-body'],
    ['no csr', { token: 't', kind: 'kubernetes' }, {}, 'bad-body'],
    ['csr not a string', { csr: 1, token: 't', kind: 'kubernetes' }, {}, 'bad-body'],
    ['unknown kind', { csr, token: 't', kind: 'x509' }, {}, 'bad-body'],
    ['token not a string', { csr, token: 5, kind: 'kubernetes' }, {}, 'bad-body'],
    ['text/plain', { csr, token: 't', kind: 'kubernetes' }, { contentType: 'text/plain' }, 'bad-content-type'],
    ['two different tokens', { csr, token: 't', kind: 'kubernetes' }, { authorization: 'Bearer u' }, 'ambiguous-token'],
    ['Basic auth', { csr, kind: 'kubernetes' }, { authorization: 'Basic dTpw' }, 'no-token'],
    ['empty token', { csr, token: '', kind: 'kubernetes' }, {}, 'no-token'],
    ['garbage CSR', { csr: 'nope', token: 't', kind: 'kubernetes' }, {}, 'bad-csr'],
  ];
  for (const [what, body, headers, reason] of cases) {
    const out = await post(body, headers);
    t.equal(out.ok ? '' : out.reason, reason, what);
    t.equal(out.status, REFUSAL_STATUS[reason as keyof typeof REFUSAL_STATUS], `${what}: status`);
  }
  t.equal(reviewer.calls.length, 1, 'only the garbage CSR (a valid request shape) reached the reviewer');
  const same = parseCertifyRequest({ body: Buffer.from(JSON.stringify({ csr, token: 't', kind: 'kubernetes' })), contentType: 'application/json; charset=utf-8', authorization: 'bearer t' });
  t.same(same, { csrPem: csr, kind: 'kubernetes', token: 't' }, 'the same token in both places is fine; parameters on the media type too');
  const get = await svc.handle({ method: 'GET', path: '/v1/certify', contentType: undefined, authorization: undefined, body: Buffer.alloc(0) });
  t.equal(get.status, 405);
  const other = await svc.handle({ method: 'POST', path: '/v1/other', contentType: undefined, authorization: undefined, body: Buffer.alloc(0) });
  t.equal(other.status, 404);
});

t.test('reason table and pure review check', async (t) => {
  t.ok(REFUSAL_REASONS.every((r) => REFUSAL_STATUS[r] >= 400), 'every reason is an error status');
  t.same(new Set(REFUSAL_REASONS.map((r) => REFUSAL_STATUS[r])), new Set([400, 401, 403, 404, 405, 413, 415, 500, 503]));
  const ok = identityFromReview(SA('shop', 'cart.v2'), { audience: 'meshlet', trustDomain: 'example.org' });
  t.equal(ok.ok && ok.identity.uri, 'spiffe://example.org/ns/shop/sa/cart.v2', 'dotted service-account names are valid');
});
