// `meshlet stat`: golden signals of the local mesh per edge (caller → service) and per service, from
// two scrapes of every proxy's /metrics a window apart; once, or every window with --watch.
import { parseDuration } from '../../duration.ts';
import { EXIT_FAILURE, EXIT_OK, HELP_FLAG, UsageError, flags, guarded, type Command, type Io } from '../command.ts';
import { edgeLines, serviceLines } from '../live-view.ts';
import { meshFlagHelp, meshPath, readMeshFile } from '../mesh-file.ts';
import { scrapeAll, statBetween } from '../scrape.ts';

/** --help, with the mesh file this command reads in `env`. */
const usage = (env: NodeJS.ProcessEnv): string => `usage: meshlet stat [--window 2s] [--watch] [-o table|json|yaml] [--mesh FILE]

Golden signals of the local mesh (npm start), from every proxy's /metrics: per edge (caller →
service: requests per second, success rate, p50/p99 latency, mTLS share, split weight, breaker
state) and per service (what its inbound side saw), over a window between two scrapes.

  --window DURATION     time between the two scrapes (default 2s)
  --watch               print again every window until interrupted (json: one object per line)
  -o, --output FORMAT   table (default), json or yaml
${meshFlagHelp(env, 24)}
Exit 1 when no local mesh runs or a proxy cannot be read.
`;

async function run(args: string[], io: Io): Promise<number> {
  const v = flags('stat', args, { options: { window: { type: 'string' }, watch: { type: 'boolean' }, output: { type: 'string', short: 'o' }, mesh: { type: 'string' }, help: HELP_FLAG } }, usage(io.env), io);
  if (!v) return EXIT_OK;
  const format = v.output ?? 'table';
  if (format !== 'table' && format !== 'json' && format !== 'yaml') throw new UsageError('stat', `-o ${format}: want table, json or yaml`);
  let windowMs: number;
  try {
    windowMs = parseDuration(v.window ?? '2s', '--window');
  } catch (e) {
    throw new UsageError('stat', (e as Error).message);
  }
  if (windowMs < 100) throw new UsageError('stat', '--window must be at least 100ms');
  const mesh = readMeshFile(meshPath(v.mesh, io.env));
  const yaml = format === 'yaml' ? await import('yaml') : undefined;
  let before = await scrapeAll(mesh);
  let t0 = performance.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, windowMs));
    const after = await scrapeAll(mesh);
    const t1 = performance.now();
    const r = { at: new Date(io.wallClock.nowMs()).toISOString(), ...statBetween(before, after, (t1 - t0) / 1000) };
    if (format === 'json') io.stdout(v.watch ? JSON.stringify(r) + '\n' : JSON.stringify(r, null, 2) + '\n');
    else if (yaml) io.stdout((v.watch ? '---\n' : '') + yaml.stringify(r));
    else {
      const out = [...edgeLines(r, mesh.namespace), '', ...serviceLines(r), ...r.unreachable.map((u) => `unreachable: ${u}`)];
      io.stdout(`${v.watch ? `${r.at.slice(11, 19)}\n` : ''}${out.join('\n')}\n${v.watch ? '\n' : ''}`);
    }
    if (!v.watch) return r.unreachable.length > 0 ? EXIT_FAILURE : EXIT_OK;
    before = after;
    t0 = t1;
  }
}

export const stat: Command = {
  name: 'stat',
  summary: 'golden signals of the local mesh per edge and service (rps, success, p50/p99, mTLS, split, breaker)',
  run: (args, io) => guarded('stat', io, () => run(args, io)),
};
