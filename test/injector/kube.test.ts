// The injector behind a REAL kube-apiserver: the webhook runs here (HTTPS, certificate from the meshlet
// CA), manifests/webhook's configuration is applied with its clientConfig pointed at it by url and
// caBundle = the trust bundle, and the API server calls it. What is checked is what the API server
// stored (so the injected Pod also passed its validation), read back with the real kubectl.
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import t from 'tap';
import { parse } from 'yaml';
import { systemClock } from '../../api/runtime.ts';
import { initCa, systemWallClock, trustBundle } from '../../control-plane/ca/index.ts';
import { DEFAULT_SERVING_NAMES } from '../../control-plane/certify/serving-cert.ts';
import type { CaDocument } from '../../control-plane/store/ca-document.ts';
import { InjectorMetrics, ValidationMetrics } from '../../injector/metrics.ts';
import { defaultSettings } from '../../injector/settings.ts';
import { WEBHOOK_SERVICE, caCredentials, createWebhook, type Webhook } from '../../injector/webhook.ts';
import { kubeForFile } from '../fixtures/kube.ts';

const WEBHOOK_YAML = new URL('../../manifests/webhook/mutatingwebhookconfiguration.yaml', import.meta.url);
const k = kubeForFile(t);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const doc: CaDocument = { state: initCa({ now: Date.now() }) };
const bundle = trustBundle(doc.state).join('');
const registry = new Registry();
let webhook: Webhook | undefined;

async function startWebhook(port = 0): Promise<number> {
  webhook = createWebhook({
    listen: { host: '127.0.0.1', port },
    credentials: ({ ca }) => caCredentials({ ca, names: { ...DEFAULT_SERVING_NAMES, service: WEBHOOK_SERVICE }, wallClock: systemWallClock }),
    settings: (d) => defaultSettings({ trustAnchorsPem: d ? trustBundle(d.state).join('') : '' }),
    metrics: new InjectorMetrics(registry),
    validationMetrics: new ValidationMetrics(registry),
    log: () => {},
    clock: systemClock,
  });
  await webhook.start({ ca: () => doc });
  return (webhook.address() as AddressInfo).port;
}

const pod = (ns: string, name: string, annotations: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, labels: { app: name }, annotations: { 'team.example/owner': 'shop', ...annotations } },
  spec: {
    initContainers: [{ name: 'migrate', image: 'registry.example/app:1', command: ['true'] }],
    containers: [{ name: 'app', image: 'registry.example/app:1', ports: [{ containerPort: 8080 }] }],
  },
});

async function create(doc: unknown, extra: string[] = []) {
  return k().kubectl(['create', '-o', 'json', ...extra, '-f', '-'], { input: JSON.stringify(doc) });
}
async function getPod(ns: string, name: string): Promise<Json> {
  const r = await k().kubectl(['get', 'pod', '-n', ns, name, '-o', 'json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as Json;
}
const names = (list: Json[] | undefined) => (list ?? []).map((c) => c.name as string);
async function labelled(prefix: string): Promise<string> {
  const ns = await k().newNamespace(prefix);
  const r = await k().kubectl(['label', 'ns', ns, 'meshlet.io/inject=enabled']);
  if (r.code !== 0) throw new Error(r.stderr);
  return ns;
}
/** The API server sees a new webhook configuration and namespace labels a moment later: wait until a dry run in `ns` is injected. */
async function untilInjected(ns: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await create(pod(ns, 'probe'), ['--dry-run=server']);
    if (r.code === 0 && names((JSON.parse(r.stdout) as Json).spec.initContainers).includes('meshlet-proxy')) return;
    if (Date.now() > deadline) throw new Error(`a Pod in ${ns} is never injected: ${r.stdout.slice(0, 300)} ${r.stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

t.before(async () => {
  const port = await startWebhook();
  // The shipped configuration, with clientConfig service → url (the API server here has no Service routing).
  const config = parse(readFileSync(WEBHOOK_YAML, 'utf8')) as Json;
  for (const h of config.webhooks as Json[]) h.clientConfig = { url: `https://127.0.0.1:${port}/inject`, caBundle: Buffer.from(bundle).toString('base64') };
  const r = await k().kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(config) });
  if (r.code !== 0) throw new Error(`applying the webhook configuration failed: ${r.stderr}`);
});
t.teardown(() => webhook?.close());

