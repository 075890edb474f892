// A proxy that names the namespaces it calls (MESHLET_OUTBOUND_NAMESPACES, what the injector
// writes for config.meshlet.io/outbound-namespaces) gets a view of those and its own, plus the
// split backends they route to, not the whole mesh: a real control plane (folder mode, services in
// three namespaces) and real proxies streaming from it.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxyProcess, type ProxyProcess } from '../fixtures/mesh.ts';
import { startControlPlane, identityArgs, type ControlPlane } from '../fixtures/control-plane.ts';
import { encodeParams, decodeParams } from '../../api/config-stream.ts';
import { parseOutboundNamespaces } from '../../api/outbound-namespaces.ts';

const service = (ns: string, name: string) => `apiVersion: meshlet.io/v1alpha1
kind: MeshService
metadata: { name: ${name}, namespace: ${ns} }
spec: { endpoints: [] }
---
`;

let dir: string;
let cp: ControlPlane;

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshlet-outbound-ns-'));
  writeFileSync(join(dir, 'mesh.yaml'), [
    service('shop', 'web'), service('shop', 'cart'), service('payments', 'billing'), service('other', 'reports'), service('other', 'cart-v2'),
    // shop's cart sends a share to other's cart-v2: a proxy that sees cart must see its backend.
    `apiVersion: meshlet.io/v1alpha1
kind: TrafficSplit
metadata: { name: cart-canary, namespace: shop }
spec: { service: cart, backends: [{ service: cart, weight: 9 }, { service: cart-v2.other, weight: 1 }] }
`,
  ].join(''));
  cp = await startControlPlane({ args: ['--config-dir', dir] });
});
t.teardown(async () => {
  await cp?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function servicesOf(env: NodeJS.ProcessEnv): Promise<string[]> {
  const p: ProxyProcess = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, 'shop', 'web'), env });
  try {
    const doc = (await (await fetch(`${p.adminUrl}/config`)).json()) as { config: { services: Array<{ name: string }> } } | { services: Array<{ name: string }> };
    const services = 'config' in doc ? doc.config.services : doc.services;
    return services.map((s) => s.name).toSorted();
  } finally {
    await p.stop();
  }
}

t.test('without it, the whole mesh', async (t) => {
  t.same(await servicesOf({}), ['billing.payments', 'cart-v2.other', 'cart.shop', 'reports.other', 'web.shop']);
});

t.test('with payments: its own namespace, payments, and the split backend cart-v2.other (not reports.other)', async (t) => {
  t.same(await servicesOf({ MESHLET_OUTBOUND_NAMESPACES: 'payments' }), ['billing.payments', 'cart-v2.other', 'cart.shop', 'web.shop']);
});

t.test('set but empty: its own namespace only (and the split backend)', async (t) => {
  t.same(await servicesOf({ MESHLET_OUTBOUND_NAMESPACES: '' }), ['cart-v2.other', 'cart.shop', 'web.shop']);
});

t.test('a malformed list: the proxy stops at start (exit 2), naming it; the stream refuses one that slips through', async (t) => {
  const r = parseOutboundNamespaces('payments,Not_A_Namespace');
  t.match(r, { ok: false, problem: /"Not_A_Namespace" is not a namespace name/ });
  t.same(parseOutboundNamespaces(' b, a,a '), { ok: true, namespaces: ['a', 'b'] }, 'trimmed, once each, sorted');
  t.match(parseOutboundNamespaces(Array.from({ length: 65 }, (_, i) => `n${i}`).join(',')), { ok: false, problem: /at most 64/ });
  const url = encodeParams({ workload: 'web', namespace: 'shop', pod: 'web-0', services: [], version: '', namespaces: ['a', 'b'] });
  t.same(decodeParams(url), { ok: true, params: { workload: 'web', namespace: 'shop', pod: 'web-0', services: [], version: '', namespaces: ['a', 'b'] } }, 'the stream parameter round-trips');
  t.match(decodeParams(url.replace('namespaces=a%2Cb', 'namespaces=A%21')), { ok: false, problem: /^namespaces: "A!" is not a namespace name/ });
  const p = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: identityArgs(cp, 'shop', 'web'), env: { MESHLET_OUTBOUND_NAMESPACES: 'payments,Bad!' } }).catch((e: Error) => e);
  t.ok(p instanceof Error, 'the proxy did not start');
  t.match((p as Error).message, /MESHLET_OUTBOUND_NAMESPACES: "Bad!" is not a namespace name/);
});
