// The test control plane itself (test/fixtures/kube.ts): a real kube-apiserver answers, the
// client and the machine's kubectl reach it, and ServiceAccount tokens minted through the
// TokenRequest API are authenticated by TokenReview (what the mesh CA will rely on).

import { createSign, generateKeyPairSync, randomUUID } from 'node:crypto';
import t from 'tap';
import { AuthenticationV1Api, CoreV1Api, VersionApi } from '@kubernetes/client-node';
import { KUBE_VERSION, kubeForFile } from '../fixtures/kube.ts';

const k = kubeForFile(t);

async function reviewToken(token: string): Promise<{ authenticated: boolean; username?: string; groups?: string[]; error?: string }> {
  const authn = k().kc.makeApiClient(AuthenticationV1Api);
  const review = await authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } });
  return {
    authenticated: review.status?.authenticated === true,
    username: review.status?.user?.username,
    groups: review.status?.user?.groups,
    error: review.status?.error,
  };
}

async function mintToken(namespace: string, name: string): Promise<string> {
  const core = k().kc.makeApiClient(CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences: [], expirationSeconds: 600 } },
  });
  const token = tr.status?.token;
  if (!token) throw new Error('TokenRequest returned no token');
  return token;
}

t.test('/version reports the built Kubernetes version', async (tt) => {
  const v = await k().kc.makeApiClient(VersionApi).getCode();
  tt.equal(v.gitVersion, KUBE_VERSION);
  tt.equal(v.major, '1');
  tt.equal(v.minor, KUBE_VERSION.split('.')[1]);
});

t.test('a namespace can be created and listed through the client', async (tt) => {
  const ns = await k().newNamespace('apiserver');
  tt.match(ns, /^apiserver-[a-z0-9]+$/);
  const core = k().kc.makeApiClient(CoreV1Api);
  const list = await core.listNamespace();
  const names = list.items.map((n) => n.metadata?.name);
  tt.ok(names.includes(ns), `${ns} is listed`);
  tt.ok(names.includes('default'), 'the default namespace exists');
  const got = await core.readNamespace({ name: ns });
  tt.equal(got.status?.phase, 'Active');
});

t.test('the real kubectl works against it', async (tt) => {
  const ns = await k().newNamespace('kubectl');
  const got = await k().kubectl(['get', 'ns', ns, '-o', 'json']);
  tt.equal(got.code, 0, got.stderr);
  const obj = JSON.parse(got.stdout) as { kind: string; metadata: { name: string } };
  tt.equal(obj.kind, 'Namespace');
  tt.equal(obj.metadata.name, ns);

  // stdin reaches kubectl: apply a ConfigMap from YAML, read it back.
  const applied = await k().kubectl(['apply', '-n', ns, '-f', '-'], {
    input: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  greeting: hi\n',
  });
  tt.equal(applied.code, 0, applied.stderr);
  tt.match(applied.stdout, /configmap\/hello created/);
  const cm = await k().kubectl(['get', 'configmap', 'hello', '-n', ns, '-o', 'jsonpath={.data.greeting}']);
  tt.equal(cm.stdout, 'hi');

  const missing = await k().kubectl(['get', 'ns', `${ns}-does-not-exist`]);
  tt.not(missing.code, 0);
  tt.match(missing.stderr, /NotFound|not found/);
});

t.test('a TokenRequest token passes TokenReview as its ServiceAccount', async (tt) => {
  const ns = await k().newNamespace('tokens');
  const core = k().kc.makeApiClient(CoreV1Api);
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'workload' } } });

  const token = await mintToken(ns, 'workload');
  tt.equal(token.split('.').length, 3, 'a JWT');
  const review = await reviewToken(token);
  tt.equal(review.authenticated, true, review.error ?? '');
  tt.equal(review.username, `system:serviceaccount:${ns}:workload`);
  tt.ok(review.groups?.includes('system:serviceaccounts'));
  tt.ok(review.groups?.includes(`system:serviceaccounts:${ns}`));
});

t.test('tokens for made-up or deleted accounts are not authenticated', async (tt) => {
  const ns = await k().newNamespace('tokens');

  // No ServiceAccount "ghost": the API server refuses to mint a token for it...
  const core = k().kc.makeApiClient(CoreV1Api);
  await tt.rejects(mintToken(ns, 'ghost'), /404|not found/i);

  // ...and a JWT claiming to be it (same issuer and audience, a key the server does not know)
  // does not authenticate.
  const now = Math.floor(Date.now() / 1000);
  const forged = forgeJwt({
    iss: k().server,
    aud: [k().server],
    sub: `system:serviceaccount:${ns}:ghost`,
    iat: now,
    nbf: now,
    exp: now + 600,
    'kubernetes.io': { namespace: ns, serviceaccount: { name: 'ghost', uid: randomUUID() } },
  });
  const forgedReview = await reviewToken(forged);
  tt.equal(forgedReview.authenticated, false);
  tt.notOk(forgedReview.username);

  tt.equal((await reviewToken('not-a-token')).authenticated, false, 'garbage is not authenticated');

  // A real token stops authenticating once its ServiceAccount is gone (service-account lookup
  // is on by default). Note kube-apiserver caches *successful* token authentications for 10 s
  // (hard-coded TokenSuccessCacheTTL, no flag), so a token reviewed just before the deletion
  // keeps passing TokenReview for up to ~10 s; one never reviewed is rejected at once.
  await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'shortlived' } } });
  const reviewed = await mintToken(ns, 'shortlived');
  const unreviewed = await mintToken(ns, 'shortlived');
  tt.equal((await reviewToken(reviewed)).authenticated, true, 'valid while the account exists');
  await core.deleteNamespacedServiceAccount({ name: 'shortlived', namespace: ns });
  const deletedAt = Date.now();
  tt.equal(
    await eventually(async () => !(await reviewToken(unreviewed)).authenticated, 2_000),
    true,
    'an unreviewed token of the deleted account is rejected (within the informer lag)',
  );
  tt.equal(
    await eventually(async () => !(await reviewToken(reviewed)).authenticated, 15_000),
    true,
    'a reviewed token of the deleted account is rejected once the 10 s success cache expires',
  );
  tt.comment(`reviewed token rejected ${Date.now() - deletedAt} ms after the ServiceAccount was deleted`);
});

async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

function forgeJwt(claims: Record<string, unknown>): string {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const input = `${enc({ alg: 'RS256', typ: 'JWT', kid: 'forged' })}.${enc(claims)}`;
  const sig = createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url');
  return `${input}.${sig}`;
}