t.test('a Pod in a labelled namespace is stored with the proxy; the rest of it is as written', async (t) => {
  const ns = await labelled('shop');
  await untilInjected(ns);
  const r = await create(pod(ns, 'web'));
  t.equal(r.code, 0, r.stderr);
  const stored = await getPod(ns, 'web');
  t.same(names(stored.spec.initContainers), ['meshlet-init', 'meshlet-proxy', 'migrate'], 'the API server validated and stored the native sidecar');
  t.same(names(stored.spec.containers), ['app']);
  const proxy = stored.spec.initContainers[1];
  t.equal(proxy.restartPolicy, 'Always');
  t.same(proxy.startupProbe.httpGet, { path: '/ready', port: 4191, scheme: 'HTTP' });
  t.equal(proxy.securityContext.runAsUser, 2102);
  t.match(proxy.env.find((e: Json) => e.name === 'MESHLET_TRUST_ANCHORS_PEM').value, bundle);
  t.same(stored.spec.volumes.filter((v: Json) => v.name.startsWith('meshlet-')).map((v: Json) => v.name), ['meshlet-identity-token', 'meshlet-tmp', 'meshlet-pod-info']);
  t.same(stored.spec.volumes.find((v: Json) => v.name === 'meshlet-pod-info').downwardAPI.items, [{ path: 'labels', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.labels' } }], 'the labels volume passed the API server\'s validation');
  t.same(stored.spec.volumes.find((v: Json) => v.name === 'meshlet-identity-token').projected.sources[0].serviceAccountToken, { audience: 'meshlet', expirationSeconds: 86400, path: 'token' });
  t.match(stored.metadata.annotations, { 'team.example/owner': 'shop', 'meshlet.io/injected': 'native-sidecar', 'prometheus.io/scrape': 'true', 'prometheus.io/port': '4191' });
});

t.test('unlabelled namespace: untouched; annotated Pod there: injected; opted-out Pod in a labelled one: untouched', async (t) => {
  const plain = await k().newNamespace('plain');
  const shop = await labelled('optout');
  await untilInjected(shop);
  t.equal((await create(pod(plain, 'web'))).code, 0);
  t.same(names((await getPod(plain, 'web')).spec.initContainers), ['migrate'], 'unlabelled: untouched');
  t.equal((await create(pod(plain, 'opted-in', { 'meshlet.io/inject': 'enabled' }))).code, 0);
  t.same(names((await getPod(plain, 'opted-in')).spec.initContainers), ['meshlet-init', 'meshlet-proxy', 'migrate'], 'annotated in an unlabelled namespace: injected');
  t.equal((await create(pod(shop, 'out', { 'meshlet.io/inject': 'disabled' }))).code, 0);
  const out = await getPod(shop, 'out');
  t.same(names(out.spec.initContainers), ['migrate'], 'opted out: untouched');
  t.equal(out.metadata.annotations['meshlet.io/injected'], undefined);
});

t.test('a Deployment template is not mutated; a Pod made from an injected spec is not injected twice', async (t) => {
  const ns = await labelled('deploy');
  await untilInjected(ns);
  const template = pod(ns, 'api');
  const deployment = {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'api', namespace: ns },
    spec: { replicas: 1, selector: { matchLabels: { app: 'api' } }, template: { metadata: { labels: { app: 'api' } }, spec: template.spec } },
  };
  const r = await k().kubectl(['apply', '-f', '-'], { input: JSON.stringify(deployment) });
  t.equal(r.code, 0, r.stderr);
  const stored = JSON.parse((await k().kubectl(['get', 'deployment', '-n', ns, 'api', '-o', 'json'])).stdout) as Json;
  t.same(names(stored.spec.template.spec.initContainers), ['migrate'], 'only Pods are mutated, not their templates');
  // What a ReplicaSet controller would do, twice: the second Pod comes from an already injected spec.
  t.equal((await create({ ...pod(ns, 'api-1'), spec: stored.spec.template.spec })).code, 0);
  const first = await getPod(ns, 'api-1');
  t.same(names(first.spec.initContainers), ['meshlet-init', 'meshlet-proxy', 'migrate']);
  const second = await create({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'api-2', namespace: ns, annotations: first.metadata.annotations }, spec: first.spec });
  t.equal(second.code, 0, second.stderr);
  const again = await getPod(ns, 'api-2');
  t.same(names(again.spec.initContainers), ['meshlet-init', 'meshlet-proxy', 'migrate'], 'not injected twice');
  t.same(again.spec.volumes.map((v: Json) => v.name), first.spec.volumes.map((v: Json) => v.name));
});

