// `meshlet check`: evaluate() on objects built in memory (every ok/warn/fail rule, no I/O), then the
// real CLI against a real kube-apiserver: an empty cluster fails with what to do; the full install
// (manifests, `meshlet install`, stored Deployment status and EndpointSlices, the caBundle patch) is all ok.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { DAY_MS, initCa, trustBundle, type CaState } from '../../control-plane/ca/index.ts';
import {
  CA_SECRET_NAME, CRD_NAMES, DEPLOYMENT_NAME, PROXY_CONTAINER_NAME, SERVICE_NAMES, VALIDATOR_NAME, WEBHOOK_NAME, caView, evaluate, gather,
  type CheckResult, type ClusterObjects, type ClusterReader, type Lookup, type PodView,
} from '../../control-plane/cli/commands/check.ts';
import { caSecretObject } from '../../control-plane/store/secret-store.ts';
import { kubeForFile } from '../fixtures/kube.ts';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const MANIFESTS = path.join(ROOT, 'manifests/');
const SYSTEM = 'meshlet-system';
const APPLY = 'kubectl apply --server-side -k manifests/';

// ---- evaluate(), pure ------------------------------------------------------------------------

const NOW = Date.UTC(2030, 0, 15);
const CA = initCa({ now: NOW - DAY_MS }); // anchor 365 days, issuer 90 days
const OTHER_CA = initCa({ now: NOW - DAY_MS });
const b64 = (s: string): string => Buffer.from(s).toString('base64');
const found = <T>(value: T): Lookup<T> => ({ state: 'found', value });
const bundleOf = (s: CaState): string => trustBundle(s).join('');
const dataOf = (s: CaState): Record<string, string> => caSecretObject({ state: s }, { namespace: SYSTEM, name: CA_SECRET_NAME }).data ?? {};
const established = { status: { conditions: [{ type: 'Established', status: 'True' }, { type: 'NamesAccepted', status: 'True' }] } };
const slice = (ready = true) => [{ endpoints: [{ addresses: ['10.1.0.5'], conditions: { ready } }] }];

function healthy(): ClusterObjects {
  const caBundle = b64(bundleOf(CA));
  return {
    namespace: SYSTEM,
    crds: Object.fromEntries(CRD_NAMES.map((n) => [n, found(established)])),
    webhook: found({ webhooks: [{ name: 'inject.meshlet.io', clientConfig: { caBundle } }, { name: 'inject-pod.meshlet.io', clientConfig: { caBundle } }] }),
    validator: found({ webhooks: [{ name: 'validate.meshlet.io', clientConfig: { caBundle } }] }),
    deployment: found({ spec: { replicas: 2 }, status: { readyReplicas: 2 } }),
    services: Object.fromEntries(SERVICE_NAMES.map((n) => [n, found(slice())])),
    ca: found(caView(dataOf(CA))),
    pods: found({ namespaces: [], pods: [] }),
  };
}

const byCheck = (rs: CheckResult[]): Record<string, CheckResult> => Object.fromEntries(rs.map((r) => [r.check, r]));
const ALL_CHECKS = [...CRD_NAMES.map((n) => `crd/${n}`), `webhook/${WEBHOOK_NAME}`, `webhook/${VALIDATOR_NAME}`, `deployment/${DEPLOYMENT_NAME}`, ...SERVICE_NAMES.map((n) => `service/${n}`), 'ca/trust-anchors', 'ca/issuer', 'pods/sidecar'];

t.test('evaluate: a healthy install is all ok, one result per check, in a fixed order', async (t) => {
  const rs = evaluate(healthy(), NOW);
  t.same(rs.map((r) => r.check), ALL_CHECKS);
  t.same(rs.filter((r) => r.status !== 'ok'), []);
  t.same(rs.filter((r) => r.fix !== undefined), [], 'no advice when nothing is wrong');
  t.match(byCheck(rs)['ca/issuer']?.message, /valid until .* \(89 days left\)/);
});

