// Traces leave every proxy and the control plane over OTLP/HTTP and land in an independent
// receiver: Jaeger built from Go modules (scripts/jaeger/build.sh), read back through its query
// API. One request through web → api → store (each an app behind its own proxy) is one trace with
// a span per proxy hop (server on inbound, client on outbound), each the child of the hop before,
// with OpenTelemetry HTTP semantic convention attributes; a call to a dead endpoint carries the
// proxy's error reason. The control plane exports a span per certify request and config push.
import http from 'node:http';
import t from 'tap';
import { request } from 'undici';
import { identityArgs, startControlPlane } from '../fixtures/control-plane.ts';
import { reservedPort, startProxyProcess, startUpstream, type ProxyProcess, type Upstream } from '../fixtures/mesh.ts';
import { startJaeger, tag, type Jaeger, type JaegerSpan, type JaegerTrace } from './fixtures/jaeger.ts';

const otelEnv = (j: Jaeger, service: string): NodeJS.ProcessEnv => ({
  OTEL_EXPORTER_OTLP_ENDPOINT: j.otlpEndpoint,
  OTEL_BSP_SCHEDULE_DELAY: '100',
  OTEL_SERVICE_NAME: service,
});

/** An app that answers, or calls `next` through its proxy's outbound listener, passing the trace context on. */
function app(name: string, outbound: () => { port: number; host: (path: string) => string } | undefined) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    req.resume();
    const next = outbound();
    if (!next) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ service: name }));
      return;
    }
    const tp = req.headers['traceparent'];
    const out = http.get({ host: '127.0.0.1', port: next.port, path: req.url, headers: { host: next.host(req.url ?? '/'), ...(tp ? { traceparent: String(tp) } : {}) } }, (r) => {
      r.resume();
      r.on('end', () => {
        res.writeHead(r.statusCode ?? 502);
        res.end(`${name} <- ${r.statusCode}`);
      });
    });
    out.on('error', () => {
      res.writeHead(502);
      res.end();
    });
  };
}

