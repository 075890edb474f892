// Interception for real: a "pod" network namespace with the rules of proxy/intercept/intercept.sh,
// an app (UID 1001) and the meshlet proxy (UID 2102, file config, plaintext mode); a "peer"
// namespace with servers and a client. curl is the app and the client. The app's outbound HTTP
// leaves through the proxy, routed by Host; the proxy's own connections are not re-intercepted;
// inbound TCP to the app's port enters through the proxy; loopback, skipped ports and skipped
// CIDRs bypass it.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { createNetnsPair, curlIn, plainEnv, requireTools, startProxyIn, startServerIn, type NetnsPair, type NetnsProxy, type Seen } from '../fixtures/netns.ts';

requireTools();

const SCRIPT = fileURLToPath(new URL('../../proxy/intercept/intercept.sh', import.meta.url));
const APP_UID = 1001;
const PROXY_UID = 2102;

let pair: NetnsPair;
let proxy: NetnsProxy;
let skippedIp: string;
let nowhere: string;

t.before(async () => {
  pair = await createNetnsPair('mltraffic');
  skippedIp = `${pair.prefix}.3`;
  nowhere = `${pair.prefix}.99`;
  const add = await pair.exec(pair.peer, ['ip', 'addr', 'add', `${skippedIp}/24`, 'dev', 'eth0']);
  if (add.code !== 0) throw new Error(add.stderr);
  // The init container runs first: rules before anything else starts in the pod.
  const init = await pair.exec(pair.pod, [SCRIPT], {
    env: plainEnv({ MESHLET_SKIP_INBOUND_PORTS: '9000', MESHLET_SKIP_OUTBOUND_PORTS: '5432', MESHLET_SKIP_OUTBOUND_CIDRS: `${skippedIp}/32` }),
  });
  if (init.code !== 0) throw new Error(`intercept.sh failed: ${init.stderr}`);
  await startServerIn(pair, pair.pod, '0.0.0.0', 8080, 'app', { uid: APP_UID });
  await startServerIn(pair, pair.pod, '0.0.0.0', 9000, 'app-debug', { uid: APP_UID });
  await startServerIn(pair, pair.peer, '0.0.0.0', 8080, 'peer');
  await startServerIn(pair, pair.peer, '0.0.0.0', 5432, 'peer-db');
  proxy = await startProxyIn(pair, pair.pod, {
    config: {
      version: 'v1',
      services: [{ name: 'api.shop', hosts: ['api.shop.svc.cluster.local', pair.peerIp], endpoints: [{ address: `${pair.peerIp}:8080` }] }],
      inbound: { defaultPolicy: 'all' },
    },
    args: ['--outbound-listen', '127.0.0.1:4140', '--inbound-listen', '0.0.0.0:4143', '--admin-listen', '0.0.0.0:4191', '--app', '127.0.0.1:8080', '--workload', 'web', '--namespace', 'shop'],
  });
});

t.teardown(async () => {
  await proxy?.stop();
  await pair?.cleanup();
});

const seen = (body: string): Seen => JSON.parse(body) as Seen;

t.test('outbound: the app calls a service FQDN with a port; the proxy routes it by Host', async (t) => {
  // DNS would give a ClusterIP; here the name resolves to an address where nothing listens, so
  // only the proxy (which routes by Host, not by the address dialled) can answer.
  const host = 'api.shop.svc.cluster.local:8080';
  const r = await curlIn(pair, pair.pod, ['--resolve', `${host}:${nowhere}`, `http://${host}/orders?id=7`], { uid: APP_UID });
  t.equal(r.status, 200, r.stderr + r.body);
  const s = seen(r.body);
  t.equal(s.server, 'peer');
  t.equal(s.url, '/orders?id=7');
  t.equal(s.headers['host'], host, 'the Host header travels unchanged');
  t.equal(s.remote, pair.podIp, 'the peer sees the pod address');
  await proxy.waitForLog((l) => l.direction === 'outbound' && l.path === '/orders');
  const lines = proxy.accessLog().filter((l) => l.path === '/orders');
  t.equal(lines.length, 1, "one outbound hop: the proxy's own upstream connection was not intercepted again");
  t.equal(lines[0]!.authority, host);
  t.equal(lines[0]!.upstream, `${pair.peerIp}:8080`);
});

