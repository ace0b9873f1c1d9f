import { promises as fs, type Dirent } from 'node:fs';
import * as path from 'node:path';
import { Parser, type Language, type Node, type Query } from 'web-tree-sitter';
import { loadGrammar } from './grammars';

/**
 * A place in C++ or CUDA source. (Object types rather than interfaces, so that report code may read
 * them as plain records.)
 */
export type KernelSite = {
  /** Absolute inside the index; made relative to the config's folder in results. */
  file: string;
  /** 1-based line of the symbol's name. */
  line: number;
  symbol: string;
};

/** Where the code behind a custom op lives. */
export type KernelLocation = KernelSite & {
  /** The op looked up, as the caller named it (`rms_norm`, `_C::rms_norm`, `MyCustomOp`). */
  op: string;
  /**
   * function: a host function (the one registered for the op, or named like it); cuda-kernel: the
   * name is a `__global__` function itself; registration: the op is registered but the function
   * behind it (a lambda, or code outside the sources) was not found; ort-custom-op: an ONNX Runtime
   * custom op, located at its kernel's `Compute` (else at the class whose `GetName()` returns it).
   */
  kind: 'cuda-kernel' | 'function' | 'registration' | 'ort-custom-op';
  /** `__global__` kernels launched by it, directly or through same-file helpers and macros. */
  launches?: KernelSite[];
  /** The registration that names the op (m.def/m.impl, PYBIND11 def, GetName), when one does. */
  registeredAt?: KernelSite;
  /** The Python line that calls the op, when the lookup started from one. */
  calledAt?: KernelSite;
};

/** Preferences for one lookup. */
export interface KernelQuery {
  /** Library namespace of the call (`_C` in `torch.ops._C.rms_norm`): matching registrations first. */
  namespace?: string;
  /** A file the call comes from: among equal candidates the one closest to it wins. */
  near?: string;
  /** ort: an ONNX op type, so ORT custom ops are tried before torch registrations and functions. */
  prefer?: 'torch' | 'ort';
}

/** Bounds on what the index reads. */
export interface CppIndexLimits {
  maxFiles: number;
  /** Folders listed, C++ or not: bounds the walk through a large tree. */
  maxFolders: number;
  maxFileBytes: number;
  maxTotalBytes: number;
  maxDepth: number;
  /** Per file; a parse that runs longer is abandoned and the file left out. */
  parseTimeoutMs: number;
}

export const CPP_EXTENSIONS: ReadonlySet<string> = new Set([
  '.cu',
  '.cuh',
  '.cpp',
  '.cc',
  '.cxx',
  '.c',
  '.h',
  '.hpp',
]);
/** Dependencies and build outputs: their headers are not the workspace's kernels. */
const SKIPPED_FOLDERS = new Set([
  'node_modules',
  'build',
  'dist',
  '__pycache__',
  'site-packages',
  'dist-packages',
]);
const DEFAULT_LIMITS: CppIndexLimits = {
  maxFiles: 4000,
  maxFolders: 20000,
  maxFileBytes: 2 * 1024 * 1024,
  maxTotalBytes: 96 * 1024 * 1024,
  maxDepth: 16,
  parseTimeoutMs: 5000,
};
/** How deep launches are followed through same-file helpers and macros. */
const MAX_HELPER_DEPTH = 3;

/**
 * CUDA's declaration specifiers and attributes, which the C++ grammar does not know. They are
 * blanked (same length, newlines kept) before parsing so that offsets and lines stay exact.
 */
const CUDA_SPECIFIERS =
  /\b(?:__global__|__device__|__host__|__forceinline__|__noinline__|__inline__|__shared__|__constant__|__managed__|__grid_constant__)\b|\b(?:__launch_bounds__|__align__|C10_LAUNCH_BOUNDS_[0-9])\s*\((?:[^()]|\([^()]*\))*\)/g;
