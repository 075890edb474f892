// Tests for control-plane/ca/certs.ts and verify.ts: what a leaf contains, lifetimes and caps,
// key redaction, and chain verification at an injected wall-clock time (no sockets here).
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { inspect } from 'node:util';
import t from 'tap';
import {
  Authority, CLOCK_SKEW_MS, DAY_MS, generateKeyPair, makeIssuer, makeTrustAnchor, signLeaf, uriSansOf,
} from '../../../control-plane/ca/certs.ts';
import { makeCsr } from '../../../control-plane/ca/csr.ts';
import { CertError } from '../../../control-plane/ca/errors.ts';
import { spiffeIdOf, verifyChain } from '../../../control-plane/ca/verify.ts';
import { id } from './fixtures/pki.ts';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0, 500);
const HOUR = 60 * 60 * 1000;
const X = id('shop', 'cart');
const Y = id('kube-system', 'admin');

const ku = (pem: string) => new X509Certificate(pem).raw.toString('hex');

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof CertError ? e.code : `not a CertError: ${String(e)}`;
  }
  return undefined;
}

const anchor = makeTrustAnchor({ now: T0, validityDays: 365 });
const issuer = makeIssuer(anchor, { now: T0, validityDays: 30 });

t.test('anchor and issuer: roles, CA flags, trust domain, issuer never outlives the anchor', async (t) => {
  t.equal(anchor.role, 'anchor');
  t.equal(issuer.role, 'issuer');
  t.equal(anchor.trustDomain, 'cluster.local');
  t.ok(anchor.x509.ca && issuer.x509.ca);
  t.ok(issuer.x509.checkIssued(anchor.x509) && issuer.x509.verify(anchor.x509.publicKey));
  t.equal(anchor.x509.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'ECDSA P-256');
  t.equal(issuer.notAfterMs, Math.floor((T0 + 30 * DAY_MS) / 1000) * 1000);
  t.equal(issuer.notBeforeMs, Math.floor((T0 - CLOCK_SKEW_MS) / 1000) * 1000);
  const long = makeIssuer(anchor, { now: T0, validityDays: 1000 });
  t.equal(long.notAfterMs, anchor.notAfterMs, 'capped at the anchor');
  t.equal(code(() => makeIssuer(anchor, { now: anchor.notAfterMs + 1 })), 'issuer-expired');
  t.equal(code(() => makeIssuer(issuer, { now: T0 })), 'bad-options', 'an issuer cannot make issuers');
  t.equal(code(() => makeTrustAnchor({ now: T0, trustDomain: 'Bad_TD' })), 'bad-options');
  t.equal(code(() => makeTrustAnchor({ now: T0, validityDays: 0 })), 'bad-options');
  t.equal(code(() => makeTrustAnchor({ now: Number.NaN })), 'bad-options');
  t.equal(makeTrustAnchor({ now: T0, trustDomain: 'corp.example' }).trustDomain, 'corp.example');
});

t.test('a leaf for X from a CSR asking for Y (SAN and CN) names only X', async (t) => {
  const { privateKey, publicKey } = generateKeyPair();
  const csrPem = makeCsr({ privateKey, commonName: Y.uri, uriSans: [Y.uri, 'spiffe://cluster.local/ns/shop/sa/other'] });
  const leaf = signLeaf({ issuer, csrPem, identity: X, now: T0 });
  const x = new X509Certificate(leaf.certPem);
  t.same(uriSansOf(x), [X.uri], 'the only URI SAN is the identity');
  t.equal(x.subjectAltName, `URI:${X.uri}`, 'and no other SAN of any kind');
  t.notOk(x.subject, 'subject is empty: the CSR subject is ignored');
  t.notOk(x.raw.includes('kube-system') || x.raw.includes('/sa/other'), 'nothing of what the CSR asked for is in the DER');
  t.equal(spiffeIdOf(leaf.certPem).uri, X.uri);
  t.ok(x.publicKey.export({ type: 'spki', format: 'der' }).equals(publicKey.export({ type: 'spki', format: 'der' })), 'the key is the CSR key');
  t.notOk(x.ca, 'CA:false');
  t.same(x.keyUsage, ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'extKeyUsage serverAuth + clientAuth');
  t.equal(x.issuer, issuer.x509.subject);
  t.ok(x.checkIssued(issuer.x509) && x.verify(issuer.x509.publicKey));
  t.equal(leaf.notBeforeMs, Math.floor((T0 - CLOCK_SKEW_MS) / 1000) * 1000, 'notBefore = now − 1 min');
  t.equal(leaf.notAfterMs, Math.floor((T0 + DAY_MS) / 1000) * 1000, 'notAfter = now + 24 h by default');
  t.match(leaf.serialHex, /^[0-9a-f]{1,34}$/);
});

