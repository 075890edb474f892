// The control plane's metrics, on a registry it owns (never prom-client's global default).
// Guarantees: refusal reasons are a closed set (bounded cardinality), every one exported from 0.

import { X509Certificate } from 'node:crypto';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { defaultMetrics } from '../api/process-metrics.ts';
import { expiries, type CaState } from './ca/index.ts';
import { REFUSAL_REASONS, type ProofKind, type RefusalReason } from './certify/refusals.ts';

/** Signing is ~0.2–1 ms; the upper buckets catch a stalled event loop. */
export const SIGNING_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export class CaMetrics {
  readonly registry: Registry;
  readonly issued: Counter<'proof'>;
  readonly refused: Counter<'reason'>;
  readonly signing: Histogram<string>;
  readonly anchorExpiry: Gauge<'role' | 'serial'>;
  readonly issuerExpiry: Gauge<'serial'>;

  constructor(registry: Registry, opts: { defaultMetrics?: boolean } = {}) {
    this.registry = registry;
    const registers = [registry];
    this.issued = new Counter({ name: 'meshlet_ca_certificates_issued_total', help: 'Workload certificates signed by Certify, by proof kind.', labelNames: ['proof'], registers });
    this.refused = new Counter({ name: 'meshlet_ca_certificates_refused_total', help: 'Certify requests refused (nothing signed), by reason.', labelNames: ['reason'], registers });
    this.signing = new Histogram({ name: 'meshlet_ca_signing_duration_seconds', help: 'Time to check a CSR and sign its leaf (after the proof was accepted).', buckets: SIGNING_BUCKETS, registers });
    this.anchorExpiry = new Gauge({ name: 'meshlet_ca_anchor_expiry_timestamp_seconds', help: 'notAfter of each trust anchor in the bundle (Unix seconds); role current, next (added, not yet used) or previous (being retired).', labelNames: ['role', 'serial'], registers });
    this.issuerExpiry = new Gauge({ name: 'meshlet_ca_issuer_expiry_timestamp_seconds', help: 'notAfter of the issuer signing leaves now (Unix seconds).', labelNames: ['serial'], registers });
    for (const reason of REFUSAL_REASONS) this.refused.inc({ reason }, 0);
    for (const proof of ['kubernetes', 'bootstrap'] as const) this.issued.inc({ proof }, 0);
    if (opts.defaultMetrics !== false) defaultMetrics(registry, 'meshlet_control_plane_');
  }

  issuedOne(proof: ProofKind, seconds: number): void {
    this.issued.inc({ proof });
    this.signing.observe(seconds);
  }

  refusedOne(reason: RefusalReason): void {
    this.refused.inc({ reason });
  }

  /** Expiry gauges for the state in force (old series dropped: serials change on rotation). */
  observeState(s: CaState): void {
    const e = expiries(s);
    this.issuerExpiry.reset();
    this.issuerExpiry.set({ serial: s.issuer.serialHex }, Math.floor(e.issuerNotAfterMs / 1000));
    this.anchorExpiry.reset();
    this.anchorExpiry.set({ role: 'current', serial: s.anchor.serialHex }, Math.floor(s.anchor.notAfterMs / 1000));
    if (s.nextAnchor) this.anchorExpiry.set({ role: 'next', serial: s.nextAnchor.serialHex }, Math.floor(s.nextAnchor.notAfterMs / 1000));
    if (s.previousAnchorPem !== undefined) {
      // trustBundle order: current, next | previous.
      const prevMs = e.anchorNotAfterMs[e.anchorNotAfterMs.length - 1] ?? 0;
      this.anchorExpiry.set({ role: 'previous', serial: serialOf(s.previousAnchorPem) }, Math.floor(prevMs / 1000));
    }
  }
}

const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toLowerCase();
