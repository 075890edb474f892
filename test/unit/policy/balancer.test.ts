// Tests for proxy/policy/balancer.ts: peak-EWMA estimates and power-of-two-choices picks.
// Deterministic: a ManualClock drives latency; seeded and scripted random sources pick.
import { test } from 'tap';
import { ManualClock, seededRandom } from '../../../api/runtime.ts';
import { EndpointLoad, pickP2C } from '../../../proxy/policy/balancer.ts';

test('options are validated', async (t) => {
  const clock = new ManualClock();
  t.throws(() => new EndpointLoad(clock, { decayMs: 0 }), /decayMs/);
  t.throws(() => new EndpointLoad(clock, { defaultRttMs: -1 }), /defaultRttMs/);
});

test('a new endpoint costs the default RTT; inFlight multiplies the cost', async (t) => {
  const clock = new ManualClock();
  const e = new EndpointLoad(clock);
  t.equal(e.cost(), 30);
  e.start();
  e.start();
  t.equal(e.inFlight, 2);
  t.equal(e.cost(), 90);
  t.equal(new EndpointLoad(clock, { defaultRttMs: 5 }).cost(), 5);
});

test('peak sensitive: a slow response replaces the estimate at once, fast ones pull it down slowly', async (t) => {
  const clock = new ManualClock();
  const e = new EndpointLoad(clock, { decayMs: 10_000, defaultRttMs: 30 });
  e.start();
  e.finish(500);
  t.equal(e.rtt(), 500, 'peak taken at once');
  t.equal(e.inFlight, 0);
  clock.advance(1000);
  e.start();
  e.finish(10);
  const d = Math.exp(-1000 / 10_000);
  t.ok(Math.abs(e.rtt() - (500 * d + 10 * (1 - d))) < 1e-9, `ewma ${e.rtt()}`);
  t.ok(e.rtt() > 400, 'one fast response does not erase a slow one');
  e.finish(10);
  t.equal(e.inFlight, 0, 'finish without start never goes negative');
});

test('the estimate decays toward zero while idle, and reading it does not change it', async (t) => {
  const clock = new ManualClock();
  const e = new EndpointLoad(clock, { decayMs: 1000 });
  e.start();
  e.finish(100);
  clock.advance(1000);
  const once = e.rtt();
  t.ok(Math.abs(once - 100 / Math.E) < 1e-9);
  t.equal(e.rtt(), once, 'a second read is the same');
  clock.advance(1_000_000);
  t.ok(e.cost() > 0, 'cost never reaches 0, so inFlight still counts');
  e.start();
  t.ok(e.cost() > new EndpointLoad(clock, { decayMs: 1000, defaultRttMs: 0 }).cost());
});

test('pickP2C: 0 candidates, 1 candidate', async (t) => {
  const clock = new ManualClock();
  const load = new EndpointLoad(clock);
  t.equal(pickP2C([], () => load, Math.random), undefined);
  t.equal(pickP2C(['only'], () => load, () => 0.9), 'only');
});

test('pickP2C always compares two distinct candidates', async (t) => {
  const clock = new ManualClock();
  const compared = new Set<string>();
  const loads = new Map<string, EndpointLoad>();
  const names = ['a', 'b', 'c'];
  for (const n of names) loads.set(n, new EndpointLoad(clock));
  const random = seededRandom(9);
  for (let i = 0; i < 2000; i++) {
    compared.clear();
    pickP2C(names, (c) => {
      compared.add(c);
      return loads.get(c)!;
    }, random);
    if (compared.size !== 2) t.fail(`compared ${[...compared].join(',')}`);
  }
  // Scripted: both draws at the same index must still give two different candidates.
  const seen: string[] = [];
  pickP2C(names, (c) => (seen.push(c), loads.get(c)!), () => 0);
  t.same(seen.toSorted(), ['a', 'b']);
  seen.length = 0;
  pickP2C(names, (c) => (seen.push(c), loads.get(c)!), () => 1 - Number.EPSILON);
  t.same(seen.toSorted(), ['b', 'c']);
  t.pass('distinct');
});

test('pickP2C avoids an endpoint with many requests in flight', async (t) => {
  const clock = new ManualClock();
  const busy = new EndpointLoad(clock);
  const idle = new EndpointLoad(clock);
  for (let i = 0; i < 50; i++) busy.start();
  const eps = [{ id: 'busy', load: busy }, { id: 'idle', load: idle }];
  const random = seededRandom(5);
  for (let i = 0; i < 1000; i++) {
    if (pickP2C(eps, (e) => e.load, random)!.id !== 'idle') t.fail('picked the busy endpoint');
  }
  t.pass('never picked the busy endpoint of two');
});

test('simulation: a slow endpoint gets much less traffic than fast ones', async (t) => {
  const clock = new ManualClock();
  const random = seededRandom(11);
  const eps = [
    { id: 'fast1', latency: 10, load: new EndpointLoad(clock), picks: 0 },
    { id: 'fast2', latency: 10, load: new EndpointLoad(clock), picks: 0 },
    { id: 'slow', latency: 200, load: new EndpointLoad(clock), picks: 0 },
  ];
  // Open-loop: a request every 2 ms, each finishes after its endpoint's latency.
  const inflight: { at: number; ep: (typeof eps)[number] }[] = [];
  for (let now = 0; now < 20_000; now += 2) {
    clock.advance(now - clock.now());
    for (let i = inflight.length - 1; i >= 0; i--) {
      const f = inflight[i]!;
      if (f.at <= now) {
        f.ep.load.finish(f.ep.latency);
        inflight.splice(i, 1);
      }
    }
    const ep = pickP2C(eps, (e) => e.load, random)!;
    ep.picks++;
    ep.load.start();
    inflight.push({ at: now + ep.latency, ep });
  }
  const total = eps.reduce((s, e) => s + e.picks, 0);
  const slowShare = eps[2]!.picks / total;
  t.ok(slowShare < 0.05, `slow endpoint got ${(slowShare * 100).toFixed(2)} % (uniform would be 33 %)`);
  t.ok(eps[2]!.picks > 0, 'but it is still tried now and then');
});
