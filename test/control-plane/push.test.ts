// The config stream between a real control plane (in this process, with a scripted view) and a
// real proxy process: versioned pushes applied within a second, ACKs in status, a refused version
// NACKed with the last good config kept, and the control plane killed under load and restarted:
// no failed request, resync after restart.
import t, { type Test } from 'tap';
import { Registry } from 'prom-client';
import { Pool } from 'undici';
import { systemClock } from '../../api/runtime.ts';
import type { ProxyConfig } from '../../api/proxy-config.ts';
import type { ControlPlane as Cp } from '../../control-plane/control-plane.ts';
import { ConfigPushServer } from '../../control-plane/config/push-server.ts';
import { startUpstream, startProxyProcess, freePort, metricValue, type Upstream, type ProxyProcess } from '../fixtures/mesh.ts';
import { caWithWebToken, startInProcessControlPlane } from '../fixtures/control-plane.ts';
import { execFile } from 'node:child_process';
import https from 'node:https';
import { importSecret, issueLeaf, parseSpiffeId } from '../../control-plane/ca/index.ts';
import { makeCsr, newKeyPair } from '../../proxy/identity/csr.ts';
import { CONFIG_ACK_PATH, DELTA_BASE_PATH, encodeParams, type StreamMessage } from '../../api/config-stream.ts';
import { fileURLToPath } from 'node:url';

const MESHLET = fileURLToPath(new URL('../../bin/meshlet.ts', import.meta.url));

/** Runs the CLI asynchronously: the control plane answering it runs in this process. */
const run = (...args: string[]) =>
  new Promise<{ status: number | null; stdout: string }>((resolve) =>
    execFile(process.execPath, [MESHLET, ...args], { encoding: 'utf8', timeout: 20_000 }, (err, stdout) => resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout })),
  );
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { proxyArgv } from '../../proxy/launch.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-push-'));
const { caFile, anchors, token } = caWithWebToken(dir);

/** The view every proxy gets: scripted by the test. */
let view: ProxyConfig;
const cfg = (version: string, address: string): ProxyConfig => ({ version, services: [{ name: 'api', endpoints: [{ address }] }] });

let port = 0;
let push: ConfigPushServer;
let registry: Registry;
let cp: Cp | undefined;

async function startControlPlane(): Promise<void> {
  registry = new Registry();
  push = new ConfigPushServer({ views: { view: () => ({ version: view.version, config: view }) }, clock: systemClock, registry });
  cp = await startInProcessControlPlane({ caFile, port, push, registry });
}

async function stopControlPlane(): Promise<void> {
  push.close();
  await cp?.close();
  cp = undefined;
}

let a: Upstream;
let b: Upstream;
let proxy: ProxyProcess;

