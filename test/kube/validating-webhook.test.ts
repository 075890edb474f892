// The meshlet.io validator behind a REAL kube-apiserver: the control plane's webhook server runs
// here (HTTPS, certificate from the meshlet CA), manifests/webhook/validatingwebhookconfiguration.yaml
// is applied with its clientConfig pointed at it by url and caBundle = the trust bundle, and kubectl
// talks to the API server. A ServicePolicy that passes the CRD's CEL rules but fails the control
// plane's check (a backoff base over the default cap) is refused with the problem and never stored,
// on CREATE and on UPDATE; a good one is stored; nothing else reaches the webhook (its counter and
// log say so); with the webhook down, ServicePolicy writes fail (failurePolicy Fail) and the rest works.
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

const CONFIG_YAML = new URL('../../manifests/webhook/validatingwebhookconfiguration.yaml', import.meta.url);
const V = 'meshlet.io/v1alpha1';
const DENIED = 'admission webhook "validate.meshlet.io" denied the request';
const k = kubeForFile(t, { crds: true });

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const doc: CaDocument = { state: initCa({ now: Date.now() }) };
const registry = new Registry();
const logs: Array<{ msg: string; fields: Record<string, unknown> }> = [];
let webhook: Webhook | undefined;

const servicePolicy = (ns: string, spec: unknown, name = 'api') => ({ apiVersion: V, kind: 'ServicePolicy', metadata: { name, namespace: ns }, spec });
const GOOD = { targetRef: { service: 'api' }, timeouts: { request: 2000, perTry: 500 }, retry: { attempts: 3 } };
/** Passes every CEL rule (no cap is set to compare with) but not the control plane: the default cap is 250. */
const BAD = { targetRef: { service: 'api' }, timeouts: { request: 2000 }, retry: { backoff: { base: 500 } }, breaker: { baseEjection: 70_000 } };
const BAD_MESSAGE = (ns: string) =>
  `ServicePolicy "api" in ${ns} is invalid (the meshlet control plane would not apply it): ` +
  '/spec/retry/backoff/base: backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default); ' +
  '/spec/breaker/baseEjection: baseEjection is larger than maxEjection: 70000 ms (set here) > 60000 ms (the default)';

const apply = (d: unknown, extra: string[] = []) => k().kubectl(['apply', ...extra, '-f', '-'], { input: JSON.stringify(d) });
async function getPolicy(ns: string, name = 'api'): Promise<{ code: number; obj?: Json; stderr: string }> {
  const r = await k().kubectl(['get', 'svcpolicy', '-n', ns, name, '-o', 'json']);
  return r.code === 0 ? { code: 0, obj: JSON.parse(r.stdout) as Json, stderr: '' } : { code: r.code, stderr: r.stderr };
}
/** Every review the validator answered, whatever its kind and outcome. */
async function reviews(): Promise<number> {
  const m = (await registry.getSingleMetric('meshlet_validations_total')!.get()) as { values: Array<{ value: number }> };
  return m.values.reduce((sum, v) => sum + v.value, 0);
}
async function counted(kind: string, outcome: string): Promise<number> {
  const m = (await registry.getSingleMetric('meshlet_validations_total')!.get()) as { values: Array<{ value: number; labels: Record<string, string> }> };
  return m.values.find((v) => v.labels.kind === kind && v.labels.outcome === outcome)?.value ?? 0;
}