async function waitForTrace(j: Jaeger, id: string, spans: number): Promise<JaegerTrace | undefined> {
  let last: JaegerTrace | undefined;
  for (let i = 0; i < 150; i++) {
    last = await j.trace(id);
    if (last && last.spans.length >= spans) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}

const service = (tr: JaegerTrace, s: JaegerSpan) => tr.processes[s.processID]?.serviceName;
const hop = (tr: JaegerTrace, svc: string, kind: 'server' | 'client') => tr.spans.find((s) => service(tr, s) === svc && tag(s, 'span.kind') === kind);
const parentOf = (s: JaegerSpan | undefined) => s?.references.find((r) => r.refType === 'CHILD_OF')?.spanID;

/** The port of an upstream's address. */
const port = (u: Upstream) => Number(u.address.split(':')[1]);

t.test('one request through web → api → store is one trace with a span per proxy hop', async (t) => {
  const jaeger = await startJaeger();
  const procs: ProxyProcess[] = [];
  const apps: Upstream[] = [];
  t.teardown(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await Promise.all(apps.map((a) => a.close()));
    await jaeger.stop();
  });
  let webOut: ProxyProcess | undefined;
  let apiOut: ProxyProcess | undefined;
  const store = await startUpstream(app('store', () => undefined));
  const api = await startUpstream(app('api', () => apiOut && { port: apiOut.outboundPort, host: (path) => (path.startsWith('/dead') ? 'dead' : 'store') }));
  const web = await startUpstream(app('web', () => webOut && { port: webOut.outboundPort, host: () => 'api' }));
  apps.push(store, api, web);
  const dead = await reservedPort();
  // Plaintext mode (no control plane): each inbound port is permissive and open to all callers.
  const inbound = (u: Upstream) => ({ ports: [{ port: port(u), permissive: true }], defaultPolicy: 'all' });
  const storeProxy = await startProxyProcess({ config: { version: 's1', services: [], inbound: inbound(store) }, appPort: port(store), workload: 'store', env: otelEnv(jaeger, 'store') });
  procs.push(storeProxy);
  const apiProxy = await startProxyProcess({
    config: {
      version: 'a1',
      services: [
        { name: 'store', endpoints: [{ address: `127.0.0.1:${storeProxy.inboundPort}` }] },
        { name: 'dead', endpoints: [{ address: `127.0.0.1:${dead}` }], retry: { attempts: 1 } },
      ],
      inbound: inbound(api),
    },
    appPort: port(api),
    workload: 'api',
    env: otelEnv(jaeger, 'api'),
  });
  procs.push(apiProxy);
  const webProxy = await startProxyProcess({ config: { version: 'w1', services: [{ name: 'api', endpoints: [{ address: `127.0.0.1:${apiProxy.inboundPort}` }] }], inbound: inbound(web) }, appPort: port(web), workload: 'web', env: otelEnv(jaeger, 'web') });
  procs.push(webProxy);
  [webOut, apiOut] = [webProxy, apiProxy];

  // The happy path: no trace context from the client, so web's inbound span is the root.
  const ok = await request(`http://127.0.0.1:${webProxy.inboundPort}/orders/42`);
  await ok.body.text();
  t.equal(ok.statusCode, 200, 'the request went through three proxies and back');
  t.equal(store.hits, 1, 'and reached store');
  const traceId = String(web.seen.at(-1)!.headers['traceparent']).split('-')[1]!;
  const tr = await waitForTrace(jaeger, traceId, 5);
  t.ok(tr, `Jaeger has trace ${traceId}`);
  if (!tr) return;
  t.equal(tr.spans.length, 5, 'five spans: web in/out, api in/out, store in');
  t.same(new Set(tr.spans.map((s) => s.traceID)), new Set([traceId]), 'all in one trace');
  const [webIn, webClient, apiIn, apiClient, storeIn] = [hop(tr, 'web', 'server'), hop(tr, 'web', 'client'), hop(tr, 'api', 'server'), hop(tr, 'api', 'client'), hop(tr, 'store', 'server')];
  t.ok(webIn && webClient && apiIn && apiClient && storeIn, 'a server span on each inbound hop, a client span on each outbound hop');
  t.equal(parentOf(webIn), undefined, "web's inbound span is the root");
  t.equal(parentOf(webClient), webIn?.spanID, 'web → api (client) is the child of web inbound (the app passed the context on)');
  t.equal(parentOf(apiIn), webClient?.spanID, 'api inbound is the child of web → api');
  t.equal(parentOf(apiClient), apiIn?.spanID, 'api → store is the child of api inbound');
  t.equal(parentOf(storeIn), apiClient?.spanID, 'store inbound is the child of api → store');
  for (const s of tr.spans) {
    const who = `${service(tr, s)} ${tag(s, 'span.kind')}`;
    t.equal(tag(s, 'http.request.method'), 'GET', `${who}: http.request.method`);
    t.equal(tag(s, 'http.response.status_code'), 200, `${who}: http.response.status_code`);
    t.equal(tag(s, 'url.path'), '/orders/42', `${who}: url.path`);
    t.equal(tag(s, 'url.scheme'), 'http', `${who}: url.scheme`);
    t.equal(tag(s, 'network.peer.address'), '127.0.0.1', `${who}: network.peer.address`);
    t.ok(Number(tag(s, 'network.peer.port')) > 0, `${who}: network.peer.port`);
    t.equal(tag(s, 'network.protocol.version'), '1.1', `${who}: network.protocol.version`);
    t.equal(tag(s, 'error.type'), undefined, `${who}: no error.type on success`);
  }
  t.equal(tag(webClient!, 'server.address'), 'api', 'the client span names the service it called');
  t.equal(tag(apiClient!, 'server.address'), 'store');
  t.equal(tag(apiClient!, 'meshlet.dst_service'), 'store');

  // A dead endpoint: api's proxy answers 502 connect-refused; the error reason is on its span.
  const bad = await request(`http://127.0.0.1:${webProxy.inboundPort}/dead`);
  await bad.body.text();
  t.equal(bad.statusCode, 502, 'the failure travels back to the client');
  const badId = String(web.seen.at(-1)!.headers['traceparent']).split('-')[1]!;
  // web's proxy retries the 502 (GET, default policy): its inbound span ends last.
  let failed: JaegerTrace | undefined;
  for (let i = 0; i < 150 && !(failed && hop(failed, 'web', 'server')); i++) {
    await new Promise((r) => setTimeout(r, 100));
    failed = await jaeger.trace(badId);
  }
  t.ok(failed && hop(failed, 'web', 'server'), 'the failed request is one trace too');
  if (!failed) return;
  const webClientBad = hop(failed, 'web', 'client')!;
  const attempts = Number(tag(webClientBad, 'meshlet.attempts'));
  const apiServers = failed.spans.filter((s) => service(failed, s) === 'api' && tag(s, 'span.kind') === 'server');
  const deadHops = failed.spans.filter((s) => service(failed, s) === 'api' && tag(s, 'span.kind') === 'client');
  t.ok(attempts >= 1, `web's proxy tried ${attempts} time(s)`);
  t.equal(apiServers.length, attempts, 'one api inbound span per attempt');
  t.ok(apiServers.every((s) => parentOf(s) === webClientBad.spanID), 'each attempt is a child of the one web → api client span');
  t.equal(deadHops.length, attempts, 'one api → dead span per attempt');
  t.equal(failed.spans.filter((s) => service(failed, s) === 'store').length, 0, 'nothing reached store');
  for (const d of deadHops) {
    t.equal(tag(d, 'error.type'), 'connect-refused', 'error.type is the proxy error reason');
    t.equal(tag(d, 'meshlet.proxy_error'), 'connect-refused', 'and meshlet.proxy_error');
    t.equal(tag(d, 'http.response.status_code'), 502);
    t.equal(tag(d, 'otel.status_code'), 'ERROR', 'span status ERROR');
    t.ok(apiServers.some((a) => a.spanID === parentOf(d)), 'the failed hop is the child of an api inbound span');
  }
  t.equal(tag(hop(failed, 'web', 'server')!, 'error.type'), '502', 'hops that relayed the 502 carry error.type "502"');
  t.equal(tag(hop(failed, 'web', 'server')!, 'otel.status_code'), 'ERROR');
});

