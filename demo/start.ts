// `npm start`: the whole mesh on one machine, no Kubernetes. A control plane (CA + config push)
// watches examples/ (or --config-dir); four services (web → api v1/v2 → store), each a separate process
// behind its own proxy with its own identity, mTLS on every hop; a meshed load generator calls web.
// Prints where to look and, every second, what the proxies measure (a live view on a terminal,
// plain lines otherwise). Writes the mesh file the `meshlet` CLI reads (stat, split, fault,
// diagnose). Ctrl-C (or SIGTERM) stops every process it started, in order, and removes its files.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { proxyArgv } from '../proxy/launch.ts';
import { startPrometheus } from './prometheus.ts';
import { defaultMeshPath, writeMeshFile, type MeshFile } from '../control-plane/cli/mesh-file.ts';
import { liveScreen } from '../control-plane/cli/live-view.ts';
import { scrapeAll, statBetween } from '../control-plane/cli/scrape.ts';

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
const PORT_OFFSETS = { certify: 443, webhook: 444, cpAdmin: 990, web: 143, 'api-v1': 243, 'api-v2': 343, store: 543 } as const;
const NAMESPACE = 'demo';

/**
 * The other listeners (each proxy's outbound and admin, each app and its fault port) sit at
 * N + 600 + 10 × i + k: fixed, and below the kernel's ephemeral range for the usual bases, so no
 * outgoing connection of another program can take one between choosing and binding it.
 */
function localPort(i: number, k: 'outbound' | 'admin' | 'app' | 'fault'): number {
  return portBase + 600 + 10 * i + { outbound: 1, admin: 2, app: 3, fault: 4 }[k];
}

const { values } = parseArgs({
  options: {
    rps: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '0' },
    'config-dir': { type: 'string', default: EXAMPLES },
    'port-base': { type: 'string', default: String(DEFAULT_PORT_BASE) },
    prometheus: { type: 'boolean', default: false },
    mesh: { type: 'string' },
    view: { type: 'string', default: 'auto' },
    help: { type: 'boolean', short: 'h' },
  },
});
const portBase = Number(values['port-base']);
if (!Number.isInteger(portBase) || portBase < 1024 || portBase > 64000) {
  process.stderr.write(`meshlet demo: --port-base must be an integer in [1024, 64000], got ${values['port-base']}\n`);
  process.exit(2);
}
if (!['auto', 'live', 'lines'].includes(values.view)) {
  process.stderr.write(`meshlet demo: --view must be auto, live or lines, got ${values.view}\n`);
  process.exit(2);
}
const PORTS = Object.fromEntries(Object.entries(PORT_OFFSETS).map(([k, off]) => [k, portBase + off])) as Record<keyof typeof PORT_OFFSETS, number>;
if (values.help) {
  process.stdout.write(`usage: meshlet start [options]   (npm start -- [options])
  --rps N           load generator rate (default 50)
  --seconds S       stop after S seconds (default: run until Ctrl-C)
  --config-dir DIR  the mesh's YAML (default examples/; edit it while the mesh runs)
  --port-base N     ports are N + 443 (control plane), N + 444 (its injector webhook), N + 990
                    (its admin), N + 143/243/343/543
                    (inbound of web, api-v1, api-v2, store), N + 601..644 (outbound, admin, app
                    and fault ports of each workload); default 14000. With another base the
                    mesh watches a copy of the config folder whose 127.0.0.1:14xxx addresses are moved
  --mesh FILE       where to write the mesh file the CLI reads (default MESHLET_MESH, else
                    ${defaultMeshPath(process.env)}; local-<N>.json with another port base)
  --view MODE       live (redrawn table), lines (one line a second) or auto (live on a terminal)
  --prometheus      also run Prometheus (when installed) on port N + 90, scraping the mesh
ports: control plane ${PORTS.certify} (admin ${PORTS.cpAdmin}); proxies' inbound: web ${PORTS.web}, api-v1 ${PORTS['api-v1']}, api-v2 ${PORTS['api-v2']}, store ${PORTS.store}
`);
  process.exit(0);
}

const meshFile = values.mesh ?? process.env['MESHLET_MESH'] ?? defaultMeshPath(process.env, portBase);
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
let wroteMesh = false;

/**
 * The start-up was interrupted (Ctrl-C, SIGTERM): a step of it cannot finish, and that is no error
 * of its own. A terminal's Ctrl-C reaches the CLI steps run in this process group too (identity
 * init, bootstrap tokens), and they die of it before this process hears its own SIGINT.
 */
class Interrupted extends Error {}

