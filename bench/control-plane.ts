// `npm run bench:control-plane`: a real control plane (folder mode) and N simulated proxies (real
// mTLS streams over loopback, each ACKing every version like a proxy). Measures the time from a
// TrafficSplit edit to each proxy's ACK (p50/p99/max per change) and the control plane's memory per
// connected proxy. N = 100 and 1000 by default (`--proxies 100,1000`, `--changes 5`).
import { spawn, spawnSync } from 'node:child_process';
import https from 'node:https';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { importSecret, issueLeaf, parseSpiffeId } from '../control-plane/ca/index.ts';
import { makeCsr, newKeyPair } from '../proxy/identity/csr.ts';
import { CONFIG_ACK_PATH, encodeParams } from '../api/config-stream.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { proxies: { type: 'string', default: '100,1000' }, changes: { type: 'string', default: '5' } } });

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
/** Services (and identities) in the benchmark mesh. */
const IDENTITIES = 50;
const svc = (i: number) => `apiVersion: meshlet.io/v1alpha1\nkind: MeshService\nmetadata: { name: svc-${i}, namespace: bench }\nspec:\n  endpoints:\n${[1, 2, 3, 4].map((e) => `    - { address: "127.0.0.${e}:${8000 + i}", serviceAccount: svc-${i} }`).join('\n')}\n`;
const split = (w: number) => `apiVersion: meshlet.io/v1alpha1\nkind: TrafficSplit\nmetadata: { name: canary, namespace: bench }\nspec:\n  service: svc-0\n  backends:\n    - { service: svc-1, weight: ${100 - w} }\n    - { service: svc-2, weight: ${w} }\n`;
const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const pct = (xs: number[], p: number) => xs.toSorted((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

async function run(n: number, changes: number): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-cpbench-'));
  const caFile = join(dir, 'ca.json');
  const meshlet = (...a: string[]) => spawnSync(process.execPath, [join(ROOT, 'bin/meshlet.ts'), ...a], { encoding: 'utf8' });
  meshlet('identity', 'init', '--ca-file', caFile);
  const configDir = join(dir, 'mesh');
  mkdirSync(configDir);
  // 50 services with 4 endpoints each, and the split under test.
  writeFileSync(join(configDir, 'services.yaml'), Array.from({ length: IDENTITIES }, (_, i) => svc(i)).join('---\n'));
  const save = (text: string) => {
    writeFileSync(join(configDir, '.split.tmp'), text);
    renameSync(join(configDir, '.split.tmp'), join(configDir, 'split.yaml'));
  };
  save(split(10));
  // Simulated proxy i is a replica of workload svc-(i mod 50), with that service account and
  // serving that service: 50 identities, 50 distinct views (inbound sides differ), N streams.
  const state = JSON.parse(readFileSync(caFile, 'utf8')) as Record<string, unknown>;
  delete state['bootstrapTokenKey'];
  const ca = importSecret(state);
  const tlsOf = Array.from({ length: IDENTITIES }, (_, k) => {
    const keys = newKeyPair();
    const leaf = issueLeaf(ca, { csrPem: makeCsr(keys), identity: parseSpiffeId(`spiffe://cluster.local/ns/bench/sa/svc-${k}`), now: Date.now() });
    return { key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: leaf.certPem + leaf.chainPems.join(''), ca: leaf.bundlePems, checkServerIdentity: () => undefined };
  });
  const [port, admin] = [await freePort(), await freePort()];
  const cp = spawn(process.execPath, ['--max-old-space-size=512', join(ROOT, 'control-plane/main.ts'), '--ca-file', caFile, '--config-dir', configDir, '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${admin}`], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 200; i++) {
      try {
        if ((await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200) break;
      } catch {
        /* starting */
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const rssBefore = rssKb(cp.pid!);
    const agents = tlsOf.map((tls) => new https.Agent({ keepAlive: true, maxSockets: Infinity, ...tls }));
    /** Per proxy: the versions it has ACKed, with the time of each ACK. */
    const acks: Array<Map<string, number>> = Array.from({ length: n }, () => new Map<string, number>());
    const ack = (i: number, stream: string, version: string) => {
      const body = JSON.stringify({ stream, version, ok: true });
      const req = https.request({ host: '127.0.0.1', port, path: CONFIG_ACK_PATH, method: 'POST', agent: agents[i % IDENTITIES], headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => res.resume());
      req.on('error', () => {});
      req.end(body);
    };
    const streams: Array<ReturnType<typeof https.request>> = [];
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        new Promise<void>((resolve, reject) => {
          const req = https.request({ host: '127.0.0.1', port, path: encodeParams({ workload: `svc-${i % IDENTITIES}`, namespace: 'bench', pod: `svc-${i % IDENTITIES}-${i}`, services: [`svc-${i % IDENTITIES}`], version: '' }), agent: false, ...tlsOf[i % IDENTITIES] }, (res) => {
            let buf = '';
            let stream = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => {
              buf += c;
              let nl: number;
              while ((nl = buf.indexOf('\n')) >= 0) {
                const m = JSON.parse(buf.slice(0, nl)) as { type: string; stream?: string; version?: string };
                buf = buf.slice(nl + 1);
                if (m.type === 'hello') stream = m.stream!;
                if (m.type === 'config' || m.type === 'delta') {
                  acks[i]!.set(m.version!, performance.now());
                  ack(i, stream, m.version!);
                  resolve();
                }
              }
            });
          });
          req.on('error', reject);
          req.end();
          streams.push(req);
        }),
      ),
    );
    await new Promise((r) => setTimeout(r, 1000));
    const rssConnected = rssKb(cp.pid!);
    const latencies: number[] = [];
    const perChangeP99: number[] = [];
    for (let c = 0; c < changes; c++) {
      const known = acks.map((m) => new Set(m.keys()));
      const t0 = performance.now();
      save(split(20 + c * 10));
      const deadline = t0 + 30_000;
      const seen: number[] = [];
      while (performance.now() < deadline) {
        seen.length = 0;
        acks.forEach((m, i) => {
          for (const [v, at] of m) if (!known[i]!.has(v)) seen.push(at - t0);
        });
        if (seen.length >= n) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      if (seen.length < n) throw new Error(`only ${seen.length}/${n} proxies received change ${c}`);
      latencies.push(...seen);
      perChangeP99.push(pct(seen, 99));
      await new Promise((r) => setTimeout(r, 600));
    }
    for (const s of streams) s.destroy();
    for (const a of agents) a.destroy();
    return {
      proxies: n,
      changes,
      minMs: Math.round(Math.min(...latencies)),
      p50Ms: Math.round(pct(latencies, 50)),
      p99Ms: Math.round(pct(latencies, 99)),
      maxMs: Math.round(Math.max(...latencies)),
      worstChangeP99Ms: Math.round(Math.max(...perChangeP99)),
      cpRssMb: Math.round(rssConnected / 1024),
      kbPerProxy: Math.round((rssConnected - rssBefore) / n),
    };
  } finally {
    cp.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows = [];
for (const n of values.proxies.split(',').map(Number)) rows.push(await run(n, Number(values.changes)));
process.stdout.write('time from a TrafficSplit edit (file saved) to each simulated proxy receiving it; control plane RSS\n');
process.stdout.write('| proxies | changes | first ms | p50 ms | p99 ms | max ms | worst change p99 ms | CP RSS MB | KB / proxy |\n|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n');
for (const r of rows) process.stdout.write(`| ${r.proxies} | ${r.changes} | ${r.minMs} | ${r.p50Ms} | ${r.p99Ms} | ${r.maxMs} | ${r.worstChangeP99Ms} | ${r.cpRssMb} | ${r.kbPerProxy} |\n`);
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(join(ROOT, 'bench/results/control-plane.json'), JSON.stringify({ at: new Date().toISOString(), rows }, null, 2));
process.exit(0);
