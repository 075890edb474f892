// Kubernetes objects → MeshModel: the pure half of the Kubernetes source (kube-source.ts watches).
// No I/O; the same objects in any order give an equal model, equal problems and an equal hash.
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { Value } from '@sinclair/typebox/value';
import type { V1EndpointSlice, V1Pod, V1Service } from '@kubernetes/client-node';
import { RouteMatch, Route, WeightedBackend, type Parsed } from '../../api/proxy-config.ts';
import { API_VERSION, parseResource, resourceKey, spiffeId, type AuthorizationPolicy, type Resource, type ServicePolicyResource, type TrafficSplit } from '../../api/resources.ts';
import { ruleTimeouts } from './gateway-duration.ts';
import {
  emptyModel,
  splitFromResource,
  type KubeEndpointSliceInput,
  type KubePodInput,
  type KubeServiceInput,
  type MeshModel,
  type ModelEndpoint,
  type ModelOptions,
  type ModelServicePort,
  type ModelTrafficSplit,
  type ServiceFromKubernetes,
} from './model.ts';
import { canonicalJson, canonicalService, INVALID, modelProblems, prepare, type ProblemEffect, type TranslateProblem } from './translate.ts';

/** The injected proxy's container name (MESHLET_PROXY_CONTAINER_NAME in manifests/config.env). */
export const PROXY_CONTAINER_NAME = 'meshlet-proxy';
export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** Something the source could not use, or used only in part; `field` is a JSON pointer (`/spec/backends/1/service`). */
export interface KubeProblem {
  kind: string;
  namespace: string;
  name: string;
  field: string;
  /** For people: free to reword, nothing reads it to decide. */
  message: string;
  /** On problems of TrafficSplits and AuthorizationPolicies: what it does to the object (their status says it). */
  effect?: ProblemEffect;
}

/** What the informers hold (raw or typed objects alike: only the fields named in the API are read). */
export interface KubeObjects {
  services: readonly V1Service[];
  endpointSlices: readonly V1EndpointSlice[];
  pods: readonly V1Pod[];
  trafficSplits: readonly unknown[];
  authorizationPolicies: readonly unknown[];
  /** meshlet.io ServicePolicies; absent: none. */
  servicePolicies?: readonly unknown[];
  /** gateway.networking.k8s.io/v1 HTTPRoutes; empty when the Gateway API CRDs are not installed. */
  httpRoutes: readonly unknown[];
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

// ---- Pods ---------------------------------------------------------------------------------------

/**
 * THE rule for "this Pod runs the meshlet proxy" (identity, mTLS): a container or an init container
 * (a native sidecar) named `meshlet-proxy`.
 * Everything that decides whether an endpoint gets an identity goes through this one function.
 */
export function isMeshedPod(pod: Pick<V1Pod, 'metadata' | 'spec'>): boolean {
  const containers = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
  // Only a running sidecar makes an endpoint meshed: an opt-in annotation on a pod the injector
  // never saw would make callers try mTLS against a plain app (meshlet check warns about those).
  return containers.some((c) => c.name === PROXY_CONTAINER_NAME);
}

/** The owning workload: Deployment (through its ReplicaSet's pod-template-hash), StatefulSet, ...; else app.kubernetes.io/name. */
export function workloadOf(pod: Pick<V1Pod, 'metadata'>): string | undefined {
  const owners = pod.metadata?.ownerReferences ?? [];
  const owner = owners.find((o) => o.controller) ?? owners[0];
  if (owner) {
    const hash = pod.metadata?.labels?.['pod-template-hash'];
    if (owner.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)) return owner.name.slice(0, -hash.length - 1);
    return owner.name;
  }
  return pod.metadata?.labels?.['app.kubernetes.io/name'];
}

export function podInput(pod: V1Pod): KubePodInput | undefined {
  const namespace = pod.metadata?.namespace;
  const name = pod.metadata?.name;
  if (!namespace || !name) return undefined;
  const workload = workloadOf(pod);
  return {
    namespace,
    name,
    serviceAccountName: pod.spec?.serviceAccountName || pod.spec?.serviceAccount || 'default',
    labels: { ...pod.metadata?.labels },
    meshed: isMeshedPod(pod),
    ...(workload !== undefined ? { workload } : {}),
  };
}

