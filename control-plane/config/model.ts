// Config sources → MeshModel: the one shape both sources (the YAML folder, Kubernetes watches)
// produce and `translate.ts` reads. Plain immutable data, no I/O; the same resources give an equal model.
import type { DEFAULT_AUTHZ, RouteMatch, Timeouts, WeightedBackend } from '../../api/proxy-config.ts';
import {
  endpointIdentity,
  namespaceOf,
  resourceKey,
  type AuthorizationPolicy,
  type MeshService,
  type Resource,
  type ServicePolicy,
  type ServicePolicyResource,
  type TrafficSplit,
} from '../../api/resources.ts';

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
/** The cluster DNS suffix of `name.ns.svc.<clusterDomain>` hosts (not the trust domain). */
export const DEFAULT_CLUSTER_DOMAIN = 'cluster.local';

export type DefaultAuthz = (typeof DEFAULT_AUTHZ)[number];

/** One backend instance of a service: a Pod (Kubernetes) or a MeshService endpoint (folder). */
export interface ModelEndpoint {
  /** host:port the calling proxy connects to (Kubernetes: podIP:targetPort). */
  readonly address: string;
  /** Not-ready endpoints stay in the model (status) but take no traffic. */
  readonly ready: boolean;
  /** SPIFFE ID the endpoint presents; absent: unmeshed, reached in plaintext. */
  readonly identity?: string | undefined;
  /** Shown in metrics and status: `pod`, `workload`, `version`... */
  readonly labels: Readonly<Record<string, string>>;
  /** Kubernetes: its hostname in a headless Service (a StatefulSet Pod's): DNS `<hostname>.<service>.<ns>.svc`. */
  readonly hostname?: string | undefined;
}

export interface ModelServicePort {
  /** The port clients address (Service port). AuthorizationPolicy targetRef.port names this one. */
  readonly port: number;
  readonly name?: string | undefined;
  /**
   * The port the workload's app listens on (what the server-side proxy sees as its app port).
   * Absent: the same as `port` (the folder source: MeshService has no target port).
   */
  readonly targetPort?: number | undefined;
  /**
   * A named targetPort (`http`) that no EndpointSlice resolves to a number yet (Kubernetes; then
   * `targetPort` is absent): a policy on this port cannot know its app port, so it guards every one.
   */
  readonly targetPortName?: string | undefined;
}

export interface ModelService {
  readonly namespace: string;
  readonly name: string;
  /** Empty: unknown / any port. */
  readonly ports: readonly ModelServicePort[];
  readonly endpoints: readonly ModelEndpoint[];
  /**
   * The Pods it selects (Kubernetes spec.selector, non-empty): a proxy whose reported Pod labels
   * match it serves this service, so the AuthorizationPolicies targeting it guard that Pod. Absent
   * (folder mode, or a Service without a selector): only proxies that claim the name serve it.
   */
  readonly selector?: Readonly<Record<string, string>> | undefined;
  /**
   * Kubernetes: the Service's virtual IPs (spec.clusterIPs). A caller that names the service by one
   * (`http://10.96.0.12/`, or the `<NAME>_SERVICE_HOST` variable the kubelet sets) reaches it
   * through the mesh as by its name: they are hosts of the service in every view.
   */
  readonly clusterIPs?: readonly string[] | undefined;
  /**
   * Kubernetes: the Service's TCP ports other than its HTTP one, each with the number it reaches
   * on the Pods. A caller that names one (`http://api:9090/`) is sent to that port of the
   * endpoints, as its own service `api.shop:9090`; without them it went to the HTTP port.
   */
  readonly otherPorts?: ReadonlyArray<{ readonly port: number; readonly targetPort: number }> | undefined;
  /**
   * Kubernetes: a headless Service (clusterIP None), whose callers address its Pods one by one:
   * each endpoint is also a service of its own, by the Pod's IP and, for a StatefulSet Pod, by
   * `<hostname>.<service>.<ns>.svc` (translate.ts `podDocs`).
   */
  readonly headless?: boolean | undefined;
  /** What callers apply: timeouts, retry, breaker (MeshService.spec.policy; a ServicePolicy targeting it goes in MeshModel.servicePolicies). */
  readonly policy?: ServicePolicy | undefined;
  /** `kind/namespace/name` of the object it came from, for problems (`MeshService/shop/web`, `Service/shop/web`). */
  readonly source: string;
}

