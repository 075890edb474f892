// A control plane on a real kube-apiserver restarts while its proxy runs, and the API server is
// gone when it comes back (a node upgrade, an apiserver outage): the proxy reconnects and keeps
// the config it runs. A proxy that starts meanwhile (it runs nothing) gets no view at all until
// the Kubernetes source has listed: never an empty one (no services, no policies), which it would
// apply and turn ready on. Once the API server is back, both get the cluster as it is then.
import t from 'tap';
import { spawn } from 'node:child_process';
import { HTTPROUTE_CRD, serviceYaml, startKube } from '../fixtures/kube.ts';
import { identityArgs, startControlPlane } from '../fixtures/control-plane.ts';
import { startProxyProcess, type ProxyProcess } from '../fixtures/mesh.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;

interface Running {
  version: string;
  config: { services: Array<{ name: string; endpoints: Array<{ address: string }>; routes?: unknown[] }> };
}
interface StreamStatus {
  stream: string;
  sent: string | null;
}
const has = (r: Running, name: string) => r.config.services.some((s) => s.name === name && s.endpoints.length === 1);
/** The HTTPRoute's split of `name` (to api-v2) is in the proxy's config. */
const routed = (r: Running, name: string) => JSON.stringify(r.config.services.find((s) => s.name === name)?.routes ?? []).includes('api-v2');
const running = async (p: ProxyProcess): Promise<Running> => (await (await fetch(`${p.adminUrl}/config`)).json()) as Running;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a control plane restarted while the API server is down keeps resuming proxies on their config and gives new ones none until it has listed', async (t) => {
  const kube = await startKube();
  t.teardown(() => kube.stop());
  const applied = await kube.kubectl(['apply', '--server-side', '-f', CRDS]);
  t.equal(applied.code, 0, `CRDs applied ${applied.stderr}`);
  t.equal((await kube.kubectl(['apply', '-f', '-'], { input: JSON.stringify(HTTPROUTE_CRD) })).code, 0, 'HTTPRoute CRD applied');
  await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io', 'crd/httproutes.gateway.networking.k8s.io']);
  const shop = await kube.newNamespace('shop');
  const apply = async (yaml: string): Promise<void> => {
    for (let i = 0; ; i++) {
      const r = await kube.kubectl(['apply', '-n', shop, '-f', '-'], { input: yaml });
      if (r.code === 0) return;
      if (i > 30) throw new Error(`kubectl apply failed: ${r.stderr}`);
      await sleep(200);
    }
  };
  await apply(serviceYaml('api', '10.1.0.1') + '---\n' + serviceYaml('api-v2', '10.1.0.3'));
  await apply(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: api }
spec:
  parentRefs: [{ group: "", kind: Service, name: api }]
  rules: [{ backendRefs: [{ name: api, port: 80, weight: 90 }, { name: api-v2, port: 80, weight: 10 }] }]
`);

  const cp = await startControlPlane({ args: ['--kubeconfig', kube.kubeconfigPath] });
  t.teardown(() => cp.stop());
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => proxy.stop());
  const api = `api.${shop}`;
  const db = `db.${shop}`;
  for (let i = 0; !(has(await running(proxy), api) && routed(await running(proxy), api)); i++) {
    if (i > 200) throw new Error(`the proxy never got ${api} and its HTTPRoute:\n${cp.stderr()}`);
    await sleep(50);
  }
  await sleep(1500); // settled: no push pending (the debounce holds one at most 500 ms)
  const before = await running(proxy);

  // The API server goes away (etcd keeps the cluster), then the control plane restarts (same CA, same port).
  await kube.stopApiserver();
  const [cmd, ...args] = cp.proc.spawnargs as [string, ...string[]];
  cp.proc.kill('SIGKILL');
  await new Promise((r) => cp.proc.once('exit', r));
  const cp2 = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err2 = '';
  cp2.stderr!.on('data', (d: Buffer) => (err2 += d.toString()));
  t.teardown(() => void cp2.kill('SIGKILL'));
  for (let i = 0; !err2.includes('"proxy connected"'); i++) {
    if (i > 300) throw new Error(`the proxy did not reconnect to the restarted control plane:\n${err2}`);
    await sleep(50);
  }
  await sleep(1500); // past the push debounce (at most 500 ms)
  const after = await running(proxy);
  t.ok(has(after, api) && routed(after, api), `the proxy still runs ${api} with its endpoint and HTTPRoute: ${JSON.stringify(after.config.services.map((s) => s.name))}`);
  t.equal(after.version, before.version, 'and the version it ran before the restart');

  // A proxy that starts now runs nothing yet. It connects, and is sent nothing.
  const starting = startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web'), readyTimeoutMs: 90_000 });
  starting.catch(() => {}); // awaited below
  const streams = async () => (await (await fetch(`${cp.adminUrl}/proxies`)).json()) as StreamStatus[];
  for (let i = 0; (await streams()).length < 2; i++) {
    if (i > 300) throw new Error(`the new proxy did not connect:\n${err2}`);
    await sleep(50);
  }
  await sleep(1500); // past the push debounce: the old control plane had sent it the empty stand-in by now
  t.same((await streams()).map((s) => s.sent), [null, null], 'neither proxy is sent a view while the source has not listed');
  const notReady = await fetch(`${cp.adminUrl}/ready`);
  const why = ((await notReady.json()) as { reasons: string[] }).reasons.join('; ');
  t.equal(notReady.status, 503, `the restarted control plane is not ready: ${why}`);
  t.match(why, /the Kubernetes config source has not listed .*Service \(fetch failed: connect ECONNREFUSED [^)]+\).* yet: no proxy is sent config until it has/, 'and says why, with the error');

  // The API server comes back; a Service created since reaches both proxies with the rest.
  await kube.startApiserver();
  await apply(serviceYaml('db', '10.1.0.2'));
  const fresh = await starting;
  t.teardown(() => fresh.stop());
  t.equal((await fetch(`${cp.adminUrl}/ready`)).status, 200, 'the control plane is ready once it has listed');
  for (const [name, p] of [['resuming', proxy], ['new', fresh]] as const) {
    for (let i = 0; !has(await running(p), db); i++) {
      if (i > 1200) throw new Error(`the ${name} proxy never got ${db}:\n${err2}`);
      await sleep(50);
    }
    t.ok(has(await running(p), api), `the ${name} proxy runs ${api} and ${db} once the API server is back`);
    // HTTPRoute discovery failed while the API server was down: the model must not go out without them.
    t.ok(routed(await running(p), api), `with the HTTPRoute's split of ${api}`);
  }
});