// ---- Services and EndpointSlices ----------------------------------------------------------------

export function serviceInput(svc: V1Service): KubeServiceInput | undefined {
  const namespace = svc.metadata?.namespace;
  const name = svc.metadata?.name;
  if (!namespace || !name) return undefined;
  const type = (svc.spec?.type ?? 'ClusterIP') as KubeServiceInput['type'];
  const ports = (svc.spec?.ports ?? []).map((p) => ({
    port: p.port,
    ...(p.name ? { name: p.name } : {}),
    ...(p.protocol ? { protocol: p.protocol } : {}),
    ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
    ...(p.targetPort !== undefined ? { targetPort: p.targetPort as number | string } : {}),
  }));
  const selector = svc.spec?.selector;
  const clusterIPs = (svc.spec?.clusterIPs ?? (svc.spec?.clusterIP ? [svc.spec.clusterIP] : [])).filter((ip) => isIP(ip) !== 0);
  return {
    namespace, name, type, ports,
    ...(selector && Object.keys(selector).length > 0 ? { selector: { ...selector } } : {}),
    ...(clusterIPs.length > 0 ? { clusterIPs } : {}),
    ...(svc.spec?.clusterIP === 'None' ? { headless: true } : {}),
  };
}

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** The slice in the model's terms; undefined when it belongs to no Service. */
export function sliceInput(slice: V1EndpointSlice): KubeEndpointSliceInput | undefined {
  const namespace = slice.metadata?.namespace;
  const serviceName = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  if (!namespace || !serviceName) return undefined;
  return {
    namespace,
    serviceName,
    addressType: slice.addressType as KubeEndpointSliceInput['addressType'],
    ports: (slice.ports ?? []).map((p) => ({ ...(p.name ? { name: p.name } : {}), ...(p.port !== undefined ? { port: p.port } : {}), ...(p.protocol ? { protocol: p.protocol } : {}) })),
    endpoints: (slice.endpoints ?? []).map((ep) => ({
      addresses: [...(ep.addresses ?? [])],
      ...(ep.conditions ? { conditions: { ...ep.conditions } } : {}),
      ...(ep.targetRef?.kind && ep.targetRef.name ? { targetRef: { kind: ep.targetRef.kind, name: ep.targetRef.name, ...(ep.targetRef.namespace ? { namespace: ep.targetRef.namespace } : {}) } } : {}),
      ...(ep.hostname ? { hostname: ep.hostname } : {}),
    })),
  };
}

type ServicePortInput = KubeServiceInput['ports'][number];
const isTcp = (p: { protocol?: string }): boolean => (p.protocol ?? 'TCP') === 'TCP';
const sameName = (a: string | undefined, b: string | undefined): boolean => (a ?? '') === (b ?? '');

/** The one port proxies send HTTP to: the port named `http`, else appProtocol http, else the only/first TCP port. */
export function httpPort(ports: readonly ServicePortInput[]): ServicePortInput | undefined {
  return ports.find((p) => p.name === 'http' && isTcp(p)) ?? ports.find((p) => p.appProtocol === 'http' && isTcp(p)) ?? ports.find(isTcp);
}

/** The number a Service port reaches on the Pods: numeric targetPort, the slices' port of the same name, or the port. */
function targetOf(port: ServicePortInput, slices: readonly KubeEndpointSliceInput[]): number | undefined {
  if (typeof port.targetPort === 'number') return port.targetPort;
  for (const s of slices) {
    const sp = s.ports.find((p) => sameName(p.name, port.name) && p.port !== undefined);
    if (sp) return sp.port;
  }
  return port.targetPort === undefined || port.targetPort === '' ? port.port : undefined;
}

const hostPort = (address: string, port: number, type: KubeEndpointSliceInput['addressType']): string =>
  type === 'IPv6' || (address.includes(':') && !address.startsWith('[')) ? `[${address}]:${port}` : `${address}:${port}`;

const sliceOrder = (a: KubeEndpointSliceInput, b: KubeEndpointSliceInput): number => byString(canonicalJson(a), canonicalJson(b));

