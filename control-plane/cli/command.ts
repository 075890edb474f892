// The shape every `meshlet` command has, and the few helpers they share (flag parsing, errors).
// Guarantees: exit codes scripts can trust — 0 ok, 1 failure (message says what to do), 2 usage.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { WallClock } from '../ca/index.ts';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  wallClock: WallClock;
}

/** One top-level command: `meshlet <name> ...`. One file each under cli/commands/. */
export interface Command {
  readonly name: string;
  /** One line for `meshlet --help`. */
  readonly summary: string;
  /** `args` are the words after the command name; returns the exit code. */
  run(args: string[], io: Io): Promise<number>;
}

/** Bad invocation: exit 2, with the usage hint of `command`. */
export class UsageError extends Error {
  readonly command: string;
  constructor(command: string, message: string) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}

/** The operation failed: exit 1. `hint` says what to do next. */
export class CliError extends Error {
  readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(message);
    this.name = 'CliError';
    this.hint = hint;
  }
}

/** Every command's options include this. */
export const HELP_FLAG = { type: 'boolean', short: 'h' } as const;

/**
 * parseArgs (no positionals) with every problem as a UsageError. Returns undefined when
 * `--help` was given and the usage printed (the caller exits 0).
 */
export function flags<T extends { options: NonNullable<ParseArgsConfig['options']> & { help: typeof HELP_FLAG } }>(
  command: string, args: string[], config: T, usage: string, io: Io,
): ReturnType<typeof parseArgs<T & { strict: true; allowPositionals: false }>>['values'] | undefined {
  let parsed;
  try {
    parsed = parseArgs({ ...config, args, strict: true as const, allowPositionals: false as const });
  } catch (e) {
    throw new UsageError(command, (e as Error).message);
  }
  if ((parsed.values as { help?: boolean }).help) {
    io.stdout(usage);
    return undefined;
  }
  return parsed.values as ReturnType<typeof parseArgs<T & { strict: true; allowPositionals: false }>>['values'];
}

/** Run a command body, turning errors into messages and exit codes (the one place that does). */
export async function guarded(command: string, io: Io, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`meshlet ${e.command}: ${e.message}\nRun 'meshlet ${e.command} --help' for usage.\n`);
      return EXIT_USAGE;
    }
    const hint = e instanceof CliError && e.hint ? `\n${e.hint}` : '';
    io.stderr(`meshlet ${command}: ${(e as Error).message}${hint}\n`);
    return EXIT_FAILURE;
  }
}