t.test('evaluate: CRDs missing or not Established, read errors', async (t) => {
  const o = healthy();
  o.crds['trafficsplits.meshlet.io'] = { state: 'missing' };
  o.crds['authorizationpolicies.meshlet.io'] = found({ status: { conditions: [{ type: 'Established', status: 'False', message: 'not all names are accepted' }] } });
  o.deployment = { state: 'error', error: 'HTTP 403 (forbidden)' };
  const r = byCheck(evaluate(o, NOW));
  t.match(r['crd/trafficsplits.meshlet.io'], { status: 'fail', message: 'not installed', fix: APPLY });
  t.match(r['crd/authorizationpolicies.meshlet.io'], { status: 'fail', message: /not Established \(not all names are accepted\)/ });
  t.match(r[`deployment/${DEPLOYMENT_NAME}`], { status: 'fail', message: /cannot read .*HTTP 403/ });
});

t.test('evaluate: the webhook caBundle must be PEM, currently valid, and hold the trust anchors', async (t) => {
  const withBundles = (...bundles: Array<string | undefined>): Record<string, CheckResult> => {
    const o = healthy();
    o.webhook = found({ webhooks: bundles.map((caBundle, i) => ({ name: `hook${i}.meshlet.io`, clientConfig: caBundle === undefined ? {} : { caBundle } })) });
    return byCheck(evaluate(o, NOW));
  };
  const hook = `webhook/${WEBHOOK_NAME}`;
  t.match(withBundles(undefined, b64(bundleOf(CA)))[hook], { status: 'fail', message: 'hook0.meshlet.io has no caBundle', fix: /docs\/install\.md/ });
  t.match(withBundles(b64('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'))[hook], { status: 'fail', message: /not PEM certificates/ });
  t.match(withBundles(b64('hello'))[hook], { status: 'fail', message: /not PEM certificates/ });
  const expired = initCa({ now: NOW - 400 * DAY_MS });
  t.match(withBundles(b64(bundleOf(CA) + bundleOf(expired)))[hook], { status: 'fail', message: /caBundle serial \w+ expired/ });
  t.match(withBundles(b64(bundleOf(OTHER_CA)))[hook], { status: 'warn', message: /lacks trust anchor \w+ of Secret meshlet-system\/meshlet-ca/ }, 'valid, but not the anchor the CA Secret holds');
  t.match(withBundles(b64(bundleOf(OTHER_CA) + bundleOf(CA)))[hook], { status: 'ok' }, 'an extra certificate is fine');
  const o = healthy();
  o.webhook = { state: 'missing' };
  t.match(byCheck(evaluate(o, NOW))[hook], { status: 'fail', message: 'MutatingWebhookConfiguration not installed', fix: APPLY });
  // The validator's configuration gets the same checks, on its own line.
  const v = healthy();
  v.validator = found({ webhooks: [{ name: 'validate.meshlet.io', clientConfig: {} }] });
  let r = byCheck(evaluate(v, NOW));
  t.match(r[`webhook/${VALIDATOR_NAME}`], { status: 'fail', message: 'validate.meshlet.io has no caBundle', fix: /docs\/install\.md/ });
  t.equal(r[hook]?.status, 'ok', 'the injector line is not affected');
  v.validator = { state: 'missing' };
  r = byCheck(evaluate(v, NOW));
  t.match(r[`webhook/${VALIDATOR_NAME}`], { status: 'fail', message: 'ValidatingWebhookConfiguration not installed', fix: APPLY });
});

t.test('evaluate: control plane replicas and Service endpoints', async (t) => {
  const o = healthy();
  o.deployment = found({ spec: { replicas: 2 }, status: { readyReplicas: 1 } });
  o.services['meshlet-webhook'] = found(slice(false));
  o.services['meshlet-control-plane'] = { state: 'missing' };
  let r = byCheck(evaluate(o, NOW));
  t.match(r[`deployment/${DEPLOYMENT_NAME}`], { status: 'warn', message: '1/2 replicas ready' });
  t.match(r['service/meshlet-webhook'], { status: 'fail', message: /no ready endpoints/ });
  t.match(r['service/meshlet-control-plane'], { status: 'fail', message: /Service not found/, fix: APPLY });
  o.deployment = found({ spec: { replicas: 2 }, status: {} });
  o.services['meshlet-webhook'] = found([]);
  r = byCheck(evaluate(o, NOW));
  t.match(r[`deployment/${DEPLOYMENT_NAME}`], { status: 'fail', message: /no ready replicas \(0\/2\)/, fix: /rollout status/ });
  t.match(r['service/meshlet-webhook'], { status: 'fail' });
});

