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

export interface GraphNodeInfo {
  index: number;
  name: string;
  opType: string;
  module: string;
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
}

export interface GraphStructure {
  /** Produced values in execution (node) order; Constant nodes are left out. */
  values: ProducedValue[];
  /** Per module, the values its nodes read that other modules' nodes produced, in first-use order. */
  moduleInputs: Map<string, string[]>;
}

export function analyzeGraph(graph: onnx.IGraphProto): GraphStructure {
  const nodes = graph.node ?? [];
  const producerModule = new Map<string, string>();
  const infos: GraphNodeInfo[] = [];
  const ordinals = new Map<string, number>();
  nodes.forEach((node, index) => {
    const name = node.name || `${node.opType}_${index}`;
    const module = modulePathFromNodeName(name);
    const opType = node.opType ?? '';
    const ordinalKey = `${module}|${opType}`;
    const ordinal = ordinals.get(ordinalKey) ?? 0;
    ordinals.set(ordinalKey, ordinal + 1);
    infos.push({ index, name, opType, module, opKey: `${ordinalKey}#${ordinal}` });
    for (const output of node.output ?? []) if (output) producerModule.set(output, module);
  });

  const leavesModule = new Set<string>((graph.output ?? []).map((o) => o.name ?? ''));
  const moduleInputs = new Map<string, string[]>();
  nodes.forEach((node, index) => {
    const module = infos[index]!.module;
    for (const input of node.input ?? []) {
      const from = producerModule.get(input);
      if (from === undefined || from === module) continue;
      leavesModule.add(input);
      const list = moduleInputs.get(module) ?? [];
      if (!list.includes(input)) list.push(input);
      moduleInputs.set(module, list);
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
      });
    });
  });
  return { values, moduleInputs };
}
