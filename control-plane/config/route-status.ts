// What an HTTPRoute's status.parents should say for the parents that are the mesh's (Services,
// GAMMA): pure, no I/O. Entries of other controllers are carried as they are, never rewritten.
import type { KubeProblem } from './kube-model.ts';
import { canonicalJson } from './translate.ts';
import { classify, kubeTime, type Condition } from './resource-status.ts';

/*
 * One entry per parentRef that names a core Service, as the Gateway API asks of a mesh
 * implementation (GEP-1426), with controllerName meshlet.io/control-plane and these conditions:
 * - `Accepted`: False with NoMatchingParent while the parent Service does not exist (the route
 *   applies once it does), False with UnsupportedValue when no rule can be applied as written;
 *   else True (reason Accepted).
 * - `PartiallyInvalid` (only while some rules, not all, are left out): True, UnsupportedValue,
 *   the message starting "Dropped Rule", as the spec asks of an implementation that drops rules.
 * - `ResolvedRefs`: False with InvalidKind (a backendRef that is not a Service) or BackendNotFound
 *   (a backend Service that does not exist: left out of its rule's split, its weight going to the
 *   others), else True.
 * Messages are `<JSON pointer>: <what is wrong>`, joined by `; `. lastTransitionTime is carried
 * over from our entry for the same parentRef while a condition's status holds.
 */

export const ROUTE_CONTROLLER_NAME = 'meshlet.io/control-plane';
export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';