t.test('kubectl create --dry-run=server shows the mutation and stores nothing', async (t) => {
  const ns = await labelled('dry');
  await untilInjected(ns);
  const r = await create(pod(ns, 'web'), ['--dry-run=server']);
  t.equal(r.code, 0, r.stderr);
  t.same(names((JSON.parse(r.stdout) as Json).spec.initContainers), ['meshlet-init', 'meshlet-proxy', 'migrate']);
  const get = await k().kubectl(['get', 'pod', '-n', ns, 'web']);
  t.not(get.code, 0, 'nothing stored');
});

t.test('kubectl label ns, then kubectl apply: an injected Pod; the regular-sidecar mode is valid too', async (t) => {
  const ns = await k().newNamespace('later');
  const label = await k().kubectl(['label', 'ns', ns, 'meshlet.io/inject=enabled']);
  t.equal(label.code, 0, label.stderr);
  await untilInjected(ns);
  const applied = await k().kubectl(['apply', '-f', '-'], { input: JSON.stringify(pod(ns, 'web', { 'config.meshlet.io/native-sidecar': 'false', 'config.meshlet.io/proxy-memory-limit': '512Mi' })) });
  t.equal(applied.code, 0, applied.stderr);
  const stored = await getPod(ns, 'web');
  t.same(names(stored.spec.containers), ['meshlet-proxy', 'app'], 'the proxy first, held by its postStart hook');
  t.same(names(stored.spec.initContainers), ['migrate', 'meshlet-init']);
  t.equal(stored.spec.containers[0].resources.limits.memory, '512Mi', 'annotation override');
  t.equal(stored.metadata.annotations['kubectl.kubernetes.io/default-container'], 'app');
});

t.test('a bad annotation value: the API server refuses the Pod with the injector message', async (t) => {
  const ns = await labelled('bad');
  await untilInjected(ns);
  const r = await create(pod(ns, 'web', { 'config.meshlet.io/proxy-cpu-request': 'banana', 'config.meshlet.io/skip-inbound-ports': '70000' }));
  t.not(r.code, 0);
  t.match(r.stderr, /admission webhook "inject.meshlet.io" denied the request: cannot inject the meshlet proxy: config.meshlet.io\/proxy-cpu-request: "banana" is not a CPU quantity/);
  t.match(r.stderr, /"70000" is not a port/);
  t.not((await k().kubectl(['get', 'pod', '-n', ns, 'web'])).code, 0, 'not stored');
});

t.test('webhook down: Pods of labelled namespaces fail (failurePolicy Fail), others are created', async (t) => {
  const shop = await labelled('down');
  const plain = await k().newNamespace('up');
  await untilInjected(shop);
  await webhook?.close();
  const refused = await create(pod(shop, 'web'));
  t.not(refused.code, 0);
  t.match(refused.stderr, /failed calling webhook "inject.meshlet.io"/);
  const ok = await create(pod(plain, 'web'));
  t.equal(ok.code, 0, ok.stderr);
  t.same(names((await getPod(plain, 'web')).spec.initContainers), ['migrate']);
  const text = await registry.metrics();
  t.match(text, /meshlet_injections_total\{outcome="injected",reason="native-sidecar"\} [1-9]/, 'the webhook counted its injections');
  t.match(text, /meshlet_injections_total\{outcome="error",reason="bad-annotation"\} 1/);
});
