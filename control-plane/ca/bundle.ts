// The CA's state: trust bundle, active issuer, and the rotation steps the CLI drives (pure).
// Guarantees: every step taken out of order is refused; no step leaves a valid leaf untrusted.

/*
 * Phases and the only moves between them:
 *
 *   steady ──add-anchor──▶ anchor-added ──use-anchor──▶ anchor-switched ──remove-anchor──▶ steady
 *   (any phase) ──rotate-issuer──▶ same phase, new issuer under the current anchor
 *
 *   steady           bundle [A]       issuer under A
 *   anchor-added     bundle [A, B]    issuer under A; push the bundle everywhere before use-anchor
 *   anchor-switched  bundle [B, A]    issuer under B; A stays until every leaf signed under it has
 *                                     expired (leafTtlMs after use-anchor), then remove-anchor
 *
 * Leaves are not tracked (the CA keeps no per-leaf state); the wait uses the longest lifetime the
 * CA issues, `leafTtlMs`, which `issueLeaf` enforces.
 */

import { X509Certificate } from 'node:crypto';
import {
  Authority, DEFAULT_ANCHOR_VALIDITY_DAYS, DEFAULT_ISSUER_VALIDITY_DAYS, DEFAULT_LEAF_TTL_MS, makeIssuer, makeTrustAnchor, signLeaf,
  type AuthoritySecret, type RandomBytes,
} from './certs.ts';
import { CertError } from './errors.ts';
import { DEFAULT_TRUST_DOMAIN, type SpiffeId } from './spiffe.ts';

export type RotationStep = 'rotate-issuer' | 'add-anchor' | 'use-anchor' | 'remove-anchor';
export type Phase = 'steady' | 'anchor-added' | 'anchor-switched';

export class RotationError extends Error {
  /** out-of-order: the step does not follow from the phase; too-early: it would strand valid leaves; bad-state: a stored state that does not hold together. */
  readonly code: 'out-of-order' | 'too-early' | 'bad-state';
  readonly step: RotationStep | 'import';
  constructor(code: 'out-of-order' | 'too-early' | 'bad-state', step: RotationStep | 'import', message: string) {
    super(`${step}: ${message}`);
    this.name = 'RotationError';
    this.code = code;
    this.step = step;
  }
}

export interface CaState {
  readonly trustDomain: string;
  /** The longest leaf lifetime the CA issues; remove-anchor waits this long after use-anchor. */
  readonly leafTtlMs: number;
  /** Signs the active issuer. */
  readonly anchor: Authority;
  /** In the bundle, not used yet (phase anchor-added). */
  readonly nextAnchor?: Authority;
  /** Still in the bundle after use-anchor (phase anchor-switched). Certificate only: its key is dropped. */
  readonly previousAnchorPem?: string;
  /** When use-anchor happened (wall ms); set exactly when previousAnchorPem is. */
  readonly anchorSwitchedAtMs?: number;
  /** Signs leaves now. */
  readonly issuer: Authority;
  /** The issuer before the last rotation, for the record (certificate only). */
  readonly previousIssuerPem?: string;
}

export function phaseOf(s: CaState): Phase {
  if (s.nextAnchor) return 'anchor-added';
  if (s.previousAnchorPem !== undefined) return 'anchor-switched';
  return 'steady';
}

/** The anchors every workload must trust now: current first. */
export function trustBundle(s: CaState): string[] {
  const out = [s.anchor.certPem];
  if (s.nextAnchor) out.push(s.nextAnchor.certPem);
  if (s.previousAnchorPem !== undefined) out.push(s.previousAnchorPem);
  return out;
}

export interface InitOptions {
  trustDomain?: string;
  now: number;
  anchorValidityDays?: number;
  issuerValidityDays?: number;
  leafTtlMs?: number;
  randomBytes?: RandomBytes;
}

/** A fresh CA: one anchor, one issuer under it, phase steady. */
export function initCa(o: InitOptions): CaState {
  const leafTtlMs = o.leafTtlMs ?? DEFAULT_LEAF_TTL_MS;
  if (!Number.isFinite(leafTtlMs) || leafTtlMs <= 0) throw new CertError('bad-options', `leafTtlMs must be > 0, got ${leafTtlMs}`);
  const anchor = makeTrustAnchor({ trustDomain: o.trustDomain ?? DEFAULT_TRUST_DOMAIN, now: o.now, validityDays: o.anchorValidityDays ?? DEFAULT_ANCHOR_VALIDITY_DAYS, randomBytes: o.randomBytes });
  const issuer = makeIssuer(anchor, { now: o.now, validityDays: o.issuerValidityDays ?? DEFAULT_ISSUER_VALIDITY_DAYS, randomBytes: o.randomBytes });
  return freeze({ trustDomain: anchor.trustDomain, leafTtlMs, anchor, issuer });
}

interface StepOptions {
  now: number;
  validityDays?: number;
  randomBytes?: RandomBytes;
}

