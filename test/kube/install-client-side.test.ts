// The install base with plain (client-side) `kubectl apply -k manifests/` on a fresh API server:
// everything is created, a second apply reports every object unchanged, and switching the same
// install to server-side apply later is clean. (install.test.ts covers server-side apply first.)
import t from 'tap';
import { kubeForFile } from '../fixtures/kube.ts';

const MANIFESTS = new URL('../../manifests/', import.meta.url).pathname;

const k = kubeForFile(t);

const lines = (out: string): string[] => out.trim().split('\n').filter(Boolean);

/** kind/name → resourceVersion of every object the base installs. */
async function versions(): Promise<Record<string, string>> {
  const got = await k().kubectl(['get', '-k', MANIFESTS, '-o', 'jsonpath={range .items[*]}{.kind}/{.metadata.name}={.metadata.resourceVersion}{"\\n"}{end}']);
  if (got.code !== 0) throw new Error(got.stderr);
  return Object.fromEntries(lines(got.stdout).map((l) => l.split('=') as [string, string]));
}

t.test('kubectl apply -k creates everything; a second apply changes nothing', async (t) => {
  const rendered = await k().kubectl(['kustomize', MANIFESTS]);
  const objects = rendered.stdout.split(/^---$/m).length;

  const first = await k().kubectl(['apply', '-k', MANIFESTS]);
  t.equal(first.code, 0, first.stderr);
  t.equal(first.stderr, '', 'no warnings');
  t.equal(lines(first.stdout).length, objects);
  t.same(lines(first.stdout).filter((l) => !l.endsWith(' created')), [], 'every object created');

  const established = await k().kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd/trafficsplits.meshlet.io', 'crd/authorizationpolicies.meshlet.io']);
  t.equal(established.code, 0, established.stderr);

  // kubectl prints "configured" for a PodDisruptionBudget on every apply (its selector's patch
  // strategy is "replace", so kubectl always sends it), though nothing changes: judge by what is
  // stored, the resourceVersion of every object.
  const before = await versions();
  t.equal(Object.keys(before).length, objects, 'every object has a resourceVersion');
  const second = await k().kubectl(['apply', '-k', MANIFESTS]);
  t.equal(second.code, 0, second.stderr);
  t.same(lines(second.stdout).filter((l) => !l.endsWith(' unchanged') && !l.startsWith('poddisruptionbudget.policy/')), [], 'kubectl: unchanged');
  t.same(await versions(), before, 'no object was written');
  const diff = await k().kubectl(['diff', '-k', MANIFESTS]);
  t.equal(diff.code, 0, `kubectl diff finds no difference:\n${diff.stdout}${diff.stderr}`);
});

t.test('the same install can move to server-side apply', async (t) => {
  const ssa = await k().kubectl(['apply', '--server-side', '-k', MANIFESTS]);
  t.equal(ssa.code, 0, ssa.stderr);
  t.notMatch(ssa.stderr, /conflict/i);
  const diff = await k().kubectl(['diff', '--server-side', '-k', MANIFESTS]);
  t.equal(diff.code, 0, `kubectl diff finds no difference:\n${diff.stdout}${diff.stderr}`);
});
