// The HTTP/2 field rules and the gRPC form of proxy errors (proxy/http2/fields.ts), pure.
import t from 'tap';
import { errorAnswer, fieldsOf, formatGrpcTimeout, forwardH2RequestHeaders, forwardH2ResponseHeaders, grpcMessage, grpcStatusOf, headerObject, isEndpointFailure, isGrpc, parseGrpcTimeout } from '../../../proxy/http2/fields.ts';
import { ProxyError } from '../../../proxy/errors.ts';

/** A header block as Node gives it: the object and the flat raw list. */
function block(list: string[]): ReturnType<typeof fieldsOf> {
  const obj: Record<string, string | string[]> = {};
  for (let i = 0; i < list.length; i += 2) {
    const had = obj[list[i]!];
    obj[list[i]!] = had === undefined ? list[i + 1]! : [...(Array.isArray(had) ? had : [had]), list[i + 1]!];
  }
  return fieldsOf(obj, list);
}

t.test('request fields: pseudo-headers left out, connection-specific fields dropped (RFC 9113 §8.2.2), te: trailers kept', async (t) => {
  const f = block([':method', 'POST', ':path', '/a.B/C', ':authority', 'api', 'content-type', 'application/grpc', 'te', 'trailers', 'connection', 'x-named', 'x-named', '1', 'keep-alive', 'timeout=5', 'proxy-connection', 'x', 'upgrade', 'h2c', 'http2-settings', 'AAMAAABkAAQAoAAAAAIAAAAA', 'transfer-encoding', 'chunked', 'host', 'api', 'meshlet-dst-port', '8080', 'x-keep', 'a', 'x-keep', 'b']);
  t.equal(f.get(':path'), '/a.B/C', 'lookups see pseudo-headers');
  t.equal(f.get('x-keep'), 'a, b', 'repeated fields joined');
  t.same(forwardH2RequestHeaders(f, 'keep'), ['content-type', 'application/grpc', 'x-keep', 'a', 'x-keep', 'b', 'te', 'trailers']);
});

t.test('te other than trailers is dropped; trace fields replaced as for HTTP/1', async (t) => {
  const f = block(['te', 'gzip', 'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'tracestate', 'a=b']);
  t.same(forwardH2RequestHeaders(f, 'replace'), ['tracestate', 'a=b']);
  t.same(forwardH2RequestHeaders(f, 'restart'), []);
});

t.test('response fields and trailers: connection-specific dropped, the rest kept', async (t) => {
  const f = block([':status', '200', 'grpc-status', '0', 'connection', 'close', 'http2-settings', 'x', 'x-a', '1']);
  t.same(forwardH2ResponseHeaders(f), ['grpc-status', '0', 'x-a', '1']);
});

t.test('headerObject: repeated names become arrays', async (t) => {
  t.same(headerObject(['a', '1', 'B', '2', 'a', '3', 'a', '4']), { a: ['1', '3', '4'], b: '2' });
});

t.test('gRPC requests by content-type', async (t) => {
  t.ok(isGrpc('application/grpc'));
  t.ok(isGrpc('application/grpc+proto'));
  t.notOk(isGrpc('application/json'));
  t.notOk(isGrpc(undefined));
});

t.test('grpc-status of proxy errors, as Linkerd answers gRPC callers', async (t) => {
  t.equal(grpcStatusOf(403), 7, 'PERMISSION_DENIED');
  t.equal(grpcStatusOf(404), 5, 'NOT_FOUND');
  for (const s of [502, 503, 504]) t.equal(grpcStatusOf(s), 14, `${s}: UNAVAILABLE`);
  t.equal(grpcStatusOf(400), 13, 'INTERNAL');
  t.equal(grpcStatusOf(418), 2, 'UNKNOWN');
});

t.test('grpc-message is percent-encoded outside printable ASCII, and % itself', async (t) => {
  t.equal(grpcMessage('plain text: ok'), 'plain text: ok');
  t.equal(grpcMessage('50% "é"\n'), '50%25 "%C3%A9"%0A');
});

t.test('errorAnswer: trailers-only for gRPC, the HTTP answer otherwise, meshlet-proxy-error on both', async (t) => {
  const e = new ProxyError('request-timeout', 'no response within 300 ms');
  const g = errorAnswer(e, true);
  t.same(g.headers, { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'meshlet: request-timeout: no response within 300 ms', 'meshlet-proxy-error': 'request-timeout' });
  t.equal(g.body, undefined, 'no body: END_STREAM on the headers');
  const h = errorAnswer(e, false);
  t.equal(h.status, 504);
  t.equal(h.headers['meshlet-proxy-error'], 'request-timeout');
  t.equal(h.body, 'meshlet: request-timeout: no response within 300 ms\n');
});

t.test('grpc-timeout: 1 to 8 digits and a unit, in whole milliseconds rounded up; anything else ignored', async (t) => {
  t.equal(parseGrpcTimeout('300m'), 300);
  t.equal(parseGrpcTimeout('2S'), 2000);
  t.equal(parseGrpcTimeout('1M'), 60_000);
  t.equal(parseGrpcTimeout('1H'), 3_600_000);
  t.equal(parseGrpcTimeout('1500u'), 2, 'microseconds, rounded up');
  t.equal(parseGrpcTimeout('1n'), 1, 'a nanosecond is a millisecond at this precision');
  t.equal(parseGrpcTimeout('0m'), 0);
  t.equal(parseGrpcTimeout('99999999S'), 99_999_999_000, 'eight digits');
  for (const bad of [undefined, '', 'm', '300', '300ms', '123456789m', '-1m', '1.5S', ' 1S', '1s', '0x10m']) t.equal(parseGrpcTimeout(bad), undefined, `${String(bad)} ignored`);
  t.equal(formatGrpcTimeout(299.2), '300m');
  t.equal(formatGrpcTimeout(-5), '0m', 'a deadline already past');
  t.equal(formatGrpcTimeout(200_000_000), '200000S', 'seconds past eight digits of milliseconds');
  t.equal(parseGrpcTimeout(formatGrpcTimeout(123_456)), 123_456, 'round trip');
});

t.test('an endpoint failure for the breaker: UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, DATA_LOSS only', async (t) => {
  const failures = Array.from({ length: 17 }, (_, c) => c).filter((c) => isEndpointFailure(String(c)));
  t.same(failures, [2, 4, 13, 14, 15], 'PERMISSION_DENIED (an authorization deny) and the application\'s own answers are not');
});

t.test('errorAnswer: the caller\'s own deadline passing is DEADLINE_EXCEEDED, the route\'s UNAVAILABLE', async (t) => {
  const e = new ProxyError('request-timeout', 'no response within 300 ms');
  t.equal(errorAnswer(e, true, true).grpcStatus, '4');
  t.equal(errorAnswer(e, true, false).grpcStatus, '14');
  t.equal(errorAnswer(new ProxyError('per-try-timeout', 'x'), true, true).grpcStatus, '14', 'a per-try timeout is the route\'s');
  t.equal(errorAnswer(e, false, true).status, 504, 'not gRPC: the HTTP answer');
});
