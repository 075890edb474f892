// proxy/telemetry/trace.ts IdSource: W3C trace and span ids as lower-case hex of the right length,
// never repeated, across the refills of its 4 KiB random pool (256 trace ids or 512 span ids each).
import t from 'tap';
import { IdSource } from '../../../proxy/telemetry/trace.ts';

t.test('trace ids are 32 and span ids 16 lower-case hex digits, distinct across pool refills', async (t) => {
  const ids = new IdSource();
  const seen = new Set<string>();
  let bad = '';
  // Mixed sizes, as a proxy asks for them (a new trace: 16 + 8 bytes; a continued one: 8), over ~10 refills.
  for (let i = 0; i < 3000; i++) {
    for (const [bytes, re] of [[16, /^[0-9a-f]{32}$/], [8, /^[0-9a-f]{16}$/], [8, /^[0-9a-f]{16}$/]] as const) {
      const id = ids.hex(bytes);
      if (!re.test(id) && !bad) bad = `${bytes}-byte id ${JSON.stringify(id)}`;
      seen.add(id);
    }
  }
  t.equal(bad, '', 'every id has the right length and alphabet');
  t.equal(seen.size, 9000, 'no id repeated in 9 000');
});
