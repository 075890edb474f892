// The first config a proxy gets from a freshly started control plane (a real process) carries
// the CA's trust bundle, in every mode (no source, a folder, a Kubernetes API): the bundle is in
// the views before the config stream serves, not added by a second push a moment later.
import t, { type Test } from 'tap';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importSecret, issueLeaf, parseSpiffeId } from '../../control-plane/ca/index.ts';
import { makeCsr, newKeyPair } from '../../proxy/identity/csr.ts';
import { encodeParams, type StreamMessage } from '../../api/config-stream.ts';
import { startControlPlane, type ControlPlane } from '../fixtures/control-plane.ts';
import { startKube } from '../fixtures/kube.ts';

/** Past the 1 s after which the old control plane corrected a bundle-less first push. */
const WATCH_MS = 1500;

/**
 * Opens the config stream as a fresh proxy of shop/web (it runs nothing yet) as soon as the control
 * plane is ready, and returns every config and delta it receives within WATCH_MS.
 */
type Pushed = Extract<StreamMessage, { type: 'config' | 'delta' }>;

async function firstMessages(t: Test, cp: ControlPlane): Promise<{ messages: Pushed[]; anchor: string }> {
  const state = JSON.parse(readFileSync(cp.caFile, 'utf8')) as Record<string, unknown>;
  delete state['bootstrapTokenKey'];
  const keys = newKeyPair();
  const leaf = issueLeaf(importSecret(state), { csrPem: makeCsr(keys), identity: parseSpiffeId('spiffe://cluster.local/ns/shop/sa/web'), now: Date.now() });
  const url = new URL(cp.url);
  const messages: Pushed[] = [];
  const req = https.request({
    host: url.hostname, port: Number(url.port), path: encodeParams({ workload: 'web', namespace: 'shop', pod: 'web-0', services: [], version: '' }),
    key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: leaf.certPem + leaf.chainPems.join(''), ca: leaf.bundlePems, checkServerIdentity: () => undefined,
  }, (res) => {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      buf += c;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const m = JSON.parse(buf.slice(0, nl)) as StreamMessage;
        buf = buf.slice(nl + 1);
        if (m.type === 'config' || m.type === 'delta') messages.push(m);
      }
    });
  });
  req.on('error', () => {});
  req.end();
  t.teardown(() => void req.destroy());
  await new Promise((r) => setTimeout(r, WATCH_MS));
  return { messages, anchor: leaf.bundlePems.join('') };
}

const twoAnchors = (m: Pushed): boolean => ((m.type === 'config' ? m.config.trustBundle : m.trustBundle) ?? '').split('-----BEGIN CERTIFICATE-----').length - 1 === 2;

function checkBundle(t: Test, messages: Pushed[], anchor: string, cp: ControlPlane): void {
  const first = messages[0];
  if (first?.type !== 'config') return void t.fail(`the first message is a full config: ${JSON.stringify(messages).slice(0, 300)}\n${cp.stderr()}`);
  t.equal(first.config.trustBundle, anchor, "the proxy's first config carries the CA's trust bundle");
  const later = messages.slice(1).filter((m) => m.type === 'config' ? m.config.trustBundle !== anchor : m.trustBundle !== undefined);
  t.same(later.map((m) => m.version), [], 'and no later push carries another one');
}

t.test('no config source: the first config carries the trust bundle, and nothing corrects it', async (t) => {
  const cp = await startControlPlane();
  t.teardown(() => cp.stop());
  const { messages, anchor } = await firstMessages(t, cp);
  checkBundle(t, messages, anchor, cp);
  t.equal(messages.length, 1, 'one push: the view does not change after it');

  // A rotation step read by the control plane's reload (every second here) reaches the open stream.
  cp.identity('add-anchor');
  for (let i = 0; !messages.slice(1).some(twoAnchors); i++) {
    if (i > 100) return void t.fail(`add-anchor did not reach the stream: ${JSON.stringify(messages.slice(1)).slice(0, 300)}\n${cp.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.pass('after add-anchor, the next push carries both anchors');
});

t.test('config folder: the first config carries the trust bundle, and nothing corrects it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-first-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'api.yaml'), 'apiVersion: meshlet.io/v1alpha1\nkind: MeshService\nmetadata: { name: api, namespace: shop }\nspec: { endpoints: [{ address: "127.0.0.1:1" }] }\n');
  const cp = await startControlPlane({ args: ['--config-dir', dir] });
  t.teardown(() => cp.stop());
  const { messages, anchor } = await firstMessages(t, cp);
  checkBundle(t, messages, anchor, cp);
  t.equal(messages.length, 1, 'one push: the view does not change after it');
});

t.test('Kubernetes API (no meshlet CRDs installed): the first config, the listed cluster, carries the trust bundle', async (t) => {
  const kube = await startKube();
  t.teardown(() => kube.stop());
  const cp = await startControlPlane({ args: ['--kubeconfig', kube.kubeconfigPath] });
  t.teardown(() => cp.stop());
  const { messages, anchor } = await firstMessages(t, cp);
  checkBundle(t, messages, anchor, cp);
});
