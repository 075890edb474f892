// What a TrafficSplit's or AuthorizationPolicy's status says (resource-status.ts), from problems the
// real model builder produces, and when the status writer (status-writer.ts) writes it: on a manual clock, with a fake API.
import t from 'tap';
import type { V1Service } from '@kubernetes/client-node';
import { ManualClock } from '../../../api/runtime.ts';
import { ManualWallClock } from '../../../control-plane/ca/wall-clock.ts';
import { meshModelFromKubernetes, type KubeObjects, type KubeProblem } from '../../../control-plane/config/kube-model.ts';
import { applyBody, classify, desiredStatus, hasStatus, kubeTime, statusTarget, type StatusTarget } from '../../../control-plane/config/resource-status.ts';
import { StatusWriter, type StatusPatch } from '../../../control-plane/config/status-writer.ts';

const V = 'meshlet.io/v1alpha1';
const T0 = Date.parse('2026-03-01T10:00:00Z');

const service = (name: string): V1Service => ({ metadata: { namespace: 'shop', name }, spec: { ports: [{ name: 'http', port: 80 }] } });
const cr = (kind: string, name: string, spec: unknown, o: { generation?: number; rv?: string; uid?: string; created?: string; status?: unknown } = {}) => ({
  apiVersion: V,
  kind,
  metadata: { namespace: 'shop', name, uid: o.uid ?? `uid-${name}`, generation: o.generation ?? 1, resourceVersion: o.rv ?? '1', creationTimestamp: o.created ?? '2026-01-01T00:00:00Z' },
  spec,
  ...(o.status ? { status: o.status } : {}),
});
const split = (name: string, backends: Array<[string, number]>, o: Parameters<typeof cr>[3] & { service?: string } = {}) =>
  cr('TrafficSplit', name, { service: o.service ?? 'web', backends: backends.map(([service, weight]) => ({ service, weight })) }, o);
const policy = (name: string, port?: number) => cr('AuthorizationPolicy', name, { targetRef: { service: 'web', ...(port !== undefined ? { port } : {}) }, rules: [{ from: { namespaces: ['shop'] } }] });

function objects(o: Partial<KubeObjects>): KubeObjects {
  return { services: ['web', 'web-v1', 'web-v2'].map(service), endpointSlices: [], pods: [], trafficSplits: [], authorizationPolicies: [], httpRoutes: [], ...o };
}

/** A TrafficSplit whose apex does not exist: Accepted=False, ServiceNotFound. */
const noApex = (name: string): KubeProblem => ({ kind: 'TrafficSplit', namespace: 'shop', name, field: '/spec/service', message: 'unknown service "web.shop"', effect: { reason: 'ServiceNotFound', applies: false, reference: true } });
const statusOf = (kind: 'TrafficSplit' | 'AuthorizationPolicy', o: unknown, problems: readonly KubeProblem[]) => desiredStatus(statusTarget(kind, o)!, problems, T0);
const accepted = (s: ReturnType<typeof statusOf>) => s.conditions?.find((c) => c.type === 'Accepted');
const resolved = (s: ReturnType<typeof statusOf>) => s.conditions?.find((c) => c.type === 'ResolvedRefs');

