// The mesh from a folder of YAML, end to end with real processes: a control plane watching the
// folder, three proxies streaming their views with identities, a 90/10 TrafficSplit that lands
// within ±3 %, an edit to 50/50 under load with 0 failed requests, a broken file reported with
// file/object/field while nothing else changes, and a file rewritten in place in two steps (emptied,
// or a valid first document, then the rest) never pushed half-written.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { startUpstream, startProxyProcess, freePort, reservedPort, type ProxyProcess, type Upstream } from '../fixtures/mesh.ts';
import { cli } from '../fixtures/control-plane.ts';

const CP_MAIN = fileURLToPath(new URL('../../control-plane/main.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'meshlet-folder-mesh-'));
const configDir = join(dir, 'mesh');
const caFile = join(dir, 'ca.json');

function save(name: string, text: string): void {
  const tmp = join(configDir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, join(configDir, name)); // an editor's atomic save
}

const meshService = (name: string, address: string, sa: string) => `apiVersion: meshlet.io/v1alpha1
kind: MeshService
metadata: { name: ${name}, namespace: shop }
spec:
  endpoints:
    - { address: "${address}", serviceAccount: ${sa} }
`;
const split = (v1: number, v2: number) => `apiVersion: meshlet.io/v1alpha1
kind: TrafficSplit
metadata: { name: api-canary, namespace: shop }
spec:
  service: api
  backends:
    - { service: api-v1, weight: ${v1} }
    - { service: api-v2, weight: ${v2} }
`;

let cp: ChildProcess;
let cpErr = '';
let adminPort = 0;
const procs: ProxyProcess[] = [];
const apps: Upstream[] = [];
let web: ProxyProcess;

t.before(async () => {
  cli('identity', 'init', '--ca-file', caFile);
  const anchors = join(dir, 'anchors.pem');
  writeFileSync(anchors, (JSON.parse(readFileSync(caFile, 'utf8')) as { anchor: { certPem: string } }).anchor.certPem);
  const port = await freePort();
  adminPort = await freePort();
  // Tokens first: the first one adds the token key to the CA state the control plane loads.
  for (const sa of ['api-v1', 'api-v2', 'web']) writeFileSync(join(dir, `${sa}.token`), cli('identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', 'shop', '--service-account', sa).trim());
  const proxyArgs = (sa: string, service: string) => {
    const token = join(dir, `${sa}.token`);
    return ['--control-plane', `https://127.0.0.1:${port}`, '--trust-anchors', anchors, '--bootstrap-token-file', token, '--namespace', 'shop', '--service', service, '--access-log', 'off'];
  };
  // The server proxies' inbound ports must be known before the folder names them.
  const inbound = { v1: await reservedPort(), v2: await reservedPort() };
  const { mkdirSync } = await import('node:fs');
  mkdirSync(configDir);
  save('api.yaml', `${meshService('api-v1', `127.0.0.1:${inbound.v1}`, 'api-v1')}---\n${meshService('api-v2', `127.0.0.1:${inbound.v2}`, 'api-v2')}---\napiVersion: meshlet.io/v1alpha1\nkind: MeshService\nmetadata: { name: api, namespace: shop }\nspec: { endpoints: [] }\n`);
  save('canary.yaml', split(90, 10));
  cp = spawn(process.execPath, [CP_MAIN, '--ca-file', caFile, '--config-dir', configDir, '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  cp.stderr!.on('data', (d: Buffer) => (cpErr += d.toString()));
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${adminPort}/ready`)).status === 200) break;
    } catch {
      /* starting */
    }
    if (i > 200) throw new Error(`control plane not ready:\n${cpErr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const v of ['v1', 'v2'] as const) {
    const app = await startUpstream();
    apps.push(app);
    procs.push(await startProxyProcess({ config: {}, configFromControlPlane: true, appPort: app.port, workload: `api-${v}`, args: [...proxyArgs(`api-${v}`, `api-${v}`), '--inbound-listen', `127.0.0.1:${inbound[v]}`] }));
  }
  web = await startProxyProcess({ config: {}, configFromControlPlane: true, workload: 'web', args: proxyArgs('web', 'web') });
  procs.push(web);
});
t.teardown(async () => {
  for (const p of procs) await p.stop();
  for (const a of apps) await a.close();
  cp?.kill('SIGTERM');
  await new Promise((r) => (cp && cp.exitCode === null ? cp.once('exit', r) : r(null)));
  rmSync(dir, { recursive: true, force: true });
});

async function send(pool: Pool, n: number): Promise<{ ok: number; failures: string[] }> {
  let ok = 0;
  const failures: string[] = [];
  let left = n;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (left-- > 0) {
        const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'api' } });
        await r.body.text();
        if (r.statusCode === 200) ok++;
        else failures.push(`${r.statusCode} ${String(r.headers['meshlet-proxy-error'] ?? '')}`);
      }
    }),
  );
  return { ok, failures };
}

const versionOf = async (p: ProxyProcess) => ((await (await fetch(`${p.adminUrl}/config`)).json()) as { version: string }).version;

