// `npm run bench:injector`: the real control-plane process serving the injector webhook over HTTPS
// (certificate from its CA, checked by the client as the API server checks it) and a client sending
// AdmissionReviews of a realistic Pod (3 containers, 6 ports, 8 annotations). Measures review latency
// (send → full answer) p50/p99/max on a reused connection (the API server keeps them alive), with N
// concurrent clients, and with a new TLS connection per review; plus the server-side histogram.
// Options: --requests 3000 --concurrency 1,16 --warmup 300.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { initCa, trustBundle } from '../control-plane/ca/index.ts';
import { encodeCaDocument } from '../control-plane/store/ca-document.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { requests: { type: 'string', default: '3000' }, concurrency: { type: 'string', default: '1,16' }, warmup: { type: 'string', default: '300' } } });
const REQUESTS = Number(values.requests);
const WARMUP = Number(values.warmup);

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
const pct = (xs: number[], p: number) => xs.toSorted((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const ms = (x: number) => x.toFixed(2);

const pod = {
  apiVersion: 'v1', kind: 'Pod',
  metadata: {
    generateName: 'web-7d4b9c-', namespace: 'shop',
    labels: { app: 'web', 'pod-template-hash': '7d4b9c', 'app.kubernetes.io/name': 'web', tier: 'frontend' },
    annotations: { 'config.meshlet.io/proxy-cpu-request': '200m', 'config.meshlet.io/skip-outbound-ports': '5432', 'team.example/owner': 'shop', 'deploy.example/sha': 'a1b2c3d4', 'kubernetes.io/change-cause': 'rollout', 'example.com/a': '1', 'example.com/b': '2', 'example.com/c': '3' },
    ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-7d4b9c', uid: '0', controller: true }],
  },
  spec: {
    serviceAccountName: 'web',
    initContainers: [{ name: 'migrate', image: 'registry.example/web:1', command: ['migrate'] }],
    containers: ['web', 'worker', 'metrics'].map((name, i) => ({
      name, image: `registry.example/${name}:1`,
      ports: [{ containerPort: 8080 + i }, { containerPort: 9090 + i, name: `m${i}` }],
      env: [{ name: 'A', value: 'x' }, { name: 'B', value: 'y' }],
      resources: { requests: { cpu: '100m', memory: '128Mi' } },
    })),
    volumes: [{ name: 'data', emptyDir: {} }],
  },
};
const review = (uid: string) => JSON.stringify({
  apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
  request: { uid, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: 'shop', object: pod },
});

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-bench-injector-'));
  const state = initCa({ now: Date.now() });
  writeFileSync(join(dir, 'ca.json'), encodeCaDocument({ state }));
  const ca = trustBundle(state).join('');
  const [listen, admin, webhook] = [await freePort(), await freePort(), await freePort()];
  const cp = spawn(process.execPath, [join(ROOT, 'control-plane/main.ts'), '--ca-file', join(dir, 'ca.json'), '--listen', `127.0.0.1:${listen}`, '--admin-listen', `127.0.0.1:${admin}`, '--webhook-listen', `127.0.0.1:${webhook}`], { stdio: ['ignore', 'ignore', 'ignore'] });
  const stop = () => {
    cp.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', () => cp.kill('SIGKILL'));
  for (let i = 0; ; i++) {
    if ((await fetch(`http://127.0.0.1:${admin}/ready`).then((r) => r.status, () => 0)) === 200) break;
    if (i > 300) throw new Error('control plane not ready');
    await new Promise((r) => setTimeout(r, 50));
  }

  const send = (agent: https.Agent | false, uid: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const body = review(uid);
      const t0 = performance.now();
      const req = https.request({ host: '127.0.0.1', port: webhook, method: 'POST', path: '/inject', ca, servername: 'meshlet-webhook.meshlet-system.svc', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          const dt = performance.now() - t0;
          const r = JSON.parse(text) as { response?: { uid?: string; patchType?: string } };
          if (res.statusCode !== 200 || r.response?.uid !== uid || r.response.patchType !== 'JSONPatch') reject(new Error(`bad answer ${res.statusCode}: ${text.slice(0, 200)}`));
          else resolve(dt);
        });
      });
      req.on('error', reject);
      req.end(body);
    });

  const run = async (label: string, concurrency: number, n: number, fresh: boolean) => {
    const agent = fresh ? false : new https.Agent({ keepAlive: true, maxSockets: concurrency });
    let next = 0;
    const lat: number[] = [];
    const worker = async (warm: boolean, count: number) => {
      while (next < count) {
        const i = next++;
        const dt = await send(agent, `uid-${i}`);
        if (!warm) lat.push(dt);
      }
    };
    next = 0;
    await Promise.all(Array.from({ length: concurrency }, () => worker(true, Math.min(WARMUP, n))));
    next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: concurrency }, () => worker(false, n)));
    const secs = (performance.now() - t0) / 1000;
    if (agent) agent.destroy();
    console.log(`| ${label} | ${concurrency} | ${lat.length} | ${ms(pct(lat, 50))} | ${ms(pct(lat, 99))} | ${ms(Math.max(...lat))} | ${Math.round(lat.length / secs)} |`);
  };

  console.log(`injector webhook over HTTPS (control-plane process), review of a 3-container Pod; ${REQUESTS} reviews after ${WARMUP} warm-up\n`);
  console.log('| connection | concurrency | reviews | p50 ms | p99 ms | max ms | reviews/s |');
  console.log('|---|--:|--:|--:|--:|--:|--:|');
  for (const c of values.concurrency.split(',').map(Number)) await run('kept alive', c, REQUESTS, false);
  await run('new TLS per review', 1, Math.min(REQUESTS, 500), true);
  const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const sum = Number(/^meshlet_injection_duration_seconds_sum\{outcome="injected"\} (\S+)/m.exec(metrics)?.[1]);
  const count = Number(/^meshlet_injection_duration_seconds_count\{outcome="injected"\} (\S+)/m.exec(metrics)?.[1]);
  console.log(`\nserver side (meshlet_injection_duration_seconds, body received → answer written): mean ${ms((sum / count) * 1000)} ms over ${count} reviews`);
  stop();
}

main().catch((e: Error) => {
  console.error(`bench:injector: ${e.message}`);
  process.exit(1);
});
