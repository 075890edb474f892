// The config stream's line splitter (proxy/config/stream-source.ts): NDJSON lines from byte chunks,
// bounded, so a sender that never ends a line cannot grow the proxy's memory.
import t from 'tap';
import { LineSplitter } from '../../../proxy/config/stream-source.ts';

const b = (s: string) => Buffer.from(s, 'utf8');

t.test('lines across chunks, several per chunk, a UTF-8 character split between chunks', async (t) => {
  const s = new LineSplitter(100);
  t.same(s.push(b('{"a":1}\n{"b"')), { lines: ['{"a":1}'], overflow: false });
  const euro = b('€'); // 3 bytes
  t.same(s.push(Buffer.concat([b(':"'), euro.subarray(0, 1)])), { lines: [], overflow: false });
  t.same(s.push(Buffer.concat([euro.subarray(1), b('"}\n\n{"c":3}\n')])), { lines: ['{"b":"€"}', '', '{"c":3}'], overflow: false });
});

t.test('a line over the bound: overflow as soon as the held bytes pass it, whether or not its end has come', async (t) => {
  const s = new LineSplitter(10);
  t.same(s.push(b('0123456789')), { lines: [], overflow: false }, '10 bytes held: at the bound, not over');
  t.same(s.push(b('\n')), { lines: ['0123456789'], overflow: false }, 'a line of exactly the bound is read');
  t.same(s.push(b('01234')), { lines: [], overflow: false });
  t.same(s.push(b('567890')), { lines: [], overflow: true }, 'an unfinished line of 11 bytes');
  const t2 = new LineSplitter(10);
  t.same(t2.push(b('ok\n0123456789AB\nlater\n')), { lines: ['ok'], overflow: true }, 'a complete line over the bound in one chunk: the lines before it, then overflow');
});

t.test('an endless line holds at most the bound plus one chunk', async (t) => {
  const s = new LineSplitter(1024 * 1024);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let pushes = 0;
  while (!s.push(chunk).overflow && pushes < 1000) pushes++;
  t.equal(pushes, 16, 'overflow on the 17th 64 KiB chunk of a 1 MiB bound');
});