t.test('every problem the model builder reports on a TrafficSplit or AuthorizationPolicy gets its reason', async (t) => {
  const good = split('canary', [['web-v1', 90], ['web-v2', 10]], { created: '2026-01-01T00:00:00Z' });
  const typo = split('typo', [['web-v1', 90], ['web-v3', 10]], { service: 'web-v1', created: '2026-01-01T00:00:00Z' });
  const second = split('second', [['web-v2', 1]], { created: '2026-01-02T00:00:00Z' });
  const nowhere = split('nowhere', [['web-v9', 1]], { service: 'web-v2' });
  const apex = split('apex', [['web-v1', 1]], { service: 'shop-typo' });
  const twice = split('twice', [['web-v1', 1], ['web-v1.shop', 1]], { service: 'web-v2' });
  const invalid = split('invalid', [['web-v1', -1]]);
  const port = policy('port', 9999);
  const badPolicy = cr('AuthorizationPolicy', 'nobody', { targetRef: { service: 'web' }, rules: [{ from: {} }] });
  const noService = cr('AuthorizationPolicy', 'nosvc', { targetRef: { service: 'wbe' }, rules: [] });
  const { problems } = meshModelFromKubernetes(objects({ trafficSplits: [good, typo, second, nowhere, apex, twice, invalid], authorizationPolicies: [port, badPolicy, noService, policy('fine')] }));
  const verdictWith = (ps: readonly KubeProblem[]) => (kind: 'TrafficSplit' | 'AuthorizationPolicy', o: unknown) => {
    const s = statusOf(kind, o, ps);
    return [accepted(s)?.status, accepted(s)?.reason, resolved(s)?.status, resolved(s)?.reason];
  };
  const verdict = verdictWith(problems);
  t.same(verdict('TrafficSplit', good), ['True', 'Accepted', 'True', 'ResolvedRefs'], 'a valid split');
  t.same(verdict('TrafficSplit', typo), ['True', 'Accepted', 'False', 'BackendNotFound'], 'a typo\'d canary: in force without it (its weight goes to the rest)');
  t.same(verdict('TrafficSplit', second), ['False', 'Conflicted', 'True', 'ResolvedRefs'], 'a second split of every request to web: ignored');
  t.same(verdict('TrafficSplit', nowhere), ['False', 'BackendNotFound', 'False', 'BackendNotFound'], 'no backend exists: not applied');
  t.same(verdict('TrafficSplit', apex), ['False', 'ServiceNotFound', 'False', 'ServiceNotFound'], 'the apex does not exist');
  t.same(verdict('TrafficSplit', twice), ['False', 'Invalid', 'True', 'ResolvedRefs'], 'one backend under two names');
  t.same(verdict('TrafficSplit', invalid), ['False', 'Invalid', 'True', 'ResolvedRefs'], 'fails meshlet\'s checks');
  t.same(verdict('AuthorizationPolicy', port), ['True', 'Accepted', 'False', 'PortNotFound'], 'a port the service lacks: guards that app port');
  t.same(verdict('AuthorizationPolicy', noService), ['True', 'Accepted', 'False', 'ServiceNotFound'], 'a target service that does not exist: guards only a proxy serving that name');
  t.same(verdict('AuthorizationPolicy', badPolicy), ['False', 'Invalid', 'True', 'ResolvedRefs']);
  t.same(verdict('AuthorizationPolicy', policy('fine')), ['True', 'Accepted', 'True', 'ResolvedRefs']);
  // Every problem of a status kind is made with its effect (none falls through to the default by accident).
  const known = problems.filter((p) => p.kind === 'TrafficSplit' || p.kind === 'AuthorizationPolicy');
  t.same(
    known.map((p) => `${p.name} ${p.field} ${p.effect?.reason} ${p.effect?.applies} ${p.effect?.reference}`),
    [
      'nobody /spec/rules/0/from Invalid false false',
      'nosvc /spec/targetRef/service ServiceNotFound true true',
      'port /spec/targetRef/port PortNotFound true true',
      'apex /spec/service ServiceNotFound false true',
      'invalid /spec/backends/0/weight Invalid false false',
      'nowhere /spec/backends BackendNotFound false false',
      'nowhere /spec/backends/0/service BackendNotFound true true',
      'second /spec Conflicted false false',
      'twice /spec/backends/1/service Invalid false false',
      'typo /spec/backends/1/service BackendNotFound true true',
    ],
    'the effects, as the model builder made them',
  );
  // The status reads the effect, not the wording: other messages, the same verdicts; no effect, Invalid.
  const reworded = verdictWith(problems.map((p) => ({ ...p, message: 'said otherwise' })));
  const unsaid = verdictWith(problems.map((p) => ({ ...p, effect: undefined })));
  const splits = [typo, second, nowhere, apex, twice, invalid].map((o) => ['TrafficSplit', o] as const);
  for (const [kind, o] of [...splits, ['AuthorizationPolicy', port] as const, ['AuthorizationPolicy', badPolicy] as const, ['AuthorizationPolicy', noService] as const]) {
    t.same(reworded(kind, o), verdict(kind, o), `${kind} ${o.metadata.name}: reworded`);
    t.same(unsaid(kind, o).slice(0, 2), ['False', 'Invalid'], `${kind} ${o.metadata.name}: without its effect`);
  }

  const msg = accepted(statusOf('TrafficSplit', typo, problems))?.message;
  t.equal(msg, 'The split is in force, in part: /spec/backends/1/service: unknown service "web-v3.shop": left out of the split (its weight 10 goes to the other backends) until it exists');
  t.match(accepted(statusOf('AuthorizationPolicy', noService, problems))?.message, /^The policy is in force, in part: \/spec\/targetRef\/service: unknown service "wbe\.shop": the policy guards only proxies that serve wbe /);
  t.match(accepted(statusOf('TrafficSplit', second, problems))?.message, /^\/spec: TrafficSplit\/shop\/canary already splits every request to web\.shop; this split is ignored/);
  t.match(accepted(statusOf('TrafficSplit', invalid, problems))?.message, /^\/spec\/backends\/0\/weight: .*: the TrafficSplit is not applied$/);
});

