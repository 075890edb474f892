// The install base (`kubectl apply --server-side -k manifests/`) against a real kube-apiserver:
// every object is accepted and stored as written, the CRDs become Established, a re-apply changes
// nothing, the control plane's Pod passes the "restricted" Pod Security admission its namespace
// enforces, the numbers Kubernetes needs twice (ports, probes, scrape settings) agree with
// manifests/config.env, the one place they are set, and the container's environment is what
// control-plane/main.ts reads (its flags' fallbacks), with the probes' port reachable from the kubelet.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { startKube, type Kube } from '../fixtures/kube.ts';

const MANIFESTS = new URL('../../manifests/', import.meta.url).pathname;
const NS = 'meshlet-system';

let kube: Kube | undefined;
const k = (): Kube => {
  if (!kube) throw new Error('the API server did not start (see t.before)');
  return kube;
};

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

let base: Obj[] = [];

t.before(async () => {
  kube = await startKube();
  t.comment(`kube-apiserver ready in ${kube.startupMs} ms`);
  base = await render(MANIFESTS);
});
t.teardown(async () => {
  await kube?.stop();
});

/** `kubectl kustomize DIR` (client-side: the API server is not involved), parsed. */
async function render(dir: string): Promise<Obj[]> {
  const r = await k().kubectl(['kustomize', dir]);
  if (r.code !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
}

function configEnv(): Map<string, string> {
  const env = new Map<string, string>();
  for (const line of readFileSync(`${MANIFESTS}config.env`, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env.set(m[1]!, m[2]!);
  }
  return env;
}

const portOf = (listen: string | undefined): number => Number(listen?.slice(listen.lastIndexOf(':') + 1));

function find(objs: Obj[], kind: string, name: string): Obj {
  const o = objs.find((x) => x.kind === kind && (x.metadata.name === name || (kind === 'ConfigMap' && x.metadata.name.startsWith(`${name}-`))));
  if (!o) throw new Error(`no ${kind} ${name} in the rendered manifests`);
  return o;
}

/** Paths where `want` (what we applied) is not in `got` (what the server stored). Server defaults are extra, not differences. */
function notStored(want: unknown, got: unknown, path = ''): string[] {
  if (Array.isArray(want)) {
    if (!Array.isArray(got) || got.length !== want.length) return [`${path}: ${JSON.stringify(want)} stored as ${JSON.stringify(got)}`];
    return want.flatMap((w, i) => notStored(w, got[i], `${path}[${i}]`));
  }
  if (want !== null && typeof want === 'object') {
    if (got === null || typeof got !== 'object') return [`${path}: stored as ${JSON.stringify(got)}`];
    return Object.entries(want).flatMap(([key, w]) => notStored(w, (got as Record<string, unknown>)[key], `${path}.${key}`));
  }
  return want === got ? [] : [`${path}: ${JSON.stringify(want)} stored as ${JSON.stringify(got)}`];
}

interface PodTemplate {
  metadata: { labels: Record<string, string>; annotations: Record<string, string> };
  spec: {
    serviceAccountName: string;
    securityContext: Record<string, unknown>;
    topologySpreadConstraints: Array<{ topologyKey: string; labelSelector: { matchLabels: Record<string, string> } }>;
    containers: Array<{
      name: string;
      image: string;
      command?: string[];
      args?: string[];
      env: Array<{ name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }>;
      envFrom: Array<{ configMapRef: { name: string } }>;
      ports: Array<{ name: string; containerPort: number }>;
      readinessProbe: { httpGet: { path: string; port: string } };
      livenessProbe: { httpGet: { path: string; port: string } };
      startupProbe: { httpGet: { path: string; port: string } };
      resources: { requests: Record<string, string>; limits: Record<string, string> };
      securityContext: Record<string, unknown>;
    }>;
  };
}
const deploymentOf = (objs: Obj[]) => find(objs, 'Deployment', 'meshlet-control-plane') as Obj & { spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: PodTemplate } };

t.test('kubectl apply --server-side -k manifests/ is accepted; CRDs Established; every object stored as written', async (t) => {
  const kinds = base.map((o) => o.kind).toSorted();
  t.same(
    kinds,
    ['ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'CustomResourceDefinition', 'CustomResourceDefinition', 'CustomResourceDefinition', 'Deployment', 'MutatingWebhookConfiguration', 'Namespace', 'PodDisruptionBudget', 'Role', 'RoleBinding', 'Service', 'Service', 'ServiceAccount', 'ValidatingWebhookConfiguration'],
    'the base renders the whole install',
  );
  for (const o of base) t.equal(o.metadata.labels?.['app.kubernetes.io/part-of'], 'meshlet', `${o.kind}/${o.metadata.name} is labelled part-of=meshlet`);

  const applied = await k().kubectl(['apply', '--server-side', '-k', MANIFESTS]);
  t.equal(applied.code, 0, applied.stderr);
  t.equal(applied.stdout.trim().split('\n').filter((l) => l.endsWith(' serverside-applied')).length, base.length, applied.stdout);

  const established = await k().kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io', 'crd/servicepolicies.meshlet.io']);
  t.equal(established.code, 0, established.stderr);
  t.match(established.stdout, /trafficsplits\.meshlet\.io condition met[\s\S]*authorizationpolicies\.meshlet\.io condition met[\s\S]*servicepolicies\.meshlet\.io condition met/);

  // One `kubectl get` for every object (all namespaced ones are in meshlet-system).
  const refs = base.map((o) => `${o.kind.toLowerCase()}${o.apiVersion.includes('/') ? `.${o.apiVersion.split('/')[0]}` : ''}/${o.metadata.name}`);
  const got = await k().kubectl(['get', '-n', NS, '-o', 'json', ...refs]);
  t.equal(got.code, 0, got.stderr);
  const stored = (JSON.parse(got.stdout) as { items: Obj[] }).items;
  t.equal(stored.length, base.length, 'every object is there');
  for (const want of base) {
    const have = stored.find((o) => o.kind === want.kind && o.metadata.name === want.metadata.name);
    // Of the metadata, what we set: labels and annotations (the server adds uid, managedFields...).
    const { metadata: { labels, annotations }, ...rest } = want;
    t.same(notStored({ metadata: { labels, ...(annotations ? { annotations } : {}) }, ...rest }, have), [], `${want.kind}/${want.metadata.name} is stored as written`);
  }
});

t.test('re-applying the base changes nothing', async (t) => {
  const again = await k().kubectl(['apply', '--server-side', '-k', MANIFESTS]);
  t.equal(again.code, 0, again.stderr);
  const diff = await k().kubectl(['diff', '--server-side', '-k', MANIFESTS]);
  t.equal(diff.code, 0, `kubectl diff finds no difference:\n${diff.stdout}${diff.stderr}`);
});

t.test("the control plane's Pod passes meshlet-system's restricted Pod Security admission; a default Pod does not", async (t) => {
  const ns = await k().kubectl(['get', 'ns', NS, '-o', 'jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}']);
  t.equal(ns.stdout, 'restricted');

  const tpl = deploymentOf(base).spec.template;
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'control-plane-template', namespace: NS, labels: tpl.metadata.labels }, spec: tpl.spec };
  const ok = await k().kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(pod) });
  t.equal(ok.code, 0, ok.stderr);
  t.notMatch(ok.stderr, /PodSecurity/, 'no Pod Security warning either');

  const plain = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'plain', namespace: NS }, spec: { containers: [{ name: 'c', image: 'busybox' }] } };
  const refused = await k().kubectl(['create', '--dry-run=server', '-f', '-'], { input: JSON.stringify(plain) });
  t.not(refused.code, 0);
  t.match(refused.stderr, /violates PodSecurity "restricted:latest"/, 'enforcement is on, so the first check means something');
});

