// Tests for proxy/policy/failure-accrual.ts: the closed -> open -> probation state machine.
// Deterministic: a ManualClock and scripted random sources.
import { test } from 'tap';
import { ManualClock, seededRandom } from '../../../api/runtime.ts';
import { DEFAULT_FAILURE_ACCRUAL, FailureAccrual, makeFailureAccrualConfig } from '../../../proxy/policy/failure-accrual.ts';

const noJitter = () => 0; // factor 1 + 0.5 * 0 = 1: the nominal ejection

/** Dispatch one request (checking availability first) and report its result at once. */
function send(b: FailureAccrual, success: boolean): void {
  if (!b.isAvailable()) throw new Error('not available');
  b.onResult(success, b.onDispatch());
}

function eject(b: FailureAccrual, failures: number): void {
  for (let i = 0; i < failures; i++) send(b, false);
}

test('config defaults and validation', async (t) => {
  t.same(DEFAULT_FAILURE_ACCRUAL, { consecutiveFailures: 7, baseEjection: 1000, maxEjection: 60_000 });
  t.same(makeFailureAccrualConfig({ baseEjection: undefined, maxEjection: 5000 }), { consecutiveFailures: 7, baseEjection: 1000, maxEjection: 5000 });
  t.throws(() => makeFailureAccrualConfig({ consecutiveFailures: 0 }), /consecutiveFailures/);
  t.throws(() => makeFailureAccrualConfig({ consecutiveFailures: 1.5 }), /consecutiveFailures/);
  t.throws(() => makeFailureAccrualConfig({ baseEjection: -1 }), /baseEjection/);
  t.throws(() => makeFailureAccrualConfig({ maxEjection: Infinity }), /maxEjection/);
  t.throws(() => makeFailureAccrualConfig({ baseEjection: 2000, maxEjection: 1000 }), /larger than maxEjection/);
});

test('closed: N consecutive failures eject; a success in between resets the count', async (t) => {
  const clock = new ManualClock();
  const b = new FailureAccrual({ consecutiveFailures: 3 }, clock, noJitter);
  t.equal(b.state, 'closed');
  send(b, false);
  send(b, false);
  send(b, true);
  send(b, false);
  send(b, false);
  t.equal(b.state, 'closed', 'only two in a row since the success');
  t.equal(b.ejections, 0);
  send(b, false);
  t.equal(b.state, 'open');
  t.equal(b.ejections, 1);
  t.equal(b.isAvailable(), false);
});

test('full cycle: open for the ejection time, one probe, success closes', async (t) => {
  const clock = new ManualClock(10_000);
  const b = new FailureAccrual({ consecutiveFailures: 2, baseEjection: 1000, maxEjection: 60_000 }, clock, noJitter);
  eject(b, 2);
  t.equal(b.state, 'open');
  clock.advance(998);
  t.equal(b.isAvailable(), false, 'still ejected just before the ejection ends');
  t.equal(b.state, 'open');
  clock.advance(2);
  t.equal(b.isAvailable(), true, 'ejection over: a probe may go');
  t.equal(b.state, 'probation');
  const probe = b.onDispatch();
  for (let i = 0; i < 100; i++) t.equal(b.isAvailable(), false, 'exactly one probe in flight'); // asserts 100 times
  b.onResult(true, probe);
  t.equal(b.state, 'closed');
  t.equal(b.isAvailable(), true);
  t.equal(b.ejections, 1);
});

test('isAvailable many times in probation admits exactly one probe', async (t) => {
  const clock = new ManualClock();
  const b = new FailureAccrual({ consecutiveFailures: 1, baseEjection: 100, maxEjection: 100 }, clock, noJitter);
  eject(b, 1);
  clock.advance(100);
  let admitted = 0;
  for (let i = 0; i < 50; i++) {
    if (b.isAvailable()) {
      b.onDispatch();
      admitted++;
    }
  }
  t.equal(admitted, 1);
  t.equal(b.state, 'probation');
});

test('probe failures re-eject with doubling ejections up to the cap; success resets the backoff', async (t) => {
  const clock = new ManualClock();
  const b = new FailureAccrual({ consecutiveFailures: 1, baseEjection: 1000, maxEjection: 5000 }, clock, noJitter);
  send(b, false);
  const durations: number[] = [];
  for (let k = 1; k <= 6; k++) {
    t.equal(b.state, 'open');
    durations.push(Math.round(b.openUntil - clock.now()));
    clock.advance(b.openUntil - clock.now());
    send(b, false); // the probe fails
  }
  t.same(durations, [1000, 2000, 4000, 5000, 5000, 5000]);
  t.equal(b.ejections, 7);
  clock.advance(b.openUntil - clock.now());
  send(b, true);
  t.equal(b.state, 'closed');
  send(b, false);
  t.equal(Math.round(b.openUntil - clock.now()), 1000, 'back to the base ejection after a successful probe');
});

