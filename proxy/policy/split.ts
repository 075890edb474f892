// Route stage, after the match: which backend service takes this request (weighted traffic split).
// Guarantees: P(item) = weight / sum(weights) for integer weights; weight 0 is never picked.
import type { WeightedBackend } from '../../api/proxy-config.ts';
import type { Random } from '../../api/runtime.ts';

/** A route's backends: absent, the service itself with weight 1. */
export function backendsOf(service: string, route: { readonly backends?: readonly WeightedBackend[] | undefined }): readonly WeightedBackend[] {
  return route.backends ?? [{ service, weight: 1 }];
}

/** The share of requests pickWeighted gives each item: weight / sum of the positive weights (0 when none). */
export function sharesOf(items: ReadonlyArray<{ weight: number }>): number[] {
  let total = 0;
  for (const item of items) if (item.weight > 0) total += item.weight;
  return items.map((item) => (total > 0 && item.weight > 0 ? item.weight / total : 0));
}

/** Pick one item with probability proportional to its weight; undefined when empty or all weights are 0. */
export function pickWeighted<T extends { weight: number }>(items: readonly T[], random: Random): T | undefined {
  let total = 0;
  for (const item of items) if (item.weight > 0) total += item.weight;
  if (total === 0) return undefined;
  let target = Math.floor(random() * total);
  let last: T | undefined;
  for (const item of items) {
    if (item.weight <= 0) continue;
    if (target < item.weight) return item;
    target -= item.weight;
    last = item;
  }
  return last; // only if random() returned >= 1 (a broken source): the last eligible item
}

/**
 * The weighted pick, where a backend that cannot take the request (`admits` false: no ready
 * endpoint, or every one ejected by its breaker) gives way to the others that can, in proportion
 * to their weights. Nothing was sent, so this is a re-pick, not a retry: no budget, no backoff. When
 * no other backend admits the request, the first pick stands (and answers its own 503). A split's
 * weights therefore say how traffic is shared among backends that can serve it: a dead canary
 * costs its clients nothing once its breaker is open, and it still gets its probes (an endpoint
 * whose ejection has run out admits one).
 */
export function pickAdmitting<T extends { weight: number }>(items: readonly T[], random: Random, admits: (item: T) => boolean): T | undefined {
  const first = items.length === 1 ? items[0] : pickWeighted(items, random);
  if (first === undefined || first.weight <= 0 || items.length === 1 || admits(first)) return first;
  let total = 0;
  for (const item of items) if (item !== first && item.weight > 0 && admits(item)) total += item.weight;
  if (total === 0) return first;
  let target = Math.floor(random() * total);
  for (const item of items) {
    if (item === first || item.weight <= 0 || !admits(item)) continue;
    if (target < item.weight) return item;
    target -= item.weight;
  }
  return first;
}
