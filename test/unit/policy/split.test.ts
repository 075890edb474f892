// Tests for proxy/policy/split.ts: weighted picks are proportional and zero weights never win.
// Deterministic: seeded and scripted random sources.
import { test } from 'tap';
import { seededRandom } from '../../../api/runtime.ts';
import { backendsOf, pickAdmitting, pickWeighted, sharesOf } from '../../../proxy/policy/split.ts';

test('empty or all-zero: undefined', async (t) => {
  t.equal(pickWeighted([], Math.random), undefined);
  t.equal(pickWeighted([{ weight: 0 }, { weight: 0 }], () => 0.5), undefined);
});

test('90/10 over 100000 seeded draws lands within 1 %', async (t) => {
  const items = [{ name: 'stable', weight: 90 }, { name: 'canary', weight: 10 }] as const;
  const random = seededRandom(2024);
  let canary = 0;
  const n = 100_000;
  for (let i = 0; i < n; i++) if (pickWeighted(items, random)?.name === 'canary') canary++;
  t.ok(Math.abs(canary / n - 0.1) <= 0.01, `canary share ${canary / n}`);
});

test('a 0-weight item is never chosen, wherever it sits', async (t) => {
  const items = [{ id: 'zero-first', weight: 0 }, { id: 'a', weight: 1 }, { id: 'zero-mid', weight: 0 }, { id: 'b', weight: 3 }, { id: 'zero-last', weight: 0 }];
  const random = seededRandom(1);
  const counts = new Map<string, number>();
  for (let i = 0; i < 20_000; i++) {
    const id = pickWeighted(items, random)!.id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  t.same([...counts.keys()].toSorted(), ['a', 'b']);
  // Edges of the range: 0 picks the first eligible, just below 1 the last eligible.
  t.equal(pickWeighted(items, () => 0)!.id, 'a');
  t.equal(pickWeighted(items, () => 0.2499)!.id, 'a');
  t.equal(pickWeighted(items, () => 0.25)!.id, 'b');
  t.equal(pickWeighted(items, () => 1 - Number.EPSILON)!.id, 'b');
  t.equal(pickWeighted(items, () => 1)!.id, 'b', 'a broken source returning 1 still picks an eligible item');
});

test('a single positive weight always wins', async (t) => {
  const items = [{ weight: 0 }, { weight: 5 }];
  const random = seededRandom(3);
  for (let i = 0; i < 100; i++) if (pickWeighted(items, random) !== items[1]) t.fail('picked the 0-weight item');
  t.pass('100 draws');
});

test('pickAdmitting: a backend that cannot take the request gives way to the others, by weight', async (t) => {
  const items = [{ id: 'v1', weight: 60 }, { id: 'v2', weight: 30 }, { id: 'dead', weight: 10 }];
  const random = seededRandom(7);
  const counts = new Map<string, number>();
  const n = 100_000;
  for (let i = 0; i < n; i++) {
    const id = pickAdmitting(items, random, (x) => x.id !== 'dead')!.id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  t.equal(counts.get('dead'), undefined, 'the backend that cannot take requests gets none');
  const v2 = (counts.get('v2') ?? 0) / n;
  t.ok(Math.abs(v2 - 1 / 3) <= 0.01, `the others share in proportion to their weights: v2 ${v2.toFixed(4)} (1/3)`);
});

test('pickAdmitting: every backend healthy → exactly the weighted pick; none healthy → the first pick stands', async (t) => {
  const items = [{ id: 'a', weight: 1 }, { id: 'b', weight: 3 }, { id: 'z', weight: 0 }];
  const same = (admits: () => boolean, seed: number): number => {
    const [r1, r2] = [seededRandom(seed), seededRandom(seed)];
    let n = 0;
    for (let i = 0; i < 1000; i++) if (pickAdmitting(items, r1, admits) === pickWeighted(items, r2)) n++;
    return n;
  };
  t.equal(same(() => true, 3), 1000, 'all healthy: the same picks as pickWeighted, draw for draw');
  t.equal(same(() => false, 5), 1000, 'none healthy: the first pick, and no second draw');
  t.equal(pickAdmitting([{ id: 'only', weight: 1 }], () => 0.5, () => false)?.id, 'only', 'a single backend is never second-guessed');
});

test('backendsOf and sharesOf: a route without backends is its service; shares are what pickWeighted gives', async (t) => {
  t.same(backendsOf('api', {}), [{ service: 'api', weight: 1 }], 'no backends: the service itself');
  const split = [{ service: 'v1', weight: 90 }, { service: 'v2', weight: 10 }, { service: 'v3', weight: 0 }];
  t.equal(backendsOf('api', { backends: split }), split, 'backends: as given');
  t.same(sharesOf(split), [0.9, 0.1, 0]);
  t.same(sharesOf([{ weight: 0 }, { weight: 0 }]), [0, 0], 'all zero: nothing takes a share');
});
