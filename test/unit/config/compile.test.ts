// Validation and compile() agree: every document parseProxyConfig accepts compiles, so a problem
// is always refused with its path before compile() could refuse it at "/" (backoff base > cap and
// baseEjection > maxEjection, with defaults and values inherited from the service).
import t from 'tap';
import { parseProxyConfig, formatProblems } from '../../../api/proxy-config.ts';
import { compile, StateRegistry } from '../../../proxy/config/compile.ts';
import { ManualClock, seededRandom } from '../../../api/runtime.ts';

// compile() asks the factory for a pool per endpoint and never uses it: any value will do.
const registry = () => new StateRegistry(new ManualClock(), seededRandom(1), { create: () => ({}), close: () => {} });

function compiles(doc: unknown): string | undefined {
  const parsed = parseProxyConfig(doc);
  if (!parsed.ok) throw new Error(`not valid: ${formatProblems(parsed.problems)}`);
  try {
    compile(parsed.value, registry());
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

const backoff = (base: number | undefined, cap: number | undefined) => ({ ...(base !== undefined ? { base } : {}), ...(cap !== undefined ? { cap } : {}) });
const service = (extra: Record<string, unknown>) => ({ version: 'v', services: [{ name: 'api', endpoints: [{ address: '127.0.0.1:8080' }], ...extra }] });

t.test('a value that conflicts with a default is refused with its path', async (t) => {
  const cases: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ retry: { backoff: { base: 1000 } } }, '/services/0/retry/backoff/base', /backoff base is larger than its cap: 1000 ms \(set here\) > 250 ms \(the default\)/],
    [{ retry: { backoff: { cap: 10 } } }, '/services/0/retry/backoff/cap', /25 ms \(the default\) > 10 ms \(set here\)/],
    [{ breaker: { baseEjection: 120_000 } }, '/services/0/breaker/baseEjection', /baseEjection is larger than maxEjection: 120000 ms \(set here\) > 60000 ms \(the default\)/],
    [{ breaker: { maxEjection: 500 } }, '/services/0/breaker/maxEjection', /1000 ms \(the default\) > 500 ms \(set here\)/],
  ];
  for (const [extra, path, message] of cases) {
    const r = parseProxyConfig(service(extra));
    t.notOk(r.ok, `${JSON.stringify(extra)} refused`);
    if (r.ok) continue;
    t.same(r.problems.map((p) => p.path), [path]);
    t.match(r.problems[0]!.message, message);
  }
});

t.test('base and cap set at different levels (service and route) are checked merged', async (t) => {
  const r = parseProxyConfig(
    service({
      retry: { backoff: { cap: 100 } },
      routes: [
        { name: 'slow', retry: { backoff: { base: 500 } } },
        { name: 'fine', retry: { backoff: { base: 50 } } },
        { name: 'inherits', retry: { attempts: 2 } },
        { name: 'own-cap', retry: { backoff: { base: 500, cap: 1000 } } },
      ],
    }),
  );
  t.notOk(r.ok);
  if (r.ok) return;
  t.same(r.problems, [{ path: '/services/0/routes/0/retry/backoff/base', message: "backoff base is larger than its cap: 500 ms (set here) > 100 ms (the service's)" }]);
  const r2 = parseProxyConfig(service({ retry: { backoff: { base: 400 } }, routes: [{ name: 'r', retry: { backoff: { cap: 300 } } }] }));
  t.same(r2.ok ? [] : r2.problems.map((p) => p.path), ['/services/0/retry/backoff/base', '/services/0/routes/0/retry/backoff/cap'], 'the service against the default cap, the route against the service\'s base');
});

t.test('every accepted combination of levels and defaults compiles: compile() never meets a problem', async (t) => {
  const values = [undefined, 10, 100, 1000, 120_000];
  let accepted = 0;
  let refused = 0;
  for (const svcBase of values)
    for (const svcCap of values)
      for (const routeBase of values)
        for (const routeCap of values.slice(0, 3))
          for (const withRoutes of [false, true]) {
            const ejection = { ...(svcBase !== undefined ? { baseEjection: svcBase * 2 } : {}), ...(routeCap !== undefined ? { maxEjection: routeCap * 100 } : {}) };
            const doc = service({
              retry: { backoff: backoff(svcBase, svcCap) },
              breaker: ejection,
              ...(withRoutes ? { routes: [{ name: 'r', retry: { backoff: backoff(routeBase, routeCap) } }] } : {}),
            });
            const parsed = parseProxyConfig(doc);
            if (!parsed.ok) {
              refused++;
              continue;
            }
            accepted++;
            const failure = compiles(doc);
            if (failure !== undefined) t.fail(`accepted but compile() refuses ${JSON.stringify(doc.services[0])}: ${failure}`);
          }
  t.ok(accepted > 50 && refused > 50, `both outcomes exercised (${accepted} accepted, ${refused} refused)`);
});

/** A valid config whose one endpoint carries the label workload=`workload`. */
function labelled(workload: string) {
  const r = parseProxyConfig({ version: workload, services: [{ name: 'api', endpoints: [{ address: '127.0.0.1:8080', labels: { workload } }] }] });
  if (!r.ok) throw new Error(formatProblems(r.problems));
  return r.value;
}

t.test('an endpoint whose labels change keeps its state (pool, breaker) and takes the new labels', async (t) => {
  const state = registry();
  const v1 = compile(labelled('api-v1'), state).services.get('api')!.endpoints[0]!;
  const v2 = compile(labelled('api-v2'), state).services.get('api')!.endpoints[0]!;
  t.equal(v2, v1, 'the same endpoint state');
  t.same(v2.labels, { workload: 'api-v2' }, 'with the labels of the config in force');
});

/** Each route's gRPC retry codes, as compiled. */
function grpcCodes(doc: unknown): number[][] {
  const parsed = parseProxyConfig(doc);
  if (!parsed.ok) throw new Error(formatProblems(parsed.problems));
  return compile(parsed.value, registry()).services.get('api')!.routes.map((r) => [...r.retry.grpcStatuses]);
}

t.test('retry.grpcStatuses: UNAVAILABLE by default, the service\'s, then the route\'s', async (t) => {
  t.same(grpcCodes(service({})), [[14]]);
  t.same(grpcCodes(service({ retry: { grpcStatuses: [14, 8] } })), [[14, 8]]);
  t.same(grpcCodes(service({ retry: { grpcStatuses: [14, 8] }, routes: [{ name: 'r', retry: { grpcStatuses: [4] } }, { name: 's' }] })), [[4], [14, 8]]);
});