t.test('classify: a problem\'s effect; without one, Invalid and not applied', async (t) => {
  t.same(classify({}), { reason: 'Invalid', applies: false, reference: false });
  t.same(classify({ effect: { reason: 'PortNotFound', applies: true, reference: true } }), { reason: 'PortNotFound', applies: true, reference: true });
});

t.test('desiredStatus: observedGeneration, lastTransitionTime kept while the status value holds, hasStatus, the apply body', async (t) => {
  const o = split('canary', [['web-v1', 1]], { generation: 7 });
  const first = statusOf('TrafficSplit', o, []);
  t.equal(first.observedGeneration, 7);
  t.same(first.conditions?.map((c) => [c.type, c.status, c.observedGeneration, c.lastTransitionTime]), [
    ['Accepted', 'True', 7, '2026-03-01T10:00:00Z'],
    ['ResolvedRefs', 'True', 7, '2026-03-01T10:00:00Z'],
  ]);
  const carrying = statusTarget('TrafficSplit', { ...o, status: first })!;
  t.ok(hasStatus(carrying, first));
  const later = desiredStatus(carrying, [], T0 + 3_600_000);
  t.same(later, first, 'an hour later, the same verdict: the same status, transition time included');
  const bumped = desiredStatus({ ...carrying, generation: 8 }, [], T0 + 3_600_000);
  t.equal(bumped.conditions?.[0]?.lastTransitionTime, '2026-03-01T10:00:00Z', 'a new generation, the same verdict: no transition');
  t.notOk(hasStatus({ ...carrying, generation: 8 }, bumped), 'but observedGeneration differs: to be written');
  const problem: KubeProblem = { kind: 'TrafficSplit', namespace: 'shop', name: 'canary', field: '/spec', message: 'conflicts', effect: { reason: 'Conflicted', applies: false, reference: false } };
  const flipped = desiredStatus(carrying, [problem, { ...problem, name: 'other' }], T0 + 3_600_000);
  t.same(flipped.conditions?.map((c) => [c.type, c.status, c.reason, c.lastTransitionTime]), [
    ['Accepted', 'False', 'Conflicted', '2026-03-01T11:00:00Z'],
    ['ResolvedRefs', 'True', 'ResolvedRefs', '2026-03-01T10:00:00Z'],
  ], 'only the condition that changed value moves; another object\'s problem is not this one\'s');
  t.notOk(hasStatus(carrying, flipped));
  const foreign = statusTarget('TrafficSplit', { ...o, status: { ...first, conditions: [...first.conditions!, { type: 'Programmed', status: 'Unknown' }] } })!;
  t.ok(hasStatus(foreign, first), 'a condition of another writer is not ours to compare');
  t.same(applyBody(carrying, first), { apiVersion: V, kind: 'TrafficSplit', metadata: { name: 'canary', namespace: 'shop', uid: 'uid-canary' }, status: first }, 'uid as a precondition');
  t.equal(kubeTime(Date.parse('2026-03-01T10:00:00.999Z')), '2026-03-01T10:00:00Z');
  t.equal(statusTarget('TrafficSplit', { metadata: { name: 'x' } }), undefined, 'no namespace');
});