t.test('evaluate: anchor and issuer windows — warn under 60 days, fail expired or not yet valid', async (t) => {
  const o = healthy();
  const at = (now: number): Record<string, CheckResult> => byCheck(evaluate(o, now));
  const issuerEnd = CA.issuer.notAfterMs;
  const anchorEnd = CA.anchor.notAfterMs;
  t.match(at(issuerEnd - 61 * DAY_MS)['ca/issuer'], { status: 'ok', message: /61 days left/ });
  t.match(at(issuerEnd - 59 * DAY_MS)['ca/issuer'], { status: 'warn', message: /59 days left/, fix: /meshlet identity rotate-issuer --ca-secret meshlet-system\/meshlet-ca/ });
  t.match(at(issuerEnd + 1)['ca/issuer'], { status: 'fail', message: /expired/ });
  t.match(at(CA.issuer.notBeforeMs - 1)['ca/issuer'], { status: 'fail', message: /not valid yet/ });
  t.match(at(CA.anchor.notBeforeMs - 1)['ca/trust-anchors'], { status: 'fail', message: /not valid yet/ });
  t.match(at(anchorEnd - 30 * DAY_MS)['ca/trust-anchors'], { status: 'warn', message: /1 anchor: .*30 days left/, fix: /add-anchor/ });
  t.match(at(anchorEnd)['ca/trust-anchors'], { status: 'fail', message: /expired/ });
  t.match(at(issuerEnd - 59 * DAY_MS)['ca/trust-anchors'], { status: 'ok' });
});

