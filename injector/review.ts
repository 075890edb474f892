// One AdmissionReview (v1) in, one answer out: the webhook's decision, without sockets.
// Guarantees: pure; never throws; an unreadable review is an HTTP 400 with a reason, a readable one always gets a review back with its uid.

import type { Operation } from 'fast-json-patch';
import { readReview, reviewResponse as answer } from './admission-review.ts';
import { inject, type PodLike } from './inject.ts';
import type { Outcome } from './metrics.ts';
import type { InjectSettings } from './settings.ts';

export interface ReviewAnswer {
  /** 200 for every answered review (allowed or not); 400 when the body is not a review we can answer. */
  status: number;
  body: unknown;
  outcome: Outcome;
  /** What to log (the webhook adds timing). */
  fields: Record<string, unknown>;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(message: string, fields: Record<string, unknown> = {}): ReviewAnswer {
  return { status: 400, body: { error: message }, outcome: { outcome: 'error', reason: 'bad-review' }, fields: { error: message, ...fields } };
}

export function encodePatch(patch: readonly Operation[]): string {
  return Buffer.from(JSON.stringify(patch)).toString('base64');
}

/** `settings` is a thunk: the trust bundle may rotate between reviews; a thrown error is an internal error. */
export function review(bodyText: string, settings: () => InjectSettings): ReviewAnswer {
  const read = readReview(bodyText);
  if (!read.ok) return bad(read.error);
  const { uid, request: req } = read;

  const resource = isRecord(req.resource) ? req.resource : {};
  const where = { uid, namespace: req.namespace ?? null, name: isRecord(req.object) && isRecord(req.object.metadata) ? (req.object.metadata.name ?? req.object.metadata.generateName ?? null) : null, dryRun: req.dryRun === true };
  // Only Pod creates are mutated; anything else the configuration sends by mistake is allowed untouched.
  const isPodCreate = req.operation === 'CREATE' && (resource.group ?? '') === '' && resource.resource === 'pods' && (req.subResource ?? '') === '';
  if (!isPodCreate) {
    return {
      status: 200, body: answer(uid, { allowed: true }),
      outcome: { outcome: 'skipped', reason: 'not-a-pod-create' },
      fields: { ...where, operation: req.operation ?? null, resource: `${String(resource.group ?? '')}/${String(resource.resource ?? '')}` },
    };
  }
  if (!isRecord(req.object)) {
    const message = 'the AdmissionReview request has no object (the Pod)';
    return { status: 200, body: answer(uid, { allowed: false, status: { code: 400, reason: 'BadRequest', message } }), outcome: { outcome: 'error', reason: 'bad-review' }, fields: { ...where, error: message } };
  }
  let result;
  try {
    result = inject(req.object as PodLike, settings());
  } catch (e) {
    const message = `meshlet proxy injector: internal error: ${(e as Error).message}`;
    return { status: 200, body: answer(uid, { allowed: false, status: { code: 500, message } }), outcome: { outcome: 'error', reason: 'internal' }, fields: { ...where, error: message } };
  }
  switch (result.outcome) {
    case 'injected':
      return {
        status: 200,
        body: answer(uid, { allowed: true, patchType: 'JSONPatch', patch: encodePatch(result.patch) }),
        outcome: { outcome: 'injected', reason: result.mode },
        fields: { ...where, mode: result.mode, ops: result.patch.length },
      };
    case 'skipped':
      return { status: 200, body: answer(uid, { allowed: true }), outcome: { outcome: 'skipped', reason: result.skipped }, fields: where };
    case 'refused':
      return {
        status: 200,
        body: answer(uid, { allowed: false, status: { code: 400, reason: 'BadRequest', message: result.message } }),
        outcome: { outcome: 'error', reason: result.refused },
        fields: { ...where, error: result.message },
      };
  }
}
