import * as ort from 'onnxruntime-node';
import type { onnx } from 'onnx-proto';
import { EkkaError, describeCause } from '../errors';
import { analyzeGraph, type GraphStructure, type ProducedValue } from '../onnx/graphStructure';
import type { LowPrecision } from '../onnx/lowPrecision';
import { bfloat16Values, loadExternalData, readOnnxModel, WIDENED_SUFFIX } from '../onnx/modelFile';
import { partitionGraph } from '../onnx/partition';
import { WeightStore } from '../onnx/weightStore';
import { isFloatDType, ORT_TYPE_NAME, type DType } from '../tensors/dtypes';
import type { ActivationRecord, TensorData } from './activationRecord';
import type { InputTensor } from './inputFile';
import { SegmentPlan, type CaptureDetail } from './segments';

export type { CaptureDetail };
import { exposedSession, lowPrecisionSession } from './sessions';

export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all';
export type ExecutionProviderChoice = 'auto' | 'cpu' | 'cuda';
export type Precision = 'float32' | LowPrecision;

/**
 * partitioned: the graph is cut at layer boundaries and run segment by segment, each segment's
 * activations compared and released before the next (memory bounded by one segment); optimizations
 * that would fuse across a layer boundary cannot apply. whole-graph: one session over the whole
 * graph with every value exposed, all held until the run ends.
 */
export type CaptureMode = 'partitioned' | 'whole-graph';

export interface OnnxRunOptions {
  model: string;
  optimization: GraphOptimization;
  executionProvider: ExecutionProviderChoice;
  /** Store activations at this precision (the model is converted on load); default: as exported. */
  precision?: Precision;
  /** Default partitioned; whole-graph where the graph has fewer than two layers. */
  capture?: CaptureMode;
}

export interface OnnxRunInfo {
  /** Who ran it: onnxruntime (absent in older results), or a capture (pytorch, a dump). */
  framework?: 'onnxruntime' | 'pytorch' | 'dump';
  model: string;
  /** The provider that actually ran. */
  executionProvider: 'cpu' | 'cuda';
  optimization: GraphOptimization;
  precision: Precision;
  /** The capture mode that ran, and in how many segments. */
  capture: CaptureMode;
  segments: number;
  /** Op types run in float32 between Casts because the provider has no low-precision kernel. */
  keptFloat32?: string[];
  /** Why a requested provider was not used, when it was not. */
  fallbackReason?: string;
  capturedValues: number;
}

/** A model input as the graph declares it. */
interface DeclaredInput {
  name: string;
  type: string;
  shape: (number | string)[];
}

function declaredInputs(graph: onnx.IGraphProto): DeclaredInput[] {
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  return (graph.input ?? [])
    .filter((input) => !initializers.has(input.name) && input.type?.tensorType)
    .map((input) => ({
      name: input.name ?? '',
      type: ORT_TYPE_NAME[input.type!.tensorType!.elemType ?? 0] ?? 'unknown',
      shape: (input.type!.tensorType!.shape?.dim ?? []).map((d) =>
        d.dimValue !== undefined && d.dimValue !== null && Number(d.dimValue) > 0
          ? Number(d.dimValue)
          : (d.dimParam ?? '?'),
      ),
    }));
}

function cudaBundled(): boolean {
  return ort.listSupportedBackends().some((b) => b.name === 'cuda' && b.bundled);
}

type RunPlan =
  | { kind: 'whole'; session: ort.InferenceSession }
  | { kind: 'segments'; plan: SegmentPlan };

/** Numbering that runs across the segments of one run. */
interface RecordCounters {
  seq: number;
  boundaryOrdinals: Map<string, number>;
}

/**
 * Runs an ONNX model with its intermediate values exposed and yields them as activation records
 * in execution order, one batch per segment. Call `release()` when done.
 */
export class OnnxCapture {
  /** Inputs and numbering of every segment of the last `modules` run, for rerunSegment. */
  private replay?: {
    types: Map<string, string>;
    inputs: Record<string, ort.Tensor>[];
    counters: RecordCounters[];
  };

  private constructor(
    private readonly plan: RunPlan,
    readonly info: OnnxRunInfo,
    readonly structure: GraphStructure,
    private readonly inputs: DeclaredInput[],
  ) {}

