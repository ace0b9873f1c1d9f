import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Language, Parser, Query } from 'web-tree-sitter';

/** A tree-sitter grammar and the project's query over it (`queries/<name>.scm`). */
export interface Grammar {
  language: Language;
  query: Query;
}

const WASM = {
  python: () => require.resolve('tree-sitter-python/tree-sitter-python.wasm'),
  cpp: () => require.resolve('tree-sitter-cpp/tree-sitter-cpp.wasm'),
};

export type GrammarName = keyof typeof WASM;

const loaded = new Map<GrammarName, Promise<Grammar>>();

/** The query file next to the sources (queries/) or next to the bundle (dist/queries). */
function queryFile(name: GrammarName): string {
  for (const candidate of [
    path.join(__dirname, 'queries', `${name}.scm`),
    path.join(__dirname, `${name}.scm`),
  ]) {
    try {
      readFileSync(candidate);
      return candidate;
    } catch {
      // try the next layout (sources vs bundle)
    }
  }
  throw new Error(`${name}.scm not found next to ${__dirname}`);
}

/** Loads a grammar once per process; every locator shares it. */
export function loadGrammar(name: GrammarName): Promise<Grammar> {
  let grammar = loaded.get(name);
  if (!grammar) {
    grammar = (async () => {
      await Parser.init();
      const language = await Language.load(WASM[name]());
      const query = new Query(language, await fs.readFile(queryFile(name), 'utf8'));
      return { language, query };
    })();
    loaded.set(name, grammar);
  }
  return grammar;
}
