// `meshlet proxy-status`: every proxy connected to a control plane, its identity, the version it
// runs, when it last ACKed, and why it refuses the version it was last sent (from the admin /proxies).
import { EXIT_FAILURE, EXIT_OK, CliError, HELP_FLAG, UsageError, flags, guarded, type Command, type Io } from '../command.ts';

const USAGE = `usage: meshlet proxy-status [--admin URL] [-o table|json]

  --admin URL           the control plane's admin server (default http://127.0.0.1:9990)
  -o, --output FORMAT   table (default) or json
Exit 1 when the control plane cannot be reached or any proxy's last answer was a refusal (NACK).
`;

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
  const v = flags('proxy-status', args, { options: { admin: { type: 'string' }, output: { type: 'string', short: 'o' }, help: HELP_FLAG } }, USAGE, io);
  if (!v) return EXIT_OK;
  const format = v.output ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError('proxy-status', `-o ${format}: want table or json`);
  const admin = v.admin ?? 'http://127.0.0.1:9990';
  let rows: Row[];
  try {
    const r = await fetch(new URL('/proxies', admin));
    if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
    rows = (await r.json()) as Row[];
  } catch (e) {
    throw new CliError(`cannot read ${admin}/proxies: ${(e as Error).message}`, 'Is the control plane running with its admin server there? Pass --admin URL.');
  }
  io.stdout(format === 'json' ? JSON.stringify(rows, null, 2) + '\n' : statusTable(rows));
  return rows.some((r) => r.nack && r.nack.version !== r.acked) ? EXIT_FAILURE : EXIT_OK;
}
