// Certificates change under load without losing a request: two proxies with mTLS carry steady
// traffic while leaves renew every few seconds, while the issuer is rotated, and while the trust
// anchor is rotated step by step (add → bundle reaches every proxy → use → remove).
import t from 'tap';
import { startUpstream, startProxyProcess, pool, metricValue, type ProxyProcess, type Upstream } from '../fixtures/mesh.ts';
import { startControlPlane, identityArgs, type ControlPlane } from '../fixtures/control-plane.ts';
import type { Pool } from 'undici';

const API = 'spiffe://cluster.local/ns/shop/sa/api';
// Short leaves so renewals happen during the test (the CA's longest leaf; anchor removal waits this long).
const LEAF_TTL = '6s';

let cp: ControlPlane;
let app: Upstream;
let server: ProxyProcess;
let client: ProxyProcess;
let http: Pool;

t.before(async () => {
  cp = await startControlPlane({ leafTtl: LEAF_TTL, reloadInterval: '300ms' });
  app = await startUpstream();
  server = await startProxyProcess({ config: { version: 'r1', services: [], inbound: { defaultPolicy: 'all-authenticated' } }, appPort: app.port, workload: 'api', args: identityArgs(cp, 'shop', 'api') });
  client = await startProxyProcess({ config: { version: 'r1', services: [{ name: 'api', endpoints: [{ address: `127.0.0.1:${server.inboundPort}`, identity: API }] }] }, workload: 'web', args: identityArgs(cp, 'shop', 'web') });
  http = pool(client.outboundUrl, 8);
});
t.teardown(async () => {
  await http?.close();
  await client?.stop();
  await server?.stop();
  await app?.close();
  await cp?.stop();
});

/** Steady load (8 in flight, bounded by time) while `during` runs; returns non-200 outcomes. */
async function underLoad(during: () => Promise<void>): Promise<{ ok: number; failures: string[] }> {
  const run = { stopped: false };
  let ok = 0;
  const failures: string[] = [];
  const deadline = Date.now() + 60_000;
  const worker = async () => {
    while (!run.stopped && Date.now() < deadline) {
      try {
        const r = await http.request({ path: '/', method: 'GET', headers: { host: 'api' } });
        await r.body.text();
        if (r.statusCode === 200) ok++;
        else failures.push(`${r.statusCode} ${String(r.headers['meshlet-proxy-error'] ?? '')}`);
      } catch (e) {
        failures.push((e as Error).message);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const workers = Array.from({ length: 8 }, worker);
  try {
    await during();
  } finally {
    run.stopped = true;
    await Promise.all(workers);
  }
  return { ok, failures };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Poll `get` until it equals `want` (JSON) or `ms` passes; returns the last value. */
async function eventually<T>(get: () => Promise<T>, want: T, ms: number): Promise<T> {
  const end = Date.now() + ms;
  let v = await get();
  while (JSON.stringify(v) !== JSON.stringify(want) && Date.now() < end) {
    await sleep(100);
    v = await get();
  }
  return v;
}
interface Status {
  anchors: Array<{ role: string; serial: string }>;
  issuer: { subject: string };
}
const status = () => JSON.parse(cp.identity('status', '-o', 'json')) as Status;
const held = async (p: ProxyProcess) => ((await (await fetch(`${p.adminUrl}/ready`)).json()) as { identity: { issuer: string; bundleSerials: string[] } }).identity;
const renewals = async (p: ProxyProcess) => metricValue(await p.metrics(), 'meshlet_identity_renewals_total', { result: 'ok' });

t.test('leaves renew every few seconds under load: 0 failed requests', async (t) => {
  const before = [await renewals(client), await renewals(server)];
  const r = await underLoad(() => sleep(9000));
  t.same(r.failures, [], `no failures (${r.ok} ok)`);
  t.ok(r.ok > 500, `traffic flowed (${r.ok})`);
  t.ok((await renewals(client)) - before[0]! >= 2, 'the client proxy renewed at least twice');
  t.ok((await renewals(server)) - before[1]! >= 2, 'the server proxy renewed at least twice');
});

t.test('issuer rotation under load: 0 failed requests, new leaves come from the new issuer', async (t) => {
  const r = await underLoad(async () => {
    await sleep(500);
    cp.identity('rotate-issuer');
    await sleep(7000); // every leaf renewed at least once under the new issuer
  });
  t.same(r.failures, [], `no failures (${r.ok} ok)`);
  const issuer = status().issuer.subject;
  t.equal((await held(client)).issuer, issuer, 'the client proxy holds a leaf from the new issuer');
  t.equal((await held(server)).issuer, issuer, 'so does the server proxy');
});

t.test('anchor rotation under load, step by step: 0 failed requests', async (t) => {
  const oldAnchor = status().anchors.find((a) => a.role === 'current')!.serial;
  let newAnchor = '';
  const r = await underLoad(async () => {
    cp.identity('add-anchor');
    newAnchor = status().anchors.find((a) => a.role === 'next')!.serial;
    // The new anchor reaches every proxy in the bundle of its next leaf (within one renewal).
    await sleep(6500);
    t.same((await held(client)).bundleSerials.toSorted(), [oldAnchor, newAnchor].toSorted(), 'after add-anchor, proxies trust both anchors');
    cp.identity('use-anchor');
    // Leaves now chain to the new anchor; peers still trust the old one. Wait one leaf TTL.
    await sleep(6500);
    cp.identity('remove-anchor');
    await sleep(6500);
  });
  t.same(r.failures, [], `no failures (${r.ok} ok)`);
  t.ok(r.ok > 1000, `traffic flowed (${r.ok})`);
  // The bundle the proxies hold now has exactly the new anchor: a fresh request still works.
  const again = await http.request({ path: '/', method: 'GET', headers: { host: 'api' } });
  await again.body.text();
  t.equal(again.statusCode, 200);
  // Each proxy drops the old anchor with its next leaf (within one renewal period, ~4 s here).
  t.same(await eventually(async () => (await held(client)).bundleSerials, [newAnchor], 8000), [newAnchor], 'after remove-anchor, the client trusts only the new anchor');
  t.same(await eventually(async () => (await held(server)).bundleSerials, [newAnchor], 8000), [newAnchor], 'and so does the server');
});
