// Timeouts in a cluster, end to end on real parts: a real kube-apiserver holds Services and
// EndpointSlices whose endpoint is a slow HTTP server in a network namespace this test creates; a
// control plane watches it; a proxy gets its config from the control plane; curl sends requests
// through the proxy. A ServicePolicy applied with kubectl turns a 2 s answer into a 504 at ~300 ms;
// what the CRD refuses changes nothing; an edit that fails a merged check (a backoff base above the
// default cap) is reported in the object's status and at /config-problems while the last valid
// version stays in force; a second policy for the Service is Conflicted; one for a missing Service
// says ServiceNotFound; an HTTPRoute rule's `timeouts.request: 300ms` gives a 504 at ~300 ms too.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { HTTPROUTE_CRD, startKube, type Kube } from '../fixtures/kube.ts';
import { identityArgs, startControlPlane } from '../fixtures/control-plane.ts';
import { startProxyProcess } from '../fixtures/mesh.ts';
import { createHostNetns } from '../fixtures/netns.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;
const V = 'meshlet.io/v1alpha1';
const PORT = 8080;
const SLOW_MS = 2000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);

/** An HTTP server in the namespace that answers after SLOW_MS (GET /slow) or at once. */
async function serveIn(ns: string, addr: string): Promise<ChildProcess> {
  const code = `require('node:http').createServer((q, s) => setTimeout(() => s.end('ok'), q.url === '/slow' ? ${SLOW_MS} : 0)).listen(${PORT}, '${addr}', () => console.log('listening'));`;
  const c = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    c.stdout!.once('data', () => resolve());
    c.once('exit', (x) => reject(new Error(`server in ${ns} exited ${x}: ${err}`)));
  });
  return c;
}

/** A ServicePolicy for api (unless spec names another targetRef). */
const policy = (name: string, spec: Record<string, unknown>) => ({ apiVersion: V, kind: 'ServicePolicy', metadata: { name }, spec: { targetRef: { service: 'api' }, ...spec } });

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
}