t.test('the control plane Deployment: 2 replicas, PDB, spread, probes on the admin port, resources, hardened', async (t) => {
  const dep = deploymentOf(base);
  t.equal(dep.spec.replicas, 2);
  const pdb = find(base, 'PodDisruptionBudget', 'meshlet-control-plane') as Obj & { spec: { minAvailable: number; selector: { matchLabels: Record<string, string> } } };
  t.equal(pdb.spec.minAvailable, 1);
  t.same(pdb.spec.selector.matchLabels, dep.spec.selector.matchLabels, 'the PDB covers the Deployment');
  const { spec } = dep.spec.template;
  t.same(spec.topologySpreadConstraints.map((c) => c.topologyKey), ['kubernetes.io/hostname', 'topology.kubernetes.io/zone']);
  for (const c of spec.topologySpreadConstraints) t.same(c.labelSelector.matchLabels, dep.spec.selector.matchLabels);
  t.equal(spec.serviceAccountName, 'meshlet-control-plane');
  t.match(spec.securityContext, { runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } });
  t.equal(spec.containers.length, 1);
  const c = spec.containers[0]!;
  t.match(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
  t.match(c.resources, { requests: { cpu: String, memory: String }, limits: { cpu: String, memory: String } });
  t.same([c.readinessProbe.httpGet, c.livenessProbe.httpGet, c.startupProbe.httpGet], [{ path: '/ready', port: 'admin' }, { path: '/live', port: 'admin' }, { path: '/live', port: 'admin' }]);
  t.match(c.image, /^ghcr\.io\/meshlet\/control-plane:\d+\.\d+\.\d+$/, 'the image is pinned to a version');
});

