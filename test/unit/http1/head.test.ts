// Tests for proxy/http1/head.ts: request and response heads parsed strictly (RFC 9112), framing
// decided once, and every ambiguity refused with a reason.
import { test } from 'tap';
import { HeadError, headEnd, parseRequestHead, parseResponseHead } from '../../../proxy/http1/head.ts';

/** The head as the server hands it over: up to, not including, the final CRLF CRLF. */
const head = (lines: string[]) => lines.join('\r\n');

test('a request head: method, target, version, fields with case kept and OWS trimmed', async (t) => {
  const h = parseRequestHead(head(['GET /a?b=1 HTTP/1.1', 'Host: api:8080', 'X-Mixed-Case:  v  ', 'Accept: */*', 'accept: text/plain']));
  t.equal(h.method, 'GET');
  t.equal(h.target, '/a?b=1');
  t.equal(h.minor, 1);
  t.equal(h.host, 'api:8080');
  t.same(h.raw, ['Host', 'api:8080', 'X-Mixed-Case', 'v', 'Accept', '*/*', 'accept', 'text/plain']);
  t.same(h.lower, ['host', 'x-mixed-case', 'accept', 'accept']);
  t.equal(h.get('x-mixed-case'), 'v');
  t.equal(h.get('accept'), '*/*, text/plain', 'repeated fields joined as Node joins them');
  t.equal(h.headers['accept'], '*/*, text/plain');
  t.equal(h.get('missing'), undefined);
  t.same(h.framing, { kind: 'none' });
  t.equal(h.keepAlive, true);
  t.equal(h.upgrade, false);
  t.equal(h.expectContinue, false);
});

test('request-target forms: origin, absolute (HTTP_PROXY), asterisk for OPTIONS', async (t) => {
  t.equal(parseRequestHead(head(['GET http://api:8080/x?y HTTP/1.1', 'Host: api:8080'])).target, 'http://api:8080/x?y');
  t.equal(parseRequestHead(head(['OPTIONS * HTTP/1.1', 'Host: a'])).target, '*');
});

test('framing: Content-Length, chunked, none; Content-Length 0 has no body', async (t) => {
  t.same(parseRequestHead(head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 42'])).framing, { kind: 'length', length: 42 });
  t.same(parseRequestHead(head(['POST / HTTP/1.1', 'Host: a', 'Content-Length: 0'])).framing, { kind: 'none' });
  t.same(parseRequestHead(head(['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked'])).framing, { kind: 'chunked' });
  t.same(parseRequestHead(head(['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding:  Chunked '])).framing, { kind: 'chunked' }, 'case-insensitive, whitespace around');
  t.throws(() => parseRequestHead(head(['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: gzip', 'Transfer-Encoding: chunked'])), /transfer coding "gzip" is not supported/, 'lines combine');
});

test('keep-alive, upgrade and expect follow the version and Connection', async (t) => {
  t.equal(parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'Connection: close'])).keepAlive, false);
  t.equal(parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'Connection: foo, Close'])).keepAlive, false);
  t.equal(parseRequestHead(head(['GET / HTTP/1.0'])).keepAlive, false, 'HTTP/1.0 closes by default');
  t.equal(parseRequestHead(head(['GET / HTTP/1.0', 'Connection: keep-alive'])).keepAlive, true);
  t.equal(parseRequestHead(head(['GET / HTTP/1.0'])).host, '', 'HTTP/1.0 may omit Host');
  const up = parseRequestHead(head(['GET /ws HTTP/1.1', 'Host: a', 'Connection: keep-alive, Upgrade', 'Upgrade: websocket']));
  t.equal(up.upgrade, true);
  t.equal(parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'Upgrade: websocket'])).upgrade, false, 'Upgrade without Connection: upgrade is not one');
  t.equal(parseRequestHead(head(['PUT / HTTP/1.1', 'Host: a', 'Content-Length: 3', 'Expect: 100-Continue'])).expectContinue, true);
});

