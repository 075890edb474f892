// The injected proxy container, run for real: its args and env (downward API resolved, $(VAR)
// substituted as the kubelet does) start the real proxy against a real control plane, which gets
// its trust anchors from MESHLET_TRUST_ANCHORS_PEM alone; the probes the injector wrote answer on
// the ports the proxy listens on, and the regular-sidecar mode's postStart hold returns once ready.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsonpatch from 'fast-json-patch';
import t from 'tap';
import { PROXY_MAIN, PROXY_NODE_FLAGS } from '../../proxy/launch.ts';
import { POD_INFO_DIR, holdUntilReadyCommand, inject } from '../../injector/inject.ts';
import { defaultSettings } from '../../injector/settings.ts';
import { startControlPlane } from '../fixtures/control-plane.ts';
import { freePort } from '../fixtures/mesh.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

t.test('the injected proxy starts from its container spec and its probes answer', async (t) => {
  const cp = await startControlPlane();
  t.teardown(() => cp.stop());
  const [outbound, inbound, admin, app] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const settings = defaultSettings({
    trustAnchorsPem: readFileSync(cp.anchorsFile(), 'utf8'),
    controlPlane: cp.url,
    ports: { outbound, inbound, admin },
  });
  const pod = { metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web' } }, spec: { serviceAccountName: 'web', containers: [{ name: 'app', image: 'a', ports: [{ containerPort: app }] }] } };
  const r = inject(pod, settings);
  const out = jsonpatch.applyPatch(structuredClone(pod), r.patch, true, false).newDocument as Json;
  const c = (out.spec.initContainers as Json[]).find((x) => x.name === 'meshlet-proxy')!;

  // What the kubelet does: resolve the downward API, then $(VAR) in args.
  const fields: Record<string, string> = { 'metadata.name': 'web-1', 'metadata.namespace': 'shop', 'spec.serviceAccountName': 'web' };
  const env: Record<string, string> = {};
  for (const e of c.env as Json[]) env[e.name] = e.value ?? fields[e.valueFrom.fieldRef.fieldPath];
  // The downward-API volume of the Pod's labels, as the kubelet writes it, where the mount would be.
  const podInfo = mkdtempSync(join(tmpdir(), 'meshlet-pod-info-'));
  t.teardown(() => rmSync(podInfo, { recursive: true, force: true }));
  writeFileSync(join(podInfo, 'labels'), 'app="web"');
  let args = (c.args as string[]).map((a) => a.replace(/\$\((\w+)\)/g, (_, v: string) => env[v] ?? `$(${v})`).replace(POD_INFO_DIR, podInfo));
  t.notOk(args.includes('--trust-anchors'), 'no anchors file: the bundle comes in the environment');
  t.equal(args[args.indexOf('--pod') + 1], 'web-1');
  t.equal(args[args.indexOf('--namespace') + 1], 'shop');
  // Outside Kubernetes there is no projected token: the same identity by a bootstrap token instead.
  const i = args.indexOf('--identity-token-file');
  args = [...args.slice(0, i), '--bootstrap-token-file', cp.tokenFile('shop', 'web'), ...args.slice(i + 2), '--access-log', 'off'];
  // As the image's ENTRYPOINT runs it (PROXY_NODE_FLAGS, no heap cap of its own): the cap comes from
  // the injected NODE_OPTIONS, half the container's memory limit.
  t.equal(env['NODE_OPTIONS'], '--max-old-space-size=128');
  const proc = spawn(process.execPath, [...PROXY_NODE_FLAGS, PROXY_MAIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  t.teardown(() => {
    proc.kill('SIGKILL');
  });

  const probe = async (p: Json): Promise<number> => fetch(`http://127.0.0.1:${p.httpGet.port}${p.httpGet.path}`).then((x) => x.status, () => 0);
  const deadline = Date.now() + 20_000;
  while ((await probe(c.startupProbe)) !== 200) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`the startup probe never passed (exit ${proc.exitCode}):\n${stderr}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  t.pass(`startupProbe ${c.startupProbe.httpGet.path} on ${c.startupProbe.httpGet.port}: 200 (identity issued with anchors from MESHLET_TRUST_ANCHORS_PEM)`);
  t.equal(await probe(c.readinessProbe), 200, 'readinessProbe');
  t.equal(await probe(c.livenessProbe), 200, 'livenessProbe');
  const status = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  t.match(status, /meshlet_/, 'the admin port Prometheus is told to scrape serves metrics');
  const limit = Number(/^meshlet_proxy_nodejs_heap_size_limit_bytes (\d+)$/m.exec(status)?.[1]) / 2 ** 20;
  t.ok(limit >= 128 && limit < 128 + 64, `the heap cap in force: ${limit.toFixed(0)} MiB (128 MiB old space and the young generation)`);

  // The regular-sidecar mode's postStart hook, with this machine's node in place of the image's.
  const [node, ...hold] = holdUntilReadyCommand(admin, process.execPath);
  const held = spawnSync(node!, hold, { encoding: 'utf8', timeout: 10_000 });
  t.equal(held.status, 0, `the postStart hold returns once the proxy is ready ${held.stderr}`);
});
