// Tests for proxy/policy/concurrency-limit.ts: slots, the FIFO line, overflow, abort, idempotent release.
// Deterministic: no timers; promises are settled by explicit releases and aborts.
import { test } from 'tap';
import { ConcurrencyLimit, type Release } from '../../../proxy/policy/concurrency-limit.ts';

function sync(r: ReturnType<ConcurrencyLimit['acquire']>): Release {
  if (typeof r !== 'function') throw new Error(`expected a release function, got ${typeof r}`);
  return r;
}

function waiting(r: ReturnType<ConcurrencyLimit['acquire']>): Promise<Release> {
  if (!(r instanceof Promise)) throw new Error(`expected a promise, got ${typeof r}`);
  return r;
}

test('constructor refuses nonsense', async (t) => {
  t.throws(() => new ConcurrencyLimit(0, 0), /maxInFlight/);
  t.throws(() => new ConcurrencyLimit(1.5, 0), /maxInFlight/);
  t.throws(() => new ConcurrencyLimit(1, -1), /maxPending/);
  t.doesNotThrow(() => new ConcurrencyLimit(1, 0));
});

test('free slots are granted synchronously, then callers wait, then are refused', async (t) => {
  const limit = new ConcurrencyLimit(2, 1);
  const a = sync(limit.acquire());
  sync(limit.acquire());
  t.equal(limit.inFlight, 2);
  const p = waiting(limit.acquire());
  t.equal(limit.pending, 1);
  t.equal(limit.acquire(), undefined, 'line full: refuse at once');
  t.equal(limit.pending, 1);
  a();
  t.equal(limit.inFlight, 2, 'the slot passed to the waiter');
  t.equal(limit.pending, 0);
  const c = await p;
  t.type(c, 'function');
  c();
  t.equal(limit.inFlight, 1);
});

test('maxPending 0: no waiting at all', async (t) => {
  const limit = new ConcurrencyLimit(1, 0);
  sync(limit.acquire());
  t.equal(limit.acquire(), undefined);
  t.equal(limit.pending, 0);
});

test('waiters are served first in, first out, and newcomers cannot overtake', async (t) => {
  const limit = new ConcurrencyLimit(1, 10);
  const first = sync(limit.acquire());
  const order: number[] = [];
  const ps = [0, 1, 2, 3].map((i) =>
    waiting(limit.acquire()).then((release) => {
      order.push(i);
      return release;
    }),
  );
  first();
  t.type(limit.acquire(), Promise, 'a newcomer queues behind the waiters although a slot was just released');
  for (const p of ps) (await p)();
  t.same(order, [0, 1, 2, 3]);
});

test('release is idempotent: calling it twice frees one slot', async (t) => {
  const limit = new ConcurrencyLimit(2, 5);
  const a = sync(limit.acquire());
  sync(limit.acquire());
  const p = waiting(limit.acquire());
  const q = waiting(limit.acquire());
  a();
  a();
  a();
  t.equal(limit.pending, 1, 'only one waiter got a slot');
  t.equal(limit.inFlight, 2);
  const pr = await p;
  pr();
  pr();
  t.equal(limit.pending, 0);
  (await q)();
  t.equal(limit.inFlight, 1);
  const solo = new ConcurrencyLimit(3, 0);
  const r = sync(solo.acquire());
  sync(solo.acquire());
  r();
  r();
  t.equal(solo.inFlight, 1, 'without waiters a double release does not go below the holders');
});

test('an aborted waiter leaves the line and rejects with the reason', async (t) => {
  const limit = new ConcurrencyLimit(1, 3);
  const held = sync(limit.acquire());
  const ac = new AbortController();
  const p1 = waiting(limit.acquire());
  const p2 = waiting(limit.acquire(ac.signal));
  const p3 = waiting(limit.acquire());
  const reason = new Error('client went away');
  ac.abort(reason);
  t.equal(limit.pending, 2);
  await t.rejects(p2, reason);
  ac.abort(new Error('again')); // a second abort is a no-op
  held();
  const r1 = await p1;
  r1();
  const r3 = await p3;
  t.equal(limit.pending, 0);
  t.equal(limit.inFlight, 1, 'the aborted waiter never held a slot');
  r3();
  t.equal(limit.inFlight, 0);
});

test('aborting the first or last waiter keeps the line intact', async (t) => {
  const limit = new ConcurrencyLimit(1, 3);
  const held = sync(limit.acquire());
  const acFirst = new AbortController();
  const acLast = new AbortController();
  const first = waiting(limit.acquire(acFirst.signal));
  const mid = waiting(limit.acquire());
  const last = waiting(limit.acquire(acLast.signal));
  acFirst.abort();
  acLast.abort();
  await t.rejects(first, { name: 'AbortError' });
  await t.rejects(last, { name: 'AbortError' });
  t.equal(limit.pending, 1);
  held();
  (await mid)();
  t.equal(limit.inFlight, 0);
  sync(limit.acquire());
  t.type(limit.acquire(), Promise, 'the line still works after removals at both ends');
});

test('aborting after the slot was granted does not reject or take the slot twice', async (t) => {
  const limit = new ConcurrencyLimit(1, 1);
  const held = sync(limit.acquire());
  const ac = new AbortController();
  const p = waiting(limit.acquire(ac.signal));
  held();
  ac.abort();
  const r = await p;
  t.equal(limit.inFlight, 1);
  r();
  t.equal(limit.inFlight, 0);
});

test('an already-aborted signal takes nothing', async (t) => {
  const limit = new ConcurrencyLimit(1, 1);
  const reason = new Error('late');
  const r = limit.acquire(AbortSignal.abort(reason));
  await t.rejects(waiting(r), reason);
  t.equal(limit.inFlight, 0);
  t.equal(limit.pending, 0);
});