/** The error for a CLI step that did not succeed: interrupted when a stop signal ended it. */
function stepFailed(args: string[], status: number | null, signal: NodeJS.Signals | null, output: string): Error {
  const step = `meshlet ${args.slice(0, 2).join(' ')}`;
  if (signal === 'SIGINT' || signal === 'SIGTERM') return new Interrupted(`${step} ended by ${signal}`);
  return new Error(`meshlet ${args.join(' ')}: ${output.trim() || (signal ? `killed by ${signal}` : `exit ${status}`)}`);
}

function start(name: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  // Once stopping, start nothing more: the stop has already gone through the children.
  if (stopping) throw new Interrupted(`${name} not started: stopping`);
  // Each child in its own process group: a terminal's Ctrl-C reaches only this process, which
  // stops the children in order (load, apps, proxies draining, control plane).
  const c = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env }, detached: true });
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

/**
 * Idempotent: a second Ctrl-C (or the signal `meshlet start` passes on) waits for the same stop.
 * `interrupted`: a stop signal, not the timer or an error; before the mesh is up it says so.
 */
let stopped: Promise<void> | undefined;
function stopAll(interrupted: boolean): Promise<void> {
  stopped ??= stopInOrder(interrupted);
  return stopped;
}

async function stopInOrder(interrupted: boolean): Promise<void> {
  stopping = true;
  clearInterval(ticker);
  process.stdout.write(`\n${interrupted && !wroteMesh ? 'interrupted while starting; ' : ''}stopping: load generator, apps, proxies (draining), control plane...\n`);
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
  if (wroteMesh) rmSync(meshFile, { force: true });
  process.stdout.write('stopped; nothing left running.\n');
}