t.test('evaluate: a CA Secret that is missing, broken, or inconsistent; no key material in any output', async (t) => {
  const o = healthy();
  o.ca = { state: 'missing' };
  let r = byCheck(evaluate(o, NOW));
  t.match(r['ca/trust-anchors'], { status: 'fail', message: 'CA Secret meshlet-system/meshlet-ca not found', fix: /^meshlet install/ });
  t.match(r['ca/issuer'], { status: 'fail', fix: /^meshlet install/ });
  o.namespace = 'elsewhere';
  t.match(byCheck(evaluate(o, NOW))['ca/issuer']?.fix, /meshlet install --kubeconfig FILE --namespace elsewhere/);

  // ca.json that does not parse: the message must not quote it (JSON.parse errors do).
  const secretText = '{"issuer": {"keyPem": "-----BEGIN PRIVATE KEY-----\\nTOP-SECRET';
  const broken = caView({ 'ca.crt': b64(bundleOf(CA)), 'ca.json': b64(secretText) });
  t.same(broken, { bundlePem: bundleOf(CA), issuerProblem: 'data["ca.json"] is not JSON' });
  t.same(caView({ 'ca.crt': b64(bundleOf(CA)) }).issuerProblem, 'has no data["ca.json"]');
  t.same(caView({ 'ca.json': b64('{"issuer": {"keyPem": "x"}}') }), { issuerProblem: 'data["ca.json"] has no issuer.certPem' });
  const view = caView(dataOf(CA));
  t.same(Object.keys(view).toSorted(), ['bundlePem', 'issuerCertPem'], 'only certificates leave caView()');
  t.notMatch(JSON.stringify(view), /PRIVATE KEY|keyPem/);

  const o2 = healthy();
  o2.ca = found(broken);
  r = byCheck(evaluate(o2, NOW));
  t.match(r['ca/issuer'], { status: 'fail', message: /ca\.json"\] is not JSON/ });
  t.match(r['ca/trust-anchors'], { status: 'ok' });
  o2.ca = found({ ...caView(dataOf(CA)), bundlePem: bundleOf(OTHER_CA) });
  r = byCheck(evaluate(o2, NOW));
  t.match(r['ca/issuer'], { status: 'fail', message: /not signed by any anchor/ });
  o2.ca = found({ issuerCertPem: CA.issuer.certPem });
  t.match(byCheck(evaluate(o2, NOW))['ca/trust-anchors'], { status: 'fail', message: /"ca\.crt"\] is missing/ });
  t.notMatch(JSON.stringify([evaluate(healthy(), NOW), evaluate(o2, NOW)]), /PRIVATE KEY|TOP-SECRET/);
});

t.test('evaluate: Pods the injector should have meshed, without the proxy container → warn listing them', async (t) => {
  const pod = (ns: string, name: string, o: { containers?: string[]; init?: string[]; annotations?: Record<string, string>; labels?: Record<string, string>; hostNetwork?: boolean; phase?: string; deleting?: boolean } = {}): PodView => ({
    metadata: { namespace: ns, name, ...(o.annotations ? { annotations: o.annotations } : {}), ...(o.labels ? { labels: o.labels } : {}), ...(o.deleting ? { deletionTimestamp: new Date(NOW) } : {}) },
    spec: { containers: (o.containers ?? ['app']).map((n) => ({ name: n })), ...(o.init ? { initContainers: o.init.map((n) => ({ name: n })) } : {}), ...(o.hostNetwork ? { hostNetwork: true } : {}) },
    status: { phase: o.phase ?? 'Running' },
  });
  const labelled = { 'meshlet.io/inject': 'enabled' };
  const o = healthy();
  o.pods = found({
    namespaces: [
      { metadata: { name: 'shop', labels: labelled } }, { metadata: { name: 'plain' } }, { metadata: { name: 'kube-system', labels: labelled } },
      { metadata: { name: SYSTEM, labels: labelled } },
    ],
    pods: [
      pod('shop', 'web'),
      pod('shop', 'meshed', { containers: ['app', PROXY_CONTAINER_NAME] }),
      pod('shop', 'native-sidecar', { init: [PROXY_CONTAINER_NAME] }),
      pod('shop', 'opted-out', { annotations: { 'meshlet.io/inject': 'disabled' } }),
      pod('shop', 'opted-out-label', { labels: { 'meshlet.io/inject': 'disabled' } }),
      pod('shop', 'host', { hostNetwork: true }),
      pod('shop', 'done', { phase: 'Succeeded' }),
      pod('shop', 'going', { deleting: true }),
      pod('plain', 'solo', { annotations: { 'meshlet.io/inject': 'enabled' } }),
      pod('plain', 'solo-meshed', { annotations: { 'meshlet.io/inject': 'enabled' }, containers: ['app', PROXY_CONTAINER_NAME] }),
      pod('plain', 'other'),
      pod('kube-system', 'dns'),
      pod(SYSTEM, 'cp'),
    ],
  });
  const r = byCheck(evaluate(o, NOW))['pods/sidecar'];
  t.match(r, { status: 'warn', items: ['plain/solo', 'shop/web'], message: /2 of 5 opted-in Pods lack the meshlet-proxy sidecar .*: plain\/solo, shop\/web$/, fix: /rollout restart/ });

  o.pods = found({ namespaces: [{ metadata: { name: 'shop', labels: labelled } }], pods: Array.from({ length: 12 }, (_, i) => pod('shop', `p${String(i).padStart(2, '0')}`)) });
  const many = byCheck(evaluate(o, NOW))['pods/sidecar'];
  t.equal(many?.items?.length, 12, 'json lists every one');
  t.match(many?.message, /shop\/p09 and 2 more$/, 'the table line lists ten');
});

const notFound = () => Promise.reject(Object.assign(new Error('HTTP-Code: 404'), { code: 404 }));
const forbidden = () => Promise.reject(Object.assign(new Error('HTTP-Code: 403'), { code: 403, body: '{"kind":"Status","message":"pods is forbidden: User \\"x\\" cannot list"}' }));
const down = () => Promise.reject(new Error('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:1') }));

