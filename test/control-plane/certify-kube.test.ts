// Certify's Kubernetes path against a real kube-apiserver (one per file): `meshlet install` puts the
// CA in a Secret, the real control-plane process reads it and reviews service-account tokens
// (TokenRequest, audience meshlet) with TokenReview; every bad proof or request is refused, nothing signed.

/*
 * What cannot be produced for real here, and what stands in for it:
 * - An expired token: TokenRequest's minimum lifetime is 10 minutes. A JWT with exp in the past
 *   signed by a key the API server does not know stands in (401 token-invalid); the API server
 *   checks the signature first, so this proves "a token the API server does not accept", which
 *   is the same branch an expired real token takes (TokenReview authenticated: false).
 * - A deleted account: kube-apiserver caches successful TokenReviews for 10 s, so only tokens
 *   never reviewed before the deletion are used (and the informer is given ~1.5 s to see it).
 * - 403 not-service-account needs a token that TokenReview authenticates for audience meshlet
 *   but that is not a service account's; no such authenticator is configured on a normal API
 *   server (static and bootstrap tokens only pass for the API's own audiences), so that branch is
 *   covered with a stub TokenReviewer in test/unit/control-plane/certify.test.ts.
 * Decision under test: a CSR asking for someone else's SPIFFE ID (subject CN and URI SAN) is not
 * refused; its names are ignored and the leaf names only the token's identity.
 */

import { X509Certificate, createSign, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import https from 'node:https';
import t from 'tap';
import { CoreV1Api } from '@kubernetes/client-node';
import { initCa, makeCsr, verifyChain } from '../../control-plane/ca/index.ts';
import { SecretCaStore } from '../../control-plane/store/secret-store.ts';
import { startKube, type Kube } from '../fixtures/kube.ts';
import {
  CONTROL_PLANE_ID, csrFor, meshlet, metric, postCertify, sansOf, startControlPlaneProcess, stats, type CpProcess,
} from './fixtures/control-plane.ts';

const ISSUED = 'meshlet_ca_certificates_issued_total';
const REFUSED = 'meshlet_ca_certificates_refused_total';
const SECRET = 'meshlet-system/meshlet-ca';

let kube: Kube | undefined;
let cp: CpProcess | undefined;
let core: CoreV1Api;
let anchors: string[] = [];
const k = (): Kube => {
  if (!kube) throw new Error('the API server did not start');
  return kube;
};
const c = (): CpProcess => {
  if (!cp) throw new Error('the control plane did not start');
  return cp;
};

async function readBundle(): Promise<string[]> {
  const s = await core.readNamespacedSecret({ name: 'meshlet-ca', namespace: 'meshlet-system' });
  const pem = Buffer.from(s.data?.['ca.crt'] ?? '', 'base64').toString();
  return pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----\n/g) ?? [];
}

t.before(async () => {
  kube = await startKube();
  core = kube.kc.makeApiClient(CoreV1Api);
  const installed = await meshlet(['install', '--kubeconfig', kube.kubeconfigPath]);
  if (installed.code !== 0) throw new Error(`meshlet install: ${installed.stderr}`);
  anchors = await readBundle();
  cp = await startControlPlaneProcess(['--ca-secret', SECRET, '--kubeconfig', kube.kubeconfigPath, '--reload-interval', '200ms']);
});
t.teardown(async () => {
  await cp?.stop();
  await kube?.stop();
});

async function serviceAccount(ns: string, name: string): Promise<void> {
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name } } });
}

async function tokenFor(ns: string, sa: string, opts: { audiences?: string[]; boundSecret?: { name: string; uid: string } } = {}): Promise<string> {
  const tr = await core.createNamespacedServiceAccountToken({
    name: sa, namespace: ns,
    body: {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest',
      spec: {
        audiences: opts.audiences ?? ['meshlet'], expirationSeconds: 600,
        ...(opts.boundSecret ? { boundObjectRef: { apiVersion: 'v1', kind: 'Secret', ...opts.boundSecret } } : {}),
      },
    },
  });
  if (!tr.status?.token) throw new Error('TokenRequest returned no token');
  return tr.status.token;
}

t.test('meshlet install made the CA Secret; a second install refuses; the control plane is ready', async (t) => {
  t.equal(anchors.length, 1, 'one trust anchor');
  const again = await meshlet(['install', '--kubeconfig', k().kubeconfigPath]);
  t.equal(again.code, 1);
  t.match(again.stderr, /Secret meshlet-system\/meshlet-ca already exists; refusing to overwrite/);
  const st = await meshlet(['identity', 'status', '--ca-secret', SECRET, '--kubeconfig', k().kubeconfigPath, '-o', 'json']);
  t.equal(st.code, 0, st.stderr);
  t.equal((JSON.parse(st.stdout) as { phase: string }).phase, 'steady');
  const ready = await fetch(`${c().adminUrl}/ready`);
  t.equal(ready.status, 200);
});

