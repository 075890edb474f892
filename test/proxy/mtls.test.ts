// Mutual TLS between real proxies with identities from a real control plane: the caller's
// identity reaches the server side, strict ports refuse plaintext and foreign certificates at the
// handshake, a server with the wrong identity or a certificate the mesh does not trust is refused by
// the outbound side (saying why), and authorization sees the peer.
import t from 'tap';
import tls from 'node:tls';
import net from 'node:net';
import { request, Pool } from 'undici';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { importSecret, initCa, issueLeaf, parseSpiffeId } from '../../control-plane/ca/index.ts';
import { makeCsr, newKeyPair } from '../../proxy/identity/csr.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocketServer, WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { closedAfter, startUpstream, startProxyProcess, metricValue, type ProxyProcess, type Upstream } from '../fixtures/mesh.ts';
import { startControlPlane, identityArgs, type ControlPlane } from '../fixtures/control-plane.ts';

const TD = 'spiffe://cluster.local';
const WEB = `${TD}/ns/shop/sa/web`;
const API = `${TD}/ns/shop/sa/api`;

let cp: ControlPlane;
let app: Upstream;
let server: ProxyProcess;
let client: ProxyProcess;

t.before(async () => {
  cp = await startControlPlane();
  app = await startUpstream((req, res) => {
    req.resume();
    res.end(`hello ${req.url}`);
  });
  server = await startProxyProcess({
    config: {
      version: 's1',
      services: [],
      inbound: { defaultPolicy: 'all-authenticated', policies: [{ name: 'api-read', rules: [{ identities: [WEB], methods: ['GET'], paths: ['/api/*'] }] }] },
    },
    appPort: app.port,
    workload: 'api',
    args: identityArgs(cp, 'shop', 'api'),
  });
  client = await startProxyProcess({
    config: {
      version: 'c1',
      services: [
        { name: 'api', endpoints: [{ address: `127.0.0.1:${server.inboundPort}`, identity: API }] },
        { name: 'impostor', endpoints: [{ address: `127.0.0.1:${server.inboundPort}`, identity: `${TD}/ns/shop/sa/billing` }] },
      ],
    },
    workload: 'web',
    args: identityArgs(cp, 'shop', 'web'),
  });
});
t.teardown(async () => {
  await client?.stop();
  await server?.stop();
  await app?.close();
  await cp?.stop();
});

t.test('a request crosses two proxies over mTLS; the server side sees the caller', async (t) => {
  const r = await request(`${client.outboundUrl}/api/items`, { headers: { host: 'api' } });
  t.equal(r.statusCode, 200);
  t.equal(await r.body.text(), 'hello /api/items');
  const ready = (await (await fetch(`${client.adminUrl}/ready`)).json()) as { identity: { identity: string } };
  t.equal(ready.identity.identity, WEB, 'the client proxy holds the web identity');
  await new Promise((r) => setTimeout(r, 250));
  const log = server.stdout().trim().split('\n').map((l) => JSON.parse(l) as { peer: string; path: string; direction: string; upstream: string });
  t.ok(log.some((l) => l.direction === 'inbound' && l.peer === WEB && l.path === '/api/items'), 'inbound access log names the peer');
  t.ok(log.some((l) => l.direction === 'inbound' && l.path === '/api/items' && l.upstream === `127.0.0.1:${app.port}`), 'and the app address it went to');
  const m = await server.metrics();
  t.ok(metricValue(m, 'meshlet_requests_total', { direction: 'inbound', src_identity: WEB, tls: 'true' }) >= 1, 'inbound metrics carry the peer identity and tls=true');
  const cm = await client.metrics();
  t.ok(metricValue(cm, 'meshlet_requests_total', { direction: 'outbound', dst_service: 'api', tls: 'true' }) >= 1, 'outbound metrics say tls=true');
  t.ok(metricValue(cm, 'meshlet_identity_leaf_expiry_timestamp_seconds', { identity: WEB }) > Date.now() / 1000, 'leaf expiry exported');
});

