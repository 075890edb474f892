// MeshModel → one proxy's ProxyConfig: the pure translation between the config sources and the push.
// Guarantees: no I/O, same model → byte-identical JSON, and every config returned passes parseProxyConfig.
import { createHash } from 'node:crypto';
import {
  MAX_ENDPOINTS,
  MAX_POLICIES,
  MAX_ROUTES,
  MAX_SERVICES,
  parseProxyConfig,
  type AuthorizationPolicyConfig,
  type Problem,
  type Endpoint,
  type ProxyConfig,
  type Route,
  type Service,
  type WeightedBackend,
} from '../../api/proxy-config.ts';
import { namespaceOf, proxyAuthorizationRules, resourceKey, type ServicePolicy, type ServicePolicyResource } from '../../api/resources.ts';
import { selects, type PodLabels } from '../../api/pod-labels.ts';
import type { DefaultAuthz, MeshModel, ModelService, ModelTrafficSplit } from './model.ts';

/*
 * What a proxy's view holds, and in which order:
 * - services: every service the proxy may call (all of the mesh unless `ViewOptions.visible`
 *   narrows it), plus whatever their splits send traffic to, at most MAX_SERVICES (over it: its
 *   own namespace's first, then the others by namespace and name; reported once), sorted by canonical name
 *   `name.namespace`. Hosts: `name.ns`, `name.ns.svc`, `name.ns.svc.<clusterDomain>`, the Service's
 *   cluster IPs (Kubernetes), and the bare `name` only for services of the proxy's own namespace
 *   (so `api` is always the caller's api).
 * - routes of a service, first match wins: the routes of splits with `matches` (by split name,
 *   then match order), then the split without matches if there is one (of several, the oldest:
 *   the others are reported), else `default` (the
 *   service's own endpoints). No split: no routes (the proxy's implicit catch-all). Callers in
 *   another namespace that have their own (consumer) splits of the service get only those.
 * - a service's timeouts, retry and breaker: its MeshService.spec.policy, else the ServicePolicy
 *   targeting it (of several, the oldest by creationTimestamp, then name; the others are reported,
 *   as is one for a service the model lacks, or for a MeshService that sets spec.policy itself).
 *   A route made from an HTTPRoute rule with timeouts carries them over the service's.
 * - endpoints sorted by address; `ready: false` only when not ready; `identity` only when meshed.
 * - inbound: the AuthorizationPolicies targeting a service this proxy serves (servedServices: the
 *   names it claims, and the Services of its namespace whose selector matches its Pod's labels),
 *   the mesh default. No ports: MeshService ports carry no permissive flag, so every port is strict.
 *   More than MAX_POLICIES of them fail closed: one policy that allows nothing stands in (reported).
 * A split backend naming a service the model lacks is left out (reported): its share goes to the
 * split's other backends, so a typo in a canary's name does not take the apex's traffic away from
 * the backends that exist; only a split with no known backend of weight above 0 is not applied.
 * Problems never make an invalid config: when
 * the result would not parse, `config` is undefined and the caller keeps the last good one.
 * Cost: `prepare` once per model; `viewOf` validates the outbound part once per caller namespace
 * (memoized in the PreparedModel, shared frozen by all views of it) and the inbound part per proxy.
 */

/** The proxy asking for its view (from its mTLS identity and its registration). */
export interface ProxyInfo {
  namespace: string;
  workload: string;
  serviceAccount: string;
  identity: string;
  /** Services this workload claims to serve: `name` (in the proxy's namespace) or canonical `name.ns`. */
  services: readonly string[];
  /**
   * Its Pod's labels, as the proxy reported them: it also serves every Service of its namespace
   * whose selector matches them. Undefined: not reported (an older proxy), it serves what it claims.
   */
  labels?: PodLabels | undefined;
}

/** A model object the translation could not use, or used only in part. */
export interface TranslateProblem {
  /** `kind/namespace/name` (`TrafficSplit/shop/web-canary`), `MeshModel` or `ProxyConfig/<ns>/<workload>`. */
  object: string;
  path: string;
  /** For people: free to reword, nothing reads it to decide. */
  message: string;
  /** On problems of TrafficSplits and AuthorizationPolicies: what it does to the object. */
  effect?: ProblemEffect;
}

/**
 * What a problem does to the TrafficSplit or AuthorizationPolicy it is about, in the terms of its
 * status conditions (resource-status.ts): said where the problem is made, never read from the message.
 */
export interface ProblemEffect {
  /** The condition's reason, CamelCase (UnsupportedValue, InvalidKind: an HTTPRoute rule, route-status.ts). */
  reason: 'Invalid' | 'Conflicted' | 'ServiceNotFound' | 'BackendNotFound' | 'PortNotFound' | 'UnsupportedValue' | 'InvalidKind' | 'TooManyPolicies';
  /** The object still applies (in part) despite it. */
  applies: boolean;
  /** A name it refers to does not resolve (ResolvedRefs=False). */
  reference: boolean;
}

/** The object fails meshlet's checks and is not applied at all. */
export const INVALID: Readonly<ProblemEffect> = Object.freeze({ reason: 'Invalid', applies: false, reference: false });

export interface View {
  /** Deep-frozen and valid; undefined when no valid view could be built (keep the last good one). */
  config: Readonly<ProxyConfig> | undefined;
  /** Problems of the objects this view involves, sorted. */
  problems: TranslateProblem[];
}

