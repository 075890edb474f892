// The injector's and the validator's metrics, on the control plane's registry (never prom-client's global default).
// Guarantees: outcome and reason are closed sets, every pair exported from 0 (dashboards see the series before the first Pod).

import { Counter, Histogram, type Registry } from 'prom-client';
import { MODES, REFUSE_REASONS, SKIP_REASONS } from './inject.ts';
import { VALIDATION_KINDS, VALIDATION_OUTCOMES, type ValidationKind, type ValidationOutcome } from './validate.ts';

/** Reasons of outcome="error": refused Pods (bad annotation, bad Pod) and reviews that could not be read. */
export const ERROR_REASONS = [...REFUSE_REASONS, 'bad-review', 'internal'] as const;
export type ErrorReason = (typeof ERROR_REASONS)[number];
/** Reasons of outcome="skipped": the inject() skips, and requests that are not a Pod CREATE. */
export const SKIPPED_REASONS = [...SKIP_REASONS, 'not-a-pod-create'] as const;

export type Outcome =
  | { outcome: 'injected'; reason: (typeof MODES)[number] }
  | { outcome: 'skipped'; reason: (typeof SKIPPED_REASONS)[number] }
  | { outcome: 'error'; reason: ErrorReason };

/** A review answers in well under a millisecond; the top buckets catch a stalled event loop. */
export const INJECTION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1];

export class InjectorMetrics {
  readonly injections: Counter<'outcome' | 'reason'>;
  readonly duration: Histogram<'outcome'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.injections = new Counter({
      name: 'meshlet_injections_total',
      help: 'AdmissionReviews answered by the proxy injector: outcome injected (reason: the mode), skipped (why) or error (why; the Pod was refused or the review unreadable).',
      labelNames: ['outcome', 'reason'],
      registers,
    });
    this.duration = new Histogram({
      name: 'meshlet_injection_duration_seconds',
      help: 'Time from an AdmissionReview fully received to its answer written, by outcome.',
      labelNames: ['outcome'],
      buckets: INJECTION_BUCKETS,
      registers,
    });
    for (const reason of MODES) this.injections.inc({ outcome: 'injected', reason }, 0);
    for (const reason of SKIPPED_REASONS) this.injections.inc({ outcome: 'skipped', reason }, 0);
    for (const reason of ERROR_REASONS) this.injections.inc({ outcome: 'error', reason }, 0);
    // The latency series exist from 0 too: a series born at its first observation shows no
    // increase to rate(), so the first reviews would never reach a latency panel.
    for (const outcome of ['injected', 'skipped', 'error']) this.duration.zero({ outcome });
  }

  observe(o: Outcome, seconds: number): void {
    this.count(o);
    this.duration.observe({ outcome: o.outcome }, seconds);
  }

  /** A request refused before any review was read (wrong path or method, too large). */
  count(o: Outcome): void {
    this.injections.inc({ outcome: o.outcome, reason: o.reason });
  }
}

/** The validating webhook (POST /validate, validate.ts): one count per review by kind and outcome, every pair from 0. */
export class ValidationMetrics {
  readonly validations: Counter<'kind' | 'outcome'>;
  readonly duration: Histogram<'outcome'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.validations = new Counter({
      name: 'meshlet_validations_total',
      help: 'AdmissionReviews answered by the meshlet.io validator, by kind (other: none it checks) and outcome: allowed, denied (the API server refused the write), skipped (not its business: allowed unchecked), error (unreadable review).',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    this.duration = new Histogram({
      name: 'meshlet_validation_duration_seconds',
      help: 'Time from an AdmissionReview of the validator fully received to its answer written, by outcome.',
      labelNames: ['outcome'],
      buckets: INJECTION_BUCKETS,
      registers,
    });
    for (const kind of VALIDATION_KINDS) for (const outcome of VALIDATION_OUTCOMES) this.validations.inc({ kind, outcome }, 0);
    for (const outcome of VALIDATION_OUTCOMES) this.duration.zero({ outcome });
  }

  observe(kind: ValidationKind, outcome: ValidationOutcome, seconds: number): void {
    this.count(kind, outcome);
    this.duration.observe({ outcome }, seconds);
  }

  /** A request refused before any review was read (too large). */
  count(kind: ValidationKind, outcome: ValidationOutcome): void {
    this.validations.inc({ kind, outcome });
  }
}
