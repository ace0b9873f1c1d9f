import * as ort from 'onnxruntime-node';
import { EkkaError, describeCause } from '../errors';
import { onnx } from 'onnx-proto';
import { analyzeGraph, type GraphStructure } from '../onnx/graphStructure';
import {
  convertToLowPrecision,
  FUNCTION_OPS,
  opWithoutKernel,
  type LowPrecision,
} from '../onnx/lowPrecision';
import {
  exposeIntermediates,
  inlineExternalData,
  loadExternalData,
  readOnnxModel,
  type OnnxModelFile,
  WIDENED_SUFFIX,
} from '../onnx/modelFile';
import { isFloatDType, type DType } from '../tensors/dtypes';
import type { ActivationRecord, TensorData } from './activationRecord';
import type { InputTensor } from './inputFile';

export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all';
export type ExecutionProviderChoice = 'auto' | 'cpu' | 'cuda';

export type Precision = 'float32' | LowPrecision;

export interface OnnxRunOptions {
  model: string;
  optimization: GraphOptimization;
  executionProvider: ExecutionProviderChoice;
  /** Store activations at this precision (the model is converted on load); default: as exported. */
  precision?: Precision;
}

/** Attempts at finding the ops without a low-precision kernel: one per op type at most. */
const MAX_KERNEL_ATTEMPTS = 64;

/** Per `${provider}/${precision}`: op types found to have no kernel, for the next model. */
const opsWithoutKernel = new Map<string, Set<string>>();

export interface OnnxRunInfo {
  model: string;
  /** The provider that actually ran. */
  executionProvider: 'cpu' | 'cuda';
  optimization: GraphOptimization;
  precision: Precision;
  /** Op types run in float32 between Casts because the provider has no low-precision kernel. */
  keptFloat32?: string[];
  /** Why a requested provider was not used, when it was not. */
  fallbackReason?: string;
  capturedValues: number;
}

function cudaBundled(): boolean {
  return ort.listSupportedBackends().some((b) => b.name === 'cuda' && b.bundled);
}

/**
 * Runs an ONNX model with every intermediate value exposed and yields them as activation records
 * in execution order. Owns one InferenceSession; call `release()` when done.
 */
