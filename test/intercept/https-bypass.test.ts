// An injected app's own HTTPS, databases and mail, with real iptables: the rules meshlet-init
// installs from what the injector writes (its default: outbound 443 and the database and mail
// ports bypass the proxy) let curl's https:// call to a peer on 443 go out directly and succeed,
// and a server-first protocol (MySQL's port) and a binary client-first one (PostgreSQL's) reach
// their peer, and so does a plain-HTTP call to a cloud metadata server (link-local 169.254.169.254).
// A Pod that replaces the default sends 443 through the proxy, which proxies plaintext HTTP (HTTP/1.1 and HTTP/2) only: its TLS
// handshake then fails at once, and the proxy logs why.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { inject, type PodLike } from '../../injector/inject.ts';
import { defaultSettings } from '../../injector/settings.ts';
import { createNetnsPair, curlIn, plainEnv, requireTools, startProxyIn, type NetnsPair, type NetnsProxy } from '../fixtures/netns.ts';

requireTools(['ip', 'iptables', 'iptables-save', 'iptables-restore', 'setpriv', 'curl', 'openssl']);

const SCRIPT = fileURLToPath(new URL('../../proxy/intercept/intercept.sh', import.meta.url));
const APP_UID = 1001;

const HTTPS_JS = `
const https = require('node:https');
const fs = require('node:fs');
const [host, port, cert, key] = process.argv.slice(1);
https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  req.resume();
  req.on('end', () => res.end(JSON.stringify({ server: 'peer-https', remote: req.socket.remoteAddress })));
}).listen(Number(port), host, () => process.stdout.write('listening\\n'));
`;

/**
 * A peer's database stand-ins: on 3306 the server speaks first (a MySQL greeting), on 5432 the
 * client does (PostgreSQL's SSLRequest, 8 binary bytes) and the server echoes what it got; on 53
 * a DNS server over TCP echoes too.
 */
const DB_JS = `
const net = require('node:net');
const echo = (name) => (s) => s.once('data', (d) => s.end(name + ' got ' + d.toString('hex') + '\\n'));
net.createServer((s) => s.end('greeting from mysql\\n')).listen(3306, '0.0.0.0', () =>
  net.createServer(echo('postgres')).listen(5432, '0.0.0.0', () =>
    net.createServer(echo('dns')).listen(53, '0.0.0.0', () => process.stdout.write('listening\\n'))));
`;

/** A client in the pod: connect to host:port, send hex bytes unless empty, print what comes back within 3 s. */
const DB_CLIENT_JS = `
const net = require('node:net');
const [host, port, hex] = process.argv.slice(1);
const s = net.connect(Number(port), host, () => { if (hex) s.write(Buffer.from(hex, 'hex')); });
let got = '';
s.on('data', (d) => { got += d; });
s.on('error', (e) => { process.stdout.write('error ' + e.code); process.exit(0); });
s.on('close', () => { process.stdout.write(got); process.exit(0); });
setTimeout(() => { process.stdout.write(got || 'nothing within 3 s'); process.exit(0); }, 3000);
`;

/** The environment the injector gives meshlet-init for a Pod with `annotations`. */
function initEnv(annotations: Record<string, string>): Record<string, string> {
  const pod: PodLike = { metadata: { name: 'web-1', namespace: 'shop', annotations }, spec: { containers: [{ name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }] }] } };
  const r = inject(pod, defaultSettings({ trustAnchorsPem: '-----BEGIN CERTIFICATE-----' }));
  const containers = r.patch.flatMap((op) => ('value' in op ? (Array.isArray(op.value) ? op.value : [op.value]) : [])) as Array<{ name?: string; env?: Array<{ name: string; value?: string }> }>;
  const init = containers.find((c) => c?.name === 'meshlet-init');
  if (!init?.env) throw new Error(`no meshlet-init in the patch: ${JSON.stringify(r)}`);
  return Object.fromEntries(init.env.map((e) => [e.name, e.value ?? '']));
}

