// Retry stage: how long to wait before retry n. Full-jitter exponential backoff (AWS, Envoy).
// Guarantees: 0 <= delay < min(cap, base * 2^(n-1)); never NaN or Infinity, for any n.
import type { Random } from '../../api/runtime.ts';
import { DEFAULT_BACKOFF as DOCUMENTED_BACKOFF } from '../../api/proxy-config.ts';

export interface BackoffConfig {
  /** Milliseconds; the ceiling of the first retry's delay. */
  base: number;
  /** Milliseconds; no delay reaches this. */
  cap: number;
}

/** Written beside the config schema, which validates against it. */
export const DEFAULT_BACKOFF: Readonly<BackoffConfig> = DOCUMENTED_BACKOFF;

/** Fill in defaults and refuse nonsense (negative, non-finite, base > cap). Call once at config time. */
export function makeBackoff(cfg: Partial<BackoffConfig>): BackoffConfig {
  const base = cfg.base ?? DEFAULT_BACKOFF.base;
  const cap = cfg.cap ?? DEFAULT_BACKOFF.cap;
  for (const [name, v] of [['base', base], ['cap', cap]] as const) {
    if (!Number.isFinite(v) || v < 0) throw new Error(`backoff ${name} must be a finite number >= 0 ms, got ${v}`);
  }
  if (base > cap) throw new Error(`backoff base (${base} ms) is larger than its cap (${cap} ms)`);
  return Object.freeze({ base, cap });
}

/** min(cap, base * 2^(step-1)) for step >= 1 (step < 1 counts as 1), without overflow or NaN. */
export function cappedExponential(base: number, cap: number, step: number): number {
  if (base === 0) return 0; // and never 0 * 2^huge = 0 * Infinity = NaN
  const exp = step <= 1 ? 0 : step - 1;
  // Past log2(cap / base) doublings the answer is cap; checking first keeps 2^exp finite.
  return exp >= Math.log2(cap / base) ? cap : Math.min(cap, base * 2 ** exp);
}

/** Delay in ms before retry `retry` (1 = the first retry): random() * min(cap, base * 2^(retry-1)). */
export function backoffDelay(retry: number, cfg: BackoffConfig, random: Random): number {
  return random() * cappedExponential(cfg.base, cfg.cap, retry);
}
