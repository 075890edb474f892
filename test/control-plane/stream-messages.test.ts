// Messages on the config stream that are not what the proxy expects (a control plane of another
// version, a bug): each is refused and NACKed with its field, the proxy keeps its config, stays up
// and applies the next good version. A real proxy process; the control plane in this process
// (Certify, over the real CA), its stream route replaced by one that writes the lines below.
import t from 'tap';
import { Registry } from 'prom-client';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CONFIG_ACK_PATH, CONFIG_STREAM_PATH, type Ack } from '../../api/config-stream.ts';
import type { ConfigPushServer } from '../../control-plane/config/push-server.ts';
import { freePort } from '../fixtures/mesh.ts';
import { caWithWebToken, startInProcessControlPlane, startStreamingWebProxy } from '../fixtures/control-plane.ts';

const dir = mkdtempSync(join(tmpdir(), 'meshlet-stream-msg-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const { caFile, anchors, token } = caWithWebToken(dir);

const config = (version: string, port: number) => JSON.stringify({ type: 'config', version, config: { version, services: [{ name: 'api', endpoints: [{ address: `127.0.0.1:${port}` }] }] } });
const LINES = [
  JSON.stringify({ type: 'hello', stream: 's1', pingMs: 60_000 }),
  config('v1', 1001),
  'null',
  '[]',
  '{"type":"config"',
  JSON.stringify({ type: 'delta', version: 'v2', base: 'v1' }),
  JSON.stringify({ type: 'delta', version: 'v3', base: 'v1', upsert: [null], remove: [] }),
  JSON.stringify({ type: 'delta', version: 'v4', base: 'v1', upsert: [], remove: 'api' }),
  JSON.stringify({ type: 'delta', version: 'v5', base: 'v1', upsert: [], remove: [], inbound: 'all' }),
  JSON.stringify({ type: 'config', version: 7 }),
  config('v6', 1006),
];

t.test('malformed stream messages are NACKed with their field; the proxy stays up and applies the next good one', async (t) => {
  const acks: Ack[] = [];
  const streams = new Set<ServerResponse>();
  const push = {
    routes: () => ({
      [CONFIG_STREAM_PATH]: (_req: IncomingMessage, res: ServerResponse) => {
        streams.add(res);
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        // Once: a reconnect (after a crash there is none) gets only the hello.
        res.write(`${streams.size === 1 ? LINES.join('\n') : LINES[0]}\n`);
      },
      [CONFIG_ACK_PATH]: (req: IncomingMessage, res: ServerResponse) => {
        let body = '';
        req.on('data', (c: Buffer) => (body += c.toString()));
        req.on('end', () => {
          acks.push(JSON.parse(body) as Ack);
          res.writeHead(204).end();
        });
      },
    }),
    status: () => [],
  } as unknown as ConfigPushServer;
  const registry = new Registry();
  const port = await freePort();
  const cp = await startInProcessControlPlane({ caFile, port, push, registry });
  t.teardown(async () => {
    for (const s of streams) s.destroy();
    await cp.close();
  });
  const proxy = await startStreamingWebProxy({ port, anchors, token });
  t.teardown(() => proxy.stop());
  await proxy.waitForVersion('v6', 10_000);
  for (let i = 0; i < 100 && !acks.some((a) => a.version === 'v6'); i++) await new Promise((r) => setTimeout(r, 50));
  t.equal(proxy.proc.exitCode, null, 'the proxy is still running');
  t.same(
    // ACKs are separate requests: they may arrive in any order.
    acks.map((a) => [a.version, a.ok, a.problems?.map((p) => p.path)]).toSorted((a, b) => String(a[0]).localeCompare(String(b[0]))),
    [
      ['v1', true, undefined],
      ['v2', false, ['/upsert', '/remove']],
      ['v3', false, ['/upsert/0']],
      ['v4', false, ['/remove']],
      ['v5', false, ['/inbound']],
      ['v6', true, undefined],
    ],
    'each malformed config or delta is NACKed with its field; those without a version are only logged',
  );
  t.match(proxy.stderr(), /unusable message from the control plane/, 'and logged');
  const running = (await (await fetch(`${proxy.adminUrl}/config`)).json()) as { config: { services: Array<{ endpoints: Array<{ address: string }> }> } };
  t.equal(running.config.services[0]?.endpoints[0]?.address, '127.0.0.1:1006', 'the good version is in force');
});