/** Start `js` (CommonJS) with node in `ns`; resolves once it prints `listening` (it is killed with the pair, or by `t`'s teardown). */
async function startListening(t: Test | undefined, ns: string, js: string, args: readonly string[], what: string): Promise<void> {
  const p = pair.spawn(ns, [process.execPath, '--input-type=commonjs', '-e', js, ...args]);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not listen within 10 s`)), 10_000);
    p.stdout!.on('data', (c: Buffer) => c.toString().includes('listening') && (clearTimeout(timer), resolve()));
    p.once('exit', (code) => reject(new Error(`${what} exited ${code}`)));
  });
  t?.teardown(() => { p.kill('SIGKILL'); });
}

let pair: NetnsPair;
let proxy: NetnsProxy;
let dir: string;

/** Install the rules meshlet-init would for a Pod with these annotations (rewrites the earlier ones). */
async function intercept(annotations: Record<string, string>): Promise<Record<string, string>> {
  const env = initEnv(annotations);
  const r = await pair.exec(pair.pod, [SCRIPT], { env: plainEnv(env) });
  if (r.code !== 0) throw new Error(`intercept.sh failed: ${r.stderr}`);
  return env;
}

t.before(async () => {
  pair = await createNetnsPair('mlhttps');
  dir = mkdtempSync(join(tmpdir(), 'meshlet-https-'));
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=api.example', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { encoding: 'utf8' });
  if (gen.status !== 0) throw new Error(`openssl: ${gen.stderr}`);
  await startListening(undefined, pair.peer, HTTPS_JS, ['0.0.0.0', '443', join(dir, 'cert.pem'), join(dir, 'key.pem')], 'the HTTPS server');
  proxy = await startProxyIn(pair, pair.pod, {
    config: { version: 'v1', services: [] },
    args: ['--outbound-listen', '127.0.0.1:4140', '--inbound-listen', '0.0.0.0:4143', '--admin-listen', '0.0.0.0:4191', '--app', '127.0.0.1:8080', '--workload', 'web', '--namespace', 'shop'],
  });
});

t.teardown(async () => {
  await proxy?.stop();
  await pair?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

t.test("the injector's default: the app's https:// call to port 443 goes around the proxy and works", async (t) => {
  const env = await intercept({});
  t.equal(env.MESHLET_SKIP_OUTBOUND_PORTS, '25,443,587,3306,4444,5432,6379,9300,11211');
  const r = await curlIn(pair, pair.pod, ['-k', '--resolve', `api.example:443:${pair.peerIp}`, 'https://api.example/'], { uid: APP_UID });
  t.equal(r.status, 200, `HTTPS works: ${r.stderr}`);
  t.same(JSON.parse(r.body), { server: 'peer-https', remote: pair.podIp }, 'straight from the pod, not through the proxy');
  t.notOk(proxy.accessLog().some((l) => l.error === 'unsupported-protocol'), 'the proxy saw none of it');
});

t.test('a Pod whose skip-outbound-ports leaves 443 out: its TLS reaches the proxy and fails at once, logged with the server name', async (t) => {
  const env = await intercept({ 'config.meshlet.io/skip-outbound-ports': '5432' });
  t.equal(env.MESHLET_SKIP_OUTBOUND_PORTS, '5432', 'the annotation replaces the default');
  const started = performance.now();
  const r = await curlIn(pair, pair.pod, ['-k', '--resolve', `api.example:443:${pair.peerIp}`, 'https://api.example/'], { uid: APP_UID });
  const ms = performance.now() - started;
  t.equal(r.code, 35, `curl: TLS handshake failed (exit 35): ${r.stderr}`);
  t.match(r.stderr, /alert handshake failure/);
  t.ok(ms < 2000, `in ${Math.round(ms)} ms, not after a 30 s head timeout`);
  await proxy.waitForLog((l) => l.error === 'unsupported-protocol' && l.authority === 'api.example');
  t.pass('the proxy logged it as unsupported-protocol with the server name');
});

t.test("the injector's default: the app's MySQL (server speaks first) and PostgreSQL (binary) connections go around the proxy and work; DNS over TCP always does", async (t) => {
  await startListening(t, pair.peer, DB_JS, [], 'the database stand-ins');
  const client = (port: number, hex: string) => pair.exec(pair.pod, [process.execPath, '--input-type=commonjs', '-e', DB_CLIENT_JS, pair.peerIp, String(port), hex], { uid: APP_UID });
  const sslRequest = '0000000804d2162f';

  await intercept({});
  const mysql = await client(3306, '');
  t.equal(mysql.stdout, 'greeting from mysql\n', `the server's greeting reaches the app: ${mysql.stderr}`);
  const pg = await client(5432, sslRequest);
  t.equal(pg.stdout, `postgres got ${sslRequest}\n`, `the binary request reaches the server and its answer comes back: ${pg.stderr}`);

  // The same calls from a Pod that replaced the default: both reach the HTTP proxy and fail.
  await intercept({ 'config.meshlet.io/skip-outbound-ports': '443' });
  t.equal((await client(3306, '')).stdout, 'nothing within 3 s', 'through the proxy a server-first protocol gets no greeting');
  t.match((await client(5432, sslRequest)).stdout, /^HTTP\/1\.1 400 /, 'through the proxy a binary protocol gets an HTTP 400');

  // DNS over TCP (a resolver's retry of a truncated answer) never goes to the proxy, whatever the list says.
  const query = '001d00000100000100000000000003777777076578616d706c650000010001'; // length, header, A www.example
  for (const ports of ['', '443']) {
    await intercept({ 'config.meshlet.io/skip-outbound-ports': ports });
    const dns = await client(53, query);
    t.equal(dns.stdout, `dns got ${query}\n`, `skip-outbound-ports ${JSON.stringify(ports)}: a DNS query over TCP reaches the server: ${dns.stderr}`);
  }
});