export interface ViewOptions {
  /**
   * Which services the proxy may call (the hook for per-namespace views). Default: all. Split
   * backends of a visible service are added regardless, so a route never names a missing service.
   */
  visible?: (service: { namespace: string; name: string }, proxy: ProxyInfo) => boolean;
}

interface PreparedService {
  readonly canonical: string;
  readonly model: ModelService;
  /** The service document without hosts and routes (those depend on the caller). */
  readonly doc: Service;
  /** One per other TCP port (`api.shop:9090`, with `port`): the same endpoints on that port's target. */
  readonly portDocs: readonly Service[];
  /** A headless Service's Pods, each a service of its own (`web-0.web.shop`), hosts added per caller. */
  readonly podDocs: readonly PodDoc[];
}

/** One Pod of a headless Service as a service: its one endpoint, its IP host and (StatefulSet) hostname. */
interface PodDoc {
  readonly doc: Service;
  /** As a Host names it: `10.1.0.1`, `[fd00::2]`; undefined for the service of a hostname several Pods share. */
  readonly ip: string | undefined;
  readonly hostname: string | undefined;
  /** One of the Service's other ports (`es-0.es.shop:9114`): only a Host that names it. */
  readonly port?: number;
}

/** An IP as one DNS label for a name: `10.1.0.1` → `ip-10-1-0-1`, `[fd00::]` → `ip-fd00--0`. */
const ipLabel = (ip: string): string => {
  const dashed = `ip-${ip.replace(/[[\]]/g, '').replace(/[.:]/g, '-')}`;
  return dashed.endsWith('-') ? `${dashed}0` : dashed;
};

/** At most this many Pods of one headless Service are services of their own (a StatefulSet rarely has more). */
export const MAX_POD_SERVICES = 256;

/**
 * A headless Service's first MAX_POD_SERVICES endpoints as services named `<hostname>.<service>`
 * (a StatefulSet Pod) or `ip-<ip, dashed>.<service>`: the caller that addresses one Pod (by
 * `web-0.web.shop.svc` or by IP) reaches that Pod, with the Service's policy. A hostname several
 * Pods share (a Deployment whose template sets `hostname` and `subdomain`) is one service of
 * them all, as its DNS name answers with every one; each of those Pods is its IP's. Each of the
 * Service's other TCP ports is a service of each of these too (`es-0.es.shop:9114`, on that port's
 * target), as a Service's are: a call to `es-0.es:9114` or `<Pod IP>:9114` reaches that port, not
 * the HTTP port. Pure.
 */
function podDocsOf(svc: ModelService, canonical: string, doc: Service): PodDoc[] {
  if (!svc.headless) return [];
  const hostnames = new Map(svc.endpoints.map((e) => [e.address, e.hostname]));
  const endpoints = doc.endpoints.slice(0, MAX_POD_SERVICES);
  const uses = new Map<string, number>();
  for (const e of endpoints) {
    const h = hostnames.get(e.address);
    if (h !== undefined) uses.set(h, (uses.get(h) ?? 0) + 1);
  }
  const out: PodDoc[] = [];
  const shared = new Map<string, Endpoint[]>();
  for (const e of endpoints) {
    const ip = e.address.slice(0, e.address.lastIndexOf(':'));
    const hostname = hostnames.get(e.address);
    if (hostname !== undefined && uses.get(hostname)! > 1) {
      const group = shared.get(hostname);
      if (group) group.push(e);
      else {
        const eps = [e];
        shared.set(hostname, eps);
        out.push({ doc: { ...doc, name: `${hostname}.${canonical}`, endpoints: eps }, ip: undefined, hostname });
      }
    }
    const own = hostname !== undefined && uses.get(hostname) === 1 ? hostname : undefined;
    out.push({ doc: { ...doc, name: `${own ?? ipLabel(ip)}.${canonical}`, endpoints: [e] }, ip, hostname: own });
  }
  const ported = (svc.otherPorts ?? []).flatMap((o) =>
    out.map((d): PodDoc => ({ ...d, port: o.port, doc: { ...d.doc, name: `${d.doc.name}:${o.port}`, port: o.port, endpoints: d.doc.endpoints.map((e) => ({ ...e, address: withPort(e.address, o.targetPort) })) } })),
  );
  return [...out, ...ported];
}

/** A problem and the views it concerns: callers of `outbound`, servers of `inbound`; neither: every view. */
export interface Tagged {
  readonly problem: TranslateProblem;
  readonly outbound?: string;
  readonly inbound?: string;
}

/** The model once resolved: what every view shares. Build it once per model version. */
export interface PreparedModel {
  readonly trustDomain: string;
  readonly clusterDomain: string;
  readonly defaultPolicy: DefaultAuthz;
  readonly trustBundle: string | undefined;
  readonly services: ReadonlyMap<string, PreparedService>;
  /** apex → routes from producer splits (the apex's own namespace). */
  readonly producerRoutes: ReadonlyMap<string, readonly Route[]>;
  /** caller namespace → apex → routes from that namespace's consumer splits. */
  readonly consumerRoutes: ReadonlyMap<string, ReadonlyMap<string, readonly Route[]>>;
  /** target service → inbound policies. */
  readonly policies: ReadonlyMap<string, readonly AuthorizationPolicyConfig[]>;
  /** namespace → its services that have a selector (Kubernetes), canonical name and selector. */
  readonly selectors: ReadonlyMap<string, ReadonlyArray<{ readonly canonical: string; readonly selector: Readonly<Record<string, string>> }>>;
  readonly problems: readonly Tagged[];
  /**
   * Memo of outbound parts, by caller namespace (and visible set, with a `visible` hook). Views
   * of one namespace share one validated, frozen services array: validation runs once per part,
   * not once per proxy, and a thousand proxies hold one copy. Filled by viewOf; never shared
   * between models.
   */
  readonly outbound: Map<string, OutboundPart>;
}

