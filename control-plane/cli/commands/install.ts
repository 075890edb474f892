// `meshlet install`: a fresh CA as the Kubernetes Secret the control plane reads. --dry-run prints
// it; otherwise it is created in the cluster. Guarantees: never overwrites an existing CA Secret.

import { stringify } from 'yaml';
import { DEFAULT_TRUST_DOMAIN, initCa } from '../../ca/index.ts';
import { parseDuration } from '../../duration.ts';
import { kubeClients } from '../../kube.ts';
import { CaStoreError } from '../../store/ca-document.ts';
import { DEFAULT_CA_SECRET, SecretCaStore, caSecretObject } from '../../store/secret-store.ts';
import { CliError, EXIT_OK, HELP_FLAG, UsageError, flags, guarded, type Command, type Io } from '../command.ts';

const USAGE = `usage: meshlet install [--dry-run] [--kubeconfig FILE] [options]

Generate a CA (trust anchor + issuer) and store it as the Secret the control plane reads
(${DEFAULT_CA_SECRET.namespace}/${DEFAULT_CA_SECRET.name}). The rest of meshlet is \`kubectl apply -k manifests/\`.

  --dry-run             print the Secret as YAML instead (it holds private keys: pipe it to
                        kubectl apply -f - or to a secret manager, not to a file you share)
  --kubeconfig FILE     the cluster (default: KUBECONFIG, ~/.kube/config)
  --namespace NS        (default ${DEFAULT_CA_SECRET.namespace}; created if missing)
  --secret-name NAME    (default ${DEFAULT_CA_SECRET.name})
  --trust-domain TD     (default ${DEFAULT_TRUST_DOMAIN})
  --leaf-ttl DURATION   the longest leaf lifetime the CA issues (default 24h)
`;

async function run(args: string[], io: Io): Promise<number> {
  const v = flags('install', args, {
    options: {
      'dry-run': { type: 'boolean' }, kubeconfig: { type: 'string' }, namespace: { type: 'string', short: 'n' },
      'secret-name': { type: 'string' }, 'trust-domain': { type: 'string' }, 'leaf-ttl': { type: 'string' }, help: HELP_FLAG,
    },
  }, USAGE, io);
  if (!v) return EXIT_OK;
  const ref = { namespace: v.namespace ?? DEFAULT_CA_SECRET.namespace, name: v['secret-name'] ?? DEFAULT_CA_SECRET.name };
  let state;
  try {
    state = initCa({ trustDomain: v['trust-domain'] ?? DEFAULT_TRUST_DOMAIN, now: io.wallClock.nowMs(), leafTtlMs: parseDuration(v['leaf-ttl'] ?? '24h', '--leaf-ttl') });
  } catch (e) {
    throw new UsageError('install', (e as Error).message);
  }
  if (v['dry-run']) {
    io.stdout(`# meshlet CA for trust domain ${state.trustDomain}: trust anchor and issuer WITH PRIVATE KEYS.\n${stringify(caSecretObject({ state }, ref))}`);
    return EXIT_OK;
  }
  const kube = await kubeClients(v.kubeconfig).catch((e: Error) => {
    throw new CliError(e.message, 'Pass --kubeconfig FILE, or --dry-run to print the Secret instead.');
  });
  try {
    await kube.core.readNamespace({ name: ref.namespace });
  } catch (e) {
    if ((e as { code?: number }).code !== 404) throw new CliError(`cannot read namespace ${ref.namespace} on ${kube.server}: ${(e as Error).message.split('\n')[0]}`);
    await kube.core.createNamespace({ body: { metadata: { name: ref.namespace, labels: { 'app.kubernetes.io/part-of': 'meshlet' } } } });
    io.stdout(`namespace/${ref.namespace} created\n`);
  }
  const store = new SecretCaStore(kube.core, ref);
  try {
    await store.create({ state });
  } catch (e) {
    if (e instanceof CaStoreError) throw new CliError(e.message, e.code === 'exists' ? `Inspect it with: meshlet identity status --ca-secret ${ref.namespace}/${ref.name}` : undefined);
    throw e;
  }
  io.stdout(`secret/${ref.name} created in ${ref.namespace} on ${kube.server}: CA for trust domain ${state.trustDomain}, issuer valid until ${new Date(state.issuer.notAfterMs).toISOString()}\n`);
  return EXIT_OK;
}

export const install: Command = {
  name: 'install',
  summary: 'create the CA Secret for a cluster (--dry-run prints it)',
  run: (args, io) => guarded('install', io, () => run(args, io)),
};
