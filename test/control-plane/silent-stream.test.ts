// A config stream that goes silent without closing (a partition that drops packets, a middlebox
// that forgot the connection): the proxy hears no ping for three ping intervals, reconnects, and
// gets the version it missed. A real proxy process; the control plane in this process, reached
// through a TCP relay that can stop carrying bytes on its open connections while new ones still pass.
import t from 'tap';
import net from 'node:net';
import { Registry } from 'prom-client';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../api/runtime.ts';
import type { ProxyConfig } from '../../api/proxy-config.ts';
import type { ControlPlane } from '../../control-plane/control-plane.ts';
import { ConfigPushServer } from '../../control-plane/config/push-server.ts';
import { startProxyProcess, freePort, type ProxyProcess } from '../fixtures/mesh.ts';
import { caWithWebToken, startInProcessControlPlane } from '../fixtures/control-plane.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-silent-'));
const { caFile, anchors, token } = caWithWebToken(dir);

/** Forwards to `target`; blackhole() stops carrying bytes on the connections open now (they stay open). */
async function relay(target: number): Promise<{ port: number; blackhole(): void; close(): void }> {
  const open = new Set<{ dead: boolean; a: net.Socket; b: net.Socket }>();
  const server = net.createServer((a) => {
    const b = net.connect(target, '127.0.0.1');
    const pair = { dead: false, a, b };
    open.add(pair);
    a.on('data', (d) => void (pair.dead || b.write(d)));
    b.on('data', (d) => void (pair.dead || a.write(d)));
    const end = () => {
      open.delete(pair);
      a.destroy();
      b.destroy();
    };
    for (const s of [a, b]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    blackhole: () => {
      for (const p of open) p.dead = true;
    },
    close: () => {
      for (const p of open) {
        p.a.destroy();
        p.b.destroy();
      }
      server.close();
    },
  };
}

let view: ProxyConfig = { version: 'v1', services: [{ name: 'api', endpoints: [{ address: '127.0.0.1:1001' }] }] };
let cp: ControlPlane | undefined;
let push: ConfigPushServer | undefined;
let proxy: ProxyProcess | undefined;
let r: Awaited<ReturnType<typeof relay>> | undefined;
t.teardown(async () => {
  await proxy?.stop();
  r?.close();
  push?.close();
  await cp?.close();
  rmSync(dir, { recursive: true, force: true });
});

t.test('a silent stream is given up after three missed pings; the proxy reconnects and gets what it missed', async (t) => {
  const port = await freePort();
  const registry = new Registry();
  push = new ConfigPushServer({ views: { view: () => ({ version: view.version, config: view }) }, clock: systemClock, registry, pingMs: 200 });
  cp = await startInProcessControlPlane({ caFile, port, push, registry });
  r = await relay(port);
  proxy = await startProxyProcess({
    config: {},
    args: ['--control-plane', `https://127.0.0.1:${r.port}`, '--trust-anchors', anchors, '--bootstrap-token-file', token, '--namespace', 'shop', '--pod', 'web-0'],
    workload: 'web',
    configFromControlPlane: true,
  });
  await proxy.waitForVersion('v1');
  r.blackhole(); // the open stream now carries nothing, and nothing says so
  view = { version: 'v2', services: [{ name: 'api', endpoints: [{ address: '127.0.0.1:1002' }] }] };
  push.changed();
  const t0 = Date.now();
  await proxy.waitForVersion('v2', 5000);
  t.ok(Date.now() - t0 < 5000, `v2 applied ${Date.now() - t0} ms after the stream went silent (3 pings of 200 ms, then a reconnect)`);
  t.match(proxy.stderr(), /no message from the control plane for 0\.6 s/, 'the proxy says why it reconnected');
});