t.before(async () => {
  port = await freePort();
  a = await startUpstream();
  b = await startUpstream();
  view = cfg('v1', a.address);
  await startControlPlane();
  proxy = await startProxyProcess({
    config: {},
    args: ['--control-plane', `https://127.0.0.1:${port}`, '--trust-anchors', anchors, '--bootstrap-token-file', token, '--namespace', 'shop', '--pod', 'web-0', '--refuse-config-version', '^bad-'],
    workload: 'web',
    configFromControlPlane: true,
  });
});
t.teardown(async () => {
  await proxy?.stop();
  await stopControlPlane();
  await Promise.all([a?.close(), b?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/** A view of 40 services (the first at `firstAddress`): changing one makes a delta far smaller than the view. */
const big = (version: string, firstAddress: string): ProxyConfig => ({
  version,
  services: Array.from({ length: 40 }, (_, i) => ({ name: `svc-${String(i).padStart(2, '0')}.shop`, hosts: [`svc-${i}`], endpoints: [{ address: i === 0 ? firstAddress : `127.0.0.1:${10_000 + i}` }] })),
});
const pushed = async (kind: string) => metricValue(await registry.metrics(), 'meshlet_cp_pushes_total', { kind });

const get = async (pool: Pool) => {
  const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'api' } });
  await r.body.text();
  return r.statusCode;
};

t.test('the first version arrives, is applied and ACKed', async (t) => {
  await proxy.waitForVersion('v1');
  const pool = new Pool(proxy.outboundUrl);
  t.equal(await get(pool), 200);
  t.equal(a.hits, 1, 'routed by the streamed config');
  await pool.close();
  const s = push.status();
  t.equal(s.length, 1);
  t.equal(s[0]!.identity, 'spiffe://cluster.local/ns/shop/sa/web', 'the stream is authenticated by the proxy certificate');
  t.equal(s[0]!.workload, 'web');
  t.equal(s[0]!.pod, 'web-0');
  for (let i = 0; i < 50 && s[0]!.acked !== 'v1'; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(push.status()[0]!.acked, 'v1', 'ACKed');
});

t.test('a change reaches the proxy within a second; an unchanged view is not re-sent', async (t) => {
  const pushesBefore = push.status()[0]!.sent;
  push.changed(); // nothing changed
  await new Promise((r) => setTimeout(r, 300));
  t.equal(push.status()[0]!.sent, pushesBefore, 'no push without a change');
  view = cfg('v2', b.address);
  const t0 = Date.now();
  push.changed();
  await proxy.waitForVersion('v2', 1000);
  t.ok(Date.now() - t0 < 1000, `applied in ${Date.now() - t0} ms`);
  const pool = new Pool(proxy.outboundUrl);
  t.equal(await get(pool), 200);
  t.equal(b.hits, 1, 'the next request follows the new version');
  await pool.close();
});

t.test('a refused version is NACKed with its reason and the last good config stays', async (t) => {
  view = cfg('bad-1', a.address);
  push.changed();
  let s = push.status()[0]!;
  for (let i = 0; i < 100 && !s.nack; i++) {
    await new Promise((r) => setTimeout(r, 20));
    s = push.status()[0]!;
  }
  t.equal(s.nack?.version, 'bad-1', 'NACK reported in status');
  t.match(s.nack?.reason, /refused by test hook/);
  t.equal(s.acked, 'v2', 'the acked version is still the last good one');
  const c = (await (await fetch(`${proxy.adminUrl}/config`)).json()) as { version: string };
  t.equal(c.version, 'v2', 'the proxy still runs v2');
  const pool = new Pool(proxy.outboundUrl);
  const before = b.hits;
  t.equal(await get(pool), 200);
  t.equal(b.hits, before + 1, 'and still serves with it');
  await pool.close();
  // What an operator sees: `meshlet proxy-status` exits 1 and names the refusal.
  const r = await run('proxy-status', '--admin', `http://127.0.0.1:${cp!.admin.port}`);
  t.equal(r.status, 1, 'proxy-status exits 1 while a proxy refuses its config');
  t.match(r.stdout, /shop\/web-0\s+spiffe:\/\/cluster.local\/ns\/shop\/sa\/web\s+bad-1\s+v2\s+\S+\s+bad-1: \/version: refused by test hook/, 'the table row: proxy, identity, sent, acked, last ACK, NACK reason');
  const cfgOut = await run('proxy-config', proxy.adminUrl);
  t.equal(cfgOut.status, 0);
  t.equal((JSON.parse(cfgOut.stdout) as { version: string }).version, 'v2', 'proxy-config shows the version the proxy runs');
});

t.test('after a refusal, a revert to the config the proxy runs is sent, ACKed, and the NACK is no longer reported', async (t) => {
  // As a folder edited back: the view is v2 again (a content hash would name it v2 again too).
  const refusedAt = push.status()[0]!.lastAckAt;
  view = cfg('v2', b.address);
  push.changed();
  let s = push.status()[0]!;
  for (let i = 0; i < 100 && s.lastAckAt === refusedAt; i++) {
    await new Promise((r) => setTimeout(r, 20));
    s = push.status()[0]!;
  }
  t.equal(s.sent, 'v2', 'the control plane re-sends v2 (it had sent bad-1)');
  t.not(s.lastAckAt, refusedAt, 'the proxy ACKs it again');
  t.equal(s.acked, 'v2');
  t.equal(s.nack, null, 'the refusal of bad-1 is no longer reported');
  const r = await run('proxy-status', '--admin', `http://127.0.0.1:${cp!.admin.port}`);
  t.equal(r.status, 0, 'proxy-status exits 0: every proxy runs what it was sent');
  t.match(r.stdout, /shop\/web-0\s+\S+\s+v2\s+v2\s+\S+\s+-\n/, 'the row: sent v2, acked v2, no NACK');
});

t.test('control plane killed under load: 0 failed requests; restarted: resync within a second', async (t) => {
  view = cfg('v3', b.address);
  push.changed();
  await proxy.waitForVersion('v3', 2000);
  const pool = new Pool(proxy.outboundUrl, { connections: 8 });
  const run = { stopped: false };
  let ok = 0;
  const failures: number[] = [];
  const workers = Array.from({ length: 8 }, async () => {
    while (!run.stopped) {
      const s = await get(pool);
      if (s === 200) ok++;
      else failures.push(s);
    }
  });
  await new Promise((r) => setTimeout(r, 300));
  await stopControlPlane();
  await new Promise((r) => setTimeout(r, 1500));
  const ready = (await (await fetch(`${proxy.adminUrl}/ready`)).json()) as { ready: boolean; controlPlane: { connected: boolean } };
  t.equal(ready.ready, true, 'still ready (serving the last good config)');
  t.equal(ready.controlPlane.connected, false, 'readiness detail says the control plane is gone');
  t.equal(metricValue(await proxy.metrics(), 'meshlet_control_plane_connected'), 0, 'and the metric');
  view = cfg('v4', a.address);
  await startControlPlane();
  const t0 = Date.now();
  await proxy.waitForVersion('v4', 3000);
  const resync = Date.now() - t0;
  run.stopped = true;
  await Promise.all(workers);
  await pool.close();
  t.same(failures, [], `0 failed requests (${ok} ok)`);
  t.ok(ok > 100, 'traffic flowed throughout');
  t.ok(resync < 1500, `resynced ${resync} ms after the restart`);
});

t.test('large views travel as deltas; after a refusal the next version goes in full', async (t) => {
  const running = async () => (await (await fetch(`${proxy.adminUrl}/config`)).json()) as { version: string; config: ProxyConfig };
  view = big('big-1', a.address);
  push.changed();
  await proxy.waitForVersion('big-1', 2000);
  const deltasBefore = await pushed('delta');
  view = big('big-2', b.address);
  push.changed();
  await proxy.waitForVersion('big-2', 2000);
  t.equal(await pushed('delta'), deltasBefore + 1, 'the change went as a delta');
  t.same((await running()).config, view, 'the proxy runs exactly the full view of big-2');
  const pool = new Pool(proxy.outboundUrl);
  const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'svc-0' } });
  await r.body.text();
  t.equal(r.statusCode, 200, 'and routes by it');
  await pool.close();

  // The proxy refuses bad-3 (a delta), so it still runs big-2; big-4's delta is based on bad-3:
  // the proxy NACKs it (no base) and the control plane sends big-4 in full.
  view = { ...big('bad-3', a.address) };
  push.changed();
  for (let i = 0; i < 100 && push.status()[0]!.nack?.version !== 'bad-3'; i++) await new Promise((res) => setTimeout(res, 20));
  t.equal(push.status()[0]!.nack?.version, 'bad-3', 'bad-3 refused');
  const fullBefore = await pushed('full');
  view = big('big-4', a.address);
  view.services[5]!.endpoints = [{ address: '127.0.0.1:9' }];
  push.changed();
  await proxy.waitForVersion('big-4', 2000);
  t.same((await running()).config, view, 'the proxy runs the full view of big-4');
  t.ok((await pushed('full')) > fullBefore, 'big-4 was (re)sent in full');
  for (let i = 0; i < 50 && push.status()[0]!.acked !== 'big-4'; i++) await new Promise((res) => setTimeout(res, 20));
  t.equal(push.status()[0]!.acked, 'big-4', 'and ACKed');
});

