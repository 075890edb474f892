// `meshlet inject` as a user runs it: the real CLI process on real files and on stdin; and the
// transform behind it, kind by kind (every Pod template found, comments and other objects kept).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import jsonpatch from 'fast-json-patch';
import t from 'tap';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { initCa, trustBundle } from '../../control-plane/ca/index.ts';
import { inject } from '../../injector/inject.ts';
import { transformManifests } from '../../injector/manifests.ts';
import { defaultSettings } from '../../injector/settings.ts';

const MESHLET = fileURLToPath(new URL('../../bin/meshlet.ts', import.meta.url));
const ANCHORS = trustBundle(initCa({ now: Date.now() })).join('');
const settings = defaultSettings({ trustAnchorsPem: ANCHORS });
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const dir = mkdtempSync(join(tmpdir(), 'meshlet-inject-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const anchorsFile = join(dir, 'anchors.pem');
writeFileSync(anchorsFile, ANCHORS);

function meshlet(args: string[], stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [MESHLET, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, MESHLET_TRUST_ANCHORS_PEM: '' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(stdin);
  });
}

const APP = `# The shop's front end: kept as written.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web # the name
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        config.meshlet.io/proxy-cpu-request: 200m
    spec:
      containers:
        - name: web # the app itself
          image: registry.example/web:1
          ports:
            - containerPort: 8080
---
# Not a workload: unchanged.
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: debug
  annotations:
    meshlet.io/inject: disabled
spec:
  containers: [{name: sh, image: busybox}]
`;

const initNames = (spec: Json): string[] => (spec.initContainers ?? []).map((c: Json) => c.name);

t.test('meshlet inject -f FILE: every template injected, other objects and comments kept, a report on stderr', async (t) => {
  const file = join(dir, 'app.yaml');
  writeFileSync(file, APP);
  const r = await meshlet(['inject', '-f', file, '--trust-anchors', anchorsFile]);
  t.equal(r.code, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS() as Json);
  t.equal(docs.length, 3);
  t.same(initNames(docs[0]!.spec.template.spec), ['meshlet-init', 'meshlet-proxy']);
  t.same(docs[0]!.spec.template.spec.initContainers[1].resources.requests.cpu, '200m', 'template annotations apply');
  t.same(docs[0]!.spec.template.spec.initContainers[1].args.slice(-2), ['--app', '127.0.0.1:8080']);
  t.ok(docs[0]!.spec.template.spec.initContainers[1].args.includes('web'), 'workload = the Deployment name');
  t.same(docs[1], parse(APP.split('---\n')[1]!), 'the Service is unchanged');
  t.same(initNames(docs[2]!.spec), [], 'the opted-out Pod is unchanged');
  for (const comment of ["# The shop's front end: kept as written.", '# the name', '# the app itself', '# Not a workload: unchanged.']) t.match(r.stdout, comment, `comment kept: ${comment}`);
  t.equal(r.stdout.indexOf('kind: Deployment') < r.stdout.indexOf('kind: Service'), true, 'document order kept');
  t.match(r.stderr, 'deployment/web (document 1) injected (native-sidecar)');
  t.match(r.stderr, 'pod/debug (document 3) skipped (disabled)');
  // Injecting the output again changes nothing.
  const again = join(dir, 'again.yaml');
  writeFileSync(again, r.stdout);
  const r2 = await meshlet(['inject', '-f', again, '--trust-anchors', anchorsFile, '-q']);
  t.equal(r2.code, 0);
  t.equal(r2.stdout, r.stdout, 'idempotent: already injected templates are left as they are');
  t.equal(r2.stderr, '', '-q: no report');
});

t.test('meshlet inject -f - reads stdin (a JSON List from kubectl get -o json stays JSON)', async (t) => {
  const list = {
    apiVersion: 'v1', kind: 'List',
    items: [
      { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'db' }, spec: { template: { spec: { containers: [{ name: 'db', image: 'pg', ports: [{ containerPort: 5432 }] }] } } } },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } },
    ],
  };
  const r = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile, '--sidecar', 'regular'], JSON.stringify(list));
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Json;
  t.same(out.items[0].spec.template.spec.containers.map((c: Json) => c.name), ['meshlet-proxy', 'db'], '--sidecar regular');
  t.same(out.items[1], list.items[1]);
  t.match(r.stderr, 'statefulset/db (items[0]) injected (sidecar)');
  const yaml = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile, '--cni'], APP);
  t.equal(yaml.code, 0, yaml.stderr);
  t.same(initNames((parseAllDocuments(yaml.stdout)[0]!.toJS() as Json).spec.template.spec), ['meshlet-proxy'], '--cni: no meshlet-init');
  const policyOf = (stdout: string): unknown => ((parseAllDocuments(stdout)[0]!.toJS() as Json).spec.template.spec.initContainers as Json[]).find((c) => c.name === 'meshlet-proxy')?.env.find((e: Json) => e.name === 'MESHLET_DEFAULT_INBOUND_POLICY')?.value;
  t.equal(policyOf(yaml.stdout), 'all-authenticated', 'the default inbound policy: all-authenticated');
  const open = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile, '--default-inbound-policy', 'all-unauthenticated'], APP);
  t.equal(open.code, 0, open.stderr);
  t.equal(policyOf(open.stdout), 'all-unauthenticated', '--default-inbound-policy');
  // The cluster's other defaults, for a manifest injected offline.
  const envOf = (stdout: string, container: string, name: string): unknown => ((parseAllDocuments(stdout)[0]!.toJS() as Json).spec.template.spec.initContainers as Json[]).find((c) => c.name === container)?.env.find((e: Json) => e.name === name)?.value;
  t.equal(envOf(open.stdout, 'meshlet-proxy', 'MESHLET_OUTBOUND_PASSTHROUGH'), 'true', 'hosts outside the mesh pass by default');
  t.equal(envOf(open.stdout, 'meshlet-init', 'MESHLET_SKIP_OUTBOUND_PORTS'), '25,443,587,3306,4444,5432,6379,9300,11211', 'the default bypass ports');
  const closed = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile, '--outbound-passthrough', 'false', '--skip-outbound-ports', '443,5432'], APP);
  t.equal(closed.code, 0, closed.stderr);
  t.equal(envOf(closed.stdout, 'meshlet-proxy', 'MESHLET_OUTBOUND_PASSTHROUGH'), 'false', '--outbound-passthrough false');
  t.equal(envOf(closed.stdout, 'meshlet-init', 'MESHLET_SKIP_OUTBOUND_PORTS'), '443,5432', '--skip-outbound-ports');
  const none = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile, '--skip-outbound-ports', ''], APP);
  t.equal(envOf(none.stdout, 'meshlet-init', 'MESHLET_SKIP_OUTBOUND_PORTS'), '', '--skip-outbound-ports "": none');
});

