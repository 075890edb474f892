// `meshlet check`: is meshlet installed and healthy in a cluster? One line per check (ok, warn, fail)
// with what to do. Guarantees: read-only; exit 1 only when a check fails; CA private keys never leave caView().

import { PROXY_CONTAINER_NAME, isMeshedPod } from '../../config/kube-model.ts';
import type { V1Pod } from '@kubernetes/client-node';
import { X509Certificate } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import { DAY_MS, isDnsLabel } from '../../ca/index.ts';
import { kubeClients } from '../../kube.ts';
import { CA_BUNDLE_KEY, CA_JSON_KEY, DEFAULT_CA_SECRET } from '../../store/secret-store.ts';
import { CliError, EXIT_FAILURE, EXIT_OK, HELP_FLAG, UsageError, flags, guarded, type Command, type Io } from '../command.ts';

// ---- what a meshlet install consists of (the names in manifests/; test/kube/check.test.ts keeps them in step) ----

export const DEFAULT_NAMESPACE = DEFAULT_CA_SECRET.namespace;
export const CRD_NAMES = ['trafficsplits.meshlet.io', 'authorizationpolicies.meshlet.io', 'servicepolicies.meshlet.io'] as const;
export const WEBHOOK_NAME = 'meshlet-proxy-injector';
/** The ServicePolicy validator's ValidatingWebhookConfiguration (same server, path /validate). */
export const VALIDATOR_NAME = 'meshlet-validator';
export const DEPLOYMENT_NAME = 'meshlet-control-plane';
export const SERVICE_NAMES = ['meshlet-control-plane', 'meshlet-webhook'] as const;
export const CA_SECRET_NAME = DEFAULT_CA_SECRET.name;
// The sidecar's name and the rule "this Pod runs the proxy" are the config source's
// (control-plane/config/kube-model.ts): the check and the identity decision use one rule.
export { PROXY_CONTAINER_NAME };
export const INJECT_KEY = 'meshlet.io/inject';
/** The webhook never sees Pods of these namespaces (kubernetes.io/metadata.name NotIn ...). */
export const NEVER_INJECTED = ['kube-system', DEFAULT_NAMESPACE] as const;
/** Certificates with less than this left are a warning. */
export const WARN_DAYS = 60;

const APPLY = 'kubectl apply --server-side -k manifests/';

// ---- what the checks read: the few fields they use (client-node's objects fit these shapes) ----

interface Meta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: Date | string;
}
export interface CrdView {
  status?: { conditions?: Array<{ type: string; status: string; reason?: string; message?: string }> };
}
export interface WebhookConfigView {
  webhooks?: Array<{ name: string; clientConfig: { caBundle?: string } }>;
}
export interface DeploymentView {
  spec?: { replicas?: number };
  status?: { readyReplicas?: number };
}
export interface EndpointSliceView {
  endpoints?: Array<{ addresses?: string[]; conditions?: { ready?: boolean } }>;
}
export interface NamespaceView {
  metadata?: Meta;
}
export interface PodView {
  metadata?: Meta;
  spec?: { hostNetwork?: boolean; containers?: Array<{ name: string }>; initContainers?: Array<{ name: string }> };
  status?: { phase?: string };
}
/** The public half of the CA Secret: the trust bundle and the issuer's certificate, never a key. */
export interface CaView {
  bundlePem?: string;
  issuerCertPem?: string;
  /** Why ca.json did not yield the issuer certificate (no key material in it). */
  issuerProblem?: string;
}

export type Lookup<T> = { state: 'found'; value: T } | { state: 'missing' } | { state: 'error'; error: string };

export interface ClusterObjects {
  namespace: string;
  crds: Record<string, Lookup<CrdView>>;
  webhook: Lookup<WebhookConfigView>;
  validator: Lookup<WebhookConfigView>;
  deployment: Lookup<DeploymentView>;
  /** By Service name: found = the Service exists, with its EndpointSlices. */
  services: Record<string, Lookup<EndpointSliceView[]>>;
  ca: Lookup<CaView>;
  pods: Lookup<{ namespaces: NamespaceView[]; pods: PodView[] }>;
}

