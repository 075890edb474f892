// TrafficSplit and AuthorizationPolicy status against a real kube-apiserver, written by two real
// control-plane replicas running with the shipped ClusterRole's own token: Accepted/ResolvedRefs say what
// /config-problems says, a fix flips them, nothing is rewritten when nothing changed, the survivor of
// a failover keeps writing, and a replica without the status permission warns, backs off and still serves.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { startKube, type Kube } from '../fixtures/kube.ts';
import { startControlPlane, type ControlPlane } from '../fixtures/control-plane.ts';

const ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
const SYSTEM = 'meshlet-system';
const SA = 'meshlet-control-plane';
const V = 'meshlet.io/v1alpha1';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}
interface Cr {
  metadata: { name: string; generation: number; resourceVersion: string; managedFields?: Array<{ manager: string; subresource?: string }> };
  status?: { observedGeneration?: number; conditions?: Condition[] };
}
type Plural = 'trafficsplits' | 'authorizationpolicies';

let kube: Kube | undefined;
const k = (): Kube => {
  if (!kube) throw new Error('the API server did not start (see t.before)');
  return kube;
};
const dir = mkdtempSync(path.join(tmpdir(), 'meshlet-status-'));

async function kubectl(args: string[], input?: string): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await k().kubectl(args, input === undefined ? undefined : { input });
    if (r.code === 0) return r.stdout;
    if (i > 30) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    await sleep(200); // a fresh CRD's storage may answer 429 for a moment
  }
}
const apply = (ns: string, ...docs: unknown[]) => kubectl(['apply', '-n', ns, '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: docs }));
const get = async (ns: string, plural: Plural, name: string): Promise<Cr> => JSON.parse(await kubectl(['get', plural, name, '-n', ns, '-o', 'json', '--show-managed-fields'])) as Cr;
const cond = (o: Cr, type: string) => o.status?.conditions?.find((c) => c.type === type);

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(100);
  }
}
/** Waits until the object's Accepted condition has `status` for its current generation. */
const accepted = (ns: string, plural: Plural, name: string, status: 'True' | 'False') =>
  until(`${plural}/${name} Accepted=${status}`, async () => {
    const o = await get(ns, plural, name);
    const c = cond(o, 'Accepted');
    return c?.status === status && c.observedGeneration === o.metadata.generation ? o : undefined;
  });

const split = (name: string, service: string, backends: Array<[string, number]>) => ({ apiVersion: V, kind: 'TrafficSplit', metadata: { name }, spec: { service, backends: backends.map(([s, weight]) => ({ service: s, weight })) } });
const svc = (name: string) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name }, spec: { ports: [{ name: 'http', port: 80 }] } });
const writesIn = (cp: ControlPlane, object: string) => cp.stderr().split('\n').filter((l) => l.includes('"resource status written"') && l.includes(`"object":"${object}"`)).length;

/** A kubeconfig holding a fresh token of `sa` in meshlet-system: what the Pod's projected token is. */
async function saKubeconfig(sa: string): Promise<string> {
  const token = (await kubectl(['create', 'token', sa, '-n', SYSTEM, '--duration=10m'])).trim();
  const file = path.join(dir, `${sa}.kubeconfig`);
  const kc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'test', cluster: { server: k().server, 'certificate-authority-data': Buffer.from(k().caPem).toString('base64') } }],
    users: [{ name: sa, user: { token } }],
    contexts: [{ name: sa, context: { cluster: 'test', user: sa } }],
    'current-context': sa,
  };
  writeFileSync(file, JSON.stringify(kc), { mode: 0o600 });
  return file;
}

t.before(async () => {
  kube = await startKube();
  t.comment(`kube-apiserver ready in ${kube.startupMs} ms`);
  await kubectl(['apply', '--server-side', '-f', path.join(ROOT, 'manifests/crds/')]);
  for (const f of ['namespace.yaml', 'control-plane/serviceaccount.yaml', 'control-plane/rbac.yaml']) await kubectl(['apply', '-f', path.join(ROOT, 'manifests', f)]);
  // The shipped ClusterRole without its status rule: a control plane whose status writes are refused.
  const role = parseAllDocuments(readFileSync(path.join(ROOT, 'manifests/control-plane/rbac.yaml'), 'utf8')).map((d) => d.toJS() as { kind: string; rules?: Array<{ resources: string[] }> }).find((d) => d.kind === 'ClusterRole')!;
  const noStatus = { ...role, metadata: { name: 'meshlet-no-status' }, rules: role.rules!.filter((r) => !r.resources.some((res) => res.endsWith('/status'))) };
  await kubectl(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      noStatus,
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'meshlet-no-status', namespace: SYSTEM } },
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'meshlet-no-status' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'meshlet-no-status' }, subjects: [{ kind: 'ServiceAccount', name: 'meshlet-no-status', namespace: SYSTEM }] },
    ],
  }));
  await kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io']);
});
t.teardown(async () => {
  await kube?.stop();
  rmSync(dir, { recursive: true, force: true });
});

