import type { onnx } from 'onnx-proto';
import * as protobuf from 'protobufjs';

/**
 * Module scopes from what the exporter wrote, in the one form the engine reads: a node name
 * `/model/layers.0/mlp/down_proj/<op>` (the TorchScript exporter's own naming).
 *
 * torch's default exporter (`torch.onnx.export(..., dynamo=True)`) names nodes `node_MatMul_12`
 * and keeps the module stack in the node's metadata: `pkg.torch.onnx.name_scopes` lists the
 * dotted path of every enclosing module, root first, then the op's own name
 * (`['', 'model', 'model.layers.0', 'model.layers.0.mlp', 'linear_6']`), and
 * `pkg.torch.onnx.stack_trace` the Python frames of the statement. Nodes without that metadata
 * keep their names (TorchScript, ONNX Runtime GenAI and Optimum exports already carry scopes).
 */

export const NAME_SCOPES_KEY = 'pkg.torch.onnx.name_scopes';
export const STACK_TRACE_KEY = 'pkg.torch.onnx.stack_trace';

/** The strings of a Python list literal as the exporter writes it: `['', 'model', "it's"]`. */
export function parsePythonStringList(text: string): string[] | undefined {
  const trimmed = text.trim();
  if (!trimmed.startsWith('[') || !trimmed.endsWith(']')) return undefined;
  const items: string[] = [];
  const pattern = /'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"/g;
  for (const match of trimmed.matchAll(pattern)) {
    items.push((match[1] ?? match[2] ?? '').replace(/\\(.)/g, '$1'));
  }
  return items;
}

/** One node's `metadata_props` (field 9 of NodeProto, ONNX IR 10, unknown to onnx-proto 8). */
export type NodeMetadata = ReadonlyMap<string, string>;

/**
 * Just enough of onnx.proto to read node metadata; protobufjs skips every other field (weights
 * included) without decoding it.
 */
const METADATA_SCHEMA = protobuf.Root.fromJSON({
  nested: {
    Entry: { fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
    Node: { fields: { metadataProps: { rule: 'repeated', type: 'Entry', id: 9 } } },
    Value: {
      fields: {
        name: { type: 'string', id: 1 },
        metadataProps: { rule: 'repeated', type: 'Entry', id: 4 },
      },
    },
    Graph: {
      fields: {
        node: { rule: 'repeated', type: 'Node', id: 1 },
        valueInfo: { rule: 'repeated', type: 'Value', id: 13 },
      },
    },
    Model: { fields: { graph: { type: 'Graph', id: 7 } } },
  },
}).lookupType('Model');

type Entries = { key?: string; value?: string }[];

interface DecodedModel {
  graph?: {
    node?: { metadataProps?: Entries }[];
    valueInfo?: { name?: string; metadataProps?: Entries }[];
  };
}

export interface GraphMetadata {
  /** Per node of the main graph, in order, its metadata entries. */
  nodes: NodeMetadata[];
  /** Per value named in the graph's value_info (field 4 of ValueInfoProto), its metadata entries. */
  values: Map<string, NodeMetadata>;
}

const entries = (list: Entries | undefined): NodeMetadata =>
  new Map((list ?? []).map((e) => [e.key ?? '', e.value ?? '']));

/** The metadata of the main graph's nodes and values. */
export function readGraphMetadata(bytes: Uint8Array): GraphMetadata {
  const decoded = METADATA_SCHEMA.decode(bytes) as unknown as DecodedModel;
  const values = new Map<string, NodeMetadata>();
  for (const info of decoded.graph?.valueInfo ?? []) {
    if (info.name && info.metadataProps?.length) values.set(info.name, entries(info.metadataProps));
  }
  return { nodes: (decoded.graph?.node ?? []).map((n) => entries(n.metadataProps)), values };
}

/**
 * The enclosing modules' dotted paths of a dynamo-exported node, outermost first, without the
 * root `''` and without the op's own name; undefined when the node carries no name scopes.
 */
export function moduleStackOf(metadata: NodeMetadata | undefined): string[] | undefined {
  const raw = metadata?.get(NAME_SCOPES_KEY);
  const scopes = raw === undefined ? undefined : parsePythonStringList(raw);
  if (!scopes || scopes.length === 0) return undefined;
  // The last entry is the op's own name; the first the root module.
  return scopes.slice(0, -1).filter((scope) => scope !== '');
}

/** The innermost `File "...", line N` of a node's stack trace: the statement that made it. */
export function statementOf(
  metadata: NodeMetadata | undefined,
): { file: string; line: number } | undefined {
  const trace = metadata?.get(STACK_TRACE_KEY);
  if (!trace) return undefined;
  let last: { file: string; line: number } | undefined;
  for (const match of trace.matchAll(/File "([^"]+)", line (\d+)/g)) {
    last = { file: match[1]!, line: Number(match[2]) };
  }
  return last;
}

