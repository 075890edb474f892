// An AuthorizationPolicy guards the Pods its target Service selects, end to end on real parts: a
// real kube-apiserver holds an injected Pod (Deployment `billing`), Service `billing-svc` selecting
// it, its EndpointSlice and the policy; the control plane watches that API server; the billing
// proxy runs with the args and env the injector gave the Pod (its labels read from a file written as
// the kubelet writes the downward-API volume); a meshed caller's request through real mTLS is
// refused with 403 when the policy does not allow it (before: 200, the policy guarded nothing),
// allowed once a second policy allows it, and a relabelled Pod leaves the Service's policies.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsonpatch from 'fast-json-patch';
import t from 'tap';
import { startKube, type Kube } from '../fixtures/kube.ts';
import { identityArgs, startControlPlane } from '../fixtures/control-plane.ts';
import { pool, reservedPort, startProxyProcess, startUpstream, type ProxyProcess } from '../fixtures/mesh.ts';
import { createHostNetns } from '../fixtures/netns.ts';
import { inject, POD_INFO_DIR, type PodLike } from '../../injector/inject.ts';
import { defaultSettings } from '../../injector/settings.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** `metadata.labels` as the kubelet writes it into a downward-API file: sorted `key="value"` lines. */
const downwardLabels = (labels: Record<string, string>): string =>
  Object.keys(labels)
    .toSorted()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join('\n');

