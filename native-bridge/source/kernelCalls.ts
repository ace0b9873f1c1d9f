import { promises as fs } from 'node:fs';
import type { onnx } from 'onnx-proto';
import { Parser, type Node, type Query } from 'web-tree-sitter';
import { loadGrammar } from './grammars';
import { moduleCalls } from '../onnx/graphStructure';
import { readOnnxModel } from '../onnx/modelFile';
import { CppKernelIndex, type KernelLocation } from './cppLocator';
import type { SourceLocation } from './pythonLocator';

/** A call to a custom op in Python source. */
export interface KernelCall {
  /** The op's name: `rms_norm`. */
  op: string;
  /** The library for `torch.ops.<namespace>.<op>` calls (`_C`). */
  namespace?: string;
  /** The called expression as written: `torch.ops._C.rms_norm`, `ops.rms_norm`. */
  callee: string;
  file: string;
  /** 1-based. */
  line: number;
}

/** torch.ops namespaces that hold PyTorch's own operators, not a workspace's kernels. */
const TORCH_NAMESPACES = new Set([
  'aten',
  'prim',
  'prims',
  'quantized',
  'profiler',
  'higher_order',
]);
/** A module that holds compiled ops: `_C`, `_moe_C`, `ops`, `_custom_ops`, `custom_ops`. */
const KERNEL_MODULE = /(^|_)C$|(^|_)ops$/;
/** How deep `self.helper(...)` calls from forward are followed. */
const MAX_METHOD_DEPTH = 2;

/** `torch.ops._C.rms_norm` → its names; undefined when any part is not a plain name. */
function dottedNames(node: Node): string[] | undefined {
  if (node.type === 'identifier') return [node.text];
  if (node.type !== 'attribute') return undefined;
  const object = node.childForFieldName('object');
  const attribute = node.childForFieldName('attribute');
  const head = object && dottedNames(object);
  return head && attribute ? [...head, attribute.text] : undefined;
}

type Imports = Map<string, { module: string; name?: string }>;

/** The custom op a call invokes, if it is one. */
function customOpCall(call: Node, imports: Imports, file: string): KernelCall | undefined {
  const callee = call.childForFieldName('function');
  const names = callee && dottedNames(callee);
  if (!names) return undefined;
  const line = call.startPosition.row + 1;
  const text = names.join('.');
  if (names.length === 1) {
    // `from vllm._custom_ops import rms_norm`, then `rms_norm(...)`.
    const imported = imports.get(names[0]!);
    const module = imported?.name ? imported.module.split('.').pop()! : '';
    return imported?.name && KERNEL_MODULE.test(module)
      ? { op: imported.name, callee: text, file, line }
      : undefined;
  }
  const [head, ...rest] = names as [string, ...string[]];
  if (head === 'self' || head === 'cls') return undefined;
  const imported = imports.get(head);
  const module = imported
    ? [...imported.module.split('.'), ...(imported.name ? [imported.name] : [])].filter(Boolean)
    : [head];
  const resolved = [...module, ...rest];
  if (resolved[0] === 'torch') {
    // torch.ops.<namespace>.<op>[.<overload>](...); everything else under torch is PyTorch's own.
    if (resolved[1] !== 'ops' || resolved.length < 4 || TORCH_NAMESPACES.has(resolved[2]!)) {
      return undefined;
    }
    return { op: resolved[3]!, namespace: resolved[2]!, callee: text, file, line };
  }
  const owner = resolved[resolved.length - 2]!;
  return KERNEL_MODULE.test(owner)
    ? { op: resolved[resolved.length - 1]!, callee: text, file, line }
    : undefined;
}

/** The class a function is a method of, or null. */
function classOfMethod(fn: Node): Node | null {
  let parent = fn.parent;
  if (parent?.type === 'decorated_definition') parent = parent.parent;
  return parent?.type === 'block' && parent.parent?.type === 'class_definition'
    ? parent.parent
    : null;
}

/**
 * The custom-op calls in a class's `forward`, in source order: `torch.ops.<ns>.<op>(...)`,
 * `ops.<op>(...)`, `_C.<op>(...)`, `_custom_ops.<op>(...)`, and calls through any name imported
 * from a module whose name ends in `_C` or `_ops` (`from vllm import _custom_ops as ops`). Calls to
 * the class's own methods (`self.helper(...)`) are followed, their op calls listed where the helper
 * is called. Empty when the file, the class or its forward is missing.
 */
export async function findKernelCalls(file: string, className: string): Promise<KernelCall[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return [];
  }
  const { language, query } = await loadGrammar('python');
  const parser = new Parser();
  try {
    parser.setLanguage(language);
    const tree = parser.parse(text);
    if (!tree) return [];
    try {
      return callsInForward(tree.rootNode, query, file, className);
    } finally {
      tree.delete();
    }
  } finally {
    parser.delete();
  }
}

