// `meshlet inject`'s text transform: Kubernetes YAML (or JSON) in, the same with the proxy injected
// into every Pod template out. Guarantees: pure (text → text); merge keys (`<<`) count as Kubernetes
// counts them; the patch is inject()'s, applied to the YAML document itself, so comments, key order
// and other documents survive (a document whose patch would go through an alias, a merge key or a
// referenced anchor is written resolved instead); other kinds pass through.

import jsonpatch, { type Operation } from 'fast-json-patch';
import { isAlias, isCollection, isMap, isSeq, parseAllDocuments, visit, type Document } from 'yaml';
import { inject, type InjectResult, type PodLike } from './inject.ts';
import type { InjectSettings } from './settings.ts';

/** Where the Pod template sits in each workload kind (Pod: the object itself). */
const TEMPLATE_PATH: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface ManifestReport {
  /** "deployment/web", "pod/db", with "items[2] of" for List members and the document number. */
  what: string;
  result: InjectResult;
}

export interface TransformResult {
  output: string;
  reports: ManifestReport[];
  /** YAML syntax errors: nothing can be written. */
  errors: string[];
}

type Path = Array<string | number>;
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const getIn = (o: unknown, path: Path): unknown => path.reduce<unknown>((x, k) => (isRecord(x) || Array.isArray(x) ? (x as Record<string | number, unknown>)[k] : undefined), o);

/** Every Pod template in an object (a List's items too): its path and a name for the report. */
function templates(obj: unknown, prefix: Path = []): Array<{ path: Path; what: string; workload?: string }> {
  if (!isRecord(obj)) return [];
  const kind = typeof obj.kind === 'string' ? obj.kind : '';
  if (Array.isArray(obj.items) && (kind === 'List' || kind.endsWith('List'))) {
    return obj.items.flatMap((item, i) => templates(item, [...prefix, 'items', i]).map((x) => ({ ...x, what: `${x.what} (items[${i}])` })));
  }
  const at = TEMPLATE_PATH[kind];
  if (!at) return [];
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : typeof meta.generateName === 'string' ? `${meta.generateName}*` : '(unnamed)';
  // A template has no owner yet: the workload is the object that holds it.
  return [{ path: [...prefix, ...at], what: `${kind.toLowerCase()}/${name}`, ...(kind === 'Pod' ? {} : { workload: name }) }];
}

const unescape = (t: string): string => t.replace(/~1/g, '/').replace(/~0/g, '~');
/** The path of the node an add operation adds into. */
const parentOf = (op: Operation): Path => op.path.split('/').slice(1, -1).map(unescape);

/** Applies add operations (all inject() emits) to a YAML document under `prefix`, node by node. */
function applyToDocument(doc: Document, prefix: Path, ops: readonly Operation[]): void {
  for (const op of ops) {
    if (op.op !== 'add') throw new Error(`unexpected ${op.op} operation`);
    const tokens = op.path.split('/').slice(1).map(unescape);
    const last = tokens.pop() as string;
    const parentPath = [...prefix, ...tokens];
    const parent = parentPath.length === 0 ? doc.contents : doc.getIn(parentPath, true);
    // Block style on the way down: a flow collection (`spec: {containers: [...]}`) would print the
    // whole proxy container on one line. Only the collections the patch adds to change style.
    for (let i = 0; i <= parentPath.length; i++) {
      const n = i === 0 ? doc.contents : doc.getIn(parentPath.slice(0, i), true);
      if (isCollection(n)) n.flow = false;
    }
    if (isSeq(parent)) {
      const node = doc.createNode(op.value);
      if (last === '-') parent.items.push(node);
      else parent.items.splice(Number(last), 0, node);
    } else if (isMap(parent) || parent === undefined || parent === null) {
      doc.setIn([...parentPath, last], doc.createNode(op.value));
    } else {
      throw new Error(`cannot add at ${op.path}: the parent is a scalar`);
    }
  }
}

/**
 * Whether adding under `path` (the parent of an added value) can be done on the document's own
 * nodes: every step is written out there (not brought in by an alias or a merge key) and no node
 * on the way carries an anchor that an alias elsewhere reads (which would see the addition too).
 * `resolved` is the document as Kubernetes reads it (merge keys applied). A merge key in the
 * parent itself is fine: a key written beside it overrides the merged one.
 */
function addsInPlace(doc: Document, resolved: unknown, path: Path, referenced: ReadonlySet<string>): boolean {
  let node: unknown = doc.contents;
  for (let i = 0; ; i++) {
    if (isAlias(node)) return false;
    if (isCollection(node) && node.anchor !== undefined && referenced.has(node.anchor)) return false;
    if (i === path.length || !isCollection(node)) return true;
    const next: unknown = node.get(path[i], true);
    // Not written here: the addition creates it, unless a merge key brings it in.
    if (next === undefined) return getIn(resolved, path.slice(0, i + 1)) === undefined;
    node = next;
  }
}