export class OnnxCapture {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly info: OnnxRunInfo,
    readonly structure: GraphStructure,
  ) {}

  static async open(options: OnnxRunOptions): Promise<OnnxCapture> {
    const file = await readOnnxModel(options.model);
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: options.optimization,
      externalData: await loadExternalData(file),
    };
    const precision = options.precision ?? 'float32';
    const build = (provider: 'cpu' | 'cuda') =>
      precision === 'float32'
        ? exposedSession(file.model, { ...sessionOptions, executionProviders: [provider] })
        : lowPrecisionSession(file, precision, provider, {
            ...sessionOptions,
            executionProviders: [provider],
          });

    let provider: 'cpu' | 'cuda' = 'cpu';
    let fallbackReason: string | undefined;
    let built: BuiltSession | undefined;
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
      capturedValues: built.structure.values.length,
    };
    if (built.keptFloat32) info.keptFloat32 = built.keptFloat32;
    if (fallbackReason) info.fallbackReason = fallbackReason;
    return new OnnxCapture(built.session, info, built.structure);
  }

  /** Checks the inputs against the model's declared inputs and builds the feeds. */
  private feeds(inputs: readonly InputTensor[]): Record<string, ort.Tensor> {
    const model = this.info.model;
    const given = new Map(inputs.map((input) => [input.name, input]));
    const feeds: Record<string, ort.Tensor> = {};
    for (const meta of this.session.inputMetadata) {
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
      if (!meta.isTensor) continue;
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
      feeds[meta.name] = toOrtTensor(input);
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

  /** Runs once and yields every captured value in execution order, releasing each as it goes. */
  async *run(inputs: readonly InputTensor[]): AsyncGenerator<ActivationRecord> {
    const feeds = this.feeds(inputs);
    let results: Record<string, ort.OnnxValue | undefined>;
    try {
      results = { ...(await this.session.run(feeds)) };
    } catch (cause) {
      throw new EkkaError('runtime', `the run failed: ${describeCause(cause)}`, this.info.model);
    }
    const boundaryOrdinals = new Map<string, number>();
    let seq = 0;
    for (const value of this.structure.values) {
      const widened = `${value.name}${WIDENED_SUFFIX}`;
      const tensor = results[value.name] ?? results[widened];
      if (!tensor) continue;
      // A bfloat16 value arrives as its exact float32 copy; its dtype stays bfloat16.
      const dtype = (results[value.name] ? tensor.type : 'bfloat16') as DType;
      delete results[value.name];
      delete results[widened];
      const record: ActivationRecord = {
        seq: seq++,
        name: value.name,
        nodeName: value.node.name,
        op: value.node.opType,
        module: value.node.module,
        call: value.node.call,
        opKey: value.key,
        dtype,
        shape: tensor.dims.map(Number),
        data: tensor.data as TensorData,
      };
      if (value.boundary && dtype !== 'string') {
        // Float outputs and integer/bool outputs (positions, indices, masks) count separately, so
        // that a change in one kind never shifts the other's keys.
        const kind = isFloatDType(dtype) ? 'out' : 'int';
        const counter = `${record.module}@${kind}`;
        const ordinal = boundaryOrdinals.get(counter) ?? 0;
        boundaryOrdinals.set(counter, ordinal + 1);
        record.boundaryKey = `${counter}${ordinal}`;
        record.moduleInputs = this.structure.moduleInputs.get(value.node.unit) ?? [];
      }
      yield record;
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

interface BuiltSession {
  session: ort.InferenceSession;
  structure: GraphStructure;
  keptFloat32?: string[];
}

/**
 * A session returning the values of `structure` (by default, every value of `model`). A converted
 * model passes the structure of its float32 original: the conversion keeps every original value's
 * name, so keys and module boundaries stay those of the original, whatever Casts it inserted.
 */
async function exposedSession(
  model: onnx.ModelProto,
  options: ort.InferenceSession.SessionOptions,
  structure: GraphStructure = analyzeGraph(model.graph!),
): Promise<BuiltSession> {
  const names = new Set(structure.values.map((v) => v.name));
  const session = await ort.InferenceSession.create(exposeIntermediates(model, names), options);
  return { session, structure };
}

/**
 * Converts the model to `precision` and finds, by trying, which op types the provider has no
 * kernel for at that precision: each such op is kept in float32 between Casts and the session is
 * built again. Value types come from onnxruntime's inference on the float32 graph.
 */
async function lowPrecisionSession(
  file: OnnxModelFile,
  precision: LowPrecision,
  provider: 'cpu' | 'cuda',
  options: ort.InferenceSession.SessionOptions,
): Promise<BuiltSession> {
  const typing = await ort.InferenceSession.create(
    exposeIntermediates(onnx.ModelProto.decode(file.bytes)),
    { ...options, graphOptimizationLevel: 'disabled' },
  );
  // The conversion needs the weights' values: bring external ones into the model.
  const external = options.externalData as { path: string; data: Uint8Array }[] | undefined;
  const inlineOptions = { ...options, externalData: [] };
  const decode = () => {
    const model = onnx.ModelProto.decode(file.bytes);
    if (external?.length) inlineExternalData(model, external, file.path);
    return model;
  };
  const structure = analyzeGraph(file.model.graph!);
  const valueTypes = new Map<string, string>();
  for (const meta of [...typing.inputMetadata, ...typing.outputMetadata]) {
    if (meta.isTensor) valueTypes.set(meta.name, meta.type);
  }
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  for (const tensor of file.model.graph?.initializer ?? []) {
    if (tensor.dataType === FLOAT) valueTypes.set(tensor.name ?? '', 'float32');
  }
  // Constant nodes are not exposed, so their types come from their tensors.
  for (const node of file.model.graph?.node ?? []) {
    const value =
      node.opType === 'Constant' ? node.attribute?.find((a) => a.name === 'value')?.t : undefined;
    if (value?.dataType === FLOAT && node.output?.[0]) valueTypes.set(node.output[0], 'float32');
  }
  await typing.release();

  const graphOps = new Set((file.model.graph?.node ?? []).map((n) => n.opType ?? ''));
  const cacheKey = `${provider}/${precision}`;
  // Kernel coverage is a property of the provider and the type, not of the model: start from what
  // earlier models taught this process.
  const keep = new Set(opsWithoutKernel.get(cacheKey) ?? []);
  for (let attempt = 0; attempt < MAX_KERNEL_ATTEMPTS; attempt++) {
    const model = convertToLowPrecision(decode(), precision, valueTypes, keep);
    try {
      const built = await exposedSession(model, inlineOptions, structure);
      opsWithoutKernel.set(cacheKey, keep);
      return { ...built, keptFloat32: [...keep].filter((op) => graphOps.has(op)).sort() };
    } catch (cause) {
      const op = opWithoutKernel(describeCause(cause));
      const grown = keep.size;
      if (op && graphOps.has(op)) keep.add(op);
      else if (op) for (const fn of FUNCTION_OPS) if (graphOps.has(fn)) keep.add(fn);
      if (keep.size === grown) {
        const why = /Unsupported data type: 16\b/.test(describeCause(cause))
          ? 'onnxruntime-node cannot hand bfloat16 tensors to JavaScript; use "float16"'
          : describeCause(cause);
        throw new EkkaError('model', `cannot run the model at ${precision}: ${why}`, file.path);
      }
    }
  }
  throw new EkkaError(
    'model',
    `cannot run the model at ${precision}: too many ops without a kernel`,
    file.path,
  );
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
