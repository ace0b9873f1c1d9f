import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Parser, type Language, type Node, type Query } from 'web-tree-sitter';
import { loadGrammar } from './grammars';

/** Where the locator looks: the config's `source` section with every path made absolute. */
export interface SourceConfig {
  /** Absolute path of the entry file and the root class in it. */
  entryFile?: string;
  entryClass?: string;
  /** Absolute folders for import resolution. */
  searchPaths: string[];
}

/** Where a module's code lives. */
export interface SourceLocation {
  /** Absolute inside the locator; made relative to the config's folder in results. */
  file: string;
  /** 1-based. */
  line: number;
  /** `Class.forward`, `Class`, or the external callee (`nn.Linear`). */
  symbol: string;
  /**
   * forward: the class's own forward; class: a workspace class without its own forward (a subclass
   * overriding helpers); construction: a class outside the workspace, located where it is built;
   * statement: the line inside the module's code where its own error starts (a drill-down).
   */
  kind: 'forward' | 'class' | 'construction' | 'statement';
  /** The line in the parent that builds this submodule, when the path went through one. */
  constructedAt?: { file: string; line: number };
}

interface Assignment {
  /** Dotted path relative to the class: `model.layers.2.self_attn`. */
  path: string;
  callee: string;
  /** For ModuleList/Sequential: the callee building the elements. */
  elementCallee?: string;
  file: string;
  line: number;
}

interface ClassInfo {
  name: string;
  file: string;
  line: number;
  forwardLine?: number;
  bases: string[];
  assignments: Assignment[];
}

interface FileIndex {
  file: string;
  classes: Map<string, ClassInfo>;
  /** Local name → imported module and, for from-imports, the name inside it. */
  imports: Map<string, { module: string; name?: string }>;
}

type ClassRef = { kind: 'local'; info: ClassInfo } | { kind: 'external'; name: string };

const CONTAINER_CALLEES = new Set(['ModuleList', 'Sequential', 'ModuleDict']);
const MAX_IMPORT_DEPTH = 8;

function enclosing(node: Node, type: string): Node | null {
  for (let p = node.parent; p; p = p.parent) if (p.type === type) return p;
  return null;
}

/** The class a function is a method of, or null for free functions and nested functions. */
function classOfMethod(fn: Node): Node | null {
  let parent = fn.parent;
  if (parent?.type === 'decorated_definition') parent = parent.parent;
  return parent?.type === 'block' && parent.parent?.type === 'class_definition'
    ? parent.parent
    : null;
}

/** `self.model.layers[2].self_attn` → `model.layers.2.self_attn`; undefined if not rooted at self. */
function selfPath(text: string): string | undefined {
  const compact = text.replace(/\s+/g, '');
  if (!compact.startsWith('self.') && !compact.startsWith('self[')) return undefined;
  const rest = compact.slice(4);
  const parts: string[] = [];
  // `[3]` is an index, `[idx]` a loop index that stands for any (stored as `*`).
  const token = /\.([A-Za-z_]\w*)|\[(\d+)\]|\[[A-Za-z_]\w*\]/y;
  while (token.lastIndex < rest.length) {
    const match = token.exec(rest);
    if (!match) return undefined;
    parts.push(match[1] ?? match[2] ?? '*');
  }
  return parts.join('.');
}

/**
 * The assignment covering the longest run of `segments` from `from`: exact indices first, then a
 * loop index (`self.layers[idx] = ...`, stored as `*`). A container's element index is consumed too.
 */
function lookup(
  assignments: ReadonlyMap<string, Assignment[]>,
  segments: readonly string[],
  from: number,
  exclude?: Assignment,
): { found: Assignment; consumed: number } | undefined {
  for (let j = segments.length; j > from; j--) {
    const part = segments.slice(from, j);
    for (const key of [part.join('.'), part.map((s) => (/^\d+$/.test(s) ? '*' : s)).join('.')]) {
      const found = assignments.get(key)?.find((a) => a !== exclude);
      if (!found) continue;
      const consumed = found.elementCallee && /^\d+$/.test(segments[j] ?? '') ? j + 1 : j;
      return { found, consumed };
    }
  }
  return undefined;
}

/**
 * Resolves dotted module paths (`model.layers.2.self_attn`) to Python source lines by reading the
 * model's code statically with tree-sitter: starting at the root class it follows
 * `self.x = Cls(...)`, `nn.ModuleList([Cls(...) ...])`, per-index replacements such as
 * `self.model.layers[2].self_attn = Cls(...)`, base classes and imports across files.
 */
export class PythonSourceLocator {
  private readonly files = new Map<string, FileIndex | null>();
  private readonly parser: Parser;

  private constructor(
    private readonly config: SourceConfig,
    private readonly language: Language,
    private readonly query: Query,
  ) {
    this.parser = new Parser();
    this.parser.setLanguage(language);
  }

  static async create(config: SourceConfig): Promise<PythonSourceLocator> {
    const { language, query } = await loadGrammar('python');
    return new PythonSourceLocator(config, language, query);
  }

  dispose(): void {
    this.parser.delete();
  }