t.test('ports and names everywhere agree with manifests/config.env', async (t) => {
  const env = configEnv();
  const configPort = portOf(env.get('MESHLET_CONFIG_LISTEN'));
  const webhookPort = portOf(env.get('MESHLET_WEBHOOK_LISTEN'));
  const adminPort = portOf(env.get('MESHLET_ADMIN_LISTEN'));
  t.same([configPort, webhookPort, adminPort], [8443, 9443, 9990]);
  t.same([env.get('MESHLET_PROXY_UID'), env.get('MESHLET_PROXY_OUTBOUND_PORT'), env.get('MESHLET_PROXY_INBOUND_PORT'), env.get('MESHLET_PROXY_ADMIN_PORT')], ['2102', '4140', '4143', '4191']);

  const cm = find(base, 'ConfigMap', 'meshlet-config') as Obj & { data: Record<string, string> };
  t.same(new Map(Object.entries(cm.data)), env, 'the ConfigMap is config.env');
  const dep = deploymentOf(base);
  const tpl = dep.spec.template;
  const c = tpl.spec.containers[0]!;
  t.same(c.envFrom, [{ configMapRef: { name: cm.metadata.name } }], 'the control plane reads it (hash-suffixed name: an edit rolls the Pods)');
  const ports = Object.fromEntries(c.ports.map((p) => [p.name, p.containerPort]));
  t.same(ports, { config: configPort, webhook: webhookPort, admin: adminPort }, 'containerPorts');
  t.same(
    { scrape: tpl.metadata.annotations['prometheus.io/scrape'], port: tpl.metadata.annotations['prometheus.io/port'], path: tpl.metadata.annotations['prometheus.io/path'] },
    { scrape: 'true', port: String(adminPort), path: '/metrics' },
    'scrape annotations',
  );

  type Svc = Obj & { spec: { selector: Record<string, string>; ports: Array<{ port: number; targetPort: string }> } };
  const cpSvc = find(base, 'Service', 'meshlet-control-plane') as Svc;
  const hookSvc = find(base, 'Service', 'meshlet-webhook') as Svc;
  t.same(cpSvc.spec.ports.map((p) => [p.port, ports[p.targetPort]]), [[8443, configPort]]);
  t.same(hookSvc.spec.ports.map((p) => [p.port, ports[p.targetPort]]), [[443, webhookPort]]);
  for (const svc of [cpSvc, hookSvc]) t.same(svc.spec.selector, dep.spec.selector.matchLabels, `${svc.metadata.name} selects the control plane`);

  const hook = find(base, 'MutatingWebhookConfiguration', 'meshlet-proxy-injector') as Obj & { webhooks: Array<{ clientConfig: { service: { name: string; namespace: string; port: number } } }> };
  const service = { name: 'meshlet-webhook', namespace: NS, path: '/inject', port: 443 };
  t.same(hook.webhooks.map((w) => w.clientConfig.service), [service, service], 'both webhook entries call the webhook Service');
  const validator = find(base, 'ValidatingWebhookConfiguration', 'meshlet-validator') as typeof hook;
  t.same(validator.webhooks.map((w) => w.clientConfig.service), [{ ...service, path: '/validate' }], 'the validator calls the same Service, path /validate');

  // Optional pieces: PodMonitors and the plain Prometheus config find the same ports by name.
  type PodMonitor = Obj & { spec: { podMetricsEndpoints: Array<{ port: string; relabelings?: Array<{ regex: string }> }> } };
  const monitors = await render(`${MANIFESTS}monitoring`);
  t.same(monitors.map((m) => m.kind), ['PodMonitor', 'PodMonitor']);
  t.same((find(monitors, 'PodMonitor', 'meshlet-control-plane') as PodMonitor).spec.podMetricsEndpoints.map((e) => e.port), ['admin']);
  const proxies = find(monitors, 'PodMonitor', 'meshlet-proxies') as PodMonitor;
  t.same(proxies.spec.podMetricsEndpoints.map((e) => e.port), [env.get('MESHLET_PROXY_ADMIN_PORT_NAME')]);
  t.equal(proxies.spec.podMetricsEndpoints[0]?.relabelings?.[0]?.regex, env.get('MESHLET_PROXY_CONTAINER_NAME'));
  const scrape = readFileSync(`${MANIFESTS}prometheus/scrape-config.yaml`, 'utf8');
  t.match(scrape, `regex: ${env.get('MESHLET_PROXY_CONTAINER_NAME')};${env.get('MESHLET_PROXY_ADMIN_PORT_NAME')}`);
  t.match(scrape, 'regex: meshlet-control-plane;admin');
});

