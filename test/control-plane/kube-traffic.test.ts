// The canary as a platform engineer runs it, end to end on real parts: a real kube-apiserver holds
// Services and EndpointSlices whose endpoints are real HTTP servers in a network namespace this
// test creates (EndpointSlices refuse loopback addresses); the control plane watches that API
// server; a proxy gets its identity and config from the control plane; `kubectl apply` of a
// TrafficSplit moves real traffic. 10 000 requests follow 90/10 within ±2 %; a 50/50 edit under
// load applies within a second with no failed request; deleting the split falls back to the
// apex Service's own endpoints; adding and removing an endpoint in an EndpointSlice is followed.
import { spawn, type ChildProcess } from 'node:child_process';
import t from 'tap';
import { startKube, type Kube } from '../fixtures/kube.ts';
import { identityArgs, startControlPlane } from '../fixtures/control-plane.ts';
import { load, pool, startProxyProcess } from '../fixtures/mesh.ts';
import { createHostNetns } from '../fixtures/netns.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;

/** One process in the namespace serving HTTP on every address: the body names the address that answered. */
async function serveIn(ns: string, addrs: string[], port: number): Promise<ChildProcess> {
  const code = `const http = require('node:http');
    let up = 0;
    for (const a of ${JSON.stringify(addrs)}) http.createServer((q, s) => s.end(a)).listen(${port}, a, () => { if (++up === ${addrs.length}) console.log('listening'); });`;
  const c = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    c.stdout!.once('data', () => resolve());
    c.once('exit', (x) => reject(new Error(`servers in ${ns} exited ${x}: ${err}`)));
  });
  return c;
}

const PORT = 8080;

const split = (w1: number, w2: number): string => `apiVersion: meshlet.io/v1alpha1
kind: TrafficSplit
metadata: { name: api-canary }
spec:
  service: api
  backends:
    - { service: api-v1, weight: ${w1} }
    - { service: api-v2, weight: ${w2} }
`;

/** Which server answered (its body is its address). */
const classify = (body: string): string => body;