t.test('gather: 404 is "missing", other errors are reported per check; no answer at all is a CliError', async (t) => {
  const reader: ClusterReader = {
    crd: async () => established, webhookConfiguration: notFound, validatingWebhookConfiguration: notFound, deployment: notFound, service: async () => ({}),
    endpointSlices: async () => slice(), secretData: notFound, namespaces: async () => [], pods: forbidden,
  };
  const o = await gather(reader, SYSTEM);
  t.same([o.webhook, o.validator, o.deployment, o.ca], [{ state: 'missing' }, { state: 'missing' }, { state: 'missing' }, { state: 'missing' }]);
  t.same(o.services['meshlet-webhook'], found(slice()));
  t.same(o.pods, { state: 'error', error: 'HTTP 403 (pods is forbidden: User "x" cannot list)' });
  const dead: ClusterReader = { crd: down, webhookConfiguration: down, validatingWebhookConfiguration: down, deployment: down, service: down, endpointSlices: down, secretData: down, namespaces: down, pods: down };
  await t.rejects(gather(dead, SYSTEM), { name: 'CliError', message: 'cannot read the cluster: fetch failed: connect ECONNREFUSED 127.0.0.1:1', hint: /--kubeconfig/ });
});

// ---- the real CLI against a real kube-apiserver -----------------------------------------------

const k = kubeForFile(t);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The table's rows by check name. */
  rows: Record<string, { status: string; detail: string }>;
}

/** The real `meshlet check` (bin/meshlet.ts), with the test cluster's admin credentials. */
function check(...args: string[]): Run {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/meshlet.ts'), 'check', '--kubeconfig', k().kubeconfigPath, ...args], { encoding: 'utf8' });
  const rows: Run['rows'] = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^(ok|warn|fail)\s+(\S+)\s+(.*)$/.exec(line);
    if (m) rows[m[2]!] = { status: m[1]!, detail: m[3]! };
  }
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, rows };
}
const statuses = (r: Run): Record<string, string> => Object.fromEntries(Object.entries(r.rows).map(([c, v]) => [c, v.status]));