export type Status = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  check: string;
  status: Status;
  message: string;
  /** What to do (absent when ok). */
  fix?: string;
  /** The objects a warning or failure is about, e.g. the Pods without the sidecar. */
  items?: string[];
}

/** Reads the cluster; a missing object is an error with `code: 404` (as client-node throws). */
export interface ClusterReader {
  crd(name: string): Promise<CrdView>;
  webhookConfiguration(name: string): Promise<WebhookConfigView>;
  validatingWebhookConfiguration(name: string): Promise<WebhookConfigView>;
  deployment(namespace: string, name: string): Promise<DeploymentView>;
  /** Throws 404 if the Service does not exist. */
  service(namespace: string, name: string): Promise<unknown>;
  endpointSlices(namespace: string, service: string): Promise<EndpointSliceView[]>;
  /** The Secret's data (base64 values, as the API returns them). */
  secretData(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  namespaces(): Promise<NamespaceView[]>;
  pods(): Promise<PodView[]>;
}

// ---- gathering ----

function httpCode(e: unknown): number | undefined {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** One line; for an API error its status and the API's message (never the object sent or read). */
function describeError(e: unknown): string {
  const code = httpCode(e);
  if (code === undefined) {
    // fetch's "fetch failed" says why only in its cause (ECONNREFUSED, a certificate error...).
    const parts: string[] = [];
    for (let c: unknown = e; c instanceof Error && parts.length < 3; c = c.cause) parts.push(c.message.split('\n')[0] ?? '');
    return parts.length ? parts.join(': ') : String(e);
  }
  const body = (e as { body?: unknown }).body;
  let detail = '';
  try {
    const message = (JSON.parse(typeof body === 'string' ? body : 'null') as { message?: unknown } | null)?.message;
    if (typeof message === 'string') detail = message.slice(0, 300);
  } catch {
    // not a Status object: the status code alone
  }
  return `HTTP ${code}${detail ? ` (${detail})` : ''}`;
}

async function lookup<T>(read: () => Promise<T>): Promise<Lookup<T>> {
  try {
    return { state: 'found', value: await read() };
  } catch (e) {
    return httpCode(e) === 404 ? { state: 'missing' } : { state: 'error', error: describeError(e) };
  }
}

/**
 * The public parts of the CA Secret's data. ca.json holds private keys: only issuer.certPem is
 * taken from it, and no message repeats its content (a JSON.parse error would quote it).
 */
export function caView(data: Record<string, string> | undefined): CaView {
  const text = (key: string): string | undefined => (data?.[key] === undefined ? undefined : Buffer.from(data[key] ?? '', 'base64').toString('utf8'));
  const out: CaView = {};
  const bundle = text(CA_BUNDLE_KEY);
  if (bundle !== undefined) out.bundlePem = bundle;
  const json = text(CA_JSON_KEY);
  if (json === undefined) return { ...out, issuerProblem: `has no data["${CA_JSON_KEY}"]` };
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    return { ...out, issuerProblem: `data["${CA_JSON_KEY}"] is not JSON` };
  }
  const pem = (doc as { issuer?: { certPem?: unknown } } | null)?.issuer?.certPem;
  if (typeof pem !== 'string') return { ...out, issuerProblem: `data["${CA_JSON_KEY}"] has no issuer.certPem` };
  return { ...out, issuerCertPem: pem };
}

/** Every read the checks need, at once. Throws CliError when the API server answered none of them. */
export async function gather(reader: ClusterReader, namespace: string): Promise<ClusterObjects> {
  const [crds, webhook, validator, deployment, services, ca, pods] = await Promise.all([
    Promise.all(CRD_NAMES.map(async (n) => [n, await lookup(() => reader.crd(n))] as const)),
    lookup(() => reader.webhookConfiguration(WEBHOOK_NAME)),
    lookup(() => reader.validatingWebhookConfiguration(VALIDATOR_NAME)),
    lookup(() => reader.deployment(namespace, DEPLOYMENT_NAME)),
    Promise.all(SERVICE_NAMES.map(async (n) => [n, await lookup(async () => {
      await reader.service(namespace, n);
      return reader.endpointSlices(namespace, n);
    })] as const)),
    lookup(async () => caView(await reader.secretData(namespace, CA_SECRET_NAME))),
    lookup(async () => {
      const [namespaces, all] = await Promise.all([reader.namespaces(), reader.pods()]);
      return { namespaces, pods: all };
    }),
  ]);
  const objects: ClusterObjects = { namespace, crds: Object.fromEntries(crds), webhook, validator, deployment, services: Object.fromEntries(services), ca, pods };
  const all: Lookup<unknown>[] = [...crds.map(([, l]) => l), webhook, validator, deployment, ...services.map(([, l]) => l), ca, pods];
  const first = all.find((l) => l.state !== 'error');
  if (first === undefined) throw new CliError(`cannot read the cluster: ${(all[0] as { error: string }).error}`, 'Check --kubeconfig FILE (or KUBECONFIG) and that the API server is reachable.');
  return objects;
}

/** The ClusterReader over a kubeconfig's API server (loads @kubernetes/client-node). */
export async function apiReader(kc: KubeConfig): Promise<ClusterReader> {
  const k8s = await import('@kubernetes/client-node');
  const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const adm = kc.makeApiClient(k8s.AdmissionregistrationV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const disco = kc.makeApiClient(k8s.DiscoveryV1Api);
  return {
    crd: (name) => ext.readCustomResourceDefinition({ name }),
    webhookConfiguration: (name) => adm.readMutatingWebhookConfiguration({ name }),
    validatingWebhookConfiguration: (name) => adm.readValidatingWebhookConfiguration({ name }),
    deployment: (namespace, name) => apps.readNamespacedDeployment({ namespace, name }),
    service: (namespace, name) => core.readNamespacedService({ namespace, name }),
    endpointSlices: async (namespace, service) => (await disco.listNamespacedEndpointSlice({ namespace, labelSelector: `kubernetes.io/service-name=${service}` })).items,
    secretData: async (namespace, name) => (await core.readNamespacedSecret({ namespace, name })).data,
    namespaces: async () => (await core.listNamespace()).items,
    pods: async () => {
      const out: PodView[] = [];
      let next: string | undefined;
      do {
        const page = await core.listPodForAllNamespaces({ limit: 500, ...(next ? { _continue: next } : {}) });
        out.push(...page.items);
        next = page.metadata?.['_continue'];
      } while (next);
      return out;
    },
  };
}

// ---- the checks (pure) ----

const iso = (ms: number): string => new Date(ms).toISOString();

function parsePems(text: string): X509Certificate[] | undefined {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) return undefined;
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch {
    return undefined;
  }
}

function left(ms: number): string {
  const days = Math.floor(ms / DAY_MS);
  return days >= 1 ? `${days} day${days === 1 ? '' : 's'} left` : `${Math.max(0, Math.floor(ms / 3_600_000))} h left`;
}

/** ok / warn (under WARN_DAYS left) / fail (expired, not yet valid), with a short description. */
function validity(x: X509Certificate, now: number): { status: Status; text: string } {
  const from = x.validFromDate.getTime();
  const to = x.validToDate.getTime();
  const name = `serial ${x.serialNumber.toLowerCase().slice(0, 16)}`;
  if (now < from) return { status: 'fail', text: `${name} is not valid yet (from ${iso(from)})` };
  if (now >= to) return { status: 'fail', text: `${name} expired ${iso(to)}` };
  return { status: to - now < WARN_DAYS * DAY_MS ? 'warn' : 'ok', text: `${name} valid until ${iso(to)} (${left(to - now)})` };
}

const worst = (ss: Status[]): Status => (ss.includes('fail') ? 'fail' : ss.includes('warn') ? 'warn' : 'ok');

function unreadable(check: string, what: string, error: string): CheckResult {
  return { check, status: 'fail', message: `cannot read ${what}: ${error}`, fix: `run with credentials that may read ${what} (kubectl auth can-i get ...)` };
}

function crdCheck(name: string, l: Lookup<CrdView>): CheckResult {
  const check = `crd/${name}`;
  if (l.state === 'error') return unreadable(check, `CustomResourceDefinition ${name}`, l.error);
  if (l.state === 'missing') return { check, status: 'fail', message: 'not installed', fix: APPLY };
  const est = l.value.status?.conditions?.find((c) => c.type === 'Established');
  if (est?.status === 'True') return { check, status: 'ok', message: 'installed and Established' };
  const why = est?.message ?? l.value.status?.conditions?.find((c) => c.status !== 'True' && c.message)?.message;
  return { check, status: 'fail', message: `installed but not Established${why ? ` (${why})` : ''}`, fix: `kubectl describe crd ${name}; re-apply: ${APPLY}` };
}

function anchorsOf(ca: Lookup<CaView>): X509Certificate[] {
  return ca.state === 'found' && ca.value.bundlePem !== undefined ? (parsePems(ca.value.bundlePem) ?? []) : [];
}

/** The injector's MutatingWebhookConfiguration and the validator's ValidatingWebhookConfiguration: the same rules for their caBundles. */
function webhookCheck(o: ClusterObjects, now: number, kind: 'MutatingWebhookConfiguration' | 'ValidatingWebhookConfiguration', name: string, l: Lookup<WebhookConfigView>): CheckResult {
  const check = `webhook/${name}`;
  if (l.state === 'error') return unreadable(check, `${kind} ${name}`, l.error);
  if (l.state === 'missing') return { check, status: 'fail', message: `${kind} not installed`, fix: APPLY };
  const hooks = l.value.webhooks ?? [];
  if (hooks.length === 0) return { check, status: 'fail', message: 'has no webhooks', fix: APPLY };
  const patch = `set caBundle to the trust bundle (ca.crt of Secret ${o.namespace}/${CA_SECRET_NAME}) with the kubectl patch in docs/install.md`;
  const anchors = anchorsOf(o.ca);
  const problems: Array<{ status: Status; text: string }> = [];
  for (const h of hooks) {
    const b64 = h.clientConfig.caBundle;
    if (!b64) {
      problems.push({ status: 'fail', text: `${h.name} has no caBundle` });
      continue;
    }
    const certs = parsePems(Buffer.from(b64, 'base64').toString('utf8'));
    if (!certs) {
      problems.push({ status: 'fail', text: `${h.name}: caBundle is not PEM certificates` });
      continue;
    }
    for (const c of certs) {
      if (!(c.validFromDate.getTime() <= now && now < c.validToDate.getTime())) problems.push({ status: 'fail', text: `${h.name}: caBundle ${validity(c, now).text}` });
    }
    const have = new Set(certs.map((c) => c.fingerprint256));
    const absent = anchors.filter((a) => !have.has(a.fingerprint256));
    if (absent.length > 0) problems.push({ status: 'warn', text: `${h.name}: caBundle lacks trust anchor ${absent.map((a) => a.serialNumber.toLowerCase().slice(0, 16)).join(', ')} of Secret ${o.namespace}/${CA_SECRET_NAME}` });
  }
  if (problems.length === 0) return { check, status: 'ok', message: `${hooks.length} webhook${hooks.length === 1 ? '' : 's'}, each caBundle valid${anchors.length ? ' and holding the trust anchors' : ''}` };
  return { check, status: worst(problems.map((p) => p.status)), message: problems.map((p) => p.text).join('; '), fix: patch };
}

function deploymentCheck(o: ClusterObjects): CheckResult {
  const check = `deployment/${DEPLOYMENT_NAME}`;
  const l = o.deployment;
  if (l.state === 'error') return unreadable(check, `Deployment ${o.namespace}/${DEPLOYMENT_NAME}`, l.error);
  if (l.state === 'missing') return { check, status: 'fail', message: `the control plane is not installed in ${o.namespace}`, fix: APPLY };
  const want = l.value.spec?.replicas ?? 1;
  const ready = l.value.status?.readyReplicas ?? 0;
  const fix = `kubectl -n ${o.namespace} rollout status deployment/${DEPLOYMENT_NAME}; kubectl -n ${o.namespace} describe pods -l app.kubernetes.io/name=${DEPLOYMENT_NAME} (it is not ready until the CA Secret exists: meshlet install)`;
  if (ready < 1) return { check, status: 'fail', message: `no ready replicas (0/${want}): the control plane is unreachable`, fix };
  if (ready < want) return { check, status: 'warn', message: `${ready}/${want} replicas ready`, fix };
  return { check, status: 'ok', message: `${ready}/${want} replicas ready` };
}

function serviceCheck(o: ClusterObjects, name: string): CheckResult {
  const check = `service/${name}`;
  const l = o.services[name] ?? { state: 'missing' };
  if (l.state === 'error') return unreadable(check, `Service ${o.namespace}/${name} and its EndpointSlices`, l.error);
  if (l.state === 'missing') return { check, status: 'fail', message: `Service not found in ${o.namespace}`, fix: APPLY };
  const ready = new Set(l.value.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).flatMap((e) => e.addresses ?? [])));
  if (ready.size === 0) {
    return { check, status: 'fail', message: 'no ready endpoints: nothing answers this Service', fix: `the control plane Pods are not ready: kubectl -n ${o.namespace} get pods,endpointslices -l app.kubernetes.io/name=${DEPLOYMENT_NAME}` };
  }
  return { check, status: 'ok', message: `${ready.size} ready endpoint${ready.size === 1 ? '' : 's'}` };
}