// ---- the writer ------------------------------------------------------------------------------------

interface Call {
  target: StatusTarget;
  body: Record<string, unknown>;
}

const settle = () => new Promise((r) => setImmediate(r));

function harness(o: { fail?: (n: number) => Error | undefined } = {}) {
  const clock = new ManualClock(0);
  const wall = new ManualWallClock(T0);
  const calls: Call[] = [];
  const logs: Array<[string, string, Record<string, unknown>]> = [];
  const patch: StatusPatch = async (target, body) => {
    calls.push({ target, body });
    const e = o.fail?.(calls.length);
    if (e) throw e;
  };
  const writer = new StatusWriter({ patch, wallClock: wall, clock, random: () => 1, log: (l, m, f) => logs.push([l, m, f]) });
  return { clock, wall, calls, logs, writer, settle };
}

/** The object as the API server would hold it after our write (resourceVersion bumped). */
const afterWrite = (o: ReturnType<typeof cr>, c: Call, rv: string) => ({ ...o, metadata: { ...o.metadata, resourceVersion: rv }, status: c.body.status });

t.test('the writer writes what differs, once; not again for its own echo or an unrelated rebuild', async (t) => {
  const h = harness();
  t.teardown(() => h.writer.stop());
  const a = split('a', [['web-v1', 1]]);
  const p = policy('p');
  h.writer.update({ trafficSplits: [a], authorizationPolicies: [p] }, []);
  await h.settle();
  t.same(h.calls.map((c) => `${c.target.kind}/${c.target.name}`), ['TrafficSplit/a', 'AuthorizationPolicy/p'], 'both written');
  h.writer.update({ trafficSplits: [a], authorizationPolicies: [p] }, []);
  await h.settle();
  t.equal(h.calls.length, 2, 'a rebuild before our write\'s watch event arrived: the cache still shows the old resourceVersion, nothing written');
  const a2 = afterWrite(a, h.calls[0]!, '2');
  const p2 = afterWrite(p, h.calls[1]!, '2');
  for (let i = 0; i < 5; i++) {
    h.clock.advance(60_000);
    h.wall.advance(60_000);
    h.writer.update({ trafficSplits: [a2], authorizationPolicies: [p2] }, []);
  }
  await h.settle();
  t.equal(h.calls.length, 2, 'the echo and five rebuilds over five minutes: nothing written');
  t.same(h.writer.stats(), { written: 2, failed: 0 });
  t.equal(h.logs.filter((l) => l[1] === 'resource status written').length, 2);

  // A problem appears: written at once, whatever the rewrite backoff.
  const problem = noApex('a');
  h.writer.update({ trafficSplits: [a2], authorizationPolicies: [p2] }, [problem]);
  await h.settle();
  t.equal(h.calls.length, 3);
  t.match((h.calls[2]!.body.status as { conditions: unknown[] }).conditions[0], { type: 'Accepted', status: 'False', reason: 'ServiceNotFound' });
});

t.test('someone else overwrites the status: rewritten, each rewrite of the same content later than the last', async (t) => {
  const h = harness();
  t.teardown(() => h.writer.stop());
  const a = split('a', [['web-v1', 1]]);
  let rv = 1;
  // Another writer that disagrees (say, another version's wording) answers every write of ours.
  const theirs = (o: ReturnType<typeof cr>) => ({ ...o, metadata: { ...o.metadata, resourceVersion: String(++rv) }, status: { observedGeneration: 1, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'other words', lastTransitionTime: '2026-03-01T10:00:00Z' }] } });
  const times: number[] = [];
  let current: unknown = a;
  for (let s = 0; s < 120; s++) {
    const before = h.calls.length;
    h.writer.update({ trafficSplits: [current], authorizationPolicies: [] }, []);
    await h.settle();
    if (h.calls.length > before) {
      times.push(h.clock.now());
      current = theirs(a);
    }
    h.clock.advance(1000);
  }
  t.same(times, [0, 1000, 3000, 7000, 15000, 31000, 63000], 'in two minutes: 7 writes, gaps doubling (1 s, 2 s, 4 s, ...), not one per rebuild');
});