/** Service + its EndpointSlices + Pods (keyed `namespace/name`) → ModelService, as model.ts's seam describes. */
export const serviceFromKubernetes: ServiceFromKubernetes = (service, slices, pods, trustDomain) => {
  const own = slices.filter((s) => s.namespace === service.namespace && s.serviceName === service.name).toSorted(sliceOrder);
  const ports: ModelServicePort[] = service.ports.map((p) => {
    const target = targetOf(p, own);
    const unresolved = target === undefined && typeof p.targetPort === 'string' ? { targetPortName: p.targetPort } : {};
    return { port: p.port, ...(p.name !== undefined ? { name: p.name } : {}), ...(target !== undefined ? { targetPort: target } : unresolved) };
  });
  const http = httpPort(service.ports);
  // The other TCP ports whose target is known (a named one from the slices) and differs from the
  // HTTP port's (the same target is the same endpoints: the service itself serves it), once each.
  const httpTarget = http ? ports[service.ports.indexOf(http)]?.targetPort : undefined;
  const otherPorts: Array<{ port: number; targetPort: number }> = [];
  for (const [i, p] of service.ports.entries()) {
    const target = ports[i]?.targetPort;
    if (p === http || !isTcp(p) || target === undefined || target === httpTarget || otherPorts.some((o) => o.port === p.port)) continue;
    otherPorts.push({ port: p.port, targetPort: target });
  }
  const byAddress = new Map<string, ModelEndpoint>();
  if (http) {
    for (const slice of own) {
      const sp = slice.ports.find((p) => sameName(p.name, http.name) && p.port !== undefined);
      const port = sp?.port ?? (typeof http.targetPort === 'number' ? http.targetPort : http.targetPort === undefined ? http.port : undefined);
      if (port === undefined) continue; // a named targetPort this slice does not resolve
      for (const ep of slice.endpoints) {
        const c = ep.conditions ?? {};
        if (c.terminating === true && c.serving !== true) continue;
        const ready = c.ready ?? true;
        const ref = ep.targetRef?.kind === 'Pod' ? ep.targetRef : undefined;
        const pod = ref ? pods.get(`${ref.namespace ?? slice.namespace}/${ref.name}`) : undefined;
        const labels: Record<string, string> = {};
        if (pod) {
          labels.pod = pod.name;
          if (pod.workload !== undefined) labels.workload = pod.workload;
          const version = pod.labels.version ?? pod.labels['app.kubernetes.io/version'];
          if (version !== undefined) labels.version = version;
        }
        const identity = pod?.meshed ? spiffeId(trustDomain, pod.namespace, pod.serviceAccountName) : undefined;
        for (const addr of ep.addresses) {
          const address = hostPort(addr, port, slice.addressType);
          const seen = byAddress.get(address);
          if (seen && (seen.ready || !ready)) continue; // during a rollout an address may be in two slices: ready wins
          byAddress.set(address, { address, ready, ...(identity !== undefined ? { identity } : {}), labels, ...(ep.hostname ? { hostname: ep.hostname } : {}) });
        }
      }
    }
  }
  return {
    namespace: service.namespace,
    name: service.name,
    ports,
    endpoints: [...byAddress.keys()].toSorted(byString).map((a) => byAddress.get(a)!),
    ...(service.selector ? { selector: { ...service.selector } } : {}),
    ...(service.clusterIPs ? { clusterIPs: [...service.clusterIPs] } : {}),
    ...(otherPorts.length > 0 ? { otherPorts } : {}),
    ...(service.headless ? { headless: true } : {}),
    source: `Service/${service.namespace}/${service.name}`,
  };
};

// ---- HTTPRoute (GAMMA: a Service as parent) -----------------------------------------------------

const isCoreService = (ref: Record<string, unknown>, defaultKind: string): boolean => {
  const group = str(ref.group);
  return (str(ref.kind) ?? defaultKind) === 'Service' && (group === undefined || group === '' || group === 'core');
};

