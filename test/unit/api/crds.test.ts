// Tests for api/resources-crd.ts and scripts/gen-crds.ts: the TypeBox → structural schema
// conversion, the generated CRDs pass the apiserver's structural rules, and --check guards the
// committed files. (Applying them to a real kube-apiserver belongs with test/kube/.)
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Type } from '@sinclair/typebox';
import { test } from 'tap';
import { parse } from 'yaml';
import { CRD_SPECS, customResourceDefinition, kubeSchemaProblems, toKubeSchema, type KubeSchema } from '../../../api/resources-crd.ts';
import { PathMatch } from '../../../api/proxy-config.ts';

const run = promisify(execFile);
const SCRIPT = new URL('../../../scripts/gen-crds.ts', import.meta.url).pathname;
const CRD_DIR = new URL('../../../manifests/crds/', import.meta.url).pathname;

/** Every node of a schema, with its path. */
function* nodes(schema: KubeSchema, path = ''): Generator<[string, KubeSchema]> {
  yield [path || '/', schema];
  for (const [k, v] of Object.entries((schema.properties ?? {}) as Record<string, KubeSchema>)) yield* nodes(v, `${path}/${k}`);
  if (typeof schema.items === 'object') yield* nodes(schema.items as KubeSchema, `${path}/items`);
  if (typeof schema.additionalProperties === 'object') yield* nodes(schema.additionalProperties as KubeSchema, `${path}/*`);
}

const openApi = (crd: KubeSchema) => (crd.spec as { versions: Array<{ schema: { openAPIV3Schema: KubeSchema } }> }).versions[0]!.schema.openAPIV3Schema;

test('conversion: literals → enum, object unions → one object + CEL, records → additionalProperties', async (t) => {
  t.same(toKubeSchema(Type.Union([Type.Literal('GET'), Type.Literal('PATCH')])), { type: 'string', enum: ['GET', 'PATCH'], maxLength: 5 });
  t.same(toKubeSchema(Type.Object({ a: Type.Optional(Type.Integer({ exclusiveMinimum: 0 })) }, { additionalProperties: false })), {
    type: 'object',
    properties: { a: { type: 'integer', minimum: 0, exclusiveMinimum: true } },
  });
  t.same(toKubeSchema(Type.Record(Type.String(), Type.String({ maxLength: 9 }))), { type: 'object', additionalProperties: { type: 'string', maxLength: 9 } });
  t.same(toKubeSchema(PathMatch), {
    type: 'object',
    properties: { exact: { type: 'string', pattern: '^/' }, prefix: { type: 'string', pattern: '^/' } },
    'x-kubernetes-validations': [{ rule: '(has(self.exact) && !has(self.prefix)) || (has(self.prefix) && !has(self.exact))', message: 'exactly one of exact, prefix must be set' }],
  });
  const mixed = Type.Union([Type.Object({ a: Type.String(), b: Type.Optional(Type.String()) }), Type.Object({ a: Type.String(), c: Type.Boolean() })]);
  t.same(toKubeSchema(mixed)['x-kubernetes-validations'], [{ rule: '(has(self.a) && !has(self.c)) || (has(self.a) && has(self.c) && !has(self.b))', message: 'must have the fields of one of: {a, b} or {a, c}' }]);
  t.same(toKubeSchema(mixed).required, ['a'], 'fields every branch requires stay required');
});

test('conversion refuses what it cannot say exactly', async (t) => {
  t.throws(() => toKubeSchema(Type.Union([Type.String(), Type.Number()])), /only unions of literals or of objects/);
  t.throws(() => toKubeSchema(Type.Union([Type.Literal('a'), Type.Literal(1)])), /mixed or unsupported/);
  t.throws(() => toKubeSchema(Type.Array(Type.String(), { uniqueItems: true })), /cannot express "uniqueItems"/);
  t.throws(() => toKubeSchema(Type.Unknown()), /no Kubernetes type/);
  t.throws(() => toKubeSchema(Type.Union([Type.Object({ a: Type.String() }), Type.Object({ a: Type.Integer() })])), /differs between union branches/);
});

