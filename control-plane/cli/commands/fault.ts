// `meshlet fault <workload> --fail 10% --delay 200ms | --clear`: make a demo app of the local mesh
// misbehave on purpose (its fault port, a demo app feature), to watch retries, the retry budget
// and the breaker act. Without options it shows the fault in force.
import { parseArgs } from 'node:util';
import { parseDuration } from '../../duration.ts';
import { CliError, EXIT_OK, HELP_FLAG, UsageError, guarded, type Command, type Io } from '../command.ts';
import { findWorkload, meshFlagHelp, meshPath, readMeshFile } from '../mesh-file.ts';

/** --help, with the mesh file this command reads in `env`. */
const usage = (env: NodeJS.ProcessEnv): string => `usage: meshlet fault WORKLOAD [--fail PERCENT] [--delay DURATION] [--status CODE] [--clear] [-o table|json]

Make a demo app of the local mesh (npm start) fail a share of its requests or answer slowly.
The app does it, not the proxy: the mesh sees what a misbehaving app would cause.

  --fail PERCENT      share of requests answered with --status (10%, 0.1, 100%)
  --delay DURATION    added before every answer (200ms)
  --status CODE       the failure status (default 503; the proxies retry 502, 503, 504)
  --clear             back to normal
${meshFlagHelp(env, 22)}
  -o, --output FORMAT table (default) or json: the fault now in force
`;

/** "10%" → 0.1, "0.1" → 0.1; undefined when not a share in [0, 1]. */
export function parseShare(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(%?)$/.exec(s);
  if (!m) return undefined;
  const v = m[2] ? Number(m[1]) / 100 : Number(m[1]);
  return v >= 0 && v <= 1 ? v : undefined;
}

async function run(args: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { fail: { type: 'string' }, delay: { type: 'string' }, status: { type: 'string' }, clear: { type: 'boolean' }, mesh: { type: 'string' }, output: { type: 'string', short: 'o' }, help: HELP_FLAG } });
  } catch (e) {
    throw new UsageError('fault', (e as Error).message);
  }
  const v = parsed.values;
  if (v.help) {
    io.stdout(usage(io.env));
    return EXIT_OK;
  }
  const [name, ...extra] = parsed.positionals;
  if (!name || extra.length > 0) throw new UsageError('fault', 'give exactly one workload (e.g. meshlet fault api-v2 --fail 10%)');
  const format = v.output ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError('fault', `-o ${format}: want table or json`);
  const setting = v.fail !== undefined || v.delay !== undefined || v.status !== undefined;
  if (v.clear && setting) throw new UsageError('fault', '--clear takes no --fail, --delay or --status');
  const body: Record<string, number> = {};
  if (v.fail !== undefined) {
    const f = parseShare(v.fail);
    if (f === undefined) throw new UsageError('fault', `--fail ${v.fail}: want a share like 10% or 0.1`);
    body['fail'] = f;
  }
  if (v.delay !== undefined) {
    try {
      body['delayMs'] = parseDuration(v.delay, '--delay');
    } catch (e) {
      throw new UsageError('fault', (e as Error).message);
    }
  }
  if (v.status !== undefined) {
    const s = Number(v.status);
    if (!Number.isInteger(s) || s < 400 || s > 599) throw new UsageError('fault', `--status ${v.status}: want 400-599`);
    body['status'] = s;
  }
  const mesh = readMeshFile(meshPath(v.mesh, io.env));
  const w = findWorkload(mesh, name);
  if (!w.faults) throw new CliError(`${w.name} has no fault control (only the demo's services do)`, `Try one of: ${mesh.workloads.filter((x) => x.faults).map((x) => x.name).join(', ')}.`);
  let now: { fail: number; delayMs: number; status: number };
  try {
    const r = await fetch(`${w.faults}/fault`, { method: v.clear ? 'DELETE' : setting ? 'POST' : 'GET', signal: AbortSignal.timeout(2000), ...(setting ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}) });
    const j = (await r.json()) as typeof now & { error?: string };
    if (r.status !== 200) throw new Error(j.error ?? `HTTP ${r.status}`);
    now = j;
  } catch (e) {
    throw new CliError(`cannot reach ${w.name}'s fault control at ${w.faults}: ${(e as Error).message}`, 'Is the local mesh still running (meshlet stat)?');
  }
  if (format === 'json') io.stdout(JSON.stringify({ workload: w.name, ...now }, null, 2) + '\n');
  else {
    const parts = [...(now.fail > 0 ? [`${+(now.fail * 100).toFixed(2)} % of requests answer ${now.status}`] : []), ...(now.delayMs > 0 ? [`every answer delayed ${now.delayMs} ms`] : [])];
    io.stdout(`${w.name}: ${parts.join(', ') || 'no fault'}\n`);
  }
  return EXIT_OK;
}

export const fault: Command = {
  name: 'fault',
  summary: 'make a demo app of the local mesh fail a share of requests or slow down (--clear to stop)',
  run: (args, io) => guarded('fault', io, () => run(args, io)),
};
