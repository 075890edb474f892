// `npm start`: the whole mesh on one machine, no Kubernetes. A control plane (CA + config push)
// watches examples/ (or --config-dir); three services (web → api v1/v2), each a separate process
// behind its own proxy with its own identity, mTLS on every hop; a meshed load generator calls web.
// Prints where to look and, every second, what web's proxy measures. Ctrl-C (or SIGTERM) stops
// every process it started, in order, and removes its temp folder.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { proxyArgv } from '../proxy/launch.ts';
import { startPrometheus } from './prometheus.ts';

const APP = fileURLToPath(new URL('./app.ts', import.meta.url));
const MESHLET = fileURLToPath(new URL('../bin/meshlet.ts', import.meta.url));
const CONTROL_PLANE = fileURLToPath(new URL('../control-plane/main.ts', import.meta.url));
const EXAMPLES = fileURLToPath(new URL('../examples', import.meta.url));

/**
 * Fixed ports (README "npm start"), as offsets from --port-base (default 14000): the examples'
 * endpoints name the inbound ones (127.0.0.1:14143...). With another base (tests, a second mesh
 * beside the first), the demo watches a copy of the config folder with those addresses moved.
 */
const DEFAULT_PORT_BASE = 14000;
const PORT_OFFSETS = { certify: 443, cpAdmin: 990, web: 143, 'api-v1': 243, 'api-v2': 343 } as const;
const NAMESPACE = 'demo';

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

const { values } = parseArgs({
  options: {
    rps: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '0' },
    'config-dir': { type: 'string', default: EXAMPLES },
    'port-base': { type: 'string', default: String(DEFAULT_PORT_BASE) },
    prometheus: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  },
});
const portBase = Number(values['port-base']);
if (!Number.isInteger(portBase) || portBase < 1024 || portBase > 64000) {
  process.stderr.write(`meshlet demo: --port-base must be an integer in [1024, 64000], got ${values['port-base']}\n`);
  process.exit(2);
}
const PORTS = Object.fromEntries(Object.entries(PORT_OFFSETS).map(([k, off]) => [k, portBase + off])) as Record<keyof typeof PORT_OFFSETS, number>;
if (values.help) {
  process.stdout.write(`usage: npm start [-- --rps N] [-- --seconds S] [-- --config-dir DIR]
  --rps N           load generator rate (default 50)
  --seconds S       stop after S seconds (default: run until Ctrl-C)
  --config-dir DIR  the mesh's YAML (default examples/; edit it while the mesh runs)
  --port-base N     ports are N + 443 (control plane), N + 990 (its admin), N + 143/243/343
                    (inbound of web, api-v1, api-v2); default 14000. With another base the mesh
                    watches a copy of the config folder whose 127.0.0.1:14xxx addresses are moved
  --prometheus      also run Prometheus (when installed) on port N + 90, scraping the mesh
ports: control plane ${PORTS.certify} (admin ${PORTS.cpAdmin}); proxies' inbound: web ${PORTS.web}, api-v1 ${PORTS['api-v1']}, api-v2 ${PORTS['api-v2']}
`);
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'meshlet-demo-'));
const configDir = portBase === DEFAULT_PORT_BASE ? values['config-dir'] : movedConfig(values['config-dir'], join(dir, 'config'));

/** A copy of the config folder's YAML files with the demo's 127.0.0.1:14xxx addresses moved to the port base. */
function movedConfig(from: string, to: string): string {
  mkdirSync(to);
  for (const f of readdirSync(from)) {
    if (!/\.ya?ml$/.test(f)) continue;
    const text = readFileSync(join(from, f), 'utf8').replace(/127\.0\.0\.1:14(\d{3})\b/g, (_m, off: string) => `127.0.0.1:${portBase + Number(off)}`);
    writeFileSync(join(to, f), text);
  }
  return to;
}
const children: ChildProcess[] = [];
let stopping = false;
let ticker: NodeJS.Timeout | undefined;

function start(name: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  c.stderr!.on('data', (d: Buffer) => {
    for (const line of d.toString().trim().split('\n')) {
      if (/"level":"(warn|error)"|Error|refused|exited/.test(line) && !stopping) process.stderr.write(`[${name}] ${line}\n`);
    }
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
  process.stdout.write('\nstopping: load generator, apps, proxies (draining), control plane...\n');
  // Reverse start order, each waited for.
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
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      /* starting */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not ready`);
}

function meshlet(...args: string[]): string {
  const r = spawnSync(process.execPath, [MESHLET, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`meshlet ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

function meshletAsync(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [MESHLET, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`meshlet ${args.join(' ')}: ${err || out}`))));
  });
}