test('the generated CRDs are structural, bounded and free of what Kubernetes forbids', async (t) => {
  for (const spec of CRD_SPECS) {
    const schema = openApi(customResourceDefinition(spec));
    t.same(kubeSchemaProblems(schema), [], `${spec.kind}: no problems`);
    for (const [path, node] of nodes(schema)) {
      for (const banned of ['anyOf', 'oneOf', 'allOf', 'not', 'patternProperties', 'const', '$id', 'uniqueItems']) {
        if (banned in node) t.fail(`${spec.kind} ${path}: ${banned}`);
      }
      if (node.additionalProperties === false) t.fail(`${spec.kind} ${path}: additionalProperties: false`);
    }
  }
  t.same(kubeSchemaProblems({ type: 'object', additionalProperties: false, properties: { l: { type: 'array', items: { type: 'string' } }, x: { anyOf: [] } } }), [
    { path: '/', message: 'additionalProperties: false (Kubernetes prunes unknown fields instead)' },
    { path: '/', message: 'properties and additionalProperties together' },
    { path: '/l', message: 'array without maxItems (CEL cost is unbounded)' },
    { path: '/l/items', message: 'string without maxLength (CEL cost is unbounded)' },
    { path: '/x', message: '"anyOf" is not allowed in a structural schema here' },
    { path: '/x', message: 'no type' },
  ]);
});

const rules = (crd: KubeSchema) =>
  [...nodes(openApi(crd))].flatMap(([path, n]) => ((n['x-kubernetes-validations'] ?? []) as Array<{ rule: string }>).map((r) => `${path}: ${r.rule}`));

test('the CEL rules the apiserver needs are there', async (t) => {
  const [ts, ap] = CRD_SPECS.map((s) => rules(customResourceDefinition(s)));
  t.same(ts, [
    '/spec/backends: size(self) == 0 || self.exists(b, b.weight > 0)',
    '/spec/backends: self.all(b, self.exists_one(c, c.service == b.service))',
    '/spec/matches/items/path: (has(self.exact) && !has(self.prefix)) || (has(self.prefix) && !has(self.exact))',
  ]);
  t.same(ap, ['/spec/rules/items/from: has(self.identities) || has(self.namespaces) || has(self.serviceAccounts)', '/spec/rules/items/to: has(self.methods) || has(self.paths)']);
  const crd = customResourceDefinition(CRD_SPECS[0]!);
  t.match(crd, { metadata: { name: 'trafficsplits.meshlet.io' }, spec: { group: 'meshlet.io', scope: 'Namespaced', names: { shortNames: ['ts'] }, versions: [{ name: 'v1alpha1', served: true, storage: true }] } });
});

test('gen-crds: the committed files are current; --check catches a stale one; writing fixes it', async (t) => {
  const current = await run(process.execPath, [SCRIPT, '--check']);
  t.equal(current.stderr, '');
  const dir = await mkdtemp(join(tmpdir(), 'crds-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'trafficsplits.yaml'), 'stale\n');
  await t.rejects(run(process.execPath, [SCRIPT, '--check', `--dir=${dir}`]), { code: 1, stderr: /trafficsplits\.yaml is out of date/ });
  await run(process.execPath, [SCRIPT, `--dir=${dir}`]);
  await run(process.execPath, [SCRIPT, '--check', `--dir=${dir}`]);
  const written = await readFile(join(dir, 'authorizationpolicies.yaml'), 'utf8');
  t.equal(written, await readFile(join(CRD_DIR, 'authorizationpolicies.yaml'), 'utf8'));
  t.match(parse(written), { kind: 'CustomResourceDefinition', spec: { names: { kind: 'AuthorizationPolicy' } } });
});
