// Tests for control-plane/ca/bundle.ts: every in-order rotation path works, every out-of-order step
// is refused with its message, old and new leaves verify across each step, and state persists safely.
import { X509Certificate } from 'node:crypto';
import { inspect } from 'node:util';
import t from 'tap';
import {
  RotationError, addAnchor, expiries, exportSecret, importSecret, initCa, issueLeaf, phaseOf, removableAtMs, removeAnchor,
  rotateIssuer, trustBundle, useAnchor, type CaState,
} from '../../../control-plane/ca/bundle.ts';
import { DAY_MS, generateKeyPair } from '../../../control-plane/ca/certs.ts';
import { makeCsr } from '../../../control-plane/ca/csr.ts';
import { CertError } from '../../../control-plane/ca/errors.ts';
import { verifyChain } from '../../../control-plane/ca/verify.ts';
import { ManualWallClock, systemWallClock } from '../../../control-plane/ca/wall-clock.ts';
import { id, workload } from './fixtures/pki.ts';

const T0 = Date.UTC(2030, 5, 1);
const HOUR = 60 * 60 * 1000;
const TTL = 2 * HOUR;
const X = id('shop', 'cart');

function refusal(fn: () => unknown): { code: string; message: string } | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof RotationError) return { code: e.code, message: e.message };
    throw e;
  }
  return undefined;
}

const verifies = (s: CaState, w: { leafPem: string; chainPems: string[] }, now: number): boolean => {
  try {
    verifyChain(w.leafPem, w.chainPems, trustBundle(s), now);
    return true;
  } catch {
    return false;
  }
};

t.test('init: steady, one anchor, issuer under it', async (t) => {
  const s = initCa({ now: T0, leafTtlMs: TTL });
  t.equal(phaseOf(s), 'steady');
  t.equal(trustBundle(s).length, 1);
  t.equal(s.trustDomain, 'cluster.local');
  t.ok(Object.isFrozen(s));
  t.ok(s.issuer.x509.checkIssued(s.anchor.x509));
  t.equal(initCa({ now: T0 }).leafTtlMs, DAY_MS, 'leaf TTL defaults to 24 h');
  t.throws(() => initCa({ now: T0, leafTtlMs: 0 }), CertError);
  const e = expiries(s);
  t.equal(e.issuerNotAfterMs, s.issuer.notAfterMs);
  t.same(e.anchorNotAfterMs, [s.anchor.notAfterMs]);
});

t.test('issuer rotation: bundle unchanged, old and new leaves both verify', async (t) => {
  const s0 = initCa({ now: T0, leafTtlMs: TTL });
  const old = workload(s0, X, { now: T0 });
  const s1 = rotateIssuer(s0, { now: T0 + HOUR });
  t.equal(phaseOf(s1), 'steady');
  t.same(trustBundle(s1), trustBundle(s0), 'bundle unchanged');
  t.not(s1.issuer.serialHex, s0.issuer.serialHex);
  t.equal(s1.previousIssuerPem, s0.issuer.certPem);
  const fresh = workload(s1, X, { now: T0 + HOUR });
  t.ok(verifies(s1, old, T0 + HOUR), 'old leaf (old issuer) verifies');
  t.ok(verifies(s1, fresh, T0 + HOUR), 'new leaf (new issuer) verifies');
  t.not(fresh.chainPems[0], old.chainPems[0], 'each leaf travels with its own issuer');
});

