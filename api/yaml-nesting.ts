// How deep a YAML text nests, checked before it is composed: the `yaml` package composes nested
// collections recursively and fails at a depth that depends on the stack left ("Maximum call stack
// size exceeded", somewhere past ~900 levels), so both readers refuse deeper text in plain words first.
import type { Lexer, Parser } from 'yaml';

/**
 * Most levels of nested mappings and sequences a YAML document may have. meshlet's documents need
 * fewer than 10 (a proxy config route match, an AuthorizationPolicy rule); a `kubectl get -o yaml`
 * copy with managedFields about 20. The composer's recursion fails far deeper (measured ~900 levels),
 * so every document under this bound parses the same as before.
 */
export const MAX_YAML_NESTING = 100;

/** The parts of the `yaml` module this needs: passed in, so the proxy still loads it only for YAML files. */
export interface YamlTokenizer {
  Lexer: typeof Lexer;
  Parser: typeof Parser;
}

const COLLECTIONS: ReadonlySet<string> = new Set(['block-map', 'block-seq', 'flow-collection']);

/**
 * Where `text` first nests deeper than `max` collections, with a message for people (without the line); undefined
 * when it does not. Iterative (the CST parser keeps its own stack) and stops at the first such
 * point, so a file of a million `[` costs no more than its first `max` of them.
 */
export function yamlNestingProblem(yaml: YamlTokenizer, text: string, max = MAX_YAML_NESTING): { line: number; message: string } | undefined {
  const parser = new yaml.Parser();
  for (const lexeme of new yaml.Lexer().lex(text)) {
    for (const _ of parser.next(lexeme)) {
      // Completed documents: only the depth reached while building them matters.
    }
    // The stack also holds the document and scalars, so it is at least as long as the nesting.
    if (parser.stack.length <= max) continue;
    let depth = 0;
    for (const token of parser.stack) if (COLLECTIONS.has(token.type)) depth++;
    if (depth > max) {
      return { line: lineAt(text, parser.offset), message: `nesting deeper than ${max} levels: meshlet reads at most ${max} levels of mappings and sequences inside one another; flatten the document` };
    }
  }
  return undefined;
}

/** 1-based line of a character offset. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}
