// The `meshlet` dispatcher: picks the command by its first word and hands it the rest.
// Guarantees: tiny on purpose; a new command is one file in cli/commands/ plus one line in COMMANDS.

import { EXIT_OK, EXIT_USAGE, type Command, type Io } from './command.ts';

/** Loaded on use, so `meshlet identity` never pays for the Kubernetes client and vice versa. */
const COMMANDS: ReadonlyArray<{ name: string; summary: string; load: () => Promise<Command> }> = [
  { name: 'identity', summary: 'workload identity: create the CA, bootstrap tokens, rotate issuer and anchors, status', load: async () => (await import('./commands/identity.ts')).identity },
  { name: 'install', summary: 'create the CA Secret for a cluster (--dry-run prints it)', load: async () => (await import('./commands/install.ts')).install },
  { name: 'proxy-status', summary: 'proxies connected to the control plane: identity, config version sent/ACKed, NACK reasons', load: async () => (await import('./commands/proxy-status.ts')).proxyStatus },
  { name: 'proxy-config', summary: "the config a proxy runs, from the proxy's admin /config", load: async () => (await import('./commands/proxy-config.ts')).proxyConfig },
  { name: 'inject', summary: 'add the meshlet proxy to every Pod template of a manifest (file or stdin), to stdout', load: async () => (await import('./commands/inject.ts')).inject },
  { name: 'check', summary: 'inspect a cluster: CRDs, webhook CA bundle, control plane, CA validity, Pods without the sidecar', load: async () => (await import('./commands/check.ts')).check },
  { name: 'start', summary: 'run the whole mesh on this machine (what npm start runs): control plane, demo services, load, live view', load: async () => (await import('./commands/start.ts')).start },
  { name: 'stat', summary: 'golden signals of the local mesh per edge and service: rps, success, p50/p99, mTLS, split, breaker', load: async () => (await import('./commands/stat.ts')).stat },
  { name: 'split', summary: 'set TrafficSplit weights (split api v2=50): the local mesh\'s YAML, or a cluster', load: async () => (await import('./commands/split.ts')).split },
  { name: 'fault', summary: 'make a demo app of the local mesh fail a share of requests or slow down', load: async () => (await import('./commands/fault.ts')).fault },
  { name: 'diagnose', summary: 'why a call from SOURCE to DESTINATION fails: route, split, endpoints, breaker, authz, certs, errors', load: async () => (await import('./commands/diagnose.ts')).diagnose },
];

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage: meshlet <command> [options]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'meshlet <command> --help' for a command's options.",
    'Exit codes: 0 ok, 1 the operation failed (the message says what to do), 2 bad usage.',
    '',
  ].join('\n');
}

export async function run(argv: string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout)(usage());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    io.stderr(`meshlet: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return EXIT_USAGE;
  }
  return (await entry.load()).run(rest, io);
}