t.test("a ServiceAccount's token gets a leaf for exactly that identity", async (t) => {
  const ns = await k().newNamespace('certify');
  await serviceAccount(ns, 'workload');
  const token = await tokenFor(ns, 'workload');
  const want = `spiffe://cluster.local/ns/${ns}/sa/workload`;
  const before = await metric(c().adminUrl, ISSUED, { proof: 'kubernetes' });

  const { csr } = csrFor();
  const r = await postCertify(c().certifyUrl, anchors, { csr, token, kind: 'kubernetes' });
  t.equal(r.status, 200, String(r.json.message ?? 'issued'));
  t.equal(r.serverId, CONTROL_PLANE_ID, "the server presents the control plane's identity, chained to the anchor");
  const leaf = new X509Certificate(r.json.certificate as string);
  t.equal(leaf.subjectAltName, `URI:${want}`, 'the URI SAN is the service account, and it is the only SAN');
  t.equal(leaf.subject ?? '', '', 'empty subject');
  const issuer = new X509Certificate((r.json.chain as string[])[0] ?? '');
  t.ok(leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey), 'signed by the returned issuer');
  t.equal(verifyChain(leaf, r.json.chain as string[], r.json.trustBundle as string[], Date.now()).uri, want, 'verifies against the returned bundle');
  t.same(r.json.trustBundle, anchors, 'the bundle is the installed anchor');

  // The same token in the Authorization header, and a CSR asking for someone else.
  const greedy = csrFor({ commonName: 'admin', uriSans: ['spiffe://cluster.local/ns/kube-system/sa/admin', `spiffe://cluster.local/ns/${ns}/sa/other`] });
  const g = await postCertify(c().certifyUrl, anchors, { csr: greedy.csr, kind: 'kubernetes' }, { headers: { authorization: `Bearer ${token}` } });
  t.equal(g.status, 200, 'a CSR asking for another SPIFFE ID is not refused...');
  t.same(sansOf(g.json.certificate as string), [`URI:${want}`], '...but gets only the token identity: requested SANs and CN are dropped');
  t.equal(g.json.identity, want);
  t.equal(await metric(c().adminUrl, ISSUED, { proof: 'kubernetes' }), before + 2);
});

t.test('refused with 401/400/413/404/405, each counted, nothing signed', async (t) => {
  const ns = await k().newNamespace('refuse');
  await Promise.all(['workload', 'gone', 'bound'].map((sa) => serviceAccount(ns, sa)));
  const good = await tokenFor(ns, 'workload');
  const defaultAudience = await tokenFor(ns, 'workload', { audiences: [] });
  const vault = await tokenFor(ns, 'workload', { audiences: ['vault'] });
  // Never reviewed before their account / bound object is deleted (see the note at the top).
  const ofDeletedAccount = await tokenFor(ns, 'gone');
  const holder = await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'pod-stand-in' }, stringData: { x: 'y' } } });
  const ofDeletedObject = await tokenFor(ns, 'bound', { boundSecret: { name: 'pod-stand-in', uid: holder.metadata?.uid ?? '' } });
  await core.deleteNamespacedServiceAccount({ name: 'gone', namespace: ns });
  await core.deleteNamespacedSecret({ name: 'pod-stand-in', namespace: ns });
  const now = Math.floor(Date.now() / 1000);
  const expiredForged = forgeJwt({
    iss: k().server, aud: ['meshlet'], sub: `system:serviceaccount:${ns}:workload`, iat: now - 1200, nbf: now - 1200, exp: now - 600,
    'kubernetes.io': { namespace: ns, serviceaccount: { name: 'workload', uid: randomUUID() } },
  });
  await new Promise((r) => setTimeout(r, 1500)); // let the API server's informers see the deletions

  const before = await metric(c().adminUrl, ISSUED);
  const { csr } = csrFor();
  const rsaCsr = makeCsr({ privateKey: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey });
  const cases: Array<[string, Record<string, unknown> | string, number, string, { headers?: Record<string, string>; method?: string; path?: string }?]> = [
    ['a token for the API server audience (a plain mounted token)', { csr, token: defaultAudience, kind: 'kubernetes' }, 401, 'token-invalid'],
    ['a token for another audience', { csr, token: vault, kind: 'kubernetes' }, 401, 'token-invalid'],
    ['an expired token signed by an unknown key', { csr, token: expiredForged, kind: 'kubernetes' }, 401, 'token-invalid'],
    ['a token of a deleted service account', { csr, token: ofDeletedAccount, kind: 'kubernetes' }, 401, 'token-invalid'],
    ['a token bound to a deleted object', { csr, token: ofDeletedObject, kind: 'kubernetes' }, 401, 'token-invalid'],
    ['garbage instead of a token', { csr, token: 'garbage', kind: 'kubernetes' }, 401, 'token-invalid'],
    ['no token', { csr, kind: 'kubernetes' }, 401, 'no-token'],
    ['a bootstrap token where no bootstrap key exists', { csr, token: 'mbt1.e30.AAAA', kind: 'bootstrap' }, 401, 'proof-kind-disabled'],
    ['a garbage CSR', { csr: '-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n', token: good, kind: 'kubernetes' }, 400, 'bad-csr'],
    ['a CSR with a 1024-bit RSA key', { csr: rsaCsr, token: good, kind: 'kubernetes' }, 400, 'unsupported-key'],
    ['a body that is not JSON', 'csr=x&token=y', 400, 'bad-body'],
    ['no kind', { csr, token: good }, 400, 'bad-body'],
    ['form encoding', { csr, token: good, kind: 'kubernetes' }, 415, 'bad-content-type', { headers: { 'content-type': 'application/x-www-form-urlencoded' } }],
    ['an oversized body', { csr: csr + ' '.repeat(100 * 1024), token: good, kind: 'kubernetes' }, 413, 'body-too-large'],
    ['GET', '', 405, 'method-not-allowed', { method: 'GET' }],
    ['another path', { csr, token: good, kind: 'kubernetes' }, 404, 'not-found', { path: '/v1/sign' }],
  ];
  for (const [what, body, status, reason, opts] of cases) {
    const refusedBefore = await metric(c().adminUrl, REFUSED, { reason });
    const r = await postCertify(c().certifyUrl, anchors, body, opts);
    t.equal(r.status, status, `${what}: ${status} ${String(r.json.message ?? '').slice(0, 120)}`);
    t.equal(r.json.error, reason, `${what}: ${reason}`);
    t.notOk(r.json.certificate, `${what}: no certificate`);
    t.equal(await metric(c().adminUrl, REFUSED, { reason }), refusedBefore + 1, `${what}: counted`);
  }
  t.equal(await metric(c().adminUrl, ISSUED), before, 'nothing was signed');
});

