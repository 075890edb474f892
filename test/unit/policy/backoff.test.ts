// Tests for proxy/policy/backoff.ts: config validation and full-jitter bounds.
// Deterministic: seeded and scripted random sources only.
import { test } from 'tap';
import { seededRandom } from '../../../api/runtime.ts';
import { backoffDelay, makeBackoff } from '../../../proxy/policy/backoff.ts';
import { cappedExponential } from '../../../api/backoff.ts';

const half = () => 0.5;

test('makeBackoff fills defaults and refuses nonsense', async (t) => {
  t.same(makeBackoff({}), { base: 25, cap: 250 });
  t.same(makeBackoff({ base: 10 }), { base: 10, cap: 250 });
  t.same(makeBackoff({ base: 0, cap: 0 }), { base: 0, cap: 0 });
  t.throws(() => makeBackoff({ base: -1 }), /base must be a finite number >= 0/);
  t.throws(() => makeBackoff({ cap: -5, base: 0 }), /cap must be/);
  t.throws(() => makeBackoff({ base: Number.NaN }), /base/);
  t.throws(() => makeBackoff({ cap: Infinity }), /cap/);
  t.throws(() => makeBackoff({ base: 300 }), /base \(300 ms\) is larger than its cap \(250 ms\)/);
  t.ok(Object.isFrozen(makeBackoff({})));
});

test('delays stay within [0, min(cap, base * 2^(n-1))) over many draws', async (t) => {
  const cfg = makeBackoff({ base: 25, cap: 250 });
  const random = seededRandom(42);
  for (let retry = 1; retry <= 8; retry++) {
    const ceiling = Math.min(250, 25 * 2 ** (retry - 1));
    let max = 0;
    for (let i = 0; i < 5000; i++) {
      const d = backoffDelay(retry, cfg, random);
      if (!(d >= 0 && d < ceiling)) t.fail(`retry ${retry}: ${d} outside [0, ${ceiling})`);
      if (d > max) max = d;
    }
    // Full jitter spreads over the whole range, so the largest draw gets near the ceiling.
    t.ok(max > ceiling * 0.99, `retry ${retry}: max draw ${max} near ${ceiling}`);
  }
});

test('exact values with a scripted random', async (t) => {
  const cfg = makeBackoff({ base: 25, cap: 250 });
  t.equal(backoffDelay(1, cfg, half), 12.5);
  t.equal(backoffDelay(2, cfg, half), 25);
  t.equal(backoffDelay(3, cfg, half), 50);
  t.equal(backoffDelay(4, cfg, half), 100);
  t.equal(backoffDelay(5, cfg, half), 125, 'capped at 250 * 0.5');
  t.equal(backoffDelay(1, cfg, () => 0), 0, 'random 0 gives 0');
  t.equal(backoffDelay(1e9, cfg, () => 0), 0);
});

test('huge retry numbers hit the cap without overflow or NaN', async (t) => {
  const cfg = makeBackoff({ base: 25, cap: 250 });
  for (const retry of [31, 32, 64, 1023, 1024, 1025, 1e6, Number.MAX_SAFE_INTEGER, Infinity]) {
    const d = backoffDelay(retry, cfg, () => 0.999);
    t.equal(d, 250 * 0.999, `retry ${retry}`);
  }
  t.equal(cappedExponential(0, 0, 5000), 0, 'base 0 never makes 0 * Infinity = NaN');
  t.equal(cappedExponential(0, 100, Infinity), 0);
  t.equal(cappedExponential(1e-300, 1e300, 2000), 1e300, 'tiny base, huge cap: still finite');
});

test('retry numbers below 1 count as the first retry', async (t) => {
  const cfg = makeBackoff({ base: 40, cap: 250 });
  t.equal(backoffDelay(0, cfg, () => 0.5), 20);
  t.equal(backoffDelay(-3, cfg, () => 0.5), 20);
});
