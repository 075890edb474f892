// The resource kinds the mesh speaks (`meshlet.io/v1alpha1`), shared by the control plane's two
// sources: Kubernetes (TrafficSplit, AuthorizationPolicy, ServicePolicy as CRDs) and a folder of YAML
// (those three plus MeshService, which stands in for Service + EndpointSlice + Pods when there is no cluster).
// `parseResource` checks shape and meaning and returns a deep-frozen copy or every problem with
// its path (`/spec/backends/1/weight`). The CRDs in manifests/crds/ are generated from these
// schemas (scripts/gen-crds.ts); `x-kubernetes-validations` options below are the CEL twins of the
// semantic checks, so the apiserver and the folder source reject the same documents.
import { CloneType, Type, type Static, type TSchema } from '@sinclair/typebox';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import {
  BreakerPolicy,
  Endpoint,
  HTTP_METHODS,
  RetryPolicy,
  RouteMatch,
  SPIFFE_ID_PATTERN,
  Timeouts,
  WeightedBackend,
  endpointAddressProblem,
  semanticProblems,
  type AuthorizationRule,
  type Parsed,
  type Problem,
} from './proxy-config.ts';

export const API_GROUP = 'meshlet.io';
export const API_VERSION = `${API_GROUP}/v1alpha1`;
export const DEFAULT_NAMESPACE = 'default';

/** Every kind `parseResource` accepts (the folder source reads all of them). */
export const RESOURCE_KINDS = ['TrafficSplit', 'AuthorizationPolicy', 'ServicePolicy', 'MeshService'] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];
/** The kinds that are also Kubernetes CRDs (manifests/crds/). MeshService is folder-only. */
export const KUBERNETES_KINDS = ['TrafficSplit', 'AuthorizationPolicy', 'ServicePolicy'] as const satisfies readonly ResourceKind[];

// ---- names ------------------------------------------------------------------------------------

const DNS_LABEL = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
/** RFC 1123 subdomain: what Kubernetes accepts as most object names (and service-account names). */
const Subdomain = Type.String({ pattern: `^${DNS_LABEL}(\\.${DNS_LABEL})*$`, maxLength: 253 });
/** RFC 1123 label: namespaces. */
const Label = Type.String({ pattern: `^${DNS_LABEL}$`, maxLength: 63 });
/** RFC 1035 label: Service names (and so MeshService names). */
const ServiceLabel = Type.String({ pattern: '^[a-z]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 });
const SpiffeId = Type.String({ pattern: SPIFFE_ID_PATTERN, maxLength: 2048 });
const StringMap = Type.Record(Type.String({ maxLength: 317 }), Type.String({ maxLength: 65536 }));
const Method = Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)));

/**
 * A copy of a schema from proxy-config.ts with a `maxLength` on every string that has none. The
 * CRDs need bounded strings (CEL cost estimates and etcd); both sources validate the same copy.
 */
function bounded<T extends TSchema>(schema: T, maxLength: number): T {
  const visit = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(visit);
    if (node === null || typeof node !== 'object') return node;
    const out: Record<PropertyKey, unknown> = {};
    for (const key of Reflect.ownKeys(node)) out[key] = visit((node as Record<PropertyKey, unknown>)[key]);
    if (out.type === 'string' && out.maxLength === undefined && out.const === undefined) out.maxLength = maxLength;
    return out;
  };
  return visit(schema) as T;
}

/**
 * Kubernetes ObjectMeta. Hand-written files use name, namespace, labels and annotations; objects
 * read back from a cluster also carry the server-set fields, which are accepted and kept (status
 * reporting needs `generation`). Anything else is a typo (`namepsace`) and rejected.
 */
