import * as ort from 'onnxruntime-node';
import * as path from 'node:path';
import { EkkaError, describeCause } from '../errors';
import { analyzeGraph, type GraphStructure } from '../onnx/graphStructure';
import { exposeIntermediates, readOnnxModel } from '../onnx/modelFile';
import { isFloatDType, type DType } from '../tensors/dtypes';
import type { ActivationRecord, TensorData } from './activationRecord';
import type { InputTensor } from './inputFile';

export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all';
export type ExecutionProviderChoice = 'auto' | 'cpu' | 'cuda';

export interface OnnxRunOptions {
  model: string;
  optimization: GraphOptimization;
  executionProvider: ExecutionProviderChoice;
}

export interface OnnxRunInfo {
  model: string;
  /** The provider that actually ran. */
  executionProvider: 'cpu' | 'cuda';
  optimization: GraphOptimization;
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
    const structure = analyzeGraph(file.model.graph!);
    const bytes = exposeIntermediates(file.model);
    const folder = path.dirname(path.resolve(options.model));
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: options.optimization,
      externalData: file.externalDataFiles.map((location) => ({
        path: location,
        data: path.resolve(folder, location),
      })),
    };
    const create = (provider: 'cpu' | 'cuda') =>
      ort.InferenceSession.create(bytes, { ...sessionOptions, executionProviders: [provider] });

    let provider: 'cpu' | 'cuda' = 'cpu';
    let fallbackReason: string | undefined;
    let session: ort.InferenceSession | undefined;
    if (options.executionProvider !== 'cpu') {
      if (!cudaBundled()) {
        fallbackReason = 'the CUDA execution provider is not installed with onnxruntime-node here';
      } else {
        try {
          session = await create('cuda');
          provider = 'cuda';
        } catch (cause) {
          fallbackReason = `the CUDA execution provider failed to start: ${describeCause(cause)}`;
        }
      }
      if (options.executionProvider === 'cuda' && !session) {
        throw new EkkaError('runtime', `cannot run on CUDA: ${fallbackReason}`, options.model);
      }
    }
    if (!session) {
      try {
        session = await create('cpu');
      } catch (cause) {
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
      capturedValues: structure.values.length,
    };
    if (fallbackReason) info.fallbackReason = fallbackReason;
    return new OnnxCapture(session, info, structure);
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
      const tensor = results[value.name];
      if (!tensor) continue;
      delete results[value.name];
      const dtype = tensor.type as DType;
      const record: ActivationRecord = {
        seq: seq++,
        name: value.name,
        nodeName: value.node.name,
        op: value.node.opType,
        module: value.node.module,
        opKey: value.key,
        dtype,
        shape: tensor.dims.map(Number),
        data: tensor.data as TensorData,
      };
      if (value.boundary && isFloatDType(dtype)) {
        const ordinal = boundaryOrdinals.get(record.module) ?? 0;
        boundaryOrdinals.set(record.module, ordinal + 1);
        record.boundaryKey = `${record.module}@out${ordinal}`;
        record.moduleInputs = this.structure.moduleInputs.get(record.module) ?? [];
      }
      yield record;
    }
  }

  async release(): Promise<void> {
    await this.session.release();
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