  /** The location of a module path, or undefined when the root class cannot be found. */
  async locate(modulePath: string): Promise<SourceLocation | undefined> {
    const root = await this.rootClass(modulePath);
    return root ? (await this.walk(root, modulePath)).location : undefined;
  }

  private async rootClass(modulePath: string): Promise<ClassInfo | undefined> {
    if (this.config.entryFile && this.config.entryClass) {
      return (await this.index(this.config.entryFile))?.classes.get(this.config.entryClass);
    }
    // No entry named: the class from which the path resolves deepest, first search path first.
    let best: { info: ClassInfo; depth: number } | undefined;
    for (const folder of this.config.searchPaths) {
      let names: string[] = [];
      try {
        names = (await fs.readdir(folder)).filter((n) => n.endsWith('.py')).sort();
      } catch {
        continue;
      }
      for (const name of names) {
        const index = await this.index(path.join(folder, name));
        for (const info of index?.classes.values() ?? []) {
          const { depth } = await this.walk(info, modulePath);
          if (depth > 0 && (!best || depth > best.depth)) best = { info, depth };
        }
      }
    }
    return best?.info;
  }

  private async walk(
    root: ClassInfo,
    modulePath: string,
  ): Promise<{ location: SourceLocation; depth: number }> {
    const segments = modulePath ? modulePath.split('.') : [];
    let current = root;
    let constructedAt: SourceLocation['constructedAt'];
    let i = 0;
    while (i < segments.length) {
      const hit = lookup(await this.assignmentsOf(current), segments, i);
      if (!hit) break;
      const { found, consumed } = hit;
      constructedAt = { file: found.file, line: found.line };
      const ref = await this.resolveName(found.elementCallee ?? found.callee, found.file, 0);
      const name = ref.kind === 'local' ? ref.info.name : ref.name;
      // Building the very class it replaces means only the arguments changed: that line is the one.
      const argumentsOnly =
        consumed === segments.length &&
        (await this.rebuildsShadowedClass(current, segments, i, found, ref));
      if (ref.kind === 'external' || argumentsOnly) {
        return {
          location: {
            file: found.file,
            line: found.line,
            symbol: argumentsOnly ? `${name}(…)` : name,
            kind: 'construction',
            constructedAt,
          },
          depth: consumed,
        };
      }
      i = consumed;
      current = ref.info;
    }
    const location: SourceLocation = current.forwardLine
      ? {
          file: current.file,
          line: current.forwardLine,
          symbol: `${current.name}.forward`,
          kind: 'forward',
        }
      : { file: current.file, line: current.line, symbol: current.name, kind: 'class' };
    if (constructedAt) location.constructedAt = constructedAt;
    return { location, depth: i };
  }

  /**
   * Whether `override` (found for segments[from..] in `owner`) builds the same class as the
   * assignment it shadows: an inherited one for the same attribute, or the default path that a
   * per-index replacement (`self.model.layers[3].norm = ...`) overrides.
   */
  private async rebuildsShadowedClass(
    owner: ClassInfo,
    segments: readonly string[],
    from: number,
    override: Assignment,
    built: ClassRef,
  ): Promise<boolean> {
    let current = owner;
    let i = from;
    let exclude: Assignment | undefined = override;
    while (i < segments.length) {
      const hit = lookup(await this.assignmentsOf(current), segments, i, exclude);
      exclude = undefined;
      if (!hit) return false;
      const shadowed = await this.resolveName(
        hit.found.elementCallee ?? hit.found.callee,
        hit.found.file,
        0,
      );
      i = hit.consumed;
      if (i === segments.length) {
        return shadowed.kind === 'local'
          ? built.kind === 'local' && built.info === shadowed.info
          : built.kind === 'external' && built.name === shadowed.name;
      }
      if (shadowed.kind === 'external') return false;
      current = shadowed.info;
    }
    return false;
  }

  /** Submodule assignments per path, inherited ones included; the one Python would use first. */
  private async assignmentsOf(info: ClassInfo, depth = 0): Promise<Map<string, Assignment[]>> {
    const merged = new Map<string, Assignment[]>();
    if (depth < MAX_IMPORT_DEPTH) {
      // Later bases first, so that earlier ones (and then the class itself) take precedence.
      for (const base of [...info.bases].reverse()) {
        const ref = await this.resolveName(base, info.file, 0);
        if (ref.kind !== 'local' || ref.info === info) continue;
        for (const [key, chain] of await this.assignmentsOf(ref.info, depth + 1)) {
          merged.set(key, [...chain, ...(merged.get(key) ?? [])]);
        }
      }
    }
    for (const assignment of info.assignments) {
      merged.set(assignment.path, [assignment, ...(merged.get(assignment.path) ?? [])]);
    }
    return merged;
  }

