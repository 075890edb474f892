// Tests for api/load.ts: one multi-document file with a good document, a bad one and a YAML
// syntax error; problems carry file, object, path and line, and the good documents come back.
import { test } from 'tap';
import { parseYamlDocuments } from '../../../api/load.ts';
import { resourceKey } from '../../../api/resources.ts';

const FILE = `# canary for web
apiVersion: meshlet.io/v1alpha1
kind: TrafficSplit
metadata:
  name: web-canary
  namespace: shop
spec:
  service: web
  backends:
    - service: web-v1
      weight: 90
    - service: web-v2
      weight: 10
---
apiVersion: meshlet.io/v1alpha1
kind: TrafficSplit
metadata:
  name: broken
spec:
  service: web
  backends:
    - service: web-v1
      weight: -1
    - service: web-v1
      weight: 1
---
---
apiVersion: meshlet.io/v1alpha1
kind: MeshService
metadata: { name: api, namespace: shop }
spec:
  endpoints: [{ address: "127.0.0.1:9000" }
---
apiVersion: meshlet.io/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: deny-all
  namespace: shop
spec:
  targetRef: { service: billing }
  rules: []
`;

test('a file with a good, a bad, an empty and a broken document', async (t) => {
  const { resources, problems } = parseYamlDocuments(FILE, 'mesh/web.yaml');
  t.same(resources.map(resourceKey), ['TrafficSplit/shop/web-canary', 'AuthorizationPolicy/shop/deny-all'], 'valid documents are returned, the empty one skipped');
  t.same(
    problems.map(({ file, object, path, line }) => ({ file, object, path, line })),
    [
      { file: 'mesh/web.yaml', object: 'TrafficSplit/default/broken', path: '/spec/backends/0/weight', line: 23 },
      { file: 'mesh/web.yaml', object: 'TrafficSplit/default/broken', path: '/spec/backends/1/service', line: 24 },
      // The parser notices the missing ] where the next document starts.
      { file: 'mesh/web.yaml', object: 'MeshService/shop/api', path: '/', line: 33 },
    ],
  );
  t.match(problems[1]?.message, /duplicate backend "web-v1"/);
  t.match(problems[2]?.message, /^YAML: Flow sequence .* end with a \]$/, 'the syntax error, without the duplicated position');
  t.ok(Object.isFrozen(resources[0]));
});

test('a missing field points at its parent; an unknown one at itself; a document with no name has no object', async (t) => {
  const { problems } = parseYamlDocuments('apiVersion: meshlet.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\nspec:\n  rules: []\n  tagretRef: {service: a}\n', 'p.yaml');
  t.same(problems.map((p) => [p.path, p.line, p.object]), [['/spec/targetRef', 6, 'AuthorizationPolicy/default/p'], ['/spec/tagretRef', 7, 'AuthorizationPolicy/default/p']]);
  const anonymous = parseYamlDocuments('- a\n- b\n', 'list.yaml').problems;
  t.same(anonymous, [{ file: 'list.yaml', path: '/', message: 'expected a mapping with apiVersion, kind, metadata and spec', line: 1 }]);
});

test('YAML-level refusals: duplicate keys, alias bombs; empty input is no problem', async (t) => {
  t.same(parseYamlDocuments('', 'empty.yaml'), { resources: [], problems: [] });
  t.same(parseYamlDocuments('# nothing\n---\n', 'comments.yaml'), { resources: [], problems: [] });
  t.same(parseYamlDocuments('kind: TrafficSplit\nkind: MeshService\n', 'dup.yaml').problems, [{ file: 'dup.yaml', path: '/', message: 'YAML: Map keys must be unique', line: 2 }]);
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...'bcdefgh'.split('').map((c, i) => `${c}: &${c} [${Array(10).fill(`*${'abcdefgh'[i]}`).join(', ')}]`)].join('\n');
  const refused = parseYamlDocuments(bomb, 'bomb.yaml').problems;
  t.equal(refused.length, 1);
  t.match(refused[0], { file: 'bomb.yaml', path: '/', message: /^YAML: Excessive alias count/, line: 1 });
});

test('a too deeply nested document is reported in words (with its line), not as a stack overflow; up to 100 levels parse as before', async (t) => {
  const flow = `apiVersion: meshlet.io/v1alpha1\nkind: MeshService\nmetadata: {name: deep}\nspec: ${'['.repeat(5000)}${']'.repeat(5000)}\n`;
  const r = parseYamlDocuments(flow, 'deep.yaml');
  t.same(r.resources, []);
  t.same(r.problems, [{ file: 'deep.yaml', path: '/', message: 'YAML: nesting deeper than 100 levels: meshlet reads at most 100 levels of mappings and sequences inside one another; flatten the document', line: 4 }]);
  const block = `a:\n${Array.from({ length: 150 }, (_, i) => `${'  '.repeat(i + 1)}k${i}:`).join('\n')} 1\n`;
  t.match(parseYamlDocuments(block, 'b.yaml').problems, [{ message: /^YAML: nesting deeper than 100 levels/, line: 101 }], 'block mappings too, at the line where it gets too deep');
  const hundred = `spec: ${'['.repeat(99)}${']'.repeat(99)}\n`;
  const checked = parseYamlDocuments(hundred, 'ok.yaml').problems;
  t.ok(checked.length > 0 && checked.every((p) => !p.message.startsWith('YAML')), '100 levels parse (and are then checked as a resource, as before)', { checked });
});
