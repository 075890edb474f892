// api/settle.ts with scripted reads and an instant sleep: the later of two agreeing reads, a give-up
// after maxRereads, and nothing more once stale.
import t from 'tap';
import { settle } from '../../../api/settle.ts';

/** Reads that return `texts` in order; counts them and the sleeps. */
function script(texts: string[]) {
  const s = { reads: 0, sleeps: [] as number[] };
  return {
    s,
    read: async () => texts[s.reads++] ?? 'end',
    sleep: async (ms: number) => void s.sleeps.push(ms),
  };
}
const same = (a: string, b: string) => a === b;

t.test('returns once two reads in a row agree, sleeping quietMs before each re-read', async (t) => {
  const { s, read, sleep } = script(['ab', 'abc', 'abc']);
  t.equal(await settle('a', read, same, { quietMs: 100, maxRereads: 50, sleep }), 'abc');
  t.equal(s.reads, 3);
  t.same(s.sleeps, [100, 100, 100]);
});

t.test('gives up after maxRereads reads that keep disagreeing', async (t) => {
  const { s, read, sleep } = script(['b', 'c', 'd']);
  t.equal(await settle('a', read, same, { quietMs: 10, maxRereads: 2, sleep }), undefined);
  t.equal(s.reads, 2);
});

t.test('stops reading once stale', async (t) => {
  let stale = false;
  const { s, read } = script(['b', 'b']);
  // A change while it waits.
  const sleep = async () => void (stale = true);
  t.equal(await settle('a', read, same, { quietMs: 10, maxRereads: 50, stale: () => stale, sleep }), undefined);
  t.equal(s.reads, 0, 'no read after the change');
});