t.test('authorization uses the peer identity: GET /api/* allowed, POST and other paths denied', async (t) => {
  const before = app.hits;
  const post = await request(`${client.outboundUrl}/api/items`, { method: 'POST', headers: { host: 'api' }, body: 'x' });
  t.equal(post.statusCode, 403);
  t.equal(post.headers['meshlet-proxy-error'], 'forbidden');
  t.match(await post.body.text(), new RegExp(`no rule of api-read allows ${WEB} to POST /api/items`));
  const other = await request(`${client.outboundUrl}/admin`, { headers: { host: 'api' } });
  await other.body.text();
  t.equal(other.statusCode, 403, 'another path is denied');
  t.equal(app.hits, before, 'denied requests never reached the app');
});

/** One request through the client proxy with its target exactly as given (undici and fetch resolve dot segments first). */
function rawRequest(target: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(client.outboundPort, '127.0.0.1', () => s.write(`GET ${target} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n`));
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('error', () => resolve(got));
    s.on('close', () => resolve(got));
  });
}

t.test('a path rule is not bypassed with dot segments: /api/* does not let in /api/../admin, sent raw or percent-encoded', async (t) => {
  const before = app.hits;
  for (const target of ['/api/../admin', '/api/%2e%2e/admin', '/api/.%2E/admin', '/api/x/../../admin', '/api/..%2Fadmin', '/api/..\\admin']) {
    const r = await rawRequest(target);
    t.match(r, /^HTTP\/1\.1 403 /, `${target}: 403`);
    t.match(r, /meshlet-proxy-error: forbidden\r\n/, `${target}: forbidden`);
    t.match(r, /resolved: \/admin/, `${target}: the reason names the path the app would resolve`);
  }
  t.equal(app.hits, before, 'none reached the app (a WHATWG-URL router would have served /admin)');
  const inside = await rawRequest('/api/x/../items');
  t.match(inside, /^HTTP\/1\.1 200 /, 'a dot segment that stays under /api/ is still allowed');
  t.match(inside, /hello \/api\/x\/\.\.\/items/, 'and the app gets the target as sent');
  await new Promise((r) => setTimeout(r, 250));
  const log = server.stdout().trim().split('\n').map((l) => JSON.parse(l) as { path: string; status: number; error: string });
  t.ok(log.some((l) => l.path === '/api/%2e%2e/admin' && l.status === 403 && l.error === 'forbidden'), 'the access log shows the refusal with the path as sent');
});

t.test('the outbound side refuses a server presenting another identity', async (t) => {
  const r = await request(`${client.outboundUrl}/api/x`, { headers: { host: 'impostor' } });
  t.equal(r.statusCode, 502);
  t.equal(r.headers['meshlet-proxy-error'], 'identity-mismatch');
  t.match(await r.body.text(), /expected the endpoint to be spiffe:\/\/cluster.local\/ns\/shop\/sa\/billing, it presented spiffe:\/\/cluster.local\/ns\/shop\/sa\/api/);
});