async function waitReady(url: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      /* starting */
    }
    if (stopping) throw new Interrupted(`${url}: stopping`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not ready`);
}

function meshlet(...args: string[]): string {
  const r = spawnSync(process.execPath, [MESHLET, ...args], { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw stepFailed(args, r.status, r.signal, r.stderr || r.stdout);
  return r.stdout;
}

function meshletAsync(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [MESHLET, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.once('exit', (code, signal) => (code === 0 ? resolve(out) : reject(stepFailed(args, code, signal, err || out))));
  });
}

interface Workload {
  name: string;
  inbound: number | undefined;
  outbound: number;
  admin: number;
  app: number | undefined;
  /** The demo app's fault control port. */
  fault: number | undefined;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  // The CA: a trust anchor and an issuer, and one bootstrap token per workload identity.
  const caFile = join(dir, 'ca.json');
  meshlet('identity', 'init', '--ca-file', caFile);
  const anchors = join(dir, 'anchors.pem');
  writeFileSync(anchors, (JSON.parse(readFileSync(caFile, 'utf8')) as { anchor: { certPem: string } }).anchor.certPem);
  const w: Record<string, Workload> = {};
  for (const [i, name] of (['web', 'api-v1', 'api-v2', 'store', 'load'] as const).entries()) {
    const serves = name !== 'load';
    w[name] = { name, inbound: serves ? PORTS[name] : undefined, outbound: localPort(i, 'outbound'), admin: localPort(i, 'admin'), app: serves ? localPort(i, 'app') : undefined, fault: serves ? localPort(i, 'fault') : undefined };
  }
  // The first token adds the token key to the CA state; the rest only read it, so they run in
  // parallel (each is a CLI process). Then every proxy starts at once.
  const token = (sa: string) => meshletAsync('identity', 'bootstrap-token', '--ca-file', caFile, '--namespace', NAMESPACE, '--service-account', sa);
  const names = Object.keys(w);
  const firstToken = await token(names[0]!);
  const tokens = [firstToken, ...(await Promise.all(names.slice(1).map(token)))];
  // The control plane starts once the CA state holds the token key (it reads it at start).
  start('control-plane', [CONTROL_PLANE, '--ca-file', caFile, '--config-dir', configDir, '--listen', `127.0.0.1:${PORTS.certify}`, '--admin-listen', `127.0.0.1:${PORTS.cpAdmin}`, '--webhook-listen', `127.0.0.1:${PORTS.webhook}`, '--reload-interval', '2s']);
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
  const appArgs = (x: Workload) => [APP, '--name', x.name, '--port', String(x.app), '--fault-port', String(x.fault)];
  start('web/app', [...appArgs(w['web']!), '--call', 'http://api/'], viaProxy(w['web']!));
  start('api-v1/app', [...appArgs(w['api-v1']!), '--call', 'http://store/'], viaProxy(w['api-v1']!));
  start('api-v2/app', [...appArgs(w['api-v2']!), '--call', 'http://store/'], viaProxy(w['api-v2']!));
  start('store/app', appArgs(w['store']!));
  await Promise.all(['web', 'api-v1', 'api-v2', 'store'].map((n) => waitReady(`http://127.0.0.1:${w[n]!.app}/healthz`)));
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
  const mesh: MeshFile = {
    version: 1,
    pid: process.pid,
    startedAt: new Date().toISOString(),
    namespace: NAMESPACE,
    configDir,
    controlPlane: { url: `https://127.0.0.1:${PORTS.certify}`, admin: `http://127.0.0.1:${PORTS.cpAdmin}` },
    workloads: Object.values(w).map((x) => ({
      name: x.name,
      service: x.inbound === undefined ? undefined : x.name,
      identity: `spiffe://cluster.local/ns/${NAMESPACE}/sa/${x.name}`,
      admin: `http://127.0.0.1:${x.admin}`,
      inbound: x.inbound === undefined ? undefined : `127.0.0.1:${x.inbound}`,
      faults: x.fault === undefined ? undefined : `http://127.0.0.1:${x.fault}`,
      appPort: x.app,
    })),
  };
  writeMeshFile(meshFile, mesh);
  wroteMesh = true;

  process.stdout.write(`
meshlet demo mesh is up: first request through the mesh ${(first / 1000).toFixed(2)} s after start

  load → web → api (TrafficSplit: api-v1 90 %, api-v2 10 %) → store, mTLS with SPIFFE identities on every hop

  config: ${configDir}  (edit and save: proxies follow within a second)
  control plane: https://127.0.0.1:${PORTS.certify}   admin: http://127.0.0.1:${PORTS.cpAdmin}/proxies
  injector webhook: https://127.0.0.1:${PORTS.webhook}/inject (AdmissionReview in, JSONPatch out)
  proxy admin (/ready /metrics /config):
${Object.values(w).map((x) => `    ${x.name.padEnd(7)} http://127.0.0.1:${x.admin}`).join('\n')}
  mesh: ${meshFile}  (the CLI reads it: meshlet stat | split | fault | diagnose)
  npx meshlet stat            npx meshlet split api v2=50        npx meshlet fault api-v2 --fail 10%
  npx meshlet diagnose web api   npx meshlet proxy-status --admin http://127.0.0.1:${PORTS.cpAdmin}

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

  // Every second: scrape every proxy, golden signals per edge (the same math as `meshlet stat`).
  // A terminal gets the live view, redrawn in place; anything else one plain line a second.
  const live = values.view === 'live' || (values.view === 'auto' && process.stdout.isTTY === true);
  let before = await scrapeAll(mesh);
  let t1 = performance.now();
  ticker = setInterval(async () => {
    try {
      const after = await scrapeAll(mesh);
      const t2 = performance.now();
      const r = statBetween(before, after, (t2 - t1) / 1000);
      before = after;
      t1 = t2;
      if (stopping) return;
      const clock = new Date().toISOString().slice(11, 19);
      if (live) {
        const screen = liveScreen(r, { clock, namespace: NAMESPACE, configDir, firstRequestSeconds: first / 1000, hint: 'npx meshlet split api v2=50 | fault api-v2 --fail 10% | diagnose web api' });
        process.stdout.write(`\x1b[H\x1b[J${screen.join('\n')}\nCtrl-C stops everything.\n`);
        return;
      }
      const parts = ['api-v1', 'api-v2'].map((dst) => {
        const e = r.edges.find((x) => x.source === 'web' && x.destination.split('.')[0] === dst);
        const n = e?.requests ?? 0;
        return `${dst}: ${n} req/s, ${n && e!.successRate !== null ? (100 * e!.successRate).toFixed(1) : '-'} % ok, ${n && e!.mtls !== null ? (e!.mtls === 1 ? 'mTLS' : 'PLAINTEXT') : '-'}`;
      });
      process.stdout.write(`${clock}  web → ${parts.join('   ')}\n`);
    } catch {
      /* a scrape failed; try again next second */
    }
  }, 1000);
  ticker.unref();

  const seconds = Number(values.seconds);
  if (seconds > 0) setTimeout(() => void stopAll(false).then(() => process.exit(0)), seconds * 1000);
}

// Last resort (a crash, an exit without stopAll): no child outlives this process.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
process.on('SIGINT', () => void stopAll(true).then(() => process.exit(0)));
process.on('SIGTERM', () => void stopAll(true).then(() => process.exit(0)));
main().catch(async (err: Error) => {
  // Interrupted: the stop says so (its signal may not have reached this process yet); exit as
  // for any stop signal. Anything else is an error of the start-up.
  if (err instanceof Interrupted || stopping) {
    await stopAll(true);
    process.exit(0);
  }
  process.stderr.write(`meshlet demo: ${err.message}\n`);
  await stopAll(false);
  process.exit(1);
});
