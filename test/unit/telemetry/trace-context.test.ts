// proxy/telemetry/trace.ts trace context, without I/O: which W3C traceparent and B3 headers a
// hop continues, which make it restart the trace, and what it writes downstream.
import t from 'tap';
import { extractParent, IdOnlyTracing, parseTraceparent, pushPropagationHeaders, type FieldLookup, type Tracing } from '../../../proxy/telemetry/trace.ts';

/** Headers by lower-case name, as http1/head.ts Fields answers get(). */
const lookup = (h: Record<string, string>): FieldLookup => ({ get: (name) => h[name] });

/** What a hop sends downstream for a request with these headers (as proxy/http/listener.ts does). */
function propagated(h: Record<string, string>): Record<string, string> {
  const parent = extractParent(lookup(h));
  const tracing: Tracing = new IdOnlyTracing();
  const span = tracing.start('GET outbound', 'client', parent, {});
  const out: string[] = [];
  pushPropagationHeaders(out, span, parent);
  const sent: Record<string, string> = {};
  for (let i = 0; i < out.length; i += 2) sent[out[i]!] = out[i + 1]!;
  return sent;
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

t.test('traceparent: valid headers are continued with their sampled flag', async (t) => {
  const cases: Array<[string, boolean]> = [
    [`00-${TRACE}-${SPAN}-01`, true],
    [`00-${TRACE}-${SPAN}-00`, false],
    [`00-${TRACE}-${SPAN}-09`, true], // other flag bits are ignored
    [`00-${TRACE}-${SPAN}-fe`, false],
    [`01-${TRACE}-${SPAN}-01`, true], // a future version is read as 00 ...
    [`cc-${TRACE}-${SPAN}-01-what-the-future-adds`, true], // ... and may go on after '-'
  ];
  for (const [v, sampled] of cases) t.same(parseTraceparent(v), { traceId: TRACE, spanId: SPAN, sampled, source: 'traceparent' }, v);
});

t.test('traceparent: malformed headers restart the trace', async (t) => {
  const cases: Record<string, string> = {
    'version not hex': `zz-${TRACE}-${SPAN}-01`,
    'version half hex': `0g-${TRACE}-${SPAN}-01`,
    'version upper-case hex': `0A-${TRACE}-${SPAN}-01`,
    'version ff': `ff-${TRACE}-${SPAN}-01`,
    'future version, junk after the flags': `01-${TRACE}-${SPAN}-01Xjunk`,
    'future version, a digit after the flags': `01-${TRACE}-${SPAN}-011`,
    'version 00, longer than 55': `00-${TRACE}-${SPAN}-01-`,
    'version 00, shorter than 55': `00-${TRACE}-${SPAN}-1`,
    'upper-case trace id': `00-${TRACE.toUpperCase()}-${SPAN}-01`,
    'upper-case flags': `00-${TRACE}-${SPAN}-0A`,
    'flags not hex': `00-${TRACE}-${SPAN}-0x`,
    'all-zero trace id': `00-${'0'.repeat(32)}-${SPAN}-01`,
    'all-zero span id': `00-${TRACE}-${'0'.repeat(16)}-01`,
    'two headers joined': `00-${TRACE}-${SPAN}-01, 00-${TRACE}-${SPAN}-01`,
    'wrong separators': `00_${TRACE}_${SPAN}_01`,
    empty: '',
  };
  for (const [name, v] of Object.entries(cases)) t.equal(parseTraceparent(v), undefined, name);
  t.equal(parseTraceparent(undefined), undefined, 'absent');
});

t.test('B3 is written downstream when the trace continues from B3, whatever traceparent came with it', async (t) => {
  const b3 = { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' };
  for (const [name, tp] of [['absent', undefined], ['invalid', 'garbage'], ['upper-case', `00-${TRACE.toUpperCase()}-${SPAN}-01`]] as const) {
    const sent = propagated(tp === undefined ? b3 : { ...b3, traceparent: tp });
    t.equal(sent['x-b3-traceid'], TRACE, `traceparent ${name}: B3 trace id continued`);
    t.match(sent['x-b3-spanid'], /^[0-9a-f]{16}$/, `traceparent ${name}: a B3 span id`);
    t.not(sent['x-b3-spanid'], SPAN, `traceparent ${name}: a new B3 span id`);
    t.equal(sent['x-b3-sampled'], '1', `traceparent ${name}: sampled`);
    t.match(sent['traceparent'], new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`), `traceparent ${name}: traceparent from the B3 context`);
  }
  const other = '0af7651916cd43dd8448eb211c80319c';
  const sent = propagated({ ...b3, traceparent: `00-${other}-${SPAN}-01` });
  t.match(sent['traceparent'], new RegExp(`^00-${other}-`), 'a valid traceparent wins over B3');
  t.equal(sent['x-b3-traceid'], undefined, 'and no B3 is written');
});
