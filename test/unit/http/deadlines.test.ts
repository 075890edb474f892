// proxy/http/deadlines.ts with a manual clock and a fake timer API: deadlines fire once, in due
// order, never early and never after being cancelled; and a stream of requests that arm and
// cancel their deadlines costs a few Node timers in all, not one or two per request.
import t from 'tap';
import { ManualClock, seededRandom } from '../../../api/runtime.ts';
import { Deadlines, type Deadline, type TimerApi } from '../../../proxy/http/deadlines.ts';

/** Timers the test fires by moving the clock; counts what the scheduler asked of them. */
class FakeTimers implements TimerApi {
  readonly pending = new Set<{ at: number; fn: () => void }>();
  sets = 0;
  clears = 0;
  readonly clock: ManualClock;
  constructor(clock: ManualClock) {
    this.clock = clock;
  }
  set(fn: () => void, ms: number): unknown {
    this.sets++;
    const h = { at: this.clock.now() + ms, fn };
    this.pending.add(h);
    return h;
  }
  clear(h: unknown): void {
    this.clears++;
    this.pending.delete(h as { at: number; fn: () => void });
  }
  /** Move the clock to `until`, firing every timer due on the way, in order. */
  advanceTo(until: number): void {
    for (;;) {
      let next: { at: number; fn: () => void } | undefined;
      for (const h of this.pending) if (h.at <= until && (!next || h.at < next.at)) next = h;
      if (!next) break;
      this.pending.delete(next);
      if (next.at > this.clock.now()) this.clock.advance(next.at - this.clock.now());
      next.fn();
    }
    if (until > this.clock.now()) this.clock.advance(until - this.clock.now());
  }
}

t.test('deadlines fire at their time, in due order, once; cancelled ones never', async (t) => {
  const clock = new ManualClock(1000);
  const timers = new FakeTimers(clock);
  const d = new Deadlines(clock, timers);
  const fired: string[] = [];
  const at = (name: string, due: number) => d.at(due, () => fired.push(`${name}@${clock.now()}`));
  at('c', 1300);
  const b = at('b', 1200);
  at('a', 1100);
  at('d', 1300.5);
  d.cancel(b);
  d.cancel(b);
  t.equal(d.pending, 3, 'three armed, one cancelled (twice: the second does nothing)');
  timers.advanceTo(1099);
  t.same(fired, [], 'nothing before its time');
  timers.advanceTo(2000);
  t.same(fired, ['a@1100', 'c@1300', 'd@1301'], 'in due order; a fractional due fires at the next whole millisecond');
  t.equal(d.pending, 0);
  const late = at('late', 1500);
  t.same(fired.length, 3);
  timers.advanceTo(2001);
  t.same(fired.at(-1), 'late@2001', 'a due time already past fires on the next wake-up');
  d.cancel(late);
  t.equal(d.pending, 0, 'cancelling a fired deadline does nothing');
});

t.test('a stream of requests that arm and cancel costs a few Node timers, not one per request', async (t) => {
  const clock = new ManualClock(0);
  const timers = new FakeTimers(clock);
  const d = new Deadlines(clock, timers);
  let fired = 0;
  // 30 000 requests over 30 s: each arms a 15 s deadline and a 10 s per-try timeout, and finishes 0.4 ms later.
  for (let i = 0; i < 30_000; i++) {
    timers.advanceTo(i);
    const whole = d.after(15_000, () => fired++);
    const perTry = d.after(10_000, () => fired++);
    timers.advanceTo(i + 0.4);
    d.cancel(perTry);
    d.cancel(whole);
  }
  timers.advanceTo(60_000);
  t.equal(fired, 0, 'no deadline fired: every one was cancelled in time');
  t.equal(d.pending, 0);
  t.ok(timers.sets <= 10, `${timers.sets} Node timers set for 60 000 deadlines (bound 10)`);
  t.equal(timers.pending.size, 0, 'with nothing pending the scheduler lets its timer lapse: an idle proxy sleeps');
});

t.test('a deadline armed while others fire is still on time, and so are those waiting', async (t) => {
  const clock = new ManualClock(0);
  const timers = new FakeTimers(clock);
  const d = new Deadlines(clock, timers);
  const fired: string[] = [];
  d.at(100, () => {
    fired.push(`a@${clock.now()}`);
    // Armed from inside a fire, later than b, which still waits.
    d.at(500, () => fired.push(`c@${clock.now()}`));
  });
  d.at(200, () => fired.push(`b@${clock.now()}`));
  timers.advanceTo(1000);
  t.same(fired, ['a@100', 'b@200', 'c@500']);
});

t.test('against a plain list: random arms, cancels and clock moves give the same fires', async (t) => {
  const random = seededRandom(7);
  for (let run = 0; run < 50; run++) {
    const clock = new ManualClock(0);
    const timers = new FakeTimers(clock);
    const d = new Deadlines(clock, timers);
    const got: string[] = [];
    const model: { id: number; due: number }[] = [];
    const handles = new Map<number, Deadline>();
    const want: string[] = [];
    let id = 0;
    const fireModel = (until: number) => {
      model.sort((a, b) => a.due - b.due || a.id - b.id);
      while (model.length > 0 && model[0]!.due <= until) {
        const m = model.shift()!;
        want.push(`${m.id}`);
      }
    };
    for (let step = 0; step < 300; step++) {
      const r = random();
      if (r < 0.5) {
        const me = id++;
        const due = clock.now() + Math.floor(random() * 50);
        handles.set(me, d.at(due, () => got.push(`${me}`)));
        model.push({ id: me, due });
      } else if (r < 0.8 && handles.size > 0) {
        const ids = [...handles.keys()];
        const victim = ids[Math.floor(random() * ids.length)]!;
        d.cancel(handles.get(victim)!);
        handles.delete(victim);
        const i = model.findIndex((m) => m.id === victim);
        if (i >= 0) model.splice(i, 1);
      } else {
        const until = clock.now() + Math.floor(random() * 20);
        timers.advanceTo(until);
        fireModel(until);
        for (const w of want) handles.delete(Number(w));
      }
    }
    timers.advanceTo(clock.now() + 1000);
    fireModel(clock.now());
    // Equal due times may fire in either order; compare as sets per run and the count exactly.
    if (got.length !== want.length || got.toSorted().join() !== want.toSorted().join()) {
      t.fail(`run ${run}: fired ${got.join(',')} but a plain list fires ${want.join(',')}`);
      return;
    }
  }
  t.pass('50 random runs of 300 steps matched');
});
