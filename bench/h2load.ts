// Load generation for the HTTP/2 paths: runs h2load (one thread, h2c with prior knowledge, as a
// gRPC client on an insecure channel) and returns the same numbers as wrk.ts. h2load prints no
// percentiles, so the latencies come from its per-request log (--log-file).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, which } from './procs.ts';
import type { WrkResult } from './wrk.ts';

export interface H2loadOptions {
  url: string;
  /** The :authority to send (the proxies route by it); absent = the URL's host:port. */
  authority?: string;
  /** Connections, each one HTTP/2 session. */
  clients: number;
  /** Concurrent streams per connection (-m). */
  streams: number;
  durationS: number;
  /** Requests per second per connection (--rps): a fixed rate; absent = saturation. */
  rpsPerClient?: number;
}

/** The command line, without the binary. */
export function h2loadArgs(o: H2loadOptions, logFile: string): string[] {
  const args = ['-t1', `-c${o.clients}`, `-m${o.streams}`, `-D${o.durationS}`, '--log-file', logFile];
  if (o.rpsPerClient !== undefined) args.push(`--rps=${o.rpsPerClient}`);
  if (o.authority) args.push('-H', `:authority: ${o.authority}`);
  args.push(o.url);
  return args;
}

export interface H2loadSummary {
  /** Requests that ended (answered or failed) in the measured period. */
  done: number;
  /** Of those, failed: a stream error, a reset, a timeout or a status h2load does not count as success. */
  failed: number;
  durationS: number;
}

/**
 * h2load's summary lines (nghttp2 1.52):
 *   finished in 8.00s, 1000.00 req/s, 76.41KB/s
 *   requests: 8000 total, 8000 started, 8000 done, 8000 succeeded, 0 failed, 0 errored, 0 timeout
 * The next line, "status codes", is not read: it counts a response by its head, so one whose head
 * came in the measured period and whose end after it is there and not in "done" (352 701 2xx of
 * 352 700 done, seen). undefined when the lines are not there.
 */
export function parseH2loadSummary(out: string): H2loadSummary | undefined {
  const finished = /^finished in ([\d.]+)(ms|s),/m.exec(out);
  const requests = /^requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed,/m.exec(out);
  if (!finished || !requests) return undefined;
  const durationS = Number(finished[1]) / (finished[2] === 'ms' ? 1000 : 1);
  return { done: Number(requests[1]), failed: Number(requests[2]), durationS };
}

/**
 * Percentiles of h2load's --log-file: one line per request, tab-separated: start time (µs since
 * the epoch), status (-1 when the stream failed), µs until the end of the response. Nearest rank,
 * over every logged request. undefined for an empty log.
 */
export function latencies(log: string): Pick<WrkResult, 'p50Ms' | 'p90Ms' | 'p99Ms' | 'p999Ms' | 'maxMs'> | undefined {
  const us: number[] = [];
  for (const line of log.split('\n')) {
    const f = line.split('\t');
    if (f.length >= 3 && f[2] !== '') us.push(Number(f[2]));
  }
  if (us.length === 0) return undefined;
  const sorted = Float64Array.from(us).toSorted(); // numeric order (a typed array)
  // The smallest value with at least p % of the requests at or below it (the epsilon: 99.9 % of 1000 is rank 999, not 1000).
  const at = (p: number): number => (sorted[Math.max(0, Math.ceil((p * sorted.length) / 100 - 1e-9) - 1)] as number) / 1000;
  return { p50Ms: at(50), p90Ms: at(90), p99Ms: at(99), p999Ms: at(99.9), maxMs: (sorted[sorted.length - 1] as number) / 1000 };
}

export async function h2load(o: H2loadOptions): Promise<WrkResult> {
  const bin = which('h2load');
  if (!bin) throw new Error('h2load not found: run scripts/install-deps.sh (Debian package nghttp2-client)');
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-h2load-'));
  try {
    const logFile = join(dir, 'requests.log');
    // Bounded: h2load stops after -D; a hung one is killed 10 s after that.
    const { code, stdout, stderr } = await run(bin, h2loadArgs(o, logFile), {}, (o.durationS + 10) * 1000);
    const s = parseH2loadSummary(stdout);
    if (code !== 0 || !s) throw new Error(`h2load failed (exit ${code}): ${stderr || stdout}`);
    const l = latencies(readFileSync(logFile, 'utf8'));
    if (!l) throw new Error(`h2load logged no request: ${stdout}`);
    return { requests: s.done, rps: s.done / s.durationS, errors: s.failed, ...l };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
