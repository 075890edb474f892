// GEP-2257 durations (HTTPRoute rules[].timeouts) → milliseconds: the format's edges, and what a
// rule's timeouts become in the proxy's terms ("0s" is no timeout: the longest a proxy runs).
import t from 'tap';
import { LONGEST_TIMEOUT_MS, parseGatewayDuration, ruleTimeouts } from '../../../control-plane/config/gateway-duration.ts';

t.test('valid GEP-2257 durations, read as Go reads them', async (t) => {
  const cases: Array<[string, number]> = [
    ['10s', 10_000],
    ['500ms', 500],
    ['1ms', 1],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1h30m30s500ms', 5_430_500],
    ['60m', 3_600_000],
    ['01h', 3_600_000],
    ['00060m', 3_600_000],
    ['30s1m', 90_000],
    ['1s1s', 2000],
    ['0s', 0],
    ['99999ms', 99_999],
  ];
  for (const [text, ms] of cases) t.equal(parseGatewayDuration(text), ms, text);
});

t.test('malformed durations are refused with the format in the message', async (t) => {
  for (const text of ['10', '1.5s', '-1s', '1d', '10 s', '', 's', '100000ms', '1h1m1s1ms1h', '1S', '1us', ' 1s']) {
    const r = parseGatewayDuration(text);
    t.type(r, 'string', JSON.stringify(text));
    t.match(r, /is not a Gateway API duration: one to four parts of up to five digits, each followed by h, m, s or ms/, JSON.stringify(text));
  }
  t.match(parseGatewayDuration(10), /expected a duration string such as "10s" or "500ms", got 10/);
  t.match(parseGatewayDuration(undefined), /got nothing/);
});

t.test('rule timeouts: request and backendRequest; 0s is the longest a proxy runs; what cannot be kept is refused', async (t) => {
  t.same(ruleTimeouts(undefined), {});
  t.same(ruleTimeouts({}), {});
  t.same(ruleTimeouts({ request: '300ms' }), { request: 300 });
  t.same(ruleTimeouts({ backendRequest: '2s' }), { perTry: 2000 });
  t.same(ruleTimeouts({ request: '10s', backendRequest: '10s' }), { request: 10_000, perTry: 10_000 });
  t.same(ruleTimeouts({ request: '0s' }), { request: LONGEST_TIMEOUT_MS });
  t.same(ruleTimeouts({ request: '1h' }), { request: LONGEST_TIMEOUT_MS });
  t.same(ruleTimeouts({ request: '0s', backendRequest: '2s' }), { request: LONGEST_TIMEOUT_MS, perTry: 2000 }, 'no request timeout: any backendRequest fits');
  t.same(ruleTimeouts({ request: '1s', backendRequest: '0s' }), { request: 1000, perTry: 1000 }, 'no backendRequest timeout: bounded by the request only');
  t.same(ruleTimeouts({ backendRequest: '0s' }), { perTry: LONGEST_TIMEOUT_MS });
  t.same(ruleTimeouts({ request: '1h1ms' }), ['/request', '"1h1ms" is longer than the longest timeout a proxy runs (1h); "0s" means no timeout (1h)']);
  t.same(ruleTimeouts({ request: '1s', backendRequest: '2s' }), ['/backendRequest', 'backendRequest (2s) is longer than request (1s), which covers every call to a backend']);
  t.match(ruleTimeouts({ backendRequest: '10seconds' }), ['/backendRequest', /not a Gateway API duration/]);
  t.same(ruleTimeouts(['1s']), ['', 'timeouts is not an object']);
});
