// Typed certificate-authority errors with stable codes. Certify maps codes to HTTP status and
// metrics labels in one place; everything below it throws CertError and nothing else.

export const CERT_ERROR_CODES = [
  /** Not a parseable, DER-canonical PKCS#10 request. */
  'bad-csr',
  /** The CSR's self-signature does not verify: no proof of possession of the private key. */
  'csr-signature',
  /** Key type, curve, size or signature algorithm we do not accept. */
  'unsupported-key',
  /** The issuer is not valid at the signing time, or the capped lifetime would be empty. */
  'issuer-expired',
  /** Nonsense options (ttl, validity, trust domain). */
  'bad-options',
  /** A certificate or key that cannot be parsed, or a key that does not match its certificate. */
  'bad-cert',
  /** No path from the leaf to an anchor of the trust bundle. */
  'untrusted',
  /** A certificate of the path is past its notAfter. */
  'expired',
  /** A certificate of the path is before its notBefore. */
  'not-yet-valid',
  /** The leaf does not carry exactly one valid SPIFFE URI SAN, or is a CA. */
  'bad-identity',
] as const;

export type CertErrorCode = (typeof CERT_ERROR_CODES)[number];

export class CertError extends Error {
  readonly code: CertErrorCode;
  constructor(code: CertErrorCode, message: string, opts?: { cause?: unknown }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CertError';
    this.code = code;
  }
}

export function isCertError(e: unknown): e is CertError {
  return e instanceof CertError;
}