// Merge keys (`<<`) and aliases, as Kubernetes reads them (sigs.k8s.io/yaml merges `<<`).
const MERGED_LABELS = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: &labels
    app: web
spec:
  selector:
    matchLabels: *labels
  template:
    metadata:
      labels:
        <<: *labels # the workload's labels, and one more
        tier: front
      annotations:
        <<: {config.meshlet.io/proxy-cpu-request: 300m}
    spec:
      containers:
        - name: web
          image: registry.example/web:1
`;
const MERGED_SPEC = `apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: a}
    spec:
      template:
        metadata: {labels: {app: a}}
        spec: &podspec
          containers:
            - name: app
              image: registry.example/app:1
              ports: [{containerPort: 8080}]
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: b}
    spec:
      template:
        metadata: {labels: {app: b}}
        spec:
          <<: *podspec
          serviceAccountName: b
`;
const ALIASED_SPEC = MERGED_SPEC.replace('spec:\n          <<: *podspec\n          serviceAccountName: b\n', 'spec: *podspec\n');

t.test('meshlet inject: merge keys and aliases count as Kubernetes counts them; the output means what the resolved manifest injected means', async (t) => {
  /** The CLI on the YAML as written, and on the same manifest resolved to JSON (merge keys applied): Kubernetes must read the same objects from both outputs. */
  const both = async (name: string, text: string, extra: string[] = []) => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, text);
    const yaml = await meshlet(['inject', '-f', file, '--trust-anchors', anchorsFile, ...extra]);
    const json = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile, ...extra], JSON.stringify(parse(text, { merge: true })));
    t.equal(yaml.code, 0, `${name}: ${yaml.stderr}`);
    t.equal(json.code, 0, `${name} resolved: ${json.stderr}`);
    const out = (parse(yaml.stdout, { merge: true }) ?? {}) as Json;
    t.same(out, JSON.parse(json.stdout) as Json, `${name} ${extra.join(' ')}: the same objects as the resolved manifest injected`);
    return { out, stdout: yaml.stdout, stderr: yaml.stderr };
  };
  const labels = await both('merged-labels', MERGED_LABELS);
  const tpl = labels.out.spec?.template ?? {};
  t.same(tpl.metadata?.labels, { app: 'web', tier: 'front' }, 'merged labels kept');
  t.equal(tpl.spec?.initContainers?.[1]?.resources.requests.cpu, '300m', 'an annotation brought in by a merge key applies');
  t.match(labels.stdout, /labels:\n {8}<<: \*labels # the workload's labels, and one more\n/, 'written in place: the merge key, its anchor and comment kept');
  const again = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile, '-q'], labels.stdout);
  t.equal(again.stdout, labels.stdout, 'injecting again changes nothing');

  for (const mode of ['native', 'regular']) {
    const list = await both('merged-spec', MERGED_SPEC, ['--sidecar', mode]);
    t.match(list.stderr, /deployment\/b \(items\[1\]\) injected/, `${mode}: the template whose containers come from a merge key is injected`);
    if (!Array.isArray(list.out.items)) continue; // nothing written: the assertions above failed
    const [a, b] = (list.out.items as Json[]).map((x) => x.spec.template.spec as Json);
    const names = (s: Json) => [...(s.initContainers ?? []), ...s.containers].map((c: Json) => c.name as string).toSorted();
    t.same(names(a!), names(b!), `${mode}: b has a's containers and its own proxy`);
    t.ok(names(b!).includes('app') && names(b!).includes('meshlet-proxy'), `${mode}: b runs the app beside the proxy`);
    t.equal(b!.serviceAccountName, 'b', `${mode}: b's own fields kept`);
    t.equal(JSON.stringify(a).includes('"b"'), false, `${mode}: nothing of b's injection reaches a`);
  }
  const aliased = await both('aliased-spec', ALIASED_SPEC);
  t.same(((aliased.out.items ?? []) as Json[]).map((x) => initNames(x.spec.template.spec)), [['meshlet-init', 'meshlet-proxy'], ['meshlet-init', 'meshlet-proxy']], 'a template spec that is an alias: each Deployment gets its own proxy');
});