/** An HTTPRoute rule the proxy cannot honour as written: that rule is left out. */
const UNSUPPORTED_RULE: Readonly<ProblemEffect> = Object.freeze({ reason: 'UnsupportedValue', applies: false, reference: false });
/** A rule's backendRef of a kind other than Service: the rule is left out, and the reference does not resolve. */
const INVALID_KIND_RULE: Readonly<ProblemEffect> = Object.freeze({ reason: 'InvalidKind', applies: false, reference: true });

/** One HTTPRoute match in the proxy's terms, or the reason it has none. `{}` matches every request. */
function routeMatch(m: unknown): RouteMatch | string {
  if (!isRecord(m)) return 'not an object';
  if (arr(m.queryParams).length > 0) return 'queryParams matches are not supported';
  const out: RouteMatch = {};
  if (isRecord(m.path)) {
    const type = str(m.path.type) ?? 'PathPrefix';
    const value = str(m.path.value) ?? '/';
    if (!value.startsWith('/')) return `path value ${JSON.stringify(m.path.value)} does not start with /`;
    if (type === 'Exact') out.path = { exact: value };
    else if (type === 'PathPrefix') {
      if (value !== '/') out.path = { prefix: value };
    } else return `path type ${type} is not supported (Exact, PathPrefix)`;
  }
  const method = str(m.method);
  if (method !== undefined) out.method = method as RouteMatch['method'];
  const headers = [];
  for (const h of arr(m.headers)) {
    if (!isRecord(h)) return 'a header match is not an object';
    if ((str(h.type) ?? 'Exact') !== 'Exact') return `header match type ${str(h.type)} is not supported (Exact)`;
    // Not a presence match: a value that is not a string must not widen the match to any value.
    if (h.value !== undefined && typeof h.value !== 'string') return `header match value ${JSON.stringify(h.value)} is not a string`;
    headers.push({ name: str(h.name) ?? '', ...(str(h.value) !== undefined ? { value: str(h.value) } : {}) });
  }
  if (headers.length > 0) out.headers = headers;
  const error = Value.Errors(RouteMatch, out).First();
  return error === undefined ? out : `the match does not fit the proxy's route matches (${error.path.slice(1) || 'match'}: ${error.message})`;
}

const WEIGHT = WeightedBackend.properties.weight;
const MAX_BACKENDS = Route.properties.backends.maxItems!;
/** Gateway API's own limit on an HTTPRoute rule's matches (each is one route of the apex). */
const MAX_MATCHES = 64;

/**
 * An HTTPRoute's rules as splits of each parent Service: one ModelTrafficSplit per (Service
 * parent, rule), named `<route>-<rule index, two digits>`. Parents that are not core Services
 * (Gateways) are not the mesh's and are skipped silently. A rule the proxy cannot honour as
 * written (filters, regex or query matches, non-Service backends) is reported and not applied.
 */
