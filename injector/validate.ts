// One AdmissionReview of a meshlet.io object in, allowed or denied out: the validating webhook's
// decision (POST /validate), without sockets. Guarantees: pure; never throws; the check is the
// control plane's own (kube-model.ts parseCustomResource), so a denied object is exactly one the
// control plane would report Invalid, and the denial names every problem with its path.

import type { Problem } from '../api/proxy-config.ts';
import { API_GROUP, KUBERNETES_KINDS } from '../api/resources.ts';
import { parseCustomResource, type CustomResourceKind } from '../control-plane/config/kube-model.ts';
import { readReview, reviewResponse } from './admission-review.ts';

/** `other`: a review that names no meshlet.io kind this server checks (or none at all). */
export const VALIDATION_KINDS = [...KUBERNETES_KINDS, 'other'] as const;
export type ValidationKind = (typeof VALIDATION_KINDS)[number];
/**
 * allowed: the object passed the check; denied: it did not (the API server refuses the write);
 * skipped: not the validator's business (another group, a DELETE, a status write, an object being
 * deleted): allowed unchecked; error: the review could not be read (HTTP 400) or had no object (denied).
 */
export const VALIDATION_OUTCOMES = ['allowed', 'denied', 'skipped', 'error'] as const;
export type ValidationOutcome = (typeof VALIDATION_OUTCOMES)[number];

export interface ValidationAnswer {
  /** 200 for every answered review (allowed or not); 400 when the body is not a review we can answer. */
  status: number;
  body: unknown;
  kind: ValidationKind;
  outcome: ValidationOutcome;
  /** What to log (the webhook adds timing). */
  fields: Record<string, unknown>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The operations the configuration sends (manifests/webhook/validatingwebhookconfiguration.yaml). */
const CHECKED_OPERATIONS = new Set(['CREATE', 'UPDATE']);

/** `ServicePolicy "api" in shop is invalid: /spec/retry/backoff/base: ...; /spec/...: ...` */
export function denialMessage(kind: CustomResourceKind, namespace: string, name: string, problems: readonly Problem[]): string {
  const list = problems.map((p) => `${p.path}: ${p.message}`).join('; ');
  return `${kind} ${JSON.stringify(name)} in ${namespace} is invalid (the meshlet control plane would not apply it): ${list}`;
}

/**
 * The object as the control plane will read it once stored: a CREATE may leave the namespace to the
 * request's URL, and a generateName create has no name yet (the API server appends 5 characters of
 * [a-z0-9], which cannot change whether the name is valid).
 */
function asStored(object: Record<string, unknown>, namespace: string | undefined): { doc: Record<string, unknown>; namespace: string; name: string } {
  const meta = isRecord(object.metadata) ? object.metadata : {};
  const ns = str(meta.namespace) ?? namespace ?? '';
  const generated = str(meta.name) === undefined && str(meta.generateName) !== undefined;
  const name = generated ? `${str(meta.generateName)}00000` : (str(meta.name) ?? '');
  return { doc: { ...object, metadata: { ...meta, namespace: ns, name } }, namespace: ns, name: generated ? `${str(meta.generateName)}*` : name };
}

export function validateReview(bodyText: string): ValidationAnswer {
  const read = readReview(bodyText);
  if (!read.ok) return { status: 400, body: { error: read.error }, kind: 'other', outcome: 'error', fields: { error: read.error } };
  const { uid, request: req } = read;
  const resource = isRecord(req.resource) ? req.resource : {};
  const gvk = isRecord(req.kind) ? req.kind : {};
  const group = str(resource.group) ?? '';
  const kind = KUBERNETES_KINDS.find((k) => k === gvk.kind && group === API_GROUP);
  const object = isRecord(req.object) ? req.object : undefined;
  const meta = object && isRecord(object.metadata) ? object.metadata : {};
  const where = {
    uid,
    operation: req.operation ?? null,
    resource: `${group}/${String(resource.resource ?? '')}${req.subResource ? `/${String(req.subResource)}` : ''}`,
    namespace: req.namespace ?? null,
    name: meta.name ?? meta.generateName ?? req.name ?? null,
    dryRun: req.dryRun === true,
  };
  const allow = (outcome: ValidationOutcome, why: string): ValidationAnswer => ({
    status: 200, body: reviewResponse(uid, { allowed: true }), kind: kind ?? 'other', outcome, fields: { ...where, ...(why ? { why } : {}) },
  });
  // What the configuration should never send is allowed untouched (and logged): a mistake in the
  // configuration must not block writes the validator has no rule for.
  if (group !== API_GROUP) return allow('skipped', `not a ${API_GROUP} resource`);
  if (!CHECKED_OPERATIONS.has(String(req.operation))) return allow('skipped', `operation ${String(req.operation)} is not checked`);
  if ((req.subResource ?? '') !== '') return allow('skipped', 'a subresource (status) write: the spec does not change');
  if (kind === undefined) return allow('skipped', `kind ${JSON.stringify(gvk.kind ?? null)} has no check here`);
  if (!object) {
    const message = `the AdmissionReview request has no object (the ${kind})`;
    return { status: 200, body: reviewResponse(uid, { allowed: false, status: { code: 400, reason: 'BadRequest', message } }), kind, outcome: 'error', fields: { ...where, error: message } };
  }
  // An object on its way out (a finalizer being removed) must be allowed to go, even if it was
  // stored before the validator ran and is invalid.
  if (meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null) return allow('skipped', 'the object is being deleted');
  const stored = asStored(object, str(req.namespace));
  const r = parseCustomResource(kind, stored.doc);
  if (r.ok) return allow('allowed', '');
  const message = denialMessage(kind, stored.namespace, stored.name, r.problems);
  return {
    status: 200,
    body: reviewResponse(uid, { allowed: false, status: { code: 422, reason: 'Invalid', message } }),
    kind,
    outcome: 'denied',
    fields: { ...where, problems: r.problems.map((p) => `${p.path}: ${p.message}`) },
  };
}