t.test('kubectl-applied TrafficSplit moves real traffic: 90/10 ±2 % over 10 000, 50/50 under load, delete, EndpointSlice scaling', async (t) => {
  const ns = createHostNetns(4, 'mlkt');
  t.teardown(() => ns.remove());
  const [v1a, v2, apexOnly, v1b] = ns.addrs as [string, string, string, string];
  const servers = await serveIn(ns.name, ns.addrs, PORT);
  t.teardown(() => void servers.kill('SIGKILL'));

  const kube: Kube = await startKube();
  t.teardown(() => kube.stop());
  const applied = await kube.kubectl(['apply', '--server-side', '-f', CRDS]);
  t.equal(applied.code, 0, `CRDs applied ${applied.stderr}`);
  await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io']);
  const shop = await kube.newNamespace('shop');

  const apply = async (yaml: string): Promise<void> => {
    for (let i = 0; ; i++) {
      const r = await kube.kubectl(['apply', '-n', shop, '-f', '-'], { input: yaml });
      if (r.code === 0) return;
      // Right after Established, the CRD's storage may answer 429 for a moment.
      if (i > 30) throw new Error(`kubectl apply failed: ${r.stderr}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  };
  const service = (name: string) => `apiVersion: v1
kind: Service
metadata: { name: ${name} }
spec: { ports: [{ name: http, port: 80, targetPort: ${PORT} }] }
---
`;
  const slice = (svc: string, addrs: string[]) => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${svc}-1, labels: { kubernetes.io/service-name: ${svc} } }
addressType: IPv4
ports: [{ name: http, port: ${PORT}, protocol: TCP }]
endpoints:
${addrs.map((a) => `  - { addresses: ["${a}"], conditions: { ready: true } }`).join('\n')}
---
`;
  // The apex `api` has endpoints of its own (as a selector over both versions would give it):
  // one server only it has, so the test can tell when traffic goes to the apex.
  await apply(service('api') + service('api-v1') + service('api-v2') + slice('api', [apexOnly]) + slice('api-v1', [v1a]) + slice('api-v2', [v2]));

  const cp = await startControlPlane({ args: ['--kubeconfig', kube.kubeconfigPath] });
  t.teardown(() => cp.stop());
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => proxy.stop());
  const p = pool(proxy.outboundUrl, 16);
  t.teardown(() => p.close());
  const host = `api.${shop}.svc.cluster.local`;
  const burst = (count: number, concurrency = 16) => load(p, { count, concurrency, host, classify, timeoutMs: 60_000 });
  /** Polls with small bursts until `ok` holds for one (bounded: 10 s); returns the time it took. */
  const until = async (what: string, ok: (r: Awaited<ReturnType<typeof burst>>) => boolean): Promise<number> => {
    const t0 = performance.now();
    for (;;) {
      const r = await burst(20, 4);
      if (ok(r)) return performance.now() - t0;
      if (performance.now() - t0 > 10_000) throw new Error(`${what}: not within 10 s; last burst ${JSON.stringify([...r.bodies])} statuses ${JSON.stringify([...r.statuses])} errors ${r.errors.slice(0, 3).join('; ')}\n${cp.stderr().slice(-2000)}`);
    }
  };

  // Before any split: the apex's own endpoint answers.
  await until('the apex Service reaches the proxy', (r) => r.bodies.get(apexOnly) === 20);

  // 90/10 over 10 000 requests.
  await apply(split(90, 10));
  const tookSplit = await until('the 90/10 split applies', (r) => !r.bodies.has(apexOnly) && (r.bodies.get(v1a) ?? 0) > 0);
  t.ok(tookSplit < 1500, `the split applied ${Math.round(tookSplit)} ms after kubectl apply returned`);
  const n = await burst(10_000, 32);
  t.equal(n.sent, 10_000);
  t.same(n.errors, [], 'no request failed');
  t.equal(n.statuses.get(200), 10_000, 'every request 200');
  const share2 = (n.bodies.get(v2) ?? 0) / 10_000;
  t.ok(Math.abs(share2 - 0.1) <= 0.02, `api-v2 got ${(share2 * 100).toFixed(2)} % (90/10 split, ±2 %)`);

  // 50/50 while requests flow: none fails, and the proxy runs the new weights within a second
  // of kubectl apply returning (read from its admin /config, as `meshlet proxy-config` does).
  const during = burst(4000, 8);
  await new Promise((r) => setTimeout(r, 300));
  await apply(split(50, 50));
  const t50 = performance.now();
  for (;;) {
    const running = JSON.stringify(await (await fetch(`${proxy.adminUrl}/config`)).json());
    if (/"weight":50\b/.test(running)) break;
    if (performance.now() - t50 > 10_000) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const took50 = performance.now() - t50;
  t.ok(took50 < 1000, `the proxy runs 50/50 ${Math.round(took50)} ms after kubectl apply returned (under load)`);
  const d = await during;
  t.same(d.errors, [], 'no request failed during the change');
  t.equal(d.statuses.get(200), d.sent, `all ${d.sent} requests during the change answered 200`);
  const after = await burst(2000, 16);
  const s2 = (after.bodies.get(v2) ?? 0) / 2000;
  t.ok(Math.abs(s2 - 0.5) <= 0.05, `after the change api-v2 gets ${(s2 * 100).toFixed(1)} % (50/50 over 2000)`);

  // A second v1 endpoint in the slice: it takes traffic. Then the first one leaves: no failure.
  await apply(slice('api-v1', [v1a, v1b]));
  await until('the added endpoint takes traffic', (r) => (r.bodies.get(v1b) ?? 0) > 0);
  const removing = burst(2000, 8);
  await new Promise((r) => setTimeout(r, 200));
  await apply(slice('api-v1', [v1b]));
  const rm = await removing;
  t.same(rm.errors, [], 'no request failed while an endpoint was removed');
  t.equal(rm.statuses.get(200), rm.sent, 'every request 200 while an endpoint was removed');
  await until('the removed endpoint gets nothing', (r) => !r.bodies.has(v1a) && (r.bodies.get(v1b) ?? 0) > 0);

  // Delete the split: the apex's own endpoints again.
  const del = await kube.kubectl(['delete', '-n', shop, 'trafficsplit', 'api-canary']);
  t.equal(del.code, 0, `kubectl delete ${del.stderr}`);
  const tookDelete = await until('the apex answers after the split is deleted', (r) => r.bodies.get(apexOnly) === 20);
  t.ok(tookDelete < 1500, `split deletion followed in ${Math.round(tookDelete)} ms`);
});