  static async open(options: OnnxRunOptions): Promise<OnnxCapture> {
    const file = await readOnnxModel(options.model);
    const structure = analyzeGraph(file.model.graph!);
    const inputs = declaredInputs(file.model.graph!);
    const precision = options.precision ?? 'float32';
    // bfloat16 values cannot cross between segments through onnxruntime-node: a bfloat16 run, or a
    // model holding bfloat16 values already, is captured whole.
    const holdsBfloat16 = bfloat16Values(file.model.graph!).size > 0;
    const wanted: CaptureMode = holdsBfloat16
      ? 'whole-graph'
      : precision === 'bfloat16'
        ? 'whole-graph'
        : (options.capture ?? 'partitioned');
    // Errors only: a session exposing part of a graph makes onnxruntime warn about every constant
    // it no longer needs.
    const base = { graphOptimizationLevel: options.optimization, logSeverityLevel: 3 as const };
    // Partition and detach the weights once, whatever provider ends up running.
    const float32Segments =
      precision === 'float32' && wanted === 'partitioned' ? partitionGraph(file.model.graph!) : [];
    const float32Weights = float32Segments.length >= 2 ? WeightStore.detach(file) : undefined;

    const build = async (
      provider: 'cpu' | 'cuda',
    ): Promise<{ plan: RunPlan; keptFloat32?: string[] }> => {
      const withProvider = { ...base, executionProviders: [provider] };
      if (precision !== 'float32') {
        const options = { ...withProvider, externalData: await loadExternalData(file) };
        const built = await lowPrecisionSession(file, precision, provider, options);
        const segments = wanted === 'partitioned' ? partitionGraph(built.model.graph!) : [];
        if (segments.length < 2)
          return {
            plan: { kind: 'whole', session: built.session },
            keptFloat32: built.keptFloat32,
          };
        await built.session.release();
        const weights = WeightStore.inMemoryOf(built.model, file.path);
        const plan = new SegmentPlan(built.model, segments, weights, structure, withProvider);
        return { plan: { kind: 'segments', plan }, keptFloat32: built.keptFloat32 };
      }
      if (!float32Weights) {
        const options = { ...withProvider, externalData: await loadExternalData(file) };
        return {
          plan: {
            kind: 'whole',
            session: (await exposedSession(file.model, options, structure)).session,
          },
        };
      }
      const plan = new SegmentPlan(
        file.model,
        float32Segments,
        float32Weights,
        structure,
        withProvider,
      );
      // Build one segment now, so that a provider that cannot start fails here (and auto falls back
      // to the CPU) rather than in the middle of a run.
      await (
        await plan.session(0, new Map(inputs.map((i) => [i.name, i.type])), 'modules')
      ).release();
      return { plan: { kind: 'segments', plan } };
    };

    let provider: 'cpu' | 'cuda' = 'cpu';
    let fallbackReason: string | undefined;
    let built: Awaited<ReturnType<typeof build>> | undefined;
    if (options.executionProvider !== 'cpu') {
      if (!cudaBundled()) {
        fallbackReason = 'the CUDA execution provider is not installed with onnxruntime-node here';
      } else {
        try {
          built = await build('cuda');
          provider = 'cuda';
        } catch (cause) {
          fallbackReason = `the CUDA execution provider failed to start: ${describeCause(cause)}`;
        }
      }
      if (options.executionProvider === 'cuda' && !built) {
        throw new EkkaError('runtime', `cannot run on CUDA: ${fallbackReason}`, options.model);
      }
    }
    if (!built) {
      try {
        built = await build('cpu');
      } catch (cause) {
        if (cause instanceof EkkaError) throw cause;
        throw new EkkaError(
          'model',
          `onnxruntime cannot load the model: ${describeCause(cause)}`,
          options.model,
        );
      }
    }
    const info: OnnxRunInfo = {
      model: options.model,
      executionProvider: provider,
      optimization: options.optimization,
      precision,
      capture: built.plan.kind === 'segments' ? 'partitioned' : 'whole-graph',
      segments: built.plan.kind === 'segments' ? built.plan.plan.segments.length : 1,
      capturedValues: structure.values.length,
    };
    if (built.keptFloat32) info.keptFloat32 = built.keptFloat32;
    if (fallbackReason) info.fallbackReason = fallbackReason;
    return new OnnxCapture(built.plan, info, structure, inputs);
  }

  /** Values produced so far that a segment after `k` still reads (none for a whole-graph run). */
  liveAfter(k: number): ReadonlySet<string> {
    const live = new Set<string>();
    if (this.plan.kind !== 'segments') return live;
    for (const [name, last] of this.plan.plan.lastUse) if (last > k) live.add(name);
    return live;
  }

  /** The layer each segment runs, in order (one entry for a whole-graph run). */
  get segmentKeys(): string[] {
    return this.plan.kind === 'segments' ? this.plan.plan.segments.map((s) => s.key) : [''];
  }

