// What an HTTPRoute's status.parents says for the mesh (route-status.ts), from the problems the real
// model builder reports, and how the status writer writes it beside other controllers' entries:
// on a manual clock, with a scripted API (its conflicts included).
import t from 'tap';
import { ManualClock } from '../../../api/runtime.ts';
import { ManualWallClock } from '../../../control-plane/ca/wall-clock.ts';
import { splitsFromHTTPRoute } from '../../../control-plane/config/kube-model.ts';
import { ROUTE_CONTROLLER_NAME, desiredRouteStatus, hasRouteStatus, routeContentKey, type RouteParentStatus } from '../../../control-plane/config/route-status.ts';
import { StatusWriter, type StatusPatch } from '../../../control-plane/config/status-writer.ts';
import type { StatusTarget } from '../../../control-plane/config/resource-status.ts';

const T0 = Date.parse('2026-03-01T10:00:00Z');
const SERVICES = new Set(['api.shop', 'api-v1.shop', 'api-v2.shop', 'web.shop']);
const FILTER = { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x', value: 'y' }] } };
const svcParent = (name: string, extra: Record<string, unknown> = {}) => ({ group: '', kind: 'Service', name, ...extra });
const route = (spec: Record<string, unknown>, o: { rv?: string; generation?: number; parents?: unknown[] } = {}) => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { namespace: 'shop', name: 'r', uid: 'uid-r', generation: o.generation ?? 1, resourceVersion: o.rv ?? '1' },
  spec,
  ...(o.parents ? { status: { parents: o.parents } } : {}),
});
const theirs: RouteParentStatus = { parentRef: { kind: 'Gateway', name: 'edge' }, controllerName: 'example.com/gateway', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', lastTransitionTime: '2026-01-01T00:00:00Z' }] };
/** What the mesh says of `r`, with the problems the real model builder finds in it. */
const statusOf = (r: ReturnType<typeof route>, nowMs = T0) => desiredRouteStatus(r, SERVICES, splitsFromHTTPRoute(r).problems, nowMs);
const conds = (p: RouteParentStatus | undefined) => p?.conditions.map((c) => [c.type, c.status, c.reason]);

t.test('one entry per Service parent; Accepted, PartiallyInvalid, ResolvedRefs from what the mesh does with each rule', async (t) => {
  const whole = statusOf(route({ parentRefs: [svcParent('api', { port: 80 }), svcParent('api', { port: 80 }), { name: 'edge' }], rules: [{ backendRefs: [{ name: 'api-v1' }, { name: 'api-v2' }] }] }))!;
  t.same(whole.ours.map((p) => p.parentRef), [svcParent('api', { port: 80 })], 'a parentRef named twice is one entry; a Gateway parent is not ours');
  t.same(conds(whole.ours[0]), [['Accepted', 'True', 'Accepted'], ['ResolvedRefs', 'True', 'ResolvedRefs']]);
  t.match(whole.ours[0]!.conditions[0], { observedGeneration: 1, lastTransitionTime: '2026-03-01T10:00:00Z', message: 'The route is in force.' });
  t.equal(whole.ours[0]!.controllerName, ROUTE_CONTROLLER_NAME);

  const part = statusOf(route({ parentRefs: [svcParent('api')], rules: [{ filters: [FILTER], backendRefs: [{ name: 'api-v1' }] }, { backendRefs: [{ name: 'api-v2' }] }] }))!;
  t.same(conds(part.ours[0]), [['Accepted', 'True', 'Accepted'], ['PartiallyInvalid', 'True', 'UnsupportedValue'], ['ResolvedRefs', 'True', 'ResolvedRefs']]);
  t.match(part.ours[0]!.conditions[1]!.message, /^Dropped Rule 0: \/spec\/rules\/0\/filters: /, 'the message starts "Dropped Rule", as the spec asks');

  const none = statusOf(route({ parentRefs: [svcParent('api')], rules: [{ filters: [FILTER], backendRefs: [{ name: 'api-v1' }] }] }))!;
  t.same(conds(none.ours[0]), [['Accepted', 'False', 'UnsupportedValue'], ['ResolvedRefs', 'True', 'ResolvedRefs']], 'no rule left: not accepted');

  const kind = statusOf(route({ parentRefs: [svcParent('api')], rules: [{ backendRefs: [{ group: 'example.com', kind: 'Bucket', name: 'b' }] }, { backendRefs: [{ name: 'api-v1' }] }] }))!;
  t.same(conds(kind.ours[0]), [['Accepted', 'True', 'Accepted'], ['PartiallyInvalid', 'True', 'UnsupportedValue'], ['ResolvedRefs', 'False', 'InvalidKind']]);

  const missing = statusOf(route({ parentRefs: [svcParent('api'), svcParent('gone')], rules: [{ backendRefs: [{ name: 'api-v1' }, { name: 'api-v9' }, { name: 'web', namespace: 'shop' }] }] }))!;
  t.same(missing.ours.map(conds), [
    [['Accepted', 'True', 'Accepted'], ['ResolvedRefs', 'False', 'BackendNotFound']],
    [['Accepted', 'False', 'NoMatchingParent'], ['ResolvedRefs', 'False', 'BackendNotFound']],
  ]);
  t.equal(missing.ours[0]!.conditions[1]!.message, '/spec/rules/0/backendRefs/1: unknown service "api-v9.shop": left out of the rule\'s split (its weight goes to the other backends) until it exists');
  t.equal(missing.ours[1]!.conditions[0]!.message, '/spec/parentRefs/1: unknown service "gone.shop": the route applies once it exists');

  t.equal(statusOf(route({ parentRefs: [{ name: 'edge' }], rules: [] })), undefined, 'only Gateway parents and no entry of ours: nothing to say');
});

t.test('other controllers\' entries are kept as they are; ours replaced; times carried while a status holds', async (t) => {
  const spec = { parentRefs: [svcParent('api')], rules: [{ backendRefs: [{ name: 'api-v1' }] }] };
  const first = statusOf(route(spec, { parents: [theirs] }))!;
  t.same(first.parents, [theirs, ...first.ours], 'theirs first, as it was; then ours');
  const carrying = route(spec, { parents: [...first.ours, theirs], rv: '2' });
  t.ok(hasRouteStatus(carrying, statusOf(carrying, T0 + 3_600_000)!), 'an hour later, unchanged: times carried over, nothing to write (whatever the order of the entries)');

  const later = statusOf(route({ ...spec, rules: [{ backendRefs: [{ name: 'api-v9' }] }] }, { parents: [theirs, ...first.ours], generation: 2 }), T0 + 3_600_000)!;
  t.same(later.ours[0]!.conditions.map((c) => [c.type, c.lastTransitionTime, c.observedGeneration]), [['Accepted', '2026-03-01T10:00:00Z', 2], ['ResolvedRefs', '2026-03-01T11:00:00Z', 2]], 'only the condition whose status changed moves');
  t.not(routeContentKey(later), routeContentKey(first));

  const gone = statusOf(route({ parentRefs: [{ name: 'edge' }], rules: [] }, { parents: [theirs, ...first.ours] }))!;
  t.same(gone.parents, [theirs], 'no Service parent any more: our entry is removed, theirs kept');
});

// ---- the writer ------------------------------------------------------------------------------------

interface Call {
  target: StatusTarget;
  body: { metadata: Record<string, unknown>; status: { parents: RouteParentStatus[] } };
}

function harness(fail: (n: number) => Error | undefined = () => undefined) {
  const clock = new ManualClock(0);
  const calls: Call[] = [];
  const logs: Array<[string, string]> = [];
  const patch: StatusPatch = async (target, body) => {
    calls.push({ target, body: body as Call['body'] });
    const e = fail(calls.length);
    if (e) throw e;
  };
  const writer = new StatusWriter({ patch, wallClock: new ManualWallClock(T0), clock, random: () => 1, log: (l, m) => logs.push([l, m]) });
  return { clock, calls, logs, writer, settle: () => new Promise((r) => setImmediate(r)) };
}
const objects = (r: unknown) => ({ trafficSplits: [], authorizationPolicies: [], httpRoutes: [r], services: [...SERVICES] });
const conflict = () => Object.assign(new Error('HTTP-Code: 409'), { code: 409, body: JSON.stringify({ message: 'the object has been modified; please apply your changes to the latest version and try again' }) });

t.test('the writer applies every entry with the resourceVersion read; a conflict is written again over the next version, with no backoff', async (t) => {
  const h = harness((n) => (n === 1 ? conflict() : undefined));
  t.teardown(() => h.writer.stop());
  const spec = { parentRefs: [svcParent('api')], rules: [{ backendRefs: [{ name: 'api-v1' }] }] };
  const r1 = route(spec, { parents: [theirs], rv: '7' });
  h.writer.update(objects(r1), splitsFromHTTPRoute(r1).problems);
  await h.settle();
  t.equal(h.calls.length, 1);
  t.match(h.calls[0]!.body, { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'shop', uid: 'uid-r', resourceVersion: '7' } }, 'uid and the resourceVersion read as preconditions');
  t.same(h.calls[0]!.body.status.parents.map((p) => p.controllerName), ['example.com/gateway', ROUTE_CONTROLLER_NAME], "the other controller's entry goes with ours (the list is atomic)");

  // The conflict: another controller wrote meanwhile. Nothing until the watch shows that write...
  h.clock.advance(5_000);
  h.writer.update(objects(r1), []);
  await h.settle();
  t.equal(h.calls.length, 1, 'not retried over the version that conflicted');
  t.notOk(h.logs.some(([l]) => l === 'warn'), 'a conflict is not a failure to warn about');
  // ...then at once, over it, with its new entry.
  const theirs2 = { ...theirs, conditions: [{ ...theirs.conditions[0]!, message: 'theirs, rewritten' }] };
  const r2 = route(spec, { parents: [theirs2], rv: '8' });
  h.writer.update(objects(r2), []);
  await h.settle();
  t.equal(h.calls.length, 2, 'written over the new version, no backoff');
  t.equal(h.calls[1]!.body.metadata.resourceVersion, '8');
  t.same(h.calls[1]!.body.status.parents[0], theirs2, 'carrying their latest entry');
  t.same(h.writer.stats(), { written: 1, failed: 0 });

  // Our echo: nothing more.
  const r3 = route(spec, { parents: h.calls[1]!.body.status.parents, rv: '9' });
  h.writer.update(objects(r3), []);
  await h.settle();
  t.equal(h.calls.length, 2, 'the echo of our write: nothing written');
});