function injectAt(obj: unknown, t: { path: Path; what: string; workload?: string }, settings: InjectSettings): { report: ManifestReport; ops: Operation[] } {
  const tpl = getIn(obj, t.path);
  const pod = (isRecord(tpl) ? { metadata: tpl.metadata, spec: tpl.spec } : {}) as PodLike;
  const result = inject(pod, settings, t.workload ? { workload: t.workload } : {});
  if (result.outcome === 'injected') {
    // Checked against the plain object first: a patch fast-json-patch refuses never reaches the document.
    const invalid = jsonpatch.validate(result.patch, structuredClone(pod));
    if (invalid) throw new Error(`${t.what}: internal error, invalid patch: ${invalid.message}`);
  }
  return { report: { what: t.what, result }, ops: result.outcome === 'injected' ? result.patch : [] };
}

/** JSON in (`kubectl get -o json`), JSON out: the object is patched with fast-json-patch. */
function transformJson(text: string, settings: InjectSettings): TransformResult {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    return { output: '', reports: [], errors: [`not valid JSON: ${(e as Error).message}`] };
  }
  const reports: ManifestReport[] = [];
  for (const t of templates(obj)) {
    const { report, ops } = injectAt(obj, t, settings);
    reports.push(report);
    const target = getIn(obj, t.path);
    if (ops.length > 0 && isRecord(target)) jsonpatch.applyPatch(target, ops, false, true);
  }
  return { output: JSON.stringify(obj, null, 2) + '\n', reports, errors: [] };
}

export function transformManifests(text: string, settings: InjectSettings): TransformResult {
  if (/^\s*\{/.test(text)) return transformJson(text, settings);
  // Merge keys as Kubernetes reads them (sigs.k8s.io/yaml): `<<: *base` brings base's keys in.
  const docs = parseAllDocuments(text, { keepSourceTokens: false, merge: true });
  if (!Array.isArray(docs)) return { output: text, reports: [], errors: [] }; // empty stream
  const list = docs;
  const errors = list.flatMap((d, i) => d.errors.map((e) => `document ${i + 1}: ${e.message}`));
  if (errors.length > 0) return { output: '', reports: [], errors };
  const reports: ManifestReport[] = [];
  let changed = false;
  const touched = new Set<Document>();
  list.forEach((doc, i) => {
    const obj = doc.toJS() as unknown;
    const patches: Array<{ path: Path; ops: Operation[] }> = [];
    for (const t of templates(obj)) {
      const { report, ops } = injectAt(obj, t, settings);
      reports.push({ ...report, what: list.length > 1 ? `${report.what} (document ${i + 1})` : report.what });
      if (ops.length > 0) patches.push({ path: t.path, ops });
    }
    if (patches.length === 0) return;
    touched.add(doc);
    changed = true;
    const referenced = new Set<string>();
    visit(doc, { Alias: (_, a) => void referenced.add(a.source) });
    if (patches.every((p) => p.ops.every((op) => addsInPlace(doc, obj, [...p.path, ...parentOf(op)], referenced)))) {
      for (const p of patches) applyToDocument(doc, p.path, p.ops);
      return;
    }
    // The patch would write through an alias or a merge key, or into a node an alias shares: the
    // document is written resolved (anchors, aliases and merge keys expanded; its comments lost),
    // patched as a JSON object is.
    const plain = JSON.parse(JSON.stringify(obj)) as unknown;
    for (const p of patches) jsonpatch.applyPatch(getIn(plain, p.path), p.ops, false, true);
    (doc as Document).contents = doc.createNode(plain, { aliasDuplicateObjects: false });
  });
  // Nothing to inject: the input unchanged, byte for byte.
  if (!changed) return { output: text, reports, errors: [] };
  // Documents left alone are copied from the source as they were; changed ones are printed (their
  // comments kept by the library; the first one's toString also holds the comments before it).
  const first = list[0]?.range[0] ?? 0;
  const last = list.at(-1)?.range[2] ?? text.length;
  const parts = list.map((d, i) => {
    if (!touched.has(d)) return text.slice(d.range[0], d.range[2]);
    const out = d.toString({ lineWidth: 0 });
    return i > 0 && !out.startsWith('---') ? `---\n${out}` : out;
  });
  // A part that does not end its line (an empty document's bare `---`) must not run into the next
  // part's `---`: `------` would be one line of text, and the documents after it lost.
  let output = list[0] && touched.has(list[0]) ? '' : text.slice(0, first);
  for (const part of parts) output += output.length > 0 && part.length > 0 && !output.endsWith('\n') ? `\n${part}` : part;
  output += text.slice(last);
  return { output, reports, errors: [] };
}
