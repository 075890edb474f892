// The certificate authority's public surface: what Certify, the CLI and the proxy import.
// Guarantees: explicit exports only; private keys are reachable only through exportSecret().

export { DEFAULT_TRUST_DOMAIN, SpiffeIdError, formatSpiffeId, isDnsLabel, isDnsSubdomain, parseSpiffeId, sameSpiffeId, spiffeId } from './spiffe.ts';
export type { SpiffeId } from './spiffe.ts';
export { CERT_ERROR_CODES, CertError, isCertError } from './errors.ts';
export type { CertErrorCode } from './errors.ts';
export { ManualWallClock, systemWallClock } from './wall-clock.ts';
export type { WallClock } from './wall-clock.ts';
export { MAX_CSR_PEM_BYTES, makeCsr, parseCsr } from './csr.ts';
export type { LeafKeyKind, MakeCsrOptions, ParsedCsr } from './csr.ts';
export {
  Authority, CLOCK_SKEW_MS, DAY_MS, DEFAULT_ANCHOR_VALIDITY_DAYS, DEFAULT_ISSUER_VALIDITY_DAYS, DEFAULT_LEAF_TTL_MS, MIN_LEAF_LIFETIME_MS,
  generateKeyPair, makeIssuer, makeTrustAnchor, signLeaf, uriSansOf,
} from './certs.ts';
export type { AuthorityRole, AuthoritySecret, KeyPair, RandomBytes, SignLeafOptions, SignedLeaf } from './certs.ts';
export { spiffeIdOf, verifyChain } from './verify.ts';
export {
  RotationError, addAnchor, expiries, exportSecret, importSecret, initCa, issueLeaf, phaseOf, removableAtMs, removeAnchor,
  rotateIssuer, trustBundle, useAnchor,
} from './bundle.ts';
export type { CaSecret, CaState, InitOptions, IssuedLeaf, Phase, RotationStep } from './bundle.ts';
