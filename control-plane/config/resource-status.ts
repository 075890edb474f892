// What the status of a TrafficSplit, AuthorizationPolicy or ServicePolicy should say, from the same problems the
// admin /config-problems lists: pure, no I/O; equal inputs give an equal status, so replicas agree.
import { API_VERSION, KUBERNETES_KINDS, type ResourceStatus } from '../../api/resources.ts';
import type { KubeProblem } from './kube-model.ts';
import { INVALID, type ProblemEffect } from './translate.ts';

/*
 * Two conditions, as Gateway API routes carry them:
 * - `Accepted`: True while the object is in force (possibly in part), False when the control plane
 *   does not apply it at all. Reasons: Accepted, Invalid (the spec fails meshlet's checks),
 *   Conflicted (an older TrafficSplit already splits every request to the same service; an older
 *   ServicePolicy already sets the policy of its Service), ServiceNotFound (the apex service, or a
 *   ServicePolicy's target, does not exist), BackendNotFound (no backend that exists
 *   has a weight above 0), TooManyPolicies (more AuthorizationPolicies target the service than a
 *   proxy takes: none applies and its proxies deny every inbound request). On True with problems,
 *   the message says what is left out.
 * - `ResolvedRefs`: False when a name it refers to does not resolve (BackendNotFound: a backend
 *   left out of the split; ServiceNotFound: a split's apex, or an AuthorizationPolicy's target,
 *   which stays Accepted: it still guards any proxy serving that name; PortNotFound: an
 *   AuthorizationPolicy port the service lacks), else True.
 * Messages are `<JSON pointer of the field>: <what is wrong>`, several joined by `; `.
 * lastTransitionTime is carried over from the object's current condition unless the condition's
 * status changes, so rewriting the same verdict never moves it.
 */

/** meshlet's CRs, and the Gateway API's HTTPRoute (its status.parents: route-status.ts). */
export type StatusKind = (typeof KUBERNETES_KINDS)[number] | 'HTTPRoute';
export type Condition = NonNullable<ResourceStatus['conditions']>[number];
export const CONDITION_TYPES = ['Accepted', 'ResolvedRefs'] as const;
/** Server-side apply field manager: every replica the same, so their writes are one owner's. */
export const STATUS_FIELD_MANAGER = 'meshlet-control-plane';
/** metav1.Condition's message limit. */
const MESSAGE_MAX = 32768;

/**
 * What a problem does to its object: the effect it was made with (kube-model.ts parseCr;
 * translate.ts resolveSplit, routesOf, preparePolicies), never its wording. One without an effect
 * counts as Invalid and not applied: the conservative verdict.
 */
export function classify(p: Pick<KubeProblem, 'effect'>): Readonly<ProblemEffect> {
  return p.effect ?? INVALID;
}

/** The fields of a watched object the status needs. */
export interface StatusTarget {
  kind: StatusKind;
  namespace: string;
  name: string;
  uid: string | undefined;
  generation: number | undefined;
  resourceVersion: string | undefined;
  /** What the object carries now. */
  status: ResourceStatus | undefined;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

export function statusTarget(kind: StatusKind, o: unknown): StatusTarget | undefined {
  if (!isRecord(o) || !isRecord(o.metadata)) return undefined;
  const m = o.metadata;
  const namespace = str(m.namespace);
  const name = str(m.name);
  if (!namespace || !name) return undefined;
  return {
    kind,
    namespace,
    name,
    uid: str(m.uid),
    generation: typeof m.generation === 'number' ? m.generation : undefined,
    resourceVersion: str(m.resourceVersion),
    status: isRecord(o.status) ? (o.status as ResourceStatus) : undefined,
  };
}

/** Kubernetes' metav1.Time: RFC 3339 in seconds. */
export const kubeTime = (ms: number): string => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

const text = (problems: readonly KubeProblem[]): string => {
  const t = problems.map((p) => `${p.field}: ${p.message}`).join('; ');
  return t.length <= MESSAGE_MAX ? t : `${t.slice(0, MESSAGE_MAX - 1)}…`;
};

/**
 * The status `target` should carry, given the problems of that object (kind, namespace and name
 * equal to the target's; others are ignored) and the wall-clock time now.
 */
export function desiredStatus(target: StatusTarget, problems: readonly KubeProblem[], nowMs: number): ResourceStatus {
  const own = problems.filter((p) => p.kind === target.kind && p.namespace === target.namespace && p.name === target.name);
  const classed = own.map((p) => ({ p, c: classify(p) }));
  const fatal = classed.filter((x) => !x.c.applies);
  const refs = classed.filter((x) => x.c.reference);
  const what = target.kind === 'TrafficSplit' ? 'The split' : 'The policy';
  const accepted: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> =
    fatal.length > 0
      ? { type: 'Accepted', status: 'False', reason: fatal[0]!.c.reason, message: text(own) }
      : { type: 'Accepted', status: 'True', reason: 'Accepted', message: own.length > 0 ? `${what} is in force, in part: ${text(own)}` : `${what} is in force.` };
  const resolved: Omit<Condition, 'lastTransitionTime' | 'observedGeneration'> =
    refs.length > 0
      ? { type: 'ResolvedRefs', status: 'False', reason: refs[0]!.c.reason, message: text(refs.map((x) => x.p)) }
      : { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'Every name it refers to resolves.' };
  const gen = target.generation !== undefined ? { observedGeneration: target.generation } : {};
  const current = target.status?.conditions ?? [];
  const conditions = [accepted, resolved].map((c): Condition => {
    const was = current.find((x) => x.type === c.type);
    const since = was && was.status === c.status && was.lastTransitionTime ? was.lastTransitionTime : kubeTime(nowMs);
    return { type: c.type, status: c.status, ...gen, lastTransitionTime: since, reason: c.reason!, message: c.message! };
  });
  return { ...gen, conditions };
}

const pick = (c: Condition | undefined) => (c ? [c.status, c.reason, c.message, c.observedGeneration, c.lastTransitionTime] : undefined);

/** Whether the object already carries `desired` (our conditions and observedGeneration; other conditions are not ours). */
export function hasStatus(target: StatusTarget, desired: ResourceStatus): boolean {
  const current = target.status;
  if (current?.observedGeneration !== desired.observedGeneration) return false;
  for (const c of desired.conditions ?? []) {
    const was = current?.conditions?.find((x) => x.type === c.type);
    if (JSON.stringify(pick(was)) !== JSON.stringify(pick(c))) return false;
  }
  return true;
}

/** The server-side apply body: our fields only, with the uid as a precondition (a recreated object of the same name is not ours to describe). */
export function applyBody(target: StatusTarget, desired: ResourceStatus): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: target.kind,
    metadata: { name: target.name, namespace: target.namespace, ...(target.uid !== undefined ? { uid: target.uid } : {}) },
    status: desired,
  };
}