/** A new issuer under the current anchor. The bundle is unchanged, so old leaves keep validating. */
export function rotateIssuer(s: CaState, o: StepOptions): CaState {
  const issuer = makeIssuer(s.anchor, { now: o.now, validityDays: o.validityDays ?? DEFAULT_ISSUER_VALIDITY_DAYS, randomBytes: o.randomBytes });
  return freeze({ ...s, issuer, previousIssuerPem: s.issuer.certPem });
}

/** A new anchor joins the bundle; nothing is signed with it until use-anchor. */
export function addAnchor(s: CaState, o: StepOptions): CaState {
  const phase = phaseOf(s);
  if (phase === 'anchor-added') throw new RotationError('out-of-order', 'add-anchor', `a new anchor (${s.nextAnchor?.subject}) is already in the bundle; push the bundle, then run use-anchor`);
  if (phase === 'anchor-switched') throw new RotationError('out-of-order', 'add-anchor', `the previous anchor is still in the bundle; run remove-anchor first (allowed from ${iso(removableAtMs(s))})`);
  const nextAnchor = makeTrustAnchor({ trustDomain: s.trustDomain, now: o.now, validityDays: o.validityDays ?? DEFAULT_ANCHOR_VALIDITY_DAYS, randomBytes: o.randomBytes });
  return freeze({ ...s, nextAnchor });
}

/**
 * The added anchor becomes current and signs a new active issuer; the old anchor stays in the
 * bundle (certificate only). Run it only after the bundle from add-anchor reached every workload.
 */
export function useAnchor(s: CaState, o: StepOptions): CaState {
  const phase = phaseOf(s);
  if (phase === 'steady') throw new RotationError('out-of-order', 'use-anchor', 'no new anchor in the bundle; run add-anchor first and push the bundle everywhere');
  if (phase === 'anchor-switched') throw new RotationError('out-of-order', 'use-anchor', 'the new anchor is already in use; the next step is remove-anchor');
  const anchor = s.nextAnchor as Authority;
  const issuer = makeIssuer(anchor, { now: o.now, validityDays: o.validityDays ?? DEFAULT_ISSUER_VALIDITY_DAYS, randomBytes: o.randomBytes });
  return freeze({
    trustDomain: s.trustDomain, leafTtlMs: s.leafTtlMs,
    anchor, issuer, previousIssuerPem: s.issuer.certPem,
    previousAnchorPem: s.anchor.certPem, anchorSwitchedAtMs: o.now,
  });
}

/** The earliest wall time remove-anchor is allowed (phase anchor-switched). */
export function removableAtMs(s: CaState): number {
  return (s.anchorSwitchedAtMs ?? 0) + s.leafTtlMs;
}

/** The old anchor leaves the bundle, once nothing valid can depend on it. */
export function removeAnchor(s: CaState, o: { now: number }): CaState {
  const phase = phaseOf(s);
  if (phase === 'steady') throw new RotationError('out-of-order', 'remove-anchor', 'there is no previous anchor to remove; an anchor rotation starts with add-anchor');
  if (phase === 'anchor-added') throw new RotationError('out-of-order', 'remove-anchor', 'the new anchor is not in use yet; run use-anchor first (after the bundle reached every workload)');
  const old = new X509Certificate(s.previousAnchorPem as string);
  if (s.issuer.x509.checkIssued(old) && s.issuer.x509.verify(old.publicKey)) {
    throw new RotationError('out-of-order', 'remove-anchor', `the active issuer ${s.issuer.subject} is signed by the anchor being removed`);
  }
  if (o.now < removableAtMs(s)) {
    const mins = Math.ceil((removableAtMs(s) - o.now) / 60000);
    throw new RotationError('too-early', 'remove-anchor', `leaves signed under the old anchor may be valid until ${iso(removableAtMs(s))} (use-anchor at ${iso(s.anchorSwitchedAtMs ?? 0)} + leaf TTL ${s.leafTtlMs} ms); wait ${mins} more minute(s)`);
  }
  const rest: CaState = { trustDomain: s.trustDomain, leafTtlMs: s.leafTtlMs, anchor: s.anchor, issuer: s.issuer };
  // The previous issuer is dropped only if it hangs off the removed anchor.
  if (s.previousIssuerPem !== undefined) {
    const prev = new X509Certificate(s.previousIssuerPem);
    if (!(prev.checkIssued(old) && prev.verify(old.publicKey))) return freeze({ ...rest, previousIssuerPem: s.previousIssuerPem });
  }
  return freeze(rest);
}

export interface IssuedLeaf {
  /** The leaf, then the issuer: what a workload presents. */
  certPem: string;
  chainPems: string[];
  bundlePems: string[];
  serialHex: string;
  notBeforeMs: number;
  notAfterMs: number;
}

/** What Certify returns: the leaf for `identity` from the active issuer, its chain, and the bundle. */
export function issueLeaf(s: CaState, o: { csrPem: string; identity: SpiffeId; now: number; ttlMs?: number; randomBytes?: RandomBytes }): IssuedLeaf {
  const ttlMs = o.ttlMs ?? s.leafTtlMs;
  if (!(ttlMs > 0 && ttlMs <= s.leafTtlMs)) throw new CertError('bad-options', `ttlMs ${ttlMs} is outside (0, ${s.leafTtlMs}] (the CA's leaf TTL, which anchor removal relies on)`);
  const leaf = signLeaf({ issuer: s.issuer, csrPem: o.csrPem, identity: o.identity, ttlMs, now: o.now, randomBytes: o.randomBytes });
  return { ...leaf, chainPems: [s.issuer.certPem], bundlePems: trustBundle(s) };
}

