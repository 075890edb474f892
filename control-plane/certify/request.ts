// Certify's intake: the POST body and Authorization header become a typed request, or a refusal.
// Guarantees: pure; only `csr`, `token` and `kind` are read; the CSR is not parsed here (signing does that).

import { refusal, type ProofKind, type Refusal } from './refusals.ts';

/** Bodies larger than this are refused with 413 before they are parsed. */
export const MAX_BODY_BYTES = 64 * 1024;

export interface CertifyRequest {
  readonly csrPem: string;
  readonly kind: ProofKind;
  /** Undefined when the caller sent none (refused with no-token by the proof check). */
  readonly token: string | undefined;
}

/**
 * The wire format (POST /v1/certify, Content-Type: application/json):
 *   { "csr": "<PEM CERTIFICATE REQUEST>", "kind": "kubernetes" | "bootstrap", "token": "<token>" }
 * The token may instead come as `Authorization: Bearer <token>`; if both are present they must
 * be equal. Unknown fields are ignored (a newer client may send more).
 */
export function parseCertifyRequest(input: { body: Buffer; contentType: string | undefined; authorization: string | undefined }): CertifyRequest | Refusal {
  const type = (input.contentType ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') return refusal('bad-content-type', `Content-Type must be application/json, got ${JSON.stringify(input.contentType ?? '')}`);
  let json: unknown;
  try {
    json = JSON.parse(input.body.toString('utf8'));
  } catch {
    return refusal('bad-body', 'body is not JSON');
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return refusal('bad-body', 'body must be a JSON object {csr, kind, token}');
  const { csr, kind, token } = json as Record<string, unknown>;
  if (typeof csr !== 'string' || csr.length === 0) return refusal('bad-body', '"csr" must be a PEM certificate request (string)');
  if (kind !== 'kubernetes' && kind !== 'bootstrap') return refusal('bad-body', '"kind" must be "kubernetes" or "bootstrap"');
  if (token !== undefined && typeof token !== 'string') return refusal('bad-body', '"token" must be a string');

  let headerToken: string | undefined;
  if (input.authorization !== undefined) {
    const m = /^Bearer +(\S+) *$/i.exec(input.authorization);
    if (!m) return refusal('no-token', 'Authorization header is not "Bearer <token>"');
    headerToken = m[1];
  }
  const bodyToken = token === '' ? undefined : token;
  if (headerToken !== undefined && bodyToken !== undefined && headerToken !== bodyToken) {
    return refusal('ambiguous-token', 'the Authorization header and the body carry different tokens; send one');
  }
  return Object.freeze({ csrPem: csr, kind, token: headerToken ?? bodyToken });
}