t.test('a 90/10 TrafficSplit from the folder lands within ±3 % over mTLS', async (t) => {
  const pool = new Pool(web.outboundUrl, { connections: 8 });
  const [v1, v2] = [apps[0]!, apps[1]!];
  const r = await send(pool, 2000);
  await pool.close();
  t.same(r.failures, [], `no failures (${r.ok} ok)`);
  const share = v2.hits / (v1.hits + v2.hits);
  t.ok(Math.abs(share - 0.1) <= 0.03, `v2 share ${(share * 100).toFixed(1)} % is 10 ± 3 %`);
  const status = (await (await fetch(`http://127.0.0.1:${adminPort}/proxies`)).json()) as Array<{ identity: string; acked: string | null }>;
  t.same(status.map((s) => s.identity).toSorted(), ['api-v1', 'api-v2', 'web'].map((sa) => `spiffe://cluster.local/ns/shop/sa/${sa}`), 'three proxies connected with their identities');
  t.ok(status.every((s) => s.acked?.startsWith('h-')), 'every proxy ACKed its view');
});

t.test('editing the file to 50/50 under load: applied within a second, 0 failed requests', async (t) => {
  const before = await versionOf(web);
  const pool = new Pool(web.outboundUrl, { connections: 8 });
  const [v1, v2] = [apps[0]!, apps[1]!];
  const load = send(pool, 3000);
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  save('canary.yaml', split(50, 50));
  let now = before;
  while (now === before && Date.now() - t0 < 3000) {
    await new Promise((r) => setTimeout(r, 20));
    now = await versionOf(web);
  }
  const took = Date.now() - t0;
  const r = await load;
  t.not(now, before, 'the proxy runs a new version');
  t.ok(took < 1000, `the edit reached the proxy in ${took} ms`);
  t.same(r.failures, [], `0 failed requests during the change (${r.ok} ok)`);
  const h1 = v1.hits;
  const h2 = v2.hits;
  const after = await send(pool, 2000);
  await pool.close();
  t.same(after.failures, []);
  const share = (v2.hits - h2) / (v1.hits - h1 + v2.hits - h2);
  t.ok(Math.abs(share - 0.5) <= 0.05, `v2 share now ${(share * 100).toFixed(1)} %`);
});

t.test('a broken file is reported with file/object/field; nothing else changes', async (t) => {
  const before = await versionOf(web);
  save('broken.yaml', `apiVersion: meshlet.io/v1alpha1\nkind: TrafficSplit\nmetadata: { name: bad, namespace: shop }\nspec:\n  service: api\n  backends:\n    - { service: api-v1, weight: -5 }\n`);
  let problems: Array<{ file?: string; object?: string; path: string; message: string }> = [];
  for (let i = 0; i < 60 && problems.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    problems = (await (await fetch(`http://127.0.0.1:${adminPort}/config-problems`)).json()) as typeof problems;
  }
  const p = problems.find((x) => x.file === 'broken.yaml');
  t.ok(p, `reported: ${JSON.stringify(problems)}`);
  t.equal(p?.object, 'TrafficSplit/shop/bad', 'the object');
  t.match(p?.path, /\/spec\/backends\/0\/weight/, 'the field');
  await new Promise((r) => setTimeout(r, 500));
  t.equal(await versionOf(web), before, 'the proxies keep their config');
  const pool = new Pool(web.outboundUrl);
  const r = await send(pool, 50);
  await pool.close();
  t.same(r.failures, [], 'and keep serving');
  t.match(cpErr, /config problem/, 'the control plane logs it');
});

t.test('a file rewritten in place in two steps is never pushed half-written', async (t) => {
  const file = join(configDir, 'api.yaml');
  const whole = readFileSync(file, 'utf8');
  const firstDoc = whole.slice(0, whole.indexOf('---\n'));
  const before = await versionOf(web);
  const mark = web.stderr().length;
  // Traffic and the proxy's version, watched all along.
  const pool = new Pool(web.outboundUrl, { connections: 4 });
  const versions = new Set<string>();
  const failures = new Map<string, number>();
  let ok = 0;
  const done = new AbortController();
  const watching = Promise.all([
    (async () => {
      while (!done.signal.aborted) {
        versions.add(await versionOf(web));
        await new Promise((r) => setTimeout(r, 10));
      }
    })(),
    ...Array.from({ length: 4 }, async () => {
      while (!done.signal.aborted) {
        const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'api' } });
        await r.body.text();
        if (r.statusCode === 200) ok++;
        else {
          const what = `${r.statusCode} ${String(r.headers['meshlet-proxy-error'] ?? '')}`;
          failures.set(what, (failures.get(what) ?? 0) + 1);
        }
      }
    }),
  ]);
  // A writer that truncates, pauses longer than the folder's quiet time (100 ms) but shorter than
  // that plus the 100 ms to a second read, then writes the rest: first after nothing, then after a
  // valid first document. Each step alone is a valid folder (api-v1, or all of api.yaml, gone).
  for (const part of ['', firstDoc]) {
    writeFileSync(file, part);
    await new Promise((r) => setTimeout(r, 150));
    appendFileSync(file, whole.slice(part.length));
    await new Promise((r) => setTimeout(r, 600));
  }
  done.abort();
  await watching;
  await pool.close();
  t.same([...versions], [before], 'the proxy kept its version throughout');
  t.notMatch(web.stderr().slice(mark), /config applied/, 'no other config was ever applied');
  t.same(Object.fromEntries(failures), {}, `0 failed requests (${ok} ok)`);
});