/** The API server picks a new webhook configuration up a moment later: wait until a bad policy in `ns` is refused by it. */
async function untilValidated(ns: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await apply(servicePolicy(ns, BAD, 'probe'), ['--dry-run=server']);
    if (r.stderr.includes(DENIED)) return;
    if (Date.now() > deadline) throw new Error(`a bad ServicePolicy in ${ns} never reached the validator: ${r.code} ${r.stdout}${r.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

t.before(async () => {
  webhook = createWebhook({
    listen: { host: '127.0.0.1', port: 0 },
    credentials: ({ ca }) => caCredentials({ ca, names: { ...DEFAULT_SERVING_NAMES, service: WEBHOOK_SERVICE }, wallClock: systemWallClock }),
    settings: (d) => defaultSettings({ trustAnchorsPem: d ? trustBundle(d.state).join('') : '' }),
    metrics: new InjectorMetrics(registry),
    validationMetrics: new ValidationMetrics(registry),
    log: (_level, msg, fields = {}) => logs.push({ msg, fields }),
    clock: systemClock,
  });
  await webhook.start({ ca: () => doc });
  const port = (webhook.address() as AddressInfo).port;
  // The shipped configuration, with clientConfig service → url (the API server here has no Service routing).
  const config = parse(readFileSync(CONFIG_YAML, 'utf8')) as Json;
  for (const h of config.webhooks as Json[]) h.clientConfig = { url: `https://127.0.0.1:${port}${h.clientConfig.service.path}`, caBundle: Buffer.from(trustBundle(doc.state).join('')).toString('base64') };
  const r = await k().kubectl(['apply', '--server-side', '-f', '-'], { input: JSON.stringify(config) });
  if (r.code !== 0) throw new Error(`applying the webhook configuration failed: ${r.stderr}`);
});
t.teardown(() => webhook?.close());

t.test('kubectl apply of a ServicePolicy the control plane would not apply is refused with every problem and its path; nothing is stored', async (t) => {
  const ns = await k().newNamespace('sp-create');
  await untilValidated(ns);
  const before = await counted('ServicePolicy', 'denied');
  const r = await apply(servicePolicy(ns, BAD));
  t.not(r.code, 0, 'kubectl apply fails');
  t.match(r.stderr, `${DENIED}: ${BAD_MESSAGE(ns)}`, 'and prints each problem with its path');
  t.match(r.stderr, /^The request is invalid: error when creating "STDIN": admission webhook "validate.meshlet.io" denied the request: ServicePolicy "api" in /, "as docs/install.md shows it (kubectl's words for a 422 Invalid)");
  const got = await getPolicy(ns);
  t.not(got.code, 0);
  t.match(got.stderr, /NotFound|not found/, 'nothing stored');
  t.equal(await counted('ServicePolicy', 'denied'), before + 1, 'the validator counted the denial');
  t.match(logs.findLast((l) => l.msg === 'ServicePolicy refused')?.fields, { operation: 'CREATE', namespace: ns, name: 'api', problems: [/^\/spec\/retry\/backoff\/base: /, /^\/spec\/breaker\/baseEjection: /] }, 'and logged it');
});

t.test('a valid ServicePolicy is admitted; an UPDATE to an invalid version is refused and the stored one stays', async (t) => {
  const ns = await k().newNamespace('sp-update');
  await untilValidated(ns);
  const created = await apply(servicePolicy(ns, GOOD));
  t.equal(created.code, 0, created.stderr);
  t.match(created.stdout, `servicepolicy.meshlet.io/api created`);
  const first = await getPolicy(ns);
  t.same(first.obj?.spec, GOOD, 'stored as written');
  t.equal(first.obj?.metadata.generation, 1);

  const updated = await apply(servicePolicy(ns, BAD));
  t.not(updated.code, 0);
  t.match(updated.stderr, `${DENIED}: ${BAD_MESSAGE(ns)}`);
  const patched = await k().kubectl(['patch', 'svcpolicy', 'api', '-n', ns, '--type=merge', '-p', JSON.stringify({ spec: { retry: { backoff: { base: 500 } } } })]);
  t.not(patched.code, 0, 'kubectl patch too');
  t.match(patched.stderr, '/spec/retry/backoff/base: backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default)');
  const after = await getPolicy(ns);
  t.same(after.obj?.spec, GOOD, 'the stored version is the valid one');
  t.equal(after.obj?.metadata.generation, 1, 'no new generation: etcd never held the invalid edit');

  const fixed = await apply(servicePolicy(ns, { ...GOOD, retry: { attempts: 2, backoff: { base: 100, cap: 400 } } }));
  t.equal(fixed.code, 0, `a valid UPDATE goes through: ${fixed.stderr}`);
  t.equal((await getPolicy(ns)).obj?.metadata.generation, 2);
});