async function kubectl(args: string[], input?: unknown): Promise<string> {
  const r = await k().kubectl(args, input === undefined ? undefined : { input: typeof input === 'string' ? input : JSON.stringify(input) });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** What the Deployment controller and the EndpointSlice controller would write (neither runs here). */
async function markRunning(ns: string): Promise<void> {
  await kubectl(['-n', ns, 'patch', 'deployment', DEPLOYMENT_NAME, '--subresource=status', '--type=merge', '-p',
    JSON.stringify({ status: { observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 } })]);
  const ports: Record<string, { name: string; port: number }> = { 'meshlet-control-plane': { name: 'config', port: 8443 }, 'meshlet-webhook': { name: 'webhook', port: 9443 } };
  for (const svc of SERVICE_NAMES) {
    await kubectl(['apply', '-f', '-'], {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${svc}-test`, namespace: ns, labels: { 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'meshlet-check-test' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.1.0.5'], conditions: { ready: true } }, { addresses: ['10.1.0.6'], conditions: { ready: true } }],
      ports: [{ ...ports[svc], protocol: 'TCP' }],
    });
  }
}

/** A control plane (Deployment, Services) in `ns`, marked running, and the CA Secret for `state`, written as secret-store.ts writes it. */
async function installIn(ns: string, state: CaState): Promise<void> {
  const labels = { 'app.kubernetes.io/name': DEPLOYMENT_NAME };
  await kubectl(['apply', '-f', '-'], {
    apiVersion: 'v1', kind: 'List', items: [
      { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: DEPLOYMENT_NAME, namespace: ns }, spec: { replicas: 2, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'cp', image: 'ghcr.io/meshlet/control-plane:0.1.0' }] } } } },
      ...SERVICE_NAMES.map((name) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { selector: labels, ports: [{ port: 443, targetPort: 9443 }] } })),
    ],
  });
  await markRunning(ns);
  await k().kc.makeApiClient(CoreV1Api).createNamespacedSecret({ namespace: ns, body: caSecretObject({ state }, { namespace: ns, name: CA_SECRET_NAME }) });
}

t.test('the names check.ts looks for are the ones manifests/ installs', async (t) => {
  type Obj = { kind: string; metadata: { name: string }; webhooks?: Array<{ clientConfig: { service: { name: string; namespace: string } } }> };
  const objs = parseAllDocuments(await kubectl(['kustomize', MANIFESTS])).map((d) => d.toJS() as Obj);
  const names = (kind: string): string[] => objs.filter((o) => o.kind === kind).map((o) => o.metadata.name).toSorted();
  t.same(names('CustomResourceDefinition'), [...CRD_NAMES].toSorted());
  t.same(names('MutatingWebhookConfiguration'), [WEBHOOK_NAME]);
  t.same(names('ValidatingWebhookConfiguration'), [VALIDATOR_NAME]);
  t.same(names('Deployment'), [DEPLOYMENT_NAME]);
  t.same(names('Service'), [...SERVICE_NAMES].toSorted());
  t.same(names('Namespace'), [SYSTEM]);
  const env = readFileSync(path.join(MANIFESTS, 'config.env'), 'utf8');
  t.match(env, new RegExp(`^MESHLET_CA_SECRET=${SYSTEM}/${CA_SECRET_NAME}$`, 'm'));
  t.match(env, new RegExp(`^MESHLET_PROXY_CONTAINER_NAME=${PROXY_CONTAINER_NAME}$`, 'm'));
});

t.test('an empty cluster: every install check fails and says what to do; exit 1', async (t) => {
  const r = check();
  t.equal(r.code, 1, 'exit 1', { stderr: r.stderr });
  t.same(Object.keys(r.rows), ALL_CHECKS, 'one line per check');
  t.same(statuses(r), { ...Object.fromEntries(ALL_CHECKS.map((c) => [c, 'fail'])), 'pods/sidecar': 'ok' });
  for (const c of [...CRD_NAMES.map((n) => `crd/${n}`), `webhook/${WEBHOOK_NAME}`, `webhook/${VALIDATOR_NAME}`, `deployment/${DEPLOYMENT_NAME}`, 'service/meshlet-webhook']) {
    t.match(r.rows[c]?.detail, `→ ${APPLY}`, `${c} says to apply the manifests`);
  }
  t.match(r.rows['ca/issuer']?.detail, /CA Secret meshlet-system\/meshlet-ca not found → meshlet install --kubeconfig FILE/);
  t.match(r.stdout, /\n10 failed, 0 warnings, 1 ok\n$/);
  t.equal(r.stderr, '');
});

t.test('the full install: manifests, meshlet install, a running control plane, the caBundle patch → all ok, exit 0', async (t) => {
  await kubectl(['apply', '--server-side', '-k', MANIFESTS]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=30s', ...CRD_NAMES.map((n) => `crd/${n}`)]);
  const install = spawnSync(process.execPath, [path.join(ROOT, 'bin/meshlet.ts'), 'install', '--kubeconfig', k().kubeconfigPath], { encoding: 'utf8' });
  t.equal(install.status, 0, install.stderr);

  const half = check();
  t.equal(half.code, 1, 'installed, but nothing runs yet');
  t.same(Object.entries(statuses(half)).filter(([, s]) => s !== 'ok').map(([c]) => c), [`webhook/${WEBHOOK_NAME}`, `webhook/${VALIDATOR_NAME}`, `deployment/${DEPLOYMENT_NAME}`, ...SERVICE_NAMES.map((n) => `service/${n}`)]);
  t.match(half.rows[`webhook/${WEBHOOK_NAME}`]?.detail, /inject\.meshlet\.io has no caBundle; inject-pod\.meshlet\.io has no caBundle → set caBundle .*docs\/install\.md/);
  t.match(half.rows[`webhook/${VALIDATOR_NAME}`]?.detail, /validate\.meshlet\.io has no caBundle → set caBundle .*docs\/install\.md/);
  t.match(half.rows[`deployment/${DEPLOYMENT_NAME}`]?.detail, /no ready replicas \(0\/2\)/);

  await markRunning(SYSTEM);
  // docs/install.md's patch.
  const ca = await kubectl(['-n', SYSTEM, 'get', 'secret', CA_SECRET_NAME, '-o', 'jsonpath={.data.ca\\.crt}']);
  await kubectl(['patch', 'mutatingwebhookconfiguration', WEBHOOK_NAME, '--type=json', '-p', JSON.stringify([0, 1].map((i) => ({ op: 'add', path: `/webhooks/${i}/clientConfig/caBundle`, value: ca })))]);
  await kubectl(['patch', 'validatingwebhookconfiguration', VALIDATOR_NAME, '--type=json', '-p', JSON.stringify([{ op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: ca }])]);

  const r = check();
  t.equal(r.code, 0, 'exit 0', { output: r.stdout + r.stderr });
  t.same(statuses(r), Object.fromEntries(ALL_CHECKS.map((c) => [c, 'ok'])), 'every check ok', { output: r.stdout });
  t.match(r.rows['ca/issuer']?.detail, /valid until \S+ \((89|90) days left\)/);
  t.match(r.rows['ca/trust-anchors']?.detail, /1 anchor: serial \w+ valid until \S+ \((364|365) days left\)/);
  t.match(r.rows[`deployment/${DEPLOYMENT_NAME}`]?.detail, '2/2 replicas ready');
  t.match(r.stdout, /\n0 failed, 0 warnings, 11 ok\n$/);
  t.notMatch(r.stdout, /PRIVATE KEY/);
});

t.test('-o json: valid JSON with every check, the same verdicts as the table', async (t) => {
  const table = check();
  const r = check('-o', 'json');
  t.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as { server: string; namespace: string; ok: boolean; summary: Record<string, number>; checks: CheckResult[] };
  t.match(doc, { server: k().server, namespace: SYSTEM, ok: true, summary: { ok: 11, warn: 0, fail: 0 } });
  t.same(doc.checks.map((c) => c.check), ALL_CHECKS);
  t.same(Object.fromEntries(doc.checks.map((c) => [c.check, c.status])), statuses(table));
  for (const c of doc.checks) t.match(c, { message: String });
});

t.test('an issuer with 30 days left: warn (exit 0); the webhook caBundle lacks this CA\'s anchor: warn', async (t) => {
  const ns = await k().newNamespace('check-issuer');
  await installIn(ns, initCa({ now: Date.now(), issuerValidityDays: 30 }));
  const r = check('--namespace', ns);
  t.equal(r.code, 0, 'exit 0: warnings only', { output: r.stdout });
  t.match(r.rows['ca/issuer'], { status: 'warn', detail: new RegExp(`\\((29|30) days left\\) → meshlet identity rotate-issuer --ca-secret ${ns}/meshlet-ca`) });
  t.equal(r.rows['ca/trust-anchors']?.status, 'ok');
  t.match(r.rows[`webhook/${WEBHOOK_NAME}`], { status: 'warn', detail: new RegExp(`lacks trust anchor \\w+ of Secret ${ns}/meshlet-ca`) });
  t.match(r.rows[`webhook/${VALIDATOR_NAME}`], { status: 'warn', detail: new RegExp(`validate\\.meshlet\\.io: caBundle lacks trust anchor \\w+ of Secret ${ns}/meshlet-ca`) });
  t.same(Object.entries(statuses(r)).filter(([, s]) => s !== 'ok').map(([c]) => c), [`webhook/${WEBHOOK_NAME}`, `webhook/${VALIDATOR_NAME}`, 'ca/issuer']);
  t.match(r.stdout, /\n0 failed, 3 warnings, 8 ok\n$/);
});

t.test('an expired trust anchor: fail, exit 1', async (t) => {
  const ns = await k().newNamespace('check-anchor');
  await installIn(ns, initCa({ now: Date.now() - 400 * DAY_MS })); // anchor 365 days: expired 35 days ago (its issuer too)
  const r = check('--namespace', ns, '-o', 'json');
  t.equal(r.code, 1);
  const checks = byCheck((JSON.parse(r.stdout) as { checks: CheckResult[] }).checks);
  t.match(checks['ca/trust-anchors'], { status: 'fail', message: /1 anchor: serial \w+ expired/, fix: new RegExp(`meshlet identity add-anchor --ca-secret ${ns}/meshlet-ca`) });
  t.match(checks['ca/issuer'], { status: 'fail', message: /expired/ });
  t.equal(checks[`deployment/${DEPLOYMENT_NAME}`]?.status, 'ok', 'the rest of this install is fine');
});

const podObject = (ns: string, name: string, extra: { containers?: string[]; init?: string[]; annotations?: Record<string, string> } = {}) => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name, namespace: ns, ...(extra.annotations ? { annotations: extra.annotations } : {}) },
  spec: {
    containers: (extra.containers ?? ['app']).map((n) => ({ name: n, image: 'registry.example/app:1' })),
    ...(extra.init ? { initContainers: extra.init.map((n) => ({ name: n, image: 'ghcr.io/meshlet/proxy:0.1.0', restartPolicy: 'Always' })) } : {}),
  },
});

t.test('a labelled namespace with a Pod that lacks the sidecar: warn naming it; exit 0', async (t) => {
  const shop = await k().newNamespace('check-shop');
  const other = await k().newNamespace('check-other');
  // Created before the label (as Pods that predate opting in are): no injector runs here, and the
  // webhook fails closed, so a Pod created in the labelled namespace would be refused.
  await kubectl(['apply', '-f', '-'], {
    apiVersion: 'v1', kind: 'List', items: [
      podObject(shop, 'web'),
      podObject(shop, 'meshed', { containers: ['app', PROXY_CONTAINER_NAME] }),
      podObject(shop, 'native', { init: [PROXY_CONTAINER_NAME] }),
      podObject(shop, 'opted-out', { annotations: { 'meshlet.io/inject': 'disabled' } }),
      podObject(other, 'solo'),
      podObject(other, 'bystander'),
    ],
  });
  await kubectl(['label', 'namespace', shop, 'meshlet.io/inject=enabled']);
  await kubectl(['-n', other, 'annotate', 'pod', 'solo', 'meshlet.io/inject=enabled']);
  t.teardown(async () => {
    await k().kubectl(['label', 'namespace', shop, 'meshlet.io/inject-']);
    await k().kubectl(['-n', other, 'annotate', 'pod', 'solo', 'meshlet.io/inject-']);
  });

  const r = check();
  t.equal(r.code, 0, 'warnings do not fail the check');
  t.match(r.rows['pods/sidecar'], { status: 'warn', detail: `2 of 4 opted-in Pods lack the ${PROXY_CONTAINER_NAME} sidecar (unmeshed: plaintext, no identity): ${other}/solo, ${shop}/web → ` });
  t.match(r.stdout, /\n0 failed, 1 warning, 10 ok\n$/);
  const json = byCheck((JSON.parse(check('-o', 'json').stdout) as { checks: CheckResult[] }).checks);
  t.same(json['pods/sidecar']?.items, [`${other}/solo`, `${shop}/web`]);
});

t.test('bad usage exits 2; an unreachable API server exits 1 with a hint', async (t) => {
  const bad = check('-o', 'yaml');
  t.equal(bad.code, 2);
  t.match(bad.stderr, /-o yaml: want table or json/);
  t.equal(check('--bogus').code, 2);
  t.equal(check('--namespace', 'Not_A_Namespace').code, 2);

  const dir = mkdtempSync(path.join(tmpdir(), 'meshlet-check-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = JSON.parse(readFileSync(k().kubeconfigPath, 'utf8')) as { clusters: Array<{ cluster: { server: string } }> };
  // A port nothing listens on (fetch refuses a few "bad ports" such as 1 before it connects).
  const closed = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
  config.clusters[0]!.cluster.server = `https://127.0.0.1:${closed}`;
  writeFileSync(path.join(dir, 'kubeconfig'), JSON.stringify(config));
  const down = check('--kubeconfig', path.join(dir, 'kubeconfig')); // the last --kubeconfig wins
  t.equal(down.code, 1);
  t.equal(down.stdout, '');
  t.match(down.stderr, /^meshlet check: cannot read the cluster: fetch failed: .*ECONNREFUSED.*\nCheck --kubeconfig FILE/);
});