t.test('key usage: digitalSignature for EC leaves, + keyEncipherment for RSA leaves', async (t) => {
  // Read the keyUsage bits from DER via openssl-equivalent: X509Certificate has no KU accessor,
  // so compare the encoded extension bytes (03 02 07 80 = digitalSignature; 03 02 05 a0 = + keyEncipherment).
  const ec = signLeaf({ issuer, csrPem: makeCsr({ privateKey: generateKeyPair().privateKey }), identity: X, now: T0 });
  const rsaKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const rsa = signLeaf({ issuer, csrPem: makeCsr({ privateKey: rsaKey }), identity: X, now: T0 });
  t.match(ku(ec.certPem), '0603551d0f0101ff040403020780');
  t.match(ku(rsa.certPem), '0603551d0f0101ff0404030205a0');
  t.equal(new X509Certificate(rsa.certPem).publicKey.asymmetricKeyType, 'rsa');
  t.equal(verifyChain(rsa.certPem, [issuer.certPem], [anchor.certPem], T0).uri, X.uri);
});

t.test('ttl: custom, capped at the issuer, refused when the issuer is expired', async (t) => {
  const csrPem = makeCsr({ privateKey: generateKeyPair().privateKey });
  t.equal(signLeaf({ issuer, csrPem, identity: X, now: T0, ttlMs: HOUR }).notAfterMs, Math.floor((T0 + HOUR) / 1000) * 1000);
  const shortIssuer = makeIssuer(anchor, { now: T0, validityDays: 1 });
  const late = T0 + 23 * HOUR;
  const capped = signLeaf({ issuer: shortIssuer, csrPem, identity: X, now: late, ttlMs: DAY_MS });
  t.equal(capped.notAfterMs, shortIssuer.notAfterMs, 'notAfter never after the issuer’s');
  t.ok(capped.notAfterMs < late + DAY_MS);
  t.equal(code(() => signLeaf({ issuer: shortIssuer, csrPem, identity: X, now: shortIssuer.notAfterMs })), 'issuer-expired');
  t.equal(code(() => signLeaf({ issuer: shortIssuer, csrPem, identity: X, now: shortIssuer.notAfterMs - 30_000 })), 'issuer-expired', 'under a minute left');
  t.equal(signLeaf({ issuer: shortIssuer, csrPem, identity: X, now: shortIssuer.notAfterMs - 120_000 }).notAfterMs, shortIssuer.notAfterMs, 'a nearly expired issuer gives short leaves: rotate it early');
  t.equal(code(() => signLeaf({ issuer, csrPem, identity: X, now: issuer.notBeforeMs - 1 })), 'issuer-expired', 'before the issuer is valid');
  t.equal(code(() => signLeaf({ issuer, csrPem, identity: X, now: T0, ttlMs: 0 })), 'bad-options');
  t.equal(code(() => signLeaf({ issuer, csrPem, identity: X, now: T0, ttlMs: -5 })), 'bad-options');
  t.equal(code(() => signLeaf({ issuer: anchor, csrPem, identity: X, now: T0 })), 'bad-options', 'anchors do not sign leaves');
});

t.test('identity must be valid and in the issuer trust domain', async (t) => {
  const csrPem = makeCsr({ privateKey: generateKeyPair().privateKey });
  t.equal(code(() => signLeaf({ issuer, csrPem, identity: id('a', 'b', 'other.domain'), now: T0 })), 'bad-identity');
  const forged = { trustDomain: 'cluster.local', namespace: 'a/sa/b', serviceAccount: 'c', uri: 'spiffe://cluster.local/ns/a/sa/c' };
  t.throws(() => signLeaf({ issuer, csrPem, identity: forged, now: T0 }), /namespace/, 'a hand-built identity is re-validated');
});

t.test('serials: 128 random bits from the injected source, positive and minimal', async (t) => {
  const csrPem = makeCsr({ privateKey: generateKeyPair().privateKey });
  const high = signLeaf({ issuer, csrPem, identity: X, now: T0, randomBytes: () => Buffer.alloc(16, 0xff) });
  t.equal(high.serialHex, 'ff'.repeat(16));
  t.match(new X509Certificate(high.certPem).raw.toString('hex'), `021100${'ff'.repeat(16)}`, 'INTEGER 17 octets with a sign byte');
  const low = signLeaf({ issuer, csrPem, identity: X, now: T0, randomBytes: () => Buffer.from('00000000000000000000000000000a0b', 'hex') });
  t.equal(low.serialHex, '0a0b', 'leading zero octets dropped');
  const zero = signLeaf({ issuer, csrPem, identity: X, now: T0, randomBytes: () => Buffer.alloc(16) });
  t.equal(zero.serialHex, '01', 'never zero');
  t.equal(code(() => signLeaf({ issuer, csrPem, identity: X, now: T0, randomBytes: () => Buffer.alloc(3) })), 'bad-options');
});