const objectMeta = (name: TSchema) =>
  Type.Object(
    {
      name,
      /** Absent: `default`, as with kubectl. */
      namespace: Type.Optional(Label),
      labels: Type.Optional(StringMap),
      annotations: Type.Optional(StringMap),
      generateName: Type.Optional(Type.String()),
      selfLink: Type.Optional(Type.String()),
      uid: Type.Optional(Type.String()),
      resourceVersion: Type.Optional(Type.String()),
      generation: Type.Optional(Type.Integer()),
      creationTimestamp: Type.Optional(Type.Unknown()),
      deletionTimestamp: Type.Optional(Type.Unknown()),
      deletionGracePeriodSeconds: Type.Optional(Type.Integer()),
      ownerReferences: Type.Optional(Type.Array(Type.Unknown())),
      finalizers: Type.Optional(Type.Array(Type.String())),
      managedFields: Type.Optional(Type.Array(Type.Unknown())),
    },
    { additionalProperties: false },
  );
export const ObjectMeta = objectMeta(Subdomain);

/** What the control plane writes back (the CRDs' status subresource): metav1.Condition list. */
export const ResourceStatus = Type.Object(
  {
    observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
    conditions: Type.Optional(
      Type.Array(
        Type.Object(
          {
            /** `Accepted` (in force) and `ResolvedRefs` (every name it refers to exists), written by control-plane/config/resource-status.ts. */
            type: Type.String({ minLength: 1, maxLength: 316 }),
            status: Type.Union([Type.Literal('True'), Type.Literal('False'), Type.Literal('Unknown')]),
            observedGeneration: Type.Optional(Type.Integer({ minimum: 0 })),
            lastTransitionTime: Type.Optional(Type.String({ maxLength: 64 })),
            reason: Type.Optional(Type.String({ maxLength: 1024 })),
            message: Type.Optional(Type.String({ maxLength: 32768 })),
          },
          { additionalProperties: false },
        ),
        { maxItems: 8, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] },
      ),
    ),
  },
  { additionalProperties: false },
);

const resource = <K extends ResourceKind, S extends TSchema>(kind: K, metadata: TSchema, spec: S, description: string) =>
  Type.Object(
    {
      apiVersion: Type.Literal(API_VERSION),
      kind: Type.Literal(kind),
      metadata: metadata as typeof ObjectMeta,
      spec,
      status: Type.Optional(ResourceStatus),
    },
    { additionalProperties: false, description },
  );

// ---- TrafficSplit ----------------------------------------------------------------------------

/**
 * The SMI v1alpha4 shape. Service names are resolved in the TrafficSplit's namespace; a dotted
 * name (`web.other`) names `<service>.<namespace>`, as in the proxy's canonical service names.
 * The apex service may also be one of its own backends.
 *
 *   spec:
 *     service: web                       # clients call web...
 *     backends:                          # ...and get web-v1 90 %, web-v2 10 %
 *       - { service: web-v1, weight: 90 }
 *       - { service: web-v2, weight: 10 }
 *     matches:                           # optional: only these requests are split
 *       - headers: [{ name: x-canary, value: "1" }]
 */
export const TrafficSplitSpec = Type.Object(
  {
    service: CloneType(WeightedBackend.properties.service, { description: 'The apex (root) service clients address.' }),
    backends: Type.Array(WeightedBackend, {
      minItems: 1,
      maxItems: 64,
      description: 'Services that receive the apex service\'s traffic, by relative integer weight (0 takes none).',
      // No backends, negative weights and unknown methods are minItems/minimum/enum: the apiserver
      // words those well, and skips CEL once the schema fails, so a CEL twin could never fire.
      'x-kubernetes-validations': [
        { rule: 'size(self) == 0 || self.exists(b, b.weight > 0)', message: 'at least one backend needs a weight above 0; all-zero weights would send traffic nowhere' },
        { rule: 'self.all(b, self.exists_one(c, c.service == b.service))', message: 'each backend service may be listed only once' },
      ],
    }),
    matches: Type.Optional(
      Type.Array(bounded(RouteMatch, 1024), {
        minItems: 1,
        maxItems: 16,
        description:
          'Split only requests that match one of these (OR; within one match every condition must hold). Other requests go to the apex service unsplit. Absent: every request.',
      }),
    ),
  },
  { additionalProperties: false },
);
export const TrafficSplit = resource('TrafficSplit', ObjectMeta, TrafficSplitSpec, 'Splits the traffic sent to a service among backend services by weight, optionally for matching requests only.');