interface OutboundPart {
  readonly included: ReadonlySet<string>;
  /** Validated and deep-frozen; undefined when invalid (then `problems` says why). */
  readonly services: readonly Service[] | undefined;
  readonly problems: readonly Problem[];
}

const ROUTE_NAME_MAX = 128;
const TRUST_DOMAIN = /^[a-z0-9.-]+$/;

/** `web` in `shop` → `web.shop`; a dotted name is already canonical. */
export function canonicalService(ref: string, namespace: string): string {
  return ref.includes('.') ? ref : `${ref}.${namespace}`;
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function hashOf(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function routeName(split: ModelTrafficSplit, index?: number): string {
  const name = `split:${split.name}${index === undefined ? '' : `:${index}`}`;
  return name.length <= ROUTE_NAME_MAX ? name : `${name.slice(0, ROUTE_NAME_MAX - 17)}~${hashOf(name).slice(0, 16)}`;
}

function endpointsOf(svc: ModelService, problems: Tagged[]): Endpoint[] {
  // One entry per address; an address listed twice (a Pod in two EndpointSlices) counts as ready if either says so.
  const byAddress = new Map<string, ModelService['endpoints'][number]>();
  for (const ep of svc.endpoints) {
    const seen = byAddress.get(ep.address);
    if (!seen || (!seen.ready && ep.ready)) byAddress.set(ep.address, ep);
  }
  let addresses = [...byAddress.keys()].toSorted(byString);
  if (addresses.length > MAX_ENDPOINTS) {
    // More than a proxy takes would make every view that has this service invalid (every other
    // change frozen with it): keep the ready ones first, report the rest.
    const ready = addresses.filter((a) => byAddress.get(a)!.ready);
    const kept = new Set([...ready, ...addresses.filter((a) => !byAddress.get(a)!.ready)].slice(0, MAX_ENDPOINTS));
    const canonical = `${svc.name}.${svc.namespace}`;
    problems.push({ outbound: canonical, problem: { object: svc.source, path: '/endpoints', message: `${addresses.length} endpoints; a proxy takes at most ${MAX_ENDPOINTS} per service: ${addresses.length - kept.size} (not ready first, then the last by address) are left out` } });
    addresses = addresses.filter((a) => kept.has(a));
  }
  return addresses.map((address) => {
    const ep = byAddress.get(address)!;
    const labels = Object.keys(ep.labels).length > 0 ? { labels: { ...ep.labels } } : {};
    return { address, ...(ep.identity !== undefined ? { identity: ep.identity } : {}), ...(ep.ready ? {} : { ready: false }), ...labels };
  });
}

const createdAt = (sp: ServicePolicyResource): string => (typeof sp.metadata.creationTimestamp === 'string' ? sp.metadata.creationTimestamp : '');

/** Which ServicePolicy each service runs (canonical name → its settings), and a problem for each that applies nowhere. */
function resolveServicePolicies(model: MeshModel, problems: Tagged[]): Map<string, ServicePolicy> {
  const own = new Map<string, ModelService>();
  for (const svc of model.services) if (!own.has(`${svc.name}.${svc.namespace}`)) own.set(`${svc.name}.${svc.namespace}`, svc);
  const byTarget = new Map<string, ServicePolicyResource[]>();
  for (const sp of model.servicePolicies) {
    const target = `${sp.spec.targetRef.service}.${namespaceOf(sp)}`;
    byTarget.set(target, [...(byTarget.get(target) ?? []), sp]);
  }
  const out = new Map<string, ServicePolicy>();
  for (const target of [...byTarget.keys()].toSorted(byString)) {
    // The oldest applies (as with TrafficSplits): applying a second one must not take over the one in force.
    const [first, ...others] = byTarget.get(target)!.toSorted((a, b) => byString(createdAt(a), createdAt(b)) || byString(resourceKey(a), resourceKey(b)));
    const svc = own.get(target);
    if (!svc) {
      const effect: ProblemEffect = { reason: 'ServiceNotFound', applies: false, reference: true };
      for (const sp of [first!, ...others]) problems.push({ problem: { object: resourceKey(sp), path: '/spec/targetRef/service', message: `unknown service "${target}": the policy applies once it exists`, effect } });
      continue;
    }
    const conflicted = (sp: ServicePolicyResource, holder: string) =>
      problems.push({
        outbound: target,
        problem: { object: resourceKey(sp), path: '/spec/targetRef', message: `${holder} already sets the policy of ${target}; this one is ignored (delete one, or merge them)`, effect: { reason: 'Conflicted', applies: false, reference: false } },
      });
    if (svc.policy) {
      for (const sp of [first!, ...others]) conflicted(sp, `${svc.source} (spec.policy)`);
      continue;
    }
    for (const sp of others) conflicted(sp, resourceKey(first!));
    const { timeouts, retry, breaker } = first!.spec;
    out.set(target, { ...(timeouts ? { timeouts } : {}), ...(retry ? { retry } : {}), ...(breaker ? { breaker } : {}) });
  }
  return out;
}

function prepareServices(model: MeshModel, problems: Tagged[]): Map<string, PreparedService> {
  const found = new Map<string, PreparedService>();
  const targeted = resolveServicePolicies(model, problems);
  for (const svc of model.services) {
    const canonical = `${svc.name}.${svc.namespace}`;
    const first = found.get(canonical);
    if (first) {
      problems.push({ outbound: canonical, problem: { object: svc.source, path: '/metadata/name', message: `service "${canonical}" is already defined by ${first.model.source}; this one is ignored` } });
      continue;
    }
    const policy = svc.policy ?? targeted.get(canonical);
    const doc: Service = {
      name: canonical,
      endpoints: endpointsOf(svc, problems),
      ...(policy?.timeouts ? { timeouts: policy.timeouts } : {}),
      ...(policy?.retry ? { retry: policy.retry } : {}),
      ...(policy?.breaker ? { breaker: policy.breaker } : {}),
    };
    const portDocs = (svc.otherPorts ?? []).map((p): Service => ({ ...doc, name: `${canonical}:${p.port}`, port: p.port, endpoints: doc.endpoints.map((e) => ({ ...e, address: withPort(e.address, p.targetPort) })) }));
    found.set(canonical, { canonical, model: svc, doc, portDocs, podDocs: podDocsOf(svc, canonical, doc) });
  }
  return new Map([...found.keys()].toSorted(byString).map((k) => [k, found.get(k)!]));
}

interface ResolvedSplit {
  readonly split: ModelTrafficSplit;
  readonly apex: string;
  readonly backends: WeightedBackend[];
}

/** The split in canonical names, or undefined (with problems) when it cannot be applied. */
function resolveSplit(split: ModelTrafficSplit, services: ReadonlyMap<string, PreparedService>, problems: Tagged[]): ResolvedSplit | undefined {
  const apex = canonicalService(split.service, split.namespace);
  const report = (path: string, message: string, effect: ProblemEffect) => problems.push({ outbound: apex, problem: { object: split.source, path, message, effect } });
  if (!services.has(apex)) {
    // No view has the apex, so every view reports it.
    const effect: ProblemEffect = { reason: 'ServiceNotFound', applies: false, reference: true };
    problems.push({ problem: { object: split.source, path: '/spec/service', message: `unknown service "${apex}": the split applies once it exists`, effect } });
    return undefined;
  }
  const backends = split.backends.map((b) => ({ service: canonicalService(b.service, split.namespace), weight: b.weight }));
  let usable = true;
  const seen = new Set<string>();
  const known: WeightedBackend[] = [];
  backends.forEach((b, i) => {
    if (!services.has(b.service)) {
      const effect: ProblemEffect = { reason: 'BackendNotFound', applies: true, reference: true };
      report(`/spec/backends/${i}/service`, `unknown service "${b.service}": left out of the split (its weight ${b.weight} goes to the other backends) until it exists`, effect);
    } else if (seen.has(b.service)) {
      report(`/spec/backends/${i}/service`, `backend "${b.service}" is listed twice: the split is not applied`, INVALID);
      usable = false;
    } else known.push(b);
    seen.add(b.service);
  });
  if (usable && known.every((b) => b.weight === 0)) {
    if (known.length < backends.length) {
      // Not a reference of its own: each backend left out was reported as one above.
      const effect: ProblemEffect = { reason: 'BackendNotFound', applies: false, reference: false };
      report('/spec/backends', `no known backend has a weight above 0: the split is not applied (${apex} gets its traffic unsplit)`, effect);
    } else report('/spec/backends', 'no backend has a weight above 0: the split is not applied', INVALID);
    usable = false;
  }
  return usable ? { split, apex, backends: known } : undefined;
}

/**
/**
 * A split's route timeouts over the apex's. A request timeout alone (an HTTPRoute rule without
 * backendRequest) also bounds each attempt where the service sets no perTry: "request: 30s" must
 * not be cut at the proxy's default perTry of 10 s. A perTry the service sets stays.
 */
function routeTimeouts(split: ModelTrafficSplit, apex: PreparedService | undefined): Pick<Route, 'timeouts'> {
  const t = split.timeouts;
  if (!t) return {};
  if (t.request !== undefined && t.perTry === undefined && apex?.doc.timeouts?.perTry === undefined) return { timeouts: { ...t, perTry: t.request } };
  return { timeouts: t };
}

/**
 * Routes of one apex from its splits (one scope: producer or one consumer namespace). The result
 * always fits the proxy's rules, so no split can make the views of unrelated services invalid:
 * - route names are unique: a split whose name another source also gives (TrafficSplit `web-00`
 *   and HTTPRoute `web`'s rule 0) gets names made unique with a hash of its source;
 * - at most MAX_ROUTES routes: splits with matches are admitted oldest first (then by name), so
 *   applying a new split never pushes out one in force; a split that no longer fits is reported
 *   and not applied. The catch-all (or `default`) always has its place.
 */
function routesOf(splits: readonly ResolvedSplit[], apex: PreparedService | undefined, problems: Tagged[]): Route[] {
  const byName = (a: ResolvedSplit, b: ResolvedSplit) => byString(a.split.name, b.split.name) || byString(a.split.source, b.split.source);
  const byAge = (a: ResolvedSplit, b: ResolvedSplit) => byString(a.split.createdAt ?? '', b.split.createdAt ?? '') || byName(a, b);
  const conflict = (s: ResolvedSplit, message: string) =>
    problems.push({ outbound: s.apex, problem: { object: s.split.source, path: '/spec', message, effect: { reason: 'Conflicted', applies: false, reference: false } } });
  const routes: Route[] = [];
  // Of several splits of every request, the oldest applies (as Gateway API resolves conflicts):
  // applying a second one must not take the traffic from the one in force.
  const [catchAll, ...ignored] = splits.filter((s) => s.split.matches === undefined).toSorted(byAge);
  for (const s of ignored) conflict(s, `${catchAll!.split.source} already splits every request to ${s.apex}; this split is ignored (give it matches, or delete one)`);
  let room = MAX_ROUTES - 1; // the last route is the catch-all or `default`
  const admitted = new Set<ResolvedSplit>();
  for (const s of splits.filter((x) => x.split.matches !== undefined).toSorted(byAge)) {
    const n = s.split.matches!.length;
    if (n > room) {
      const used = MAX_ROUTES - 1 - room;
      conflict(s, `${s.apex} may have at most ${MAX_ROUTES} routes: older splits use ${used} and ${s.split.name}'s ${n} matches do not fit; ${s.split.name} is not applied (merge matches, or delete splits)`);
      continue;
    }
    room -= n;
    admitted.add(s);
  }
  const taken = new Set<string>();
  const unique = (s: ResolvedSplit, index?: number): string => {
    let name = routeName(s.split, index);
    if (taken.has(name)) name = routeName({ ...s.split, name: `${s.split.name}~${hashOf(s.split.source).slice(0, 8)}` }, index);
    taken.add(name);
    return name;
  };
  for (const s of [...admitted].toSorted(byName)) {
    const timeouts = routeTimeouts(s.split, apex);
    s.split.matches!.forEach((match, i) => routes.push({ name: unique(s, i), match: structuredClone(match), backends: s.backends, ...timeouts }));
  }
  routes.push(catchAll ? { name: unique(catchAll), backends: catchAll.backends, ...routeTimeouts(catchAll.split, apex) } : { name: 'default' });
  return routes;
}

function preparePolicies(model: MeshModel, services: ReadonlyMap<string, PreparedService>, problems: Tagged[]): Map<string, AuthorizationPolicyConfig[]> {
  const out = new Map<string, AuthorizationPolicyConfig[]>();
  /** target → resource keys of its policies, for problems. */
  const keys = new Map<string, string[]>();
  const sorted = model.authorizationPolicies.toSorted((a, b) => byString(resourceKey(a), resourceKey(b)));
  for (const policy of sorted) {
    const ns = namespaceOf(policy);
    const target = `${policy.spec.targetRef.service}.${ns}`;
    let port = policy.spec.targetRef.port;
    const svc = services.get(target);
    if (!svc) {
      // Still delivered by name (viewOf: to every proxy that serves `target`), so it still guards a
      // workload that runs under that name without a Service; dropping it would open that workload
      // to the default. A typo guards nothing: this problem is where the user sees it.
      problems.push({
        inbound: target,
        problem: {
          object: resourceKey(policy),
          path: '/spec/targetRef/service',
          message: `unknown service "${target}": the policy guards only proxies that serve ${policy.spec.targetRef.service} (their --service; an injected proxy's is its workload name)`,
          effect: { reason: 'ServiceNotFound', applies: true, reference: true },
        },
      });
    } else if (port !== undefined && svc.model.ports.length > 0) {
      const sp = svc.model.ports.find((p) => p.port === port);
      if (sp?.targetPort === undefined && sp?.targetPortName !== undefined) {
        // Guarding the Service port's number instead would leave the real app port to the default
        // (fail open) until an EndpointSlice names the port; guarding every port fails closed.
        problems.push({
          inbound: target,
          problem: {
            object: resourceKey(policy),
            path: '/spec/targetRef/port',
            message: `service ${target} port ${port} targets the container port named "${sp.targetPortName}", which no EndpointSlice resolves yet; the policy guards every app port until one does`,
            effect: { reason: 'PortNotFound', applies: true, reference: true },
          },
        });
        port = undefined;
      } else if (sp) port = sp.targetPort ?? sp.port;
      else {
        problems.push({
          inbound: target,
          problem: {
            object: resourceKey(policy),
            path: '/spec/targetRef/port',
            message: `service ${target} has no port ${port} (it has ${svc.model.ports.map((p) => p.port).join(', ')}); the policy guards app port ${port}`,
            effect: { reason: 'PortNotFound', applies: true, reference: true },
          },
        });
      }
    }
    const cfg: AuthorizationPolicyConfig = {
      name: `${ns}/${policy.metadata.name}`,
      ...(port !== undefined ? { port } : {}),
      rules: proxyAuthorizationRules(policy, model.trustDomain),
    };
    out.set(target, [...(out.get(target) ?? []), cfg]);
    keys.set(target, [...(keys.get(target) ?? []), resourceKey(policy)]);
  }
  for (const [target, list] of out) {
    if (list.length <= MAX_POLICIES) continue;
    // More than a proxy takes. Any subset could allow what a left-out policy is there to stop, or
    // (policies add up) deny what it allows; the view would otherwise be refused whole, freezing
    // these proxies. Fail closed: the service's proxies deny every inbound request until fixed.
    out.set(target, [denyAll(target)]);
    for (const key of keys.get(target)!) {
      problems.push({
        inbound: target,
        problem: {
          object: key,
          path: '/spec/targetRef',
          message: `service ${target} has ${list.length} AuthorizationPolicies; a proxy takes at most ${MAX_POLICIES}: none of them applies and ${target}'s proxies deny every inbound request until at most ${MAX_POLICIES} target it (merge them: a policy may have 256 rules)`,
          effect: { reason: 'TooManyPolicies', applies: false, reference: false },
        },
      });
    }
  }
  return out;
}

/**
 * A policy that guards every port and allows nothing: what stands in for policies a proxy cannot
 * take (fail closed). Its name says why, in the proxy's /config and its 403 reasons; no
 * AuthorizationPolicy can have it (a Kubernetes name has no `:`).
 */
export function denyAll(what: string): AuthorizationPolicyConfig {
  return { name: `meshlet/too-many-policies:${what}`, rules: [] };
}

/** Resolve what every view shares: services, splits → routes, policies, bundle. Pure. */
export function prepare(model: MeshModel): PreparedModel {
  const problems: Tagged[] = [];
  if (!TRUST_DOMAIN.test(model.trustDomain)) {
    problems.push({ problem: { object: 'MeshModel', path: '/trustDomain', message: `"${model.trustDomain}" is not a trust domain (lower-case letters, digits, dots, dashes)` } });
  }
  const services = prepareServices(model, problems);
  if (services.size > MAX_SERVICES) {
    // Reported once, not per view: every view is filled the same way (includedServices).
    problems.push({
      problem: {
        object: 'MeshModel',
        path: '/services',
        message: `the mesh has ${services.size} services; a proxy's view holds at most ${MAX_SERVICES}: each proxy gets those of its own namespace first, then the others by namespace and name (with what their splits send to), and at least ${services.size - MAX_SERVICES} are left out of every view`,
      },
    });
  }

  const producer = new Map<string, ResolvedSplit[]>();
  const consumer = new Map<string, Map<string, ResolvedSplit[]>>();
  for (const split of model.trafficSplits) {
    const r = resolveSplit(split, services, problems);
    if (!r) continue;
    const apexNs = services.get(r.apex)!.model.namespace;
    let scope = producer;
    if (apexNs !== split.namespace) {
      scope = consumer.get(split.namespace) ?? new Map<string, ResolvedSplit[]>();
      consumer.set(split.namespace, scope);
    }
    scope.set(r.apex, [...(scope.get(r.apex) ?? []), r]);
  }
  const routeMap = (scope: ReadonlyMap<string, ResolvedSplit[]>) => new Map([...scope].map(([apex, splits]) => [apex, routesOf(splits, services.get(apex), problems)] as const));
  const producerRoutes = routeMap(producer);
  const consumerRoutes = new Map([...consumer].map(([ns, scope]) => [ns, routeMap(scope)] as const));

  const policies = preparePolicies(model, services, problems);
  const selectors = new Map<string, Array<{ canonical: string; selector: Readonly<Record<string, string>> }>>();
  for (const svc of services.values()) {
    const selector = svc.model.selector;
    if (!selector || Object.keys(selector).length === 0) continue;
    selectors.set(svc.model.namespace, [...(selectors.get(svc.model.namespace) ?? []), { canonical: svc.canonical, selector }]);
  }
  const pems = [...new Set(model.trustBundle.map((p) => p.trim()).filter((p) => p !== ''))].toSorted(byString);
  return {
    trustDomain: model.trustDomain,
    clusterDomain: model.clusterDomain,
    defaultPolicy: model.defaultPolicy,
    trustBundle: pems.length > 0 ? pems.map((p) => `${p}\n`).join('') : undefined,
    services,
    producerRoutes,
    consumerRoutes,
    policies,
    selectors,
    problems,
    outbound: new Map(),
  };
}

function routesFor(prepared: PreparedModel, apex: string, callerNs: string): readonly Route[] | undefined {
  return prepared.consumerRoutes.get(callerNs)?.get(apex) ?? prepared.producerRoutes.get(apex);
}

/**
 * The services a caller in `namespace` sees: the visible ones plus every split backend,
 * transitively, at most MAX_SERVICES (a larger view would be refused whole: every proxy frozen).
 * Over the limit, a service joins with everything its routes send to, or not at all (a route never
 * names a missing service), in an order that depends only on the model and the caller's namespace:
 * its own namespace first (what `name` alone resolves to), then the rest by namespace and name.
 */
function includedServices(prepared: PreparedModel, proxy: ProxyInfo, visible: ViewOptions['visible']): Set<string> {
  const candidates: PreparedService[] = [];
  for (const svc of prepared.services.values()) if (!visible || visible({ namespace: svc.model.namespace, name: svc.model.name }, proxy)) candidates.push(svc);
  const included = new Set<string>();
  for (const svc of viewOrder(candidates, proxy.namespace)) {
    if (included.has(svc.canonical)) continue;
    const joining = new Set<string>();
    const pending = [svc.canonical];
    while (pending.length > 0) {
      const name = pending.pop()!;
      if (included.has(name) || joining.has(name)) continue;
      joining.add(name);
      for (const r of routesFor(prepared, name, proxy.namespace) ?? []) for (const b of r.backends ?? []) pending.push(b.service);
    }
    if (included.size + joining.size > MAX_SERVICES) continue;
    for (const name of joining) included.add(name);
  }
  return included;
}

/** Own namespace first, then by namespace and name: the order in which a view over the limit is filled. */
function viewOrder(services: readonly PreparedService[], namespace: string): PreparedService[] {
  if (services.length <= MAX_SERVICES) return [...services]; // all fit: the order does not matter
  const rank = (s: PreparedService) => (s.model.namespace === namespace ? 0 : 1);
  return services.toSorted((a, b) => rank(a) - rank(b) || byString(a.model.namespace, b.model.namespace) || byString(a.model.name, b.model.name));
}

const hostKey = (h: string, port: number | undefined): string => (port === undefined ? h.toLowerCase() : `${h.toLowerCase()}:${port}`);

/**
 * Each name and host to one service, the first that claims it (services, then their other ports,
 * then Pods: a Service keeps its names over a Pod's, the first by name keeps a cluster IP two
 * Services list): a Pod service whose name is taken is left out, a host already claimed is left
 * off. Without this one clash (a Pod's `<hostname>.<service>` that is another namespace's
 * `<name>.<namespace>`, an IP that is both a cluster IP and a Pod's) would make the view invalid,
 * and every proxy that sees those Services would get no view at all. Pure.
 */
function claimedOnce(services: readonly Service[]): Service[] {
  const names = new Set<string>();
  const hosts = new Set<string>();
  const out: Service[] = [];
  for (const svc of services) {
    const base = svc.port === undefined ? svc.name : svc.name.slice(0, svc.name.lastIndexOf(':'));
    if (names.has(svc.name) || hosts.has(hostKey(base, svc.port))) continue;
    names.add(svc.name);
    hosts.add(hostKey(base, svc.port));
    const free = (svc.hosts ?? []).filter((h) => !hosts.has(hostKey(h, svc.port)) || h.toLowerCase() === base.toLowerCase());
    for (const h of free) hosts.add(hostKey(h, svc.port));
    out.push(free.length === (svc.hosts ?? []).length ? svc : { ...svc, hosts: free });
  }
  return out;
}

/** `10.1.0.1:8080` → `10.1.0.1:<port>` (IPv6 `[fd00::1]:8080` alike). */
const withPort = (address: string, port: number): string => `${address.slice(0, address.lastIndexOf(':'))}:${port}`;

/** A Service's virtual IPs as hosts: the Host header's form (IPv6 in brackets; the port is not matched). */
const ipHosts = (ips: readonly string[] | undefined): string[] => (ips ?? []).map((ip) => (ip.includes(':') ? `[${ip}]` : ip));

function outboundPart(prepared: PreparedModel, proxy: ProxyInfo, options: ViewOptions): OutboundPart {
  const ns = proxy.namespace;
  const included = options.visible || !prepared.outbound.has(ns) ? includedServices(prepared, proxy, options.visible) : undefined;
  const key = options.visible ? `${ns}\u0000${[...included!].toSorted(byString).join(',')}` : ns;
  const known = prepared.outbound.get(key);
  if (known) return known;
  const set = included!;
  const services: Service[] = [];
  const ports: Service[] = [];
  const pods: Service[] = [];
  const podIps: Array<{ index: number; ip: string; named: boolean; port: number | undefined }> = [];
  for (const svc of prepared.services.values()) {
    if (!set.has(svc.canonical)) continue;
    const { name, namespace } = svc.model;
    const long = [`${name}.${namespace}`, `${name}.${namespace}.svc`, `${name}.${namespace}.svc.${prepared.clusterDomain}`, ...ipHosts(svc.model.clusterIPs)];
    const routes = routesFor(prepared, svc.canonical, ns);
    const hosts = namespace === ns ? [name, ...long] : long;
    services.push({ ...svc.doc, hosts, ...(routes ? { routes: [...routes] } : {}) });
    for (const doc of svc.portDocs) ports.push({ ...doc, hosts });
    for (const p of svc.podDocs) {
      const byName = p.hostname === undefined ? [] : [...(namespace === ns ? [`${p.hostname}.${name}`] : []), `${p.hostname}.${name}.${namespace}.svc`, `${p.hostname}.${name}.${namespace}.svc.${prepared.clusterDomain}`];
      pods.push({ ...p.doc, hosts: byName });
      if (p.ip !== undefined) podIps.push({ index: pods.length - 1, ip: p.ip, named: p.hostname !== undefined, port: p.port });
    }
  }
  // A Pod behind two headless Services: its IP names one of them (a host has one service), the one
  // where it has a hostname (the StatefulSet's own Service) first, then in name order.
  const ipTaken = new Set<string>();
  for (const pass of [true, false]) {
    for (const { index, ip, named, port } of podIps) {
      const ipPort = `${ip} ${port ?? ''}`;
      if (named !== pass || ipTaken.has(ipPort)) continue;
      ipTaken.add(ipPort);
      pods[index] = { ...pods[index]!, hosts: [...pods[index]!.hosts!, ip] };
    }
  }
  // A Service's other ports, then a headless Service's Pods, while the proxy's limit on services
  // leaves room (the services themselves come first).
  services.push(...ports.slice(0, Math.max(0, MAX_SERVICES - services.length)));
  services.push(...pods.slice(0, Math.max(0, MAX_SERVICES - services.length)));
  // Valid services + valid inbound = a valid config: no rule of parseProxyConfig spans the two.
  const parsed = parseProxyConfig({ version: 'outbound', services: canonicalize(claimedOnce(services)) });
  const part = parsed.ok ? { included: set, services: parsed.value.services, problems: [] } : { included: set, services: undefined, problems: parsed.problems };
  prepared.outbound.set(key, part);
  return part;
}

/**
 * The services a proxy serves, canonical and sorted: those it claims (`--service`; an injected
 * proxy's is its workload name, so a workload without a Service is still guarded by a policy on
 * its name), and every Service of its own namespace whose selector matches its Pod's labels, as
 * Kubernetes would put the Pod behind that Service. Only Services of `proxy.namespace` (from its
 * certificate) are matched. A proxy that lies about its labels changes only which policies guard
 * its own inbound side, as a lying --service already can: it never reaches another Pod's view.
 */
export function servedServices(prepared: PreparedModel, proxy: Pick<ProxyInfo, 'namespace' | 'services' | 'labels'>): string[] {
  const served = new Set(proxy.services.map((s) => canonicalService(s, proxy.namespace)));
  if (proxy.labels) for (const s of prepared.selectors.get(proxy.namespace) ?? []) if (selects(s.selector, proxy.labels)) served.add(s.canonical);
  return [...served].toSorted(byString);
}

/** The view of one proxy from a prepared model. */
export function viewOf(prepared: PreparedModel, proxy: ProxyInfo, version: string, options: ViewOptions = {}): View {
  const outbound = outboundPart(prepared, proxy, options);
  const served = servedServices(prepared, proxy);
  let policies = served.flatMap((s) => prepared.policies.get(s) ?? []).toSorted((a, b) => byString(a.name, b.name));
  const extra: TranslateProblem[] = [];
  if (policies.length > MAX_POLICIES) {
    // Several served services whose policies add up past the limit (each alone is within it,
    // prepare saw to that): fail closed as there, for this proxy only.
    extra.push({ object: `ProxyConfig/${proxy.namespace}/${proxy.workload}`, path: '/inbound/policies', message: `the services it serves (${served.join(', ')}) have ${policies.length} AuthorizationPolicies together; a proxy takes at most ${MAX_POLICIES}: it denies every inbound request` });
    policies = [denyAll(served.join(','))];
  }
  const rest = parseProxyConfig(
    canonicalize({
      version,
      services: [],
      inbound: { defaultPolicy: prepared.defaultPolicy, policies },
      ...(prepared.trustBundle !== undefined ? { trustBundle: prepared.trustBundle } : {}),
    }),
  );

  const servedSet = new Set(served);
  const concerns = (p: Tagged) =>
    (p.outbound === undefined && p.inbound === undefined) || (p.outbound !== undefined && outbound.included.has(p.outbound)) || (p.inbound !== undefined && servedSet.has(p.inbound));
  const problems = uniqueProblems([...prepared.problems.filter(concerns).map((p) => p.problem), ...extra]);
  if (outbound.services && rest.ok) {
    // Keys in canonical (sorted) order, so the JSON is byte-identical for equal views.
    const { inbound, trustBundle } = rest.value;
    const config = Object.freeze({ inbound, services: outbound.services, ...(trustBundle !== undefined ? { trustBundle } : {}), version: rest.value.version }) as Readonly<ProxyConfig>;
    return { config, problems };
  }
  const object = `ProxyConfig/${proxy.namespace}/${proxy.workload}`;
  const invalid = [...outbound.problems, ...(rest.ok ? [] : rest.problems)].map((p) => ({ object, path: p.path, message: p.message }));
  return { config: undefined, problems: uniqueProblems([...problems, ...invalid]) };
}

/** Every problem of the model once (for resource status), whichever views they concern. */
export function modelProblems(prepared: PreparedModel): TranslateProblem[] {
  return uniqueProblems(prepared.problems.map((p) => p.problem));
}

/** `viewOf(prepare(model), ...)`: for one proxy; with many, prepare once and call viewOf. */
export function viewFor(model: MeshModel, proxy: ProxyInfo, version: string, options: ViewOptions = {}): View {
  return viewOf(prepare(model), proxy, version, options);
}

function uniqueProblems(problems: readonly TranslateProblem[]): TranslateProblem[] {
  const seen = new Map<string, TranslateProblem>();
  for (const p of problems) seen.set(`${p.object}\u0000${p.path}\u0000${p.message}`, p);
  return [...seen.keys()].toSorted(byString).map((k) => seen.get(k)!);
}

/** A JSON-equal copy with object keys sorted and undefined members dropped; arrays keep their order. */
export function canonicalize<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => canonicalize(v)) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).toSorted(byString)) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = canonicalize(v);
  }
  return out as T;
}

/** Canonical JSON: equal configs give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(canonicalize(value));
}

/**
 * Hash of what a view says, without its version: equal hashes mean nothing to push, so a resync
 * that changed nothing pushes nothing. Also a good `version` for the next push.
 */
export function configHash(cfg: Readonly<ProxyConfig>): string {
  return hashOf(canonicalJson({ ...cfg, version: undefined }));
}
