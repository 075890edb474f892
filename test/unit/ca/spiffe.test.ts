// Tests for control-plane/ca/spiffe.ts: the accept/reject table for workload SPIFFE IDs.
// Pure: strings in, typed identities or SpiffeIdError out.
import t from 'tap';
import { DEFAULT_TRUST_DOMAIN, SpiffeIdError, formatSpiffeId, parseSpiffeId, spiffeId } from '../../../control-plane/ca/spiffe.ts';

const accepted: Array<[string, { trustDomain: string; namespace: string; serviceAccount: string }]> = [
  ['spiffe://cluster.local/ns/default/sa/web', { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'web' }],
  ['spiffe://example.org/ns/a/sa/b', { trustDomain: 'example.org', namespace: 'a', serviceAccount: 'b' }],
  ['spiffe://td/ns/n-1/sa/s-2', { trustDomain: 'td', namespace: 'n-1', serviceAccount: 's-2' }],
  ['spiffe://cluster.local/ns/kube-system/sa/sa.with.dots', { trustDomain: 'cluster.local', namespace: 'kube-system', serviceAccount: 'sa.with.dots' }],
  ['spiffe://a-b.c-d.example/ns/0ns/sa/9', { trustDomain: 'a-b.c-d.example', namespace: '0ns', serviceAccount: '9' }],
  [`spiffe://cluster.local/ns/${'n'.repeat(63)}/sa/web`, { trustDomain: 'cluster.local', namespace: 'n'.repeat(63), serviceAccount: 'web' }],
];

const rejected: Array<[string, RegExp]> = [
  ['', /does not start with "spiffe:\/\/"/],
  ['SPIFFE://cluster.local/ns/a/sa/b', /does not start/],
  ['spiffe:/cluster.local/ns/a/sa/b', /does not start/],
  ['https://cluster.local/ns/a/sa/b', /does not start/],
  ['spiffe://Cluster.local/ns/a/sa/b', /trust domain/],
  ['spiffe://cluster.local/ns/A/sa/b', /namespace/],
  ['spiffe://cluster.local/ns/a/sa/B', /service account/],
  ['spiffe://cluster.local:8443/ns/a/sa/b', /port/],
  ['spiffe://user@cluster.local/ns/a/sa/b', /userinfo/],
  ['spiffe://cluster.local/ns/a/sa/b?x=1', /query or fragment/],
  ['spiffe://cluster.local/ns/a/sa/b#frag', /query or fragment/],
  ['spiffe://cluster.local/ns/a/sa/b/', /not exactly/],
  ['spiffe://cluster.local/ns/a/sa/b/extra', /not exactly/],
  ['spiffe://cluster.local/ns/a/sa', /not exactly/],
  ['spiffe://cluster.local/sa/b/ns/a', /not exactly/],
  ['spiffe://cluster.local//ns/a/sa/b', /not exactly/],
  ['spiffe://cluster.local/ns//sa/b', /namespace/],
  ['spiffe://cluster.local/ns/a/sa/', /service account/],
  ['spiffe://cluster.local', /no workload path/],
  ['spiffe:///ns/a/sa/b', /trust domain/],
  ['spiffe://-bad.local/ns/a/sa/b', /trust domain/],
  ['spiffe://bad-.local/ns/a/sa/b', /trust domain/],
  ['spiffe://cluster..local/ns/a/sa/b', /trust domain/],
  ['spiffe://cluster.local./ns/a/sa/b', /trust domain/],
  ['spiffe://clu_ster.local/ns/a/sa/b', /trust domain/],
  ['spiffe://cluster.local/ns/-a/sa/b', /namespace/],
  ['spiffe://cluster.local/ns/a-/sa/b', /namespace/],
  ['spiffe://cluster.local/ns/a.b/sa/c', /namespace/],
  [`spiffe://cluster.local/ns/${'n'.repeat(64)}/sa/web`, /namespace/],
  ['spiffe://cluster.local/ns/a/sa/b%2Fc', /service account/],
  ['spiffe://cluster.local/ns/a/sa/..', /service account/],
  ['spiffe://cluster.local/ns/a/sa/b c', /service account/],
  ['spiffe://cluster.local/ns/a/sa/b.', /service account/],
  [' spiffe://cluster.local/ns/a/sa/b', /does not start/],
  ['spiffe://cluster.local/ns/a/sa/b\n', /service account/],
  [`spiffe://${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.${'e'.repeat(60)}/ns/a/sa/b`, /trust domain/],
  [`spiffe://cluster.local/ns/a/sa/${Array(40).fill('s'.repeat(60)).join('.')}`, /longer than 2048|service account/],
];

t.test('accepted', async (t) => {
  for (const [s, want] of accepted) {
    const id = parseSpiffeId(s);
    t.same({ trustDomain: id.trustDomain, namespace: id.namespace, serviceAccount: id.serviceAccount }, want, s);
    t.equal(id.uri, s, `${s} round-trips`);
    t.equal(formatSpiffeId(id), s);
    t.ok(Object.isFrozen(id));
  }
});

t.test('rejected, each with its reason', async (t) => {
  for (const [s, why] of rejected) {
    t.throws(() => parseSpiffeId(s), why, JSON.stringify(s).slice(0, 80));
    try {
      parseSpiffeId(s);
    } catch (e) {
      t.ok(e instanceof SpiffeIdError && e.code === 'bad-spiffe-id');
    }
  }
  t.throws(() => parseSpiffeId(42 as unknown as string), /must be a string/);
});

t.test('spiffeId builds with the default trust domain and validates parts', async (t) => {
  t.equal(DEFAULT_TRUST_DOMAIN, 'cluster.local');
  t.equal(spiffeId({ namespace: 'shop', serviceAccount: 'cart' }).uri, 'spiffe://cluster.local/ns/shop/sa/cart');
  t.equal(formatSpiffeId({ trustDomain: 'corp.example', namespace: 'a', serviceAccount: 'b' }), 'spiffe://corp.example/ns/a/sa/b');
  t.throws(() => spiffeId({ namespace: 'a/sa/x', serviceAccount: 'b' }), /namespace/);
  t.throws(() => formatSpiffeId({ trustDomain: 'x:1', namespace: 'a', serviceAccount: 'b' }), /trust domain/);
});