test('jitter: each ejection is in [nominal, 1.5 x nominal], never below baseEjection nor above maxEjection', async (t) => {
  const clock = new ManualClock();
  const random = seededRandom(7);
  const b = new FailureAccrual({ consecutiveFailures: 1, baseEjection: 1000, maxEjection: 60_000 }, clock, random);
  send(b, false);
  let seenAbove = false;
  for (let k = 1; k <= 40; k++) {
    const nominal = Math.min(60_000, 1000 * 2 ** (k - 1));
    const d = b.openUntil - clock.now();
    const hi = Math.min(60_000, nominal * 1.5);
    if (!(d >= nominal && d <= hi)) t.fail(`ejection ${k}: ${d} outside [${nominal}, ${hi}]`);
    if (d > nominal * 1.1) seenAbove = true;
    clock.advance(d);
    send(b, false);
  }
  t.ok(seenAbove, 'the jitter actually varies ejections');
  const lo = new FailureAccrual({ consecutiveFailures: 1 }, clock, () => 0);
  send(lo, false);
  t.equal(lo.openUntil - clock.now(), 1000, 'random 0: the first ejection is the base, 1 s (never shorter)');
  const hiB = new FailureAccrual({ consecutiveFailures: 1 }, clock, () => 1 - Number.EPSILON);
  for (let k = 1; k <= 12; k++) {
    send(hiB, false);
    const d = hiB.openUntil - clock.now();
    if (d > 60_000) t.fail(`ejection ${k}: ${d} above the 60 s cap`);
    clock.advance(d);
  }
  t.equal(hiB.openUntil - clock.now() <= 60_000, true);
});

test('stray results from requests sent before the ejection are ignored', async (t) => {
  const clock = new ManualClock();
  const b = new FailureAccrual({ consecutiveFailures: 2, baseEjection: 1000 }, clock, noJitter);
  // Five requests in flight; two fail and eject the endpoint.
  const old = [b.onDispatch(), b.onDispatch(), b.onDispatch(), b.onDispatch(), b.onDispatch()];
  b.onResult(false, old[0]!);
  b.onResult(false, old[1]!);
  t.equal(b.state, 'open');
  b.onResult(true, old[2]!);
  t.equal(b.state, 'open', 'a stale success while open does not close');
  clock.advance(1000);
  t.ok(b.isAvailable());
  const probe = b.onDispatch();
  b.onResult(true, old[3]!);
  t.equal(b.state, 'probation', 'a stale success in probation does not decide');
  t.equal(b.isAvailable(), false, 'and does not free the probe slot');
  b.onResult(false, probe);
  t.equal(b.state, 'open', "the probe's failure decides");
  t.equal(b.ejections, 2);
  b.onResult(true, old[4]!);
  b.onResult(true, probe);
  t.equal(b.state, 'open', 'a duplicate report of the old probe is stale too');
});

test('stale failures do not count toward a fresh closed period', async (t) => {
  const clock = new ManualClock();
  const b = new FailureAccrual({ consecutiveFailures: 2, baseEjection: 10 }, clock, noJitter);
  const old = [b.onDispatch(), b.onDispatch(), b.onDispatch(), b.onDispatch()];
  b.onResult(false, old[0]!);
  b.onResult(false, old[1]!);
  clock.advance(10);
  send(b, true); // probe succeeds: closed
  t.equal(b.state, 'closed');
  b.onResult(false, old[2]!);
  b.onResult(false, old[3]!);
  t.equal(b.state, 'closed', 'two stale failures do not eject');
  send(b, false);
  t.equal(b.state, 'closed', 'one fresh failure is one');
  send(b, false);
  t.equal(b.state, 'open');
});

test('a cancelled probe frees the probe slot; a cancelled normal request changes nothing', async (t) => {
  const clock = new ManualClock();
  const b = new FailureAccrual({ consecutiveFailures: 1, baseEjection: 10 }, clock, noJitter);
  const before = b.onDispatch();
  b.onCancel(before);
  t.equal(b.state, 'closed');
  b.onResult(false, before);
  t.equal(b.state, 'open');
  clock.advance(10);
  t.ok(b.isAvailable());
  const probe = b.onDispatch();
  t.notOk(b.isAvailable());
  b.onCancel(before);
  t.notOk(b.isAvailable(), 'a stale cancel does not free the slot');
  b.onCancel(probe);
  t.ok(b.isAvailable(), 'another probe may go');
  t.equal(b.state, 'probation');
  send(b, true);
  t.equal(b.state, 'closed');
});
