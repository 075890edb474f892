// The AdmissionReview (admission.k8s.io/v1) envelope both webhook paths read and answer: /inject
// (review.ts) and /validate (validate.ts). Guarantees: pure; never throws; what cannot be answered says why.

export const REVIEW_API_VERSION = 'admission.k8s.io/v1';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export type ReadReview = { ok: true; uid: string; request: Record<string, unknown> } | { ok: false; error: string };

const bad = (error: string): ReadReview => ({ ok: false, error });

/** The request of a review, or why there is none to answer (the webhook says so with an HTTP 400). */
export function readReview(bodyText: string): ReadReview {
  if (bodyText.trim() === '') return bad('empty body: expected an AdmissionReview (admission.k8s.io/v1) as JSON');
  let parsed: unknown;
  try {
    parsed = JSON.parse(bodyText);
  } catch (e) {
    return bad(`body is not JSON (${(e as Error).message}): expected an AdmissionReview (admission.k8s.io/v1)`);
  }
  if (!isRecord(parsed)) return bad('body is not a JSON object: expected an AdmissionReview (admission.k8s.io/v1)');
  if (parsed.kind !== 'AdmissionReview' || parsed.apiVersion !== REVIEW_API_VERSION) {
    return bad(`expected kind AdmissionReview, apiVersion ${REVIEW_API_VERSION}; got kind ${JSON.stringify(parsed.kind ?? null)}, apiVersion ${JSON.stringify(parsed.apiVersion ?? null)} (the webhook configuration must list admissionReviewVersions: [v1])`);
  }
  const request = parsed.request;
  if (!isRecord(request)) return bad('the AdmissionReview has no request');
  const uid = request.uid;
  if (typeof uid !== 'string' || uid === '') return bad('the AdmissionReview request has no uid');
  return { ok: true, uid, request };
}

/** The review sent back: the request's uid and the decision. */
export const reviewResponse = (uid: string, response: Record<string, unknown>) => ({ apiVersion: REVIEW_API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } });
