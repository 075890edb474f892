// `meshlet split <service> v2=50 [v1=50]`: new weights for a TrafficSplit. On the local mesh it
// edits the YAML file in the folder the control plane watches (atomic write; comments and layout
// kept); with --kubeconfig it reads the TrafficSplit object and patches its weights, only if its
// backends are still the ones read. Guarantees: nothing is written unless the new weights are valid.
import { readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, type Document } from 'yaml';
import { CliError, EXIT_OK, HELP_FLAG, UsageError, guarded, type Command, type Io } from '../command.ts';
import { meshFlagHelp, meshPath, readMeshFile } from '../mesh-file.ts';
import { parseWeight, planSplit, type Backend } from '../split-plan.ts';
import { parseArgs } from 'node:util';

/** --help, with the mesh file this command reads in `env`. */
const usage = (env: NodeJS.ProcessEnv): string => `usage: meshlet split SERVICE NAME=WEIGHT [NAME=WEIGHT...] [--mesh FILE | --config-dir DIR | --kubeconfig FILE -n NS] [-o table|json|yaml]

Set the weights of the TrafficSplit whose spec.service is SERVICE. NAME is a backend service
(api-v2) or its suffix (v2). Backends you do not name share what is left of 100 in their old
proportion: \`meshlet split api v2=50\` makes a 90/10 split 50/50.

${meshFlagHelp(env, 22)}:
                      edits the TrafficSplit's YAML file in the folder its control plane watches;
                      the proxies follow within about a second
  --config-dir DIR    edit the YAML in DIR instead (no running mesh needed)
  --kubeconfig FILE   a cluster: read the TrafficSplit object in -n NS (default "default") and
                      patch its weights; refused if its backends changed in the meantime
  -o, --output FORMAT table (default), json or yaml: the backends before and after
Exit 1 when the split is not found or cannot be written; 2 for bad usage or weights.
`;

interface Result {
  service: string;
  where: string;
  before: Backend[];
  after: Backend[];
}

/** Every TrafficSplit document for `service` in the YAML files of `dir`. */
function findInFolder(dir: string, service: string): Array<{ file: string; docs: Document.Parsed[]; doc: Document.Parsed }> {
  const found = [];
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f));
  } catch (e) {
    throw new CliError(`cannot read the config folder ${dir}: ${(e as Error).message}`);
  }
  for (const f of files) {
    const file = join(dir, f);
    const docs = parseAllDocuments(readFileSync(file, 'utf8'));
    if (!Array.isArray(docs)) continue;
    for (const doc of docs) {
      const js = doc.toJS() as { kind?: string; spec?: { service?: string } } | null;
      const name = service.split('.')[0];
      if (js?.kind === 'TrafficSplit' && (js.spec?.service === service || js.spec?.service === name)) found.push({ file, docs, doc });
    }
  }
  return found;
}

function writeAtomic(file: string, text: string): void {
  const tmp = join(file, '..', `.${process.pid}.meshlet-split.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

function plan(service: string, before: Backend[], asked: Array<[string, number]>): Backend[] {
  const p = planSplit(before, service, asked);
  if (!p.ok) throw new UsageError('split', p.error);
  return p.backends;
}

async function inFolder(dir: string, service: string, asked: Array<[string, number]>): Promise<Result> {
  const found = findInFolder(dir, service);
  if (found.length === 0) throw new CliError(`no TrafficSplit for service "${service}" in ${dir}`, 'Create one (see examples/canary.yaml), or name the service its spec.service names.');
  if (found.length > 1) throw new CliError(`${found.length} TrafficSplits name service "${service}" in ${dir}: ${found.map((f) => f.file).join(', ')}`, 'Keep one.');
  const { file, docs, doc } = found[0]!;
  const before = ((doc.toJS() as { spec: { backends: Backend[] } }).spec.backends ?? []).map((b) => ({ service: b.service, weight: b.weight }));
  const after = plan(service, before, asked);
  after.forEach((b, i) => doc.setIn(['spec', 'backends', i, 'weight'], b.weight));
  writeAtomic(file, docs.map((d, i) => (i > 0 && !d.toString().startsWith('---') ? `---\n${d.toString()}` : d.toString())).join(''));
  return { service, where: file, before, after };
}

async function inCluster(kubeconfig: string, namespace: string, service: string, asked: Array<[string, number]>): Promise<Result> {
  const { kubeClients } = await import('../../kube.ts');
  const k8s = await import('@kubernetes/client-node');
  const kube = await kubeClients(kubeconfig).catch((e: Error) => {
    throw new CliError(e.message, 'Pass --kubeconfig FILE.');
  });
  const api = kube.kc.makeApiClient(k8s.CustomObjectsApi);
  const ref = { group: 'meshlet.io', version: 'v1alpha1', namespace, plural: 'trafficsplits' };
  type Ts = { metadata: { name: string; resourceVersion?: string }; spec: { service: string; backends: Backend[] } };
  let list: { items: Ts[] };
  try {
    list = (await api.listNamespacedCustomObject(ref)) as { items: Ts[] };
  } catch (e) {
    throw new CliError(`cannot list TrafficSplits in ${namespace} on ${kube.server}: ${(e as Error).message.split('\n')[0]}`, 'Are the meshlet CRDs installed (kubectl apply -k manifests/)?');
  }
  const short = service.split('.')[0];
  const items = list.items.filter((x) => x.spec?.service === service || x.spec?.service === short);
  if (items.length !== 1) throw new CliError(`${items.length} TrafficSplits for service "${service}" in namespace ${namespace}`, items.length === 0 ? 'Pass -n NS, or create one.' : 'Keep one.');
  const obj = items[0]!;
  const before = obj.spec.backends.map((b) => ({ service: b.service, weight: b.weight }));
  const after = plan(service, before, asked);
  // A JSON Patch, not a replace of the object read: the control plane writes the status of the
  // same object (a new resourceVersion), which would make a replace fail with a conflict. The
  // `test` makes the API server apply it only to the backends the weights were planned from: a
  // concurrent edit of them is refused, never overwritten (an edit of anything else is kept).
  const patch = [
    { op: 'test', path: '/spec/backends', value: obj.spec.backends },
    ...after.map((b, i) => ({ op: 'replace', path: `/spec/backends/${i}/weight`, value: b.weight })),
  ];
  const name = obj.metadata.name;
  try {
    await api.patchNamespacedCustomObject({ ...ref, name, body: patch }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.JsonPatch));
  } catch (e) {
    // A failed `test` is a 422 saying only "the server rejected our request": re-read to say what changed.
    const now = (e as { code?: unknown }).code === 422 ? await api.getNamespacedCustomObject({ ...ref, name }).then((x) => x as Ts, () => undefined) : undefined;
    if (now && JSON.stringify(now.spec?.backends) !== JSON.stringify(obj.spec.backends)) {
      const weights = (now.spec?.backends ?? []).map((b) => `${b.service} ${b.weight}`).join(', ');
      throw new CliError(`trafficsplit/${name} changed while it was being updated: its backends are now ${weights}; nothing was written`, 'Run the command again to set the weights on what it holds now.');
    }
    const code = (e as { code?: unknown }).code;
    throw new CliError(`cannot update trafficsplit/${name}: ${(e as Error).message.split('\n')[0]}`, code === 403 ? `It needs the patch verb on trafficsplits (kubectl auth can-i patch trafficsplits -n ${namespace}).` : undefined);
  }
  return { service, where: `${kube.server} ${namespace}/trafficsplit/${name}`, before, after };
}

async function run(args: string[], io: Io): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { mesh: { type: 'string' }, 'config-dir': { type: 'string' }, kubeconfig: { type: 'string' }, namespace: { type: 'string', short: 'n' }, output: { type: 'string', short: 'o' }, help: HELP_FLAG } });
  } catch (e) {
    throw new UsageError('split', (e as Error).message);
  }
  const v = parsed.values;
  if (v.help) {
    io.stdout(usage(io.env));
    return EXIT_OK;
  }
  const [service, ...weights] = parsed.positionals;
  if (!service || weights.length === 0) throw new UsageError('split', 'give a service and at least one NAME=WEIGHT (e.g. meshlet split api v2=50)');
  const asked = weights.map((w) => {
    const p = parseWeight(w);
    if (!p) throw new UsageError('split', `${JSON.stringify(w)}: want NAME=WEIGHT with WEIGHT an integer 0-100 (v2=50)`);
    return p;
  });
  const format = v.output ?? 'table';
  if (format !== 'table' && format !== 'json' && format !== 'yaml') throw new UsageError('split', `-o ${format}: want table, json or yaml`);
  if ([v.mesh, v['config-dir'], v.kubeconfig].filter(Boolean).length > 1) throw new UsageError('split', 'give one of --mesh, --config-dir, --kubeconfig');
  const r = v.kubeconfig
    ? await inCluster(v.kubeconfig, v.namespace ?? 'default', service, asked)
    : await inFolder(v['config-dir'] ?? readMeshFile(meshPath(v.mesh, io.env)).configDir, service, asked);
  if (format === 'json') io.stdout(JSON.stringify(r, null, 2) + '\n');
  else if (format === 'yaml') io.stdout((await import('yaml')).stringify(r));
  else io.stdout(`${r.service}: ${r.after.map((b, i) => `${b.service} ${r.before[i]!.weight} → ${b.weight}`).join(', ')}\n  written to ${r.where}\n`);
  return EXIT_OK;
}

export const split: Command = {
  name: 'split',
  summary: 'set TrafficSplit weights (meshlet split api v2=50): the local mesh\'s YAML, or a cluster',
  run: (args, io) => guarded('split', io, () => run(args, io)),
};
