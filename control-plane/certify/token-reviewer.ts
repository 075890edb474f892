// The Kubernetes proof seam: who a service-account token belongs to, as the API server sees it.
// Guarantees: identityFromReview is pure and trusts only an authenticated review for our audience.

import { spiffeId, type SpiffeId } from '../ca/index.ts';
import { refusal, type Refusal } from './refusals.ts';

/** The fields of a TokenReview status that Certify reads. */
export interface TokenReviewResult {
  readonly authenticated: boolean;
  readonly username?: string;
  /** The audiences the token was found valid for (the intersection with the ones asked). */
  readonly audiences?: readonly string[];
  readonly error?: string;
}

/**
 * Asks the API server about a token. The real one is KubeTokenReviewer (TokenReview API);
 * tests use a stub. Throws when the review itself cannot be made (Certify answers 503).
 */
export interface TokenReviewer {
  review(token: string, audiences: readonly string[]): Promise<TokenReviewResult>;
}

const SA_PREFIX = 'system:serviceaccount:';

/**
 * The identity a review proves: `system:serviceaccount:<ns>:<sa>` →
 * spiffe://<trustDomain>/ns/<ns>/sa/<sa>. Nothing else about the caller is consulted.
 */
export function identityFromReview(r: TokenReviewResult, o: { audience: string; trustDomain: string }): { ok: true; identity: SpiffeId } | Refusal {
  if (!r.authenticated) return refusal('token-invalid', `token not authenticated by the Kubernetes API${r.error ? `: ${r.error.slice(0, 200)}` : ''}`);
  // An authenticator that ignores audiences answers with none: not proof for us.
  if (!r.audiences?.includes(o.audience)) return refusal('token-audience', `token is not valid for audience "${o.audience}" (project a token with audience "${o.audience}")`);
  const user = r.username ?? '';
  if (!user.startsWith(SA_PREFIX)) return refusal('not-service-account', `token belongs to ${JSON.stringify(user.slice(0, 100))}, not a service account; workload identities are issued to service accounts only`);
  const parts = user.slice(SA_PREFIX.length).split(':');
  if (parts.length !== 2) return refusal('not-service-account', `service-account user name ${JSON.stringify(user.slice(0, 200))} is not system:serviceaccount:<namespace>:<name>`);
  try {
    return { ok: true, identity: spiffeId({ trustDomain: o.trustDomain, namespace: parts[0] ?? '', serviceAccount: parts[1] ?? '' }) };
  } catch (e) {
    return refusal('not-service-account', `service account cannot be a workload identity: ${(e as Error).message}`);
  }
}
