// `meshlet proxy-config <proxy-admin-url>`: the config a proxy runs, read from its admin /config.
import { EXIT_OK, CliError, HELP_FLAG, UsageError, guarded, type Command, type Io } from '../command.ts';
import { parseArgs } from 'node:util';

const USAGE = `usage: meshlet proxy-config ADMIN-URL [-o json|yaml]

  ADMIN-URL             the proxy's admin server, e.g. http://127.0.0.1:4191
  -o, --output FORMAT   json (default) or yaml
`;

export const proxyConfig: Command = {
  name: 'proxy-config',
  summary: "the config a proxy runs (its version and document), from the proxy's admin /config",
  run: (args, io) => guarded('proxy-config', io, () => run(args, io)),
};

async function run(args: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { output: { type: 'string', short: 'o' }, help: HELP_FLAG }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError('proxy-config', (e as Error).message);
  }
  if (parsed.values.help) {
    io.stdout(USAGE);
    return EXIT_OK;
  }
  const [url, ...extra] = parsed.positionals;
  if (!url || extra.length > 0) throw new UsageError('proxy-config', 'give exactly one proxy admin URL');
  const format = parsed.values.output ?? 'json';
  if (format !== 'json' && format !== 'yaml') throw new UsageError('proxy-config', `-o ${format}: want json or yaml`);
  let body: unknown;
  try {
    const r = await fetch(new URL('/config', url));
    body = await r.json();
    if (r.status !== 200) throw new Error(`HTTP ${r.status}: the proxy has no config yet`);
  } catch (e) {
    throw new CliError(`cannot read ${url}/config: ${(e as Error).message}`, "Pass the proxy's admin URL (its --admin-listen).");
  }
  if (format === 'yaml') io.stdout((await import('yaml')).stringify(body));
  else io.stdout(JSON.stringify(body, null, 2) + '\n');
  return EXIT_OK;
}
