// Resources from YAML text: one file of the folder source, or what `meshlet inject`-style tools
// read. Multi-document; every problem names its file, object and line, and the valid documents of
// a file are returned even when others in it are broken (the caller decides what to apply).
import { Lexer, LineCounter, Parser, isMap, isNode, isSeq, parseAllDocuments, type Document } from 'yaml';
import type { Problem } from './proxy-config.ts';
import { DEFAULT_NAMESPACE, parseResource, type Resource } from './resources.ts';
import { yamlNestingProblem } from './yaml-nesting.ts';

export interface LoadProblem extends Problem {
  file: string;
  /** `kind/namespace/name` when the document says that much. */
  object?: string;
  /** 1-based line of the offending node (or of the nearest ancestor that exists). */
  line?: number;
}

export interface Loaded {
  resources: Resource[];
  problems: LoadProblem[];
}

/** Aliases a document may expand: enough for YAML anchors in real configs, not a billion laughs. */
const MAX_ALIASES = 100;

export function parseYamlDocuments(text: string, fileName: string): Loaded {
  // Checked first: composing such a text fails with a stack overflow, which says nothing useful.
  // It names no object (none is read), so the folder source keeps the file's last good ones.
  const deep = yamlNestingProblem({ Lexer, Parser }, text);
  if (deep) return { resources: [], problems: [{ file: fileName, path: '/', message: `YAML: ${deep.message}`, line: deep.line }] };
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const resources: Resource[] = [];
  const problems: LoadProblem[] = [];
  const lineOf = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  // An empty stream parses to an EmptyStream (an array) rather than documents.
  for (const doc of Array.isArray(docs) ? docs : []) {
    if (doc.errors.length > 0) {
      const object = describe(partialValue(doc));
      for (const e of doc.errors) {
        const message = `YAML: ${firstLine(e.message).replace(/ at line \d+, column \d+:?$/, '')}`;
        problems.push(at({ file: fileName, ...(object ? { object } : {}), path: '/', message }, e.linePos?.[0].line ?? lineOf(e.pos[0])));
      }
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIASES });
    } catch (err) {
      problems.push(at({ file: fileName, path: '/', message: `YAML: ${(err as Error).message}` }, lineOf(doc.range[0])));
      continue;
    }
    if (value === null || value === undefined) continue; // `---` with nothing after it, or only comments
    const parsed = parseResource(value);
    if (parsed.ok) {
      resources.push(parsed.value as Resource);
      continue;
    }
    const object = describe(value);
    for (const p of parsed.problems) {
      problems.push(at({ file: fileName, ...(object ? { object } : {}), path: p.path, message: p.message }, lineOf(nodeOffset(doc, p.path))));
    }
  }
  return { resources, problems };
}

function at(p: LoadProblem, line: number | undefined): LoadProblem {
  return line === undefined ? p : { ...p, line };
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message;
}

/** What a broken document says despite its errors, for naming it; undefined if nothing. */
function partialValue(doc: Document): unknown {
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch {
    return undefined;
  }
}

/** `kind/namespace/name` of a document that has at least a kind and a name. */
function describe(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { kind, metadata } = value as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  const name = typeof metadata === 'object' && metadata !== null ? metadata.name : undefined;
  if (typeof kind !== 'string' || typeof name !== 'string') return undefined;
  const ns = typeof metadata?.namespace === 'string' ? metadata.namespace : DEFAULT_NAMESPACE;
  return `${kind}/${ns}/${name}`;
}

/** Start offset of the node at a problem path, or of its deepest existing ancestor (a missing field). */
function nodeOffset(doc: Document, path: string): number | undefined {
  let node: unknown = doc.contents;
  let offset = doc.contents?.range?.[0];
  for (const segment of path.split('/').filter((s) => s !== '')) {
    const key = segment.replaceAll('~1', '/').replaceAll('~0', '~');
    const next: unknown = isSeq(node) ? node.get(Number(key), true) : isMap(node) ? node.get(key, true) : undefined;
    const range = isNode(next) ? next.range : undefined;
    if (!range) break;
    node = next;
    offset = range[0];
  }
  return offset;
}
