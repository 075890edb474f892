// Hosts outside the mesh, with real iptables: an injected app's plain-HTTP call to a host no
// Service names (a partner's API, by name or by IP) is redirected to the proxy, which passes it
// through to that host, as Istio's ALLOW_ANY and Linkerd do, because the injector turns
// passthrough on by default. HTTP/1.1, HTTP/2 (h2c) and a WebSocket upgrade; the proxy resolves the
// name as the app would have (the pod namespace's /etc/hosts). What it never passes through: a
// single-label name or one under .svc (a Service the config lacks), a loopback host, its own ports.
// A Pod with config.meshlet.io/outbound-passthrough: "false" gets the 404 no-route of before.
import t from 'tap';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { inject, type PodLike } from '../../injector/inject.ts';
import { defaultSettings } from '../../injector/settings.ts';
import { createNetnsPair, curlIn, plainEnv, requireTools, startProxyIn, startServerIn, type NetnsPair, type NetnsProxy, type Seen } from '../fixtures/netns.ts';

requireTools(['ip', 'iptables', 'iptables-save', 'iptables-restore', 'setpriv', 'curl']);

const SCRIPT = fileURLToPath(new URL('../../proxy/intercept/intercept.sh', import.meta.url));
const APP_UID = 1001;
const PARTNER = 'api.partner.example';
/** The partner by another name, first called when the pod's DNS server is silent (no pooled connection yet). */
const PARTNER_ALIAS = 'www.partner.example';
/** A name the pod's resolver maps to 127.0.0.1. */
const LOOPING = 'loop.partner.example';

/** The partner's HTTP/2 (h2c) server on 8081 and a WebSocket-style echo on 8082 (101, then echo). */
const PEER_JS = `
const http2 = require('node:http2');
const http = require('node:http');
http2.createServer((req, res) => res.end(JSON.stringify({ server: 'partner-h2', authority: req.headers[':authority'], path: req.url }))).listen(8081, '0.0.0.0', () =>
  http.createServer((req, res) => res.end('no upgrade')).on('upgrade', (req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\\r\\nupgrade: websocket\\r\\nconnection: upgrade\\r\\n\\r\\n');
    socket.on('data', (d) => socket.write('echo:' + d));
    socket.on('end', () => socket.end()); // node:http's sockets are half-open: close with the client, as a WebSocket server does
  }).listen(8082, '0.0.0.0', () => process.stdout.write('listening\\n')));
`;

/** In the pod: an Upgrade request to host:port with the given Host, then "ping"; prints what came back within 3 s. */
const UPGRADE_CLIENT_JS = `
const net = require('node:net');
const [ip, port, host] = process.argv.slice(1);
const s = net.connect(Number(port), ip, () => s.write('GET /ws HTTP/1.1\\r\\nhost: ' + host + '\\r\\nupgrade: websocket\\r\\nconnection: upgrade\\r\\n\\r\\n'));
let got = '';
s.on('data', (d) => { got += d; if (got.includes('\\r\\n\\r\\n') && !got.includes('ping')) s.write('ping'); if (got.includes('echo:ping')) { process.stdout.write(got); process.exit(0); } });
s.on('error', (e) => { process.stdout.write('error ' + e.code); process.exit(0); });
setTimeout(() => { process.stdout.write(got || 'nothing within 3 s'); process.exit(0); }, 3000);
`;

/** The injected containers' environment for a Pod with `annotations`: meshlet-init's and meshlet-proxy's. */
function injectedEnv(annotations: Record<string, string>): { init: Record<string, string>; proxy: Record<string, string> } {
  const pod: PodLike = { metadata: { name: 'web-1', namespace: 'shop', annotations }, spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }] } };
  const r = inject(pod, defaultSettings({ trustAnchorsPem: '-----BEGIN CERTIFICATE-----' }));
  const containers = r.patch.flatMap((op) => ('value' in op ? (Array.isArray(op.value) ? op.value : [op.value]) : [])) as Array<{ name?: string; env?: Array<{ name: string; value?: string }> }>;
  const envOf = (name: string) => {
    const c = containers.find((x) => x?.name === name);
    if (!c?.env) throw new Error(`no ${name} in the patch: ${JSON.stringify(r)}`);
    return Object.fromEntries(c.env.map((e) => [e.name, e.value ?? '']));
  };
  return { init: envOf('meshlet-init'), proxy: envOf('meshlet-proxy') };
}

let pair: NetnsPair;
let proxy: NetnsProxy | undefined;
let etcDir: string;

