// `meshlet split --kubeconfig`: against a real kube-apiserver with meshlet's CRDs, the
// TrafficSplit object gets the new weights (read, modify, replace); bad weights change nothing.
import t from 'tap';
import { kubeForFile } from '../fixtures/kube.ts';
import { meshlet } from './fixtures/local-mesh.ts';

const kube = kubeForFile(t, { crds: true });
const none = '/nonexistent/mesh.json';

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