function caChecks(o: ClusterObjects, now: number): CheckResult[] {
  const ref = `${o.namespace}/${CA_SECRET_NAME}`;
  const l = o.ca;
  if (l.state === 'error') return [unreadable('ca/trust-anchors', `Secret ${ref}`, l.error), unreadable('ca/issuer', `Secret ${ref}`, l.error)];
  if (l.state === 'missing') {
    const fix = `meshlet install --kubeconfig FILE${o.namespace === DEFAULT_NAMESPACE ? '' : ` --namespace ${o.namespace}`} (creates the CA Secret)`;
    return [
      { check: 'ca/trust-anchors', status: 'fail', message: `CA Secret ${ref} not found`, fix },
      { check: 'ca/issuer', status: 'fail', message: `CA Secret ${ref} not found`, fix },
    ];
  }
  const anchorRotation = `rotate the trust anchor: meshlet identity add-anchor --ca-secret ${ref}, then use-anchor and remove-anchor (meshlet identity --help)`;
  const out: CheckResult[] = [];
  const anchors = l.value.bundlePem === undefined ? undefined : parsePems(l.value.bundlePem);
  if (!anchors) {
    out.push({ check: 'ca/trust-anchors', status: 'fail', message: `Secret ${ref}: data["${CA_BUNDLE_KEY}"] is ${l.value.bundlePem === undefined ? 'missing' : 'not PEM certificates'}`, fix: `recreate the Secret with meshlet install (or restore it from backup)` });
  } else {
    const v = anchors.map((a) => validity(a, now));
    const status = worst(v.map((x) => x.status));
    out.push({ check: 'ca/trust-anchors', status, message: `${anchors.length} anchor${anchors.length === 1 ? '' : 's'}: ${v.map((x) => x.text).join('; ')}`, ...(status === 'ok' ? {} : { fix: anchorRotation }) });
  }
  if (l.value.issuerCertPem === undefined) {
    out.push({ check: 'ca/issuer', status: 'fail', message: `Secret ${ref}: ${l.value.issuerProblem ?? 'no issuer'}`, fix: `recreate the Secret with meshlet install (or restore it from backup)` });
    return out;
  }
  const issuer = parsePems(l.value.issuerCertPem)?.[0];
  if (!issuer) {
    out.push({ check: 'ca/issuer', status: 'fail', message: `Secret ${ref}: the issuer certificate does not parse`, fix: `recreate the Secret with meshlet install (or restore it from backup)` });
    return out;
  }
  const v = validity(issuer, now);
  const chained = (anchors ?? []).some((a) => issuer.checkIssued(a) && issuer.verify(a.publicKey));
  if (anchors && !chained) {
    out.push({ check: 'ca/issuer', status: 'fail', message: `${v.text}, but not signed by any anchor in data["${CA_BUNDLE_KEY}"]: workloads will not trust its certificates`, fix: `meshlet identity rotate-issuer --ca-secret ${ref}` });
    return out;
  }
  out.push({ check: 'ca/issuer', status: v.status, message: v.text, ...(v.status === 'ok' ? {} : { fix: `meshlet identity rotate-issuer --ca-secret ${ref} (a new issuer under the current anchor)` }) });
  return out;
}

