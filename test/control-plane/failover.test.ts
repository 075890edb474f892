// Two control-plane replicas (real processes on the same CA and folder); a proxy that lists both
// fails over when its replica dies: traffic keeps flowing with 0 failed requests, the stream and
// the config move to the other replica, and the version does not change (same content, same hash).
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { startUpstream, startProxyProcess, freePort, type ProxyProcess, type Upstream } from '../fixtures/mesh.ts';
import { cli } from '../fixtures/control-plane.ts';

const CP_MAIN = fileURLToPath(new URL('../../control-plane/main.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'meshlet-failover-'));
const caFile = join(dir, 'ca.json');
const configDir = join(dir, 'mesh');

interface Replica {
  proc: ChildProcess;
  url: string;
  admin: string;
}

async function startReplica(): Promise<Replica> {
  const [port, admin] = [await freePort(), await freePort()];
  const proc = spawn(process.execPath, [CP_MAIN, '--ca-file', caFile, '--config-dir', configDir, '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`], { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200) break;
    } catch {
      /* starting */
    }
    if (i > 200) throw new Error('replica not ready');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { proc, url: `https://127.0.0.1:${port}`, admin: `http://127.0.0.1:${admin}` };
}

let a: Replica;
let b: Replica;
let app: Upstream;
let proxy: ProxyProcess;

t.before(async () => {
  cli('identity', 'init', '--ca-file', caFile);
  const token = join(dir, 'web.token');
  writeFileSync(token, cli('identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', 'shop', '--service-account', 'web').trim());
  const anchors = join(dir, 'anchors.pem');
  writeFileSync(anchors, (JSON.parse(readFileSync(caFile, 'utf8')) as { anchor: { certPem: string } }).anchor.certPem);
  app = await startUpstream();
  mkdirSync(configDir);
  writeFileSync(join(configDir, 'api.yaml'), `apiVersion: meshlet.io/v1alpha1\nkind: MeshService\nmetadata: { name: api, namespace: shop }\nspec:\n  endpoints:\n    - { address: "${app.address}" }\n`);
  a = await startReplica();
  b = await startReplica();
  proxy = await startProxyProcess({
    config: {},
    configFromControlPlane: true,
    workload: 'web',
    args: ['--control-plane', `${a.url},${b.url}`, '--trust-anchors', anchors, '--bootstrap-token-file', token, '--namespace', 'shop', '--access-log', 'off'],
  });
});
t.teardown(async () => {
  await proxy?.stop();
  for (const r of [a, b]) if (r && r.proc.exitCode === null) r.proc.kill('SIGKILL');
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

const connected = async (r: Replica) => ((await (await fetch(`${r.admin}/proxies`)).json()) as unknown[]).length;

t.test('the replica dies under load: the proxy fails over with 0 failed requests', async (t) => {
  t.equal(await connected(a), 1, 'the stream starts on the first replica');
  t.equal(await connected(b), 0);
  const version = ((await (await fetch(`${proxy.adminUrl}/config`)).json()) as { version: string }).version;
  const pool = new Pool(proxy.outboundUrl, { connections: 4 });
  const run = { stopped: false };
  let ok = 0;
  const failures: number[] = [];
  const workers = Array.from({ length: 4 }, async () => {
    while (!run.stopped) {
      const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'api' } });
      await r.body.text();
      if (r.statusCode === 200) ok++;
      else failures.push(r.statusCode);
    }
  });
  await new Promise((r) => setTimeout(r, 200));
  a.proc.kill('SIGKILL');
  let onB = 0;
  for (let i = 0; i < 60 && onB === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    onB = await connected(b);
  }
  await new Promise((r) => setTimeout(r, 200));
  run.stopped = true;
  await Promise.all(workers);
  await pool.close();
  t.equal(onB, 1, 'the stream moved to the other replica');
  t.same(failures, [], `0 failed requests (${ok} ok)`);
  const ready = (await (await fetch(`${proxy.adminUrl}/ready`)).json()) as { controlPlane: { connected: boolean; replica: string } };
  t.equal(ready.controlPlane.replica, b.url, 'readiness names the replica in use');
  t.equal(ready.controlPlane.connected, true);
  const after = ((await (await fetch(`${proxy.adminUrl}/config`)).json()) as { version: string }).version;
  t.equal(after, version, 'both replicas derive the same version from the same folder');
});
