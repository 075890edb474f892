// The control plane's RBAC (manifests/control-plane/rbac.yaml) on a real kube-apiserver, asked
// the way an operator would: `kubectl auth can-i --as=system:serviceaccount:meshlet-system:
// meshlet-control-plane`. It may do each thing it needs, none of a long list of broader things,
// and `can-i --list` shows exactly the expected rules beyond what every account gets. Then the
// real thing: control-plane/main.ts, with the Deployment's environment and a token of its own
// ServiceAccount, reads the CA Secret that the real `meshlet install` made and becomes ready;
// with that token it can read that Secret and no other.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { HTTPROUTE_CRD, startKube, type Kube } from '../fixtures/kube.ts';
import { freePort } from '../fixtures/mesh.ts';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const MANIFESTS = path.join(ROOT, 'manifests/');
const SYSTEM = 'meshlet-system';
const SA = 'meshlet-control-plane';
/** The one Secret it may read: what `meshlet install` creates and the Deployment names. */
const CA_SECRET = 'meshlet-ca';

let kube: Kube | undefined;
const k = (): Kube => {
  if (!kube) throw new Error('the API server did not start (see t.before)');
  return kube;
};

t.before(async () => {
  kube = await startKube();
  t.comment(`kube-apiserver ready in ${kube.startupMs} ms`);
  for (const args of [['apply', '--server-side', '-k', MANIFESTS], ['apply', '--server-side', '-f', '-']]) {
    const r = await kube.kubectl(args, { input: JSON.stringify(HTTPROUTE_CRD) });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  }
  const est = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io', 'crd/servicepolicies.meshlet.io', 'crd/httproutes.gateway.networking.k8s.io']);
  if (est.code !== 0) throw new Error(`CRDs not Established: ${est.stderr}`);
});
t.teardown(async () => {
  await kube?.stop();
});

/** Impersonate a ServiceAccount as its real token would authenticate: user plus its groups. */
const as = (sa: string, ns = SYSTEM) => [`--as=system:serviceaccount:${ns}:${sa}`, '--as-group=system:serviceaccounts', `--as-group=system:serviceaccounts:${ns}`];

async function canI(args: string[], sa = SA): Promise<boolean> {
  const r = await k().kubectl(['auth', 'can-i', ...as(sa), ...args]);
  // Exit 0 "yes", 1 "no"; anything else (or a warning that kubectl did not know the resource,
  // which makes the answer meaningless) is a broken question.
  if ((r.code !== 0 && r.code !== 1) || /doesn't have a resource type/.test(r.stderr)) throw new Error(`kubectl auth can-i ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim() === 'yes';
}

async function all<T>(items: T[], f: (item: T) => Promise<void>, width = 8): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: width }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await f(item);
  }));
}

const WATCHED = ['services', 'pods', 'endpointslices.discovery.k8s.io', 'trafficsplits.meshlet.io', 'authorizationpolicies.meshlet.io', 'servicepolicies.meshlet.io', 'httproutes.gateway.networking.k8s.io'];

t.test('the control plane may do what it needs', async (t) => {
  const ns = await k().newNamespace('rbac-yes');
  const needed: string[][] = [
    // Every namespace's services, endpoints, pods, policies, routes: cluster-wide and in one.
    ...WATCHED.flatMap((r) => ['get', 'list', 'watch'].flatMap((verb) => [[verb, r, '--all-namespaces'], [verb, r, '-n', ns]])),
    ['patch', 'trafficsplits.meshlet.io', '--subresource=status', '-n', ns],
    ['patch', 'authorizationpolicies.meshlet.io', '--subresource=status', '-n', ns],
    ['patch', 'servicepolicies.meshlet.io', '--subresource=status', '-n', ns],
    ['patch', 'httproutes.gateway.networking.k8s.io', '--subresource=status', '-n', ns],
    ['create', 'tokenreviews.authentication.k8s.io'],
    ['get', `secret/${CA_SECRET}`, '-n', SYSTEM],
  ];
  const denied: string[] = [];
  await all(needed, async (q) => {
    if (!(await canI(q))) denied.push(q.join(' '));
  });
  t.same(denied.toSorted(), [], `all ${needed.length} needed permissions granted`);
});