/** Whether the injector should have given `pod` a proxy, the way the webhook selects Pods. */
export function wantsSidecar(pod: PodView, nsLabels: Record<string, string> | undefined, controlPlaneNamespace: string): boolean {
  const ns = pod.metadata?.namespace ?? '';
  if ((NEVER_INJECTED as readonly string[]).includes(ns) || ns === controlPlaneNamespace) return false;
  if (pod.spec?.hostNetwork) return false;
  const annotation = pod.metadata?.annotations?.[INJECT_KEY];
  if (nsLabels?.[INJECT_KEY] === 'enabled') return annotation !== 'disabled' && pod.metadata?.labels?.[INJECT_KEY] !== 'disabled';
  return annotation === 'enabled';
}

// PodView keeps only the fields the check reads; isMeshedPod reads container names, which it has.
const hasSidecar = (pod: PodView): boolean => isMeshedPod(pod as Pick<V1Pod, 'metadata' | 'spec'>);

const MAX_LISTED = 10;

function podsCheck(o: ClusterObjects): CheckResult {
  const check = 'pods/sidecar';
  const l = o.pods;
  if (l.state === 'error') return unreadable(check, 'Namespaces and Pods (cluster-wide)', l.error);
  if (l.state === 'missing') return { check, status: 'ok', message: 'no Pods' };
  const labels = new Map(l.value.namespaces.map((n) => [n.metadata?.name ?? '', n.metadata?.labels]));
  const meshed = l.value.pods.filter((p) => !p.metadata?.deletionTimestamp && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed')
    .filter((p) => wantsSidecar(p, labels.get(p.metadata?.namespace ?? ''), o.namespace));
  const lacking = meshed.filter((p) => !hasSidecar(p)).map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).toSorted();
  if (lacking.length === 0) return { check, status: 'ok', message: `${meshed.length} Pod${meshed.length === 1 ? '' : 's'} opted in, all with the ${PROXY_CONTAINER_NAME} sidecar` };
  const shown = lacking.slice(0, MAX_LISTED).join(', ') + (lacking.length > MAX_LISTED ? ` and ${lacking.length - MAX_LISTED} more` : '');
  return {
    check, status: 'warn', items: lacking,
    message: `${lacking.length} of ${meshed.length} opted-in Pod${meshed.length === 1 ? '' : 's'} lack the ${PROXY_CONTAINER_NAME} sidecar (unmeshed: plaintext, no identity): ${shown}`,
    fix: `the injector only sees new Pods: restart their workloads (kubectl -n NS rollout restart deployment/NAME), or opt them out with the annotation ${INJECT_KEY}=disabled`,
  };
}