t.test("an endpoint whose certificate the mesh does not trust: tls-failed, saying why in the mesh's words, not Node's hint", async (t) => {
  // TLS servers standing in for endpoints that should be API: each presents a certificate the
  // client proxy must refuse. The proxy checks it against the trust bundle only.
  const keys = newKeyPair();
  const key = keys.privateKey.export({ type: 'pkcs8', format: 'pem' });
  const other = initCa({ now: Date.now() });
  const foreign = issueLeaf(other, { csrPem: makeCsr(keys), identity: parseSpiffeId(API), now: Date.now(), ttlMs: 600_000 });
  const state = JSON.parse(readFileSync(cp.caFile, 'utf8')) as Record<string, unknown>;
  delete state['bootstrapTokenKey'];
  const issuerFrom = new X509Certificate((state['issuer'] as { certPem: string }).certPem).validFromDate.getTime();
  const expired = issueLeaf(importSecret(state), { csrPem: makeCsr(keys), identity: parseSpiffeId(API), now: issuerFrom + 1000, ttlMs: 1000 });
  const cases: Array<[string, string, RegExp]> = [
    ['foreign-chain', foreign.certPem + foreign.chainPems.join(''), /the endpoint's certificate is not signed by the mesh's trust bundle \(UNABLE_TO_GET_ISSUER_CERT_LOCALLY\)/],
    ['foreign-leaf', foreign.certPem, /the endpoint's certificate is not signed by the mesh's trust bundle \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/],
    ['self-signed', selfSigned(keys.privateKey), /the endpoint's certificate is self-signed, not signed by the mesh's trust bundle \(DEPTH_ZERO_SELF_SIGNED_CERT\)/],
    ['expired', expired.certPem + expired.chainPems.join(''), /a certificate the endpoint presented has expired \(CERT_HAS_EXPIRED\)/],
  ];
  const servers = await Promise.all(cases.map(async ([, cert]) => {
    const s = tls.createServer({ key, cert, minVersion: 'TLSv1.3' }, (c) => c.destroy());
    s.on('tlsClientError', () => {});
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return s;
  }));
  t.teardown(() => {
    for (const s of servers) s.close();
  });
  const services = cases.map(([name], i) => ({ name, endpoints: [{ address: `127.0.0.1:${(servers[i]!.address() as AddressInfo).port}`, identity: API }], retry: { attempts: 1 } }));
  client.writeConfig({ version: 'c-untrusted', services: [
    { name: 'api', endpoints: [{ address: `127.0.0.1:${server.inboundPort}`, identity: API }] },
    { name: 'impostor', endpoints: [{ address: `127.0.0.1:${server.inboundPort}`, identity: `${TD}/ns/shop/sa/billing` }] },
    ...services,
  ] });
  await client.waitForVersion('c-untrusted');
  for (const [name, , why] of cases) {
    const r = await request(`${client.outboundUrl}/x`, { headers: { host: name } });
    const body = await r.body.text();
    t.equal(r.statusCode, 502, `${name}: 502`);
    t.equal(r.headers['meshlet-proxy-error'], 'tls-failed', `${name}: tls-failed`);
    t.match(body, why, `${name}: ${body.trim()}`);
    t.notMatch(body, /use-system-ca|Node\.js/, `${name}: no hint about Node's own CA store`);
  }
  const errors = ((await (await fetch(`${client.adminUrl}/errors`)).json()) as { errors: Array<{ reason: string; service: string; message: string }> }).errors;
  for (const [name, , why] of cases) t.match(errors.find((e) => e.service === name && e.reason === 'tls-failed')?.message, why, `${name}: /errors says the same`);
  t.notMatch(client.stdout() + client.stderr(), /use-system-ca/, "nor do the proxy's logs");
});

/** Open a TLS connection to the strict inbound port; resolve with how it ended. */
function handshake(opts: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: server.inboundPort, rejectUnauthorized: false, minVersion: 'TLSv1.3', ...opts }, () => {
      // TLS 1.3: the server verifies the client certificate after the client's Finished; send a
      // request and see whether an HTTP answer comes back.
      s.write('GET /api/x HTTP/1.1\r\nHost: api\r\n\r\n');
    });
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('error', (e: Error & { code?: string }) => resolve(`error:${e.code ?? e.message}`));
    s.on('close', () => resolve(got ? `response:${got.split('\r\n')[0]}` : 'closed'));
    setTimeout(() => {
      s.destroy();
      resolve(got ? `response:${got.split('\r\n')[0]}` : 'timeout');
    }, 3000);
  });
}