t.test('errors: exit codes and messages a user can act on', async (t) => {
  const help = await meshlet(['inject', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /usage: meshlet inject -f FILE\|-/);
  t.match((await meshlet(['--help'])).stdout, /inject +add the meshlet proxy/, 'listed in meshlet --help');
  const noFile = await meshlet(['inject', '--trust-anchors', anchorsFile]);
  t.equal(noFile.code, 2);
  t.match(noFile.stderr, /which manifest\? pass -f FILE/);
  const noAnchors = await meshlet(['inject', '-f', '-'], APP);
  t.equal(noAnchors.code, 2);
  t.match(noAnchors.stderr, /need the trust anchors: pass --trust-anchors FILE/);
  const missing = await meshlet(['inject', '-f', join(dir, 'nope.yaml'), '--trust-anchors', anchorsFile]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /cannot read .*nope\.yaml: no such file/);
  const badYaml = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile], 'kind: Pod\n  spec: [\n');
  t.equal(badYaml.code, 1);
  t.match(badYaml.stderr, /stdin is not valid YAML: document 1:/);
  t.equal(badYaml.stdout, '');
  const banana = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile], APP.replace('200m', 'banana'));
  t.equal(banana.code, 1);
  t.match(banana.stderr, /deployment\/web \(document 1\): cannot inject the meshlet proxy: config.meshlet.io\/proxy-cpu-request: "banana" is not a CPU quantity/);
  t.equal(banana.stdout, '', 'nothing written, so `| kubectl apply -f -` applies nothing');
  const flag = await meshlet(['inject', '-f', '-', '--sidecar', 'maybe', '--trust-anchors', anchorsFile]);
  t.equal(flag.code, 2);
  t.match(flag.stderr, /--sidecar maybe: want native or regular/);
  const policy = await meshlet(['inject', '-f', '-', '--default-inbound-policy', 'open', '--trust-anchors', anchorsFile], APP);
  t.equal(policy.code, 2);
  t.match(policy.stderr, /--default-inbound-policy: "open" is not a default inbound policy; want one of all-unauthenticated, all-authenticated, deny/);
  t.equal(policy.stdout, '');
  const pass = await meshlet(['inject', '-f', '-', '--outbound-passthrough', 'maybe', '--trust-anchors', anchorsFile], APP);
  t.equal(pass.code, 2);
  t.match(pass.stderr, /--outbound-passthrough: expected true or false, got "maybe"/);
  const ports = await meshlet(['inject', '-f', '-', '--skip-outbound-ports', '443,https', '--trust-anchors', anchorsFile], APP);
  t.equal(ports.code, 2);
  t.match(ports.stderr, /--skip-outbound-ports: "https" is not a port/);
  t.equal(ports.stdout, '');
  const none = await meshlet(['inject', '-f', '-', '--trust-anchors', anchorsFile], 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}   # as is\n');
  t.equal(none.code, 0);
  t.equal(none.stdout, 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}   # as is\n', 'nothing to inject: byte for byte');
  t.match(none.stderr, /no Pod templates/);
});