  private async resolveName(name: string, fromFile: string, depth: number): Promise<ClassRef> {
    const index = await this.index(fromFile);
    if (!index || depth > MAX_IMPORT_DEPTH) return { kind: 'external', name };
    const [head, ...rest] = name.split('.');
    if (rest.length === 0) {
      const local = index.classes.get(name);
      if (local) return { kind: 'local', info: local };
      const imported = index.imports.get(name);
      if (imported?.name) {
        const file = await this.moduleFile(imported.module, fromFile);
        if (file) return this.resolveName(imported.name, file, depth + 1);
      }
      return { kind: 'external', name };
    }
    const moduleImport = index.imports.get(head!);
    if (moduleImport && rest.length === 1) {
      const target = moduleImport.name
        ? `${moduleImport.module}.${moduleImport.name}`
        : moduleImport.module;
      const file = await this.moduleFile(target, fromFile);
      if (file) return this.resolveName(rest[0]!, file, depth + 1);
    }
    return { kind: 'external', name };
  }

  /** A module name as a file, looked up like Python: relative to the importer, then the search paths. */
  private async moduleFile(module: string, fromFile: string): Promise<string | undefined> {
    const leadingDots = /^\.*/.exec(module)![0].length;
    const relativePath = module.slice(leadingDots).split('.').filter(Boolean).join(path.sep);
    let roots: string[];
    if (leadingDots > 0) {
      let folder = path.dirname(fromFile);
      for (let k = 1; k < leadingDots; k++) folder = path.dirname(folder);
      roots = [folder];
    } else {
      roots = [path.dirname(fromFile), ...this.config.searchPaths];
    }
    for (const root of roots) {
      if (!this.allowed(root)) continue;
      for (const candidate of [
        path.join(root, `${relativePath}.py`),
        path.join(root, relativePath, '__init__.py'),
      ]) {
        if ((await this.index(candidate)) !== null) return candidate;
      }
    }
    return undefined;
  }

  /** Imports resolve only inside the configured source folders (relative ones cannot climb out). */
  private allowed(folder: string): boolean {
    const roots = [...this.config.searchPaths];
    if (this.config.entryFile) roots.push(path.dirname(this.config.entryFile));
    return roots.some((root) => {
      const relative = path.relative(path.resolve(root), path.resolve(folder));
      return (
        relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative)
      );
    });
  }

  /** Parses a file once; null when it does not exist or cannot be parsed. */
  private async index(file: string): Promise<FileIndex | null> {
    const known = this.files.get(file);
    if (known !== undefined) return known;
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch {
      this.files.set(file, null);
      return null;
    }
    const tree = this.parser.parse(text);
    if (!tree) {
      this.files.set(file, null);
      return null;
    }
    try {
      const index = this.buildIndex(file, tree.rootNode);
      this.files.set(file, index);
      return index;
    } finally {
      tree.delete();
    }
  }

  private buildIndex(file: string, root: Node): FileIndex {
    const index: FileIndex = { file, classes: new Map(), imports: new Map() };
    const byNode = new Map<number, ClassInfo>();
    const classOf = (node: Node | null): ClassInfo | undefined =>
      node ? byNode.get(node.id) : undefined;
    const matches = this.query.matches(root);
    for (const match of matches) {
      const capture = (name: string) => match.captures.find((c) => c.name === name)?.node;
      const cls = capture('class');
      if (cls) {
        const bases = capture('class.bases');
        const info: ClassInfo = {
          name: capture('class.name')!.text,
          file,
          line: cls.startPosition.row + 1,
          bases: bases
            ? bases.namedChildren
                .filter((n) => n && n.type !== 'keyword_argument')
                .map((n) => n!.text)
            : [],
          assignments: [],
        };
        byNode.set(cls.id, info);
        // Nested classes are reachable only through their parent; keep top-level ones by name.
        if (!enclosing(cls, 'class_definition')) index.classes.set(info.name, info);
      }
    }
    for (const match of matches) {
      const capture = (name: string) => match.captures.find((c) => c.name === name)?.node;
      const fn = capture('function');
      if (fn && capture('function.name')!.text === 'forward') {
        const owner = classOf(classOfMethod(fn));
        if (owner) owner.forwardLine = fn.startPosition.row + 1;
      }
      const assign = capture('assign');
      if (assign) {
        const method = enclosing(assign, 'function_definition');
        const owner = method ? classOf(classOfMethod(method)) : undefined;
        const target = selfPath(capture('assign.target')!.text);
        if (owner && target) {
          const callee = capture('assign.callee')!.text;
          const assignment: Assignment = {
            path: target,
            callee,
            file,
            line: assign.startPosition.row + 1,
          };
          if (CONTAINER_CALLEES.has(callee.split('.').pop()!)) {
            const element = capture('assign.arguments')!.descendantsOfType('call')[0];
            const elementCallee = element?.childForFieldName('function')?.text;
            if (elementCallee) assignment.elementCallee = elementCallee;
          }
          owner.assignments.push(assignment);
        }
      }
      const fromModule = capture('from.module');
      if (fromModule) {
        const name = capture('from.name')!.text;
        index.imports.set(capture('from.alias')?.text ?? name, { module: fromModule.text, name });
      }
      const importModule = capture('import.module');
      if (importModule) {
        const alias = capture('import.alias')?.text ?? importModule.text.split('.')[0]!;
        index.imports.set(alias, { module: capture('import.alias') ? importModule.text : alias });
      }
    }
    return index;
  }
}
