// Every way Certify says no, and the one table that turns a reason into an HTTP status.
// Guarantees: a closed set of reason codes (metrics labels, response bodies); nothing else maps statuses.

export type ProofKind = 'kubernetes' | 'bootstrap';

export const REFUSAL_STATUS = {
  /** Body is not a JSON object with `csr` (string) and `kind` ('kubernetes' | 'bootstrap'). */
  'bad-body': 400,
  /** Content-Type is not application/json. */
  'bad-content-type': 415,
  /** A token in both the Authorization header and the body, and they differ. */
  'ambiguous-token': 400,
  /** The CSR is not one strict-DER PKCS#10 PEM block. */
  'bad-csr': 400,
  /** The CSR's self-signature does not verify (no proof of possession). */
  'csr-signature': 400,
  /** The CSR's key or signature algorithm is not accepted (want EC P-256 or RSA 2048–8192). */
  'unsupported-key': 400,
  /** No token at all. */
  'no-token': 401,
  /** TokenReview says not authenticated (unknown signer, expired, deleted account or bound object, garbage). */
  'token-invalid': 401,
  /** Authenticated, but not for the audience Certify asked for. */
  'token-audience': 401,
  /** Bootstrap token not of the mbt1 format. */
  'token-malformed': 401,
  /** Bootstrap token MAC does not match (tampered, or from another CA's key). */
  'token-bad-signature': 401,
  /** Bootstrap token past its expiry. */
  'token-expired': 401,
  /** This control plane does not check that kind of proof (no Kubernetes API / no bootstrap key). */
  'proof-kind-disabled': 401,
  /** A valid token, but its subject is not a Kubernetes service account. */
  'not-service-account': 403,
  /** A valid token naming an identity outside this CA's trust domain. */
  'wrong-trust-domain': 403,
  'body-too-large': 413,
  'not-found': 404,
  'method-not-allowed': 405,
  /** The TokenReview call itself failed (API server down, RBAC): try again. */
  'review-unavailable': 503,
  /** The CA state is not loaded yet, or its issuer cannot sign now. */
  'ca-unavailable': 503,
  'internal': 500,
} as const;

export type RefusalReason = keyof typeof REFUSAL_STATUS;
export const REFUSAL_REASONS = Object.keys(REFUSAL_STATUS) as RefusalReason[];

export interface Refusal {
  readonly ok: false;
  readonly reason: RefusalReason;
  readonly status: number;
  readonly message: string;
}

export function refusal(reason: RefusalReason, message: string): Refusal {
  return Object.freeze({ ok: false, reason, status: REFUSAL_STATUS[reason], message });
}
