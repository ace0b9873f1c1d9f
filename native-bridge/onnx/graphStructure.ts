import type { onnx } from 'onnx-proto';

/**
 * The dotted PyTorch module path carried by an exported node's name scope:
 * `/model/layers.2/self_attn/q_proj/MatMul` → `model.layers.2.self_attn.q_proj`.
 * A name without a leading scope (`Constant_53`, `node_MatMul_0`) belongs to the root module "".
 * This format is a public contract: mapping rules and saved results use it.
 */
export function modulePathFromNodeName(nodeName: string): string {
  if (!nodeName.startsWith('/')) return '';
  const parts = nodeName.split('/').filter((part) => part.length > 0);
  return parts.slice(0, -1).join('.');
}

/** A node's name scope (`/model/layers.2/self_attn_1`), or '' for an unscoped name. */
function scopeOf(nodeName: string): string {
  return nodeName.startsWith('/') ? nodeName.slice(0, nodeName.lastIndexOf('/')) : '';
}

/**
 * Module path and call number of every scope in a graph. The exporter names a module's second
 * call `<name>_1` (`/model/layers.2/self_attn_1/...` for the decode step of a cached model), so a
 * segment `X_N` whose sibling `X` also exists in the graph is call N + 1 of `X`. A segment such as
 * `linear_1` without a sibling `linear` is an attribute's own name and stays as it is.
 */
export function moduleCalls(
  nodeNames: Iterable<string>,
): Map<string, { module: string; call: number }> {
  const scopes = new Set<string>();
  for (const name of nodeNames) {
    const scope = scopeOf(name);
    const segments = scope.split('/');
    for (let i = 1; i <= segments.length; i++) scopes.add(segments.slice(0, i).join('/'));
  }
  const result = new Map<string, { module: string; call: number }>();
  for (const scope of scopes) {
    const segments = scope.split('/');
    let call = 1;
    const normalized = segments.map((segment, i) => {
      const match = /^(.+)_(\d+)$/.exec(segment);
      if (!match || !scopes.has([...segments.slice(0, i), match[1]].join('/'))) return segment;
      call = Math.max(call, Number(match[2]) + 1);
      return match[1]!;
    });
    result.set(scope, { module: modulePathFromNodeName(`${normalized.join('/')}/op`), call });
  }
  return result;
}

export interface GraphNodeInfo {
  index: number;
  name: string;
  opType: string;
  /** Dotted module path, repeated calls folded onto their module (see moduleCalls). */
  module: string;
  /** 1 for a module's first call, 2 for its second (a decode step after the prefill), ... */
  call: number;
  /** The call's own scope: boundaries and inputs are worked out per call. */
  unit: string;
  /** `${module}|${opType}#${ordinal}` — stable while the module's own op list is unchanged. */
  opKey: string;
}

/** What the engine knows about a value produced by a node, before running anything. */
export interface ProducedValue {
  name: string;
  node: GraphNodeInfo;
  /** Output slot on the producing node. */
  slot: number;
  /** Op key, with `:slot` for outputs after the first. */
  key: string;
  /**
   * True when the value leaves its module: some consumer lies in another module, or it is a
   * graph output. Boundary values form the module-level series.
   */
  boundary: boolean;
  /**
   * True when the value is one of its module's inputs passed on unchanged but for its type or
   * layout: a chain of casts and layout ops (Unsqueeze, Reshape, Transpose, ...) from a value the
   * module reads. The TorchScript exporter hands such values on where tracing aliased them
   * (`x.to(torch.float32)` of a float32 `x` is `x`, so a residual reads the norm's Cast) or where
   * it merged equal ops of two layers (the second layer reads the first's `cos.unsqueeze(1)`); the
   * dynamo exporter does not. It is not an output of the module's own computation, and it does
   * not take a place among the module's outputs.
   */
  passThrough: boolean;
}

