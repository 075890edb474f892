// A proxy that holds its config stream but stops reading it (a stopped or frozen process, an event
// loop stuck for minutes): the control plane must not queue every version and ping for it. It
// stops writing once the stream's buffer is full and, when the proxy reads again, sends the
// latest view only. A real mTLS stream from a client speaking the protocol by hand (identity
// shop/web), the control plane's servers in this process; model changes that rewrite every service.
import t from 'tap';
import https from 'node:https';
import { Registry } from 'prom-client';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../api/runtime.ts';
import type { ProxyConfig } from '../../api/proxy-config.ts';
import { encodeParams, type StreamMessage } from '../../api/config-stream.ts';
import { ConfigPushServer } from '../../control-plane/config/push-server.ts';
import { importSecret, issueLeaf, parseSpiffeId } from '../../control-plane/ca/index.ts';
import { makeCsr, newKeyPair } from '../../proxy/identity/csr.ts';
import { freePort, metricValue } from '../fixtures/mesh.ts';
import { caWithWebToken, startInProcessControlPlane } from '../fixtures/control-plane.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-stalled-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const { caFile } = caWithWebToken(dir);

/** ~1 MB of view in which every endpoint moves with the version (a full view each time, never a delta). */
const big = (n: number): ProxyConfig => ({
  version: `v${n}`,
  services: Array.from({ length: 6000 }, (_, i) => ({ name: `svc-${i}.shop`, hosts: [`svc-${i}`, `svc-${i}.shop.svc.cluster.local`], endpoints: [{ address: `10.${n % 250}.${i >> 8}.${i & 255}:8080`, labels: { workload: `svc-${i}`, namespace: 'shop' } }] })),
});
const CHANGES = 40;

t.test('a proxy that stops reading its stream is sent nothing more until it reads, then only the latest view', async (t) => {
  let view = big(0);
  const registry = new Registry();
  const push = new ConfigPushServer({ views: { view: () => ({ version: view.version, config: view }) }, clock: systemClock, registry, debounceMs: 5, maxDelayMs: 10, pingMs: 50 });
  const port = await freePort();
  const cp = await startInProcessControlPlane({ caFile, port, push, registry });
  t.teardown(async () => {
    push.close();
    await cp.close();
  });

  const state = JSON.parse(readFileSync(caFile, 'utf8')) as Record<string, unknown>;
  const keys = newKeyPair();
  const leaf = issueLeaf(importSecret(state), { csrPem: makeCsr(keys), identity: parseSpiffeId('spiffe://cluster.local/ns/shop/sa/web'), now: Date.now() });
  const got: StreamMessage[] = [];
  let res: import('node:http').IncomingMessage | undefined;
  const req = https.request(
    { host: '127.0.0.1', port, path: encodeParams({ workload: 'web', namespace: 'shop', pod: 'web-0', services: [], version: '' }), key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: leaf.certPem + leaf.chainPems.join(''), ca: leaf.bundlePems, checkServerIdentity: () => undefined, agent: false },
    (r) => {
      res = r;
      let buf = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => {
        buf += c;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          got.push(JSON.parse(buf.slice(0, nl)) as StreamMessage);
          buf = buf.slice(nl + 1);
        }
      });
    },
  );
  req.on('error', () => {});
  req.end();
  t.teardown(() => void req.destroy());
  const configs = () => got.filter((m) => m.type === 'config' || m.type === 'delta');
  for (let i = 0; i < 200 && configs().length < 1; i++) await new Promise((r) => setTimeout(r, 20));
  t.match(configs()[0], { type: 'config', version: 'v0' }, 'the stream starts with the full view');

  // The proxy stops reading (its socket too: nothing is taken from the kernel).
  res!.pause();
  req.socket!.pause();
  const pushes = async () => metricValue(await registry.metrics(), 'meshlet_cp_pushes_total');
  const before = await pushes();
  for (let n = 1; n <= CHANGES; n++) {
    view = big(n);
    push.changed();
    await new Promise((r) => setTimeout(r, 40));
  }
  await new Promise((r) => setTimeout(r, 1000)); // 20 more ping intervals, no change
  const whileStalled = (await pushes()) - before;
  // The kernel's socket buffers take a few versions before the stream's buffer fills; after that
  // nothing is written. Before the fix every version went out (40, ~40 MB buffered for one proxy).
  t.ok(whileStalled <= 12, `versions written while the proxy did not read: ${whileStalled} of ${CHANGES} (bound 12)`);

  const seen = got.length;
  res!.resume();
  req.socket!.resume();
  for (let i = 0; i < 500 && configs().at(-1)?.version !== `v${CHANGES}`; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(configs().at(-1)?.version, `v${CHANGES}`, 'once it reads again it gets the latest version');
  // What was queued for it: what it read before the latest version. Pings go out every 50 ms: ~50
  // over the 2.6 s it did not read before the fix; now only those written before its buffer filled.
  const queued = got.slice(seen, got.findLastIndex((m) => m.type === 'config' || m.type === 'delta'));
  const pings = queued.filter((m) => m.type === 'ping').length;
  t.ok(pings <= 15, `pings queued for it: ${pings} (bound 15)`);
  t.ok(configs().length <= whileStalled + 2, `it received ${configs().length} versions, not one per change`);
});
