// The injector's MutatingWebhookConfiguration on a real kube-apiserver, with no injector running
// (the control plane is not deployed here): that makes the failure policy visible. A Pod create
// that reaches the webhook fails (failurePolicy Fail): Pods in labelled namespaces, and Pods
// annotated meshlet.io/inject=enabled elsewhere. Every Pod the selectors and match conditions
// leave out is admitted without a call: other Pods of unlabelled namespaces, kube-system and
// meshlet-system even when labelled or annotated, Pods opted out by annotation or label,
// host-network Pods.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { kubeForFile } from '../fixtures/kube.ts';

const MANIFESTS = new URL('../../manifests/', import.meta.url).pathname;
const WEBHOOK = `${MANIFESTS}webhook/mutatingwebhookconfiguration.yaml`;
const CALLED = 'failed calling webhook "inject.meshlet.io"';
const CALLED_POD = 'failed calling webhook "inject-pod.meshlet.io"';

const k = kubeForFile(t);

interface PodOpts {
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  hostNetwork?: boolean;
}
const pod = (ns: string, name: string, o: PodOpts = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, ...(o.labels ? { labels: o.labels } : {}), ...(o.annotations ? { annotations: o.annotations } : {}) },
  spec: {
    ...(o.hostNetwork ? { hostNetwork: true } : {}),
    securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
    containers: [{ name: 'app', image: 'registry.example/app:1', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
  },
});

/** A server-side dry-run create: every admission step runs (webhooks too: sideEffects None), nothing is stored. */
const dryCreate = (doc: unknown) => k().kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(doc) });

/**
 * Waits until a plain Pod in `ns` is sent to the webhook (so refused: no injector runs). The API
 * server picks up a new webhook configuration, and namespace label changes, from its informers a
 * moment later; namespace events arrive in order, so this also proves earlier label changes are seen.
 */