/** A client speaking the stream protocol by hand (real mTLS stream, identity shop/web): what it got, and its answers. */
function handClient(t: Test) {
  const state = JSON.parse(readFileSync(caFile, 'utf8')) as Record<string, unknown>;
  delete state['bootstrapTokenKey'];
  const keys = newKeyPair();
  const leaf = issueLeaf(importSecret(state), { csrPem: makeCsr(keys), identity: parseSpiffeId('spiffe://cluster.local/ns/shop/sa/web'), now: Date.now() });
  const tls = { key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: leaf.certPem + leaf.chainPems.join(''), ca: leaf.bundlePems, checkServerIdentity: () => undefined };
  const got: StreamMessage[] = [];
  let stream = '';
  const req = https.request({ host: '127.0.0.1', port, path: encodeParams({ workload: 'web', namespace: 'not-mine', pod: 'sim-0', services: [], version: '' }), ...tls }, (res) => {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      buf += c;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const m = JSON.parse(buf.slice(0, nl)) as StreamMessage;
        buf = buf.slice(nl + 1);
        if (m.type === 'hello') stream = m.stream;
        else if (m.type !== 'ping') got.push(m);
      }
    });
  });
  req.end();
  t.teardown(() => void req.destroy());
  const nth = async (n: number) => {
    for (let i = 0; i < 100 && got.length < n; i++) await new Promise((r) => setTimeout(r, 20));
    return got[n - 1];
  };
  const ack = (body: object) =>
    new Promise<number>((resolve, reject) => {
      const text = JSON.stringify(body);
      const r = https.request({ host: '127.0.0.1', port, path: CONFIG_ACK_PATH, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }, ...tls }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      r.on('error', reject);
      r.end(text);
    });
  return { stream: () => stream, nth, ack };
}