/** meshlet-init's rules and a proxy with the passthrough setting the injector gives a Pod with these annotations. */
async function meshPod(annotations: Record<string, string>): Promise<string> {
  await proxy?.stop();
  const env = injectedEnv(annotations);
  const r = await pair.exec(pair.pod, [SCRIPT], { env: plainEnv(env.init) });
  if (r.code !== 0) throw new Error(`intercept.sh failed: ${r.stderr}`);
  const passthrough = env.proxy['MESHLET_OUTBOUND_PASSTHROUGH'];
  if (passthrough === undefined) throw new Error('the injector set no MESHLET_OUTBOUND_PASSTHROUGH');
  proxy = await startProxyIn(pair, pair.pod, {
    config: { version: 'v1', services: [] },
    env: { MESHLET_OUTBOUND_PASSTHROUGH: passthrough },
    args: ['--outbound-listen', '127.0.0.1:4140', '--inbound-listen', '0.0.0.0:4143', '--admin-listen', '0.0.0.0:4191', '--app', '127.0.0.1:8080', '--workload', 'web', '--namespace', 'shop'],
  });
  return passthrough;
}

type LogLine = ReturnType<NetnsProxy['accessLog']>[number] & { dst_service?: string };

t.before(async () => {
  pair = await createNetnsPair('mlpass');
  // `ip netns exec` mounts /etc/netns/<ns>/* over /etc: the pod's resolver knows the partner by
  // name (the proxy resolves it, as the app would have) and has no DNS server (an unknown name fails at once).
  etcDir = `/etc/netns/${pair.pod}`;
  mkdirSync(etcDir, { recursive: true });
  writeFileSync(`${etcDir}/hosts`, `127.0.0.1 localhost\n::1 localhost\n${pair.peerIp} ${PARTNER} ${PARTNER_ALIAS}\n127.0.0.1 ${LOOPING}\n`);
  writeFileSync(`${etcDir}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
  await startServerIn(pair, pair.peer, '0.0.0.0', 8080, 'partner');
  const p = pair.spawn(pair.peer, [process.execPath, '--input-type=commonjs', '-e', PEER_JS]);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the partner h2c/upgrade server did not listen within 10 s')), 10_000);
    p.stdout!.on('data', (c: Buffer) => c.toString().includes('listening') && (clearTimeout(timer), resolve()));
    p.once('exit', (code) => reject(new Error(`the partner h2c/upgrade server exited ${code}`)));
  });
});

t.teardown(async () => {
  await proxy?.stop();
  await pair?.cleanup();
  if (etcDir) rmSync(etcDir, { recursive: true, force: true });
});

t.test("the injector's default: a host outside the mesh is reached through the proxy", async (t) => {
  t.equal(await meshPod({}), 'true', 'the injector turns passthrough on by default');
  const r = await curlIn(pair, pair.pod, [`http://${PARTNER}:8080/orders?id=7`], { uid: APP_UID });
  t.equal(r.status, 200, `the partner answered: ${r.stderr} ${r.body}`);
  const seen = JSON.parse(r.body) as Seen;
  t.equal(seen.server, 'partner');
  t.equal(seen.url, '/orders?id=7');
  t.equal(seen.headers['host'], `${PARTNER}:8080`, 'Host goes on as sent');
  t.ok(seen.headers['traceparent'], 'through the proxy (it propagates a trace context), not around it');
  await proxy!.waitForLog((l) => l.path === '/orders');
  const line = proxy!.accessLog().find((l) => l.path === '/orders') as LogLine;
  t.equal(line.dst_service, 'passthrough');
  t.equal(line.upstream, `${PARTNER}:8080`, 'the proxy resolved the name itself');

  const byIp = await curlIn(pair, pair.pod, [`http://${pair.peerIp}:8080/by-ip`], { uid: APP_UID });
  t.equal(byIp.status, 200, 'by IP too');
  t.equal((JSON.parse(byIp.body) as Seen).url, '/by-ip');

  const h2 = await curlIn(pair, pair.pod, ['--http2-prior-knowledge', `http://${PARTNER}:8081/grpc-ish`], { uid: APP_UID });
  t.equal(h2.status, 200, `HTTP/2 (h2c) too: ${h2.stderr}`);
  t.same(JSON.parse(h2.body), { server: 'partner-h2', authority: `${PARTNER}:8081`, path: '/grpc-ish' });

  const up = await pair.exec(pair.pod, [process.execPath, '--input-type=commonjs', '-e', UPGRADE_CLIENT_JS, pair.peerIp, '8082', `${PARTNER}:8082`], { uid: APP_UID });
  t.match(up.stdout, /^HTTP\/1\.1 101 /, `an upgrade passes through: ${up.stdout}`);
  t.match(up.stdout, /echo:ping/, 'and the tunnel carries bytes both ways');

  const metrics = await curlIn(pair, pair.pod, ['http://127.0.0.1:4191/metrics']);
  t.match(metrics.body, /meshlet_requests_total\{[^}]*dst_service="passthrough"[^}]*\} [1-9]/, 'counted under dst_service="passthrough" (one series for every host)');
  t.notMatch(metrics.body, new RegExp(`dst_service="${PARTNER.replace(/\./g, '\\.')}`), 'the host is no label value');
});

