import { onnx } from 'onnx-proto';
import { parsePythonStringList, type NodeMetadata } from './nodeScopes';

/**
 * Constants the exporter computed at export time, handed back to the module that made them.
 *
 * torch's dynamo exporter runs onnxscript's optimizer, which folds every subgraph that depends on
 * constants only: a rotary module's cos/sin tables (its `inv_freq` buffer at the fixed positions
 * of the export), a causal mask. Such a module keeps no node; its outputs are initializers read
 * by the next module, and a bug in it (a wrong rotary base) would first show in the reader, or
 * nowhere when the reader is insensitive to it. The optimizer records what each constant was
 * folded from (`pkg.onnxscript.optimizer.folded_from` in the value's metadata), the module's
 * parameters and buffers among the names. Each such constant gets an Identity node in the module
 * that owns those parameters and buffers, and its readers read that node's output: the constant
 * becomes a value of the series, paired and compared like any module output.
 */

export const FOLDED_FROM_KEY = 'pkg.onnxscript.optimizer.folded_from';

/**
 * The module a constant was folded in: the deepest module holding every parameter or buffer it
 * was folded from (dotted names; FX node names have no dot), without the wrapper module. Undefined
 * when it was folded from no parameter or buffer (positions, shapes).
 */
export function ownerOfFolded(sources: readonly string[], wrapper?: string): string | undefined {
  const modules = sources
    .filter((name) => name.includes('.'))
    .map((name) => name.split('.').slice(0, -1));
  if (modules.length === 0) return undefined;
  let common = modules[0]!;
  for (const segments of modules.slice(1)) {
    let k = 0;
    while (k < common.length && k < segments.length && common[k] === segments[k]) k++;
    common = common.slice(0, k);
  }
  if (wrapper !== undefined && common[0] === wrapper) common = common.slice(1);
  return common.join('.');
}

/** Per dotted module path, the slash scope its nodes carry (`/model/layers.0/self_attn`). */
function scopesByModule(nodes: readonly onnx.INodeProto[]): Map<string, string> {
  const scopes = new Map<string, string>();
  for (const node of nodes) {
    const name = node.name ?? '';
    if (!name.startsWith('/')) continue;
    const segments = name.split('/').slice(1, -1);
    for (let i = 1; i <= segments.length; i++) {
      const module = segments.slice(0, i).join('.');
      if (!scopes.has(module)) scopes.set(module, `/${segments.slice(0, i).join('/')}`);
    }
  }
  return scopes;
}

/** The scope for `module`: its own, else its deepest scoped ancestor's with the rest appended. */
function scopeFor(module: string, scopes: ReadonlyMap<string, string>): string {
  const segments = module.split('.');
  for (let k = segments.length; k > 0; k--) {
    const scope = scopes.get(segments.slice(0, k).join('.'));
    if (scope !== undefined) {
      return k === segments.length ? scope : `${scope}/${segments.slice(k).join('.')}`;
    }
  }
  return module === '' ? '' : `/${module}`;
}

/**
 * Gives every folded constant with an owner an Identity node in that module, placed before its
 * first reader, and points the readers at it. Returns the constants exposed.
 */
export function exposeFoldedConstants(
  graph: onnx.IGraphProto,
  values: ReadonlyMap<string, NodeMetadata>,
  wrapper?: string,
): number {
  const nodes = graph.node ?? [];
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  const scopes = scopesByModule(nodes);
  const firstReader = new Map<string, number>();
  nodes.forEach((node, index) => {
    for (const input of node.input ?? []) {
      if (initializers.has(input) && !firstReader.has(input)) firstReader.set(input, index);
    }
  });
  const before = new Map<number, onnx.NodeProto[]>();
  const renamed = new Map<string, string>();
  for (const [name, metadata] of values) {
    const raw = metadata.get(FOLDED_FROM_KEY);
    const at = firstReader.get(name);
    if (raw === undefined || at === undefined) continue;
    const owner = ownerOfFolded(parsePythonStringList(raw) ?? [], wrapper);
    if (owner === undefined) continue;
    const output = `${name}.folded`;
    const node = onnx.NodeProto.create({
      name: `${scopeFor(owner, scopes)}/folded_${name}`,
      opType: 'Identity',
      input: [name],
      output: [output],
    });
    before.set(at, [...(before.get(at) ?? []), node]);
    renamed.set(name, output);
  }
  if (renamed.size === 0) return 0;
  for (const node of nodes) {
    node.input = (node.input ?? []).map((input) => renamed.get(input) ?? input);
  }
  graph.node = nodes.flatMap((node, index) => [...(before.get(index) ?? []), node]);
  return renamed.size;
}
