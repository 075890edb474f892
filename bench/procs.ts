// Child processes for the benchmark: started in their own process group, tracked, and all killed
// when the run ends — normally, on an error, or on Ctrl-C. Also reads CPU and peak RSS from /proc.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

const live = new Set<ChildProcess>();
const tempDirs: string[] = [];

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Synchronous last resort: SIGKILL every process group we started, remove temp dirs. */
export function killAll(): void {
  for (const child of live) killGroup(child, 'SIGKILL');
  live.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

process.on('exit', killAll);
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(signal, () => {
    console.error(`\nbench: ${signal}, stopping every process it started`);
    killAll();
    process.exit(code);
  });
}

export function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-bench-'));
  tempDirs.push(dir);
  return dir;
}

/** Absolute path of a tool, looking in PATH and the sbin folders (nginx, haproxy live there). */
export function which(tool: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  return dirs.filter((d) => d !== '').map((d) => join(d, tool)).find((p) => existsSync(p));
}

export interface Proc {
  name: string;
  pid: number;
  /** The last few KB of stdout+stderr, for error messages. */
  tail(): string;
  exited(): boolean;
  /** SIGTERM the process group, SIGKILL it after a grace period. */
  stop(): Promise<void>;
}

/** Start a long-running process in its own process group; resolves once it has been spawned. */
export async function start(name: string, cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<Proc> {
  const child = spawn(cmd, args, { cwd: opts.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  const keep = (b: Buffer): void => {
    out = (out + b.toString()).slice(-8192);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exit.then(() => live.delete(child));
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e) => reject(new Error(`${name}: cannot start ${cmd}: ${e.message}`)));
  });
  return {
    name,
    pid: child.pid as number,
    tail: () => out,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    async stop() {
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 2000);
      await exit;
      clearTimeout(timer);
      killGroup(child, 'SIGKILL'); // leftovers in the group (nginx workers)
    },
  };
}

/** Run a command to completion (tracked like the others) and return its output; killed after `timeoutMs` if given. */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    live.add(child);
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => killGroup(child, 'SIGKILL'), timeoutMs);
    child.once('exit', () => clearTimeout(timer));
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    child.once('error', (e) => {
      live.delete(child);
      reject(e);
    });
    child.once('close', (code) => {
      live.delete(child);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const taken = new Set<number>();
/** A free loopback TCP port (never handed out twice in one run). */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const got = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(got));
      });
    });
    if (!taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
}

/** HTTP status of a GET (0 when it fails), with an optional Host header. */
export function httpStatus(url: string, host?: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 1000, headers: host ? { host } : {} }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(0));
  });
}

/** HTTP/2 status of a GET over h2c with prior knowledge (0 when it fails), with an optional :authority. */
export async function h2Status(url: string, authority?: string): Promise<number> {
  const http2 = await import('node:http2');
  return new Promise((resolve) => {
    const session = http2.connect(url);
    const done = (status: number): void => {
      session.destroy();
      resolve(status);
    };
    session.on('error', () => done(0)); // `on`: a destroyed session may report more than one
    session.setTimeout(1000, () => done(0));
    const req = session.request({ ':path': new URL(url).pathname, ...(authority ? { ':authority': authority } : {}) });
    let status = 0;
    req.once('response', (h) => (status = Number(h[':status'] ?? 0)));
    req.on('error', () => done(0));
    req.on('data', () => {});
    req.once('end', () => done(status));
  });
}

/** Whether something listens on 127.0.0.1:port. */
export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** Poll `check` until it holds; fail early when one of `procs` dies, with its output. */
export async function waitFor(what: string, check: () => Promise<boolean>, procs: Proc[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const dead = procs.find((p) => p.exited());
    if (dead) throw new Error(`${dead.name} exited while waiting for ${what}:\n${dead.tail()}`);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${procs.map((p) => `--- ${p.name}\n${p.tail()}`).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---- /proc ----

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
  } catch {
    return undefined;
  }
}

/** pid and its live descendants (a proxy that forks workers is measured whole). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = Number(statFields(Number(name))?.[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid)?.push(Number(name));
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop() as number;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** utime+stime in seconds of a process tree. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    if (f) ticks += Number(f[11]) + Number(f[12]); // utime (#14), stime (#15)
  }
  return ticks / CLK_TCK;
}

function statusKb(pid: number, field: string): number {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Sum of VmHWM (peak RSS since start or since resetPeakRss) over a process tree, in MB. */
export const peakRssMb = (pids: number[]): number => pids.reduce((s, p) => s + statusKb(p, 'VmHWM'), 0) / 1024;
export const rssMb = (pids: number[]): number => pids.reduce((s, p) => s + statusKb(p, 'VmRSS'), 0) / 1024;

/**
 * Unique set size (private pages, smaps_rollup Private_Clean + Private_Dirty) over a process tree,
 * in MB: what the processes cost beyond the pages they share with every other Node process (the
 * node binary's code and data, which RSS counts in full for each).
 */
export function ussMb(pids: number[]): number {
  let kb = 0;
  for (const p of pids) {
    try {
      const s = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
      kb += Number(/Private_Clean:\s+(\d+)/.exec(s)?.[1] ?? 0) + Number(/Private_Dirty:\s+(\d+)/.exec(s)?.[1] ?? 0);
    } catch {
      // gone, or no smaps_rollup (Linux < 4.14)
    }
  }
  return kb / 1024;
}

/** Reset VmHWM to the current RSS (clear_refs 5, Linux ≥ 4.0), so the next peak is one run's. */
export function resetPeakRss(pids: number[]): boolean {
  let ok = true;
  for (const pid of pids) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      ok = false;
    }
  }
  return ok;
}