t.test('strict inbound: no client certificate, a foreign CA, an expired leaf and plaintext are refused at the handshake', async (t) => {
  const before = app.hits;
  t.notMatch(await handshake({}), /^response:/, 'no client certificate: no HTTP response');
  // A self-signed certificate with a SPIFFE ID from a CA the bundle does not hold.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const foreign = selfSigned(privateKey);
  t.notMatch(await handshake({ key: privateKey.export({ type: 'pkcs8', format: 'pem' }), cert: foreign }), /^response:/, 'foreign CA: no HTTP response');
  // A leaf from the mesh's own CA for the right identity, but expired.
  const state = JSON.parse(readFileSync(cp.caFile, 'utf8')) as Record<string, unknown>;
  delete state['bootstrapTokenKey'];
  const ca = importSecret(state);
  const keys = newKeyPair();
  // The issuer was made a moment ago (backdated a minute): sign "then", for one second.
  const issuerFrom = new X509Certificate((state['issuer'] as { certPem: string }).certPem).validFromDate.getTime();
  const expired = issueLeaf(ca, { csrPem: makeCsr(keys), identity: parseSpiffeId(WEB), now: issuerFrom + 1000, ttlMs: 1000 });
  t.ok(expired.notAfterMs < Date.now(), 'the leaf is expired');
  t.notMatch(await handshake({ key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), cert: expired.certPem + expired.chainPems.join('') }), /^response:/, 'expired leaf: no HTTP response');
  const plain = await new Promise<string>((resolve) => {
    const s = net.connect(server.inboundPort, '127.0.0.1', () => s.write('GET /api/x HTTP/1.1\r\nHost: api\r\n\r\n'));
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('error', () => resolve(got || 'reset'));
    s.on('close', () => resolve(got || 'closed'));
  });
  t.notMatch(plain, /^HTTP/, 'plaintext to a strict port gets no HTTP response');
  t.equal(app.hits, before, 'nothing reached the app');
  const m = await server.metrics();
  t.ok(metricValue(m, 'meshlet_tls_handshake_failures_total', { direction: 'inbound', reason: 'plaintext-on-strict-port' }) >= 1, 'plaintext refusal counted by reason');
  t.ok(metricValue(m, 'meshlet_tls_handshake_failures_total', { direction: 'inbound' }) >= 4, 'every refusal counted');
  t.ok(metricValue(m, 'meshlet_tls_handshake_failures_total', { direction: 'inbound', reason: 'CERT_HAS_EXPIRED' }) >= 1, 'the expired leaf counted as CERT_HAS_EXPIRED');
});

t.test('a connection that sends nothing or never finishes its handshake is closed after 10 s; an idle mTLS connection is not', async (t) => {
  const silent = net.connect(server.inboundPort, '127.0.0.1');
  const partial = net.connect(server.inboundPort, '127.0.0.1', () => partial.write(Buffer.from([0x16, 0x03, 0x01])));
  // A mesh leaf for web, valid now: one request, then the connection stays open and idle.
  const state = JSON.parse(readFileSync(cp.caFile, 'utf8')) as Record<string, unknown>;
  delete state['bootstrapTokenKey'];
  const keys = newKeyPair();
  const leaf = issueLeaf(importSecret(state), { csrPem: makeCsr(keys), identity: parseSpiffeId(WEB), now: Date.now(), ttlMs: 600_000 });
  const mtls = tls.connect({ host: '127.0.0.1', port: server.inboundPort, rejectUnauthorized: false, minVersion: 'TLSv1.3', key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), cert: leaf.certPem + leaf.chainPems.join('') });
  let got = '';
  mtls.on('data', (d) => (got += d.toString()));
  const ask = async (): Promise<string> => {
    got = '';
    mtls.write('GET /api/idle HTTP/1.1\r\nHost: api\r\n\r\n');
    for (let i = 0; i < 100 && !got.includes('hello /api/idle'); i++) await new Promise((r) => setTimeout(r, 20));
    return got.split('\r\n')[0] ?? '';
  };
  await new Promise<void>((r) => mtls.once('secureConnect', () => r()));
  t.equal(await ask(), 'HTTP/1.1 200 OK', 'the mTLS connection is answered');
  const [silentMs, partialMs] = await Promise.all([closedAfter(silent, 20_000), closedAfter(partial, 20_000)]);
  t.ok(silentMs >= 9_000 && silentMs < 13_000, `a connection that sends nothing is closed after ~10 s (${silentMs} ms)`);
  t.ok(partialMs >= 9_000 && partialMs < 13_000, `a ClientHello that never completes is closed after ~10 s (${partialMs} ms)`);
  t.equal(await ask(), 'HTTP/1.1 200 OK', 'the established mTLS connection, idle meanwhile, still works');
  mtls.destroy();
  t.ok(metricValue(await server.metrics(), 'meshlet_tls_handshake_failures_total', { direction: 'inbound', reason: 'handshake-timeout' }) >= 2, 'counted as handshake-timeout');
});

