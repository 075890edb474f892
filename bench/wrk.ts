// Load generation: runs wrk (one thread) with bench/wrk.lua and returns its numbers.
// Saturation = no delay; "rand" = a random 0..N ms pause per request per connection.
import { fileURLToPath } from 'node:url';
import { run, which } from './procs.ts';

const SCRIPT = fileURLToPath(new URL('./wrk.lua', import.meta.url));

export interface WrkOptions {
  url: string;
  hostHeader?: string;
  connections: number;
  durationS: number;
  /** Random pause before each request, 0..this many ms; absent = saturation. */
  randDelayMaxMs?: number;
}

export interface WrkResult {
  requests: number;
  rps: number;
  errors: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

interface WrkJson {
  requests: number;
  durationUs: number;
  errors: Record<'connect' | 'read' | 'write' | 'status' | 'timeout', number>;
  latencyUs: Record<'p50' | 'p90' | 'p99' | 'p999' | 'max' | 'mean', number>;
}

const ms = (us: number): number => us / 1000;

export async function wrk(o: WrkOptions): Promise<WrkResult> {
  const bin = which('wrk');
  if (!bin) throw new Error('wrk not found: run scripts/install-deps.sh');
  const args = ['-t1', `-c${o.connections}`, `-d${o.durationS}s`, '--timeout', '5s', '-s', SCRIPT];
  if (o.hostHeader) args.push('-H', `Host: ${o.hostHeader}`);
  args.push(o.url);
  const env = { WRK_DELAY_MAX_MS: String(o.randDelayMaxMs ?? 0) };
  const { code, stdout, stderr } = await run(bin, args, env);
  const line = stdout.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}): ${stderr || stdout}`);
  const j = JSON.parse(line.slice('WRKJSON '.length)) as WrkJson;
  const e = j.errors;
  return {
    requests: j.requests,
    rps: j.requests / (j.durationUs / 1e6),
    errors: e.connect + e.read + e.write + e.status + e.timeout,
    p50Ms: ms(j.latencyUs.p50),
    p90Ms: ms(j.latencyUs.p90),
    p99Ms: ms(j.latencyUs.p99),
    p999Ms: ms(j.latencyUs.p999),
    maxMs: ms(j.latencyUs.max),
  };
}
