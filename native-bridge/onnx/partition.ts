import type { onnx } from 'onnx-proto';

/** A contiguous run of a graph's nodes, runnable as its own model. */
export interface GraphSegment {
  /** The layer this segment runs (`/model/layers.2`), or `''` for nodes before any layer. */
  key: string;
  /** Node indices into the whole graph, in order. */
  nodes: number[];
  /** Values the segment reads that an earlier segment produced or the graph takes as input. */
  inputs: string[];
  /** Values the segment produces that a later segment reads or the graph returns. */
  outputs: string[];
  /** Initializers the segment's nodes read. */
  initializers: string[];
}

/**
 * The layer a node belongs to: its scope up to the first segment that indexes a module list
 * (`layers.2`, `h.11`, or a bare `3`), or undefined outside any layer. A repeated call's suffix
 * (`layers.0_1`, the decode step's call of layer 0) is dropped: it is the same layer.
 */
export function layerOf(nodeName: string): string | undefined {
  if (!nodeName.startsWith('/')) return undefined;
  const parts = nodeName.split('/').slice(1, -1);
  const at = parts.findIndex((part) => /(^|\.)\d+(_\d+)?$/.test(part));
  if (at < 0) return undefined;
  const layer = parts.slice(0, at + 1).map((part) => part.replace(/_\d+$/, ''));
  return `/${layer.join('/')}`;
}

/**
 * The names a node reads: its inputs, and the outer-scope names its subgraphs (If, Loop, Scan
 * bodies) read without producing them.
 */
export function nodeReads(node: onnx.INodeProto): string[] {
  const reads = [...(node.input ?? [])];
  for (const attribute of node.attribute ?? []) {
    for (const graph of [attribute.g, ...(attribute.graphs ?? [])]) {
      if (graph) reads.push(...freeNames(graph));
    }
  }
  return reads;
}

function freeNames(graph: onnx.IGraphProto): string[] {
  const local = new Set<string>([
    ...(graph.input ?? []).map((i) => i.name ?? ''),
    ...(graph.initializer ?? []).map((t) => t.name ?? ''),
  ]);
  const free: string[] = [];
  for (const node of graph.node ?? []) {
    for (const name of nodeReads(node)) if (name && !local.has(name)) free.push(name);
    for (const output of node.output ?? []) local.add(output);
  }
  return free;
}

/**
 * Splits a graph at layer boundaries into segments that run one after the other: a new segment
 * starts wherever the node order enters another layer; nodes outside layers stay with the
 * segment they follow (the embedding and masks go with the first layer, the final norm and head
 * with the last). The node list of an ONNX graph is topologically sorted, so every segment reads
 * only what earlier segments (or the graph's inputs and initializers) produced.
 */
export function partitionGraph(graph: onnx.IGraphProto): GraphSegment[] {
  const nodes = graph.node ?? [];
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const segments: GraphSegment[] = [];
  let current: GraphSegment | undefined;
  nodes.forEach((node, index) => {
    const layer = layerOf(node.name ?? '');
    if (!current || (layer !== undefined && current.key !== '' && layer !== current.key)) {
      current = { key: layer ?? '', nodes: [], inputs: [], outputs: [], initializers: [] };
      segments.push(current);
    } else if (layer !== undefined && current.key === '') {
      current.key = layer;
    }
    current.nodes.push(index);
  });

  // A Constant read by a later segment is copied into it rather than carried: kernels take other
  // paths for a runtime input than for a constant (float16 Pow(x, 2), for one).
  const constantNode = new Map<string, number>();
  nodes.forEach((node, index) => {
    if (node.opType === 'Constant' && node.output?.[0]) constantNode.set(node.output[0], index);
  });
  const producedIn = new Map<string, number>();
  segments.forEach((segment, s) => {
    for (const index of segment.nodes) {
      for (const output of nodes[index]!.output ?? []) if (output) producedIn.set(output, s);
    }
  });
  const lastReadIn = new Map<string, number>();
  segments.forEach((segment, s) => {
    const inputs = new Set<string>();
    const used = new Set<string>();
    const copied = new Set<number>();
    for (const index of segment.nodes) {
      for (const input of nodeReads(nodes[index]!)) {
        if (!input) continue;
        if (initializers.has(input)) used.add(input);
        else if ((producedIn.get(input) ?? -1) === s) continue;
        else if (constantNode.has(input)) copied.add(constantNode.get(input)!);
        else inputs.add(input);
      }
    }
    segment.nodes = [...[...copied].sort((a, b) => a - b), ...segment.nodes];
    segment.inputs = [...inputs];
    segment.initializers = [...used];
    for (const input of inputs) lastReadIn.set(input, s);
  });
  segments.forEach((segment, s) => {
    segment.outputs = segment.nodes.flatMap((index) =>
      (nodes[index]!.output ?? []).filter(
        (name) =>
          name &&
          producedIn.get(name) === s &&
          (graphOutputs.has(name) || (lastReadIn.get(name) ?? -1) > s),
      ),
    );
  });
  return segments;
}

/** For every carried value, the last segment that reads it (or returns it): when it can go. */
export function lastUse(segments: readonly GraphSegment[]): Map<string, number> {
  const last = new Map<string, number>();
  segments.forEach((segment, s) => segment.inputs.forEach((name) => last.set(name, s)));
  return last;
}
