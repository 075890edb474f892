// Retry stage: how long to wait before retry n. Full-jitter exponential backoff (AWS, Envoy).
// Guarantees: 0 <= delay < min(cap, base * 2^(n-1)); never NaN or Infinity, for any n.
import type { Random } from '../../api/runtime.ts';
import { DEFAULT_BACKOFF as DOCUMENTED_BACKOFF } from '../../api/proxy-config.ts';
import { cappedExponential } from '../../api/backoff.ts';

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

/** Delay in ms before retry `retry` (1 = the first retry): random() * min(cap, base * 2^(retry-1)). */
export function backoffDelay(retry: number, cfg: BackoffConfig, random: Random): number {
  return random() * cappedExponential(cfg.base, cfg.cap, retry);
}
