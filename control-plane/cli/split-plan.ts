// `meshlet split`'s decision, pure: new weights for a TrafficSplit's backends from what the user
// asked (`v2=50`, `api-v1=50`). Unnamed backends share what is left of 100 in their old proportion.

export interface Backend {
  service: string;
  weight: number;
}

export type SplitPlan = { ok: true; backends: Backend[] } | { ok: false; error: string };

/** `v2=50` → ['v2', 50]; undefined when malformed. */
export function parseWeight(arg: string): [string, number] | undefined {
  const m = /^([a-z0-9][-a-z0-9.]*)=(\d{1,3})%?$/.exec(arg);
  if (!m) return undefined;
  const w = Number(m[2]);
  return w <= 100 ? [m[1]!, w] : undefined;
}

/** The backend a user's short name means: exact, `<apex>-<name>`, or the one ending in `-<name>`. */
export function resolveBackend(backends: readonly Backend[], apex: string, name: string): Backend | undefined {
  const base = apex.split('.')[0]!;
  return backends.find((b) => b.service === name) ?? backends.find((b) => b.service === `${base}-${name}`) ?? (backends.filter((b) => b.service.endsWith(`-${name}`)).length === 1 ? backends.find((b) => b.service.endsWith(`-${name}`)) : undefined);
}

export function planSplit(current: readonly Backend[], apex: string, asked: ReadonlyArray<[string, number]>): SplitPlan {
  const set = new Map<string, number>();
  for (const [name, w] of asked) {
    const b = resolveBackend(current, apex, name);
    if (!b) return { ok: false, error: `"${name}" is not a backend of ${apex}'s split (backends: ${current.map((x) => x.service).join(', ')})` };
    if (set.has(b.service)) return { ok: false, error: `${b.service} is given twice` };
    set.set(b.service, w);
  }
  const named = [...set.values()].reduce((a, w) => a + w, 0);
  const rest = current.filter((b) => !set.has(b.service));
  if (rest.length === 0) {
    if (named === 0) return { ok: false, error: 'all weights would be 0: the split could send traffic nowhere' };
    return { ok: true, backends: current.map((b) => ({ service: b.service, weight: set.get(b.service)! })) };
  }
  if (named > 100) return { ok: false, error: `the weights given add up to ${named} > 100, and ${rest.map((b) => b.service).join(', ')} would get the rest: give every backend a weight instead` };
  const left = 100 - named;
  const oldTotal = rest.reduce((a, b) => a + b.weight, 0);
  const shares = new Map<string, number>();
  let given = 0;
  rest.forEach((b, i) => {
    const w = i === rest.length - 1 ? left - given : Math.round(oldTotal > 0 ? (left * b.weight) / oldTotal : left / rest.length);
    shares.set(b.service, w);
    given += w;
  });
  const backends = current.map((b) => ({ service: b.service, weight: set.get(b.service) ?? shares.get(b.service)! }));
  if (backends.every((b) => b.weight === 0)) return { ok: false, error: 'all weights would be 0: the split could send traffic nowhere' };
  return { ok: true, backends };
}