  /** Checks the inputs against the model's declared inputs and builds the feeds. */
  private feeds(inputs: readonly InputTensor[]): Map<string, ort.Tensor> {
    const model = this.info.model;
    const given = new Map(inputs.map((input) => [input.name, input]));
    const feeds = new Map<string, ort.Tensor>();
    for (const meta of this.inputs) {
      const input = given.get(meta.name);
      if (!input) {
        const names = [...given.keys()].join(', ') || 'none';
        throw new EkkaError(
          'input',
          `model input "${meta.name}" is not given (inputs given: ${names})`,
          model,
        );
      }
      given.delete(meta.name);
      if (meta.type !== input.dtype) {
        throw new EkkaError(
          'input',
          `input "${meta.name}" must be ${meta.type}, got ${input.dtype}`,
          model,
        );
      }
      if (meta.shape.length !== input.shape.length) {
        throw new EkkaError(
          'input',
          `input "${meta.name}" must have rank ${meta.shape.length} [${meta.shape.join(', ')}], got [${input.shape.join(', ')}]`,
          model,
        );
      }
      meta.shape.forEach((dim, axis) => {
        if (typeof dim === 'number' && dim !== input.shape[axis]) {
          throw new EkkaError(
            'input',
            `input "${meta.name}" dimension ${axis} must be ${dim}, got ${input.shape[axis]}`,
            model,
          );
        }
      });
      feeds.set(meta.name, toOrtTensor(input));
    }
    if (given.size > 0) {
      throw new EkkaError(
        'input',
        `the model has no input named ${[...given.keys()].join(', ')}`,
        model,
      );
    }
    return feeds;
  }

  /**
   * Runs once, yielding each segment's records as soon as the segment has run. Tensors carried to
   * later segments are dropped after their last reader. With `modules` detail a partitioned run
   * returns only module outputs and keeps each segment's inputs, so that `rerunSegment` can return
   * every op of a segment later (a whole-graph run always returns every op).
   */
  async *runSegments(
    inputs: readonly InputTensor[],
    detail: CaptureDetail = 'ops',
  ): AsyncGenerator<ActivationRecord[]> {
    const carried = this.feeds(inputs);
    const counters: RecordCounters = { seq: 0, boundaryOrdinals: new Map() };
    if (this.plan.kind === 'whole') {
      const results = await this.runSession(this.plan.session, Object.fromEntries(carried));
      yield this.records(this.structure.values, results, counters, 0);
      return;
    }
    const plan = this.plan.plan;
    const types = new Map(this.inputs.map((i) => [i.name, i.type]));
    this.replay = detail === 'modules' ? { types, inputs: [], counters: [] } : undefined;
    for (let k = 0; k < plan.segments.length; k++) {
      const segment = plan.segments[k]!;
      const feeds = Object.fromEntries(segment.inputs.map((name) => [name, carried.get(name)!]));
      this.replay?.inputs.push(feeds);
      this.replay?.counters.push({
        seq: counters.seq,
        boundaryOrdinals: new Map(counters.boundaryOrdinals),
      });
      const session = await this.segmentSession(k, types, detail);
      let results: Record<string, ort.OnnxValue | undefined>;
      try {
        results = await this.runSession(session, feeds);
      } finally {
        await session.release();
      }
      for (const name of segment.outputs) {
        const tensor = results[name];
        if (!tensor) continue;
        carried.set(name, tensor);
        types.set(name, tensor.type);
      }
      for (const name of [...carried.keys()]) {
        if ((plan.lastUse.get(name) ?? -1) <= k) carried.delete(name);
      }
      yield this.records(plan.values[k]!, results, counters, k);
    }
  }

  /**
   * Every op's output of segment `k` of the last `modules` run, computed again from the inputs that
   * run gave the segment; keys and order are those the full run would have produced.
   */
  async rerunSegment(k: number): Promise<ActivationRecord[]> {
    const inputs = this.segmentInputs(k);
    if (!inputs) {
      throw new EkkaError(
        'runtime',
        `segment ${k} cannot be run again: no partitioned run kept its inputs`,
      );
    }
    return this.runSegmentOn(k, inputs, 'ops');
  }

  /** The inputs the last `modules` run gave segment `k`, by value name. */
  segmentInputs(k: number): Readonly<Record<string, ort.Tensor>> | undefined {
    return this.plan.kind === 'segments' ? this.replay?.inputs[k] : undefined;
  }