/** Expiry times for metrics and `meshlet ca status`. */
export function expiries(s: CaState): { issuerNotAfterMs: number; anchorNotAfterMs: number[] } {
  return { issuerNotAfterMs: s.issuer.notAfterMs, anchorNotAfterMs: trustBundle(s).map((p) => new X509Certificate(p).validToDate.getTime()) };
}

// ---- persistence ----

/** The persisted form, private keys included: write only to a Kubernetes Secret or a 0600 file. */
export interface CaSecret {
  version: 1;
  trustDomain: string;
  leafTtlMs: number;
  anchor: AuthoritySecret;
  nextAnchor?: AuthoritySecret;
  previousAnchorPem?: string;
  anchorSwitchedAtMs?: number;
  issuer: AuthoritySecret;
  previousIssuerPem?: string;
}

export function exportSecret(s: CaState): CaSecret {
  const out: CaSecret = { version: 1, trustDomain: s.trustDomain, leafTtlMs: s.leafTtlMs, anchor: s.anchor.exportSecret(), issuer: s.issuer.exportSecret() };
  if (s.nextAnchor) out.nextAnchor = s.nextAnchor.exportSecret();
  if (s.previousAnchorPem !== undefined) out.previousAnchorPem = s.previousAnchorPem;
  if (s.anchorSwitchedAtMs !== undefined) out.anchorSwitchedAtMs = s.anchorSwitchedAtMs;
  if (s.previousIssuerPem !== undefined) out.previousIssuerPem = s.previousIssuerPem;
  return out;
}

/** Rebuild and check a stored state (parsed JSON). Throws RotationError bad-state saying what does not hold. */
export function importSecret(json: unknown): CaState {
  if (typeof json !== 'object' || json === null) return bad('not an object');
  const j = json as Record<string, unknown>;
  if (j.version !== 1) bad(`unknown version ${String(j.version)}`);
  const authority = (field: string, role: 'anchor' | 'issuer'): Authority => {
    const v = j[field] as Record<string, unknown> | undefined;
    if (!v || typeof v.certPem !== 'string' || typeof v.keyPem !== 'string') return bad(`${field} needs certPem and keyPem`);
    let a: Authority;
    try {
      a = new Authority(v.certPem, v.keyPem);
    } catch (e) {
      return bad(`${field}: ${(e as Error).message}`);
    }
    if (a.role !== role) bad(`${field} is not an ${role}`);
    if (a.trustDomain !== j.trustDomain) bad(`${field} is for trust domain ${a.trustDomain}, not ${String(j.trustDomain)}`);
    return a;
  };
  const cert = (field: string): string | undefined => {
    const v = j[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') return bad(`${field} must be a PEM string`);
    try {
      return new X509Certificate(v).toString();
    } catch (e) {
      return bad(`${field}: ${(e as Error).message}`);
    }
  };
  if (typeof j.trustDomain !== 'string') bad('trustDomain missing');
  if (typeof j.leafTtlMs !== 'number' || !(j.leafTtlMs > 0)) bad('leafTtlMs must be a number > 0');
  const anchor = authority('anchor', 'anchor');
  const issuer = authority('issuer', 'issuer');
  if (!(issuer.x509.checkIssued(anchor.x509) && issuer.x509.verify(anchor.x509.publicKey))) bad('issuer is not signed by anchor');
  const s: { -readonly [K in keyof CaState]: CaState[K] } = { trustDomain: j.trustDomain as string, leafTtlMs: j.leafTtlMs as number, anchor, issuer };
  if (j.nextAnchor !== undefined) s.nextAnchor = authority('nextAnchor', 'anchor');
  const prevAnchor = cert('previousAnchorPem');
  if ((prevAnchor === undefined) !== (j.anchorSwitchedAtMs === undefined)) bad('previousAnchorPem and anchorSwitchedAtMs go together');
  if (prevAnchor !== undefined) {
    if (s.nextAnchor) bad('nextAnchor and previousAnchorPem cannot both be present');
    if (typeof j.anchorSwitchedAtMs !== 'number') bad('anchorSwitchedAtMs must be a number');
    s.previousAnchorPem = prevAnchor;
    s.anchorSwitchedAtMs = j.anchorSwitchedAtMs as number;
  }
  const prevIssuer = cert('previousIssuerPem');
  if (prevIssuer !== undefined) s.previousIssuerPem = prevIssuer;
  return freeze(s);
}

function bad(m: string): never {
  throw new RotationError('bad-state', 'import', m);
}

function freeze(s: CaState): CaState {
  return Object.freeze({ ...s });
}

const iso = (ms: number): string => new Date(ms).toISOString();
