// The control plane's RBAC (manifests/control-plane/rbac.yaml) on a real kube-apiserver, asked
// the way an operator would: `kubectl auth can-i --as=system:serviceaccount:meshlet-system:
// meshlet-control-plane`. It may do each thing it needs, none of a long list of broader things,
// and `can-i --list` shows exactly the expected rules beyond what every account gets.
import t from 'tap';
import { startKube, type Kube } from '../fixtures/kube.ts';

const MANIFESTS = new URL('../../manifests/', import.meta.url).pathname;
const SYSTEM = 'meshlet-system';
const SA = 'meshlet-control-plane';

let kube: Kube | undefined;
const k = (): Kube => {
  if (!kube) throw new Error('the API server did not start (see t.before)');
  return kube;
};

// Gateway API is not part of Kubernetes: a stand-in CRD so kubectl can resolve "httproutes".
const HTTPROUTE_STUB = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'httproutes.gateway.networking.k8s.io', annotations: { 'api-approved.kubernetes.io': 'unapproved, a test stand-in for Gateway API' } },
  spec: {
    group: 'gateway.networking.k8s.io',
    scope: 'Namespaced',
    names: { kind: 'HTTPRoute', plural: 'httproutes', singular: 'httproute', listKind: 'HTTPRouteList' },
    versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
  },
};

t.before(async () => {
  kube = await startKube();
  t.comment(`kube-apiserver ready in ${kube.startupMs} ms`);
  for (const args of [['apply', '--server-side', '-k', MANIFESTS], ['apply', '--server-side', '-f', '-']]) {
    const r = await kube.kubectl(args, { input: JSON.stringify(HTTPROUTE_STUB) });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  }
  const est = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io', 'crd/httproutes.gateway.networking.k8s.io']);
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

const WATCHED = ['services', 'pods', 'namespaces', 'endpointslices.discovery.k8s.io', 'trafficsplits.meshlet.io', 'authorizationpolicies.meshlet.io', 'httproutes.gateway.networking.k8s.io'];

t.test('the control plane may do what it needs', async (t) => {
  const ns = await k().newNamespace('rbac-yes');
  const needed: string[][] = [
    // Every namespace's services, endpoints, pods, namespaces, policies, routes: cluster-wide and in one.
    ...WATCHED.flatMap((r) => ['get', 'list', 'watch'].flatMap((verb) => [[verb, r, '--all-namespaces'], [verb, r, '-n', ns]])),
    ['patch', 'trafficsplits.meshlet.io', '--subresource=status', '-n', ns],
    ['patch', 'authorizationpolicies.meshlet.io', '--subresource=status', '-n', ns],
    ['create', 'tokenreviews.authentication.k8s.io'],
    ['get', 'secret/meshlet-issuer', '-n', SYSTEM],
    ['get', 'secret/meshlet-trust-anchor', '-n', SYSTEM],
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
    // Secrets: no other namespace, no other Secret, no list/watch (would reveal every Secret), no writes.
    ['get', 'secret/meshlet-issuer', '-n', ns],
    ['get', 'secret/meshlet-issuer', '-n', 'default'],
    ['get', 'secret/meshlet-issuer', '-n', 'kube-system'],
    ['get', 'secret/some-other-secret', '-n', SYSTEM],
    ['get', 'secrets', '-n', SYSTEM],
    ['list', 'secrets', '-n', SYSTEM],
    ['watch', 'secrets', '-n', SYSTEM],
    ['list', 'secrets', '--all-namespaces'],
    ['watch', 'secret/meshlet-issuer', '-n', SYSTEM],
    ...['create', 'update', 'patch', 'delete'].map((verb) => [verb, 'secret/meshlet-issuer', '-n', SYSTEM]),
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

t.test('with the CA Secrets present: the control plane reads those two, and no other Secret', async (t) => {
  const ns = await k().newNamespace('rbac-secrets');
  // The shapes docs/install.md documents (contents are not checked by the API server).
  const pem = (what: string) => `-----BEGIN ${what}-----\nAA==\n-----END ${what}-----\n`;
  const create = [
    ['create', 'secret', 'generic', 'meshlet-trust-anchor', '-n', SYSTEM, `--from-literal=ca.crt=${pem('CERTIFICATE')}`],
    ['create', 'secret', 'generic', 'meshlet-issuer', '-n', SYSTEM, '--type=kubernetes.io/tls', `--from-literal=tls.crt=${pem('CERTIFICATE')}`, `--from-literal=tls.key=${pem('PRIVATE KEY')}`, `--from-literal=ca.crt=${pem('CERTIFICATE')}`],
    ['create', 'secret', 'generic', 'meshlet-trust-anchor-ca', '-n', SYSTEM, `--from-literal=tls.key=${pem('PRIVATE KEY')}`],
    ['create', 'secret', 'generic', 'meshlet-issuer', '-n', ns, `--from-literal=tls.key=${pem('PRIVATE KEY')}`],
  ];
  for (const args of create) {
    const r = await k().kubectl(args);
    t.equal(r.code, 0, r.stderr);
  }
  const asSa = (args: string[]) => k().kubectl([...args, ...as(SA)]);
  for (const name of ['meshlet-issuer', 'meshlet-trust-anchor']) {
    const r = await asSa(['get', 'secret', name, '-n', SYSTEM, '-o', 'jsonpath={.data}']);
    t.equal(r.code, 0, `${name}: ${r.stderr}`);
    t.match(r.stdout, 'ca.crt', `${name} is readable`);
  }
  const forbidden: string[][] = [
    ['get', 'secret', 'meshlet-trust-anchor-ca', '-n', SYSTEM],
    ['get', 'secret', 'meshlet-issuer', '-n', ns],
    ['get', 'secrets', '-n', SYSTEM],
    ['get', 'secrets', '--all-namespaces'],
  ];
  for (const args of forbidden) {
    const r = await asSa(args);
    t.not(r.code, 0, `${args.join(' ')}: refused`);
    t.match(r.stderr, /Forbidden|forbidden/, args.join(' '));
  }
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
    'namespaces | [] | [] | [get list watch]',
    'pods | [] | [] | [get list watch]',
    'services | [] | [] | [get list watch]',
    'tokenreviews.authentication.k8s.io | [] | [] | [create]',
    'trafficsplits.meshlet.io | [] | [] | [get list watch]',
    'trafficsplits.meshlet.io/status | [] | [] | [patch]',
  ];
  t.same(await extra(ns), cluster, 'in an application namespace');
  t.same(
    await extra(SYSTEM),
    [...cluster, 'secrets | [] | [meshlet-issuer] | [get]', 'secrets | [] | [meshlet-trust-anchor] | [get]'].toSorted(),
    'in meshlet-system: plus get on the two CA Secrets by name',
  );
});