t.test('the CA Secret: optimistic concurrency, and a rotation through it reaches the running control plane', async (t) => {
  const ns = await k().newNamespace('store');
  const store = new SecretCaStore(core, { namespace: ns, name: 'ca' });
  await t.rejects(store.load(), { code: 'not-found' });
  const created = await store.create({ state: initCa({ now: Date.now() }) });
  await t.rejects(store.create({ state: initCa({ now: Date.now() }) }), { code: 'exists' });
  const a = await store.load();
  t.equal(a.version, created.version);
  const replaced = await store.replace({ ...a.doc, bootstrapKey: randomBytes(32) }, a.version);
  t.not(replaced.version, a.version, 'a replace makes a new resourceVersion');
  t.ok((await store.load()).doc.bootstrapKey, 'the change is stored');
  await t.rejects(store.replace({ ...a.doc, bootstrapKey: randomBytes(32) }, a.version), { code: 'conflict' }, 'a write based on a stale version is refused');

  const cluster = await k().newNamespace('rotate');
  await serviceAccount(cluster, 'workload');
  const token = await tokenFor(cluster, 'workload');
  const { csr } = csrFor();
  const first = await postCertify(c().certifyUrl, anchors, { csr, token, kind: 'kubernetes' });
  t.equal(first.status, 200);
  const rotated = await meshlet(['identity', 'rotate-issuer', '--ca-secret', SECRET, '--kubeconfig', k().kubeconfigPath]);
  t.equal(rotated.code, 0, rotated.stderr);
  let second = first;
  for (const deadline = Date.now() + 5000; Date.now() < deadline && (second.json.chain as string[])[0] === (first.json.chain as string[])[0];) {
    await new Promise((r) => setTimeout(r, 100));
    second = await postCertify(c().certifyUrl, anchors, { csr, token, kind: 'kubernetes' });
  }
  t.not((second.json.chain as string[])[0], (first.json.chain as string[])[0], 'new leaves come from the new issuer');
  t.ok(verifyChain(first.json.certificate as string, first.json.chain as string[], second.json.trustBundle as string[], Date.now()), 'old leaves still verify');
});

t.test('latency: 100 sequential kubernetes certify requests (TokenReview each time) on one connection', async (t) => {
  const ns = await k().newNamespace('latency');
  await serviceAccount(ns, 'workload');
  const token = await tokenFor(ns, 'workload');
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const { csr } = csrFor();
  const samples: number[] = [];
  for (let i = 0; i < 110; i++) {
    const t0 = performance.now();
    const r = await postCertify(c().certifyUrl, anchors, { csr, token, kind: 'kubernetes' }, { agent });
    if (i >= 10) samples.push(performance.now() - t0);
    if (r.status !== 200) t.fail(`request ${i}: ${r.status}`);
  }
  agent.destroy();
  const s = stats(samples);
  t.comment(`kubernetes certify round trip: p50 ${s.p50.toFixed(2)} ms, p95 ${s.p95.toFixed(2)} ms, max ${s.max.toFixed(2)} ms (n=100)`);
  t.ok(s.p50 < 100);
});

t.test('SIGTERM stops it cleanly', async (t) => {
  t.equal(await c().stop(), 0);
});

const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

function forgeJwt(claims: Record<string, unknown>): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const input = `${enc({ alg: 'RS256', typ: 'JWT', kid: 'forged' })}.${enc(claims)}`;
  return `${input}.${createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url')}`;
}
