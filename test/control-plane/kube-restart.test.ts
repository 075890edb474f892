// A control plane on a real kube-apiserver restarts while its proxy runs, and the API server is
// gone when it comes back (a node upgrade, an apiserver outage): the proxy reconnects and keeps
// the config it runs, instead of getting the empty stand-in view the new process serves until its
// Kubernetes source has listed. A proxy that starts meanwhile (it runs nothing) still gets a view.
import t from 'tap';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKube } from '../fixtures/kube.ts';
import { identityArgs, startControlPlane } from '../fixtures/control-plane.ts';
import { startProxyProcess, type ProxyProcess } from '../fixtures/mesh.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;

interface Running {
  version: string;
  config: { services: Array<{ name: string; endpoints: Array<{ address: string }> }> };
}
const running = async (p: ProxyProcess): Promise<Running> => (await (await fetch(`${p.adminUrl}/config`)).json()) as Running;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a control plane restarted while the API server is down does not wipe the config of a proxy that resumes', async (t) => {
  const kube = await startKube();
  t.teardown(() => kube.stop());
  const applied = await kube.kubectl(['apply', '--server-side', '-f', CRDS]);
  t.equal(applied.code, 0, `CRDs applied ${applied.stderr}`);
  await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io']);
  const shop = await kube.newNamespace('shop');
  const yaml = `apiVersion: v1
kind: Service
metadata: { name: api }
spec: { ports: [{ name: http, port: 80, targetPort: 8080 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: api-1, labels: { kubernetes.io/service-name: api } }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints: [{ addresses: ["10.1.0.1"], conditions: { ready: true } }]
`;
  for (let i = 0; ; i++) {
    const r = await kube.kubectl(['apply', '-n', shop, '-f', '-'], { input: yaml });
    if (r.code === 0) break;
    if (i > 30) throw new Error(`kubectl apply failed: ${r.stderr}`);
    await sleep(200);
  }
  // The kubeconfig outlives the API server (kube.stop() removes its folder).
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-kube-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = join(dir, 'kubeconfig');
  copyFileSync(kube.kubeconfigPath, kubeconfig);

  const cp = await startControlPlane({ args: ['--kubeconfig', kubeconfig] });
  t.teardown(() => cp.stop());
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => proxy.stop());
  const api = `api.${shop}`;
  const hasApi = (r: Running) => r.config.services.some((s) => s.name === api && s.endpoints.length === 1);
  for (let i = 0; !hasApi(await running(proxy)); i++) {
    if (i > 200) throw new Error(`the proxy never got ${api}:\n${cp.stderr()}`);
    await sleep(50);
  }
  await sleep(1500); // settled: no push pending (the debounce holds one at most 500 ms)
  const before = await running(proxy);

  // The API server goes away, then the control plane restarts (same CA, same port).
  await kube.stop();
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
  t.ok(hasApi(after), `the proxy still runs ${api} with its endpoint: ${JSON.stringify(after.config.services.map((s) => s.name))}`);
  t.equal(after.version, before.version, 'and the version it ran before the restart');

  // A proxy that starts now runs nothing yet: it gets the stand-in view (and so becomes ready).
  const fresh = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => fresh.stop());
  t.match((await running(fresh)).version, /^h-/, 'a new proxy gets a view from the restarted control plane');
});