t.test('what is never passed through gets a 404 no-route that says why', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['orders', /single-label name means a Service of the cluster/],
    ['orders.shop.svc.cluster.local', /cluster Service name/],
    ['localhost:8080', /loopback/],
    // The loopback address by a name, or spelled so that only getaddrinfo or an IPv6 parse sees it.
    [`${LOOPING}:8080`, /it resolves to 127\.0\.0\.1, a loopback address/],
    ['127.1:8080', /it resolves to 127\.0\.0\.1, a loopback address/],
    ['0x7f.1:8080', /it resolves to 127\.0\.0\.1, a loopback address/],
    ['[0::1]:8080', /loopback/],
    ['[::ffff:7f00:1]:8080', /loopback/],
    [`${PARTNER}:4191`, /port 4191 is one of this proxy's own/],
    [`${pair.podIp}:4143`, /is this proxy's own \(it would call itself\)/],
  ];
  for (const [host, why] of cases) {
    const r = await curlIn(pair, pair.pod, ['-H', `Host: ${host}`, `http://${pair.peerIp}:8080/`], { uid: APP_UID });
    t.equal(r.status, 404, host);
    t.equal(r.headers['meshlet-proxy-error'], 'no-route', host);
    t.match(r.body, why, host);
  }
  const unknown = await curlIn(pair, pair.pod, ['-H', 'Host: nowhere.example', `http://${pair.peerIp}:8080/`], { uid: APP_UID });
  t.equal(unknown.status, 502, `a name that does not resolve: ${unknown.body}`);
  t.equal(unknown.headers['meshlet-proxy-error'], 'connect-failed');
  t.match(unknown.body, /nowhere\.example/, 'the error names the host');
});

t.test('a DNS server that does not answer: the requests for one name share one lookup, and other names are not held up', async (t) => {
  // A server that takes the pod's DNS queries and never answers, and a resolver that waits 8 s for
  // it: each lookup outlives the 5 s connect timeout. The proxy resolves with getaddrinfo on libuv's
  // 4 threads; a name in /etc/hosts needs one of them too.
  const dns = pair.spawn(pair.pod, [process.execPath, '-e', "require('node:dgram').createSocket('udp4').bind(53, '127.0.0.1', () => process.stdout.write('listening\\n'))"]);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the silent DNS server did not listen within 10 s')), 10_000);
    dns.stdout!.on('data', (c: Buffer) => c.toString().includes('listening') && (clearTimeout(timer), resolve()));
  });
  writeFileSync(`${etcDir}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:8 attempts:1\n');
  t.teardown(() => {
    writeFileSync(`${etcDir}/resolv.conf`, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    dns.kill();
  });
  const slow = Array.from({ length: 6 }, () => curlIn(pair, pair.pod, ['-m', '20', '-H', 'Host: api.slow.example', `http://${pair.peerIp}:8080/`], { uid: APP_UID }));
  await new Promise((r) => setTimeout(r, 300));
  const start = Date.now();
  const good = await curlIn(pair, pair.pod, ['-m', '20', `http://${PARTNER_ALIAS}:8080/during`], { uid: APP_UID });
  t.equal(good.status, 200, `a name in /etc/hosts is served meanwhile: ${good.body}`);
  t.ok(Date.now() - start < 2000, `at once (${Date.now() - start} ms), not after the slow lookups`);
  for (const r of await Promise.all(slow)) t.ok(r.status === 502 || r.status === 504, `the unanswered name fails (${r.status} ${r.headers['meshlet-proxy-error']})`);
});

t.test('config.meshlet.io/outbound-passthrough: "false": a host outside the mesh is a 404, as before', async (t) => {
  t.equal(await meshPod({ 'config.meshlet.io/outbound-passthrough': 'false' }), 'false');
  const r = await curlIn(pair, pair.pod, [`http://${PARTNER}:8080/orders`], { uid: APP_UID });
  t.equal(r.status, 404);
  t.equal(r.headers['meshlet-proxy-error'], 'no-route');
  t.match(r.body, /no service for host "api\.partner\.example"/);
});