export function splitsFromHTTPRoute(route: unknown): { splits: ModelTrafficSplit[]; problems: KubeProblem[] } {
  const splits: ModelTrafficSplit[] = [];
  const problems: KubeProblem[] = [];
  if (!isRecord(route) || !isRecord(route.metadata)) return { splits, problems };
  const namespace = str(route.metadata.namespace) ?? 'default';
  const name = str(route.metadata.name) ?? '';
  // Each of these leaves one rule out (the rest of the route applies); route-status.ts says so per parent.
  const report = (field: string, message: string, effect: ProblemEffect = UNSUPPORTED_RULE) => problems.push({ kind: 'HTTPRoute', namespace, name, field, message, effect });
  const spec = isRecord(route.spec) ? route.spec : {};
  const qualify = (ref: string, ns: unknown) => (typeof ns === 'string' && ns !== namespace ? `${ref}.${ns}` : ref);
  // One Service named twice (once per port, or per sectionName, or as `web` and `web.shop`) is one
  // parent: the proxy routes a service's HTTP port only, and two splits of one name would give it
  // two routes of one name.
  const byCanonical = new Map<string, string>();
  for (const p of arr(spec.parentRefs)) {
    if (!isRecord(p) || !isCoreService(p, 'Gateway') || typeof p.name !== 'string') continue;
    const ref = qualify(p.name, p.namespace);
    const key = canonicalService(ref, namespace);
    if (!byCanonical.has(key)) byCanonical.set(key, ref);
  }
  const parents = [...byCanonical.values()];
  if (parents.length === 0) return { splits, problems };
  const source = `HTTPRoute/${namespace}/${name}`;
  const createdAt = str(route.metadata.creationTimestamp);
  arr(spec.rules).forEach((rule, i) => {
    const at = `/spec/rules/${i}`;
    if (!isRecord(rule)) return report(at, 'not an object');
    if (arr(rule.filters).length > 0) return report(`${at}/filters`, 'filters are not supported: the rule is not applied');
    const backends: ModelTrafficSplit['backends'][number][] = [];
    const refs = arr(rule.backendRefs);
    if (refs.length === 0) return report(`${at}/backendRefs`, 'no backendRefs: the rule is not applied');
    // The proxy's own limits (a Route's backends, a weight), checked here so that a rule beyond
    // them is this route's problem and not an invalid view for every proxy.
    if (refs.length > MAX_BACKENDS) return report(`${at}/backendRefs`, `${refs.length} backendRefs; at most ${MAX_BACKENDS} are supported: the rule is not applied`);
    for (const [j, ref] of refs.entries()) {
      if (!isRecord(ref) || typeof ref.name !== 'string') return report(`${at}/backendRefs/${j}`, 'a backendRef needs a name');
      if (!isCoreService(ref, 'Service')) return report(`${at}/backendRefs/${j}/kind`, 'only Service backends are supported: the rule is not applied', INVALID_KIND_RULE);
      if (arr(ref.filters).length > 0) return report(`${at}/backendRefs/${j}/filters`, 'filters are not supported: the rule is not applied');
      const weight = ref.weight ?? 1;
      if (!Value.Check(WEIGHT, weight)) return report(`${at}/backendRefs/${j}/weight`, `weight ${JSON.stringify(weight)} is not an integer from 0 to ${WEIGHT.maximum}: the rule is not applied`);
      backends.push({ service: qualify(ref.name, ref.namespace), weight });
    }
    const timeouts = ruleTimeouts(rule.timeouts);
    if (Array.isArray(timeouts)) return report(`${at}/timeouts${timeouts[0]}`, `${timeouts[1]}: the rule is not applied`);
    const matches: RouteMatch[] = [];
    const given = arr(rule.matches);
    if (given.length > MAX_MATCHES) return report(`${at}/matches`, `${given.length} matches; at most ${MAX_MATCHES} are supported (as in Gateway API): the rule is not applied`);
    let all = given.length === 0;
    for (const [j, m] of given.entries()) {
      const r = routeMatch(m);
      if (typeof r === 'string') return report(`${at}/matches/${j}`, `${r}: the rule is not applied`);
      if (Object.keys(r).length === 0) all = true;
      matches.push(r);
    }
    for (const p of parents) {
      splits.push({
        source,
        namespace,
        name: `${name}-${String(i).padStart(2, '0')}`,
        service: p,
        backends,
        ...(all ? {} : { matches }),
        ...(createdAt !== undefined ? { createdAt } : {}),
        ...(Object.keys(timeouts).length > 0 ? { timeouts } : {}),
      });
    }
  });
  return { splits, problems };
}

// ---- the whole model ----------------------------------------------------------------------------

const metaOf = (o: unknown): { namespace: string; name: string; createdAt?: string } => {
  const m = isRecord(o) && isRecord(o.metadata) ? o.metadata : {};
  const createdAt = str(m.creationTimestamp);
  return { namespace: str(m.namespace) ?? '', name: str(m.name) ?? '', ...(createdAt !== undefined ? { createdAt } : {}) };
};

/** Only what the model needs: a status write or a resourceVersion bump must not change the model. */
function crOf(kind: CustomResourceKind, o: unknown): unknown {
  const { namespace, name, createdAt } = metaOf(o);
  return { apiVersion: API_VERSION, kind, metadata: { name, namespace, ...(createdAt !== undefined ? { creationTimestamp: createdAt } : {}) }, spec: isRecord(o) ? o.spec : undefined };
}

/** The meshlet.io kinds this source reads (the CRDs). */
export type CustomResourceKind = 'TrafficSplit' | 'AuthorizationPolicy' | 'ServicePolicy';