t.test("the container's environment is what control-plane/main.ts reads; probes reach the admin port", async (t) => {
  const c = deploymentOf(base).spec.template.spec.containers[0]!;
  t.same([c.command, c.args], [undefined, undefined], "the image's ENTRYPOINT, no arguments: every setting is a flag's environment fallback");
  const env = configEnv();
  for (const e of c.env) env.set(e.name, e.value ?? `fieldRef:${e.valueFrom?.fieldRef?.fieldPath}`);

  // What main.ts reads: env.MESHLET_* in its source (each is a flag's fallback, `--help` says which).
  const main = readFileSync(new URL('../../control-plane/main.ts', import.meta.url), 'utf8');
  const reads = [...new Set([...main.matchAll(/\benv\.(MESHLET_[A-Z0-9_]+)/g)].map((m) => m[1]!))].toSorted();
  t.ok(reads.includes('MESHLET_ADMIN_LISTEN') && reads.includes('MESHLET_CA_SECRET'), `main.ts reads ${reads.join(', ')}`);
  const given = [...env.keys()].filter((k) => k.startsWith('MESHLET_'));
  t.same(reads.filter((k) => !env.has(k)), [], 'the Deployment sets every variable main.ts reads');
  // The rest: the proxy's ports, UID and names, which the injector has as constants
  // (injector/settings.ts; test/injector/inject.test.ts checks them against config.env).
  t.same(given.filter((k) => !reads.includes(k) && !k.startsWith('MESHLET_PROXY_')), [], 'and no variable nothing reads (no stale names)');

  // The kubelet probes (and Prometheus scrapes) the Pod IP: main.ts's admin default is loopback.
  const admin = env.get('MESHLET_ADMIN_LISTEN') ?? '';
  const ports = Object.fromEntries(c.ports.map((p) => [p.name, p.containerPort]));
  t.equal(admin, `0.0.0.0:${ports.admin}`, 'admin listens on every address, on the probed containerPort');
  t.equal(env.get('MESHLET_CONFIG_LISTEN'), `0.0.0.0:${ports.config}`, 'Certify too, on the Service\'s target port');
  t.equal(env.get('MESHLET_NAMESPACE'), 'fieldRef:metadata.namespace', "its namespace is the Pod's");

  // The CA Secret it reads is the one (and only) Secret its Role lets it get.
  const role = find(base, 'Role', 'meshlet-control-plane-ca') as Obj & { rules: Array<{ resources: string[]; resourceNames?: string[]; verbs: string[] }> };
  t.same(role.rules, [{ apiGroups: [''], resources: ['secrets'], resourceNames: ['meshlet-ca'], verbs: ['get'] }], 'the Role: get on meshlet-ca, nothing else');
  t.equal(env.get('MESHLET_CA_SECRET'), `${role.metadata.namespace}/${role.rules[0]?.resourceNames?.[0]}`, 'MESHLET_CA_SECRET names that Secret');
});