t.test('anchor rotation in order: add → use → remove, leaves verify at each step', async (t) => {
  const s0 = initCa({ now: T0, leafTtlMs: TTL });
  const leafA = workload(s0, X, { now: T0 + HOUR });

  const s1 = addAnchor(s0, { now: T0 + HOUR });
  t.equal(phaseOf(s1), 'anchor-added');
  t.same(trustBundle(s1), [s0.anchor.certPem, s1.nextAnchor?.certPem], 'new anchor joins the bundle');
  t.equal(s1.issuer, s0.issuer, 'not used yet: same issuer');
  t.ok(verifies(s1, leafA, T0 + HOUR));
  t.ok(verifies(s1, workload(s1, X, { now: T0 + HOUR }), T0 + HOUR), 'leaves still come from the old anchor');

  const useAt = T0 + 2 * HOUR;
  const s2 = useAnchor(s1, { now: useAt });
  t.equal(phaseOf(s2), 'anchor-switched');
  t.equal(s2.anchor, s1.nextAnchor, 'the added anchor is current');
  t.ok(s2.issuer.x509.checkIssued(s2.anchor.x509) && s2.issuer.x509.verify(s2.anchor.x509.publicKey), 'the active issuer is under the new anchor');
  t.same(trustBundle(s2), [s1.nextAnchor?.certPem, s0.anchor.certPem], 'both anchors, new first');
  t.notMatch(JSON.stringify(exportSecret(s2).previousAnchorPem), /PRIVATE/, 'the old anchor is kept as a certificate only');
  const leafB = workload(s2, X, { now: useAt });
  t.ok(verifies(s2, leafA, useAt), 'old-anchor leaf verifies');
  t.ok(verifies(s2, leafB, useAt), 'new-anchor leaf verifies');
  t.notOk(verifies(s0, leafB, useAt), 'a workload that never got the add-anchor bundle could not verify it (why add comes first)');

  t.equal(removableAtMs(s2), useAt + TTL);
  const early = refusal(() => removeAnchor(s2, { now: useAt + TTL - 1 }));
  t.equal(early?.code, 'too-early');
  t.match(early?.message, /remove-anchor: leaves signed under the old anchor may be valid until .*wait 1 more minute/);

  const s3 = removeAnchor(s2, { now: useAt + TTL });
  t.equal(phaseOf(s3), 'steady');
  t.same(trustBundle(s3), [s2.anchor.certPem]);
  t.equal(s3.previousIssuerPem, undefined, 'the previous issuer hung off the removed anchor and goes with it');
  t.ok(verifies(s3, leafB, useAt + TTL - 1));
  t.notOk(verifies(s3, leafA, T0 + HOUR), 'an old-anchor leaf is no longer trusted (by then it has expired anyway)');
  t.ok(leafA.notAfterMs <= useAt + TTL, 'every old-anchor leaf expired before removal was allowed');

  // And again, with issuer rotations sprinkled into every phase.
  const r1 = rotateIssuer(addAnchor(rotateIssuer(s3, { now: useAt + TTL + HOUR }), { now: useAt + TTL + 2 * HOUR }), { now: useAt + TTL + 3 * HOUR });
  t.equal(phaseOf(r1), 'anchor-added');
  t.ok(r1.issuer.x509.checkIssued(r1.anchor.x509), 'issuer rotation during anchor-added stays under the current anchor');
  const r2 = rotateIssuer(useAnchor(r1, { now: useAt + TTL + 4 * HOUR }), { now: useAt + TTL + 5 * HOUR });
  t.equal(phaseOf(r2), 'anchor-switched');
  t.ok(r2.issuer.x509.checkIssued(r2.anchor.x509), 'issuer rotation during anchor-switched uses the new anchor');
  const r3 = removeAnchor(r2, { now: useAt + TTL + 4 * HOUR + TTL });
  t.equal(phaseOf(r3), 'steady');
  t.equal(r3.previousIssuerPem, r2.previousIssuerPem, 'a previous issuer under the surviving anchor is kept');
});

t.test('every out-of-order step is refused with its message', async (t) => {
  const steady = initCa({ now: T0, leafTtlMs: TTL });
  const added = addAnchor(steady, { now: T0 });
  const switched = useAnchor(added, { now: T0 });
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['use-anchor when steady', () => useAnchor(steady, { now: T0 }), /^use-anchor: no new anchor in the bundle; run add-anchor first/],
    ['remove-anchor when steady', () => removeAnchor(steady, { now: T0 + DAY_MS }), /^remove-anchor: there is no previous anchor to remove/],
    ['add-anchor twice', () => addAnchor(added, { now: T0 }), /^add-anchor: a new anchor .* is already in the bundle; push the bundle, then run use-anchor/],
    ['remove-anchor before use-anchor', () => removeAnchor(added, { now: T0 + DAY_MS }), /^remove-anchor: the new anchor is not in use yet; run use-anchor first/],
    ['use-anchor twice', () => useAnchor(switched, { now: T0 }), /^use-anchor: the new anchor is already in use; the next step is remove-anchor/],
    ['add-anchor before remove-anchor', () => addAnchor(switched, { now: T0 + DAY_MS }), /^add-anchor: the previous anchor is still in the bundle; run remove-anchor first \(allowed from /],
  ];
  for (const [what, fn, message] of cases) {
    const r = refusal(fn);
    t.equal(r?.code, 'out-of-order', what);
    t.match(r?.message, message, what);
  }
  t.equal(refusal(() => removeAnchor(switched, { now: T0 + TTL - 1 }))?.code, 'too-early');
  t.equal(phaseOf(removeAnchor(switched, { now: T0 + TTL })), 'steady');
  // Refusals leave the state untouched (values are frozen; steps return new states).
  t.equal(phaseOf(switched), 'anchor-switched');

  // A hand-assembled state whose active issuer still hangs off the old anchor is refused too.
  const inconsistent: CaState = { ...switched, issuer: steady.issuer };
  t.match(refusal(() => removeAnchor(inconsistent, { now: T0 + DAY_MS }))?.message, /active issuer .* is signed by the anchor being removed/);
});

