// `meshlet proxy-status`: every proxy connected to a control plane, its identity, the version it
// runs, when it last ACKed, and why it refuses the version it was last sent (from the admin /proxies).
// Which control plane: --admin, else the local mesh's (npm start) when one runs, else 127.0.0.1:9990.
import { EXIT_FAILURE, EXIT_OK, CliError, HELP_FLAG, UsageError, flags, guarded, type Command, type Io } from '../command.ts';
import { meshFlagHelp, meshPath, readMeshFile } from '../mesh-file.ts';

/** The control plane's own default --admin-listen (control-plane/main.ts). */
export const DEFAULT_ADMIN = 'http://127.0.0.1:9990';

/** --help, with the mesh file this command reads in `env`. */
const usage = (env: NodeJS.ProcessEnv): string => `usage: meshlet proxy-status [--admin URL] [--mesh FILE] [-o table|json]

  --admin URL           the control plane's admin server (default: the local mesh's (npm start)
                        when its mesh file names a running mesh, else ${DEFAULT_ADMIN})
${meshFlagHelp(env, 24)}
  -o, --output FORMAT   table (default) or json
Exit 1 when the control plane cannot be reached or any proxy's last answer was a refusal (NACK).
`;

/** Which admin server to read, and how it was chosen (for the error when it cannot be read). */
export interface AdminChoice {
  url: string;
  /** 'flag': --admin; 'mesh': the local mesh file; 'default': neither. */
  from: 'flag' | 'mesh' | 'default';
  /** The mesh file looked at (unless --admin was given). */
  meshFile: string | undefined;
  /** Why the mesh file gave no URL, when it did not. */
  meshProblem: string | undefined;
}

/** --admin URL, else the control plane admin of the local mesh the file names (if it runs), else the default. */
export function chooseAdmin(flag: string | undefined, meshFile: string, read: (path: string) => { controlPlane?: { admin?: string } } = readMeshFile): AdminChoice {
  if (flag !== undefined) return { url: flag, from: 'flag', meshFile: undefined, meshProblem: undefined };
  let problem: string;
  try {
    const admin = read(meshFile).controlPlane?.admin;
    if (admin) return { url: admin, from: 'mesh', meshFile, meshProblem: undefined };
    problem = `${meshFile} names no control plane admin`;
  } catch (e) {
    problem = (e as Error).message;
  }
  return { url: DEFAULT_ADMIN, from: 'default', meshFile, meshProblem: problem };
}

/** The error for an admin server that could not be read: what was tried, and how to point elsewhere. */
export function unreachable(choice: AdminChoice, why: string): CliError {
  const at = `cannot read ${choice.url}/proxies`;
  switch (choice.from) {
    case 'flag':
      return new CliError(`${at}: ${why}`, 'Is the control plane running with its admin server there? Pass --admin URL.');
    case 'mesh':
      return new CliError(`${at} (the control plane admin of the local mesh in ${choice.meshFile}): ${why}`, 'Is the local mesh still up (meshlet stat)? For another control plane, pass --admin URL (its --admin-listen).');
    case 'default':
      return new CliError(
        `${at} (the default): ${why}`,
        `Tried the local mesh file first: ${choice.meshProblem}.\nPass --admin URL (the control plane's --admin-listen), or start the local mesh with \`npm start\`.`,
      );
  }
}

interface Row {
  identity: string;
  workload: string;
  namespace: string;
  pod: string;
  sent: string | null;
  acked: string | null;
  lastAckAt: string | null;
  nack: { version: string; reason: string; at: string } | null;
}

export function statusTable(rows: readonly Row[]): string {
  const head = ['PROXY', 'IDENTITY', 'SENT', 'ACKED', 'LAST ACK', 'NACK'];
  const body = rows.map((r) => [`${r.namespace}/${r.pod || r.workload}`, r.identity, r.sent ?? '-', r.acked ?? '-', r.lastAckAt ?? '-', r.nack && r.nack.version !== r.acked ? `${r.nack.version}: ${r.nack.reason}` : '-']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  return [head, ...body].map((cols) => cols.map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

export const proxyStatus: Command = {
  name: 'proxy-status',
  summary: 'proxies connected to the control plane: identity, config version sent/ACKed, NACK reasons',
  run: (args, io) => guarded('proxy-status', io, () => run(args, io)),
};

async function run(args: string[], io: Io): Promise<number> {
  const v = flags('proxy-status', args, { options: { admin: { type: 'string' }, mesh: { type: 'string' }, output: { type: 'string', short: 'o' }, help: HELP_FLAG } }, usage(io.env), io);
  if (!v) return EXIT_OK;
  const format = v.output ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError('proxy-status', `-o ${format}: want table or json`);
  if (v.admin !== undefined && v.mesh !== undefined) throw new UsageError('proxy-status', 'give --admin or --mesh, not both');
  const admin = chooseAdmin(v.admin, meshPath(v.mesh, io.env));
  let rows: Row[];
  try {
    const r = await fetch(new URL('/proxies', admin.url));
    if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
    rows = (await r.json()) as Row[];
  } catch (e) {
    throw unreachable(admin, (e as Error).message);
  }
  io.stdout(format === 'json' ? JSON.stringify(rows, null, 2) + '\n' : statusTable(rows));
  return rows.some((r) => r.nack && r.nack.version !== r.acked) ? EXIT_FAILURE : EXIT_OK;
}