/**
 * THE check of one meshlet.io object as this source reads it (its spec, name, namespace and
 * creationTimestamp; status and other metadata are not the model's). The validating admission
 * webhook (injector/validate.ts) calls this same function, so what it refuses is exactly what the
 * source would report as Invalid.
 */
export function parseCustomResource(kind: CustomResourceKind, o: unknown): Parsed<Resource> {
  return parseResource(crOf(kind, o));
}

function parseCr<T extends TrafficSplit | AuthorizationPolicy>(kind: T['kind'], o: unknown, problems: KubeProblem[]): T | undefined {
  const r = parseCustomResource(kind, o);
  if (r.ok) return r.value as T;
  const { namespace, name } = metaOf(o);
  for (const p of r.problems) problems.push({ kind, namespace, name, field: p.path, message: `${p.message}: the ${kind} is not applied`, effect: INVALID });
  return undefined;
}

/**
 * Each ServicePolicy's last valid version, by object (uid, else namespace/name). An edit that fails
 * the checks the CRD cannot make (those that need the proxy's defaults: a backoff base of 500 ms
 * with the default cap of 250) keeps that version in force, as a broken file does in folder mode:
 * a typo must not drop a service's timeouts back to the defaults. Held by the source in memory; a
 * control plane started after the edit has none, and applies no version of that policy.
 */
export type KeptServicePolicies = ReadonlyMap<string, KeptServicePolicy>;
export interface KeptServicePolicy {
  policy: ServicePolicyResource;
  /** metadata.generation of the object it was read from: the status names the version in force. */
  generation: number | undefined;
}

const generationOf = (o: unknown): number | undefined => {
  const m = isRecord(o) && isRecord(o.metadata) ? o.metadata : {};
  return typeof m.generation === 'number' ? m.generation : undefined;
};

const keyOf = (o: unknown): string => {
  const m = isRecord(o) && isRecord(o.metadata) ? o.metadata : {};
  return str(m.uid) ?? `${str(m.namespace) ?? ''}/${str(m.name) ?? ''}`;
};

function servicePolicies(objects: readonly unknown[], kept: KeptServicePolicies, problems: KubeProblem[]): { policies: ServicePolicyResource[]; kept: Map<string, KeptServicePolicy> } {
  const policies: ServicePolicyResource[] = [];
  const next = new Map<string, KeptServicePolicy>();
  for (const o of objects) {
    const key = keyOf(o);
    const r = parseCustomResource('ServicePolicy', o);
    const last = r.ok ? { policy: r.value as ServicePolicyResource, generation: generationOf(o) } : kept.get(key);
    if (last) {
      policies.push(last.policy);
      next.set(key, last);
    }
    if (r.ok) continue;
    const { namespace, name } = metaOf(o);
    const outcome = !last
      ? 'the ServicePolicy is not applied'
      : last.generation !== undefined
        ? `the ServicePolicy's last valid version (generation ${last.generation}) stays in force`
        : 'the ServicePolicy\'s last valid version stays in force';
    for (const p of r.problems) problems.push({ kind: 'ServicePolicy', namespace, name, field: p.path, message: `${p.message}: ${outcome}`, effect: INVALID });
  }
  return { policies, kept: next };
}

const problemOrder = (a: KubeProblem, b: KubeProblem): number =>
  byString(a.kind, b.kind) || byString(a.namespace, b.namespace) || byString(a.name, b.name) || byString(a.field, b.field) || byString(a.message, b.message);

function uniqueProblems(problems: readonly KubeProblem[]): KubeProblem[] {
  const seen = new Map<string, KubeProblem>();
  for (const p of problems) seen.set(`${p.kind}\u0000${p.namespace}\u0000${p.name}\u0000${p.field}\u0000${p.message}`, p);
  return [...seen.values()].toSorted(problemOrder);
}

/**
 * The object a problem is about, as translate names it and /config-problems lists it in both modes:
 * `TrafficSplit/shop/web`, or the kind alone for a mesh-wide problem (`MeshModel`: the trust
 * domain, more services than a view holds), which has neither namespace nor name.
 */