t.test('issueLeaf: caps TTL at the CA leaf TTL, returns chain and bundle', async (t) => {
  const s = addAnchor(initCa({ now: T0, leafTtlMs: TTL }), { now: T0 });
  const csrPem = makeCsr({ privateKey: generateKeyPair().privateKey });
  const leaf = issueLeaf(s, { csrPem, identity: X, now: T0 });
  t.equal(leaf.notAfterMs, T0 + TTL);
  t.same(leaf.chainPems, [s.issuer.certPem]);
  t.same(leaf.bundlePems, trustBundle(s));
  t.equal(new X509Certificate(leaf.certPem).subjectAltName, `URI:${X.uri}`);
  t.equal(issueLeaf(s, { csrPem, identity: X, now: T0, ttlMs: HOUR }).notAfterMs, T0 + HOUR);
  t.throws(() => issueLeaf(s, { csrPem, identity: X, now: T0, ttlMs: TTL + 1 }), { code: 'bad-options' });
  t.throws(() => issueLeaf(s, { csrPem: 'junk', identity: X, now: T0 }), { code: 'bad-csr' });
});

t.test('persistence: JSON and inspect redact keys; exportSecret/importSecret round-trip every phase', async (t) => {
  const steady = initCa({ now: T0, leafTtlMs: TTL });
  const rotated = rotateIssuer(steady, { now: T0 + HOUR });
  const added = addAnchor(rotated, { now: T0 + HOUR });
  const switched = useAnchor(added, { now: T0 + 2 * HOUR });
  for (const s of [steady, rotated, added, switched]) {
    t.notMatch(JSON.stringify(s), /PRIVATE KEY/, `JSON of ${phaseOf(s)} state has no key`);
    t.notMatch(inspect(s, { depth: 20 }), /PRIVATE KEY/, `inspect of ${phaseOf(s)} state has no key`);
    const stored = JSON.stringify(exportSecret(s));
    t.match(stored, /PRIVATE KEY/, 'exportSecret carries the keys');
    const back = importSecret(JSON.parse(stored));
    t.equal(phaseOf(back), phaseOf(s));
    t.same(trustBundle(back), trustBundle(s));
    t.equal(back.issuer.serialHex, s.issuer.serialHex);
    t.equal(back.anchorSwitchedAtMs, s.anchorSwitchedAtMs);
    t.equal(back.previousIssuerPem, s.previousIssuerPem);
    const w = workload(back, X, { now: T0 + 2 * HOUR });
    t.ok(verifies(s, w, T0 + 2 * HOUR), 'a leaf from the imported state verifies against the original bundle');
  }
  // The imported state keeps working through the next steps.
  const back = importSecret(JSON.parse(JSON.stringify(exportSecret(switched))));
  t.equal(phaseOf(removeAnchor(back, { now: T0 + 2 * HOUR + TTL })), 'steady');
  t.equal(refusal(() => removeAnchor(back, { now: T0 + 2 * HOUR }))?.code, 'too-early', 'the wait survives a restart');
});

t.test('importSecret refuses states that do not hold together', async (t) => {
  const s = initCa({ now: T0, leafTtlMs: TTL });
  const other = initCa({ now: T0, leafTtlMs: TTL });
  const good = exportSecret(useAnchor(addAnchor(s, { now: T0 }), { now: T0 }));
  const bad = (patch: Record<string, unknown>, why: RegExp) => {
    const r = refusal(() => importSecret({ ...good, ...patch }));
    t.equal(r?.code, 'bad-state');
    t.match(r?.message, why);
  };
  bad({ version: 2 }, /unknown version/);
  bad({ leafTtlMs: -1 }, /leafTtlMs/);
  bad({ trustDomain: undefined }, /trustDomain/);
  bad({ issuer: { certPem: good.issuer.certPem, keyPem: other.issuer.exportSecret().keyPem } }, /issuer: private key does not match/);
  bad({ issuer: other.issuer.exportSecret() }, /issuer is not signed by anchor/);
  bad({ anchor: good.issuer }, /anchor is not an anchor/);
  bad({ issuer: { certPem: good.issuer.certPem } }, /issuer needs certPem and keyPem/);
  bad({ anchorSwitchedAtMs: undefined }, /go together/);
  bad({ previousAnchorPem: 'junk' }, /previousAnchorPem/);
  bad({ nextAnchor: other.anchor.exportSecret() }, /cannot both be present/);
  bad({ trustDomain: 'other.example' }, /trust domain cluster.local, not other.example/);
  t.equal(refusal(() => importSecret(null))?.code, 'bad-state');
  t.equal(refusal(() => importSecret('x'))?.code, 'bad-state');
});

t.test('driven by an injected wall clock, as the CLI will', async (t) => {
  const clock = new ManualWallClock(T0);
  let s = initCa({ now: clock.nowMs(), leafTtlMs: TTL });
  s = addAnchor(s, { now: clock.nowMs() });
  clock.advance(10 * 60 * 1000); // the bundle propagates
  s = useAnchor(s, { now: clock.nowMs() });
  clock.advance(TTL - 1);
  t.equal(refusal(() => removeAnchor(s, { now: clock.nowMs() }))?.code, 'too-early');
  clock.advance(1);
  t.equal(phaseOf(removeAnchor(s, { now: clock.nowMs() })), 'steady');
  clock.set(T0);
  t.equal(clock.nowMs(), T0);
  t.ok(Math.abs(systemWallClock.nowMs() - Date.now()) < 1000, 'the production clock is the system wall clock');
});
