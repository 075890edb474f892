// Workload identity names: the one place a SPIFFE ID string becomes a typed, frozen value.
// Guarantees: only spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, lower case, strict.

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** The SPIFFE specification's upper bound for a whole SPIFFE ID. */
const MAX_URI_LENGTH = 2048;

export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The canonical `spiffe://…` form. */
  readonly uri: string;
}

export class SpiffeIdError extends Error {
  readonly code = 'bad-spiffe-id';
  constructor(message: string) {
    super(message);
    this.name = 'SpiffeIdError';
  }
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** A DNS-1123 label: 1–63 of [a-z0-9-], starting and ending alphanumeric. */
export function isDnsLabel(s: string): boolean {
  return LABEL.test(s);
}

/** Dot-separated DNS-1123 labels, at most 253 characters in all. */
export function isDnsSubdomain(s: string): boolean {
  return s.length > 0 && s.length <= 253 && s.split('.').every(isDnsLabel);
}

function checkTrustDomain(td: string): void {
  if (!isDnsSubdomain(td)) {
    throw new SpiffeIdError(`trust domain ${JSON.stringify(td)} is not a lower-case DNS name (labels of a-z, 0-9, '-', at most 63 characters each, 253 in all)`);
  }
}
function checkNamespace(ns: string): void {
  if (!isDnsLabel(ns)) {
    throw new SpiffeIdError(`namespace ${JSON.stringify(ns)} is not a DNS-1123 label (a-z, 0-9, '-', at most 63 characters, alphanumeric at both ends)`);
  }
}
function checkServiceAccount(sa: string): void {
  // Kubernetes service-account names are DNS-1123 subdomains, so dots are allowed.
  if (!isDnsSubdomain(sa)) {
    throw new SpiffeIdError(`service account ${JSON.stringify(sa)} is not a DNS-1123 subdomain (dot-separated labels of a-z, 0-9, '-')`);
  }
}

/** Validate the parts and build the frozen identity. */
export function spiffeId(parts: { trustDomain?: string; namespace: string; serviceAccount: string }): SpiffeId {
  const trustDomain = parts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  checkTrustDomain(trustDomain);
  checkNamespace(parts.namespace);
  checkServiceAccount(parts.serviceAccount);
  const uri = `spiffe://${trustDomain}/ns/${parts.namespace}/sa/${parts.serviceAccount}`;
  if (uri.length > MAX_URI_LENGTH) throw new SpiffeIdError(`SPIFFE ID is longer than ${MAX_URI_LENGTH} characters`);
  return Object.freeze({ trustDomain, namespace: parts.namespace, serviceAccount: parts.serviceAccount, uri });
}

/** The canonical string of an identity (re-validated, so a hand-built object cannot smuggle junk). */
export function formatSpiffeId(id: { trustDomain?: string; namespace: string; serviceAccount: string }): string {
  return spiffeId(id).uri;
}

/**
 * Parse strictly: scheme `spiffe://` in lower case, a DNS trust domain (no port, no userinfo),
 * exactly `/ns/<ns>/sa/<sa>`, nothing after (no query, fragment, trailing slash, extra segment,
 * percent-encoding or upper case). Throws SpiffeIdError saying what is wrong.
 */
export function parseSpiffeId(s: string): SpiffeId {
  if (typeof s !== 'string') throw new SpiffeIdError('SPIFFE ID must be a string');
  if (s.length > MAX_URI_LENGTH) throw new SpiffeIdError(`SPIFFE ID is longer than ${MAX_URI_LENGTH} characters`);
  const prefix = 'spiffe://';
  if (!s.startsWith(prefix)) throw new SpiffeIdError(`${JSON.stringify(s)} does not start with "spiffe://"`);
  const rest = s.slice(prefix.length);
  if (/[?#]/.test(rest)) throw new SpiffeIdError(`${JSON.stringify(s)} has a query or fragment`);
  const slash = rest.indexOf('/');
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  if (authority.includes('@')) throw new SpiffeIdError(`${JSON.stringify(s)} has userinfo in the trust domain`);
  if (authority.includes(':')) throw new SpiffeIdError(`${JSON.stringify(s)} has a port in the trust domain`);
  checkTrustDomain(authority);
  if (slash < 0) throw new SpiffeIdError(`${JSON.stringify(s)} has no workload path (want /ns/<namespace>/sa/<service-account>)`);
  const segments = rest.slice(slash + 1).split('/');
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    throw new SpiffeIdError(`${JSON.stringify(s)} path is not exactly /ns/<namespace>/sa/<service-account>`);
  }
  return spiffeId({ trustDomain: authority, namespace: segments[1] ?? '', serviceAccount: segments[3] ?? '' });
}

export function sameSpiffeId(a: SpiffeId, b: SpiffeId): boolean {
  return a.uri === b.uri;
}
