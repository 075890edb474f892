// Tests for proxy/policy/retry-budget.ts: the bound, refill after the window, the per-second reserve.
// Deterministic: a ManualClock moves time.
import { test } from 'tap';
import { ManualClock } from '../../../api/runtime.ts';
import { DEFAULT_BUDGET, RetryBudget } from '../../../proxy/policy/retry-budget.ts';

function drain(b: RetryBudget, max = 1_000_000): number {
  let n = 0;
  while (n < max && b.tryWithdraw()) n++;
  return n;
}

test('defaults', async (t) => {
  t.same(DEFAULT_BUDGET, { ratio: 0.2, minPerSecond: 10, windowMs: 10_000 });
  t.ok(Object.isFrozen(DEFAULT_BUDGET));
});

test('1000 failing requests get at most 0.2 * 1000 + 10 * 10 retries', async (t) => {
  const clock = new ManualClock(0);
  const b = new RetryBudget(DEFAULT_BUDGET, clock);
  let retries = 0;
  for (let i = 0; i < 1000; i++) {
    b.recordRequest();
    // Every request fails and wants two retries.
    if (b.tryWithdraw()) retries++;
    if (b.tryWithdraw()) retries++;
    clock.advance(5); // 1000 requests over 5 s: all inside one window
  }
  t.ok(retries <= 300, `${retries} <= 300`);
  t.equal(retries, 300, 'and the whole budget is usable');
  t.equal(b.tryWithdraw(), false);
});

test('a burst spends the reserve plus the ratio and then refuses', async (t) => {
  const clock = new ManualClock(0);
  const b = new RetryBudget({ ratio: 0.5, minPerSecond: 1, windowMs: 2000 }, clock);
  for (let i = 0; i < 10; i++) b.recordRequest();
  t.equal(b.available, 7);
  t.equal(drain(b), 7);
  t.equal(b.available, 0);
});

test('the budget refills once the window has passed', async (t) => {
  const clock = new ManualClock(0);
  const b = new RetryBudget(DEFAULT_BUDGET, clock);
  for (let i = 0; i < 1000; i++) b.recordRequest();
  t.equal(drain(b), 300);
  clock.advance(5000);
  t.equal(b.tryWithdraw(), false, 'half a window later the spent retries still count');
  clock.advance(5000);
  t.equal(drain(b), 0, 'a window later the requests have expired, the retries not yet (they count up to a bucket longer)');
  clock.advance(1000);
  t.equal(drain(b), 100, 'a window and a bucket later: the reserve again');
  for (let i = 0; i < 50; i++) b.recordRequest();
  t.equal(drain(b), 10, 'new requests earn 0.2 each');
});

test('buckets expire one at a time as the clock moves', async (t) => {
  const clock = new ManualClock(0);
  // windowMs 1000: ten buckets of 100 ms; no reserve.
  const b = new RetryBudget({ ratio: 1, minPerSecond: 0, windowMs: 1000 }, clock);
  for (let i = 0; i < 10; i++) {
    b.recordRequest(); // one request in each bucket
    clock.advance(100);
  }
  // now = 1000: the bucket [0, 100) has left the window.
  t.equal(b.available, 9);
  clock.advance(450);
  t.equal(b.available, 5);
  t.equal(drain(b), 5);
  clock.advance(100);
  t.equal(b.available, 0, 'an expired request cannot pay for a retry still in the window');
  clock.advance(10_000);
  t.equal(b.available, 0);
  b.recordRequest();
  t.equal(b.available, 1, 'after a long idle gap the ring starts clean');
});

test('minPerSecond alone allows retries with zero requests', async (t) => {
  const clock = new ManualClock(123_456);
  const b = new RetryBudget({ ratio: 0.2, minPerSecond: 10, windowMs: 10_000 }, clock);
  t.equal(drain(b), 100);
  const c = new RetryBudget({ ratio: 0.2, minPerSecond: 0, windowMs: 10_000 }, clock);
  t.equal(c.tryWithdraw(), false, 'no reserve, no requests: no retries');
  for (let i = 0; i < 4; i++) c.recordRequest();
  t.equal(c.tryWithdraw(), false, '4 * 0.2 = 0.8 is less than one retry');
  c.recordRequest();
  t.equal(c.tryWithdraw(), true, '5 * 0.2 = 1');
});

test('a clock that steps back does not corrupt the counts', async (t) => {
  const clock = new ManualClock(5000);
  const b = new RetryBudget({ ratio: 1, minPerSecond: 0, windowMs: 1000 }, clock);
  b.recordRequest();
  clock.advance(-3000);
  b.recordRequest();
  t.equal(b.available, 2);
  clock.advance(3000 + 1000);
  t.equal(b.available, 0);
});

test('constructor refuses nonsense', async (t) => {
  const clock = new ManualClock();
  t.throws(() => new RetryBudget({ ratio: -0.1, minPerSecond: 1, windowMs: 1000 }, clock), /ratio/);
  t.throws(() => new RetryBudget({ ratio: 0.1, minPerSecond: -1, windowMs: 1000 }, clock), /minPerSecond/);
  t.throws(() => new RetryBudget({ ratio: 0.1, minPerSecond: 1, windowMs: 0 }, clock), /windowMs/);
  t.throws(() => new RetryBudget({ ratio: Number.NaN, minPerSecond: 1, windowMs: 1000 }, clock), /ratio/);
});

test('no window of windowMs holds more retries than the bound, bursts at bucket edges included', async (t) => {
  const clock = new ManualClock(950);
  const b = new RetryBudget(DEFAULT_BUDGET, clock);
  const times: number[] = [];
  for (const at of [950, 9_999, 10_000, 10_950, 11_000, 19_999, 21_000]) {
    clock.advance(at - clock.now());
    for (let n = drain(b, 1000); n > 0; n--) times.push(at);
  }
  // With no requests only the reserve (10/s x 10 s = 100) is there to spend.
  let worst = 0;
  for (const start of times) worst = Math.max(worst, times.filter((x) => x >= start && x < start + 10_000).length);
  t.equal(worst, 100, `the most retries in any 10 s window: ${worst}`);
  t.ok(times.length >= 200, `and the reserve comes back: ${times.length} retries over 21 s`);
});
