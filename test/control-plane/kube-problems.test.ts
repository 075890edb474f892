// What the Kubernetes source cannot use is listed at the control plane's admin /config-problems
// (what `meshlet` users read), not only logged: an HTTPRoute rule with a filter, against a real
// kube-apiserver and a control-plane process.
import t from 'tap';
import { HTTPROUTE_CRD, startKube } from '../fixtures/kube.ts';
import { startControlPlane } from '../fixtures/control-plane.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('an HTTPRoute rule the mesh cannot honour is listed at /config-problems', async (t) => {
  const kube = await startKube();
  t.teardown(() => kube.stop());
  const apply = async (doc: unknown, ns?: string): Promise<void> => {
    for (let i = 0; ; i++) {
      const r = await kube.kubectl(['apply', ...(ns ? ['-n', ns] : []), '-f', '-'], { input: JSON.stringify(doc) });
      if (r.code === 0) return;
      if (i > 30) throw new Error(`kubectl apply failed: ${r.stderr}`);
      await sleep(200); // a fresh CRD's storage may answer 429 for a moment
    }
  };
  t.equal((await kube.kubectl(['apply', '--server-side', '-f', CRDS])).code, 0, 'meshlet CRDs applied');
  await apply(HTTPROUTE_CRD);
  await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io', 'crd/httproutes.gateway.networking.k8s.io']);
  const shop = await kube.newNamespace('shop');
  for (const name of ['api', 'api-v2']) await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { ports: [{ name: 'http', port: 80 }] } }, shop);
  const cp = await startControlPlane({ args: ['--kubeconfig', kube.kubeconfigPath] });
  t.teardown(() => cp.stop());
  await apply({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'api' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'api' }],
      rules: [{ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x', value: 'y' }] } }], backendRefs: [{ name: 'api-v2', port: 80 }] }],
    },
  }, shop);
  const want = { object: `HTTPRoute/${shop}/api`, path: '/spec/rules/0/filters', message: 'filters are not supported: the rule is not applied' };
  let listed: unknown[] = [];
  for (let i = 0; i < 200; i++) {
    listed = (await (await fetch(`${cp.adminUrl}/config-problems`)).json()) as unknown[];
    if (listed.length > 0) break;
    await sleep(50);
  }
  t.same(listed, [want], 'listed with its object, field and reason');
  t.match(cp.stderr(), `"object":"HTTPRoute/${shop}/api"`, 'and logged');
});
