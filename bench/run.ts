// `npm run bench`: direct vs HAProxy vs meshlet, one and two hops, in interleaved rounds (paths in a
// new random order each round), wrk as the client (h2load for the HTTP/2 paths, with --http2),
// nginx as the upstream. Prints medians and pass/fail against the targets; writes
// bench/results/latest.json. See --help.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { h2load } from './h2load.ts';
import { PATHS, startNginx, type Ctx, type PathDef, type Running } from './paths.ts';
import { cpuSeconds, killAll, makeTempDir, peakRssMb, processTree, resetPeakRss, rssMb, ussMb, which } from './procs.ts';
import { printReport, summarize, type ProxySample, type Sample } from './report.ts';
import { wrk, type WrkResult } from './wrk.ts';

const HELP = `usage: node bench/run.ts [--rounds N] [--duration S] [--quick] [--http2] [--paths a,b] [--out FILE]
  --rounds N     interleaved rounds, paths shuffled each round (default 3)
  --duration S   seconds of each wrk (h2load) run: ~1000 rps cold, saturation, ~1000 rps warm (default 8)
  --quick        smoke test: 1 round of 3 s
  --http2        add the HTTP/2 paths (h2load, h2c with prior knowledge): ${PATHS.filter((p) => p.protocol === 'h2').map((p) => p.name).join(', ')}
  --paths a,b    only these paths (default all HTTP/1.1 ones: ${PATHS.filter((p) => p.protocol === undefined).map((p) => p.name).join(', ')})
  --out FILE     JSON results (default bench/results/latest.json)
  --proxy FILE   meshlet entry point (default dist/proxy/main.js, built by npm run build)
  --baseline FILE  another build's entry point, measured as baseline-2hop in the same rounds (before/after)`;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SAT_CONNECTIONS = 50;
const RAND_CONNECTIONS = 10;
const RAND_DELAY_MAX_MS = 20;
// HTTP/2: 10 connections × 5 streams at saturation (50 in flight, as wrk's -c50); 10 connections
// of one stream at 100 requests per second each, a fixed schedule, for ~1000 rps.
const H2_CLIENTS = 10;
const H2_SAT_STREAMS = 5;
const H2_RPS_PER_CLIENT = 100;

/** The two loads of a path: ~1000 rps and saturation, for `durationS` each. */
interface Load {
  rate(durationS: number): Promise<WrkResult>;
  sat(durationS: number): Promise<WrkResult>;
}

function loadFor(path: PathDef, running: Running): Load {
  if (path.protocol === 'h2') {
    const target = { url: running.url, ...(running.hostHeader ? { authority: running.hostHeader } : {}), clients: H2_CLIENTS };
    return {
      rate: (durationS) => h2load({ ...target, streams: 1, rpsPerClient: H2_RPS_PER_CLIENT, durationS }),
      sat: (durationS) => h2load({ ...target, streams: H2_SAT_STREAMS, durationS }),
    };
  }
  const target = { url: running.url, hostHeader: running.hostHeader };
  return {
    rate: (durationS) => wrk({ ...target, connections: RAND_CONNECTIONS, randDelayMaxMs: RAND_DELAY_MAX_MS, durationS }),
    sat: (durationS) => wrk({ ...target, connections: SAT_CONNECTIONS, durationS }),
  };
}

function shuffle<T>(xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}

function version(cmd: string, args: string[]): string {
  const bin = which(cmd);
  if (!bin) return 'missing';
  // nginx and wrk print their version on stderr, and wrk exits 1
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
}

/** A run in which nothing succeeded means the path does not work: fail it rather than report it. */
function carried(what: string, r: WrkResult): WrkResult {
  if (r.requests === 0 || r.errors >= r.requests) throw new Error(`${what}: no request succeeded (${r.requests} responses, ${r.errors} errors)`);
  return r;
}