/** Every check, in a fixed order, from what gather() read. Pure: `now` is wall-clock ms. */
export function evaluate(o: ClusterObjects, now: number): CheckResult[] {
  return [
    ...CRD_NAMES.map((n) => crdCheck(n, o.crds[n] ?? { state: 'missing' })),
    webhookCheck(o, now, 'MutatingWebhookConfiguration', WEBHOOK_NAME, o.webhook),
    webhookCheck(o, now, 'ValidatingWebhookConfiguration', VALIDATOR_NAME, o.validator),
    deploymentCheck(o),
    ...SERVICE_NAMES.map((n) => serviceCheck(o, n)),
    ...caChecks(o, now),
    podsCheck(o),
  ];
}

// ---- output ----

export function summarize(results: CheckResult[]): Record<Status, number> {
  const s: Record<Status, number> = { ok: 0, warn: 0, fail: 0 };
  for (const r of results) s[r.status]++;
  return s;
}

function table(results: CheckResult[]): string {
  const width = Math.max('CHECK'.length, ...results.map((r) => r.check.length));
  const s = summarize(results);
  return [
    `${'STATUS'}  ${'CHECK'.padEnd(width)}  DETAIL`,
    ...results.map((r) => `${r.status.padEnd(6)}  ${r.check.padEnd(width)}  ${r.message}${r.fix ? ` → ${r.fix}` : ''}`),
    '',
    `${s.fail} failed, ${s.warn} warning${s.warn === 1 ? '' : 's'}, ${s.ok} ok`,
    '',
  ].join('\n');
}