/** A kernel launch configuration `<<<grid, block, shared, stream>>>`. */
const LAUNCH_CONFIGURATION = /<<<[^;{}]{0,400}?>>>/g;
const MACRO_NAME = /^[A-Z][A-Z0-9_]*$/;
const REGISTRY_MACRO = /^(TORCH_LIBRARY|PYBIND11_MODULE)/;
/** Arguments of m.impl that name a dispatch key rather than a function. */
const DISPATCH_KEY = /(^|::)k[A-Z]\w*$|DispatchKey/;

interface BodyEvent {
  offset: number;
  /** A kernel launched here, or a function or macro called here (unqualified names). */
  launch?: string;
  call?: string;
}

interface FunctionDefinition {
  /** Unqualified name without template arguments. */
  name: string;
  /** Enclosing classes and the declarator as written: `KernelOne::Compute`, `vllm::rms_norm`. */
  symbol: string;
  /** Namespaces, classes and declarator joined with `::`, for qualified references. */
  qualified: string;
  file: string;
  line: number;
  global: boolean;
  events: BodyEvent[];
  /** The file's index, for its helpers and macros. */
  index: FileIndex;
}

interface MacroDefinition {
  name: string;
  events: BodyEvent[];
}

interface Registration {
  op: string;
  namespace: string;
  /** The registered function as referenced (`rms_norm`, `vllm::rms_norm`); none for lambdas. */
  target?: string;
  dispatch?: string;
  site: KernelSite;
}

interface OrtCustomOp {
  op: string;
  className: string;
  /** The second argument of `Ort::CustomOpBase<Op, Kernel>`. */
  kernelClass?: string;
  /** For `Ort::Custom::CreateLiteCustomOp(name, provider, fn)`. */
  target?: string;
  /** The class statement (or the CreateLiteCustomOp call). */
  classSite: KernelSite;
  /** The line returning the name. */
  nameSite: KernelSite;
}

interface FileIndex {
  functions: FunctionDefinition[];
  macros: Map<string, MacroDefinition>;
  registrations: Registration[];
  ortOps: OrtCustomOp[];
}

interface SourceFile {
  file: string;
  text: string;
  /** undefined: not parsed yet; null: the parse failed. */
  index?: FileIndex | null;
}

/** Same-length text with every character but line breaks turned into a space. */
function blank(text: string): string {
  return text.replace(/[^\r\n]/g, ' ');
}

/** `vllm::rms_norm_kernel<scalar_t, 8>` → `vllm::rms_norm_kernel`. */
function withoutTemplateArguments(text: string): string {
  let out = '';
  let depth = 0;
  for (const ch of text.replace(/\s+/g, '')) {
    if (ch === '<') depth++;
    else if (ch === '>') depth = Math.max(0, depth - 1);
    else if (depth === 0) out += ch;
  }
  return out;
}

const lastSegment = (name: string): string => name.split('::').pop()!;

/** The name a Python caller or an ONNX node uses, reduced to what C++ registers: `rms_norm`. */
export function baseOpName(op: string): string {
  const segments = op.split(/::|\./).filter(Boolean);
  // `_C::rms_norm.default` and `torch.ops._C.rms_norm.out`: the op is the segment after the library.
  const overloads = new Set(['default', 'out', 'Tensor', 'Scalar', 'inplace']);
  while (segments.length > 1 && overloads.has(segments[segments.length - 1]!)) segments.pop();
  return segments.pop() ?? op;
}

/** The kernel name before a `<<<`: skips whitespace and template arguments backwards. */
function calleeBefore(text: string, offset: number): string | undefined {
  // Whitespace, and line continuations inside a macro.
  const space = /[\s\\]/;
  let i = offset - 1;
  while (i >= 0 && space.test(text[i]!)) i--;
  if (text[i] === '>') {
    let depth = 0;
    for (; i >= 0; i--) {
      if (text[i] === '>') depth++;
      else if (text[i] === '<' && --depth === 0) break;
    }
    i--;
    while (i >= 0 && space.test(text[i]!)) i--;
  }
  const end = i + 1;
  while (i >= 0 && /[\w:]/.test(text[i]!)) i--;
  const name = text.slice(i + 1, end);
  return name && /[A-Za-z_]/.test(name) ? lastSegment(name) : undefined;
}