t.test('transform: every workload kind, the patch is exactly inject()', async (t) => {
  const spec = { containers: [{ name: 'app', image: 'a', ports: [{ containerPort: 9000 }] }] };
  const kinds: Array<[string, Json, string[]]> = [
    ['Pod', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec }, []],
    ['Deployment', { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { template: { spec } } }, ['spec', 'template']],
    ['StatefulSet', { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 's' }, spec: { template: { spec } } }, ['spec', 'template']],
    ['DaemonSet', { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'ds' }, spec: { template: { spec } } }, ['spec', 'template']],
    ['ReplicaSet', { apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'rs' }, spec: { template: { spec } } }, ['spec', 'template']],
    ['Job', { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'j' }, spec: { template: { spec } } }, ['spec', 'template']],
    ['CronJob', { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'cj' }, spec: { schedule: '* * * * *', jobTemplate: { spec: { template: { spec } } } } }, ['spec', 'jobTemplate', 'spec', 'template']],
  ];
  for (const [kind, obj, path] of kinds) {
    const r = transformManifests(`# ${kind}\n${stringify(obj)}`, settings);
    t.equal(r.reports.length, 1, kind);
    t.equal(r.reports[0]?.result.outcome, 'injected', kind);
    const out = parse(r.output) as Json;
    const tpl = path.reduce((o, k) => o[k], obj as Json);
    const expected = jsonpatch.applyPatch(structuredClone({ metadata: tpl.metadata, spec: tpl.spec }), inject({ metadata: tpl.metadata, spec: tpl.spec }, settings, kind === 'Pod' ? {} : { workload: obj.metadata.name }).patch).newDocument;
    const got = path.reduce((o, k) => o[k], out);
    t.same({ metadata: got.metadata, spec: got.spec }, expected, `${kind}: the YAML edit equals the RFC 6902 patch applied`);
  }
  const multi = transformManifests('a: 1\n---\nkind: Secret\nmetadata: {name: s}\n---\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: x}]\n', settings);
  const docs = parseAllDocuments(multi.output).map((d) => d.toJS() as Json);
  t.same(docs.slice(0, 2), [{ a: 1 }, { kind: 'Secret', metadata: { name: 's' } }], 'unrelated documents kept');
  t.same(initNames(docs[2]!.spec), ['meshlet-init', 'meshlet-proxy']);
  t.same(transformManifests('', settings), { output: '', reports: [], errors: [] }, 'empty input');
  // Documents left alone are copied byte for byte (odd spacing, a comment-only document from helm template).
  const helm = 'kind: Service   # odd   spacing\nmetadata: {name: a}\n---\n# Source: chart/templates/pod.yaml\n---\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: c}]}\n';
  const h = transformManifests(helm, settings);
  t.ok(h.output.startsWith('kind: Service   # odd   spacing\nmetadata: {name: a}\n---\n# Source: chart/templates/pod.yaml\n---\nkind: Pod\n'), h.output.slice(0, 200));
  t.match(h.output, /\nspec:\n {2}containers: \[ \{ name: c \} \]\n {2}initContainers:\n {4}- name: meshlet-init\n/, 'a flow-style spec the patch adds to becomes block style (readable), its untouched parts stay flow');
  t.equal(parseAllDocuments(h.output).length, 3);
});

t.test('transform: an empty document after an injected one keeps its own separator line', async (t) => {
  const text = 'apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: [{name: app, image: x, ports: [{containerPort: 8080}]}]\n---\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n';
  const r = transformManifests(text, defaultSettings({ trustAnchorsPem: 'x' }));
  t.same(r.errors, []);
  t.notMatch(r.output, /------/, 'no separators run together');
  const docs = parseAllDocuments(r.output);
  t.same(
    (Array.isArray(docs) ? docs : []).map((d) => (d.toJS() as { kind?: string } | null)?.kind ?? null),
    ['Pod', null, 'Service'],
    'the Pod, the empty document and the Service, as in the input',
  );
  t.equal(transformManifests(r.output, defaultSettings({ trustAnchorsPem: 'x' })).output, r.output, 'and injecting again changes nothing');
});