t.test('two replicas write Accepted and ResolvedRefs where the owner looks, only when they change', async (t) => {
  const ns = await k().newNamespace('shop');
  await apply(ns, ...['api', 'api-v1', 'api-v2', 'web', 'web-v1'].map(svc));
  await apply(
    ns,
    split('good', 'api', [['api-v1', 90], ['api-v2', 10]]),
    split('typo', 'web', [['web-v1x', 100]]),
    { apiVersion: V, kind: 'AuthorizationPolicy', metadata: { name: 'web-port' }, spec: { targetRef: { service: 'web', port: 8080 }, rules: [{ from: { namespaces: [ns] } }] } },
    { apiVersion: V, kind: 'AuthorizationPolicy', metadata: { name: 'web-typo' }, spec: { targetRef: { service: 'wbe' }, rules: [{ from: { namespaces: [ns] } }] } },
  );
  const kubeconfig = await saKubeconfig(SA);
  const a = await startControlPlane({ args: ['--kubeconfig', kubeconfig] });
  const b = await startControlPlane({ args: ['--kubeconfig', kubeconfig] });
  t.teardown(() => Promise.all([a.stop(), b.stop()]));

  // A valid split: accepted, for the generation the owner applied, written by the control plane's field manager on the status subresource.
  const good = await accepted(ns, 'trafficsplits', 'good', 'True');
  t.match(good.status, { observedGeneration: 1, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', observedGeneration: 1 }, { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs' }] });
  t.match(cond(good, 'Accepted')?.lastTransitionTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  t.ok(good.metadata.managedFields?.some((f) => f.manager === 'meshlet-control-plane' && f.subresource === 'status'), 'server-side apply by meshlet-control-plane, status subresource');

  // A typo'd backend: the only backend is unknown, so the split is not applied.
  const typo = await accepted(ns, 'trafficsplits', 'typo', 'False');
  t.match(cond(typo, 'Accepted'), { reason: 'BackendNotFound', message: `/spec/backends/0/service: unknown service "web-v1x.${ns}"` });
  t.match(cond(typo, 'ResolvedRefs'), { status: 'False', reason: 'BackendNotFound' });
  // A policy on a port the Service lacks: in force (it guards that app port), its reference unresolved.
  const policy = await accepted(ns, 'authorizationpolicies', 'web-port', 'True');
  t.match(cond(policy, 'ResolvedRefs'), { status: 'False', reason: 'PortNotFound', message: /^\/spec\/targetRef\/port: service web\.\S+ has no port 8080/ });
  // A policy on a Service that does not exist: still in force for a proxy serving that name, its reference unresolved.
  const noService = await accepted(ns, 'authorizationpolicies', 'web-typo', 'True');
  t.match(cond(noService, 'ResolvedRefs'), { status: 'False', reason: 'ServiceNotFound', message: `/spec/targetRef/service: unknown service "wbe.${ns}"` });

  // A second split of every request to api: ignored, and says so.
  await apply(ns, split('second', 'api', [['api-v2', 100]]));
  const second = await accepted(ns, 'trafficsplits', 'second', 'False');
  t.match(cond(second, 'Accepted'), { reason: 'Conflicted', message: `/spec: TrafficSplit/${ns}/good already splits every request to api.${ns}; this split is ignored` });

  // Status and /config-problems say the same, on both replicas.
  for (const cp of [a, b]) {
    const problems = (await (await fetch(`${cp.adminUrl}/config-problems`)).json()) as Array<{ object: string; path: string; message: string }>;
    const mine = problems.filter((p) => p.object.split('/')[1] === ns);
    t.same(mine.map((p) => `${p.object} ${p.path}`).toSorted(), [
      `AuthorizationPolicy/${ns}/web-port /spec/targetRef/port`,
      `AuthorizationPolicy/${ns}/web-typo /spec/targetRef/service`,
      `TrafficSplit/${ns}/second /spec`,
      `TrafficSplit/${ns}/typo /spec/backends/0/service`,
      `TrafficSplit/${ns}/typo /spec/backends`,
    ].toSorted(), 'the problems /config-problems lists');
    for (const p of mine) {
      const [kind, , name] = p.object.split('/') as [string, string, string];
      const o = await get(ns, kind === 'TrafficSplit' ? 'trafficsplits' : 'authorizationpolicies', name);
      t.match(cond(o, 'Accepted')?.message, `${p.path}: ${p.message}`, `${p.object}: its status carries ${p.path}`);
    }
  }
  const table = await kubectl(['get', 'ts', '-n', ns, '-o', 'wide']);
  t.match(table, /^good\s+api\s+\S+\s+True\s+Accepted\s/m, 'kubectl get ts -o wide: ACCEPTED, REASON');
  t.match(table, /^second\s+api\s+\S+\s+False\s+Conflicted\s/m);
  t.match(table, /^typo\s+web\s+\S+\s+False\s+BackendNotFound\s/m);

  // The fix flips it: generation 2, a new transition time.
  await sleep(1100); // lastTransitionTime has seconds
  await apply(ns, split('typo', 'web', [['web-v1', 100]]));
  const fixed = await accepted(ns, 'trafficsplits', 'typo', 'True');
  t.equal(fixed.metadata.generation, 2);
  t.match(fixed.status, { observedGeneration: 2, conditions: [{ type: 'Accepted', status: 'True', observedGeneration: 2 }, { type: 'ResolvedRefs', status: 'True', observedGeneration: 2 }] });
  t.ok(cond(fixed, 'Accepted')!.lastTransitionTime! > cond(typo, 'Accepted')!.lastTransitionTime!, 'lastTransitionTime moved with the status');

  // Nothing rewritten across an unrelated model change: a new Service and a policy on it (whose own
  // status shows that both replicas rebuilt past it), then a quiet second and a half.
  await sleep(1000);
  const names: Array<[Plural, string]> = [['trafficsplits', 'good'], ['trafficsplits', 'typo'], ['trafficsplits', 'second'], ['authorizationpolicies', 'web-port']];
  const versions = async () => Promise.all(names.map(async ([p, n]) => `${n}@${(await get(ns, p, n)).metadata.resourceVersion}`));
  const before = await versions();
  const writesBefore = [a, b].map((cp) => writesIn(cp, `TrafficSplit/${ns}/good`));
  await apply(ns, svc('extra'), { apiVersion: V, kind: 'AuthorizationPolicy', metadata: { name: 'extra' }, spec: { targetRef: { service: 'extra' }, rules: [{ from: { namespaces: [ns] } }] } });
  await accepted(ns, 'authorizationpolicies', 'extra', 'True');
  await sleep(1500);
  t.same(await versions(), before, 'resourceVersions unchanged: no status write');
  t.same([a, b].map((cp) => writesIn(cp, `TrafficSplit/${ns}/good`)), writesBefore, 'and no write logged');
  const goodWrites = writesIn(a, `TrafficSplit/${ns}/good`) + writesIn(b, `TrafficSplit/${ns}/good`);
  t.ok(goodWrites >= 1 && goodWrites <= 2, `good's status written ${goodWrites} time(s) by two replicas over the whole test`);
  t.comment(`status writes (both replicas): good ${goodWrites}, typo ${writesIn(a, `TrafficSplit/${ns}/typo`) + writesIn(b, `TrafficSplit/${ns}/typo`)}, second ${writesIn(a, `TrafficSplit/${ns}/second`) + writesIn(b, `TrafficSplit/${ns}/second`)}`);
  for (const cp of [a, b]) t.notMatch(cp.stderr(), /cannot write resource status|\b403\b|forbidden/i, 'no write refused: the shipped ClusterRole suffices');

  // Failover: one replica gone, the other writes on its own.
  await a.stop();
  await kubectl(['delete', 'ts', 'good', '-n', ns]);
  const now = await accepted(ns, 'trafficsplits', 'second', 'True');
  t.match(cond(now, 'Accepted'), { reason: 'Accepted', message: 'The split is in force.' }, 'the older split deleted: the other applies');
});