async function untilRefused(ns: string, timeoutMs = 15_000): Promise<{ stderr: string; ms: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const started = Date.now();
    const r = await dryCreate(pod(ns, 'probe'));
    if (r.stderr.includes(CALLED)) return { stderr: r.stderr, ms: Date.now() - started };
    if (Date.now() > deadline) throw new Error(`a Pod in ${ns} never reached the webhook; last answer: ${r.code} ${r.stdout}${r.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function labelled(prefix: string): Promise<string> {
  const ns = await k().newNamespace(prefix);
  const r = await k().kubectl(['label', 'ns', ns, 'meshlet.io/inject=enabled']);
  if (r.code !== 0) throw new Error(r.stderr);
  return ns;
}

t.test('a server-side dry run of the webhook configuration is accepted', async (t) => {
  const r = await k().kubectl(['apply', '--server-side', '--dry-run=server', '-f', WEBHOOK]);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim(), 'mutatingwebhookconfiguration.admissionregistration.k8s.io/meshlet-proxy-injector serverside-applied (server dry run)');
  const stored = await k().kubectl(['get', 'mutatingwebhookconfigurations', '-o', 'name']);
  t.equal(stored.stdout, '', 'a dry run stores nothing');

  const dry = await k().kubectl(['apply', '--server-side', '--dry-run=server', '-f', WEBHOOK, '-o', 'json']);
  const hooks = (JSON.parse(dry.stdout) as { webhooks: Array<Record<string, unknown>> }).webhooks;
  t.same(hooks.map((h) => h.name), ['inject.meshlet.io', 'inject-pod.meshlet.io']);
  const common = {
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    timeoutSeconds: 5,
    failurePolicy: 'Fail',
    reinvocationPolicy: 'Never',
    clientConfig: { service: { name: 'meshlet-webhook', namespace: 'meshlet-system', path: '/inject', port: 443 } },
    rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
  };
  const systemExcluded = { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'meshlet-system'] };
  t.match(hooks[0], { ...common, namespaceSelector: { matchLabels: { 'meshlet.io/inject': 'enabled' }, matchExpressions: [systemExcluded] } });
  t.match(hooks[1], { ...common, namespaceSelector: { matchExpressions: [{ key: 'meshlet.io/inject', operator: 'NotIn', values: ['enabled'] }, systemExcluded] } });
});

t.test('installed: a Pod in an opted-in namespace reaches the webhook, and with no injector is refused (Fail)', async (t) => {
  const applied = await k().kubectl(['apply', '--server-side', '-k', MANIFESTS]);
  t.equal(applied.code, 0, applied.stderr);
  const ns = await labelled('inject');
  const refused = await untilRefused(ns);
  t.match(refused.stderr, CALLED);
  t.ok(refused.ms < 8_000, `refused within the 5 s timeout (took ${refused.ms} ms)`);
  const r = await dryCreate(pod(ns, 'web'));
  t.not(r.code, 0, 'and stays refused');
  // Other kinds in the same namespace are not the webhook's business.
  const cm = await dryCreate({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c', namespace: ns } });
  t.equal(cm.code, 0, cm.stderr);
});

t.test('Pods the webhook must never see are admitted while it is down', async (t) => {
  for (const system of ['kube-system', 'meshlet-system']) {
    const r = await k().kubectl(['label', 'ns', system, 'meshlet.io/inject=enabled', '--overwrite']);
    t.equal(r.code, 0, r.stderr);
  }
  const plain = await k().newNamespace('plain');
  const opted = await labelled('optout');
  await untilRefused(opted); // the API server has seen every label change above
  const enabled = { annotations: { 'meshlet.io/inject': 'enabled' } };
  const cases: Array<[string, unknown]> = [
    ['an unlabelled namespace', pod(plain, 'web')],
    ['an unlabelled namespace, another annotation value', pod(plain, 'web', { annotations: { 'meshlet.io/inject': 'true' } })],
    ['kube-system, even labelled', pod('kube-system', 'web')],
    ['kube-system, even annotated', pod('kube-system', 'web', enabled)],
    ['meshlet-system, even labelled (the control plane can always start)', pod('meshlet-system', 'web')],
    ['meshlet-system, even annotated', pod('meshlet-system', 'web', enabled)],
    ['annotation meshlet.io/inject=disabled', pod(opted, 'annotated', { annotations: { 'meshlet.io/inject': 'disabled' } })],
    ['label meshlet.io/inject=disabled', pod(opted, 'labelled', { labels: { 'meshlet.io/inject': 'disabled' } })],
    ['a host-network Pod', pod(opted, 'host', { hostNetwork: true })],
  ];
  const results = await Promise.all(cases.map(([, doc]) => dryCreate(doc)));
  cases.forEach(([what], i) => {
    const r = results[i]!;
    t.equal(r.code, 0, `${what}: admitted ${r.stderr}`);
    t.notMatch(r.stderr, /failed calling webhook/, `${what}: no webhook call`);
  });
  // The opt-outs are exact: another annotation value still goes to the webhook.
  const other = await dryCreate(pod(opted, 'enabled', { annotations: { 'meshlet.io/inject': 'enabled', 'example.com/x': 'y' } }));
  t.match(other.stderr, CALLED, 'meshlet.io/inject=enabled on the Pod is not an opt-out');
  for (const system of ['kube-system', 'meshlet-system']) await k().kubectl(['label', 'ns', system, 'meshlet.io/inject-']);
});

t.test('a Pod annotated meshlet.io/inject=enabled in an unlabelled namespace reaches the webhook (refused: Fail)', async (t) => {
  const plain = await k().newNamespace('podoptin');
  const r = await dryCreate(pod(plain, 'web', { annotations: { 'meshlet.io/inject': 'enabled' } }));
  t.not(r.code, 0);
  t.match(r.stderr, CALLED_POD);
  // ...also in a namespace labelled disabled: the Pod's own annotation wins, as with Linkerd.
  const disabled = await k().newNamespace('nsoptout');
  await k().kubectl(['label', 'ns', disabled, 'meshlet.io/inject=disabled']);
  const d = await dryCreate(pod(disabled, 'web', { annotations: { 'meshlet.io/inject': 'enabled' } }));
  t.match(d.stderr, CALLED_POD);
  const plainPod = await dryCreate(pod(disabled, 'other'));
  t.equal(plainPod.code, 0, plainPod.stderr);
});

t.test('only CREATE: Pods that exist before a namespace opts in can still be updated', async (t) => {
  const ns = await k().newNamespace('existing');
  const created = await k().kubectl(['create', '-f', '-'], { input: JSON.stringify(pod(ns, 'web')) });
  t.equal(created.code, 0, created.stderr);
  await k().kubectl(['label', 'ns', ns, 'meshlet.io/inject=enabled']);
  await untilRefused(ns); // new Pods here now reach the webhook...
  const updated = await k().kubectl(['label', 'pod', 'web', '-n', ns, 'tier=frontend']);
  t.equal(updated.code, 0, `...but an update of an existing one does not: ${updated.stderr}`);
});

t.test('re-applying the base keeps a caBundle that another field manager set', async (t) => {
  const ca = Buffer.from('-----BEGIN CERTIFICATE-----\nnot checked by the API server\n-----END CERTIFICATE-----\n').toString('base64');
  const patch = { apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'meshlet-proxy-injector' }, webhooks: [{ name: 'inject.meshlet.io', clientConfig: { caBundle: ca } }] };
  const set = await k().kubectl(['apply', '--server-side', '--field-manager=operator', '-f', '-'], { input: JSON.stringify(patch) });
  t.equal(set.code, 0, set.stderr);
  const again = await k().kubectl(['apply', '--server-side', '-k', MANIFESTS]);
  t.equal(again.code, 0, again.stderr);
  const got = await k().kubectl(['get', 'mutatingwebhookconfiguration', 'meshlet-proxy-injector', '-o', 'jsonpath={.webhooks[0].clientConfig.caBundle}']);
  t.equal(got.stdout, ca);
});

t.test("docs/install.md's caBundle patch sets both entries to the trust bundle of the CA Secret meshlet install made", async (t) => {
  const install = spawnSync(process.execPath, [new URL('../../bin/meshlet.ts', import.meta.url).pathname, 'install', '--kubeconfig', k().kubeconfigPath], { encoding: 'utf8' });
  t.equal(install.status, 0, `meshlet install: ${install.stdout}${install.stderr}`);
  // CA=$(kubectl -n meshlet-system get secret meshlet-ca -o jsonpath='{.data.ca\.crt}'): base64 already.
  const got64 = await k().kubectl(['-n', 'meshlet-system', 'get', 'secret', 'meshlet-ca', '-o', 'jsonpath={.data.ca\\.crt}']);
  t.equal(got64.code, 0, got64.stderr);
  const ca = got64.stdout;
  t.match(Buffer.from(ca, 'base64').toString(), /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/, 'a PEM bundle');
  const patch = JSON.stringify([0, 1].map((i) => ({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: ca })));
  const r = await k().kubectl(['patch', 'mutatingwebhookconfiguration', 'meshlet-proxy-injector', '--type=json', '-p', patch]);
  t.equal(r.code, 0, r.stderr);
  const got = await k().kubectl(['get', 'mutatingwebhookconfiguration', 'meshlet-proxy-injector', '-o', 'jsonpath={.webhooks[*].clientConfig.caBundle}']);
  t.equal(got.stdout, `${ca} ${ca}`);
  const doc = readFileSync(new URL('../../docs/install.md', import.meta.url), 'utf8');
  t.match(doc, '"path\\":\\"/webhooks/0/clientConfig/caBundle', 'the documented patch is this one');
  t.match(doc, '"path\\":\\"/webhooks/1/clientConfig/caBundle');
  t.match(doc, "CA=$(kubectl -n meshlet-system get secret meshlet-ca -o jsonpath='{.data.ca\\.crt}')", 'from the CA Secret, as here');
});
