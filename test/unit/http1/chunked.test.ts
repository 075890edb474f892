// Tests for proxy/http1/chunked.ts: where a chunked body ends, across any split into buffers,
// the data it carries, and malformed framing refused.
import { test } from 'tap';
import { ChunkedScanner, chunkPrefix } from '../../../proxy/http1/chunked.ts';
import { seededRandom } from '../../../api/runtime.ts';

/** Scan `wire` split at the given offsets; the end offset in the whole, and the data seen. */
function scanSplit(wire: string, cuts: number[]): { end: number; data: string } {
  let data = '';
  const s = new ChunkedScanner((b, a, e) => (data += b.toString('latin1', a, e)));
  const bytes = Buffer.from(wire, 'latin1');
  let offset = 0;
  const points = [...cuts, bytes.length];
  for (const p of points) {
    const part = bytes.subarray(offset, p);
    const end = s.scan(part);
    if (end !== -1) return { end: offset + end, data };
    offset = p;
  }
  return { end: -1, data };
}

const BODY = '5\r\nhello\r\n1;ext=1\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\n';

test('finds the end after the last chunk and trailers, with data reported, in one buffer', async (t) => {
  const { end, data } = scanSplit(BODY + 'NEXT', []);
  t.equal(end, BODY.length, 'ends right after the empty line');
  t.equal(data, 'hello 0123456789abcdef');
});

test('any split into buffers gives the same end and data (seeded random cuts)', async (t) => {
  const random = seededRandom(7);
  for (let round = 0; round < 300; round++) {
    const cuts = new Set<number>();
    const n = 1 + Math.floor(random() * 6);
    for (let i = 0; i < n; i++) cuts.add(1 + Math.floor(random() * (BODY.length - 1)));
    const r = scanSplit(BODY, [...cuts].toSorted((a, b) => a - b));
    if (r.end !== BODY.length || r.data !== 'hello 0123456789abcdef') t.fail(`cuts ${[...cuts].join(',')}: ${r.end} ${JSON.stringify(r.data)}`);
  }
  t.pass('300 random splits agree');
});

test('a body that has not ended yet asks for more', async (t) => {
  const s = new ChunkedScanner();
  t.equal(s.scan(Buffer.from('5\r\nhel')), -1);
  t.equal(s.done, false);
  t.equal(s.scan(Buffer.from('lo\r\n0\r\n\r')), -1);
  t.equal(s.scan(Buffer.from('\n')), 1);
  t.equal(s.done, true);
});

test('uppercase hex and large sizes', async (t) => {
  const s = new ChunkedScanner();
  t.equal(s.scan(Buffer.from('A\r\n0123456789\r\n0\r\n\r\n')), 20);
  const big = new ChunkedScanner();
  t.equal(big.scan(Buffer.from('FFFFFFF\r\n')), -1, 'a 256 MiB chunk is only counted, not held');
});

test('malformed framing is refused', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['bare LF after size', '5\nhello\r\n0\r\n\r\n', /junk after a chunk size/],
    ['CR without LF', '5\rhello', /CR without LF/],
    ['not hex', 'g\r\n', /not a hex number/],
    ['empty size', '\r\n', /not a hex number/],
    ['space after size', '5 \r\nhello\r\n', /junk after a chunk size/],
    ['negative', '-5\r\n', /not a hex number/],
    ['data longer than size', '3\r\nhello\r\n', /longer than its size/],
    ['no CRLF after data', '5\r\nhelloX', /longer than its size/],
    ['LF only after data', '5\r\nhello\n', /longer than its size/],
    ['too many digits', '10000000000000\r\n', /more than 13 hex digits/],
    ['control in extension', '5;a\x01\r\n', /control character in a chunk extension/],
    ['bare LF in trailers', '0\r\n\n', /bare LF in the trailer section/],
    ['CR without LF at end', '0\r\n\rX', /CR without LF at the end/],
    ['control in trailer', '0\r\nX: a\x00\r\n\r\n', /control character in a trailer/],
    ['obs-fold in trailer', '0\r\nX-A: a\r\n folded\r\n\r\n', /obsolete line folding in the trailer/],
    ['a request line as a trailer', '0\r\nGET /smuggled HTTP/1.1\r\n\r\n', /not a field/],
    ['no colon in a trailer', '0\r\nX-A\r\n\r\n', /not a field/],
    ['Content-Length as a trailer', '0\r\nContent-Length: 50\r\n\r\n', /content-length field in the trailer/],
    ['Transfer-Encoding as a trailer', '0\r\ntransfer-ENCODING: chunked\r\n\r\n', /transfer-encoding field in the trailer/],
  ];
  for (const [name, wire, reason] of cases) t.throws(() => new ChunkedScanner().scan(Buffer.from(wire, 'latin1')), reason, name);
  t.throws(() => new ChunkedScanner().scan(Buffer.from(`5;${'e'.repeat(5000)}\r\n`)), /longer than 4 KiB/, 'long extension');
  t.throws(() => new ChunkedScanner().scan(Buffer.from(`0\r\nX: ${'v'.repeat(17_000)}\r\n\r\n`)), /larger than 16 KiB/, 'huge trailers');
});

test('chunkPrefix frames a length in hex', async (t) => {
  t.equal(chunkPrefix(255), 'ff\r\n');
  t.equal(chunkPrefix(1), '1\r\n');
});