t.test('private keys stay redacted; exportSecret round-trips; mismatched keys refused', async (t) => {
  for (const a of [anchor, issuer]) {
    t.notMatch(JSON.stringify(a), /PRIVATE KEY/);
    t.match(JSON.stringify(a), /"privateKey":"\[redacted\]"/);
    t.notMatch(inspect(a, { depth: 10, showHidden: true }), /PRIVATE KEY/);
    t.match(inspect(a), /key \[redacted\]/);
    t.notMatch(JSON.stringify({ nested: [a] }), /PRIVATE KEY/);
    const secret = a.exportSecret();
    t.match(secret.keyPem, /BEGIN PRIVATE KEY/);
    const back = new Authority(secret.certPem, secret.keyPem);
    t.equal(back.role, a.role);
    t.equal(back.serialHex, a.serialHex);
  }
  t.equal(code(() => new Authority(issuer.certPem, anchor.exportSecret().keyPem)), 'bad-cert', 'key of another cert');
  t.equal(code(() => new Authority('garbage', anchor.exportSecret().keyPem)), 'bad-cert');
  t.equal(code(() => new Authority(anchor.certPem, 'garbage')), 'bad-cert');
  t.equal(code(() => new Authority(anchor.certPem, generateKeyPair().publicKey)), 'bad-cert', 'a public key is not a CA key');
  const { privateKey } = generateKeyPair();
  const leaf = signLeaf({ issuer, csrPem: makeCsr({ privateKey }), identity: X, now: T0 });
  t.equal(code(() => new Authority(leaf.certPem, privateKey)), 'bad-cert', 'a leaf is not a CA');
});

t.test('verifyChain: accepts the real chain at an injected time, refuses the rest with codes', async (t) => {
  const { privateKey } = generateKeyPair();
  const leaf = signLeaf({ issuer, csrPem: makeCsr({ privateKey }), identity: X, now: T0, ttlMs: HOUR });
  t.equal(verifyChain(leaf.certPem, [issuer.certPem], [anchor.certPem], T0).uri, X.uri);
  t.equal(verifyChain(leaf.certPem, [anchor.certPem, issuer.certPem], [anchor.certPem], T0).uri, X.uri, 'any order, anchor included');
  t.equal(verifyChain(leaf.certPem, [issuer.certPem], [makeTrustAnchor({ now: T0 }).certPem, anchor.certPem], T0).uri, X.uri, 'bundle of two');

  const otherAnchor = makeTrustAnchor({ now: T0 });
  const otherIssuer = makeIssuer(otherAnchor, { now: T0 });
  const foreign = signLeaf({ issuer: otherIssuer, csrPem: makeCsr({ privateKey }), identity: X, now: T0 });
  t.equal(code(() => verifyChain(foreign.certPem, [otherIssuer.certPem], [anchor.certPem], T0)), 'untrusted', 'leaf from another CA');
  t.equal(code(() => verifyChain(foreign.certPem, [issuer.certPem], [anchor.certPem], T0)), 'untrusted', 'another CA with our chain attached');
  t.equal(code(() => verifyChain(leaf.certPem, [], [anchor.certPem], T0)), 'untrusted', 'missing intermediate');
  t.equal(code(() => verifyChain(leaf.certPem, [issuer.certPem], [], T0)), 'untrusted', 'empty bundle');
  t.equal(code(() => verifyChain(leaf.certPem, [issuer.certPem], [issuer.certPem], T0)), 'untrusted', 'an issuer in the bundle is not an anchor of this chain');

  t.equal(code(() => verifyChain(leaf.certPem, [issuer.certPem], [anchor.certPem], leaf.notAfterMs)), 'expired', 'expired leaf');
  t.equal(code(() => verifyChain(leaf.certPem, [issuer.certPem], [anchor.certPem], leaf.notBeforeMs - 1)), 'not-yet-valid');
  const shortIssuer = makeIssuer(anchor, { now: T0, validityDays: 1 });
  const late = signLeaf({ issuer: shortIssuer, csrPem: makeCsr({ privateKey }), identity: X, now: T0 });
  t.equal(code(() => verifyChain(late.certPem, [shortIssuer.certPem], [anchor.certPem], shortIssuer.notAfterMs)), 'expired', 'expired issuer');

  t.equal(code(() => verifyChain(issuer.certPem, [], [anchor.certPem], T0)), 'bad-identity', 'a CA is not a leaf');
  t.equal(code(() => verifyChain('nope', [], [anchor.certPem], T0)), 'bad-cert');
  t.equal(code(() => spiffeIdOf(anchor.certPem)), 'bad-identity', 'spiffe://<td> alone is not a workload ID');

  // Another trust domain works end to end with its own anchor (and its leaf is untrusted by ours).
  const corpAnchor = makeTrustAnchor({ now: T0, trustDomain: 'corp.example' });
  const corpIssuer = makeIssuer(corpAnchor, { now: T0 });
  const corpLeaf = signLeaf({ issuer: corpIssuer, csrPem: makeCsr({ privateKey }), identity: id('a', 'b', 'corp.example'), now: T0 });
  t.equal(verifyChain(corpLeaf.certPem, [corpIssuer.certPem], [corpAnchor.certPem], T0).trustDomain, 'corp.example');
  t.equal(code(() => verifyChain(corpLeaf.certPem, [corpIssuer.certPem], [anchor.certPem], T0)), 'untrusted');
});
