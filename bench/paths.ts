// The measured paths: each starts its proxies in front of the shared nginx upstream and says where
// the load generator (wrk, h2load for the HTTP/2 paths) sends traffic and which processes to
// measure. Adding a path = one entry in PATHS.
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ProxyConfig } from '../api/proxy-config.ts';
import { haproxyMtls, spiffeIdOf, startControlPlane } from './pki.ts';
import { freePort, h2Status, httpStatus, start, tcpOpen, waitFor, which, type Proc } from './procs.ts';

export interface Ctx {
  /** Temp dir for generated configs. */
  dir: string;
  /** The repository root: meshlet runs from here. */
  root: string;
  /** meshlet's entry point, normally <root>/proxy/main.ts. */
  proxyMain: string;
  /** Another build's entry point (--baseline), measured as the `baseline-2hop` path in the same run. */
  baselineMain?: string;
  /** 127.0.0.1:port of the nginx upstream. */
  upstream: string;
  /** 127.0.0.1:port of the same nginx serving h2c (HTTP/2 with prior knowledge only). */
  upstreamH2: string;
}

export interface Running {
  url: string;
  hostHeader?: string;
  /** The proxy processes whose CPU and memory are measured, labelled A (client side), B... */
  proxies: { label: string; pid: number }[];
  stop(): Promise<void>;
}

export interface PathDef {
  name: string;
  kind: 'direct' | 'haproxy' | 'meshlet' | 'bare' | 'baseline';
  hops: number;
  /**
   * 'h2': HTTP/2 end to end (h2c from the client, h2 or h2c between proxies, h2c to nginx),
   * measured with h2load, compared with `direct-h2`, never judged against the targets, run only
   * when asked for (--http2 or --paths). Absent: HTTP/1.1 with wrk.
   */
  protocol?: 'h2';
  /** For meshlet paths: the HAProxy path it is judged against. */
  peer?: string;
  /** For meshlet paths: the featureless Node proxy path it is compared with (no targets). */
  yardstick?: string;
  start(ctx: Ctx): Promise<Running>;
}

export const PATHS: PathDef[] = [
  { name: 'direct', kind: 'direct', hops: 0, start: async (ctx) => ({ url: `http://${ctx.upstream}/`, proxies: [], stop: async () => {} }) },
  { name: 'haproxy-1hop', kind: 'haproxy', hops: 1, start: (ctx) => haproxyOneHop(ctx) },
  { name: 'haproxy-2hop', kind: 'haproxy', hops: 2, start: (ctx) => haproxyTwoHops(ctx) },
  { name: 'meshlet-1hop', kind: 'meshlet', hops: 1, peer: 'haproxy-1hop', start: (ctx) => meshletOneHop(ctx) },
  { name: 'meshlet-2hop', kind: 'meshlet', hops: 2, peer: 'haproxy-2hop', yardstick: 'bare-node-2hop', start: (ctx) => meshletTwoHops(ctx) },
  { name: 'bare-node-2hop', kind: 'bare', hops: 2, start: (ctx) => bareTwoHops(ctx) },
  // Only with --baseline FILE: meshlet-2hop again, from another build, for before/after numbers.
  { name: 'baseline-2hop', kind: 'baseline', hops: 2, start: (ctx) => meshletTwoHops({ ...ctx, proxyMain: ctx.baselineMain! }) },
  { name: 'haproxy-2hop-mtls', kind: 'haproxy', hops: 2, start: (ctx) => haproxyTwoHops(ctx, haproxyMtls(ctx.dir)) },
  { name: 'meshlet-2hop-mtls', kind: 'meshlet', hops: 2, peer: 'haproxy-2hop-mtls', start: (ctx) => meshletTwoHops(ctx, true) },
  // HTTP/2 (gRPC-style: h2c with prior knowledge from the client), with h2load: reported, no targets.
  { name: 'direct-h2', kind: 'direct', hops: 0, protocol: 'h2', start: async (ctx) => ({ url: `http://${ctx.upstreamH2}/`, proxies: [], stop: async () => {} }) },
  { name: 'haproxy-h2-1hop', kind: 'haproxy', hops: 1, protocol: 'h2', start: (ctx) => haproxyOneHop(ctx, true) },
  { name: 'haproxy-h2-2hop', kind: 'haproxy', hops: 2, protocol: 'h2', start: (ctx) => haproxyTwoHops(ctx, undefined, true) },
  { name: 'meshlet-h2-1hop', kind: 'meshlet', hops: 1, protocol: 'h2', peer: 'haproxy-h2-1hop', start: (ctx) => meshletOneHop(ctx, true) },
  { name: 'meshlet-h2-2hop', kind: 'meshlet', hops: 2, protocol: 'h2', peer: 'haproxy-h2-2hop', start: (ctx) => meshletTwoHops(ctx, false, true) },
  { name: 'haproxy-h2-2hop-mtls', kind: 'haproxy', hops: 2, protocol: 'h2', start: (ctx) => haproxyTwoHops(ctx, haproxyMtls(ctx.dir), true) },
  { name: 'meshlet-h2-2hop-mtls', kind: 'meshlet', hops: 2, protocol: 'h2', peer: 'haproxy-h2-2hop-mtls', start: (ctx) => meshletTwoHops(ctx, true, true) },
];