// ---- AuthorizationPolicy ---------------------------------------------------------------------

/**
 * An allow-list for the requests a service accepts. A request is allowed when ANY rule allows it;
 * a rule allows it when the peer is named in `from` AND the request fits `to`. Nothing else is
 * allowed, so "frontend may GET /billing/* but not POST" is one rule:
 *
 *   spec:
 *     targetRef: { service: billing }
 *     rules:
 *       - from: { serviceAccounts: [{ name: frontend }] }
 *         to: { methods: [GET], paths: ["/billing/*"] }
 *
 * `rules: []` denies everything. A service that no policy targets falls back to the proxy's
 * default (all authenticated peers). Several policies for one target add up (any rule of any).
 *
 * Who is guarded: in Kubernetes, the Pods the Service's selector matches (their proxies report
 * their labels), and any proxy serving that name (an injected proxy serves its workload name, so a
 * workload without a Service is guarded by a policy on its name); in folder mode, the proxies
 * serving that name (`--service`). A Pod behind several Services gets all of their policies.
 */
export const PeerSelector = Type.Object(
  {
    identities: Type.Optional(
      Type.Array(SpiffeId, { minItems: 1, maxItems: 64, description: 'Exact SPIFFE IDs (spiffe://<trust-domain>/ns/<ns>/sa/<sa>).' }),
    ),
    namespaces: Type.Optional(
      Type.Array(Type.String({ pattern: `^(\\*|${DNS_LABEL})$`, maxLength: 63 }), {
        minItems: 1,
        maxItems: 64,
        description: 'Every service account of these namespaces; "*" is every meshed workload.',
      }),
    ),
    serviceAccounts: Type.Optional(
      Type.Array(
        Type.Object(
          {
            /** Absent: the policy's own namespace. */
            namespace: Type.Optional(Label),
            name: Subdomain,
          },
          { additionalProperties: false },
        ),
        { minItems: 1, maxItems: 64, description: 'Service accounts; namespace defaults to the policy\'s own.' },
      ),
    ),
  },
  {
    additionalProperties: false,
    description: 'The peers a rule admits: any listed identity, namespace or service account (OR).',
    'x-kubernetes-validations': [
      { rule: 'has(self.identities) || has(self.namespaces) || has(self.serviceAccounts)', message: 'from must name at least one identity, namespace or service account (namespaces: ["*"] for every meshed workload)' },
    ],
  },
);