t.test('a failed write is logged at warn and retried with backoff, at once when there is something new to say', async (t) => {
  const forbidden = Object.assign(new Error('forbidden'), { code: 403, body: JSON.stringify({ message: 'trafficsplits.meshlet.io "a" is forbidden: cannot patch resource "trafficsplits/status"' }) });
  let failing = true;
  const h = harness({ fail: () => (failing ? forbidden : undefined) });
  t.teardown(() => h.writer.stop());
  const a = split('a', [['web-v1', 1]]);
  const tick = async (ms: number) => {
    h.clock.advance(ms);
    h.writer.update({ trafficSplits: [a], authorizationPolicies: [] }, []);
    await h.settle();
  };
  await tick(0);
  t.equal(h.calls.length, 1);
  t.match(h.logs.at(-1), ['warn', /cannot write resource status/, { object: 'TrafficSplit/shop/a', error: /^HTTP 403: .*forbidden/, retryInMs: 1000 }]);
  await tick(500);
  t.equal(h.calls.length, 1, 'rebuilds inside the backoff write nothing');
  await tick(500);
  t.equal(h.calls.length, 2, 'retried after 1 s');
  t.equal(h.logs.at(-1)?.[2].retryInMs, 2000, 'then 2 s');
  await tick(1000);
  t.equal(h.calls.length, 2);
  const problem = noApex('a');
  h.writer.update({ trafficSplits: [a], authorizationPolicies: [] }, [problem]);
  await h.settle();
  t.equal(h.calls.length, 3, 'a new verdict is tried at once');
  failing = false;
  await tick(4000);
  t.equal(h.calls.length, 4, 'after the backoff, it lands');
  t.same(h.writer.stats(), { written: 1, failed: 3 });
});

t.test('a retry needs no rebuild: the writer wakes itself after the backoff', async (t) => {
  let n = 0;
  const h = harness({ fail: () => (++n === 1 ? new Error('connection refused') : undefined) });
  t.teardown(() => h.writer.stop());
  h.writer.update({ trafficSplits: [split('a', [['web-v1', 1]])], authorizationPolicies: [] }, []);
  await h.settle();
  t.equal(h.calls.length, 1);
  h.clock.advance(1000); // the backoff's timer is real (1 s); the clock says it is due
  await new Promise((r) => setTimeout(r, 1100));
  t.equal(h.calls.length, 2, 'retried by its own timer');
});

t.test('at most four writes in flight; an object re-created under the same name is a new one', async (t) => {
  const releases: Array<() => void> = [];
  const clock = new ManualClock(0);
  let inFlight = 0;
  let peak = 0;
  const writer = new StatusWriter({
    patch: () => {
      peak = Math.max(peak, ++inFlight);
      return new Promise<void>((r) => releases.push(() => (inFlight--, r())));
    },
    wallClock: new ManualWallClock(T0),
    clock,
    log: () => {},
  });
  t.teardown(() => writer.stop());
  const many = Array.from({ length: 10 }, (_, i) => split(`s${i}`, [['web-v1', 1]]));
  writer.update({ trafficSplits: many, authorizationPolicies: [] }, []);
  for (let i = 0; i < 20 && releases.length > 0; i++) {
    releases.shift()!();
    await new Promise((r) => setImmediate(r));
  }
  t.equal(peak, 4);
  t.equal(writer.stats().written, 10);
  t.ok(writer.idle);
  // s0 deleted and re-created under the same name before any watch event: a new uid is a new object.
  writer.update({ trafficSplits: [split('s0', [['web-v1', 1]], { uid: 'uid-new' }), ...many.slice(1)], authorizationPolicies: [] }, []);
  await new Promise((r) => setImmediate(r));
  t.equal(releases.length, 1, 'the new s0 is written; the nine others still wait for their echo');
  releases.shift()!();
  await new Promise((r) => setImmediate(r));
});