/**
 * A weighted split of the traffic sent to `service` (the apex), SMI shaped. Names are relative to
 * `namespace` unless dotted (`web.other`). A split whose namespace is the apex's applies to every
 * caller (producer split); one in another namespace applies only to callers in its own namespace
 * and replaces the producer splits for them (consumer split, as GAMMA consumer routes do).
 */
export interface ModelTrafficSplit {
  /** `TrafficSplit/shop/web-canary`; an HTTPRoute rule would be `HTTPRoute/shop/web` (rule in `name`). */
  readonly source: string;
  readonly namespace: string;
  /** Unique within the namespace; splits of one apex are ordered by it. */
  readonly name: string;
  readonly service: string;
  readonly backends: readonly WeightedBackend[];
  /** OR of matches; absent: every request. */
  readonly matches?: readonly RouteMatch[] | undefined;
  /**
   * When the object was created (Kubernetes creationTimestamp, RFC 3339): of two splits of every
   * request to one apex, the older applies. Absent (the folder source): the first by name.
   */
  readonly createdAt?: string | undefined;
  /**
   * The routes' own timeouts over the service's (an HTTPRoute rule's `timeouts`: request → request,
   * backendRequest → perTry). Absent: the service's (ServicePolicy) or the proxy's defaults.
   */
  readonly timeouts?: Timeouts | undefined;
}

export interface MeshModel {
  readonly trustDomain: string;
  readonly clusterDomain: string;
  /** PEM anchors; order does not matter (the view sorts them). */
  readonly trustBundle: readonly string[];
  /** Mesh-wide inbound default where no AuthorizationPolicy guards a port. */
  readonly defaultPolicy: DefaultAuthz;
  readonly services: readonly ModelService[];
  readonly trafficSplits: readonly ModelTrafficSplit[];
  /** Validated resources (parseResource or the CRD schema); several for one target add up. */
  readonly authorizationPolicies: readonly AuthorizationPolicy[];
  /** Validated ServicePolicies (parseResource); translate applies one per Service and reports the rest. */
  readonly servicePolicies: readonly ServicePolicyResource[];
}

export interface ModelOptions {
  trustDomain?: string;
  clusterDomain?: string;
  trustBundle?: readonly string[];
  defaultPolicy?: DefaultAuthz;
}

export function emptyModel(opts: ModelOptions = {}): MeshModel {
  return {
    trustDomain: opts.trustDomain ?? DEFAULT_TRUST_DOMAIN,
    clusterDomain: opts.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN,
    trustBundle: [...(opts.trustBundle ?? [])],
    defaultPolicy: opts.defaultPolicy ?? 'all-authenticated',
    services: [],
    trafficSplits: [],
    authorizationPolicies: [],
    servicePolicies: [],
  };
}

/** A TrafficSplit resource in the model's terms. */
export function splitFromResource(ts: TrafficSplit): ModelTrafficSplit {
  return {
    source: resourceKey(ts),
    namespace: namespaceOf(ts),
    name: ts.metadata.name as string,
    service: ts.spec.service,
    backends: ts.spec.backends.map((b) => ({ service: b.service, weight: b.weight })),
    ...(ts.spec.matches ? { matches: ts.spec.matches } : {}),
    ...(typeof ts.metadata.creationTimestamp === 'string' ? { createdAt: ts.metadata.creationTimestamp } : {}),
  };
}

/** A MeshService resource in the model's terms: identity from `identity` or serviceAccount+namespace. */
export function serviceFromMeshService(ms: MeshService, trustDomain: string): ModelService {
  const namespace = namespaceOf(ms);
  return {
    namespace,
    name: ms.metadata.name as string,
    ports: (ms.spec.ports ?? []).map((p) => ({ port: p.port, ...(p.name !== undefined ? { name: p.name } : {}) })),
    endpoints: ms.spec.endpoints.map((ep) => {
      const identity = endpointIdentity(ep, namespace, trustDomain);
      return { address: ep.address, ready: ep.ready ?? true, ...(identity !== undefined ? { identity } : {}), labels: { ...ep.labels } };
    }),
    ...(ms.spec.policy ? { policy: ms.spec.policy } : {}),
    source: resourceKey(ms),
  };
}

