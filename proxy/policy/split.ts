// Route stage, after the match: which backend service takes this request (weighted traffic split).
// Guarantees: P(item) = weight / sum(weights) for integer weights; weight 0 is never picked.
import type { Random } from '../../api/runtime.ts';

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
