// proxy/http/headers.ts forwardRequestHeaders: which trace fields a request carries upstream.
// This hop always writes its own traceparent and B3; the caller's tracestate travels on only
// with the valid traceparent it belongs to (W3C Trace Context: without one it MUST be discarded).
import t from 'tap';
import { forwardRequestHeaders, type TraceFields } from '../../../proxy/http/headers.ts';

function fields(...raw: string[]) {
  return { raw, lower: raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase()) };
}

const names = (out: string[]): string[] => out.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());

const incoming = fields('Host', 'up', 'traceparent', 'garbage', 'TraceState', 'vnd=abc', 'X-B3-TraceId', 'a3ce929d0e0e4736', 'b3', '1', 'X-App', 'v');

t.test('trace fields per mode: keep all, replace all but tracestate, restart drops tracestate too', async (t) => {
  const cases: Array<[TraceFields, string[]]> = [
    ['keep', ['traceparent', 'tracestate', 'x-b3-traceid', 'b3', 'x-app']],
    ['replace', ['tracestate', 'x-app']],
    ['restart', ['x-app']],
  ];
  for (const [mode, want] of cases) t.same(names(forwardRequestHeaders(incoming, mode)), want, mode);
});

t.test('restart drops every tracestate field, whatever its case, and nothing else', async (t) => {
  const out = forwardRequestHeaders(fields('tracestate', 'a=1', 'X-Other', 'x', 'TRACESTATE', 'b=2'), 'restart');
  t.same(out, ['X-Other', 'x']);
});