t.test('a policy on Service billing-svc guards the Pods it selects (workload billing) through real mTLS', async (t) => {
  // EndpointSlices refuse loopback addresses: the billing proxy listens on the host's end of a veth.
  const net = createHostNetns(1, 'mlaz');
  t.teardown(() => net.remove());
  const podIp = net.addrs[0]!.replace(/\.\d+$/, '.1');
  const port = await reservedPort(); // the container port: app on loopback, proxy inbound on the Pod IP (iptables' job in a Pod)
  const app = await startUpstream(undefined, port);
  t.teardown(() => app.close());

  const kube: Kube = await startKube();
  t.teardown(() => kube.stop());
  const kubectl = async (args: string[], input?: string): Promise<string> => {
    for (let i = 0; ; i++) {
      const r = await kube.kubectl(args, input === undefined ? undefined : { input });
      if (r.code === 0) return r.stdout;
      if (i > 30) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
      await sleep(200); // a fresh CRD's storage may answer 429 for a moment
    }
  };
  await kubectl(['apply', '--server-side', '-f', CRDS]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/authorizationpolicies.meshlet.io']);
  const shop = await kube.newNamespace('shop');
  const apply = (...docs: unknown[]) => kubectl(['apply', '-n', shop, '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }));

  const cp = await startControlPlane({ args: ['--kubeconfig', kube.kubeconfigPath] });
  t.teardown(() => cp.stop());
  const anchorsPem = readFileSync(cp.anchorsFile(), 'utf8');

  // The Pod as a Deployment's ReplicaSet makes it, injected by the injector's own function.
  const pod: Json = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'billing-7d9f8-x2x4q',
      namespace: shop,
      labels: { app: 'billing', 'pod-template-hash': '7d9f8' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'billing-7d9f8', uid: '6a1d4c1e-0000-4000-8000-000000000001', controller: true }],
    },
    spec: { serviceAccountName: 'billing', containers: [{ name: 'app', image: 'registry.example/billing:1', ports: [{ containerPort: port }] }] },
  };
  const r = inject(pod as PodLike, defaultSettings({ trustAnchorsPem: anchorsPem, controlPlane: cp.url }));
  if (r.outcome !== 'injected') throw new Error(`not injected: ${JSON.stringify(r)}`);
  const injected = jsonpatch.applyPatch(structuredClone(pod), r.patch).newDocument as Json;
  await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'billing' } }, injected);
  const stored = JSON.parse(await kubectl(['get', 'pod', '-n', shop, pod.metadata.name, '-o', 'json'])) as Json;

  await apply(
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'billing-svc' }, spec: { selector: { app: 'billing' }, ports: [{ name: 'http', port: 80, targetPort: port }] } },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'billing-svc-1', labels: { 'kubernetes.io/service-name': 'billing-svc' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port, protocol: 'TCP' }],
      endpoints: [{ addresses: [podIp], conditions: { ready: true }, targetRef: { kind: 'Pod', name: stored.metadata.name, namespace: shop } }],
    },
    // Port 80 of the Service: it must guard the container port 80 reaches (`port`), not 80.
    { apiVersion: 'meshlet.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'billing-frontend-only' }, spec: { targetRef: { service: 'billing-svc', port: 80 }, rules: [{ from: { serviceAccounts: [{ name: 'frontend' }] } }] } },
  );

  // The billing proxy with the injected container's args and env, as the kubelet would run them:
  // $(VAR) substituted, the labels file where the downward-API volume puts it (here a temp dir),
  // a bootstrap token instead of the projected one, and listeners on this host's free ports.
  const proxyContainer = [...(injected.spec.initContainers ?? []), ...injected.spec.containers].find((c: Json) => c.name === 'meshlet-proxy') as Json;
  const env = Object.fromEntries((proxyContainer.env as Json[]).filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]));
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-authz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const labelsFile = join(dir, 'labels');
  writeFileSync(labelsFile, downwardLabels(stored.metadata.labels));
  const args = (proxyContainer.args as string[]).map((a) =>
    a.replace('$(MESHLET_POD_NAME)', stored.metadata.name).replace('$(MESHLET_POD_NAMESPACE)', shop).replace(POD_INFO_DIR, dir),
  );
  t.ok(args.includes('--pod-labels-file'), 'the injector has the proxy read its labels');
  const flag = (name: string) => args[args.indexOf(name) + 1];
  t.equal(flag('--workload'), 'billing', 'another name than the Service');
  // The fixture's own listeners (free loopback ports) stand in for the Pod's fixed ones.
  const replaced = ['--identity-token-file', '--admin-listen', '--outbound-listen', '--inbound-listen'];
  const billingArgs = args.filter((a, i) => !replaced.includes(a) && !replaced.includes(args[i - 1] ?? ''));
  const billing: ProxyProcess = await startProxyProcess({
    config: {},
    configFromControlPlane: true,
    appPort: port,
    args: [
      ...billingArgs,
      '--bootstrap-token-file', cp.tokenFile(shop, 'billing'),
      '--inbound-listen', `${podIp}:${port}`,
    ],
    env: { MESHLET_APP_PORTS: env.MESHLET_APP_PORTS, MESHLET_TRUST_ANCHORS_PEM: env.MESHLET_TRUST_ANCHORS_PEM },
  });
  t.teardown(() => billing.stop());

  const web = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, shop, 'web') });
  t.teardown(() => web.stop());
  const p = pool(web.outboundUrl, 2);
  t.teardown(() => p.close());
  const call = async (): Promise<{ status: number; error: string }> => {
    const res = await p.request({ path: '/invoices', method: 'GET', headers: { host: `billing-svc.${shop}.svc.cluster.local` } });
    await res.body.text();
    return { status: res.statusCode, error: String(res.headers['meshlet-proxy-error'] ?? '') };
  };
  /** Calls until `want` answers (bounded: 20 s); returns the last answer. */
  const until = async (what: string, want: (s: { status: number; error: string }) => boolean, ms = 20_000) => {
    const deadline = Date.now() + ms;
    let last = { status: 0, error: '' };
    for (;;) {
      last = await call();
      if (want(last)) return last;
      if (Date.now() > deadline) {
        t.fail(`${what}: last answer ${JSON.stringify(last)}\n${billing.stderr().slice(-1500)}\n${cp.stderr().slice(-1500)}`);
        return last;
      }
      await sleep(100);
    }
  };

  // The policy reaches the billing proxy's inbound, on the container port Service port 80 targets.
  const policies = async () => JSON.stringify(((await (await fetch(`${billing.adminUrl}/config`)).json()) as Json).config?.inbound?.policies ?? []);
  const want = JSON.stringify([{ name: `${shop}/billing-frontend-only`, port, rules: [{ identities: [`spiffe://cluster.local/ns/${shop}/sa/frontend`] }] }]);
  for (let i = 0; i < 100 && (await policies()) !== want; i++) await sleep(100);
  t.equal(await policies(), want, "the policy is in the billing proxy's inbound, on the container port");

  // web is meshed (mTLS, identity shop/web) and not frontend: the policy refuses it.
  const denied = await until('the policy on billing-svc refuses web', (s) => s.status !== 502 && s.status !== 503 && s.status !== 404);
  t.same(denied, { status: 403, error: 'forbidden' }, 'web is refused by the policy on the Service that selects the billing Pod (it got 200 before)');

  // A second policy allowing web: the two add up.
  await apply({ apiVersion: 'meshlet.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'billing-web-get' }, spec: { targetRef: { service: 'billing-svc' }, rules: [{ from: { serviceAccounts: [{ name: 'web' }] }, to: { methods: ['GET'] } }] } });
  t.same(await until('a policy allowing web applies', (s) => s.status === 200), { status: 200, error: '' });
  await kubectl(['delete', '-n', shop, 'authorizationpolicy', 'billing-web-get']);
  t.equal((await until('refused again once it is deleted', (s) => s.status === 403)).status, 403);

  // Relabelled (the kubelet rewrites the file): the proxy reconnects with its new labels, no Service
  // selects it, and the mesh default (all authenticated) lets web in again.
  writeFileSync(labelsFile, downwardLabels({ app: 'billing-old', 'pod-template-hash': '7d9f8' }));
  t.same(await until('a relabelled Pod leaves the Service\'s policies', (s) => s.status === 200, 30_000), { status: 200, error: '' });
  t.match(billing.stderr(), /pod labels changed; reconnecting the config stream/);
});