t.test('the control plane may do nothing broader', async (t) => {
  const ns = await k().newNamespace('rbac-no');
  const broader: string[][] = [
    // Writes to what it only reads.
    ...WATCHED.flatMap((r) => ['create', 'update', 'patch', 'delete', 'deletecollection'].map((verb) => [verb, r, '-n', ns])),
    ['update', 'trafficsplits.meshlet.io', '--subresource=status', '-n', ns],
    ['update', 'authorizationpolicies.meshlet.io', '--subresource=status', '-n', ns],
    ['update', 'servicepolicies.meshlet.io', '--subresource=status', '-n', ns],
    ['update', 'httproutes.gateway.networking.k8s.io', '--subresource=status', '-n', ns],
    // Secrets: no other namespace, no other Secret (the two-Secret layout's names included), no
    // list/watch (would reveal every Secret; it only ever gets), no writes (the CLI writes, as an operator).
    ['get', `secret/${CA_SECRET}`, '-n', ns],
    ['get', `secret/${CA_SECRET}`, '-n', 'default'],
    ['get', `secret/${CA_SECRET}`, '-n', 'kube-system'],
    ['get', 'secret/meshlet-issuer', '-n', SYSTEM],
    ['get', 'secret/meshlet-trust-anchor', '-n', SYSTEM],
    ['get', 'secret/some-other-secret', '-n', SYSTEM],
    ['get', 'secrets', '-n', SYSTEM],
    ['list', 'secrets', '-n', SYSTEM],
    ['watch', 'secrets', '-n', SYSTEM],
    ['list', 'secrets', '--all-namespaces'],
    ['list', `secret/${CA_SECRET}`, '-n', SYSTEM],
    ['watch', `secret/${CA_SECRET}`, '-n', SYSTEM],
    ...['create', 'update', 'patch', 'delete'].map((verb) => [verb, `secret/${CA_SECRET}`, '-n', SYSTEM]),
    ['create', 'secrets', '-n', SYSTEM],
    // Reaching into workloads, minting identities, raising its own rights.
    ['create', 'pods', '--subresource=exec', '-n', ns],
    ['get', 'pods', '--subresource=log', '-n', ns],
    ['create', 'pods', '--subresource=eviction', '-n', ns],
    ['create', 'serviceaccounts', '--subresource=token', '-n', ns],
    ['get', 'serviceaccounts', '-n', ns],
    ['get', 'configmaps', '-n', SYSTEM],
    ['list', 'nodes'],
    ['create', 'subjectaccessreviews.authorization.k8s.io'],
    ['impersonate', 'users'],
    ['impersonate', 'serviceaccounts', '-n', ns],
    ['create', 'certificatesigningrequests.certificates.k8s.io'],
    ['patch', 'mutatingwebhookconfigurations.admissionregistration.k8s.io'],
    ['create', 'clusterrolebindings.rbac.authorization.k8s.io'],
    ['escalate', 'clusterroles.rbac.authorization.k8s.io'],
    ['bind', 'clusterroles.rbac.authorization.k8s.io'],
    ['patch', 'deployments.apps', '-n', SYSTEM],
    ['create', 'events', '-n', ns],
    ['create', 'leases.coordination.k8s.io', '-n', SYSTEM],
    ['*', '*', '--all-namespaces'],
  ];
  const granted: string[] = [];
  await all(broader, async (q) => {
    if (await canI(q)) granted.push(q.join(' '));
  });
  t.same(granted.toSorted(), [], `none of ${broader.length} broader permissions granted`);
});

// ---- the CA Secret, made by the real `meshlet install`, read with the ServiceAccount's own token --

/** Runs the real `meshlet` CLI (bin/meshlet.ts) with the test cluster's admin credentials. */
function meshlet(...args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/meshlet.ts'), ...args, '--kubeconfig', k().kubeconfigPath], { encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

let caMade: Promise<void> | undefined;
/** `meshlet install` once: meshlet-system/meshlet-ca, as docs/install.md says to make it. */
const ensureCa = (): Promise<void> =>
  (caMade ??= (async () => {
    const r = meshlet('install');
    if (r.code !== 0) throw new Error(`meshlet install exited ${r.code}: ${r.out}`);
  })());

/** A kubeconfig holding a fresh token of `sa` (what the Pod's projected token is), no admin rights. */
async function saKubeconfig(dir: string, sa: string, ns = SYSTEM): Promise<string> {
  const token = await k().kubectl(['create', 'token', sa, '-n', ns, '--duration=10m']);
  if (token.code !== 0) throw new Error(`kubectl create token ${sa}: ${token.stderr}`);
  const file = path.join(dir, `${sa}.kubeconfig`);
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: k().server, 'certificate-authority-data': Buffer.from(k().caPem).toString('base64') } }],
    users: [{ name: sa, user: { token: token.stdout.trim() } }],
    contexts: [{ name: sa, context: { cluster: 'test', user: sa } }],
    'current-context': sa,
  };
  writeFileSync(file, JSON.stringify(kubeconfig), { mode: 0o600 });
  return file;
}