/** A self-signed leaf with a SPIFFE URI SAN, made with openssl (a CA the mesh does not trust). */
function selfSigned(key: import('node:crypto').KeyObject): string {
  const keyFile = join(mkdtempSync(join(tmpdir(), 'meshlet-foreign-')), 'key.pem');
  writeFileSync(keyFile, key.export({ type: 'pkcs8', format: 'pem' }));
  const out = execFileSync('openssl', ['req', '-x509', '-new', '-key', keyFile, '-subj', '/CN=web', '-days', '1', '-addext', `subjectAltName=URI:${WEB}`], { encoding: 'utf8' });
  rmSync(keyFile);
  if (!new X509Certificate(out).subjectAltName?.includes(WEB)) throw new Error('openssl made no usable certificate');
  return out;
}

t.test('a permissive port accepts plaintext from unmeshed clients (and mTLS still works)', async (t) => {
  const cfg = (permissive: boolean, version: string) => ({
    version,
    services: [],
    inbound: { ports: [{ port: app.port, permissive }], defaultPolicy: 'all' },
  });
  server.writeConfig(cfg(true, 's-permissive'));
  await server.waitForVersion('s-permissive');
  const plain = await request(`http://127.0.0.1:${server.inboundPort}/plain`, { headers: { host: 'api' } });
  t.equal(plain.statusCode, 200, 'plaintext answered on a permissive port');
  t.equal(await plain.body.text(), 'hello /plain');
  const viaMesh = await request(`${client.outboundUrl}/api/y`, { headers: { host: 'api' } });
  t.equal(viaMesh.statusCode, 200, 'mTLS still works on the same port');
  await viaMesh.body.text();
  await new Promise((r) => setTimeout(r, 250));
  const log = server.stdout().trim().split('\n').map((l) => JSON.parse(l) as { peer: string; path: string });
  t.equal(log.find((l) => l.path === '/plain')?.peer, '', 'the plaintext request has no peer identity');
  t.equal(log.find((l) => l.path === '/api/y')?.peer, WEB, 'the mTLS one has its peer');
  // A plaintext connection opened (and used) while the port was permissive, to try an upgrade once it is strict.
  const held = net.connect(server.inboundPort, '127.0.0.1');
  let heldText = '';
  held.on('data', (c: Buffer) => (heldText += c.toString('latin1')));
  held.write('GET /held HTTP/1.1\r\nhost: api\r\n\r\n');
  for (let i = 0; i < 100 && !heldText.includes('hello /held'); i++) await new Promise((r) => setTimeout(r, 20));
  t.match(heldText, /^HTTP\/1\.1 200/, 'a plaintext keep-alive connection while permissive');
  server.writeConfig(cfg(false, 's-strict'));
  await server.waitForVersion('s-strict');
  const before = app.hits;
  const strictBefore = metricValue(await server.metrics(), 'meshlet_authz_decisions_total', { policy: 'strict-mtls', decision: 'deny' });
  heldText = '';
  const heldClosed = new Promise((r) => held.once('close', r));
  held.write('GET /ws HTTP/1.1\r\nhost: api\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
  await Promise.race([heldClosed, new Promise((r) => setTimeout(r, 3000))]);
  held.destroy();
  t.match(heldText, /^HTTP\/1\.1 403 Forbidden\r\n/, 'a plaintext upgrade on that connection is refused once the port is strict, as a plain request is (was: forwarded to the app)');
  t.match(heldText, /accepts only mTLS/);
  t.equal(metricValue(await server.metrics(), 'meshlet_authz_decisions_total', { policy: 'strict-mtls', decision: 'deny' }), strictBefore + 1, 'counted as the same decision a plain request gets');
  // The keep-alive connection accepted while permissive gets no more requests through...
  const reused = await request(`http://127.0.0.1:${server.inboundPort}/plain`, { headers: { host: 'api' } });
  t.equal(reused.statusCode, 403, 'a plaintext request on an old connection is refused');
  t.equal(reused.headers['meshlet-proxy-error'], 'forbidden');
  t.match(await reused.body.text(), /accepts only mTLS/);
  // ...and a new plaintext connection is refused at the handshake.
  const fresh = new Pool(`http://127.0.0.1:${server.inboundPort}`);
  const refused = await fresh.request({ path: '/plain', method: 'GET', headers: { host: 'api' } }).then(
    (r) => `status ${r.statusCode}`,
    (e: Error & { code?: string }) => e.code ?? e.message,
  );
  await fresh.destroy();
  t.notMatch(refused, /^status/, `a new plaintext connection gets no HTTP response (${refused})`);
  t.equal(app.hits, before, 'nothing reached the app');
});

t.test('a WebSocket crosses the two proxies over mTLS; to a server presenting another identity it is refused', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  const seen: Array<string | undefined> = [];
  wss.on('connection', (ws, req) => {
    seen.push(req.headers['meshlet-dst-port'] as string | undefined);
    ws.on('message', (m) => ws.send(`echo:${m.toString()}`));
  });
  const appPort = (wss.address() as AddressInfo).port;
  const wsServer = await startProxyProcess({ config: { version: 'ws-s1', services: [], inbound: { defaultPolicy: 'all-authenticated' } }, appPort, workload: 'chat', args: identityArgs(cp, 'shop', 'chat') });
  const wsClient = await startProxyProcess({
    config: {
      version: 'ws-c1',
      services: [
        { name: 'chat', endpoints: [{ address: `127.0.0.1:${wsServer.inboundPort}`, identity: `${TD}/ns/shop/sa/chat` }] },
        { name: 'chat-impostor', endpoints: [{ address: `127.0.0.1:${wsServer.inboundPort}`, identity: `${TD}/ns/shop/sa/billing` }] },
      ],
    },
    workload: 'web',
    args: identityArgs(cp, 'shop', 'web'),
  });
  t.teardown(async () => {
    await wsClient.stop();
    await wsServer.stop();
    wss.close();
  });
  const open = (host: string) => {
    const ws = new WebSocket(`ws://127.0.0.1:${wsClient.outboundPort}/chat`, { headers: { host } });
    return new Promise<WebSocket>((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`${res.statusCode} ${String(res.headers['meshlet-proxy-error'])}`)));
      ws.once('error', reject);
    });
  };
  const ws = await open('chat');
  const got = new Promise<string>((resolve) => ws.once('message', (m) => resolve(m.toString())));
  ws.send('hi');
  t.equal(await got, 'echo:hi', 'echoed through outbound → mTLS → inbound → app');
  ws.close();
  t.same(seen, [undefined], 'meshlet-dst-port is used by the inbound proxy, never passed to the app');
  const m = await wsServer.metrics();
  t.ok(metricValue(m, 'meshlet_tcp_connections_total', { direction: 'inbound' }) >= 1, 'the inbound proxy accepted it');
  await t.rejects(open('chat-impostor'), /502 identity-mismatch/, 'another identity: 502 identity-mismatch, nothing reaches the app');
  t.equal(seen.length, 1);
});

t.test('a path rule with * anywhere but at the end is refused with its path; the policy in force stays', async (t) => {
  const before = ((await (await fetch(`${server.adminUrl}/config`)).json()) as { version: string }).version;
  server.writeConfig({ version: 's-bad-path', services: [], inbound: { policies: [{ name: 'p', rules: [{ identities: ['*'], paths: ['/api/*/admin'] }] }] } });
  let body: { version: string; lastRefusal: string | null } = { version: '', lastRefusal: null };
  for (let i = 0; i < 100 && !body.lastRefusal; i++) {
    await new Promise((r) => setTimeout(r, 50));
    body = (await (await fetch(`${server.adminUrl}/config`)).json()) as typeof body;
  }
  t.match(JSON.stringify(body.lastRefusal), /\/inbound\/policies\/0\/rules\/0\/paths\/0.*allowed only at the end/, 'refused, naming the field and the rule');
  t.equal(body.version, before, 'the config in force is unchanged');
});