t.test("the injector's default: a call to the cloud metadata server (169.254.169.254, plain HTTP) goes around the proxy and works", async (t) => {
  // The peer answers as a metadata server on the link-local address; the pod routes it over the veth.
  for (const [ns, argv] of [[pair.peer, ['ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'eth0']], [pair.pod, ['ip', 'route', 'add', '169.254.169.254/32', 'dev', 'eth0']]] as const) {
    const r = await pair.exec(ns, argv);
    t.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
  }
  const META_JS = `require('node:http').createServer((q, s) => s.end('metadata for ' + q.headers['metadata-flavor'])).listen(80, '169.254.169.254', () => process.stdout.write('listening\\n'));`;
  await startListening(t, pair.peer, META_JS, [], 'the metadata stand-in');
  const call = () => curlIn(pair, pair.pod, ['-H', 'Metadata-Flavor: Google', 'http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token'], { uid: APP_UID });

  const env = await intercept({ 'config.meshlet.io/skip-outbound-cidrs': '10.0.0.0/8' });
  t.equal(env.MESHLET_SKIP_OUTBOUND_CIDRS, '169.254.0.0/16,10.0.0.0/8', 'the default, and the annotation adds to it');
  const direct = await call();
  t.equal(direct.status, 200, `the SDK's credentials call works: ${direct.stderr}`);
  t.equal(direct.body, 'metadata for Google');

  // Without the default (as before), the call reached the proxy, which knows no such service.
  const r = await pair.exec(pair.pod, [SCRIPT], { env: plainEnv({ ...env, MESHLET_SKIP_OUTBOUND_CIDRS: '' }) });
  t.equal(r.code, 0, r.stderr);
  const proxied = await call();
  t.equal(proxied.status, 404, 'through the proxy: 404');
  t.equal(proxied.headers['meshlet-proxy-error'], 'no-route');
});