t.test('ServicePolicy and HTTPRoute timeouts on a real apiserver, control plane and proxy', async (t) => {
  const netns = createHostNetns(1, 'mlsp');
  t.teardown(() => netns.remove());
  const server = await serveIn(netns.name, netns.addrs[0]!);
  t.teardown(() => void server.kill('SIGKILL'));

  const kube: Kube = await startKube();
  t.teardown(() => kube.stop());
  const kubectl = async (args: string[], input?: unknown): Promise<string> => {
    for (let i = 0; ; i++) {
      const r = await kube.kubectl(args, input === undefined ? undefined : { input: JSON.stringify(input) });
      if (r.code === 0) return r.stdout;
      // Right after Established, a CRD's storage may answer 429 for a moment.
      if (i > 30 || !/429|could not find the requested resource|the server is currently unable/.test(r.stderr)) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
      await sleep(200);
    }
  };
  await kubectl(['apply', '--server-side', '-f', CRDS]);
  await kubectl(['apply', '-f', '-'], HTTPROUTE_CRD);
  await kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/servicepolicies.meshlet.io', 'crd/httproutes.gateway.networking.k8s.io']);
  const ns = await kube.newNamespace('shop');
  const apply = (...items: unknown[]) => kubectl(['apply', '-n', ns, '-f', '-'], { apiVersion: 'v1', kind: 'List', items });
  const applyResult = (doc: unknown) => kube.kubectl(['apply', '-n', ns, '-f', '-'], { input: JSON.stringify(doc) });

  // api and web: the same slow server behind each.
  for (const name of ['api', 'web']) {
    await apply(
      { apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { ports: [{ name: 'http', port: 80, targetPort: PORT }] } },
      { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${name}-1`, labels: { 'kubernetes.io/service-name': name } }, addressType: 'IPv4', ports: [{ name: 'http', port: PORT, protocol: 'TCP' }], endpoints: [{ addresses: [netns.addrs[0]], conditions: { ready: true } }] },
    );
  }

  const cp = await startControlPlane({ args: ['--kubeconfig', kube.kubeconfigPath] });
  t.teardown(() => cp.stop());
  const proxy = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'frontend', args: identityArgs(cp, ns, 'frontend') });
  t.teardown(() => proxy.stop());

  /** One request through the proxy with curl: status, the proxy's error code, seconds taken. */
  const curl = async (service: string, path = '/slow') => {
    const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-D', '-', '-w', '\n%{http_code} %{time_total}', '-H', `Host: ${service}.${ns}.svc.cluster.local`, `${proxy.outboundUrl}${path}`], { timeout: 30_000 });
    const [code, secs] = stdout.trim().split('\n').at(-1)!.split(' ');
    return { status: Number(code), error: /meshlet-proxy-error: (\S+)/i.exec(stdout)?.[1], ms: Number(secs) * 1000 };
  };
  /** Polls (bounded: 15 s) until a request through the proxy gets `status`; returns that request. */
  const until = async (what: string, service: string, status: number) => {
    const deadline = performance.now() + 15_000;
    for (;;) {
      const r = await curl(service);
      if (r.status === status) return r;
      if (performance.now() > deadline) throw new Error(`${what}: still ${r.status} after 15 s\n${cp.stderr().slice(-2000)}`);
      await sleep(100);
    }
  };
  const get = async (name: string) => JSON.parse(await kubectl(['get', 'servicepolicy', name, '-n', ns, '-o', 'json'])) as { metadata: { generation: number }; spec: Record<string, unknown>; status?: { conditions?: Condition[] } };
  /** Waits until the policy's condition `type` says `status`/`reason` for its current generation. */
  const condition = async (name: string, type: string, status: string, reason: string) => {
    for (let i = 0; ; i++) {
      const o = await get(name);
      const c = o.status?.conditions?.find((x) => x.type === type);
      if (c?.status === status && c.reason === reason && c.observedGeneration === o.metadata.generation) return c;
      if (i > 200) throw new Error(`servicepolicy/${name} ${type}: ${JSON.stringify(o.status)}\n${cp.stderr().slice(-2000)}`);
      await sleep(100);
    }
  };
  const problems = async () => (await (await fetch(`${cp.adminUrl}/config-problems`)).json()) as Array<{ object: string; path: string; message: string }>;

  // Before any policy: the proxy's default request timeout (15 s) lets the 2 s answer through.
  const slow = await until('the slow service answers through the proxy', 'api', 200);
  t.ok(slow.ms >= SLOW_MS, `without a policy the slow answer arrives (${Math.round(slow.ms)} ms)`);

  // A ServicePolicy with a 300 ms request timeout.
  await apply(policy('api', { timeouts: { request: 300 } }));
  const cut = await until('the ServicePolicy applies', 'api', 504);
  t.equal(cut.error, 'request-timeout', 'the proxy says why');
  t.ok(cut.ms >= 280 && cut.ms < 1000, `504 after ${Math.round(cut.ms)} ms (request timeout 300 ms, not the 15 s default)`);
  await condition('api', 'Accepted', 'True', 'Accepted');
  t.equal((await curl('web')).status, 200, 'another service keeps the defaults');

  // The CRD refuses what its schema and CEL rules can see; the stored policy stays, and so does the timeout.
  const refused = await applyResult(policy('api', { timeouts: { request: 300, perTry: 1000 } }));
  t.not(refused.code, 0, 'perTry above request: refused by the apiserver');
  t.match(refused.stderr, 'timeouts.perTry is longer than timeouts.request');
  const typo = await applyResult(policy('api', { timeouts: { request: '300ms' } }));
  t.not(typo.code, 0, 'a duration string where milliseconds belong: refused by the apiserver');
  t.match(typo.stderr, 'spec.timeouts.request in body must be of type number');
  t.same((await get('api')).spec.timeouts, { request: 300 }, 'nothing stored');

  // Past the schema, a merged check: a backoff base of 500 ms against the default cap of 250 ms.
  await apply(policy('api', { timeouts: { request: 300 }, retry: { backoff: { base: 500 } } }));
  const invalid = await condition('api', 'Accepted', 'False', 'Invalid');
  t.equal(invalid.message, "/spec/retry/backoff/base: backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default): the ServicePolicy's last valid version (generation 1) stays in force");
  t.same((await problems()).filter((p) => p.object === `ServicePolicy/${ns}/api`).map((p) => [p.path, p.message]), [['/spec/retry/backoff/base', "backoff base is larger than its cap: 500 ms (set here) > 250 ms (the default): the ServicePolicy's last valid version (generation 1) stays in force"]], 'listed at /config-problems');
  const kept = await curl('api');
  t.equal(kept.status, 504, 'the last valid version stays in force');
  t.ok(kept.ms < 1000, `still cut at ~300 ms (${Math.round(kept.ms)} ms)`);
  // Fixed: Accepted again.
  await apply(policy('api', { timeouts: { request: 300 }, retry: { backoff: { base: 200 } } }));
  await condition('api', 'Accepted', 'True', 'Accepted');
  t.same((await problems()).filter((p) => p.object === `ServicePolicy/${ns}/api`), [], 'and gone from /config-problems');

  // A second policy for api: the older one stays in force, the newer is Conflicted.
  await apply(policy('api-longer', { timeouts: { request: 5000 } }));
  const conflicted = await condition('api-longer', 'Accepted', 'False', 'Conflicted');
  t.match(conflicted.message, `ServicePolicy/${ns}/api already sets the policy of api.${ns}`);
  const still = await curl('api');
  t.ok(still.status === 504 && still.ms < 1000, `the older policy still applies (${still.status} after ${Math.round(still.ms)} ms)`);

  // A policy for a Service that does not exist.
  await apply({ ...policy('nowhere', {}), spec: { targetRef: { service: 'nowhere' }, timeouts: { request: 300 } } });
  await condition('nowhere', 'ResolvedRefs', 'False', 'ServiceNotFound');
  await condition('nowhere', 'Accepted', 'False', 'ServiceNotFound');

  // An HTTPRoute rule on web with `timeouts.request: 300ms` (GEP-1742).
  await apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'web' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }], timeouts: { request: '300ms' } }] },
  });
  const routed = await until('the HTTPRoute timeout applies', 'web', 504);
  t.equal(routed.error, 'request-timeout');
  t.ok(routed.ms >= 280 && routed.ms < 1000, `504 after ${Math.round(routed.ms)} ms (HTTPRoute timeouts.request 300ms)`);
  t.equal((await curl('web', '/fast')).status, 200, 'a quick answer still passes');
});
