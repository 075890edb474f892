// The proof the certificates really work: real TLS 1.3 mutual handshakes on loopback (OpenSSL via
// node:tls) with our leaves, including old/new leaves across issuer and anchor rotation.
// Real wall-clock time: OpenSSL checks validity against the system clock, so leaves are made "now".
import t, { type Test } from 'tap';
import { addAnchor, initCa, removeAnchor, rotateIssuer, trustBundle, useAnchor, type CaState } from '../../../control-plane/ca/bundle.ts';
import { id, workload, type Workload } from './fixtures/pki.ts';
import { handshake, type TlsCreds } from './fixtures/tls.ts';

const HOUR = 60 * 60 * 1000;
const SERVER = id('shop', 'api');
const CLIENT = id('shop', 'web');

const creds = (w: Workload, trusts: CaState | string[]): TlsCreds => ({
  keyPem: w.keyPem, certChainPem: w.certChainPem, bundlePems: Array.isArray(trusts) ? trusts : trustBundle(trusts),
});

t.test('same CA: TLS 1.3 mutual handshake, each side sees the other SPIFFE ID', async (t) => {
  const ca = initCa({ now: Date.now() });
  const server = workload(ca, SERVER);
  const client = workload(ca, CLIENT);
  const r = await handshake(creds(server, ca), creds(client, ca));
  t.ok(r.ok, `handshake ok (${r.clientError ?? ''} ${r.serverError ?? ''})`);
  t.equal(r.protocol, 'TLSv1.3');
  t.equal(r.serverSawPeer, `URI:${CLIENT.uri}`, 'server sees the client identity');
  t.equal(r.clientSawPeer, `URI:${SERVER.uri}`, 'client sees the server identity');
});

t.test('a client leaf from another CA is refused at the handshake', async (t) => {
  const ca = initCa({ now: Date.now() });
  const other = initCa({ now: Date.now() });
  const r = await handshake(creds(workload(ca, SERVER), ca), creds(workload(other, CLIENT), ca));
  t.notOk(r.ok);
  t.match(r.serverError, /UNABLE_TO_GET_ISSUER_CERT/, `server refused: ${r.serverError}`);
  t.equal(r.serverSawPeer, undefined, 'the server never accepted the connection');
});

t.test('a server leaf from another CA is refused by the client', async (t) => {
  const ca = initCa({ now: Date.now() });
  const other = initCa({ now: Date.now() });
  const r = await handshake(creds(workload(other, SERVER), ca), creds(workload(ca, CLIENT), ca));
  t.notOk(r.ok);
  t.match(r.clientError, /certificate/i, `client refused: ${r.clientError}`);
});

t.test('an expired client leaf is refused at the handshake', async (t) => {
  const now = Date.now();
  const ca = initCa({ now: now - 3 * 24 * HOUR });
  const expired = workload(ca, CLIENT, { now: now - 2 * 24 * HOUR, ttlMs: HOUR });
  t.ok(expired.notAfterMs < now);
  const r = await handshake(creds(workload(ca, SERVER, { now }), ca), creds(expired, ca));
  t.notOk(r.ok);
  t.match(r.serverError, /CERT_HAS_EXPIRED/, `server refused: ${r.serverError}`);
});

t.test('a client without a certificate is refused (requestCert + rejectUnauthorized)', async (t) => {
  const ca = initCa({ now: Date.now() });
  const server = workload(ca, SERVER);
  const r = await handshake(creds(server, ca), { keyPem: '', certChainPem: '', bundlePems: trustBundle(ca) });
  t.notOk(r.ok);
  t.match(r.serverError, /peer did not return a certificate/, `server refused: ${r.serverError}`);
});

t.test('a client whose chain lacks the issuer is refused (leaves must be sent with their chain)', async (t) => {
  const ca = initCa({ now: Date.now() });
  const client = workload(ca, CLIENT);
  const r = await handshake(creds(workload(ca, SERVER), ca), { ...creds(client, ca), certChainPem: client.leafPem });
  t.notOk(r.ok);
  t.match(r.serverError, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/, `server refused: ${r.serverError}`);
});