// ---- the command ----

const USAGE = `usage: meshlet check [--kubeconfig FILE] [--namespace NS] [-o table|json]

Inspect a cluster's meshlet install, one line per check (ok, warn or fail, and what to do):
  crd/*              ${CRD_NAMES.join(' and ')}: installed and Established
  webhook/*          MutatingWebhookConfiguration ${WEBHOOK_NAME} (the injector) and
                     ValidatingWebhookConfiguration ${VALIDATOR_NAME} (the ServicePolicy validator):
                     each webhook's caBundle is PEM, currently valid, and holds the trust anchors of
                     the CA Secret
  deployment/*       the control plane has ready replicas
  service/*          ${SERVICE_NAMES.join(' and ')} have ready endpoints (EndpointSlices)
  ca/trust-anchors   the anchors (ca.crt of Secret NS/${CA_SECRET_NAME}): warn under ${WARN_DAYS} days left, fail
                     when expired or not yet valid
  ca/issuer          the issuer's certificate (from ca.json; keys are never shown): the same
  pods/sidecar       Pods the injector should have meshed (namespace labelled ${INJECT_KEY}=enabled, or
                     Pod annotated so) without the ${PROXY_CONTAINER_NAME} container: warn, listing them

  --kubeconfig FILE     the cluster (default: KUBECONFIG, ~/.kube/config)
  -n, --namespace NS    where the control plane and its CA Secret are (default ${DEFAULT_NAMESPACE})
  -o, --output FORMAT   table (default) or json

Exit status: 0 when no check fails (warnings allowed), 1 when one fails, 2 on bad usage.
`;