export interface ScopeRewrite {
  /** Nodes renamed from their metadata. */
  renamed: number;
  /** A wrapper module around the whole model, left out of the paths (`m` of `m.model.layers.0`). */
  wrapper?: string;
  /** Constants folded at export time, handed back to their module (see onnx/foldedConstants). */
  folded?: number;
}

/**
 * Renames every node that carries name-scope metadata to the slash form, in place. A wrapper
 * module (one child of the root that every scoped node lies in, with no op of its own at the root)
 * is dropped from the paths, so that `W(model)` exported for its logits reads `model.layers.0`
 * as the model itself does.
 */
export function applyExporterScopes(
  graph: onnx.IGraphProto,
  metadata: readonly NodeMetadata[],
): ScopeRewrite {
  const nodes = graph.node ?? [];
  const stacks = nodes.map((_, index) => moduleStackOf(metadata[index]));
  if (!stacks.some((stack) => stack !== undefined)) return dropNamedWrapper(nodes);
  const firsts = new Set<string>();
  let rootOps = 0;
  for (const stack of stacks) {
    if (!stack) continue;
    if (stack.length === 0) rootOps++;
    else firsts.add(stack[0]!);
  }
  const wrapper = firsts.size === 1 && rootOps === 0 ? [...firsts][0]! : undefined;
  // The wrapper is dropped only when something lies below it: a lone module stays named.
  const dropWrapper = wrapper !== undefined && stacks.some((stack) => (stack?.length ?? 0) > 1);
  let renamed = 0;
  nodes.forEach((node, index) => {
    const stack = stacks[index];
    if (!stack) return;
    const kept = dropWrapper ? stack.slice(1) : stack;
    const strip = dropWrapper ? `${wrapper}.` : '';
    // Each level's own attribute name: `model.layers.0` inside `model` is `layers.0`.
    const segments = kept.map((scope, i) => {
      const own = scope.startsWith(strip) ? scope.slice(strip.length) : scope;
      const parent = i > 0 ? kept[i - 1]!.slice(strip.length) : '';
      return parent && own.startsWith(`${parent}.`) ? own.slice(parent.length + 1) : own;
    });
    const op = node.name || `${node.opType ?? 'op'}_${index}`;
    node.name = segments.length > 0 ? `/${segments.join('/')}/${op}` : op;
    renamed++;
  });
  return dropWrapper ? { renamed, wrapper } : { renamed };
}

/**
 * The same wrapper rule for node names that already carry their scopes (the TorchScript exporter's
 * `/model/model/layers.0/mlp/Mul`): when every node inside a module lies in one top-level module,
 * and modules lie below it, that module is a wrapper around the model and leaves the paths. Ops
 * of the wrapper's own forward (`/Shape`, at the root) keep their names.
 */
function dropNamedWrapper(nodes: onnx.INodeProto[]): ScopeRewrite {
  const scoped = nodes
    .map((node) => node.name ?? '')
    .filter((name) => name.startsWith('/'))
    .map((name) => name.slice(1).split('/'));
  const inModules = scoped.filter((segments) => segments.length >= 2);
  const firsts = new Set(inModules.map((segments) => segments[0]!));
  if (firsts.size !== 1 || !inModules.some((segments) => segments.length >= 3)) {
    return { renamed: 0 };
  }
  const wrapper = [...firsts][0]!;
  const prefix = `/${wrapper}/`;
  let renamed = 0;
  for (const node of nodes) {
    if (node.name?.startsWith(prefix)) {
      node.name = `/${node.name.slice(prefix.length)}`;
      renamed++;
    }
  }
  return { renamed, wrapper };
}
