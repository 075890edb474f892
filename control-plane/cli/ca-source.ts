// Where a CLI command finds the CA: --ca-file FILE, or --ca-secret NS/NAME with --kubeconfig (or
// the default Kubernetes credentials). Guarantees: exactly one source, or a usage error saying so.

import { kubeClients } from '../kube.ts';
import type { CaStore } from '../store/ca-store.ts';
import { FileCaStore } from '../store/file-store.ts';
import { SecretCaStore, parseSecretRef } from '../store/secret-store.ts';
import { CliError, UsageError } from './command.ts';

export const CA_SOURCE_OPTIONS = {
  'ca-file': { type: 'string' },
  'ca-secret': { type: 'string' },
  kubeconfig: { type: 'string' },
} as const;

export const CA_SOURCE_USAGE = `CA state (one of):
  --ca-file FILE        a local JSON file (0600; holds private keys)
  --ca-secret NS/NAME   a Kubernetes Secret (e.g. meshlet-system/meshlet-ca)
  --kubeconfig FILE     credentials for --ca-secret (default: KUBECONFIG, ~/.kube/config)
`;

export async function openStore(command: string, v: { 'ca-file'?: string; 'ca-secret'?: string; kubeconfig?: string }): Promise<CaStore> {
  if (v['ca-file'] && v['ca-secret']) throw new UsageError(command, '--ca-file and --ca-secret are alternatives; pass one');
  if (v['ca-file']) return new FileCaStore(v['ca-file']);
  if (!v['ca-secret']) throw new UsageError(command, 'where is the CA? pass --ca-file FILE or --ca-secret NS/NAME');
  let ref;
  try {
    ref = parseSecretRef(v['ca-secret']);
  } catch (e) {
    throw new UsageError(command, `--ca-secret: ${(e as Error).message}`);
  }
  try {
    return new SecretCaStore((await kubeClients(v.kubeconfig)).core, ref);
  } catch (e) {
    throw new CliError((e as Error).message, 'Pass --kubeconfig FILE for the cluster that holds the CA Secret.');
  }
}
