// `meshlet split --kubeconfig`: against a real kube-apiserver with meshlet's CRDs, the
// TrafficSplit object gets the new weights (read, then a patch that tests the backends read); bad
// weights change nothing. What lands between its read and its write: a status write of the real
// control plane does not stop it; an edit of the backends is refused and kept.
import t, { type Test } from 'tap';
import http from 'node:http';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { kubeForFile, type Kube } from '../fixtures/kube.ts';
import { startControlPlane } from '../fixtures/control-plane.ts';
import { meshlet } from './fixtures/local-mesh.ts';

const kube = kubeForFile(t, { crds: true });
const none = '/nonexistent/mesh.json';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dir = mkdtempSync(join(tmpdir(), 'meshlet-split-kube-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const b64 = (v: string | undefined) => Buffer.from(v ?? '', 'base64').toString();

/**
 * A kubeconfig for the CLI whose API server is a plain-HTTP forwarder on loopback in front of the
 * real one (with the admin credentials): it runs `between` once, before forwarding the first
 * request that writes the TrafficSplit `name`, so it lands between the CLI's read and its write.
 */
async function between(t: Test, k: Kube, dir: string, name: string, what: () => Promise<void>): Promise<string> {
  const admin = JSON.parse(readFileSync(k.kubeconfigPath, 'utf8')) as { clusters: Array<{ cluster: Record<string, string> }>; users: Array<{ user: Record<string, string> }> };
  const tls = { ca: b64(admin.clusters[0]!.cluster['certificate-authority-data']), cert: b64(admin.users[0]!.user['client-certificate-data']), key: b64(admin.users[0]!.user['client-key-data']) };
  let ran = false;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const write = req.method !== 'GET' && new RegExp(`/trafficsplits/${name}(\\?|$)`).test(req.url ?? '');
      const first = write && !ran;
      if (write) ran = true;
      void (first ? what() : Promise.resolve()).then(() => {
        const headers = { ...req.headers };
        delete headers.host;
        const up = https.request(new URL(req.url ?? '/', k.server), { method: req.method, headers, ...tls }, (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        });
        up.on('error', (e) => res.destroy(e));
        up.end(Buffer.concat(chunks));
      }, (e: Error) => res.destroy(e));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const file = join(dir, `kubeconfig-${name}`);
  const port = (server.address() as AddressInfo).port;
  writeFileSync(file, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'fwd',
    // Plain HTTP on loopback: the client library wants that said (skip-tls-verify) before it speaks it.
    clusters: [{ name: 'fwd', cluster: { server: `http://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'fwd', user: {} }],
    contexts: [{ name: 'fwd', context: { cluster: 'fwd', user: 'fwd' } }],
  }));
  return file;
}

t.test('split patches the TrafficSplit object', async (t) => {
  const k = kube();
  const ns = await k.newNamespace('split');
  const applied = await k.kubectl(['apply', '-n', ns, '-f', '-'], { input: `apiVersion: meshlet.io/v1alpha1
kind: TrafficSplit
metadata: { name: api-canary }
spec:
  service: api
  backends:
    - { service: api-v1, weight: 90 }
    - { service: api-v2, weight: 10 }
` });
  t.equal(applied.code, 0, applied.stderr);
  const weights = async () => JSON.parse((await k.kubectl(['get', 'trafficsplit', 'api-canary', '-n', ns, '-o', 'json'])).stdout).spec.backends as Array<{ service: string; weight: number }>;

  const r = await meshlet(none, 'split', 'api', 'v2=50', '--kubeconfig', k.kubeconfigPath, '-n', ns, '-o', 'json');
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { service: 'api', where: new RegExp(`${ns}/trafficsplit/api-canary`), after: [{ service: 'api-v1', weight: 50 }, { service: 'api-v2', weight: 50 }] });
  t.same(await weights(), [{ service: 'api-v1', weight: 50 }, { service: 'api-v2', weight: 50 }], 'the object has the new weights');

  const bad = await meshlet(none, 'split', 'api', 'v1=0', 'v2=0', '--kubeconfig', k.kubeconfigPath, '-n', ns);
  t.equal(bad.code, 2, 'all-zero weights: exit 2');
  t.same(await weights(), [{ service: 'api-v1', weight: 50 }, { service: 'api-v2', weight: 50 }], 'unchanged');

  const missing = await meshlet(none, 'split', 'web', 'v2=5', '--kubeconfig', k.kubeconfigPath, '-n', ns);
  t.equal(missing.code, 1, 'no TrafficSplit for web: exit 1');
  t.match(missing.stderr, /0 TrafficSplits for service "web" in namespace/);
});

const CANARY = `apiVersion: meshlet.io/v1alpha1
kind: TrafficSplit
metadata: { name: api-canary }
spec:
  service: api
  backends:
    - { service: api-v1, weight: 90 }
    - { service: api-v2, weight: 10 }
`;
const service = (name: string) => `apiVersion: v1
kind: Service
metadata: { name: ${name} }
spec: { ports: [{ name: http, port: 80, targetPort: 8080 }] }
`;

interface Split {
  metadata: { generation: number; resourceVersion: string };
  spec: { backends: Array<{ service: string; weight: number }> };
  status?: { observedGeneration?: number; conditions?: Array<{ type: string; status: string; reason: string }> };
}
const getSplit = async (k: Kube, ns: string): Promise<Split> => JSON.parse((await k.kubectl(['get', 'trafficsplit', 'api-canary', '-n', ns, '-o', 'json'])).stdout) as Split;
const resolved = (s: Split) => s.status?.conditions?.find((c) => c.type === 'ResolvedRefs');
async function until(what: string, k: Kube, ns: string, ok: (s: Split) => boolean): Promise<Split> {
  for (let i = 0; ; i++) {
    const s = await getSplit(k, ns);
    if (ok(s)) return s;
    if (i > 100) throw new Error(`${what}: never; the split is ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

t.test('a status write of the control plane between the read and the write does not stop the split', async (t) => {
  const k = kube();
  const ns = await k.newNamespace('split-status');
  // api-v2 has no Service yet: the control plane says so in the status (ResolvedRefs False).
  for (const y of [service('api'), service('api-v1'), CANARY]) {
    const r = await k.kubectl(['apply', '-n', ns, '-f', '-'], { input: y });
    t.equal(r.code, 0, r.stderr);
  }
  const cp = await startControlPlane({ args: ['--kubeconfig', k.kubeconfigPath] });
  t.teardown(() => cp.stop());
  await until('the control plane reports api-v2 missing', k, ns, (s) => resolved(s)?.reason === 'BackendNotFound');

  // Between the CLI's read and its write, api-v2 appears and the control plane rewrites the status
  // (a new resourceVersion of the object the CLI read).
  const kubeconfig = await between(t, k, dir, 'api-canary', async () => {
    const read = await getSplit(k, ns);
    const r = await k.kubectl(['apply', '-n', ns, '-f', '-'], { input: service('api-v2') });
    if (r.code !== 0) throw new Error(r.stderr);
    await until('the control plane rewrites the status', k, ns, (s) => s.metadata.resourceVersion !== read.metadata.resourceVersion && resolved(s)?.status === 'True');
  });
  const r = await meshlet(none, 'split', 'api', 'v2=50', '--kubeconfig', kubeconfig, '-n', ns);
  t.equal(r.code, 0, `split succeeds: ${r.stderr}`);
  const after = await getSplit(k, ns);
  t.same(after.spec.backends, [{ service: 'api-v1', weight: 50 }, { service: 'api-v2', weight: 50 }], 'the object has the new weights');
  t.equal(resolved(after)?.status, 'True', "and the control plane's status write stands");
  await until('the control plane observes the new generation', k, ns, (s) => s.status?.observedGeneration === after.metadata.generation);
  t.pass(`the control plane's status follows the new generation (${after.metadata.generation})`);
});

t.test('an edit of the backends between the read and the write is refused, named, and kept', async (t) => {
  const k = kube();
  const ns = await k.newNamespace('split-edit');
  const applied = await k.kubectl(['apply', '-n', ns, '-f', '-'], { input: CANARY });
  t.equal(applied.code, 0, applied.stderr);
  const theirs = [{ service: 'api-v1', weight: 70 }, { service: 'api-v2', weight: 30 }];
  const kubeconfig = await between(t, k, dir, 'api-canary', async () => {
    const r = await k.kubectl(['patch', 'trafficsplit', 'api-canary', '-n', ns, '--type=merge', '-p', JSON.stringify({ spec: { backends: theirs } })]);
    if (r.code !== 0) throw new Error(r.stderr);
  });
  const r = await meshlet(none, 'split', 'api', 'v2=50', '--kubeconfig', kubeconfig, '-n', ns);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stderr, /trafficsplit\/api-canary changed while it was being updated: its backends are now api-v1 70, api-v2 30; nothing was written/, 'says what changed');
  t.match(r.stderr, /Run the command again/);
  t.same((await getSplit(k, ns)).spec.backends, theirs, 'the other edit is not overwritten');
});
