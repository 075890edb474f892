// Capped exponential backoff, shared by the proxy (retries, ejections) and the control plane
// (informer restarts, status writes). Pure; no NaN or Infinity for any input.

/** min(cap, base * 2^(step-1)) for step >= 1 (step < 1 counts as 1), without overflow or NaN. */
export function cappedExponential(base: number, cap: number, step: number): number {
  if (base === 0) return 0; // and never 0 * 2^huge = 0 * Infinity = NaN
  const exp = step <= 1 ? 0 : step - 1;
  // Past log2(cap / base) doublings the answer is cap; checking first keeps 2^exp finite.
  return exp >= Math.log2(cap / base) ? cap : Math.min(cap, base * 2 ** exp);
}

/**
 * "Equal jitter": between half of cappedExponential(base, cap, step) and all of it, rounded to
 * whole ms; `random` in [0, 1] (clamped). Callers that restart together spread out, and none
 * retries at 0 ms.
 */
export function equalJitter(base: number, cap: number, step: number, random: number): number {
  const ceiling = cappedExponential(base, cap, step);
  return Math.round(ceiling / 2 + (ceiling / 2) * Math.min(1, Math.max(0, random)));
}
