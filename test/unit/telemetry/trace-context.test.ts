// proxy/telemetry/trace.ts trace context, without I/O: which W3C traceparent and B3 headers a
// hop continues, which make it restart the trace, and what it writes downstream.
import t from 'tap';
import { extractParent, IdOnlyTracing, parseB3, parseTraceparent, pushPropagationHeaders, type FieldLookup, type ParentContext, type Tracing } from '../../../proxy/telemetry/trace.ts';

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
  for (const [v, sampled] of cases) t.same(parseTraceparent(v), { traceId: TRACE, spanId: SPAN, sampled, debug: false, source: 'traceparent' }, v);
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

t.test('B3: sampling state read as accept, deny, debug, or left to the receiver', async (t) => {
  const short = TRACE.slice(16);
  const cases: Array<[string, Record<string, string>, Partial<ParentContext> | undefined]> = [
    ['multi, sampled', { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' }, { traceId: TRACE, sampled: true, debug: false, source: 'b3' }],
    ['multi, not sampled', { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '0' }, { sampled: false, debug: false }],
    ['multi, legacy true', { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': 'true' }, { sampled: true }],
    ['multi, no flag: deferred', { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN }, { sampled: undefined, debug: false }],
    ['multi, debug', { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-flags': '1' }, { sampled: true, debug: true }],
    ['multi, 64-bit trace id', { 'x-b3-traceid': short.toUpperCase(), 'x-b3-spanid': SPAN }, { traceId: '0000000000000000' + short }],
    ['multi, sampled alone', { 'x-b3-sampled': '1' }, { traceId: '', spanId: '', sampled: true, debug: false, source: 'b3' }],
    ['multi, not sampled alone', { 'x-b3-sampled': '0' }, { traceId: '', sampled: false }],
    ['multi, debug alone', { 'x-b3-flags': '1' }, { traceId: '', sampled: true, debug: true }],
    ['multi, bad sampled value', { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': 'yes' }, undefined],
    ['multi, trace id only', { 'x-b3-traceid': TRACE, 'x-b3-sampled': '1' }, undefined],
    ['multi, all-zero trace id', { 'x-b3-traceid': '0'.repeat(32), 'x-b3-spanid': SPAN }, undefined],
    ['single, sampled', { b3: `${TRACE}-${SPAN}-1` }, { traceId: TRACE, spanId: SPAN, sampled: true, debug: false, source: 'b3-single' }],
    ['single, with parent span', { b3: `${TRACE}-${SPAN}-0-05e3ac9a4f6e3b90` }, { sampled: false }],
    ['single, no flag: deferred', { b3: `${TRACE}-${SPAN}` }, { traceId: TRACE, sampled: undefined, debug: false }],
    ['single, debug', { b3: `${TRACE}-${SPAN}-d` }, { sampled: true, debug: true }],
    ['single, 0 alone', { b3: '0' }, { traceId: '', spanId: '', sampled: false, debug: false, source: 'b3-single' }],
    ['single, 1 alone', { b3: '1' }, { traceId: '', sampled: true, debug: false }],
    ['single, d alone', { b3: 'd' }, { traceId: '', sampled: true, debug: true }],
    ['single, bad state', { b3: `${TRACE}-${SPAN}-x` }, undefined],
    ['single, bad state alone', { b3: 'x' }, undefined],
    ['single, empty', { b3: '' }, undefined],
  ];
  for (const [name, h, want] of cases) {
    const got = parseB3(lookup(h));
    if (want === undefined) t.equal(got, undefined, name);
    else t.match(got, want, name);
    if (want && 'sampled' in want && want.sampled === undefined) t.equal(got?.sampled, undefined, `${name}: no decision`);
  }
});

t.test('B3 sampling passed on: deferred stays deferred, debug stays debug, a decision alone starts a trace', async (t) => {
  const multi = { 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN };
  let sent = propagated(multi);
  t.equal(sent['x-b3-sampled'], undefined, 'multi deferred: no x-b3-sampled');
  t.equal(sent['x-b3-flags'], undefined, 'multi deferred: no x-b3-flags');
  t.equal(sent['x-b3-traceid'], TRACE, 'multi deferred: trace continued');
  t.match(sent['traceparent'], new RegExp(`^00-${TRACE}-[0-9a-f]{16}-00$`), 'multi deferred: traceparent with this hop\'s own decision (a new trace is not sampled here)');
  t.match(propagated({})['traceparent'], /-00$/, '(as for a new trace)');

  sent = propagated({ ...multi, 'x-b3-flags': '1' });
  t.equal(sent['x-b3-flags'], '1', 'multi debug: x-b3-flags 1');
  t.equal(sent['x-b3-sampled'], undefined, 'multi debug: no x-b3-sampled beside it');
  t.match(sent['traceparent'], /-01$/, 'multi debug: sampled');

  sent = propagated({ b3: `${TRACE}-${SPAN}` });
  t.match(sent['b3'], new RegExp(`^${TRACE}-[0-9a-f]{16}$`), 'single deferred: b3 without a sampling state');
  t.equal(sent['x-b3-traceid'], undefined, 'single in, single out');
  t.match(sent['traceparent'], /-00$/, 'single deferred: traceparent not sampled');

  sent = propagated({ b3: `${TRACE}-${SPAN}-d` });
  t.match(sent['b3'], new RegExp(`^${TRACE}-[0-9a-f]{16}-d$`), 'single debug: -d');
  t.match(sent['traceparent'], /-01$/, 'single debug: sampled');

  sent = propagated({ b3: `${TRACE}-${SPAN}-0` });
  t.match(sent['b3'], new RegExp(`^${TRACE}-[0-9a-f]{16}-0$`), 'single not sampled: -0');

  for (const [b3, state, flags] of [['0', '0', '00'], ['1', '1', '01'], ['d', 'd', '01']] as const) {
    sent = propagated({ b3 });
    t.match(sent['b3'], new RegExp(`^[0-9a-f]{32}-[0-9a-f]{16}-${state}$`), `b3: ${b3} alone: a new trace, -${state}`);
    t.match(sent['traceparent'], new RegExp(`^00-${sent['b3']!.slice(0, 32)}-[0-9a-f]{16}-${flags}$`), `b3: ${b3} alone: traceparent ${flags}`);
  }
  sent = propagated({ 'x-b3-sampled': '1' });
  t.match(sent['x-b3-traceid'], /^[0-9a-f]{32}$/, 'X-B3-Sampled: 1 alone: a new trace id');
  t.not(sent['x-b3-traceid'], '0'.repeat(32));
  t.equal(sent['x-b3-sampled'], '1', 'X-B3-Sampled: 1 alone: sampled passed on');
  t.match(sent['traceparent'], /-01$/, 'X-B3-Sampled: 1 alone: traceparent sampled');
});