t.test('the control plane exports a span per certify request and per config push', async (t) => {
  const jaeger = await startJaeger();
  const cp = await startControlPlane({ env: otelEnv(jaeger, 'meshlet-control-plane') });
  let proxy: ProxyProcess | undefined;
  t.teardown(async () => {
    await proxy?.stop();
    await cp.stop();
    await jaeger.stop();
  });
  proxy = await startProxyProcess({ config: {}, args: [...identityArgs(cp, 'shop', 'web'), '--pod', 'web-0'], workload: 'web', configFromControlPlane: true });
  let spans: JaegerSpan[] = [];
  for (let i = 0; i < 150; i++) {
    spans = (await jaeger.traces('meshlet-control-plane')).flatMap((x) => x.spans);
    if (spans.some((s) => s.operationName === 'certify') && spans.some((s) => s.operationName === 'config push')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const certify = spans.find((s) => s.operationName === 'certify');
  t.ok(certify, 'a certify span');
  t.equal(certify && tag(certify, 'meshlet.identity'), 'spiffe://cluster.local/ns/shop/sa/web', 'naming the identity issued');
  t.equal(certify && tag(certify, 'meshlet.proof'), 'bootstrap');
  const push = spans.find((s) => s.operationName === 'config push');
  t.ok(push, 'a config push span');
  t.equal(push && tag(push, 'meshlet.proxy.identity'), 'spiffe://cluster.local/ns/shop/sa/web', 'naming the proxy');
  t.match(String(push && tag(push, 'meshlet.config.version')), /\S/, 'and the version sent');
});
