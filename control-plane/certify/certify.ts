// Certify's decision: proof → identity → leaf. Everything but the socket: routing, intake, proof
// check, signing, counting. Guarantees: the identity signed is the proof's, never the CSR's; every refusal is counted.

/*
 * Order of checks (the first failure answers):
 *   1. route and method                      404 not-found, 405 method-not-allowed
 *   2. intake (Content-Type, JSON, fields)   415 bad-content-type, 400 bad-body / ambiguous-token
 *   3. proof present                         401 no-token
 *   4. proof valid                           401 token-*, proof-kind-disabled; 403 not-service-account,
 *                                            wrong-trust-domain; 503 review-unavailable
 *   5. sign (CSR parsed here)                400 bad-csr / csr-signature / unsupported-key;
 *                                            503 ca-unavailable (issuer not valid now)
 * The proof is checked before the CSR is read, so an unauthenticated caller learns nothing but 401.
 * The CSR's subject and requested SANs are ignored: a CSR asking for another identity gets a leaf
 * for the token's identity only (its requested SAN is dropped, not refused); the response says
 * which identity was issued.
 */

import type { Tracer } from '@opentelemetry/api';
import type { Clock } from '../../api/runtime.ts';
import { failSpan } from '../tracing.ts';
import { isCertError, issueLeaf, type SpiffeId, type WallClock } from '../ca/index.ts';
import { verifyBootstrapToken } from '../identity/bootstrap-token.ts';
import type { CaMetrics } from '../metrics.ts';
import type { CaDocument } from '../store/ca-document.ts';
import { parseCertifyRequest, type CertifyRequest } from './request.ts';
import { refusal, type ProofKind, type Refusal, type RefusalReason } from './refusals.ts';
import { identityFromReview, type TokenReviewer } from './token-reviewer.ts';

export const CERTIFY_PATH = '/v1/certify';
/** The audience a projected service-account token must carry. */
export const DEFAULT_AUDIENCE = 'meshlet';

/** 200 body. */
export interface CertifyResponse {
  /** The SPIFFE ID issued (the proof's). */
  identity: string;
  /** The leaf, PEM. */
  certificate: string;
  /** Intermediates to present after the leaf (the issuer), PEM each. */
  chain: string[];
  /** Trust anchors to verify peers with, PEM each (more than one during an anchor rotation). */
  trustBundle: string[];
  serial: string;
  notBefore: string;
  notAfter: string;
}

export type CertifyOutcome = { ok: true; status: 200; body: CertifyResponse; identity: SpiffeId } | Refusal;

export interface CertifyDeps {
  /** The CA in force (undefined before the first load); read once per request. */
  ca: () => CaDocument | undefined;
  /** Kubernetes proof; undefined turns kind "kubernetes" away (proof-kind-disabled). */
  reviewer?: TokenReviewer;
  audience?: string;
  /** Leaf lifetime; capped at the CA state's leafTtlMs. Default: that cap. */
  leafTtlMs?: number;
  wallClock: WallClock;
  /** Monotonic, for the signing histogram. */
  clock: Clock;
  metrics: CaMetrics;
  /** Exports a span per certify request (control-plane/tracing.ts); undefined: no spans. */
  tracer?: Tracer;
  /**
   * Re-read the CA state now. Asked when a bootstrap token meets a state with no bootstrap key:
   * `meshlet identity bootstrap-token` may have made the key since the last periodic reload (the
   * refusal tells users to run it). At most once per REFRESH_EVERY_MS; undefined: never.
   */
  refresh?: () => Promise<unknown>;
}

/** How often a bootstrap token may make Certify re-read a CA state without a bootstrap key. */
export const REFRESH_EVERY_MS = 1000;

export interface HttpInput {
  method: string;
  path: string;
  contentType: string | undefined;
  authorization: string | undefined;
  body: Buffer;
}

export class CertifyService {
  readonly #d: CertifyDeps;
  #refreshedAt = -Infinity;
  #refreshing: Promise<unknown> | undefined;

  constructor(deps: CertifyDeps) {
    this.#d = deps;
  }

  /** Count and build a refusal (also for the ones the socket layer detects: body-too-large). */
  refuse(reason: RefusalReason, message: string): Refusal {
    this.#d.metrics.refusedOne(reason);
    return refusal(reason, message);
  }

  async handle(input: HttpInput): Promise<CertifyOutcome> {
    if (input.path !== CERTIFY_PATH) return this.refuse('not-found', `no such path ${input.path.slice(0, 100)}; Certify is POST ${CERTIFY_PATH}`);
    if (input.method !== 'POST') return this.refuse('method-not-allowed', `${CERTIFY_PATH} takes POST`);
    const req = parseCertifyRequest(input);
    if ('ok' in req) {
      this.#d.metrics.refusedOne(req.reason);
      return req;
    }
    return this.certify(req);
  }