/**
 * One path, one round: start it, 2 s at ~1000 rps, then ~1000 rps "cold" (the first seconds of a
 * new proxy: V8 is still compiling it), saturation, and ~1000 rps again, warm: the steady state a
 * long-running sidecar is in, which the targets judge. Peak RSS at ~1000 rps is the larger of the
 * two ~1000 rps runs (the saturation run's growth shows in its own column and may stay).
 */
async function measure(path: PathDef, ctx: Ctx, round: number, durationS: number): Promise<Sample> {
  const running = await path.start(ctx);
  try {
    const load = loadFor(path, running);
    const trees = running.proxies.map((p) => processTree(p.pid));
    const idle = trees.map((t) => rssMb(t));
    await load.rate(durationS >= 8 ? 2 : 1);
    /** One load run with each proxy's CPU seconds and peak RSS over it. */
    const phase = async (what: string, go: () => Promise<WrkResult>): Promise<{ r: WrkResult; cpuS: number[]; peakMb: number[] }> => {
      resetPeakRss(trees.flat());
      const before = trees.map((t) => cpuSeconds(t));
      const r = carried(what, await go());
      return { r, cpuS: trees.map((t, i) => cpuSeconds(t) - (before[i] ?? 0)), peakMb: trees.map((t) => peakRssMb(t)) };
    };
    const cold = await phase('cold ~1000 rps run', () => load.rate(durationS));
    const sat = await phase('saturation run', () => load.sat(durationS));
    const rand = await phase('warm ~1000 rps run', () => load.rate(durationS));
    const uss = trees.map((t) => ussMb(t));

    const proxies: ProxySample[] = running.proxies.map((p, i) => ({
      label: p.label,
      idleRssMb: idle[i] ?? 0,
      cpuColdS: cold.cpuS[i] ?? 0,
      cpuRandS: rand.cpuS[i] ?? 0,
      cpuSatS: sat.cpuS[i] ?? 0,
      peakRssColdMb: cold.peakMb[i] ?? 0,
      peakRssRandMb: rand.peakMb[i] ?? 0,
      peakRssSatMb: sat.peakMb[i] ?? 0,
      ussRandMb: uss[i] ?? 0,
    }));
    return { path: path.name, round, cold: cold.r, rand: rand.r, sat: sat.r, proxies };
  } finally {
    await running.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string' },
      duration: { type: 'string' },
      quick: { type: 'boolean', default: false },
      http2: { type: 'boolean', default: false },
      paths: { type: 'string' },
      out: { type: 'string' },
      proxy: { type: 'string' },
      baseline: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const rounds = Number(values.rounds ?? (values.quick ? 1 : 3));
  const durationS = Number(values.duration ?? (values.quick ? 3 : 8));
  if (!(rounds >= 1 && durationS >= 1)) throw new Error(`bad --rounds/--duration\n${HELP}`);
  const wanted = values.paths?.split(',').map((s) => s.trim());
  const unknown = wanted?.filter((w) => !PATHS.some((p) => p.name === w)) ?? [];
  if (unknown.length > 0) throw new Error(`unknown path(s) ${unknown.join(', ')}\n${HELP}`);
  const selected = (p: PathDef): boolean => (wanted ? wanted.includes(p.name) : p.protocol !== 'h2' || values.http2);
  const h2 = PATHS.some((p) => p.protocol === 'h2' && selected(p));
  const missing = ['wrk', 'nginx', 'haproxy', ...(h2 ? ['h2load'] : [])].filter((t) => !which(t));
  if (missing.length > 0) throw new Error(`${missing.join(', ')} not found: run scripts/install-deps.sh`);

  const proxyMain = resolve(values.proxy ?? join(ROOT, 'dist/proxy/main.js'));
  const skipped: Record<string, string> = {};
  const baselineMain = values.baseline === undefined ? undefined : resolve(values.baseline);
  if (baselineMain !== undefined && !existsSync(baselineMain)) throw new Error(`--baseline ${baselineMain} does not exist`);
  const paths = PATHS.filter((p) => (p.kind === 'baseline' ? baselineMain !== undefined && (!wanted || wanted.includes(p.name) || wanted.includes('meshlet-2hop')) : selected(p))).filter((p) => {
    if (p.kind === 'meshlet' && !existsSync(proxyMain)) skipped[p.name] = `${proxyMain} does not exist (yet)`;
    return !skipped[p.name];
  });

  const loadBefore = loadavg();
  if ((loadBefore[0] ?? 0) > 0.5 * cpus().length) console.error(`bench: WARNING load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')} on ${cpus().length} cores: other work is running, numbers will be noisy`);
  const dir = makeTempDir();
  const nginx = await startNginx(dir);
  const ctx: Ctx = { dir, root: ROOT, proxyMain, upstream: nginx.address, upstreamH2: nginx.h2Address, ...(baselineMain ? { baselineMain } : {}) };
  const samples: Sample[] = [];
  const failures: { path: string; round: number; error: string }[] = [];
  const started = new Date();
  console.error(`bench: ${paths.length} paths × ${rounds} rounds × (${durationS}s at ~1000 rps cold + ${durationS}s saturation + ${durationS}s at ~1000 rps warm); nginx at ${nginx.address} (h2c ${nginx.h2Address})`);
  for (let round = 1; round <= rounds; round++) {
    for (const path of shuffle(paths)) {
      if (failures.some((f) => f.path === path.name)) continue; // a path that failed once is not retried
      try {
        const s = await measure(path, ctx, round, durationS);
        samples.push(s);
        const cpu = s.proxies.map((p) => `${p.label} ${((p.cpuSatS / s.sat.requests) * 1e6).toFixed(0)}µs/req`).join(' ');
        console.error(`  round ${round}/${rounds} ${path.name.padEnd(17)} sat ${s.sat.rps.toFixed(0).padStart(6)} rps | ${s.rand.rps.toFixed(0)} rps p50 ${s.rand.p50Ms.toFixed(2)} p99 ${s.rand.p99Ms.toFixed(2)} ms (cold p99 ${s.cold.p99Ms.toFixed(2)}) | ${cpu}`);
      } catch (e) {
        const error = e instanceof Error ? e.message : String(e);
        failures.push({ path: path.name, round, error: error.trim() });
        console.error(`  round ${round}/${rounds} ${path.name}: FAILED: ${error}`);
      }
    }
  }
  await nginx.proc.stop();

  const summary = summarize(paths, samples);
  printReport(summary, skipped, failures);
  const out = resolve(values.out ?? join(ROOT, 'bench/results/latest.json'));
  mkdirSync(dirname(out), { recursive: true });
  const meta = {
    started: started.toISOString(),
    finished: new Date().toISOString(),
    rounds,
    durationS,
    saturation: `wrk -t1 -c${SAT_CONNECTIONS} -d${durationS}s`,
    rand: `wrk -t1 -c${RAND_CONNECTIONS} -d${durationS}s, random 0-${RAND_DELAY_MAX_MS} ms pause per request, after the saturation run (warm)`,
    cold: `the same as rand, right after the proxies started and 2 s of warm-up, before the saturation run`,
    node: process.version,
    proxyMain,
    haproxy: version('haproxy', ['-v']),
    nginx: version('nginx', ['-v']),
    wrk: version('wrk', ['-v']),
    ...(h2
      ? {
          h2Saturation: `h2load -t1 -c${H2_CLIENTS} -m${H2_SAT_STREAMS} -D${durationS} (h2c, prior knowledge)`,
          h2Rand: `h2load -t1 -c${H2_CLIENTS} -m1 --rps=${H2_RPS_PER_CLIENT} -D${durationS}: ~${H2_CLIENTS * H2_RPS_PER_CLIENT} rps on a fixed schedule, percentiles from --log-file; cold and warm as for wrk`,
          h2load: version('h2load', ['--version']),
        }
      : {}),
    cpus: cpus().length,
    loadavgBefore: loadBefore,
    loadavgAfter: loadavg(),
  };
  writeFileSync(out, `${JSON.stringify({ meta, ...summary, skipped, failures, samples }, null, 2)}\n`);
  console.log(`\nwrote ${out}`);
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
  killAll();
  process.exit(1);
});