function callsInForward(root: Node, query: Query, file: string, className: string): KernelCall[] {
  const imports: Imports = new Map();
  let classNode: Node | undefined;
  const functions: Node[] = [];
  for (const match of query.matches(root)) {
    const capture = (name: string) => match.captures.find((c) => c.name === name)?.node;
    const cls = capture('class');
    // The top-level class of that name: nested ones are reachable only through their parent.
    if (cls && capture('class.name')!.text === className && !classNode) {
      let nested = false;
      for (let p = cls.parent; p; p = p.parent) nested ||= p.type === 'class_definition';
      if (!nested) classNode = cls;
    }
    const fn = capture('function');
    if (fn) functions.push(fn);
    const fromModule = capture('from.module');
    if (fromModule) {
      const name = capture('from.name')!.text;
      imports.set(capture('from.alias')?.text ?? name, { module: fromModule.text, name });
    }
    const importModule = capture('import.module');
    if (importModule) {
      const alias = capture('import.alias')?.text;
      imports.set(alias ?? importModule.text.split('.')[0]!, {
        module: alias ? importModule.text : importModule.text.split('.')[0]!,
      });
    }
  }
  if (!classNode) return [];
  const methods = new Map<string, Node>();
  for (const fn of functions) {
    if (classOfMethod(fn)?.id !== classNode.id) continue;
    const name = fn.childForFieldName('name')!.text;
    if (!methods.has(name)) methods.set(name, fn);
  }
  const forward = methods.get('forward');
  if (!forward) return [];
  const found: KernelCall[] = [];
  const visit = (method: Node, depth: number, seen: ReadonlySet<string>) => {
    for (const call of method.descendantsOfType('call')) {
      if (!call) continue;
      const custom = customOpCall(call, imports, file);
      if (custom) {
        found.push(custom);
        continue;
      }
      const names = dottedNames(call.childForFieldName('function')!);
      const helper = names?.length === 2 && names[0] === 'self' ? names[1]! : undefined;
      const body = helper && methods.get(helper);
      if (body && depth < MAX_METHOD_DEPTH && !seen.has(helper)) {
        visit(body, depth + 1, new Set(seen).add(helper));
      }
    }
  };
  visit(forward, 0, new Set(['forward']));
  return found;
}

/** ONNX domains whose ops ship with ONNX Runtime itself. */
const BUILT_IN_DOMAINS = new Set([
  '',
  'ai.onnx',
  'ai.onnx.ml',
  'ai.onnx.training',
  'ai.onnx.preview.training',
  'com.microsoft',
  'com.microsoft.nchwc',
  'com.microsoft.experimental',
  'com.ms.internal.nhwc',
]);

/** Per module, the op types of its nodes in custom domains, in graph order. */
export function customDomainOps(graph: onnx.IGraphProto): Map<string, string[]> {
  const nodes = graph.node ?? [];
  const scopes = moduleCalls(nodes.map((n) => n.name ?? ''));
  const result = new Map<string, string[]>();
  for (const node of nodes) {
    if (BUILT_IN_DOMAINS.has(node.domain ?? '') || !node.opType) continue;
    const name = node.name ?? '';
    const scope = name.startsWith('/') ? name.slice(0, name.lastIndexOf('/')) : '';
    const module = scopes.get(scope)?.module ?? '';
    const ops = result.get(module) ?? [];
    if (!ops.includes(node.opType)) ops.push(node.opType);
    result.set(module, ops);
  }
  return result;
}

/** What a suspect's kernel lookup starts from. */
export interface KernelSuspect {
  module: string;
  /** The Python locator's answer (absolute file). */
  source?: SourceLocation;
}

/**
 * For each suspect, the custom kernel behind it in the C/C++/CUDA sources under `roots`: an op of
 * the suspect's module in a custom ONNX domain (an ORT custom op, by `GetName()`), else the first
 * custom-op call in its workspace `forward` that the sources define. Files stay absolute.
 */
export async function locateSuspectKernels(
  roots: readonly string[],
  suspects: readonly KernelSuspect[],
  targetModel?: string,
): Promise<{ kernels: (KernelLocation | undefined)[]; warnings: string[] }> {
  const kernels: (KernelLocation | undefined)[] = suspects.map(() => undefined);
  const warnings: string[] = [];
  if (suspects.length === 0) return { kernels, warnings };
  const index = await CppKernelIndex.create(roots);
  try {
    if (index.fileCount === 0) return { kernels, warnings };
    if (index.truncated) {
      warnings.push(
        `C/C++ sources: stopped reading after ${index.fileCount} files (size limits); kernels in the rest are not located`,
      );
    }
    const customOps = targetModel
      ? customDomainOps((await readOnnxModel(targetModel)).model.graph!)
      : new Map<string, string[]>();
    for (const [i, suspect] of suspects.entries()) {
      // The module's own nodes first, then those of its submodules.
      const within = (module: string) =>
        module !== suspect.module &&
        (suspect.module === '' || module.startsWith(`${suspect.module}.`));
      const opTypes = [
        ...(customOps.get(suspect.module) ?? []),
        ...[...customOps].filter(([module]) => within(module)).flatMap(([, ops]) => ops),
      ];
      for (const opType of opTypes) {
        kernels[i] = index.locateKernel(opType, { prefer: 'ort' });
        if (kernels[i]) break;
      }
      const source = suspect.source;
      if (kernels[i] || source?.kind !== 'forward') continue;
      const className = source.symbol.slice(0, source.symbol.lastIndexOf('.'));
      for (const call of await findKernelCalls(source.file, className)) {
        const query = call.namespace
          ? { namespace: call.namespace, near: source.file }
          : { near: source.file };
        const kernel = index.locateKernel(call.op, query);
        if (!kernel) continue;
        kernels[i] = {
          ...kernel,
          calledAt: { file: call.file, line: call.line, symbol: call.callee },
        };
        break;
      }
    }
    return { kernels, warnings };
  } finally {
    index.dispose();
  }
}