t.test('a NACK for a missing delta base makes the control plane send the full view at once', async (t) => {
  // The hand-made client keeps the first view, refuses the next (a delta) as "no base", and must
  // then receive that version in full.
  view = big('sim-1', '127.0.0.1:1');
  push.changed();
  await new Promise((r) => setTimeout(r, 300));
  const { stream: streamOf, nth, ack } = handClient(t);
  const first = await nth(1);
  const stream = streamOf();
  t.match(first, { type: 'config', version: 'sim-1' }, 'a new stream starts with the full view');
  t.equal(push.status().find((x) => x.stream === stream)?.namespace, 'shop', "status shows the certificate's namespace, not the one the client claimed");
  t.equal(await ack({ stream, version: 'sim-1', ok: true }), 200);
  view = big('sim-2', '127.0.0.1:2');
  push.changed();
  const second = await nth(2);
  t.match(second, { type: 'delta', version: 'sim-2', base: 'sim-1', remove: [] }, 'the next version is a delta');
  t.equal(second?.type === 'delta' ? second.upsert.length : -1, 1, 'with the one changed service');
  t.equal(await ack({ stream, version: 'sim-2', ok: false, problems: [{ path: DELTA_BASE_PATH, message: 'no base' }] }), 200);
  const third = await nth(3);
  t.match(third, { type: 'config', version: 'sim-2' }, 'after the NACK: the same version, in full');
  t.same(third?.type === 'config' ? third.config : undefined, view, 'exactly the view');
});

