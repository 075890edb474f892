// `npm start`: a small mesh on loopback. Three tiny services, each a separate process behind its
// own meshlet proxy: a load generator calls `web`; `web` calls `api`, split 90/10 between `api-v1`
// and `api-v2`. Prints the admin URLs and, every second, what the proxies measure. Ctrl-C (or
// SIGTERM) stops every process it started, in order, and removes its temp folder.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { proxyArgv } from '../proxy/launch.ts';
import type { ProxyConfig } from '../api/proxy-config.ts';

const APP = fileURLToPath(new URL('./app.ts', import.meta.url));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Workload {
  name: string;
  appPort: number;
  inbound: number;
  outbound: number;
  admin: number;
}

const { values } = parseArgs({
  options: {
    rps: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '0' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('usage: npm start [-- --rps N] [-- --seconds S]\n  --rps N      load generator rate (default 50)\n  --seconds S  stop after S seconds (default: run until Ctrl-C)\n');
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'meshlet-demo-'));
const children: ChildProcess[] = [];
let stopping = false;
let ticker: NodeJS.Timeout | undefined;

function start(name: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  c.stderr!.on('data', (d: Buffer) => {
    const line = d.toString().trim();
    if (/error|refused|exited/i.test(line) && !stopping) process.stderr.write(`[${name}] ${line}\n`);
  });
  c.once('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`[${name}] exited (${code ?? signal})\n`);
  });
  children.push(c);
  return c;
}

async function stopAll(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  process.stdout.write('\nstopping: load generator, apps, then proxies (draining)...\n');
  // Reverse start order: load first, proxies last, each waited for.
  for (const c of children.toReversed()) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  }
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write('stopped; nothing left running.\n');
}

async function waitReady(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      /* starting */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not ready`);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const names = ['web', 'api-v1', 'api-v2'];
  const w: Record<string, Workload> = {};
  for (const name of names) w[name] = { name, appPort: await freePort(), inbound: await freePort(), outbound: await freePort(), admin: await freePort() };
  const ep = (n: string) => ({ address: `127.0.0.1:${w[n]!.inbound}`, labels: { workload: n, namespace: 'demo' } });
  const config: ProxyConfig = {
    version: 'demo-1',
    services: [
      { name: 'web', endpoints: [ep('web')] },
      { name: 'api', endpoints: [], routes: [{ name: 'canary', backends: [{ service: 'api-v1', weight: 90 }, { service: 'api-v2', weight: 10 }] }] },
      { name: 'api-v1', endpoints: [ep('api-v1')] },
      { name: 'api-v2', endpoints: [ep('api-v2')] },
    ],
    // Until identities land, the demo's proxies speak plaintext to each other.
    inbound: { defaultPolicy: 'all' },
  };
  const configPath = join(dir, 'mesh.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  for (const n of names) {
    const x = w[n]!;
    start(`${n}/proxy`, proxyArgv(['--config', configPath, '--outbound-listen', `127.0.0.1:${x.outbound}`, '--inbound-listen', `127.0.0.1:${x.inbound}`, '--app', `127.0.0.1:${x.appPort}`, '--admin-listen', `127.0.0.1:${x.admin}`, '--workload', n, '--namespace', 'demo', '--service', n.replace(/-v\d$/, ''), '--access-log', 'off']));
  }
  await Promise.all(names.map((n) => waitReady(`http://127.0.0.1:${w[n]!.admin}/ready`)));
  start('web/app', [APP, '--name', 'web', '--port', String(w['web']!.appPort), '--call', 'http://api/'], { HTTP_PROXY: `http://127.0.0.1:${w['web']!.outbound}`, NODE_USE_ENV_PROXY: '1', NO_PROXY: '' });
  start('api-v1/app', [APP, '--name', 'api-v1', '--port', String(w['api-v1']!.appPort)]);
  start('api-v2/app', [APP, '--name', 'api-v2', '--port', String(w['api-v2']!.appPort)]);
  // The load generator is a meshed client too: it sends through web's inbound proxy.
  await Promise.all(names.map((n) => waitReady(`http://127.0.0.1:${w[n]!.appPort}/healthz`)));
  start('load', [APP, '--load', `http://127.0.0.1:${w['web']!.inbound}/`, '--rps', values.rps]);

  const first = await (async () => {
    for (let i = 0; i < 100; i++) {
      try {
        const r = await fetch(`http://127.0.0.1:${w['web']!.inbound}/`);
        if (r.status === 200) return performance.now() - t0;
      } catch {
        /* not yet */
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return NaN;
  })();

  process.stdout.write(`
meshlet demo mesh is up (first request through the mesh after ${(first / 1000).toFixed(2)} s)

  load → web → api (split: api-v1 90 %, api-v2 10 %)

  config (edit it: the proxies apply a saved change within a second)
    ${configPath}
  admin endpoints (/ready /metrics /config)
${names.map((n) => `    ${n.padEnd(7)} http://127.0.0.1:${w[n]!.admin}/metrics`).join('\n')}
  web's app: http://127.0.0.1:${w['web']!.appPort}/   via its proxy: http://127.0.0.1:${w['web']!.inbound}/

Ctrl-C stops everything.
`);

  const webAdmin = `http://127.0.0.1:${w['web']!.admin}/metrics`;
  let last = new Map<string, number>();
  ticker = setInterval(async () => {
    try {
      const text = await (await fetch(webAdmin)).text();
      const now = new Map<string, number>();
      for (const line of text.split('\n')) {
        const m = /^meshlet_requests_total\{(.*)\} (\d+)/.exec(line);
        if (!m || !m[1]!.includes('direction="outbound"')) continue;
        const dst = /dst_service="([^"]*)"/.exec(m[1]!)?.[1] ?? '?';
        const ok = m[1]!.includes('classification="success"');
        const k = `${dst}|${ok ? 'ok' : 'fail'}`;
        now.set(k, (now.get(k) ?? 0) + Number(m[2]));
      }
      const parts: string[] = [];
      for (const dst of ['api-v1', 'api-v2']) {
        const d = (k: string) => (now.get(k) ?? 0) - (last.get(k) ?? 0);
        const ok = d(`${dst}|ok`);
        const fail = d(`${dst}|fail`);
        parts.push(`${dst}: ${ok + fail} req/s, ${ok + fail ? ((100 * ok) / (ok + fail)).toFixed(1) : '-'} % ok`);
      }
      last = now;
      process.stdout.write(`${new Date().toISOString().slice(11, 19)}  web → ${parts.join('   ')}\n`);
    } catch {
      /* a scrape failed; try again next second */
    }
  }, 1000);
  ticker.unref();

  const seconds = Number(values.seconds);
  if (seconds > 0) setTimeout(() => void stopAll().then(() => process.exit(0)), seconds * 1000);
}

process.on('SIGINT', () => void stopAll().then(() => process.exit(0)));
process.on('SIGTERM', () => void stopAll().then(() => process.exit(0)));
main().catch(async (err: Error) => {
  process.stderr.write(`meshlet demo: ${err.message}\n`);
  await stopAll();
  process.exit(1);
});