t.test('only ServicePolicy CREATE and UPDATE reach the webhook: other kinds, status writes and deletes never do', async (t) => {
  const ns = await k().newNamespace('sp-scope');
  await untilValidated(ns);
  t.equal((await apply(servicePolicy(ns, GOOD))).code, 0);
  const reviewsBefore = await reviews();
  const logsBefore = logs.length;
  const others: Array<[string, string[], string?]> = [
    ['a ConfigMap', ['create', 'configmap', 'c', '-n', ns, '--from-literal=a=b']],
    ['a Service', ['create', 'service', 'clusterip', 'api', '-n', ns, '--tcp=80:8080']],
    ['a TrafficSplit (meshlet.io, every check in its CRD)', ['apply', '-f', '-'], JSON.stringify({ apiVersion: V, kind: 'TrafficSplit', metadata: { name: 'web', namespace: ns }, spec: { service: 'web', backends: [{ service: 'web-v1', weight: 1 }] } })],
    ['an AuthorizationPolicy', ['apply', '-f', '-'], JSON.stringify({ apiVersion: V, kind: 'AuthorizationPolicy', metadata: { name: 'b', namespace: ns }, spec: { targetRef: { service: 'api' }, rules: [] } })],
    ["the control plane's status write", ['patch', 'svcpolicy', 'api', '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { observedGeneration: 1, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'in force', lastTransitionTime: '2026-12-07T00:00:00Z' }] } })]],
    ['a ServicePolicy delete', ['delete', 'svcpolicy', 'api', '-n', ns]],
  ];
  for (const [what, args, input] of others) {
    const r = await k().kubectl(args, input === undefined ? {} : { input });
    t.equal(r.code, 0, `${what}: ${r.stderr}`);
  }
  t.equal(await reviews(), reviewsBefore, 'the validator answered no review for any of them');
  t.same(logs.slice(logsBefore), [], 'and logged none');
  // The same counter moves for a ServicePolicy write (so the assertions above could fail).
  t.equal((await apply(servicePolicy(ns, GOOD))).code, 0);
  t.equal(await reviews(), reviewsBefore + 1, 'a ServicePolicy create is one review');
  t.match(logs.slice(logsBefore), [{ msg: 'ServicePolicy admitted', fields: { operation: 'CREATE', namespace: ns, name: 'api' } }]);
});

t.test('webhook down: ServicePolicy creates and updates fail (failurePolicy Fail); deletes and other objects go through', async (t) => {
  const ns = await k().newNamespace('sp-down');
  await untilValidated(ns);
  t.equal((await apply(servicePolicy(ns, GOOD))).code, 0);
  await webhook?.close();
  const created = await apply(servicePolicy(ns, GOOD, 'other'));
  t.not(created.code, 0, 'even a valid policy: the API server cannot ask');
  t.match(created.stderr, 'failed calling webhook "validate.meshlet.io"');
  t.not((await getPolicy(ns, 'other')).code, 0, 'not stored');
  const updated = await apply(servicePolicy(ns, { ...GOOD, retry: { attempts: 2 } }));
  t.match(updated.stderr, 'failed calling webhook "validate.meshlet.io"');
  t.same((await getPolicy(ns)).obj?.spec, GOOD);
  const cm = await k().kubectl(['create', 'configmap', 'c', '-n', ns, '--from-literal=a=b']);
  t.equal(cm.code, 0, cm.stderr);
  const deleted = await k().kubectl(['delete', 'svcpolicy', 'api', '-n', ns]);
  t.equal(deleted.code, 0, `a delete needs no webhook: ${deleted.stderr}`);
});
