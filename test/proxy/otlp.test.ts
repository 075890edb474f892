// Traces leave the proxy over OTLP/HTTP when the standard OTEL_* variables say so. The receiver
// here is a fake (a capture server speaking OTLP/JSON); the real-collector test is in the
// observability issue. Without the variables the proxy exports nothing and loads no SDK.
import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { startUpstream, startProxyProcess } from '../fixtures/mesh.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  status?: { code?: number };
}

t.test('a request through the proxy becomes an OTLP span with the right parent', async (t) => {
  const spans: OtlpSpan[] = [];
  const fakeOtlpReceiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const doc = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
        for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => fakeOtlpReceiver.listen(0, '127.0.0.1', r));
  const otlpPort = (fakeOtlpReceiver.address() as AddressInfo).port;
  const up = await startUpstream((req, res) => {
    req.resume();
    res.statusCode = req.url === '/fail' ? 503 : 200;
    res.end('x');
  });
  const p = await startProxyProcess({
    config: { version: 'o1', services: [{ name: 'up', endpoints: [{ address: up.address }], retry: { attempts: 1 } }] },
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otlpPort}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_SERVICE_NAME: 'proxy-under-test',
    },
  });
  t.teardown(async () => {
    await p.stop();
    await up.close();
    fakeOtlpReceiver.close();
  });
  const traceId = '5bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '10f067aa0ba902b7';
  await (await request(`${p.outboundUrl}/ok`, { headers: { host: 'up', traceparent: `00-${traceId}-${parent}-01` } })).body.text();
  await (await request(`${p.outboundUrl}/fail`, { headers: { host: 'up', traceparent: `00-${traceId}-${parent}-01` } })).body.text();
  await (await request(`${p.outboundUrl}/x`, { headers: { host: 'nowhere', traceparent: `00-${traceId}-${parent}-01` } })).body.text();
  for (let i = 0; i < 100 && spans.length < 3; i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(spans.length, 3, 'three spans exported');
  const forwarded = up.seen.map((s) => String(s.headers['traceparent']).split('-')[2]);
  for (const s of spans) {
    t.equal(s.traceId, traceId, 'same trace');
    t.equal(s.parentSpanId, parent, "the caller's span is the parent");
  }
  t.same(spans.filter((s) => s.spanId !== spans[2]!.spanId).map((s) => s.spanId).toSorted(), forwarded.slice(0, 2).toSorted(), 'the exported span ids are the ones sent upstream');
  const attr = (s: OtlpSpan, k: string) => s.attributes.find((a) => a.key === k)?.value;
  const ok = spans.find((s) => attr(s, 'url.path')?.['stringValue'] === '/ok')!;
  t.same(attr(ok, 'http.request.method'), { stringValue: 'GET' }, 'HTTP semantic conventions: method');
  t.same(attr(ok, 'http.response.status_code'), { intValue: 200 }, 'status code');
  const noRoute = spans.find((s) => attr(s, 'url.path')?.['stringValue'] === '/x')!;
  t.same(attr(noRoute, 'meshlet.proxy_error'), { stringValue: 'no-route' }, 'the proxy error reason is on the failed span');
  t.equal(noRoute.status?.code, 2, 'and its status is ERROR');
});