export interface RouteParentStatus {
  parentRef: Record<string, unknown>;
  controllerName: string;
  conditions: Condition[];
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const isCoreService = (ref: Record<string, unknown>, defaultKind: string): boolean => {
  const group = str(ref.group);
  return (str(ref.kind) ?? defaultKind) === 'Service' && (group === undefined || group === '' || group === 'core');
};
/** The parentRef fields of the API, as written: status.parents[].parentRef must match the spec's. */
const PARENT_REF_FIELDS = ['group', 'kind', 'namespace', 'name', 'sectionName', 'port'] as const;

/** The rule a problem is about (`/spec/rules/2/filters` → 2). */
const ruleOf = (p: KubeProblem): number | undefined => {
  const m = /^\/spec\/rules\/(\d+)(\/|$)/.exec(p.field);
  return m ? Number(m[1]) : undefined;
};
const text = (ps: ReadonlyArray<{ field: string; message: string }>): string => ps.map((p) => `${p.field}: ${p.message}`).join('; ');

/** The entries of status.parents, whoever wrote them. */
export function routeParents(route: unknown): RouteParentStatus[] {
  const status = isRecord(route) && isRecord(route.status) ? route.status : {};
  return arr(status.parents).filter((p): p is RouteParentStatus => isRecord(p) && isRecord(p.parentRef) && typeof p.controllerName === 'string');
}

/** Ours, by parentRef, the rest in their order: what status.parents should hold. */
export interface DesiredRouteStatus {
  ours: RouteParentStatus[];
  /** Every entry: the other controllers' as they are (their order kept), then ours. */
  parents: RouteParentStatus[];
}

/**
 * `route`: the HTTPRoute as the informer holds it. `services`: the Services that exist, `name.namespace`.
 * `problems`: those of this route (kube-model.ts splitsFromHTTPRoute: a rule left out).
 * Undefined when there is nothing of ours to say: no Service parent and no entry of ours to remove.
 */
export function desiredRouteStatus(route: unknown, services: ReadonlySet<string>, problems: readonly KubeProblem[], nowMs: number): DesiredRouteStatus | undefined {
  if (!isRecord(route) || !isRecord(route.metadata)) return undefined;
  const namespace = str(route.metadata.namespace) ?? 'default';
  const name = str(route.metadata.name);
  const generation = typeof route.metadata.generation === 'number' ? { observedGeneration: route.metadata.generation } : {};
  const spec = isRecord(route.spec) ? route.spec : {};
  const current = routeParents(route);
  const others = current.filter((p) => p.controllerName !== ROUTE_CONTROLLER_NAME);
  const mineBefore = current.filter((p) => p.controllerName === ROUTE_CONTROLLER_NAME);

  // The rules left out, and why (their problems carry the rule's pointer).
  const own = problems.filter((p) => p.kind === 'HTTPRoute' && p.namespace === namespace && p.name === name);
  const dropped = own.filter((p) => ruleOf(p) !== undefined && !classify(p).applies);
  const droppedRules = [...new Set(dropped.map((p) => ruleOf(p)!))].toSorted((a, b) => a - b);
  const rules = arr(spec.rules);

  // Backends of the rules that apply whose Service does not exist.
  const missing: Array<{ field: string; message: string }> = [];
  rules.forEach((rule, i) => {
    if (droppedRules.includes(i) || !isRecord(rule)) return;
    arr(rule.backendRefs).forEach((ref, j) => {
      if (!isRecord(ref) || typeof ref.name !== 'string' || !isCoreService(ref, 'Service')) return;
      const key = `${ref.name}.${str(ref.namespace) ?? namespace}`;
      if (!services.has(key)) missing.push({ field: `/spec/rules/${i}/backendRefs/${j}`, message: `unknown service "${key}": left out of the rule's split (its weight goes to the other backends) until it exists` });
    });
  });
  const invalidKind = own.filter((p) => classify(p).reason === 'InvalidKind');
  const resolved: Omit<Condition, 'lastTransitionTime'> =
    invalidKind.length > 0
      ? { type: 'ResolvedRefs', status: 'False', reason: 'InvalidKind', message: text(invalidKind) }
      : missing.length > 0
        ? { type: 'ResolvedRefs', status: 'False', reason: 'BackendNotFound', message: text(missing) }
        : { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'Every backend Service exists.' };
  const allDropped = rules.length > 0 && droppedRules.length === rules.length;

  const seen = new Set<string>();
  const ours: RouteParentStatus[] = [];
  arr(spec.parentRefs).forEach((ref, k) => {
    if (!isRecord(ref) || typeof ref.name !== 'string' || !isCoreService(ref, 'Gateway')) return;
    const parentRef: Record<string, unknown> = {};
    for (const f of PARENT_REF_FIELDS) if (ref[f] !== undefined) parentRef[f] = ref[f];
    const id = canonicalJson(parentRef);
    if (seen.has(id)) return;
    seen.add(id);
    const parent = `${ref.name}.${str(ref.namespace) ?? namespace}`;
    const accepted: Omit<Condition, 'lastTransitionTime'> = !services.has(parent)
      ? { type: 'Accepted', status: 'False', reason: 'NoMatchingParent', message: `/spec/parentRefs/${k}: unknown service "${parent}": the route applies once it exists` }
      : allDropped
        ? { type: 'Accepted', status: 'False', reason: 'UnsupportedValue', message: `No rule can be applied: ${text(dropped)}` }
        : { type: 'Accepted', status: 'True', reason: 'Accepted', message: droppedRules.length > 0 ? `The route is in force, in part: ${text(dropped)}` : 'The route is in force.' };
    const conditions = [accepted];
    if (droppedRules.length > 0 && !allDropped) {
      conditions.push({ type: 'PartiallyInvalid', status: 'True', reason: 'UnsupportedValue', message: `Dropped Rule${droppedRules.length > 1 ? 's' : ''} ${droppedRules.join(', ')}: ${text(dropped)}` });
    }
    conditions.push(resolved);
    const was = mineBefore.find((p) => canonicalJson(p.parentRef) === id);
    ours.push({
      parentRef,
      controllerName: ROUTE_CONTROLLER_NAME,
      conditions: conditions.map((c): Condition => {
        const before = arr(was?.conditions).find((x): x is Condition => isRecord(x) && x.type === c.type);
        const since = before && before.status === c.status && before.lastTransitionTime ? before.lastTransitionTime : kubeTime(nowMs);
        return { type: c.type, status: c.status, ...generation, lastTransitionTime: since, reason: c.reason!, message: c.message! };
      }),
    });
  });
  if (ours.length === 0 && mineBefore.length === 0) return undefined;
  return { ours, parents: [...others, ...ours] };
}

/** What our entries say, without their transition times (the rewrite backoff compares this). */
export function routeContentKey(d: DesiredRouteStatus): string {
  return canonicalJson(d.ours.map((p) => ({ ...p, conditions: p.conditions.map((c) => ({ ...c, lastTransitionTime: undefined })) })));
}

/** Whether the route already says what we would write: our entries, and only them, equal. */
export function hasRouteStatus(route: unknown, d: DesiredRouteStatus): boolean {
  const mine = routeParents(route).filter((p) => p.controllerName === ROUTE_CONTROLLER_NAME);
  return canonicalJson(mine) === canonicalJson(d.ours);
}