  async certify(req: CertifyRequest): Promise<CertifyOutcome> {
    const span = this.#d.tracer?.startSpan('certify', { kind: 1 /* SERVER */, attributes: { 'meshlet.proof': req.kind } });
    let out: CertifyOutcome;
    try {
      out = await this.#certify(req);
    } catch (e) {
      out = refusal('internal', `internal error: ${(e as Error).message}`);
    }
    if (!out.ok) this.#d.metrics.refusedOne(out.reason);
    if (span) {
      if (out.ok) span.setAttribute('meshlet.identity', out.identity.uri);
      else failSpan(span, out.reason, out.reason);
      span.end();
    }
    return out;
  }

  /** The CA state for this request: re-read first when a bootstrap token meets one without a key. */
  async #caFor(kind: ProofKind): Promise<CaDocument | undefined> {
    const d = this.#d;
    const doc = d.ca();
    if (kind !== 'bootstrap' || !doc || doc.bootstrapKey || !d.refresh) return doc;
    const now = d.clock.now();
    if (this.#refreshing === undefined && now - this.#refreshedAt >= REFRESH_EVERY_MS) {
      this.#refreshedAt = now;
      this.#refreshing = d.refresh().finally(() => (this.#refreshing = undefined));
    }
    // A refresh already under way is awaited too; a failed one leaves the state in force.
    await this.#refreshing?.catch(() => {});
    return d.ca();
  }

  async #certify(req: CertifyRequest): Promise<CertifyOutcome> {
    const d = this.#d;
    const doc = await this.#caFor(req.kind);
    if (!doc) return refusal('ca-unavailable', 'the CA state is not loaded yet; retry');
    if (req.token === undefined) return refusal('no-token', `no token: send {"token": ...} or Authorization: Bearer <token> (${req.kind === 'kubernetes' ? `a service-account token with audience "${d.audience ?? DEFAULT_AUDIENCE}"` : 'a bootstrap token from meshlet identity bootstrap-token'})`);
    const proven = await this.#prove(req.kind, req.token, doc);
    if (!proven.ok) return proven;
    const ttlCap = doc.state.leafTtlMs;
    const ttlMs = Math.min(d.leafTtlMs ?? ttlCap, ttlCap);
    const start = d.clock.now();
    try {
      const leaf = issueLeaf(doc.state, { csrPem: req.csrPem, identity: proven.identity, now: d.wallClock.nowMs(), ttlMs });
      d.metrics.issuedOne(req.kind, (d.clock.now() - start) / 1000);
      return {
        ok: true, status: 200, identity: proven.identity,
        body: {
          identity: proven.identity.uri, certificate: leaf.certPem, chain: leaf.chainPems, trustBundle: leaf.bundlePems,
          serial: leaf.serialHex, notBefore: new Date(leaf.notBeforeMs).toISOString(), notAfter: new Date(leaf.notAfterMs).toISOString(),
        },
      };
    } catch (e) {
      if (!isCertError(e)) throw e;
      if (e.code === 'bad-csr' || e.code === 'csr-signature' || e.code === 'unsupported-key') return refusal(e.code, e.message);
      if (e.code === 'issuer-expired') return refusal('ca-unavailable', `the CA cannot sign now: ${e.message}`);
      throw e;
    }
  }

  async #prove(kind: ProofKind, token: string, doc: CaDocument): Promise<{ ok: true; identity: SpiffeId } | Refusal> {
    const d = this.#d;
    const trustDomain = doc.state.trustDomain;
    if (kind === 'bootstrap') {
      if (!doc.bootstrapKey) return refusal('proof-kind-disabled', 'this control plane has no bootstrap-token key (run meshlet identity bootstrap-token against its CA state)');
      const v = verifyBootstrapToken(token, doc.bootstrapKey, d.wallClock.nowMs());
      if (!v.ok) return refusal(v.reason === 'expired' ? 'token-expired' : v.reason === 'bad-signature' ? 'token-bad-signature' : 'token-malformed', `bootstrap token refused: ${v.message}`);
      if (v.identity.trustDomain !== trustDomain) return refusal('wrong-trust-domain', `token names ${v.identity.uri}, outside this CA's trust domain ${trustDomain}`);
      return { ok: true, identity: v.identity };
    }
    if (!d.reviewer) return refusal('proof-kind-disabled', 'this control plane has no Kubernetes API to review service-account tokens (start it with --kubeconfig or in a cluster)');
    const audience = d.audience ?? DEFAULT_AUDIENCE;
    let review;
    try {
      review = await d.reviewer.review(token, [audience]);
    } catch (e) {
      return refusal('review-unavailable', `${(e as Error).message}; retry`);
    }
    return identityFromReview(review, { audience, trustDomain });
  }
}