/** The contents of the string literals in a node, concatenated (`"a" "b"` → `ab`). */
function stringValue(node: Node): string | undefined {
  const literals =
    node.type === 'string_literal' ? [node] : node.descendantsOfType('string_literal');
  if (literals.length === 0) return undefined;
  return literals.map((literal) => literal!.text.replace(/^[^"]*"|"$/g, '')).join('');
}

/** The function an argument refers to: `&fn`, `fn`, `ns::fn`, `TORCH_FN(fn)`, `dispatch(k, &fn)`. */
function functionReference(node: Node): string | undefined {
  switch (node.type) {
    case 'pointer_expression':
    case 'parenthesized_expression':
    case 'cast_expression': {
      const inner =
        node.childForFieldName('argument') ??
        node.childForFieldName('value') ??
        node.namedChildren.find((n) => n?.type !== 'type_descriptor');
      return inner ? functionReference(inner) : undefined;
    }
    case 'identifier':
    case 'qualified_identifier':
    case 'template_function': {
      const name = withoutTemplateArguments(node.text);
      return DISPATCH_KEY.test(name) ? undefined : name;
    }
    case 'call_expression': {
      const args = node.childForFieldName('arguments')?.namedChildren ?? [];
      for (const arg of [...args].reverse()) {
        const found = arg && functionReference(arg);
        if (found) return found;
      }
      return undefined;
    }
    default:
      return undefined;
  }
}

/** Whether a node sits in the `#if 0` branch of a preprocessor conditional. */
function disabled(node: Node): boolean {
  for (let child = node, parent = node.parent; parent; child = parent, parent = parent.parent) {
    if (parent.type !== 'preproc_if') continue;
    const alternative = parent.childForFieldName('alternative');
    const inAlternative = alternative !== null && alternative.id === child.id;
    if (!inAlternative && parent.childForFieldName('condition')?.text.trim() === '0') return true;
  }
  return false;
}

/** Enclosing namespaces and classes, outermost first. */
function scopesOf(node: Node): { namespaces: string[]; classes: string[] } {
  const namespaces: string[] = [];
  const classes: string[] = [];
  for (let p = node.parent; p; p = p.parent) {
    const name = p.childForFieldName('name')?.text;
    if (!name) continue;
    if (p.type === 'namespace_definition') namespaces.unshift(name);
    else if (p.type === 'class_specifier' || p.type === 'struct_specifier') classes.unshift(name);
  }
  return { namespaces, classes };
}

/**
 * An index of C++ and CUDA sources that maps custom-op names to the code behind them: the function
 * registered for the op (TORCH_LIBRARY / TORCH_LIBRARY_IMPL m.def and m.impl, PYBIND11_MODULE
 * m.def), else a function named like the op, with the `__global__` kernels it launches; and ONNX
 * Runtime custom ops by the name their `GetName()` returns.
 *
 * Files are read once when the index is created; a file is parsed only when it mentions a name being
 * looked up, and its tree is freed as soon as its definitions are read.
 */
export class CppKernelIndex {
  private readonly parser: Parser;
  private readonly mentions = new Map<string, SourceFile[]>();
  private readonly launches = new Map<FunctionDefinition, KernelSite[]>();

  private constructor(
    private readonly sources: SourceFile[],
    /** True when a limit stopped the walk before every file was read. */
    readonly truncated: boolean,
    private readonly query: Query,
    language: Language,
    private readonly limits: CppIndexLimits,
  ) {
    this.parser = new Parser();
    this.parser.setLanguage(language);
  }

  /** Reads the C++/CUDA files under `roots`, never following a link out of them. */
  static async create(
    roots: readonly string[],
    limits: Partial<CppIndexLimits> = {},
  ): Promise<CppKernelIndex> {
    const bounds = { ...DEFAULT_LIMITS, ...limits };
    const { language, query } = await loadGrammar('cpp');
    const { sources, truncated } = await readSourceFiles(roots, bounds);
    return new CppKernelIndex(sources, truncated, query, language, bounds);
  }

  /** Number of C/C++/CUDA files read. */
  get fileCount(): number {
    return this.sources.length;
  }

  dispose(): void {
    this.parser.delete();
  }

  /**
   * The code behind a custom op, or undefined when the sources have none. A registered function
   * wins over one that only shares the op's name; among several definitions, one that launches
   * kernels, then the one nearest to `query.near`.
   */
  locateKernel(op: string, query: KernelQuery = {}): KernelLocation | undefined {
    const name = baseOpName(op);
    if (!/^[A-Za-z_]\w*$/.test(name)) return undefined;
    const strategies =
      query.prefer === 'ort'
        ? [() => this.ortCustomOp(op, name, query), () => this.torchOp(op, name, query)]
        : [() => this.torchOp(op, name, query), () => this.ortCustomOp(op, name, query)];
    for (const strategy of strategies) {
      const found = strategy();
      if (found) return found;
    }
    return undefined;
  }

  private torchOp(op: string, name: string, query: KernelQuery): KernelLocation | undefined {
    const registrations = this.indexesMentioning(name)
      .flatMap((index) => index.registrations)
      .filter((r) => r.op === name);
    // 0: the caller's library (or no library named), 1: a library spelled as a macro
    // (TORCH_EXTENSION_NAME) that may be it, 2: another library.
    const foreign = (r: Registration | undefined): number =>
      !r || !query.namespace || r.namespace === query.namespace
        ? 0
        : MACRO_NAME.test(r.namespace)
          ? 1
          : 2;
    const score = (r: Registration): number =>
      foreign(r) * 4 + (r.dispatch && /CUDA/i.test(r.dispatch) ? 0 : 2) + (r.target ? 0 : 1);
    registrations.sort(
      (a, b) =>
        score(a) - score(b) ||
        this.distance(a.site.file, query) - this.distance(b.site.file, query),
    );
    const candidates: { registration?: Registration; definition: FunctionDefinition }[] = [];
    const targets = [...new Set([...registrations.map((r) => r.target), name])];
    for (const target of targets) {
      const definition = target && this.bestDefinition(target, query);
      if (!definition) continue;
      const registration = registrations.find((r) => r.target === target);
      candidates.push(registration ? { registration, definition } : { definition });
    }
    // Among the library's candidates, one that runs a kernel: the CUDA build over a CPU one.
    const rank = ({ registration, definition }: (typeof candidates)[number]): number =>
      foreign(registration) * 2 + (this.runsKernels(definition) ? 0 : 1);
    const best = candidates
      .map((candidate, order) => ({ candidate, order }))
      .sort((a, b) => rank(a.candidate) - rank(b.candidate) || a.order - b.order)[0]?.candidate;
    if (best) {
      const { definition } = best;
      const location: KernelLocation = {
        ...site(definition),
        op,
        kind: definition.global ? 'cuda-kernel' : 'function',
      };
      const launches = definition.global ? [] : this.launchedKernels(definition);
      if (launches.length) location.launches = launches;
      const registeredAt = best.registration ?? registrations[0];
      if (registeredAt) location.registeredAt = registeredAt.site;
      return location;
    }
    const first = registrations[0];
    return first
      ? { ...first.site, op, kind: 'registration', registeredAt: first.site }
      : undefined;
  }

  private runsKernels(definition: FunctionDefinition): boolean {
    return definition.global || this.launchedKernels(definition).length > 0;
  }

  private ortCustomOp(op: string, name: string, query: KernelQuery): KernelLocation | undefined {
    const candidates = this.indexesMentioning(name)
      .flatMap((index) => index.ortOps)
      .filter((o) => o.op === name)
      .sort(
        (a, b) => this.distance(a.classSite.file, query) - this.distance(b.classSite.file, query),
      );
    const custom = candidates[0];
    if (!custom) return undefined;
    const compute = custom.target
      ? this.bestDefinition(custom.target, { near: custom.classSite.file })
      : custom.kernelClass
        ? this.bestDefinition(`${custom.kernelClass}::Compute`, { near: custom.classSite.file })
        : undefined;
    const location: KernelLocation = {
      ...(compute ? site(compute) : custom.classSite),
      op,
      kind: 'ort-custom-op',
      registeredAt: custom.nameSite,
    };
    const launches = compute ? this.launchedKernels(compute) : [];
    if (launches.length) location.launches = launches;
    return location;
  }

  /** The definition a reference (`fn`, `ns::fn`, `Kernel::Compute`) most likely means. */
  private bestDefinition(reference: string, query: KernelQuery): FunctionDefinition | undefined {
    const name = lastSegment(reference);
    const named = this.indexesMentioning(name)
      .flatMap((index) => index.functions)
      .filter((f) => f.name === name);
    // `vllm::rms_norm` means that one; a qualifier matching none (an alias) is left aside.
    const qualified = named.filter(
      (f) => f.qualified === reference || f.qualified.endsWith(`::${reference}`),
    );
    const candidates = qualified.length ? qualified : named;
    const rank = (f: FunctionDefinition): number => (this.runsKernels(f) ? 0 : 1);
    candidates.sort(
      (a, b) =>
        rank(a) - rank(b) ||
        this.distance(a.file, query) - this.distance(b.file, query) ||
        (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line),
    );
    return candidates[0];
  }

  /**
   * The `__global__` kernels a function launches, in source order, each once: directly, or through
   * helpers and macros of its own file. A kernel name resolves to the definition in the same file,
   * else the nearest one.
   */
  private launchedKernels(definition: FunctionDefinition): KernelSite[] {
    const known = this.launches.get(definition);
    if (known) return known;
    const index = definition.index;
    const names: string[] = [];
    const visit = (events: readonly BodyEvent[], depth: number, seen: ReadonlySet<string>) => {
      for (const event of events) {
        if (event.launch) {
          if (!names.includes(event.launch)) names.push(event.launch);
        } else if (event.call && depth < MAX_HELPER_DEPTH && !seen.has(event.call)) {
          const next = new Set(seen).add(event.call);
          const macro = index.macros.get(event.call);
          if (macro) visit(macro.events, depth + 1, next);
          for (const helper of index.functions) {
            if (helper.name === event.call && !helper.global) visit(helper.events, depth + 1, next);
          }
        }
      }
    };
    visit(definition.events, 0, new Set([definition.name]));
    const near: KernelQuery = { near: definition.file };
    const sites: KernelSite[] = [];
    for (const kernel of names) {
      const [found] = this.indexesMentioning(kernel)
        .flatMap((i) => i.functions)
        .filter((f) => f.name === kernel && f.global)
        .sort(
          (a, b) =>
            Number(a.file !== definition.file) - Number(b.file !== definition.file) ||
            this.distance(a.file, near) - this.distance(b.file, near) ||
            a.line - b.line,
        );
      if (found) sites.push(site(found));
    }
    this.launches.set(definition, sites);
    return sites;
  }

  /** Path distance from the query's `near` file; 0 without one. */
  private distance(file: string, query: KernelQuery): number {
    if (!query.near) return 0;
    return path.relative(path.dirname(query.near), file).split(path.sep).length;
  }

  /** Parsed indexes of the files in which `word` occurs as a whole word. */
  private indexesMentioning(word: string): FileIndex[] {
    let files = this.mentions.get(word);
    if (!files) {
      const pattern = new RegExp(`\\b${word.replace(/[^\w]/g, '')}\\b`);
      files = this.sources.filter((s) => pattern.test(s.text));
      this.mentions.set(word, files);
    }
    const indexes: FileIndex[] = [];
    for (const source of files) {
      if (source.index === undefined) source.index = this.parse(source);
      if (source.index) indexes.push(source.index);
    }
    return indexes;
  }

  private parse(source: SourceFile): FileIndex | null {
    const specifiers: number[] = [];
    const launchConfigurations: number[] = [];
    const text = source.text
      .replace(CUDA_SPECIFIERS, (match, offset: number) => {
        if (match === '__global__') specifiers.push(offset);
        return blank(match);
      })
      .replace(LAUNCH_CONFIGURATION, (match, offset: number) => {
        launchConfigurations.push(offset);
        return blank(match);
      });
    const deadline = Date.now() + this.limits.parseTimeoutMs;
    let tree;
    try {
      tree = this.parser.parse(text, null, { progressCallback: () => Date.now() > deadline });
    } catch {
      return null;
    }
    if (!tree) return null;
    try {
      return this.buildIndex(source, tree.rootNode, specifiers, launchConfigurations);
    } finally {
      tree.delete();
    }
  }

  private buildIndex(
    source: SourceFile,
    root: Node,
    globalSpecifiers: readonly number[],
    launchConfigurations: readonly number[],
  ): FileIndex {
    const { file } = source;
    const index: FileIndex = { functions: [], macros: new Map(), registrations: [], ortOps: [] };
    const byNode = new Map<number, { events: BodyEvent[] }>();
    const registries = new Map<number, { macro: string; parameters: string[] }>();
    const classes = new Map<string, { line: number; kernelClass?: string }>();
    const getNames: { className: string; op: string; line: number }[] = [];
    const liteOps: { node: Node; args: (Node | null)[] }[] = [];
    const registrationCalls: { call: Node; object: Node; method: string; args: Node }[] = [];
    const calls: { node: Node; name: string }[] = [];

    for (const match of this.query.matches(root)) {
      const capture = (name: string) => match.captures.find((c) => c.name === name)?.node;
      const registry = capture('registry');
      if (registry) {
        registries.set(registry.id, {
          macro: capture('registry.macro')!.text,
          parameters: capture('registry.parameters')!
            .namedChildren.filter((p) => p && p.type !== 'comment')
            .map((p) => p!.text.trim()),
        });
        continue;
      }
      const fn = capture('function');
      if (fn) {
        const nameNode = capture('function.name')!;
        const declarator = withoutTemplateArguments(nameNode.text);
        if (REGISTRY_MACRO.test(declarator) || disabled(fn)) continue;
        const { namespaces, classes: enclosingClasses } = scopesOf(fn);
        const before = fn.previousSibling?.endIndex ?? fn.parent?.startIndex ?? 0;
        const definition: FunctionDefinition = {
          name: lastSegment(declarator),
          symbol: [...enclosingClasses, declarator].join('::'),
          qualified: [...namespaces, ...enclosingClasses, declarator].join('::'),
          file,
          line: nameNode.startPosition.row + 1,
          global: globalSpecifiers.some((o) => o >= before && o < nameNode.startIndex),
          events: [],
          index,
        };
        index.functions.push(definition);
        byNode.set(fn.id, definition);
        if (definition.name === 'GetName') {
          const returned = capture('function.body')!
            .descendantsOfType('return_statement')
            .map((r) => r && stringValue(r))
            .find((v) => v);
          const qualifier = declarator.split('::').slice(-2, -1)[0];
          const className = qualifier ?? enclosingClasses[enclosingClasses.length - 1];
          if (returned && className) {
            getNames.push({ className, op: returned, line: nameNode.startPosition.row + 1 });
          }
        }
        continue;
      }
      const cls = capture('class');
      if (cls) {
        const base = cls.namedChildren.find((n) => n?.type === 'base_class_clause');
        const customOpBase = base
          ?.descendantsOfType(['template_type', 'template_function'])
          .find((t) => t && /CustomOpBase$/.test(t.childForFieldName('name')?.text ?? ''));
        const kernelArgument = customOpBase
          ?.childForFieldName('arguments')
          ?.namedChildren.filter((n) => n && n.type !== 'comment')[1];
        const info: { line: number; kernelClass?: string } = {
          line: capture('class.name')!.startPosition.row + 1,
        };
        if (kernelArgument) info.kernelClass = withoutTemplateArguments(kernelArgument.text);
        classes.set(withoutTemplateArguments(capture('class.name')!.text), info);
        continue;
      }
      const registration = capture('registration');
      if (registration) {
        registrationCalls.push({
          call: registration,
          object: capture('registration.object')!,
          method: capture('registration.method')!.text,
          args: capture('registration.arguments')!,
        });
        continue;
      }
      const call = capture('call');
      if (call) {
        const name = lastSegment(withoutTemplateArguments(capture('call.function')!.text));
        calls.push({ node: call, name });
        if (name === 'CreateLiteCustomOp') {
          liteOps.push({ node: call, args: capture('call.arguments')!.namedChildren });
        }
        continue;
      }
      const macro = capture('macro');
      if (macro && !disabled(macro)) {
        const definition: MacroDefinition = { name: capture('macro.name')!.text, events: [] };
        index.macros.set(definition.name, definition);
        byNode.set(macro.id, definition);
      }
    }

    // Events go to the innermost function or macro around them.
    const owner = (node: Node | null) => {
      for (let p = node; p; p = p.parent) {
        const found = byNode.get(p.id);
        if (found) return found;
      }
      return undefined;
    };
    for (const { node, name } of calls) {
      owner(node.parent)?.events.push({ offset: node.startIndex, call: name });
    }
    for (const offset of launchConfigurations) {
      const at = root.descendantForIndex(offset);
      if (!at || /comment|string/.test(at.type)) continue;
      const kernel = calleeBefore(source.text, offset);
      if (kernel) owner(at)?.events.push({ offset, launch: kernel });
    }
    for (const definition of byNode.values()) definition.events.sort((a, b) => a.offset - b.offset);

    for (const { call, object, method, args } of registrationCalls) {
      let block: Node | null = call.parent;
      while (block && !registries.has(block.id)) block = block.parent;
      const registry = block && registries.get(block.id);
      if (!registry || disabled(call)) continue;
      // `m.def(...)` or a chain `m.def(...).def(...)`; `py::class_<T>(m, ...).def(...)` is a method.
      let chainRoot = object;
      while (chainRoot.type === 'call_expression') {
        const callee = chainRoot.childForFieldName('function');
        const next =
          callee?.type === 'field_expression' ? callee.childForFieldName('argument') : null;
        if (!next) break;
        chainRoot = next;
      }
      const moduleVariable = registry.parameters[registry.parameters.length - 1];
      if (chainRoot.text !== moduleVariable) continue;
      const values = args.namedChildren.filter((n): n is Node => !!n && n.type !== 'comment');
      const schema = values[0] && stringValue(values[0]);
      const op = schema && /^\s*(?:\w+::)?([A-Za-z_]\w*)/.exec(schema)?.[1];
      if (!op) continue;
      const namespace = registry.parameters[0] ?? '';
      const entry: Registration = {
        op,
        namespace,
        site: {
          file,
          line: call.startPosition.row + 1,
          symbol: MACRO_NAME.test(namespace) ? op : `${namespace}::${op}`,
        },
      };
      const targetNode =
        method === 'impl' && values.length > 2 ? values[values.length - 1] : values[1];
      const target = targetNode && functionReference(targetNode);
      if (target) entry.target = target;
      const dispatch =
        method === 'impl' && values.length > 2
          ? values[1]!.text
          : registry.macro.startsWith('TORCH_LIBRARY_IMPL')
            ? registry.parameters[1]
            : values[1]?.type === 'call_expression'
              ? values[1].text
              : undefined;
      if (dispatch) entry.dispatch = dispatch;
      index.registrations.push(entry);
    }

    for (const { className, op, line } of getNames) {
      const info = classes.get(className);
      const custom: OrtCustomOp = {
        op,
        className,
        classSite: { file, line: info?.line ?? line, symbol: className },
        nameSite: { file, line, symbol: `${className}::GetName` },
      };
      if (info?.kernelClass) custom.kernelClass = info.kernelClass;
      index.ortOps.push(custom);
    }
    for (const { node, args } of liteOps) {
      const values = args.filter((n): n is Node => !!n && n.type !== 'comment');
      const op = values[0] && stringValue(values[0]);
      const target = values.length > 2 ? functionReference(values[values.length - 1]!) : undefined;
      if (!op) continue;
      const at: KernelSite = { file, line: node.startPosition.row + 1, symbol: op };
      const custom: OrtCustomOp = { op, className: op, classSite: at, nameSite: at };
      if (target) custom.target = target;
      index.ortOps.push(custom);
    }
    return index;
  }
}

function site(definition: FunctionDefinition): KernelSite {
  return { file: definition.file, line: definition.line, symbol: definition.symbol };
}

/** Whether `file` is `folder` or lies under it. */
function inside(folder: string, file: string): boolean {
  const relative = path.relative(folder, file);
  return (
    relative === '' ||
    (!relative.startsWith(`..${path.sep}`) && relative !== '..' && !path.isAbsolute(relative))
  );
}

/** The source files under the roots, depth first in name order, within the limits. */
async function readSourceFiles(
  roots: readonly string[],
  limits: CppIndexLimits,
): Promise<{ sources: SourceFile[]; truncated: boolean }> {
  const existingRoots: { given: string; real: string }[] = [];
  for (const root of roots) {
    try {
      existingRoots.push({ given: path.resolve(root), real: await fs.realpath(root) });
    } catch {
      // a search path that does not exist holds no sources
    }
  }
  const realRoots = existingRoots.map((r) => r.real);
  const sources: SourceFile[] = [];
  const seen = new Set<string>();
  let totalBytes = 0;
  let folders = 0;
  let truncated = false;
  const walk = async (folder: string, realFolder: string, depth: number): Promise<void> => {
    if (seen.has(realFolder) || truncated) return;
    seen.add(realFolder);
    if (++folders > limits.maxFolders) {
      truncated = true;
      return;
    }
    let entries: Dirent[];
    try {
      entries = await fs.readdir(folder, { withFileTypes: true });
    } catch {
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (truncated) return;
      const full = path.join(folder, entry.name);
      let real = path.join(realFolder, entry.name);
      let isDirectory = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          real = await fs.realpath(full);
          const stat = await fs.stat(real);
          isDirectory = stat.isDirectory();
          isFile = stat.isFile();
        } catch {
          continue;
        }
        if (!realRoots.some((root) => inside(root, real))) continue;
      }
      if (isDirectory) {
        const skipped = entry.name.startsWith('.') || SKIPPED_FOLDERS.has(entry.name);
        if (!skipped && depth < limits.maxDepth) await walk(full, real, depth + 1);
        continue;
      }
      if (!isFile || !CPP_EXTENSIONS.has(path.extname(entry.name).toLowerCase())) continue;
      if (seen.has(real)) continue;
      seen.add(real);
      if (sources.length >= limits.maxFiles) {
        truncated = true;
        return;
      }
      try {
        const stat = await fs.stat(real);
        if (stat.size > limits.maxFileBytes) continue;
        if (totalBytes + stat.size > limits.maxTotalBytes) {
          truncated = true;
          return;
        }
        totalBytes += stat.size;
        sources.push({ file: full, text: await fs.readFile(real, 'utf8') });
      } catch {
        // unreadable: left out
      }
    }
  };
  for (const { given, real } of existingRoots) await walk(given, real, 0);
  return { sources, truncated };
}

/** A kernel location with its files relative to `baseDir` (forward slashes). */
export function relativeKernelLocation(location: KernelLocation, baseDir: string): KernelLocation {
  const relative = (at: KernelSite): KernelSite => ({
    ...at,
    file: path.relative(baseDir, at.file).split(path.sep).join('/'),
  });
  const result: KernelLocation = { ...location, ...relative(location) };
  if (location.launches) result.launches = location.launches.map(relative);
  if (location.registeredAt) result.registeredAt = relative(location.registeredAt);
  if (location.calledAt) result.calledAt = relative(location.calledAt);
  return result;
}
