import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { EkkaError } from '../errors';
import type { GraphStructure, ProducedValue } from '../onnx/graphStructure';
import { exposeIntermediates } from '../onnx/modelFile';
import { lastUse, type GraphSegment } from '../onnx/partition';
import type { WeightStore } from '../onnx/weightStore';
import { ONNX_ELEM_TYPE } from '../tensors/dtypes';

/** What a segment run returns: module outputs only, or every op's output. */
export type CaptureDetail = 'modules' | 'ops';

/**
 * A model split into segments that run one after the other. Each segment's session is built when
 * it runs — from its nodes, the weights it reads (loaded from the weight store now) and typed
 * inputs — and released right after, so one segment's weights and activations are resident at a time.
 */
export class SegmentPlan {
  /** Per segment, the captured values it produces, in execution order. */
  readonly values: ProducedValue[][];
  /** For every carried value, the last segment that reads it. */
  readonly lastUse: Map<string, number>;

  constructor(
    private readonly model: onnx.ModelProto,
    readonly segments: readonly GraphSegment[],
    private readonly weights: WeightStore,
    structure: GraphStructure,
    private readonly options: ort.InferenceSession.SessionOptions,
  ) {
    const segmentOfNode = new Map<number, number>();
    segments.forEach((segment, s) => segment.nodes.forEach((index) => segmentOfNode.set(index, s)));
    const segmentOfValue = new Map<string, number>();
    (model.graph?.node ?? []).forEach((node, index) => {
      for (const output of node.output ?? []) segmentOfValue.set(output, segmentOfNode.get(index)!);
    });
    this.values = segments.map(() => []);
    for (const value of structure.values) {
      const s = segmentOfValue.get(value.name);
      if (s !== undefined) this.values[s]!.push(value);
    }
    this.lastUse = lastUse(segments);
  }

  /**
   * Builds segment `k`'s session; `types` gives the onnxruntime type of every value it reads.
   * `modules` exposes only the values that leave their module (the series), `ops` every value.
   */
  async session(
    k: number,
    types: ReadonlyMap<string, string>,
    detail: CaptureDetail,
  ): Promise<ort.InferenceSession> {
    const segment = this.segments[k]!;
    const graph = this.model.graph!;
    const input = segment.inputs.map((name) => {
      const elemType = ONNX_ELEM_TYPE[types.get(name) ?? ''];
      if (elemType === undefined) {
        throw new EkkaError(
          'runtime',
          `segment ${segment.key || k}: the type of input "${name}" is unknown`,
        );
      }
      return { name, type: { tensorType: { elemType } } };
    });
    const model = onnx.ModelProto.create({
      irVersion: Number(this.model.irVersion),
      opsetImport: this.model.opsetImport,
      producerName: this.model.producerName,
      functions: this.model.functions ?? [],
      graph: {
        name: `${graph.name ?? 'graph'} ${segment.key}`,
        node: segment.nodes.map((index) => graph.node![index]!),
        initializer: await this.weights.load(segment.initializers),
        sparseInitializer: graph.sparseInitializer ?? [],
        input,
        output: segment.outputs.map((name) => ({ name })),
      },
    });
    const exposed = new Set(
      this.values[k]!.filter((v) => detail === 'ops' || v.boundary).map((v) => v.name),
    );
    return ort.InferenceSession.create(exposeIntermediates(model, exposed), this.options);
  }
}