t.test('a refusal answered after the version sent since was ACKed is not reported', async (t) => {
  // Each answer is its own POST, so a NACK may arrive after the ACK of the next version.
  view = big('late-1', '127.0.0.1:1');
  push.changed();
  await new Promise((r) => setTimeout(r, 300));
  const { stream: streamOf, nth, ack } = handClient(t);
  t.match(await nth(1), { version: 'late-1' });
  const stream = streamOf();
  const status = () => push.status().find((x) => x.stream === stream)!;
  t.equal(await ack({ stream, version: 'late-1', ok: true }), 200);
  view = big('late-2', '127.0.0.1:2');
  push.changed();
  t.match(await nth(2), { version: 'late-2' });
  view = big('late-3', '127.0.0.1:3');
  push.changed();
  t.match(await nth(3), { version: 'late-3' });
  t.equal(await ack({ stream, version: 'late-3', ok: true }), 200);
  const nacksBefore = metricValue(await registry.metrics(), 'meshlet_cp_nacks_total', { reason: 'services' });
  t.equal(await ack({ stream, version: 'late-2', ok: false, problems: [{ path: '/services/0', message: 'refused' }] }), 200);
  t.equal(metricValue(await registry.metrics(), 'meshlet_cp_nacks_total', { reason: 'services' }), nacksBefore + 1, 'the late refusal is counted');
  t.match(status(), { sent: 'late-3', acked: 'late-3', nack: null }, 'but the status shows the proxy in sync with late-3');
  // A refusal of the version sent is reported, until that version is ACKed.
  view = big('late-4', '127.0.0.1:4');
  push.changed();
  t.match(await nth(4), { version: 'late-4' });
  t.equal(await ack({ stream, version: 'late-4', ok: false, problems: [{ path: '/services/0', message: 'refused' }] }), 200);
  t.match(status(), { sent: 'late-4', acked: 'late-3', nack: { version: 'late-4', reason: '/services/0: refused' } }, 'a refusal of the version sent is reported');
});

t.test('a hello with malformed labels is refused with 400 and what is wrong; nothing is registered', async (t) => {
  const state = JSON.parse(readFileSync(caFile, 'utf8')) as Record<string, unknown>;
  delete state['bootstrapTokenKey'];
  const keys = newKeyPair();
  const leaf = issueLeaf(importSecret(state), { csrPem: makeCsr(keys), identity: parseSpiffeId('spiffe://cluster.local/ns/shop/sa/web'), now: Date.now() });
  const tls = { key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: leaf.certPem + leaf.chainPems.join(''), ca: leaf.bundlePems, checkServerIdentity: () => undefined };
  const get = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const r = https.request({ host: '127.0.0.1', port, path, ...tls }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      r.on('error', reject);
      r.end();
    });
  const hello = encodeParams({ workload: 'web', namespace: 'shop', pod: 'web-9', services: ['web'], version: '' });
  const bad = await get(`${hello}&labels=${encodeURIComponent('app=web,app=other')}`);
  t.equal(bad.status, 400);
  t.match(JSON.parse(bad.body), { error: 'bad-hello', message: /^labels: label app is listed twice/ });
  const huge = await get(`${hello}&labels=${'a=b,'.repeat(3000)}`);
  t.equal(huge.status, 400, 'oversized');
  t.match(JSON.parse(huge.body), { message: /at most 8192/ });
  t.notOk(push.status().some((x) => x.pod === 'web-9'), 'no stream registered');
});

t.test('a proxy whose --pod-labels-file is malformed does not start, and says which line is wrong', async (t) => {
  const file = join(dir, 'labels');
  writeFileSync(file, 'app="web"\napp=web');
  const args = proxyArgv(['--control-plane', `https://127.0.0.1:${port}`, '--trust-anchors', anchors, '--bootstrap-token-file', token, '--pod-labels-file', file, '--admin-listen', '127.0.0.1:0', '--outbound-listen', 'off', '--inbound-listen', 'off']);
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => execFile(process.execPath, args, { encoding: 'utf8', timeout: 20_000 }, (err, _out, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr })));
  t.equal(r.code, 2);
  t.match(r.stderr, `meshlet proxy: --pod-labels-file ${file}: line 2: expected key="value", got "app=web" (want the kubelet's downward-API file of metadata.labels)`);
});