async function run(args: string[], io: Io): Promise<number> {
  const v = flags('check', args, {
    options: { kubeconfig: { type: 'string' }, namespace: { type: 'string', short: 'n' }, output: { type: 'string', short: 'o' }, help: HELP_FLAG },
  }, USAGE, io);
  if (!v) return EXIT_OK;
  const format = v.output ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError('check', `-o ${format}: want table or json`);
  const namespace = v.namespace ?? DEFAULT_NAMESPACE;
  if (!isDnsLabel(namespace)) throw new UsageError('check', `--namespace ${JSON.stringify(namespace)} is not a namespace name`);
  const kube = await kubeClients(v.kubeconfig).catch((e: Error) => {
    throw new CliError(e.message, 'Pass --kubeconfig FILE.');
  });
  const objects = await gather(await apiReader(kube.kc), namespace);
  const now = io.wallClock.nowMs();
  const results = evaluate(objects, now);
  const summary = summarize(results);
  io.stdout(format === 'json'
    ? JSON.stringify({ server: kube.server, namespace, checkedAt: iso(now), ok: summary.fail === 0, summary, checks: results }, null, 2) + '\n'
    : table(results));
  return summary.fail > 0 ? EXIT_FAILURE : EXIT_OK;
}

export const check: Command = {
  name: 'check',
  summary: 'inspect a cluster: CRDs, webhook CA bundle, control plane, CA validity, Pods without the sidecar',
  run: (args, io) => guarded('check', io, () => run(args, io)),
};