export function objectName({ kind, namespace, name }: Pick<KubeProblem, 'kind' | 'namespace' | 'name'>): string {
  return namespace === '' && name === '' ? kind : `${kind}/${namespace}/${name}`;
}

/** A translation problem (of `TrafficSplit/shop/web`: translate's problems name objects that way) → a KubeProblem. */
function fromObject({ object, path, message, effect }: TranslateProblem): KubeProblem {
  const [kind = object, namespace = '', ...rest] = object.split('/');
  return { kind, namespace, name: rest.join('/'), field: path, message, ...(effect !== undefined ? { effect } : {}) };
}

/**
 * The mesh model of what the informers hold, and every problem: CRs that fail parseResource (left
 * out, but for a ServicePolicy's version in `kept`; the rest applies), HTTPRoute rules that cannot
 * be honoured, and what the translation reports on the model (a split naming a missing service
 * stays in the model and applies once it exists). Sorted throughout, so informer order (a re-list)
 * never changes the result. `kept` out is what to pass in next time.
 */
export function meshModelFromKubernetes(
  objects: KubeObjects,
  opts: ModelOptions = {},
  kept: KeptServicePolicies = new Map(),
): { model: MeshModel; problems: KubeProblem[]; kept: KeptServicePolicies } {
  const base = emptyModel(opts);
  const problems: KubeProblem[] = [];
  const pods = new Map<string, KubePodInput>();
  for (const p of objects.pods) {
    const pi = podInput(p);
    if (pi) pods.set(`${pi.namespace}/${pi.name}`, pi);
  }
  // Slices grouped by their Service once: each Service then reads its own, not every slice
  // (that was O(services × slices) per rebuild: half a second at 8000 Services).
  const slicesOf = new Map<string, KubeEndpointSliceInput[]>();
  for (const s of objects.endpointSlices.map(sliceInput)) {
    if (s === undefined) continue;
    const key = `${s.namespace}/${s.serviceName}`;
    const list = slicesOf.get(key);
    if (list) list.push(s);
    else slicesOf.set(key, [s]);
  }
  const services = objects.services
    .map(serviceInput)
    .filter((s): s is KubeServiceInput => s !== undefined && s.type !== 'ExternalName')
    .map((s) => serviceFromKubernetes(s, slicesOf.get(`${s.namespace}/${s.name}`) ?? [], pods, base.trustDomain))
    .toSorted((a, b) => byString(a.namespace, b.namespace) || byString(a.name, b.name));

  const trafficSplits: ModelTrafficSplit[] = [];
  for (const o of objects.trafficSplits) {
    const ts = parseCr<TrafficSplit>('TrafficSplit', o, problems);
    if (ts) trafficSplits.push(splitFromResource(ts));
  }
  for (const o of objects.httpRoutes) {
    const r = splitsFromHTTPRoute(o);
    trafficSplits.push(...r.splits);
    problems.push(...r.problems);
  }
  const authorizationPolicies: AuthorizationPolicy[] = [];
  for (const o of objects.authorizationPolicies) {
    const ap = parseCr<AuthorizationPolicy>('AuthorizationPolicy', o, problems);
    if (ap) authorizationPolicies.push(ap);
  }
  const sp = servicePolicies(objects.servicePolicies ?? [], kept, problems);
  const model: MeshModel = {
    ...base,
    services,
    trafficSplits: trafficSplits.toSorted((a, b) => byString(a.source, b.source) || byString(a.name, b.name) || byString(a.service, b.service)),
    authorizationPolicies: authorizationPolicies.toSorted((a, b) => byString(resourceKey(a), resourceKey(b))),
    servicePolicies: sp.policies.toSorted((a, b) => byString(resourceKey(a), resourceKey(b))),
  };
  for (const p of modelProblems(prepare(model))) problems.push(fromObject(p));
  return { model, problems: uniqueProblems(problems), kept: sp.kept };
}

/** Equal hashes: nothing to emit. Over the model and its problems, in canonical JSON. */
export function modelHash(model: MeshModel, problems: readonly KubeProblem[] = []): string {
  return createHash('sha256').update(canonicalJson({ model, problems })).digest('hex');
}
