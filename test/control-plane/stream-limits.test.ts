// A config stream that sends one endless line (a broken control plane, or anything that passed mTLS
// as it): the proxy holds at most MAX_STREAM_LINE_BYTES of it, drops the stream with the reason,
// reconnects with its usual backoff and applies what the next stream brings. And the control plane
// never sends a line that long (the proxy would drop it, reconnect and get it again, forever).
// Real proxy processes; the control plane's Certify in this process, its stream route replaced by
// one that writes the lines, or the real push server with a scripted view.
import t from 'tap';
import { Registry } from 'prom-client';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONFIG_ACK_PATH, CONFIG_STREAM_PATH, MAX_STREAM_LINE_BYTES } from '../../api/config-stream.ts';
import { ConfigPushServer } from '../../control-plane/config/push-server.ts';
import { systemClock } from '../../api/runtime.ts';
import type { ProxyConfig } from '../../api/proxy-config.ts';
import { freePort, metricValue, UNINSTRUMENTED } from '../fixtures/mesh.ts';
import { caWithWebToken, startInProcessControlPlane, startStreamingWebProxy } from '../fixtures/control-plane.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-stream-limits-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const { caFile, anchors, token } = caWithWebToken(dir);

const line = (m: unknown) => `${JSON.stringify(m)}\n`;
const config = (version: string, port: number) => line({ type: 'config', version, config: { version, services: [{ name: 'api', endpoints: [{ address: `127.0.0.1:${port}` }] }] } });
/** Bounded: an unbounded reader would hold all of it (and a proxy with a 64 MB heap cap would not survive half). */
const ENDLESS_MAX = 16 * MAX_STREAM_LINE_BYTES;

/** Writes one line that never ends, as fast as the proxy reads, until the proxy hangs up (or ENDLESS_MAX). */
function endless(res: ServerResponse): Promise<number> {
  return new Promise((resolve) => {
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    res.once('close', () => resolve(sent));
    const pump = (): void => {
      while (!res.destroyed && sent < ENDLESS_MAX) {
        sent += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      resolve(sent);
    };
    pump();
  });
}

t.test('an endless line: the proxy drops the stream past the bound, stays small, reconnects and applies the next stream\'s config', async (t) => {
  const streams: ServerResponse[] = [];
  let sentEndless: Promise<number> | undefined;
  const push = {
    routes: () => ({
      [CONFIG_STREAM_PATH]: (_req: IncomingMessage, res: ServerResponse) => {
        streams.push(res);
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write(line({ type: 'hello', stream: `s${streams.length}`, pingMs: 60_000 }));
        if (streams.length === 1) {
          res.write(config('v1', 1001));
          sentEndless = endless(res);
        } else res.write(config('v2', 1002));
      },
      [CONFIG_ACK_PATH]: (req: IncomingMessage, res: ServerResponse) => {
        req.resume();
        req.on('end', () => res.writeHead(204).end());
      },
    }),
    status: () => [],
  } as unknown as ConfigPushServer;
  const port = await freePort();
  const cp = await startInProcessControlPlane({ caFile, port, push, registry: new Registry() });
  t.teardown(async () => {
    for (const s of streams) s.destroy();
    await cp.close();
  });
  // Its own memory, without coverage hooks.
  const proxy = await startStreamingWebProxy({ port, anchors, token, env: UNINSTRUMENTED });
  t.teardown(() => proxy.stop());
  await proxy.waitForVersion('v2', 20_000);
  const sent = await sentEndless!;
  t.equal(proxy.proc.exitCode, null, 'the proxy is still running');
  t.ok(sent > MAX_STREAM_LINE_BYTES && sent < ENDLESS_MAX, `it hung up after reading past the bound, long before the sender stopped (${(sent / 1048576).toFixed(1)} MiB sent)`);
  t.ok(streams.length >= 2, 'and reconnected');
  const peakMb = proxy.rssKb() / 1024;
  // Idle ~65 MB, the held line at most 16 MiB (Buffers, outside the 64 MB heap cap) and TLS buffers.
  t.ok(peakMb < 150, `peak RSS ${peakMb.toFixed(0)} MB stays bounded`);
  t.match(proxy.stderr(), new RegExp(`config stream lost; reconnecting.*a message from the control plane is longer than ${MAX_STREAM_LINE_BYTES} bytes`), 'the reason is logged');
  const running = (await (await fetch(`${proxy.adminUrl}/config`)).json()) as { config: { services: Array<{ endpoints: Array<{ address: string }> }> } };
  t.equal(running.config.services[0]?.endpoints[0]?.address, '127.0.0.1:1002', 'the next stream\'s config is in force');
});

const small = (version: string): ProxyConfig => ({ version, services: [{ name: 'api', endpoints: [{ address: '127.0.0.1:1003' }] }] });

t.test('the control plane does not send a view longer than a proxy reads: it logs and counts it, the proxy keeps its config and its stream', async (t) => {
  let view = small('v1');
  const logs: string[] = [];
  const registry = new Registry();
  const push = new ConfigPushServer({ views: { view: () => ({ version: view.version, config: view }) }, clock: systemClock, registry, debounceMs: 0, log: (msg) => logs.push(msg) });
  let streams = 0;
  const routes = push.routes();
  const counting = {
    routes: () => ({
      ...routes,
      [CONFIG_STREAM_PATH]: (req: IncomingMessage, res: ServerResponse) => {
        streams++;
        routes[CONFIG_STREAM_PATH]!(req, res);
      },
    }),
    status: () => push.status(),
  } as unknown as ConfigPushServer;
  const port = await freePort();
  const cp = await startInProcessControlPlane({ caFile, port, push: counting, registry });
  t.teardown(async () => {
    push.close();
    await cp.close();
  });
  const proxy = await startStreamingWebProxy({ port, anchors, token });
  t.teardown(() => proxy.stop());
  await proxy.waitForVersion('v1', 10_000);
  // Over the bound by its trust bundle alone (what it says does not matter: it is never sent).
  view = { ...small('v2'), trustBundle: 'x'.repeat(MAX_STREAM_LINE_BYTES) };
  push.changed();
  for (let i = 0; i < 100 && !logs.includes('cannot send view: larger than a proxy reads; the proxy keeps what it has'); i++) await new Promise((r) => setTimeout(r, 20));
  t.ok(logs.includes('cannot send view: larger than a proxy reads; the proxy keeps what it has'), 'logged');
  t.equal(metricValue(await registry.metrics(), 'meshlet_cp_view_errors_total'), 1, 'counted as a view that could not be built');
  await new Promise((r) => setTimeout(r, 500));
  t.equal(streams, 1, 'the proxy kept its stream (nothing was sent for it to drop)');
  view = small('v3');
  push.changed();
  await proxy.waitForVersion('v3', 5000);
  t.pass('the next view that fits is sent');
});