t.test('a replica whose status writes are refused warns, backs off, and keeps its config view', async (t) => {
  const ns = await k().newNamespace('denied');
  await apply(ns, svc('api'), svc('api-v1'));
  const cp = await startControlPlane({ args: ['--kubeconfig', await saKubeconfig('meshlet-no-status')] });
  t.teardown(() => cp.stop());
  await apply(ns, split('late', 'api', [['api-v9', 1]]));
  const problems = await until('/config-problems', async () => {
    const p = (await (await fetch(`${cp.adminUrl}/config-problems`)).json()) as Array<{ object: string }>;
    return p.some((x) => x.object === `TrafficSplit/${ns}/late`) ? p : undefined;
  });
  t.ok(problems.length >= 2, 'the split\'s problems are listed all the same');
  await until('a refused write', async () => (/cannot write resource status/.test(cp.stderr()) ? true : undefined));
  await sleep(4000);
  const warns = cp.stderr().split('\n').filter((l) => l.includes('cannot write resource status') && l.includes(`TrafficSplit/${ns}/late`));
  t.ok(warns.length >= 2 && warns.length <= 5, `${warns.length} attempts in ~4 s: retried with backoff, not per rebuild`);
  t.match(JSON.parse(warns[0]!), { level: 'warn', object: `TrafficSplit/${ns}/late`, error: /^HTTP 403: .*forbidden/, retryInMs: Number });
  t.equal((await get(ns, 'trafficsplits', 'late')).status, undefined, 'nothing written');
  t.equal((await fetch(`${cp.adminUrl}/ready`)).status, 200, 'still ready');
});
