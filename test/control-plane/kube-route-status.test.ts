// HTTPRoute status from a real control plane on a real kube-apiserver (the Gateway API CRD's
// status as the real one has it: status.parents atomic): one entry per Service parent with
// controllerName meshlet.io/control-plane, Accepted / PartiallyInvalid / ResolvedRefs saying what
// /config-problems says, read with kubectl; another controller's entry survives every write of ours;
// nothing is rewritten when nothing changed.
import t from 'tap';
import { HTTPROUTE_CRD, startKube, type Kube } from '../fixtures/kube.ts';
import { startControlPlane } from '../fixtures/control-plane.ts';

const CRDS = new URL('../../manifests/crds/', import.meta.url).pathname;
const ROUTES = 'gateway.networking.k8s.io/v1';
const OURS = 'meshlet.io/control-plane';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}
interface Parent {
  parentRef: Record<string, unknown>;
  controllerName: string;
  conditions: Condition[];
}
interface Route {
  metadata: { name: string; generation: number; resourceVersion: string };
  status?: { parents?: Parent[] };
}

let kube: Kube | undefined;
const k = (): Kube => {
  if (!kube) throw new Error('the API server did not start (see t.before)');
  return kube;
};
async function kubectl(args: string[], input?: string): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await k().kubectl(args, input === undefined ? undefined : { input });
    if (r.code === 0) return r.stdout;
    if (i > 30) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    await sleep(200); // a fresh CRD's storage may answer 429 for a moment
  }
}
const apply = (ns: string, ...docs: unknown[]) => kubectl(['apply', '-n', ns, '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }));
const get = async (ns: string, name: string): Promise<Route> => JSON.parse(await kubectl(['get', 'httproute', name, '-n', ns, '-o', 'json'])) as Route;
const ours = (r: Route) => r.status?.parents?.filter((p) => p.controllerName === OURS) ?? [];
const cond = (p: Parent | undefined, type: string) => p?.conditions.find((c) => c.type === type);

/** Waits until `name` carries an entry of ours for its current generation, and returns the route. */
async function written(ns: string, name: string, ok: (r: Route) => boolean = () => true): Promise<Route> {
  let last: Route | undefined;
  for (let i = 0; i < 200; i++) {
    last = await get(ns, name);
    const mine = ours(last);
    if (mine.length > 0 && mine.every((p) => p.conditions.every((c) => c.observedGeneration === last!.metadata.generation)) && ok(last)) return last;
    await sleep(100);
  }
  throw new Error(`httproute/${name}: no status of ours for generation ${last?.metadata.generation}: ${JSON.stringify(last?.status)}`);
}

const svc = (name: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { ports: [{ name: 'http', port: 80 }] } });
const parent = (name: string) => ({ group: '', kind: 'Service', name, port: 80 });
const route = (name: string, parentRefs: unknown[], rules: unknown[]) => ({ apiVersion: ROUTES, kind: 'HTTPRoute', metadata: { name }, spec: { parentRefs, rules } });
const FILTER = { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x', value: 'y' }] } };
/** Another implementation's entry (a gateway in front of the same route), written as its own field manager. */
const theirs = (message: string): Parent => ({
  parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' },
  controllerName: 'example.com/gateway',
  conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message, lastTransitionTime: '2026-01-01T00:00:00Z' }],
});

t.before(async () => {
  kube = await startKube();
  t.comment(`kube-apiserver ready in ${kube.startupMs} ms`);
  await kubectl(['apply', '--server-side', '-f', CRDS]);
  await kubectl(['apply', '-f', '-'], JSON.stringify(HTTPROUTE_CRD));
  await kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io', 'crd/httproutes.gateway.networking.k8s.io']);
});
t.teardown(() => kube?.stop());

