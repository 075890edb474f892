// `meshlet start` (what `npm start` runs): the whole mesh on one machine, demo/start.ts in a child
// process with the same arguments. Guarantees: Ctrl-C/SIGTERM reach the mesh, which stops every
// process it started; the exit code is the mesh's.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Command, Io } from '../command.ts';

const DEMO = fileURLToPath(new URL('../../../demo/start.ts', import.meta.url));

/** The mesh's exit code; killed by a signal (before its own handlers were set): 128 + the signal's number, as a shell says (130 for Ctrl-C). */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return signal ? 128 + (constants.signals[signal] ?? 15) : 1;
}

export const start: Command = {
  name: 'start',
  summary: 'run the whole mesh on this machine: control plane, four demo services with proxies, load, live view',
  async run(args: string[], io: Io): Promise<number> {
    const child = spawn(process.execPath, [DEMO, ...args], { stdio: 'inherit', env: io.env });
    // The terminal sends Ctrl-C to the whole process group; a signal sent to this process alone
    // is passed on. The demo ignores a second one while it stops.
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    const code = await new Promise<number>((resolve) => child.once('exit', (c, s) => resolve(exitCodeOf(c, s))));
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    return code;
  },
};