const all = (procs: Proc[]) => async (): Promise<void> => {
  await Promise.all(procs.map((p) => p.stop()));
};

// ---- nginx: the upstream, one worker, `return 200` with a ~100-byte body ----

export const BODY = 'meshlet bench upstream: a fixed body of about one hundred bytes, returned by nginx return 200.\n';

/** nginx with two listeners: HTTP/1.1 (`address`) and h2c with prior knowledge (`h2Address`). */
export async function startNginx(dir: string): Promise<{ address: string; h2Address: string; proc: Proc }> {
  const bin = which('nginx');
  if (!bin) throw new Error('nginx not found: run scripts/install-deps.sh');
  const [port, h2Port] = [await freePort(), await freePort()];
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 10000000;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  default_type text/plain;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / { return 200 ${JSON.stringify(BODY)}; }
  }
  server {
    listen 127.0.0.1:${h2Port} http2 backlog=4096;
    location / { return 200 ${JSON.stringify(BODY)}; }
  }
}
`,
  );
  const proc = await start('nginx', bin, ['-p', dir, '-e', `${dir}/nginx-error.log`, '-c', conf]);
  const [address, h2Address] = [`127.0.0.1:${port}`, `127.0.0.1:${h2Port}`];
  await waitFor('nginx', async () => (await httpStatus(`http://${address}/`)) === 200 && (await h2Status(`http://${h2Address}/`)) === 200, [proc]);
  return { address, h2Address, proc };
}

// ---- HAProxy: the fair peer of bench-notes.md, one process per hop ----

/** Extra `bind` / `server` options, e.g. `ssl crt b.pem ca-file ca.pem verify required`. */
export interface HaproxyTls {
  bind?: string;
  server?: string;
}