// For the rotation cases: OLD leaf on one side, NEW leaf on the other, each trusting the bundle
// of the current state. Both directions.
async function crossHandshakes(t: Test, old: Workload, fresh: Workload, bundle: string[], label: string): Promise<void> {
  const a = await handshake(creds(fresh, bundle), creds(old, bundle));
  t.ok(a.ok, `${label}: old client → new server (${a.clientError ?? ''}${a.serverError ?? ''})`);
  t.equal(a.serverSawPeer, `URI:${old.identity.uri}`);
  t.equal(a.clientSawPeer, `URI:${fresh.identity.uri}`);
  const b = await handshake(creds(old, bundle), creds(fresh, bundle));
  t.ok(b.ok, `${label}: new client → old server (${b.clientError ?? ''}${b.serverError ?? ''})`);
  t.equal(b.serverSawPeer, `URI:${fresh.identity.uri}`);
  t.equal(b.clientSawPeer, `URI:${old.identity.uri}`);
}

t.test('issuer rotation: old-issuer and new-issuer leaves handshake both ways', async (t) => {
  const now = Date.now();
  const s0 = initCa({ now });
  const old = workload(s0, CLIENT, { now });
  const s1 = rotateIssuer(s0, { now });
  const fresh = workload(s1, SERVER, { now });
  t.not(old.chainPems[0], fresh.chainPems[0], 'different issuers');
  await crossHandshakes(t, old, fresh, trustBundle(s1), 'issuer rotated');
  // A peer still holding the pre-rotation bundle is fine too: the bundle did not change.
  await crossHandshakes(t, old, fresh, trustBundle(s0), 'issuer rotated, old bundle');
});

t.test('anchor rotation: old-anchor and new-anchor leaves handshake both ways at every step', async (t) => {
  const now = Date.now();
  const s0 = initCa({ now });
  const oldLeaf = workload(s0, CLIENT, { now });

  const s1 = addAnchor(s0, { now });
  const midLeaf = workload(s1, SERVER, { now });
  await crossHandshakes(t, oldLeaf, midLeaf, trustBundle(s1), 'add-anchor');
  await crossHandshakes(t, oldLeaf, midLeaf, trustBundle(s0), 'add-anchor, a peer not yet updated');

  const s2 = useAnchor(s1, { now });
  const newLeaf = workload(s2, SERVER, { now });
  t.ok(newLeaf.chainPems[0] !== oldLeaf.chainPems[0]);
  await crossHandshakes(t, oldLeaf, newLeaf, trustBundle(s2), 'use-anchor');
  // The add-anchor bundle holds the same two anchors, so peers that got it earlier agree.
  await crossHandshakes(t, oldLeaf, newLeaf, trustBundle(s1), 'use-anchor, peers on the add-anchor bundle');

  // Why add-anchor must reach everyone first: a peer with only the old anchor refuses a new leaf.
  const stale = await handshake(creds(oldLeaf, trustBundle(s0)), creds(newLeaf, trustBundle(s2)));
  t.notOk(stale.ok, 'a server that never received the new anchor refuses a new-anchor client');

  // After remove-anchor (allowed a leaf TTL after use-anchor), new leaves work, old-anchor ones no longer do.
  const s3 = removeAnchor(s2, { now: now + s2.leafTtlMs });
  const newClient = workload(s3, CLIENT, { now });
  const after = await handshake(creds(newLeaf, s3), creds(newClient, s3));
  t.ok(after.ok, 'new ↔ new after remove-anchor');
  const gone = await handshake(creds(newLeaf, s3), creds(oldLeaf, s3));
  t.notOk(gone.ok, 'an old-anchor leaf is refused once its anchor left the bundle');
});