test('ambiguous or malformed requests are refused with the reason', async (t) => {
  const cases: Array<[string, string[], RegExp]> = [
    ['CL + TE', ['POST / HTTP/1.1', 'Host: a', 'Content-Length: 5', 'Transfer-Encoding: chunked'], /both Content-Length and Transfer-Encoding/],
    ['TE + CL', ['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked', 'Content-Length: 5'], /both/],
    ['two CL, same', ['POST / HTTP/1.1', 'Host: a', 'Content-Length: 5', 'Content-Length: 5'], /more than one Content-Length/],
    ['CL list', ['POST / HTTP/1.1', 'Host: a', 'Content-Length: 5, 5'], /not a decimal number/],
    ['CL sign', ['POST / HTTP/1.1', 'Host: a', 'Content-Length: +5'], /not a decimal number/],
    ['CL hex', ['POST / HTTP/1.1', 'Host: a', 'Content-Length: 0x5'], /not a decimal number/],
    ['CL huge', ['POST / HTTP/1.1', 'Host: a', 'Content-Length: 99999999999999999999'], /not a decimal number/],
    ['TE not chunked last', ['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked, gzip'], /chunked before another coding/],
    ['TE identity', ['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: identity'], /transfer coding "identity" is not supported/],
    ['TE gzip before chunked', ['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: gzip, chunked'], /transfer coding "gzip" is not supported/],
    ['TE empty coding', ['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: ,chunked'], /empty transfer coding/],
    ['TE in HTTP/1.0', ['POST / HTTP/1.0', 'Transfer-Encoding: chunked'], /HTTP\/1\.0/],
    ['obs-fold', ['GET / HTTP/1.1', 'Host: a', 'X: a', '  b'], /obsolete line folding/],
    ['space before colon', ['GET / HTTP/1.1', 'Host: a', 'Content-Length : 0'], /whitespace between a field name and its colon/],
    ['tab before colon', ['GET / HTTP/1.1', 'Host: a', 'X\t: 0'], /whitespace between/],
    ['no colon', ['GET / HTTP/1.1', 'Host: a', 'Junk'], /not a token character/],
    ['empty name', ['GET / HTTP/1.1', 'Host: a', ': v'], /without a name/],
    ['bad name char', ['GET / HTTP/1.1', 'Host: a', 'X(y): v'], /not a token character/],
    ['NUL in value', ['GET / HTTP/1.1', 'Host: a', 'X: a\0b'], /control character/],
    ['bare LF inside', ['GET / HTTP/1.1', 'Host: a\nX: b'], /bare CR or LF/],
    ['bare CR inside', ['GET / HTTP/1.1', 'Host: a\rX: b'], /bare CR or LF/],
    ['no Host', ['GET / HTTP/1.1'], /without a Host/],
    ['two Hosts', ['GET / HTTP/1.1', 'Host: a', 'Host: b'], /more than one Host/],
    ['Host with space', ['GET / HTTP/1.1', 'Host: a b'], /not an authority/],
    ['Host with slash', ['GET / HTTP/1.1', 'Host: a/b'], /not an authority/],
    ['HTTP/2.0', ['GET / HTTP/2.0', 'Host: a'], /only HTTP\/1\.0 and HTTP\/1\.1/],
    ['HTTP/1.10', ['GET / HTTP/1.10', 'Host: a'], /only HTTP\/1\.0/],
    ['lower-case version', ['GET / http/1.1', 'Host: a'], /only HTTP/],
    ['two spaces', ['GET  / HTTP/1.1', 'Host: a'], /request-target/],
    ['space in target', ['GET /a b HTTP/1.1', 'Host: a'], /malformed request line/],
    ['control in target', ['GET /a\x01 HTTP/1.1', 'Host: a'], /request-target/],
    ['no method', [' / HTTP/1.1', 'Host: a'], /method/],
    ['method with slash', ['G/T / HTTP/1.1', 'Host: a'], /method/],
    ['no version', ['GET /', 'Host: a'], /request-target|request line/],
    ['relative target', ['GET a/b HTTP/1.1', 'Host: a'], /neither origin-form/],
    ['scheme without slashes', ['GET http:/a HTTP/1.1', 'Host: a'], /neither origin-form/],
    ['scheme with digits', ['GET h2://a/ HTTP/1.1', 'Host: a'], /neither origin-form/],
    ['asterisk for GET', ['GET * HTTP/1.1', 'Host: a'], /OPTIONS only/],
    ['CONNECT', ['CONNECT api:443 HTTP/1.1', 'Host: api:443'], /CONNECT tunnels are not proxied/],
  ];
  for (const [name, lines, reason] of cases) {
    t.throws(() => parseRequestHead(head(lines)), reason, name);
    try {
      parseRequestHead(head(lines));
    } catch (e) {
      t.ok(e instanceof HeadError, `${name}: a HeadError`);
    }
  }
});