t.test('each Service parent gets an entry of ours, saying what the mesh does with the route; other entries stay', async (t) => {
  const ns = await k().newNamespace('routes');
  await apply(ns, ...['api', 'api-v1', 'api-v2', 'web', 'web-v1', 'pay', 'pay-v1'].map(svc));
  await apply(
    ns,
    route('good', [parent('api')], [{ backendRefs: [{ name: 'api-v1', port: 80, weight: 90 }, { name: 'api-v2', port: 80, weight: 10 }] }]),
    route('part', [parent('web')], [{ filters: [FILTER], backendRefs: [{ name: 'web-v1', port: 80 }] }, { matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], backendRefs: [{ name: 'web-v1', port: 80 }] }]),
    route('typo', [parent('web')], [{ matches: [{ headers: [{ name: 'x-canary', value: '1' }] }], backendRefs: [{ name: 'web-v9', port: 80 }] }]),
    route('filtered', [parent('pay')], [{ filters: [FILTER], backendRefs: [{ name: 'pay-v1', port: 80 }] }]),
    route('orphan', [parent('nope')], [{ backendRefs: [{ name: 'api-v1', port: 80 }] }]),
  );
  // Another controller describes "good" first, as its own field manager.
  await kubectl(['apply', '--server-side', '--field-manager=example-gateway', '--subresource=status', '-n', ns, '-f', '-'], JSON.stringify({ apiVersion: ROUTES, kind: 'HTTPRoute', metadata: { name: 'good' }, status: { parents: [theirs('seen by the edge gateway')] } }));

  const cp = await startControlPlane({ args: ['--kubeconfig', k().kubeconfigPath] });
  t.teardown(() => cp.stop());

  const good = await written(ns, 'good');
  t.same(ours(good).map((p) => p.parentRef), [parent('api')], 'one entry, its parentRef as the spec wrote it');
  t.match(cond(ours(good)[0], 'Accepted'), { status: 'True', reason: 'Accepted', message: 'The route is in force.', observedGeneration: 1, lastTransitionTime: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/ });
  t.match(cond(ours(good)[0], 'ResolvedRefs'), { status: 'True', reason: 'ResolvedRefs' });
  t.notOk(cond(ours(good)[0], 'PartiallyInvalid'), 'no PartiallyInvalid on a route applied whole');
  t.same(good.status?.parents?.filter((p) => p.controllerName !== OURS), [theirs('seen by the edge gateway')], "the other controller's entry survives, untouched");

  const part = await written(ns, 'part');
  t.match(cond(ours(part)[0], 'Accepted'), { status: 'True', reason: 'Accepted', message: 'The route is in force, in part: /spec/rules/0/filters: filters are not supported: the rule is not applied' });
  t.match(cond(ours(part)[0], 'PartiallyInvalid'), { status: 'True', reason: 'UnsupportedValue', message: 'Dropped Rule 0: /spec/rules/0/filters: filters are not supported: the rule is not applied' });

  const filtered = await written(ns, 'filtered');
  t.match(cond(ours(filtered)[0], 'Accepted'), { status: 'False', reason: 'UnsupportedValue', message: /^No rule can be applied: \/spec\/rules\/0\/filters: filters are not supported/ });

  const typo = await written(ns, 'typo');
  t.match(cond(ours(typo)[0], 'Accepted'), { status: 'True', reason: 'Accepted' });
  t.match(cond(ours(typo)[0], 'ResolvedRefs'), { status: 'False', reason: 'BackendNotFound', message: `/spec/rules/0/backendRefs/0: unknown service "web-v9.${ns}"` });

  const orphan = await written(ns, 'orphan');
  t.match(cond(ours(orphan)[0], 'Accepted'), { status: 'False', reason: 'NoMatchingParent', message: `/spec/parentRefs/0: unknown service "nope.${ns}": the route applies once it exists` });

  // What kubectl shows a service owner, in one line per route.
  const table = await kubectl(['get', 'httproutes', '-n', ns, '-o', `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.parents[?(@.controllerName=="${OURS}")].conditions[?(@.type=="Accepted")].reason}{"\\n"}{end}`]);
  t.same(table.trim().split('\n').toSorted(), ['filtered UnsupportedValue', 'good Accepted', 'orphan NoMatchingParent', 'part Accepted', 'typo Accepted'], 'kubectl jsonpath: the Accepted reason of each route');
  // /config-problems and the status agree on what is left out.
  const problems = (await (await fetch(`${cp.adminUrl}/config-problems`)).json()) as Array<{ object: string; path: string }>;
  t.ok(problems.some((p) => p.object === `HTTPRoute/${ns}/part` && p.path === '/spec/rules/0/filters'), '/config-problems lists the dropped rule too');

  // The other controller updates its entry (keeping ours, as a well-behaved writer of the list does);
  // then "good" changes and we rewrite ours: theirs, as they last wrote it, stays.
  const now = await get(ns, 'good');
  await kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=example-gateway', '--subresource=status', '-n', ns, '-f', '-'], JSON.stringify({ apiVersion: ROUTES, kind: 'HTTPRoute', metadata: { name: 'good', resourceVersion: now.metadata.resourceVersion }, status: { parents: [theirs('still seen by the edge gateway'), ...ours(now)] } }));
  await apply(ns, route('good', [parent('api')], [{ backendRefs: [{ name: 'api-v1', port: 80, weight: 90 }, { name: 'api-v3', port: 80, weight: 10 }] }]));
  const changed = await written(ns, 'good', (r) => r.metadata.generation === 2);
  t.match(cond(ours(changed)[0], 'ResolvedRefs'), { status: 'False', reason: 'BackendNotFound', observedGeneration: 2 }, 'our entry follows generation 2');
  t.same(changed.status?.parents?.filter((p) => p.controllerName !== OURS), [theirs('still seen by the edge gateway')], "the other controller's latest entry survives our rewrite");

  // Settled: nothing is rewritten (no loop with our own watch events).
  await sleep(1500);
  const names = ['good', 'part', 'typo', 'filtered', 'orphan'];
  const versions = async () => Promise.all(names.map(async (n) => `${n}@${(await get(ns, n)).metadata.resourceVersion}`));
  const before = await versions();
  await sleep(1500);
  t.same(await versions(), before, 'resourceVersions unchanged: no status write');
  t.notMatch(cp.stderr(), /cannot write resource status/, 'no write failed');
});
