// Where the CLI finds a local mesh (`meshlet start`): a small JSON file the demo writes once every
// process is up and removes when it stops. Guarantees: one lookup rule (--mesh, MESHLET_MESH,
// $XDG_RUNTIME_DIR/meshlet/local.json, else under the temp dir; when that file is absent, the one
// running mesh started with another --port-base), atomic writes, and an error that says what to do.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError } from './command.ts';

export interface MeshWorkload {
  /** Workload name, also its service and service account in the demo. */
  name: string;
  /** The service it serves (absent for the load generator). */
  service: string | undefined;
  /** The SPIFFE ID its proxy proves. */
  identity: string;
  /** The proxy's admin server (/ready /metrics /config /errors). */
  admin: string;
  /** The proxy's inbound listener (host:port), when it serves. */
  inbound: string | undefined;
  /** The demo app's fault control (POST/DELETE /fault), when it has one. */
  faults: string | undefined;
  /** The app port the proxy forwards inbound requests to (authorization policies name it). */
  appPort?: number | undefined;
}

export interface MeshFile {
  version: 1;
  /** The process that runs the mesh (`meshlet start`); the file is stale once it is gone. */
  pid: number;
  startedAt: string;
  namespace: string;
  /** The folder of YAML the control plane watches (`meshlet split` edits it). */
  configDir: string;
  controlPlane: { url: string; admin: string };
  workloads: MeshWorkload[];
}

/** The file a mesh started with `portBase` writes, and the CLI reads, unless told otherwise. */
export function defaultMeshPath(env: NodeJS.ProcessEnv, portBase?: number): string {
  const base = env['XDG_RUNTIME_DIR'] ? join(env['XDG_RUNTIME_DIR'], 'meshlet') : join(tmpdir(), `meshlet-${process.getuid?.() ?? 'user'}`);
  return join(base, portBase === undefined || portBase === 14000 ? 'local.json' : `local-${portBase}.json`);
}

/** What meshPath needs of the file system (injected in tests). */
export interface MeshLookup {
  exists(path: string): boolean;
  /** File names in a folder ([] when it does not exist). */
  list(dir: string): string[];
  /** The pid of the mesh that wrote the file, when it is a mesh file whose process runs. */
  livePid(path: string): number | undefined;
}

/**
 * --mesh FILE, else MESHLET_MESH, else the default file. When the default file does not exist,
 * a mesh started with another --port-base (local-<N>.json beside it) is used if it is the only
 * one running; with several, the error names them (CliError), since picking one would be a guess.
 */
export function meshPath(flag: string | undefined, env: NodeJS.ProcessEnv, fs: MeshLookup = realLookup): string {
  const chosen = flag ?? env['MESHLET_MESH'];
  if (chosen !== undefined) return chosen;
  const path = defaultMeshPath(env);
  if (fs.exists(path)) return path;
  const dir = dirname(path);
  const others = fs
    .list(dir)
    .filter((f) => /^local-[0-9]+\.json$/.test(f))
    .map((f) => join(dir, f))
    .filter((p) => fs.livePid(p) !== undefined)
    .toSorted();
  if (others.length === 1) return others[0]!;
  if (others.length > 1) throw new CliError(`${path} does not exist and ${others.length} meshes started with another --port-base run: ${others.join(', ')}`, 'Say which with --mesh FILE or MESHLET_MESH.');
  return path;
}

const realLookup: MeshLookup = {
  exists: existsSync,
  list(dir) {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  },
  livePid(path) {
    try {
      const m = JSON.parse(readFileSync(path, 'utf8')) as Partial<MeshFile>;
      return m.version === 1 && typeof m.pid === 'number' && alive(m.pid) ? m.pid : undefined;
    } catch {
      return undefined;
    }
  },
};

/**
 * The --mesh line of a command's --help: the file this command reads here when --mesh is not
 * given (resolved from this environment), then the rule, so the help is right on every machine.
 * `column` is where the option's description starts.
 */
export function meshFlagHelp(env: NodeJS.ProcessEnv, column: number): string {
  const indent = ' '.repeat(column);
  let here: string;
  try {
    here = meshPath(undefined, env);
  } catch {
    here = `${defaultMeshPath(env)} (absent; several meshes of other port bases run)`;
  }
  return [
    `${'  --mesh FILE'.padEnd(column)}the mesh file; without --mesh, here: ${here}`,
    `${indent}(MESHLET_MESH, else $XDG_RUNTIME_DIR/meshlet/local.json, else`,
    `${indent}<temp dir>/meshlet-<uid>/local.json, temp dir: $TMPDIR, $TMP, $TEMP or /tmp;`,
    `${indent}when that file is absent, the one running mesh of another --port-base)`,
  ].join('\n');
}

export function writeMeshFile(path: string, m: MeshFile): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(m, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, path);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const START_HINT = 'Start the local mesh with `npm start` (or `meshlet start`), or point at its file with --mesh FILE or MESHLET_MESH.';

export function readMeshFile(path: string): MeshFile {
  let m: MeshFile;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as MeshFile;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no local mesh is running' : (e as Error).message;
    throw new CliError(`cannot read ${path}: ${why}`, START_HINT);
  }
  if (m.version !== 1 || !Array.isArray(m.workloads)) throw new CliError(`${path} is not a meshlet mesh file (version 1)`, START_HINT);
  if (!alive(m.pid)) throw new CliError(`${path} is stale: the mesh (pid ${m.pid}) is not running`, START_HINT);
  return m;
}

/** The workload a user named: by workload name or service name (`api-v2`, `api-v2.demo`). */
export function findWorkload(m: MeshFile, name: string): MeshWorkload {
  const short = name.endsWith(`.${m.namespace}`) ? name.slice(0, -m.namespace.length - 1) : name;
  const w = m.workloads.find((x) => x.name === short || x.service === short);
  if (!w) throw new CliError(`no workload "${name}" in the local mesh`, `Known: ${m.workloads.map((x) => x.name).join(', ')}.`);
  return w;
}