test('response heads: status, reason, framing by status and method', async (t) => {
  const r = parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 12', 'X-Case: kept']), 'GET');
  t.equal(r.status, 200);
  t.equal(r.reason, 'OK');
  t.same(r.framing, { kind: 'length', length: 12 });
  t.same(r.raw, ['Content-Length', '12', 'X-Case', 'kept']);
  t.equal(r.keepAlive, true);
  t.same(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 12']), 'HEAD').framing, { kind: 'none' }, 'HEAD: no body whatever the length says');
  t.same(parseResponseHead(head(['HTTP/1.1 204 No Content']), 'GET').framing, { kind: 'none' });
  t.same(parseResponseHead(head(['HTTP/1.1 304 Not Modified', 'Content-Length: 5']), 'GET').framing, { kind: 'none' });
  t.same(parseResponseHead(head(['HTTP/1.1 103 Early Hints', 'Link: </a>']), 'GET').framing, { kind: 'none' });
  t.same(parseResponseHead(head(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked']), 'GET').framing, { kind: 'chunked' });
  const close = parseResponseHead(head(['HTTP/1.1 200 OK']), 'GET');
  t.same(close.framing, { kind: 'close' }, 'no length, no chunked: until the connection closes');
  t.equal(close.keepAlive, false);
  t.throws(() => parseResponseHead(head(['HTTP/1.1 200 OK', 'Transfer-Encoding: gzip']), 'GET'), /transfer coding "gzip" is not supported/, 'a coding other than chunked: refused, not read until close');
  t.equal(parseResponseHead(head(['HTTP/1.1 200']), 'GET').reason, '', 'no reason phrase');
  t.equal(parseResponseHead(head(['HTTP/1.1 200 ']), 'GET').reason, '', 'an empty reason phrase');
  t.equal(parseResponseHead(head(['HTTP/1.0 200 OK', 'Content-Length: 1']), 'GET').keepAlive, false, 'HTTP/1.0 closes');
  t.equal(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 1', 'Connection: close']), 'GET').keepAlive, false);
  t.same(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 3', 'Content-Length: 3']), 'GET').framing, { kind: 'length', length: 3 }, 'one length said twice is that length');
  t.equal(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 1', 'Keep-Alive: timeout=5, max=100']), 'GET').keepAliveTimeout, 5);
  t.equal(parseResponseHead(head(['HTTP/1.1 200 OK', 'Content-Length: 1']), 'GET').keepAliveTimeout, undefined);
});

test('malformed or ambiguous responses are refused', async (t) => {
  const cases: Array<[string, string[], RegExp]> = [
    ['CL + TE', ['HTTP/1.1 200 OK', 'Content-Length: 3', 'Transfer-Encoding: chunked'], /both Content-Length and Transfer-Encoding/],
    ['two different CL', ['HTTP/1.1 200 OK', 'Content-Length: 3', 'Content-Length: 4'], /disagree/],
    ['bad CL', ['HTTP/1.1 200 OK', 'Content-Length: abc'], /not a decimal number/],
    ['bad status', ['HTTP/1.1 2x0 OK'], /status code/],
    ['status 600', ['HTTP/1.1 600 OK'], /status code/],
    ['HTTP/2', ['HTTP/2 200 OK'], /status line/],
    ['control in reason', ['HTTP/1.1 200 O\x01K'], /reason phrase/],
    ['obs-fold', ['HTTP/1.1 200 OK', 'X: a', '\tb'], /obsolete line folding/],
    ['bare LF', ['HTTP/1.1 200 OK', 'X: a\nY: b'], /bare CR or LF/],
  ];
  for (const [name, lines, reason] of cases) t.throws(() => parseResponseHead(head(lines), 'GET'), reason, name);
});

test('headEnd finds the first CRLF CRLF exactly where Buffer#indexOf does', async (t) => {
  const cases = ['', '\r\n\r\n', 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', 'x\r\n\r', '\r\r\n\r\n', '\n\r\n\r\n', 'a\r\n\r\nb\r\n\r\n', 'a\r\n\n\r\n', 'a\n\r\n\r\r\n\r\n', 'abc'];
  for (const c of cases) t.equal(headEnd(Buffer.from(c, 'latin1')), Buffer.from(c, 'latin1').indexOf('\r\n\r\n'), JSON.stringify(c));
  // Random bytes drawn mostly from CR, LF and one other byte, so near-misses of every shape occur.
  let seed = 42;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  let found = 0;
  for (let n = 0; n < 20_000; n++) {
    const b = Buffer.alloc(next() % 24);
    for (let i = 0; i < b.length; i++) b[i] = [13, 10, 13, 10, 65][next() % 5]!;
    const want = b.indexOf('\r\n\r\n');
    if (want !== -1) found++;
    if (headEnd(b) !== want) {
      t.fail(`${JSON.stringify(b.toString('latin1'))}: ${headEnd(b)} instead of ${want}`);
      return;
    }
  }
  t.ok(found > 1000, `every one of 20 000 random buffers agreed (${found} of them held a CRLF CRLF)`);
});