  /**
   * Runs segment `k` on the given inputs (another run's, for one) with the numbering of the last
   * `modules` run, so that keys match.
   */
  async runSegmentOn(
    k: number,
    feeds: Readonly<Record<string, ort.Tensor>>,
    detail: CaptureDetail,
  ): Promise<ActivationRecord[]> {
    if (this.plan.kind !== 'segments' || !this.replay?.counters[k]) {
      throw new EkkaError(
        'runtime',
        `segment ${k} cannot be run again: no partitioned run numbered it`,
      );
    }
    const plan = this.plan.plan;
    const session = await this.segmentSession(k, this.replay.types, detail);
    try {
      const results = await this.runSession(session, { ...feeds });
      const snapshot = this.replay.counters[k];
      const counters = { seq: snapshot.seq, boundaryOrdinals: new Map(snapshot.boundaryOrdinals) };
      return this.records(plan.values[k]!, results, counters, k);
    } finally {
      await session.release();
    }
  }

  /** Runs once and yields every captured value in execution order. */
  async *run(inputs: readonly InputTensor[]): AsyncGenerator<ActivationRecord> {
    for await (const records of this.runSegments(inputs)) yield* records;
  }

  /** Builds a segment's session; onnxruntime's refusal becomes an error naming the segment. */
  private async segmentSession(
    k: number,
    types: ReadonlyMap<string, string>,
    detail: CaptureDetail,
  ): Promise<ort.InferenceSession> {
    if (this.plan.kind !== 'segments') throw new EkkaError('runtime', 'not a partitioned run');
    const segment = this.plan.plan.segments[k]!;
    try {
      return await this.plan.plan.session(k, types, detail);
    } catch (cause) {
      if (cause instanceof EkkaError) throw cause;
      throw new EkkaError(
        'model',
        `onnxruntime cannot load segment ${k + 1} (${segment.key || 'before the first layer'}): ${describeCause(cause)}`,
        this.info.model,
      );
    }
  }

  private async runSession(
    session: ort.InferenceSession,
    feeds: Record<string, ort.Tensor>,
  ): Promise<Record<string, ort.OnnxValue | undefined>> {
    try {
      return { ...(await session.run(feeds)) };
    } catch (cause) {
      throw new EkkaError('runtime', `the run failed: ${describeCause(cause)}`, this.info.model);
    }
  }

  private records(
    values: readonly ProducedValue[],
    results: Record<string, ort.OnnxValue | undefined>,
    counters: RecordCounters,
    segment: number,
  ): ActivationRecord[] {
    const records: ActivationRecord[] = [];
    for (const value of values) {
      const widened = `${value.name}${WIDENED_SUFFIX}`;
      const tensor = results[value.name] ?? results[widened];
      // seq counts every value, returned or not: a modules-only run and a rerun agree on it.
      const seq = counters.seq++;
      if (!tensor) continue;
      // A bfloat16 value arrives as its exact float32 copy; its dtype stays bfloat16.
      const dtype = (results[value.name] ? tensor.type : 'bfloat16') as DType;
      const record: ActivationRecord = {
        seq,
        name: value.name,
        nodeName: value.node.name,
        op: value.node.opType,
        module: value.node.module,
        call: value.node.call,
        segment,
        opKey: value.key,
        dtype,
        shape: tensor.dims.map(Number),
        data: tensor.data as TensorData,
      };
      if (value.boundary && dtype !== 'string') {
        // Float outputs, integer/bool outputs (positions, indices, masks) and inputs handed on
        // through casts count separately, so that a change in one kind never shifts the others'.
        const kind = value.passThrough ? 'pass' : isFloatDType(dtype) ? 'out' : 'int';
        const counter = `${record.module}@${kind}`;
        const ordinal = counters.boundaryOrdinals.get(counter) ?? 0;
        counters.boundaryOrdinals.set(counter, ordinal + 1);
        record.boundaryKey = `${counter}${ordinal}`;
        record.moduleInputs = this.structure.moduleInputs.get(value.node.unit) ?? [];
      }
      records.push(record);
    }
    return records;
  }

  async release(): Promise<void> {
    if (this.plan.kind === 'whole') await this.plan.session.release();
  }
}

function toOrtTensor(input: InputTensor): ort.Tensor {
  switch (input.dtype) {
    case 'int64':
      return new ort.Tensor(
        'int64',
        BigInt64Array.from(input.data, (v) => BigInt(v)),
        input.shape,
      );
    case 'int32':
      return new ort.Tensor('int32', Int32Array.from(input.data), input.shape);
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from(input.data), input.shape);
    case 'bool':
      return new ort.Tensor(
        'bool',
        Uint8Array.from(input.data, (v) => (v ? 1 : 0)),
        input.shape,
      );
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from(input.data), input.shape);
  }
}