/**
 * The folder source's model: every valid resource of the folder (load.ts / parseResource output).
 * Duplicates (one key in two files) are not resolved here; `translate` keeps the first and reports.
 */
export function modelFromResources(resources: readonly Resource[], opts: ModelOptions = {}): MeshModel {
  const base = emptyModel(opts);
  const services: ModelService[] = [];
  const trafficSplits: ModelTrafficSplit[] = [];
  const authorizationPolicies: AuthorizationPolicy[] = [];
  const servicePolicies: ServicePolicyResource[] = [];
  for (const r of resources) {
    if (r.kind === 'MeshService') services.push(serviceFromMeshService(r, base.trustDomain));
    else if (r.kind === 'TrafficSplit') trafficSplits.push(splitFromResource(r));
    else if (r.kind === 'ServicePolicy') servicePolicies.push(r);
    else authorizationPolicies.push(r);
  }
  return { ...base, services, trafficSplits, authorizationPolicies, servicePolicies };
}

// ---- the Kubernetes source's seam ---------------------------------------------------------------
// What the Kubernetes source (Service + EndpointSlices + Pods → ModelService) reads, reduced to
// the fields it needs, so its translation can also be a pure, I/O-free function. It must:
// - emit one ModelService per Service (ClusterIP or headless; not ExternalName), `source`
//   `Service/<ns>/<name>`; ports with `targetPort` resolved to a number from the EndpointSlices'
//   ports (a named targetPort differs per Pod; take the slice port of the same name);
// - emit one ModelEndpoint per (address, port) across all slices of the Service, deduplicated
//   (an address in two slices during a rollout: ready wins); one HTTP port per endpoint (the
//   Service port named `http`, else the only/first TCP port);
// - `ready` from conditions.ready (absent means ready, as in the EndpointSlice API); terminating
//   endpoints are dropped unless serving;
// - `identity` = spiffeId(trustDomain, pod namespace, pod.serviceAccountName) only for meshed Pods
//   (the injector's annotation / proxy container present); unmeshed Pods get none (plaintext);
// - labels: `pod`, `workload` (owner Deployment/StatefulSet name, or app.kubernetes.io/name), and
//   `version` (the Pod's `version` or app.kubernetes.io/version label) when known;
// - TrafficSplit CRs through `splitFromResource` after `parseResource`, HTTPRoutes whose parentRef
//   is a Service as one ModelTrafficSplit per rule (`name` `<route>-<rule index, zero-padded>`),
//   AuthorizationPolicy and ServicePolicy CRs after `parseResource` (reject, report, keep the rest;
//   a ServicePolicy that was valid before keeps its last good version in force).

export interface KubeServiceInput {
  namespace: string;
  name: string;
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  ports: ReadonlyArray<{ name?: string; port: number; protocol?: string; appProtocol?: string; targetPort?: number | string }>;
  /** spec.selector; absent or empty: the Service selects no Pod (its endpoints are managed by hand). */
  selector?: Readonly<Record<string, string>>;
  /** spec.clusterIPs (else spec.clusterIP) without `None`: absent for a headless Service. */
  clusterIPs?: readonly string[];
  /** spec.clusterIP is `None`. */
  headless?: boolean;
}

export interface KubeEndpointSliceInput {
  namespace: string;
  /** The `kubernetes.io/service-name` label. */
  serviceName: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  ports: ReadonlyArray<{ name?: string; port?: number; protocol?: string }>;
  endpoints: ReadonlyArray<{
    addresses: readonly string[];
    conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
    targetRef?: { kind: string; namespace?: string; name: string };
    hostname?: string;
  }>;
}

export interface KubePodInput {
  namespace: string;
  name: string;
  serviceAccountName: string;
  labels: Readonly<Record<string, string>>;
  /** Whether the Pod runs the meshlet proxy (injected). */
  meshed: boolean;
  /** Owner workload (Deployment via ReplicaSet, StatefulSet...) name, when known. */
  workload?: string;
}

/** The function the Kubernetes source provides; `pods` is keyed `namespace/name`. */
export type ServiceFromKubernetes = (
  service: KubeServiceInput,
  slices: readonly KubeEndpointSliceInput[],
  pods: ReadonlyMap<string, KubePodInput>,
  trustDomain: string,
) => ModelService;