interface Workload {
  name: string;
  inbound: number | undefined;
  outbound: number;
  admin: number;
  app: number | undefined;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  // The CA: a trust anchor and an issuer, and one bootstrap token per workload identity.
  const caFile = join(dir, 'ca.json');
  meshlet('identity', 'init', '--ca-file', caFile);
  const anchors = join(dir, 'anchors.pem');
  writeFileSync(anchors, (JSON.parse(readFileSync(caFile, 'utf8')) as { anchor: { certPem: string } }).anchor.certPem);
  const w: Record<string, Workload> = {};
  for (const name of ['web', 'api-v1', 'api-v2', 'load'] as const) {
    w[name] = { name, inbound: name === 'load' ? undefined : PORTS[name], outbound: await freePort(), admin: await freePort(), app: name === 'load' ? undefined : await freePort() };
  }
  // The first token adds the token key to the CA state; the rest only read it, so they run in
  // parallel (each is a CLI process). Then every proxy starts at once.
  const token = (sa: string) => meshletAsync('identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', NAMESPACE, '--service-account', sa);
  const names = Object.keys(w);
  const firstToken = await token(names[0]!);
  const tokens = [firstToken, ...(await Promise.all(names.slice(1).map(token)))];
  // The control plane starts once the CA state holds the token key (it reads it at start).
  start('control-plane', [CONTROL_PLANE, '--ca-file', caFile, '--config-dir', configDir, '--listen', `127.0.0.1:${PORTS.certify}`, '--admin-listen', `127.0.0.1:${PORTS.cpAdmin}`, '--reload-interval', '2s']);
  await waitReady(`http://127.0.0.1:${PORTS.cpAdmin}/ready`);
  for (const [i, x] of Object.values(w).entries()) {
    const tokenFile = join(dir, `${x.name}.token`);
    writeFileSync(tokenFile, tokens[i]!.trim(), { mode: 0o600 });
    start(`${x.name}/proxy`, proxyArgv([
      '--control-plane', `https://127.0.0.1:${PORTS.certify}`, '--trust-anchors', anchors, '--bootstrap-token-file', tokenFile,
      '--outbound-listen', `127.0.0.1:${x.outbound}`, '--inbound-listen', x.inbound ? `127.0.0.1:${x.inbound}` : 'off',
      '--app', `127.0.0.1:${x.app ?? 1}`, '--admin-listen', `127.0.0.1:${x.admin}`,
      '--workload', x.name, '--namespace', NAMESPACE, '--service', x.name, '--pod', `${x.name}-0`, '--access-log', 'off',
    ]));
  }
  await Promise.all(Object.values(w).map((x) => waitReady(`http://127.0.0.1:${x.admin}/ready`)));
  // Apps: plain HTTP on loopback; their outgoing calls go through their sidecar (HTTP_PROXY).
  const viaProxy = (x: Workload) => ({ HTTP_PROXY: `http://127.0.0.1:${x.outbound}`, NODE_USE_ENV_PROXY: '1', NO_PROXY: '' });
  start('web/app', [APP, '--name', 'web', '--port', String(w['web']!.app), '--call', 'http://api/'], viaProxy(w['web']!));
  start('api-v1/app', [APP, '--name', 'api-v1', '--port', String(w['api-v1']!.app)]);
  start('api-v2/app', [APP, '--name', 'api-v2', '--port', String(w['api-v2']!.app)]);
  await Promise.all(['web', 'api-v1', 'api-v2'].map((n) => waitReady(`http://127.0.0.1:${w[n]!.app}/healthz`)));
  const first = await (async () => {
    for (let i = 0; i < 200; i++) {
      // Through the load generator's sidecar, as its requests go (fetch cannot set Host).
      const status = await new Promise<number>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port: w['load']!.outbound, path: '/', headers: { host: 'web' } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', () => resolve(0));
      });
      if (status === 200) return performance.now() - t0;
      await new Promise((r) => setTimeout(r, 25));
    }
    return NaN;
  })();
  start('load', [APP, '--load', 'http://web/', '--rps', values.rps], viaProxy(w['load']!));

  process.stdout.write(`
meshlet demo mesh is up: first request through the mesh ${(first / 1000).toFixed(2)} s after start

  load → web → api (TrafficSplit: api-v1 90 %, api-v2 10 %), mTLS with SPIFFE identities on every hop

  config: ${configDir}  (edit and save: proxies follow within a second)
  control plane: https://127.0.0.1:${PORTS.certify}   admin: http://127.0.0.1:${PORTS.cpAdmin}/proxies
  proxy admin (/ready /metrics /config):
${Object.values(w).map((x) => `    ${x.name.padEnd(7)} http://127.0.0.1:${x.admin}`).join('\n')}
  node bin/meshlet.ts proxy-status --admin http://127.0.0.1:${PORTS.cpAdmin}

Ctrl-C stops everything.
`);
  if (values.prometheus) {
    const targets = { controlPlane: `127.0.0.1:${PORTS.cpAdmin}`, proxies: Object.values(w).map((x) => ({ workload: x.name, namespace: NAMESPACE, admin: `127.0.0.1:${x.admin}` })) };
    await startPrometheus(dir, targets, { port: portBase + 90 }).then(
      (prom) => {
        children.push(prom.process);
        process.stdout.write(`  prometheus: ${prom.url} (dashboards: manifests/grafana/, README "Observability")\n\n`);
      },
      (err: Error) => process.stderr.write(`prometheus not started: ${err.message}\n`),
    );
  }

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
        const tls = m[1]!.includes('tls="true"');
        const k = `${dst}|${ok ? 'ok' : 'fail'}|${tls ? 'mtls' : 'plain'}`;
        now.set(k, (now.get(k) ?? 0) + Number(m[2]));
      }
      const parts: string[] = [];
      for (const dst of ['api-v1.demo', 'api-v2.demo']) {
        const d = (suffix: string) => (now.get(`${dst}|${suffix}`) ?? 0) - (last.get(`${dst}|${suffix}`) ?? 0);
        const ok = d('ok|mtls') + d('ok|plain');
        const fail = d('fail|mtls') + d('fail|plain');
        const mtls = d('ok|mtls') + d('fail|mtls');
        parts.push(`${dst.replace('.demo', '')}: ${ok + fail} req/s, ${ok + fail ? ((100 * ok) / (ok + fail)).toFixed(1) : '-'} % ok, ${ok + fail ? (mtls === ok + fail ? 'mTLS' : 'PLAINTEXT') : '-'}`);
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