/** Ops that hand their first input's values on, at most rounded to another type or rearranged. */
const PASS_THROUGH_OPS = new Set([
  'Cast',
  'CastLike',
  'Identity',
  'Unsqueeze',
  'Squeeze',
  'Reshape',
  'Flatten',
  'Transpose',
  'Expand',
]);

export interface GraphStructure {
  /** Produced values in execution (node) order; Constant nodes are left out. */
  values: ProducedValue[];
  /** Per unit (one call of a module), the values it reads that other units produced, in first-use order. */
  moduleInputs: Map<string, string[]>;
}

export function analyzeGraph(graph: onnx.IGraphProto): GraphStructure {
  const nodes = graph.node ?? [];
  const producerModule = new Map<string, string>();
  const infos: GraphNodeInfo[] = [];
  const ordinals = new Map<string, number>();
  const names = nodes.map((node, index) => node.name || `${node.opType}_${index}`);
  const calls = moduleCalls(names);
  nodes.forEach((node, index) => {
    const name = names[index]!;
    const unit = scopeOf(name);
    const { module, call } = calls.get(unit) ?? { module: '', call: 1 };
    const opType = node.opType ?? '';
    const ordinalKey = `${module}|${opType}`;
    const ordinal = ordinals.get(ordinalKey) ?? 0;
    ordinals.set(ordinalKey, ordinal + 1);
    infos.push({ index, name, opType, module, call, unit, opKey: `${ordinalKey}#${ordinal}` });
    for (const output of node.output ?? []) if (output) producerModule.set(output, unit);
  });

  const graphInputs = new Set((graph.input ?? []).map((i) => i.name ?? ''));
  const isGraphInput = (name: string) => graphInputs.has(name);
  const leavesModule = new Set<string>((graph.output ?? []).map((o) => o.name ?? ''));
  const moduleInputs = new Map<string, string[]>();
  nodes.forEach((node, index) => {
    const module = infos[index]!.unit;
    for (const input of node.input ?? []) {
      const from = producerModule.get(input);
      if (from === undefined || from === module) continue;
      leavesModule.add(input);
      const list = moduleInputs.get(module) ?? [];
      if (!list.includes(input)) list.push(input);
      moduleInputs.set(module, list);
    }
  });

  // Values that are a unit's input, handed on through type casts only.
  const passThrough = new Set<string>();
  nodes.forEach((node, index) => {
    const info = infos[index]!;
    const source = node.input?.[0];
    if (!PASS_THROUGH_OPS.has(info.opType) || !source || !node.output?.[0]) return;
    const from = producerModule.get(source);
    if (from === info.unit ? passThrough.has(source) : from !== undefined || isGraphInput(source)) {
      passThrough.add(node.output[0]);
    }
  });

  const values: ProducedValue[] = [];
  nodes.forEach((node, index) => {
    const info = infos[index]!;
    if (info.opType === 'Constant') return;
    (node.output ?? []).forEach((name, slot) => {
      if (!name) return;
      values.push({
        name,
        node: info,
        slot,
        key: slot === 0 ? info.opKey : `${info.opKey}:${slot}`,
        boundary: leavesModule.has(name),
        passThrough: passThrough.has(name),
      });
    });
  });
  return { values, moduleInputs };
}

/**
 * A warning when most of a graph's ops belong to no module: the exporter kept no scopes the
 * engine reads, so the series collapses onto the root and a suspect cannot name a module.
 */
export function unscopedShare(values: readonly ProducedValue[]): string | undefined {
  if (values.length < 20) return undefined;
  const unscoped = values.filter((v) => v.node.module === '').length;
  if (unscoped / values.length < 0.5) return undefined;
  return `${unscoped} of ${values.length} values belong to no module: the model's node names and metadata carry no module scopes the engine reads (TorchScript-style '/model/layers.0/...' names, or the dynamo exporter's pkg.torch.onnx.name_scopes), so modules cannot be told apart and suspects name the root`;
}