/** The container's environment as the kubelet would give it: config.env (envFrom) and env (fieldRefs resolved). */
function deploymentEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(path.join(MANIFESTS, 'config.env'), 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  const dep = parse(readFileSync(path.join(MANIFESTS, 'control-plane/deployment.yaml'), 'utf8')) as {
    spec: { template: { spec: { containers: Array<{ args?: string[]; env: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }> }> } } };
  };
  const c = dep.spec.template.spec.containers[0]!;
  if (c.args?.length) throw new Error('the Deployment passes args: run them here too');
  for (const e of c.env) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (e.value === undefined && field !== 'metadata.namespace') throw new Error(`env ${e.name}: resolve ${JSON.stringify(e.valueFrom)} here`);
    env[e.name] = e.value ?? SYSTEM;
  }
  return env;
}

const readyOf = async (admin: number): Promise<{ status: number; body: { ready?: boolean; reasons?: string[] } } | undefined> => {
  try {
    const r = await fetch(`http://127.0.0.1:${admin}/ready`);
    return { status: r.status, body: (await r.json()) as { ready?: boolean; reasons?: string[] } };
  } catch {
    return undefined; // not listening yet
  }
};

t.test('the control plane, with its own token and the Deployment environment, waits for the CA Secret and is ready once meshlet install made it', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'meshlet-rbac-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = await saKubeconfig(dir, SA);
  const env = deploymentEnv();
  t.equal(env.MESHLET_CA_SECRET, `${SYSTEM}/${CA_SECRET}`, 'the Deployment names the Secret the Role allows');
  const [admin, certify] = [await freePort(), await freePort()];
  // The Deployment's environment (and no other: no KUBECONFIG, not in a cluster); only the listens
  // move to free loopback ports and the in-cluster credentials become a kubeconfig with the same token.
  const child = spawn(process.execPath, [path.join(ROOT, 'control-plane/main.ts'), '--kubeconfig', kubeconfig, '--listen', `127.0.0.1:${certify}`, '--admin-listen', `127.0.0.1:${admin}`], {
    env: { PATH: '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const until = async (want: (r: Awaited<ReturnType<typeof readyOf>>) => boolean, what: string) => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await readyOf(admin);
      if (want(r)) return r;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${what}: last /ready ${JSON.stringify(r)}; control plane output:\n${log}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };

  // Before `meshlet install`: alive, not ready, and saying why.
  const waiting = await until((r) => r !== undefined && /does not exist/.test(JSON.stringify(r.body)), 'not ready while the Secret is missing');
  t.equal(waiting?.status, 503, 'not ready while the Secret is missing');
  t.match(JSON.stringify(waiting?.body.reasons), `Secret ${SYSTEM}/${CA_SECRET} does not exist`);
  t.equal((await fetch(`http://127.0.0.1:${admin}/live`)).status, 200, 'but live (the kubelet leaves it running)');

  await ensureCa();
  const ready = await until((r) => r?.status === 200, '/ready after meshlet install');
  t.match(ready?.body, { ready: true, reasons: [] }, 'ready with the Secret meshlet install made, read with get alone');
  t.notMatch(log, /\b403\b|forbidden/i, 'never refused by the API server');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM: exits 0');
});

// Decoys look like CA material (the API server does not check contents).
const pem = (what: string): string => `-----BEGIN ${what}-----\nAA==\n-----END ${what}-----\n`;

t.test('with the CA Secret present: its own token reads meshlet-system/meshlet-ca, and no other Secret', async (t) => {
  const ns = await k().newNamespace('rbac-secrets');
  await ensureCa();
  const elsewhere = meshlet('install', '--namespace', ns);
  t.equal(elsewhere.code, 0, `a meshlet-ca in another namespace: ${elsewhere.out}`);
  const decoys = [
    // The pre-single-Secret layout's names, and a copy an operator might keep beside the real one.
    ['create', 'secret', 'generic', 'meshlet-issuer', '-n', SYSTEM, '--type=kubernetes.io/tls', `--from-literal=tls.crt=${pem('CERTIFICATE')}`, `--from-literal=tls.key=${pem('PRIVATE KEY')}`],
    ['create', 'secret', 'generic', 'meshlet-ca-backup', '-n', SYSTEM, `--from-literal=ca.json={"anchor":{"keyPem":${JSON.stringify(pem('PRIVATE KEY'))}}}`],
  ];
  for (const args of decoys) {
    const r = await k().kubectl(args);
    t.equal(r.code, 0, r.stderr);
  }

  const dir = mkdtempSync(path.join(tmpdir(), 'meshlet-rbac-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = await saKubeconfig(dir, SA);
  const asSa = (args: string[]) => k().kubectl([...args, `--kubeconfig=${kubeconfig}`]);
  const r = await asSa(['get', 'secret', CA_SECRET, '-n', SYSTEM, '-o', 'json']);
  t.equal(r.code, 0, r.stderr);
  const secret = JSON.parse(r.stdout || '{}') as { type?: string; data?: Record<string, string> };
  t.same(Object.keys(secret.data ?? {}).toSorted(), ['ca.crt', 'ca.json'], 'the shape docs/install.md shows: ca.json and ca.crt');
  t.equal(secret.type, 'Opaque');
  t.match(Buffer.from(secret.data?.['ca.crt'] ?? '', 'base64').toString(), /^-----BEGIN CERTIFICATE-----\n/, 'ca.crt: the trust bundle, PEM');
  t.match(JSON.parse(Buffer.from(secret.data?.['ca.json'] ?? '', 'base64').toString()) as unknown, { version: 1, trustDomain: 'cluster.local', anchor: { certPem: String, keyPem: String }, issuer: { certPem: String, keyPem: String } }, 'ca.json: the CA document, keys included');

  const forbidden: string[][] = [
    ['get', 'secret', CA_SECRET, '-n', ns],
    ['get', 'secret', 'meshlet-issuer', '-n', SYSTEM],
    ['get', 'secret', 'meshlet-ca-backup', '-n', SYSTEM],
    ['get', 'secrets', '-n', SYSTEM],
    ['get', 'secrets', '--all-namespaces'],
    ['delete', 'secret', CA_SECRET, '-n', SYSTEM],
  ];
  for (const args of forbidden) {
    const refused = await asSa(args);
    t.not(refused.code, 0, `${args.join(' ')}: refused`);
    t.match(refused.stderr, /Forbidden|forbidden/, args.join(' '));
  }
  const still = await k().kubectl(['get', 'secret', CA_SECRET, '-n', SYSTEM, '-o', 'name']);
  t.equal(still.stdout.trim(), `secret/${CA_SECRET}`, 'and the CA Secret is still there');
});

type Row = string;

/** `kubectl auth can-i --list` as "resource | nonResourceURLs | resourceNames | verbs" rows. */
async function rules(sa: string, ns: string): Promise<Set<Row>> {
  const r = await k().kubectl(['auth', 'can-i', '--list', '-n', ns, ...as(sa)]);
  if (r.code !== 0) throw new Error(r.stderr);
  const [header, ...body] = r.stdout.trimEnd().split('\n');
  const cols = ['Non-Resource URLs', 'Resource Names', 'Verbs'].map((c) => header!.indexOf(c));
  return new Set(
    body.map((line) => {
      const cut = [0, ...cols, line.length].map((at, i, a) => line.slice(at, a[i + 1]).trim()).slice(0, 4);
      return cut.join(' | ');
    }),
  );
}

t.test('can-i --list: exactly the expected rules beyond what any ServiceAccount gets', async (t) => {
  const ns = await k().newNamespace('rbac-list');
  const everyone = await rules('nobody', SYSTEM);
  t.ok(everyone.size > 0, 'the baseline is not empty (discovery, self reviews)');
  const extra = async (namespace: string) => [...(await rules(SA, namespace))].filter((row) => !everyone.has(row)).toSorted();

  const cluster = [
    'authorizationpolicies.meshlet.io | [] | [] | [get list watch]',
    'authorizationpolicies.meshlet.io/status | [] | [] | [patch]',
    'endpointslices.discovery.k8s.io | [] | [] | [get list watch]',
    'httproutes.gateway.networking.k8s.io | [] | [] | [get list watch]',
    'httproutes.gateway.networking.k8s.io/status | [] | [] | [patch]',
    'pods | [] | [] | [get list watch]',
    'servicepolicies.meshlet.io | [] | [] | [get list watch]',
    'servicepolicies.meshlet.io/status | [] | [] | [patch]',
    'services | [] | [] | [get list watch]',
    'tokenreviews.authentication.k8s.io | [] | [] | [create]',
    'trafficsplits.meshlet.io | [] | [] | [get list watch]',
    'trafficsplits.meshlet.io/status | [] | [] | [patch]',
  ];
  t.same(await extra(ns), cluster, 'in an application namespace');
  t.same(
    await extra(SYSTEM),
    [...cluster, `secrets | [] | [${CA_SECRET}] | [get]`].toSorted(),
    'in meshlet-system: plus get on the CA Secret by name',
  );
});