export const RequestSelector = Type.Object(
  {
    methods: Type.Optional(
      Type.Array(Method, {
        minItems: 1,
        maxItems: 9,
        description: 'Allowed methods. Absent: every method.',
      }),
    ),
    paths: Type.Optional(
      Type.Array(Type.String({ pattern: '^/[^*]*\\*?$', maxLength: 1024 }), {
        minItems: 1,
        maxItems: 64,
        description: 'Allowed paths: exact (/healthz) or a prefix ending in * (/billing/*). Absent: every path.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'The requests a rule admits: method AND path. Absent: every request.',
    'x-kubernetes-validations': [{ rule: 'has(self.methods) || has(self.paths)', message: 'to must list methods or paths; leave it out to allow every request' }],
  },
);

export const AuthorizationPolicyRule = Type.Object(
  { from: PeerSelector, to: Type.Optional(RequestSelector) },
  { additionalProperties: false },
);

export const AuthorizationPolicySpec = Type.Object(
  {
    targetRef: Type.Object(
      {
        service: ServiceLabel,
        /** A port of the Service (not the container's target port). Absent: every port. */
        port: Type.Optional(
          Type.Integer({ minimum: 1, maximum: 65535, description: 'A port of the Service; the policy guards the container port it targets. Absent: every port.' }),
        ),
      },
      {
        additionalProperties: false,
        description:
          "The service (in the policy's namespace) whose inbound requests this policy guards: the Pods its selector matches, and any workload of that name (an injected proxy serves its workload's name).",
      },
    ),
    rules: Type.Array(AuthorizationPolicyRule, {
      maxItems: 64,
      description: 'A request is allowed when any rule allows it; an empty list denies every request.',
    }),
  },
  { additionalProperties: false },
);
export const AuthorizationPolicy = resource('AuthorizationPolicy', ObjectMeta, AuthorizationPolicySpec, 'Which peers may send which requests to a service; everything else is denied.');

// ---- service policy ---------------------------------------------------------------------------

/**
 * What calling proxies apply to this service: timeouts, retries, circuit breaking (the same
 * settings as a service in the proxy config). In folder mode it sits in MeshService.spec.policy;
 * in a cluster (and in a folder too) a ServicePolicy object carries it for one Service.
 */
export const ServicePolicy = Type.Object(
  { timeouts: Type.Optional(Timeouts), retry: Type.Optional(RetryPolicy), breaker: Type.Optional(BreakerPolicy) },
  { additionalProperties: false },
);

/**
 * A ServicePolicy for one Service (its own namespace): what every calling proxy applies to it.
 *
 *   spec:
 *     targetRef: { service: api }
 *     timeouts: { request: 2000, perTry: 500 }      # milliseconds
 *     retry: { attempts: 3, statuses: [503] }
 *     breaker: { consecutiveFailures: 5 }
 *
 * A CRD rather than Service annotations: annotations are unvalidated strings, so a typo would only
 * surface in control-plane logs, while the CRD refuses it at `kubectl apply` and both sources run
 * the same schema and checks. The CEL rules below are the checks that read only the document (a
 * value against another value it sets); where a check needs the proxy's defaults (a backoff base of
 * 500 with the default cap of 250), only the control plane makes it, with the defaults of the
 * proxies it configures, and says so in the object's status: the stored schema never freezes them.
 * Two policies for one Service: the older applies (creationTimestamp, then name), the other is Conflicted.
 */
const both = (obj: string, lo: string, hi: string) => `!has(self.${obj}) || !has(self.${obj}.${lo}) || !has(self.${obj}.${hi}) || self.${obj}.${lo} <= self.${obj}.${hi}`;
export const ServicePolicySpec = Type.Object(
  {
    targetRef: Type.Object(
      { service: ServiceLabel },
      { additionalProperties: false, description: "The Service (in the policy's namespace) whose callers apply this policy." },
    ),
    ...ServicePolicy.properties,
  },
  {
    additionalProperties: false,
    'x-kubernetes-validations': [
      { rule: both('timeouts', 'perTry', 'request'), message: 'timeouts.perTry is longer than timeouts.request (the whole request, retries included)' },
      { rule: '!has(self.retry) || ' + both('retry.backoff', 'base', 'cap'), message: 'retry.backoff.base is larger than retry.backoff.cap' },
      { rule: both('breaker', 'baseEjection', 'maxEjection'), message: 'breaker.baseEjection is larger than breaker.maxEjection' },
    ],
  },
);
export const ServicePolicyResource = resource('ServicePolicy', ObjectMeta, ServicePolicySpec, "Timeouts, retries and circuit breaking that every caller applies to one Service.");

// ---- MeshService (folder only) ---------------------------------------------------------------

export const MeshServiceEndpoint = Type.Object(
  {
    ...Endpoint.properties,
    /** Instead of `identity`: the control plane derives spiffe://<td>/ns/<namespace>/sa/<serviceAccount>. */
    serviceAccount: Type.Optional(Subdomain),
    /** Qualifies `serviceAccount`; absent: the MeshService's namespace. */
    namespace: Type.Optional(Label),
  },
  { additionalProperties: false },
);

export const MeshServicePort = Type.Object(
  { port: Type.Integer({ minimum: 1, maximum: 65535 }), name: Type.Optional(Label) },
  { additionalProperties: false },
);

/**
 * One service and its endpoints, for running the mesh from a folder: stands in for a Service,
 * its EndpointSlices and its Pods' service accounts. The service is `<name>.<namespace>`.
 * An endpoint without identity or serviceAccount is unmeshed (plaintext).
 */
export const MeshServiceSpec = Type.Object(
  {
    /** Ports clients address the service on. Absent: any port. */
    ports: Type.Optional(Type.Array(MeshServicePort, { maxItems: 64 })),
    endpoints: Type.Array(MeshServiceEndpoint, { maxItems: 10_000 }),
    policy: Type.Optional(ServicePolicy),
  },
  { additionalProperties: false },
);
export const MeshService = resource('MeshService', objectMeta(ServiceLabel), MeshServiceSpec, 'A service and its endpoints, for running the mesh without Kubernetes.');

// ---- the union -------------------------------------------------------------------------------

export type ObjectMeta = Static<typeof ObjectMeta>;
export type ResourceStatus = Static<typeof ResourceStatus>;
export type TrafficSplitSpec = Static<typeof TrafficSplitSpec>;
export type TrafficSplit = Static<typeof TrafficSplit>;
export type PeerSelector = Static<typeof PeerSelector>;
export type RequestSelector = Static<typeof RequestSelector>;
export type AuthorizationPolicyRule = Static<typeof AuthorizationPolicyRule>;
export type AuthorizationPolicySpec = Static<typeof AuthorizationPolicySpec>;
export type AuthorizationPolicy = Static<typeof AuthorizationPolicy>;
export type ServicePolicy = Static<typeof ServicePolicy>;
export type ServicePolicySpec = Static<typeof ServicePolicySpec>;
export type ServicePolicyResource = Static<typeof ServicePolicyResource>;
export type MeshServiceEndpoint = Static<typeof MeshServiceEndpoint>;
export type MeshServicePort = Static<typeof MeshServicePort>;
export type MeshServiceSpec = Static<typeof MeshServiceSpec>;
export type MeshService = Static<typeof MeshService>;
export type Resource = TrafficSplit | AuthorizationPolicy | ServicePolicyResource | MeshService;

export const RESOURCE_SCHEMAS = { TrafficSplit, AuthorizationPolicy, ServicePolicy: ServicePolicyResource, MeshService } as const satisfies Record<ResourceKind, TSchema>;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const listAt = (v: unknown, key: string): unknown[] => {
  const list = isRecord(v) ? v[key] : undefined;
  return Array.isArray(list) ? list : [];
};

/** The kind of a document that speaks meshlet.io/v1alpha1, or undefined. */
export function kindOf(doc: unknown): ResourceKind | undefined {
  if (!isRecord(doc) || doc.apiVersion !== API_VERSION) return undefined;
  return RESOURCE_KINDS.find((k) => k === doc.kind);
}

export function namespaceOf(r: { metadata: { namespace?: string | undefined } }): string {
  return r.metadata.namespace ?? DEFAULT_NAMESPACE;
}

/** `kind/namespace/name`: unique per resource in a source, stable across reloads. */
export function resourceKey(r: Resource): string {
  return `${r.kind}/${namespaceOf(r)}/${r.metadata.name}`;
}

/** spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** The identity a MeshService endpoint must present, or undefined for an unmeshed endpoint. */
export function endpointIdentity(ep: MeshServiceEndpoint, serviceNamespace: string, trustDomain: string): string | undefined {
  if (ep.identity !== undefined) return ep.identity;
  if (ep.serviceAccount !== undefined) return spiffeId(trustDomain, ep.namespace ?? serviceNamespace, ep.serviceAccount);
  return undefined;
}

/**
 * A policy's rules in the proxy config's terms: `from` becomes identity patterns (a namespace is
 * `spiffe://<td>/ns/<ns>/sa/*`, `*` stays `*`), `to` becomes methods and paths.
 */
export function proxyAuthorizationRules(policy: AuthorizationPolicy, trustDomain: string): AuthorizationRule[] {
  const ns = namespaceOf(policy);
  return policy.spec.rules.map((rule) => {
    const identities = [
      ...(rule.from.identities ?? []),
      ...(rule.from.namespaces ?? []).map((n) => (n === '*' ? '*' : `spiffe://${trustDomain}/ns/${n}/sa/*`)),
      ...(rule.from.serviceAccounts ?? []).map((sa) => spiffeId(trustDomain, sa.namespace ?? ns, sa.name)),
    ];
    return {
      identities: [...new Set(identities)],
      ...(rule.to?.methods ? { methods: [...rule.to.methods] } : {}),
      ...(rule.to?.paths ? { paths: [...rule.to.paths] } : {}),
    };
  });
}

// ---- semantic checks ---------------------------------------------------------------------------
// They read the raw document defensively, so they run even when the schema found problems
// elsewhere, and a document with a negative weight AND a duplicate backend reports both.

function trafficSplitProblems(spec: unknown): Problem[] {
  const out: Problem[] = [];
  const backends = listAt(spec, 'backends');
  const seen = new Map<string, number>();
  backends.forEach((b, i) => {
    if (!isRecord(b) || typeof b.service !== 'string') return;
    const first = seen.get(b.service);
    if (first !== undefined) out.push({ path: `/spec/backends/${i}/service`, message: `duplicate backend "${b.service}" (also /spec/backends/${first})` });
    else seen.set(b.service, i);
  });
  if (backends.length > 0 && backends.every((b) => isRecord(b) && b.weight === 0)) {
    out.push({ path: '/spec/backends', message: 'all backend weights are 0: the split would send traffic nowhere' });
  }
  return out;
}

function authorizationPolicyProblems(spec: unknown): Problem[] {
  const out: Problem[] = [];
  listAt(spec, 'rules').forEach((rule, i) => {
    if (!isRecord(rule)) return;
    const { from, to } = rule;
    if (isRecord(from) && from.identities === undefined && from.namespaces === undefined && from.serviceAccounts === undefined) {
      out.push({ path: `/spec/rules/${i}/from`, message: 'from must name at least one identity, namespace or service account (namespaces: ["*"] for every meshed workload)' });
    }
    if (isRecord(to) && to.methods === undefined && to.paths === undefined) {
      out.push({ path: `/spec/rules/${i}/to`, message: 'to must list methods or paths; leave it out to allow every request' });
    }
  });
  return out;
}

function meshServiceProblems(spec: unknown): Problem[] {
  const out: Problem[] = [];
  const addresses = new Map<string, number>();
  listAt(spec, 'endpoints').forEach((ep, i) => {
    if (!isRecord(ep)) return;
    const at = `/spec/endpoints/${i}`;
    if (ep.identity !== undefined && ep.serviceAccount !== undefined) out.push({ path: `${at}/serviceAccount`, message: 'set identity or serviceAccount, not both' });
    if (ep.namespace !== undefined && ep.serviceAccount === undefined) out.push({ path: `${at}/namespace`, message: 'namespace only qualifies serviceAccount; set serviceAccount too' });
    if (typeof ep.address === 'string') {
      const problem = endpointAddressProblem(ep.address);
      if (problem) out.push({ path: `${at}/address`, message: problem });
      const first = addresses.get(ep.address);
      if (first !== undefined) out.push({ path: `${at}/address`, message: `duplicate endpoint "${ep.address}" (also /spec/endpoints/${first})` });
      else addresses.set(ep.address, i);
    }
  });
  const ports = new Map<unknown, number>();
  const names = new Map<unknown, number>();
  listAt(spec, 'ports').forEach((p, i) => {
    if (!isRecord(p)) return;
    for (const [key, seen] of [['port', ports], ['name', names]] as const) {
      if (p[key] === undefined) continue;
      const first = seen.get(p[key]);
      if (first !== undefined) out.push({ path: `/spec/ports/${i}/${key}`, message: `duplicate port ${key} ${JSON.stringify(p[key])} (also /spec/ports/${first})` });
      else seen.set(p[key], i);
    }
  });
  const policy = isRecord(spec) ? spec.policy : undefined;
  if (isRecord(policy)) out.push(...policyProblems(policy, '/spec/policy'));
  return out;
}

/**
 * The policy rules (perTry <= request, backoff base <= cap over the defaults, ...) are the proxy
 * config's own: check the policy as the one service of a config and move the paths under `at`.
 * Like every check here it reads the raw policy, so it runs even where the schema failed.
 */
function policyProblems(policy: Record<string, unknown>, at: string): Problem[] {
  const { timeouts, retry, breaker } = policy;
  const cfg = { version: 'check', services: [{ name: 'check', endpoints: [], timeouts, retry, breaker }] };
  return semanticProblems(cfg).map((p) => ({ path: p.path.replace(/^\/services\/0/, at), message: p.message }));
}

/** A ServicePolicy's settings sit in its spec beside targetRef: the same rules as MeshService.spec.policy. */
function servicePolicyProblems(spec: unknown): Problem[] {
  return isRecord(spec) ? policyProblems(spec, '/spec') : [];
}

/**
 * Structural problems like proxy-config's `schemaProblems`, worded for people: a union reports
 * the allowed values (`expected one of GET, HEAD, ...`) or the problems of its closest branch
 * instead of "Expected union value"; a missing field is reported once.
 */
function structuralProblems(schema: TSchema, doc: unknown): Problem[] {
  const out: Problem[] = [];
  const visit = (errors: Iterable<ValueError>): void => {
    for (const e of errors) {
      const path = e.path || '/';
      if (e.type === ValueErrorType.Union) {
        const variants = (e.schema.anyOf ?? []) as TSchema[];
        if (variants.every((v) => 'const' in v)) {
          out.push({ path, message: `expected one of ${variants.map((v) => String(v.const)).join(', ')}, got ${JSON.stringify(e.value) ?? 'nothing'}` });
          continue;
        }
        const branches = e.errors.map((it) => [...it]).toSorted((a, b) => a.length - b.length);
        if (branches[0] && branches[0].length > 0) {
          visit(branches[0]);
          continue;
        }
      }
      if (e.type === ValueErrorType.ObjectRequiredProperty) out.push({ path, message: `missing required field "${path.slice(path.lastIndexOf('/') + 1)}"` });
      else if (e.type === ValueErrorType.ObjectAdditionalProperties) out.push({ path, message: `unknown field "${path.slice(path.lastIndexOf('/') + 1)}"` });
      else out.push({ path, message: e.message });
    }
  };
  visit(Value.Errors(schema, doc));
  const missing = new Set(out.filter((p) => p.message.startsWith('missing required field')).map((p) => p.path));
  const seen = new Set<string>();
  return out.filter((p) => {
    const key = `${p.path}\u0000${p.message}`;
    if (seen.has(key) || (missing.has(p.path) && !p.message.startsWith('missing required field'))) return false;
    seen.add(key);
    return true;
  });
}

const SEMANTIC: Record<ResourceKind, (spec: unknown) => Problem[]> = {
  TrafficSplit: trafficSplitProblems,
  AuthorizationPolicy: authorizationPolicyProblems,
  ServicePolicy: servicePolicyProblems,
  MeshService: meshServiceProblems,
};

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

/** Validate one resource document. Never throws; returns a deep-frozen copy or every problem. */
export function parseResource(doc: unknown): Parsed<Resource> {
  if (!isRecord(doc)) return { ok: false, problems: [{ path: '/', message: 'expected a mapping with apiVersion, kind, metadata and spec' }] };
  const head: Problem[] = [];
  if (doc.apiVersion !== API_VERSION) head.push({ path: '/apiVersion', message: `expected "${API_VERSION}", got ${JSON.stringify(doc.apiVersion) ?? 'nothing'}` });
  const kind = RESOURCE_KINDS.find((k) => k === doc.kind);
  if (kind === undefined) {
    head.push({ path: '/kind', message: `expected one of ${RESOURCE_KINDS.join(', ')}, got ${JSON.stringify(doc.kind) ?? 'nothing'}` });
    return { ok: false, problems: head };
  }
  const structural = structuralProblems(RESOURCE_SCHEMAS[kind], doc).filter((p) => p.path !== '/apiVersion' && p.path !== '/kind');
  const seen = new Set(structural.map((p) => `${p.path}\u0000${p.message}`));
  const semantic = SEMANTIC[kind](doc.spec).filter((p) => !seen.has(`${p.path}\u0000${p.message}`));
  const problems = [...head, ...structural, ...semantic];
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, value: deepFreeze(structuredClone(doc) as unknown as Resource) };
}
