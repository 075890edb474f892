// proxy/telemetry/trace.ts OtelTracing: what a hop's span carries when it ends, recorded by a
// stand-in tracer (no SDK, no exporter): the status code only when a response was sent.
import t from 'tap';
import * as api from '@opentelemetry/api';
import { OtelTracing } from '../../../proxy/telemetry/trace.ts';

interface Recorded {
  attributes: Record<string, unknown>;
  status: api.SpanStatus | undefined;
  ended: boolean;
}

function recordingTracer(spans: Recorded[]): api.Tracer {
  return {
    startSpan(_name: string, options: api.SpanOptions = {}) {
      const r: Recorded = { attributes: { ...options.attributes }, status: undefined, ended: false };
      spans.push(r);
      const span = {
        spanContext: () => ({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 }),
        setAttribute: (k: string, v: unknown) => ((r.attributes[k] = v), span),
        setAttributes: (a: Record<string, unknown>) => (Object.assign(r.attributes, a), span),
        setStatus: (s: api.SpanStatus) => ((r.status = s), span),
        end: () => void (r.ended = true),
      };
      return span as unknown as api.Span;
    },
  } as unknown as api.Tracer;
}

t.test('a span with a response carries http.response.status_code; one without a response (status 0) omits it', async (t) => {
  const spans: Recorded[] = [];
  const tracing = new OtelTracing(api, recordingTracer(spans));
  tracing.start('GET', 'server', undefined, {}).end({ status: 200, errorReason: '', attributes: {} });
  tracing.start('GET', 'server', undefined, {}).end({ status: 502, errorReason: 'connect-refused', attributes: {} });
  tracing.start('GET', 'server', undefined, {}).end({ status: 0, errorReason: 'client-gone', attributes: {} });
  const [ok, failed, gone] = spans;
  t.equal(ok!.attributes['http.response.status_code'], 200);
  t.equal(ok!.status, undefined, 'a 200 leaves the span status unset');
  t.equal(failed!.attributes['http.response.status_code'], 502);
  t.equal(failed!.attributes['error.type'], 'connect-refused');
  t.notOk('http.response.status_code' in gone!.attributes, 'client-gone: no http.response.status_code attribute');
  t.equal(gone!.attributes['error.type'], 'client-gone', 'the error reason is still there');
  t.equal(gone!.status?.code, api.SpanStatusCode.ERROR);
  t.ok(spans.every((s) => s.ended), 'every span ended');
});