/** One HAProxy process; `h2`: HTTP/2 on both sides (`proto h2`, and ALPN h2 where TLS). */
async function haproxyHop(ctx: Ctx, name: string, listen: number, target: string, tls: HaproxyTls = {}, h2 = false): Promise<Proc> {
  const bin = which('haproxy');
  if (!bin) throw new Error('haproxy not found: run scripts/install-deps.sh');
  const cfg = join(ctx.dir, `haproxy-${name}-${listen}.cfg`);
  writeFileSync(
    cfg,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:${listen} ${tls.bind ?? ''}${h2 ? ` proto h2${tls.bind ? ' alpn h2' : ''}` : ''}
  default_backend be
backend be
  server next ${target} ${tls.server ?? ''}${h2 ? ` proto h2${tls.server ? ' alpn h2' : ''}` : ''}
`,
  );
  const proc = await start(`haproxy-${name}`, bin, ['-db', '-f', cfg]);
  // A TLS listener cannot be probed with plain HTTP: then only wait for it to listen.
  const ready = tls.bind ? () => tcpOpen(listen) : async () => (await (h2 ? h2Status : httpStatus)(`http://127.0.0.1:${listen}/`, 'upstream')) === 200;
  await waitFor(`haproxy ${name}`, ready, [proc]);
  return proc;
}

export async function haproxyOneHop(ctx: Ctx, h2 = false): Promise<Running> {
  const port = await freePort();
  const a = await haproxyHop(ctx, 'a', port, h2 ? ctx.upstreamH2 : ctx.upstream, {}, h2);
  return { url: `http://127.0.0.1:${port}/`, hostHeader: 'upstream', proxies: [{ label: 'A', pid: a.pid }], stop: all([a]) };
}

/** A two-hop path: wrk sends to `url` (Host: upstream); A and B are measured; `stop` stops `procs`. */
const twoHops = (url: string, a: { pid: number }, b: { pid: number }, procs: Proc[]): Running => ({
  url,
  hostHeader: 'upstream',
  proxies: [
    { label: 'A', pid: a.pid },
    { label: 'B', pid: b.pid },
  ],
  stop: all(procs),
});

/** client → A → B → nginx; `tls` secures the A → B hop; `h2`: HTTP/2 on every hop. */
export async function haproxyTwoHops(ctx: Ctx, tls?: { a: string; b: string }, h2 = false): Promise<Running> {
  const [pa, pb] = [await freePort(), await freePort()];
  const b = await haproxyHop(ctx, 'b', pb, h2 ? ctx.upstreamH2 : ctx.upstream, tls ? { bind: tls.b } : {}, h2);
  const a = await haproxyHop(ctx, 'a', pa, `127.0.0.1:${pb}`, tls ? { server: tls.a } : {}, h2).catch(async (e: unknown) => {
    await b.stop();
    throw e;
  });
  return twoHops(`http://127.0.0.1:${pa}/`, a, b, [a, b]);
}

// ---- the yardstick: a featureless Node 24 + undici proxy per hop (bench/bare-proxy.mjs) ----

const BARE = join(dirname(new URL(import.meta.url).pathname), 'bare-proxy.mjs');

/** client → A → B → nginx, each a bare Node proxy with meshlet's own heap flags. */
export async function bareTwoHops(ctx: Ctx): Promise<Running> {
  const [pa, pb] = [await freePort(), await freePort()];
  const flags = await launcherFlags(ctx.proxyMain);
  const b = await start('bare-b', process.execPath, [...flags, BARE, `127.0.0.1:${pb}`, ctx.upstream]);
  const a = await start('bare-a', process.execPath, [...flags, BARE, `127.0.0.1:${pa}`, `127.0.0.1:${pb}`]);
  try {
    await waitFor('a request through bare A → B → nginx', async () => (await httpStatus(`http://127.0.0.1:${pa}/`, 'upstream')) === 200, [a, b], 10_000);
  } catch (e) {
    await Promise.all([a.stop(), b.stop()]);
    throw e;
  }
  return twoHops(`http://127.0.0.1:${pa}/`, a, b, [a, b]);
}

// ---- meshlet: proxy/main.ts, started the way its launcher does; access log off like HAProxy's ----

export interface Meshlet {
  proc: Proc;
  outbound: string;
  inbound: string;
  inboundPort: number;
}

/** The Node flags meshlet's own launcher sets (PROXY_NODE_FLAGS and LOCAL_HEAP_FLAGS of launch.ts beside main.ts), if any. */
async function launcherFlags(main: string): Promise<string[]> {
  const launch = [join(dirname(main), 'launch.ts'), join(dirname(main), 'launch.js')].find((f) => existsSync(f));
  if (!launch) return [];
  const mod = (await import(pathToFileURL(launch).href)) as { PROXY_NODE_FLAGS?: string[]; LOCAL_HEAP_FLAGS?: string[] };
  return [...(mod.PROXY_NODE_FLAGS ?? []), ...(mod.LOCAL_HEAP_FLAGS ?? [])];
}

/** Start one meshlet proxy with `config`, forwarding inbound traffic to `app`; ready at /ready. */
export async function startMeshlet(ctx: Ctx, label: string, config: ProxyConfig | ((inboundPort: number) => ProxyConfig), app: string, extraArgs: string[] = []): Promise<Meshlet> {
  const [outP, inP, adminP] = [await freePort(), await freePort(), await freePort()];
  const file = join(ctx.dir, `meshlet-${label}-${inP}.json`);
  writeFileSync(file, JSON.stringify(typeof config === 'function' ? config(inP) : config, null, 2));
  // BENCH_NODE_FLAGS: extra Node flags for meshlet processes (profiling: --cpu-prof --cpu-prof-dir=DIR).
  const extraNode = (process.env['BENCH_NODE_FLAGS'] ?? '').split(' ').filter(Boolean);
  const args = [...(await launcherFlags(ctx.proxyMain)), ...extraNode, ctx.proxyMain, '--config', file, '--outbound-listen', `127.0.0.1:${outP}`, '--inbound-listen', `127.0.0.1:${inP}`, '--app', app, '--admin-listen', `127.0.0.1:${adminP}`, '--workload', `bench-${label.toLowerCase()}`, '--access-log', 'off', ...extraArgs];
  const proc = await start(`meshlet-${label}`, process.execPath, args, { cwd: ctx.root });
  try {
    await waitFor(`meshlet ${label} /ready`, async () => (await httpStatus(`http://127.0.0.1:${adminP}/ready`)) === 200, [proc]);
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return { proc, outbound: `127.0.0.1:${outP}`, inbound: `127.0.0.1:${inP}`, inboundPort: inP };
}

const upstreamService = (address: string, identity?: string): ProxyConfig => ({ version: 'bench', services: [{ name: 'upstream', endpoints: [{ address, ...(identity ? { identity } : {}) }] }] });

/** client → A (outbound) → nginx; `h2`: to nginx's h2c listener, an unmeshed endpoint sent h2c. */
export async function meshletOneHop(ctx: Ctx, h2 = false): Promise<Running> {
  const upstream = h2 ? ctx.upstreamH2 : ctx.upstream;
  const a = await startMeshlet(ctx, 'A', upstreamService(upstream), upstream);
  if (h2) {
    try {
      await waitFor('an HTTP/2 request through meshlet A → nginx', async () => (await h2Status(`http://${a.outbound}/`, 'upstream')) === 200, [a.proc], 10_000);
    } catch (e) {
      await a.proc.stop();
      throw e;
    }
  }
  return { url: `http://${a.outbound}/`, hostHeader: 'upstream', proxies: [{ label: 'A', pid: a.proc.pid }], stop: all([a.proc]) };
}

const inboundOnly = (port: number): ProxyConfig => ({ version: 'bench', services: [], inbound: { ports: [{ port, permissive: true }], defaultPolicy: 'all' } });
/** With an identity the inbound port is strict mTLS by default. */
const inboundMtls: ProxyConfig = { version: 'bench', services: [], inbound: { defaultPolicy: 'all-authenticated' } };

/**
 * client → A (outbound) → B (inbound) → nginx. Plaintext between A and B, or with `mtls` identities
 * from a control plane started for this path (stopped with it; its CPU is not measured) and A
 * requiring B's SPIFFE ID. `h2`: B's app is nginx's h2c listener, and the readiness request is
 * HTTP/2 (A → B is then h2c, or h2 by ALPN over mTLS).
 */
export async function meshletTwoHops(ctx: Ctx, mtls = false, h2 = false): Promise<Running> {
  const procs: Proc[] = [];
  const app = h2 ? ctx.upstreamH2 : ctx.upstream;
  try {
    const cp = mtls ? await startControlPlane(ctx.dir) : undefined;
    if (cp) procs.push(cp.proc);
    const b = await startMeshlet(ctx, 'B', cp ? inboundMtls : inboundOnly, app, cp ? await cp.identityArgs('b') : []);
    procs.push(b.proc);
    const a = await startMeshlet(ctx, 'A', upstreamService(b.inbound, cp ? spiffeIdOf('b') : undefined), app, cp ? await cp.identityArgs('a') : []);
    procs.push(a.proc);
    await waitFor(`a${h2 ? 'n HTTP/2' : ''} request through meshlet A → B → nginx`, async () => (await (h2 ? h2Status : httpStatus)(`http://${a.outbound}/`, 'upstream')) === 200, procs, 10_000);
    return twoHops(`http://${a.outbound}/`, a.proc, b.proc, procs);
  } catch (e) {
    await all(procs)();
    throw e;
  }
}
