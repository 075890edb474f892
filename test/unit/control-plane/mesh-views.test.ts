// control-plane/config/mesh-views.ts: a proxy's view from its stream hello. Views are cached by
// identity and the EFFECTIVE served set (claimed + selected by the Pod's labels), so replicas share
// one view; the namespace that selects Services is the certificate's, never the hello's.
import t from 'tap';
import { parseResource, type AuthorizationPolicy } from '../../../api/resources.ts';
import { MeshViews } from '../../../control-plane/config/mesh-views.ts';
import { emptyModel, type MeshModel } from '../../../control-plane/config/model.ts';
import type { ProxyInfo } from '../../../control-plane/config/push-server.ts';

const TD = 'cluster.local';
const policy = parseResource({
  apiVersion: 'meshlet.io/v1alpha1',
  kind: 'AuthorizationPolicy',
  metadata: { name: 'billing-frontend-only', namespace: 'shop' },
  spec: { targetRef: { service: 'billing-svc' }, rules: [{ from: { serviceAccounts: [{ name: 'frontend' }] } }] },
});
if (!policy.ok) throw new Error('fixture');
const model: MeshModel = {
  ...emptyModel(),
  services: [{ namespace: 'shop', name: 'billing-svc', selector: { app: 'billing' }, ports: [{ port: 80, targetPort: 8080 }], source: 'Service/shop/billing-svc', endpoints: [] }],
  authorizationPolicies: [policy.value as AuthorizationPolicy],
};
const hello = (o: Partial<ProxyInfo>): ProxyInfo => ({ stream: 's', identity: `spiffe://${TD}/ns/shop/sa/billing`, workload: 'billing', namespace: 'shop', pod: 'billing-1', services: ['billing'], version: '', ...o });
const policiesOf = (v: ReturnType<MeshViews['view']>) => ('config' in v ? (v.config.inbound?.policies ?? []).map((p) => p.name) : 'error' in v ? v.error : v.pending);

t.test('before the first model no proxy gets a view, new or resuming: never an empty one', async (t) => {
  const views = new MeshViews();
  views.setTrustBundle(['-----BEGIN CERTIFICATE-----\n']); // the CA loads before the source lists
  for (const version of ['', 'h-0123456789abcdef']) {
    const v = views.view(hello({ version }));
    t.ok('pending' in v, `a proxy running ${JSON.stringify(version)} waits: ${JSON.stringify(v).slice(0, 120)}`);
  }
  views.set(model);
  t.same(policiesOf(views.view(hello({ labels: { app: 'billing' } }))), ['shop/billing-frontend-only'], 'the first model gives the view');
});

t.test('replicas with different pod-template-hash share one view; a different selection gets another', async (t) => {
  const views = new MeshViews();
  views.set(model);
  const a = views.view(hello({ pod: 'billing-1', labels: { app: 'billing', 'pod-template-hash': 'aaa' } }));
  const b = views.view(hello({ pod: 'billing-2', labels: { app: 'billing', 'pod-template-hash': 'bbb' } }));
  t.same(policiesOf(a), ['shop/billing-frontend-only'], 'guarded by the policy on the Service that selects it');
  t.equal(a, b, 'one cached view (same object: one computation, one version, one serialization)');
  const claims = views.view(hello({ services: ['billing', 'billing-svc'] }));
  t.equal(claims, a, 'claiming the Service by name serves the same set: the same view');
  const old = views.view(hello({ labels: undefined }));
  t.same(policiesOf(old), [], 'an older proxy (no labels): as before, only its name');
  t.not(old, a);
});

t.test('the namespace is the certificate\'s: a hello naming another namespace selects nothing there', async (t) => {
  const views = new MeshViews();
  views.set(model);
  const liar = views.view(hello({ identity: `spiffe://${TD}/ns/other/sa/billing`, namespace: 'shop', labels: { app: 'billing' } }));
  t.same(policiesOf(liar), [], 'a proxy of namespace other never serves shop/billing-svc');
});