t.test('outbound: a plain http://<ip>:8080/ request goes through the proxy too', async (t) => {
  const r = await curlIn(pair, pair.pod, [`http://${pair.peerIp}:8080/by-ip`], { uid: APP_UID });
  t.equal(r.status, 200, r.stderr + r.body);
  t.equal(seen(r.body).server, 'peer');
  await proxy.waitForLog((l) => l.direction === 'outbound' && l.path === '/by-ip' && l.authority === `${pair.peerIp}:8080`);
  const unknown = await curlIn(pair, pair.pod, ['-H', 'Host: unknown.example', `http://${pair.peerIp}:8080/`], { uid: APP_UID });
  t.equal(unknown.status, 404, 'a host the proxy does not know: the proxy answers, the peer is never reached');
  t.equal(unknown.headers['meshlet-proxy-error'], 'no-route');
});

t.test("the proxy's UID is never intercepted", async (t) => {
  const r = await curlIn(pair, pair.pod, ['-H', 'Host: unknown.example', `http://${pair.peerIp}:8080/as-proxy`], { uid: PROXY_UID });
  t.equal(r.status, 200, 'straight to the peer, not to the outbound listener');
  t.equal(seen(r.body).url, '/as-proxy');
});

t.test('skipped outbound ports and CIDRs bypass the proxy', async (t) => {
  const db = await curlIn(pair, pair.pod, ['-H', 'Host: unknown.example', `http://${pair.peerIp}:5432/`], { uid: APP_UID });
  t.equal(db.status, 200, `port 5432 is skipped: ${db.stderr}`);
  t.equal(seen(db.body).server, 'peer-db');
  const cidr = await curlIn(pair, pair.pod, ['-H', 'Host: unknown.example', `http://${skippedIp}:8080/`], { uid: APP_UID });
  t.equal(cidr.status, 200, `${skippedIp}/32 is skipped: ${cidr.stderr}`);
  t.equal(seen(cidr.body).server, 'peer');
  // Control: the same request to a non-skipped address is intercepted (404 from the proxy).
  const control = await curlIn(pair, pair.pod, ['-H', 'Host: unknown.example', `http://${pair.peerIp}:8080/`], { uid: APP_UID });
  t.equal(control.status, 404);
});

t.test('loopback: the app talking to itself (127.0.0.1 or its own pod IP) is left alone', async (t) => {
  for (const [addr, remote] of [
    ['127.0.0.1', '127.0.0.1'],
    [pair.podIp, pair.podIp],
  ] as const) {
    const r = await curlIn(pair, pair.pod, [`http://${addr}:8080/self`], { uid: APP_UID });
    t.equal(r.status, 200, `${addr}: ${r.stderr}`);
    const s = seen(r.body);
    t.equal(s.server, 'app');
    t.equal(s.remote, remote, `${addr}: a direct connection`);
    t.equal(s.headers['traceparent'], undefined, `${addr}: no proxy hop`);
  }
  await new Promise((r) => setTimeout(r, 200));
  t.notOk(proxy.accessLog().some((l) => l.path === '/self'), 'the proxy saw none of it');
});

t.test('inbound: a client in another namespace reaches the app through the proxy', async (t) => {
  const r = await curlIn(pair, pair.peer, [`http://${pair.podIp}:8080/in`]);
  t.equal(r.status, 200, r.stderr + r.body);
  const s = seen(r.body);
  t.equal(s.server, 'app');
  t.equal(s.remote, '127.0.0.1', 'the app sees the proxy (loopback), not the client');
  t.type(s.headers['traceparent'], 'string', 'the proxy added its trace context');
  await proxy.waitForLog((l) => l.direction === 'inbound' && l.path === '/in');
});

t.test("inbound: skipped ports and the proxy's admin port are not redirected", async (t) => {
  const debug = await curlIn(pair, pair.peer, [`http://${pair.podIp}:9000/`]);
  t.equal(debug.status, 200, debug.stderr);
  t.equal(seen(debug.body).server, 'app-debug');
  t.equal(seen(debug.body).remote, pair.peerIp, 'port 9000 is skipped: a direct connection');
  const ready = await curlIn(pair, pair.peer, [`http://${pair.podIp}:4191/ready`]);
  t.equal(ready.status, 200, ready.stderr);
  t.notMatch(ready.body, /"server"/, "the proxy's admin server answered, not the app");
});
