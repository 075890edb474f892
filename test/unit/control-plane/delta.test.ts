// Delta pushes, pure: the control plane's delta (diff.ts deltaOf) applied by the proxy's
// applyDelta (api/config-stream.ts) gives exactly the full view, for every kind of change; a
// delta for another base applies to nothing.
import t from 'tap';
import { applyDelta } from '../../../api/config-stream.ts';
import type { ProxyConfig, Service } from '../../../api/proxy-config.ts';
import { deltaOf } from '../../../control-plane/config/diff.ts';

const svc = (name: string, port: number): Service => ({ name, endpoints: [{ address: `127.0.0.1:${port}` }] });
const base: ProxyConfig = { version: 'v1', services: [svc('a.shop', 1), svc('b.shop', 2), svc('c.shop', 3)], inbound: { ports: [] } as unknown as ProxyConfig['inbound'], trustBundle: 'PEM-1' };

const many = (v: string, p: number): ProxyConfig => ({ version: v, services: Array.from({ length: 200 }, (_, i) => svc(`s${String(i).padStart(3, '0')}.shop`, i === 7 ? p : 10_000 + i)) });

const cases: Array<[string, ProxyConfig]> = [
  ['one service changed', { ...base, version: 'v2', services: [svc('a.shop', 1), svc('b.shop', 20), svc('c.shop', 3)] }],
  ['a service added in the middle', { ...base, version: 'v3', services: [svc('a.shop', 1), svc('aa.shop', 9), svc('b.shop', 2), svc('c.shop', 3)] }],
  ['a service removed', { ...base, version: 'v4', services: [svc('a.shop', 1), svc('c.shop', 3)] }],
  ['the trust bundle changed', { ...base, version: 'v5', trustBundle: 'PEM-2' }],
  ['the trust bundle and inbound removed', { version: 'v6', services: base.services }],
  ['nothing but the version', { ...base, version: 'v7' }],
];

for (const [name, next] of cases) {
  t.test(name, async (t) => {
    const d = deltaOf(base, next);
    t.equal(d.base, 'v1');
    t.equal(d.version, next.version);
    t.same(applyDelta(base, d), next, 'base + delta = the full view');
    t.ok(d.upsert.every((s) => !base.services.some((b) => JSON.stringify(b) === JSON.stringify(s))), 'only changed services travel');
  });
}

t.test('a delta applies only to its base', async (t) => {
  const d = deltaOf(base, cases[0]![1]);
  t.equal(applyDelta({ ...base, version: 'v0' }, d), undefined);
});

t.test('a one-service change in a large view is a small message', async (t) => {
  const [a, b] = [many('a', 1), many('b', 2)];
  const delta = JSON.stringify(deltaOf(a, b)).length;
  const full = JSON.stringify(b).length;
  t.ok(delta * 20 < full, `delta ${delta} B vs full ${full} B`);
});
