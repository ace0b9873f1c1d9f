import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import { EkkaError, describeCause } from '../errors';
import { analyzeGraph, type GraphStructure } from '../onnx/graphStructure';
import {
  convertToLowPrecision,
  FUNCTION_OPS,
  opWithoutKernel,
  type LowPrecision,
} from '../onnx/lowPrecision';
import { exposeIntermediates, inlineExternalData, type OnnxModelFile } from '../onnx/modelFile';

/** Attempts at finding the ops without a low-precision kernel: one per op type at most. */
const MAX_KERNEL_ATTEMPTS = 64;

/** Per `${provider}/${precision}`: op types found to have no kernel, for the next model. */
const opsWithoutKernel = new Map<string, Set<string>>();

export interface BuiltSession {
  session: ort.InferenceSession;
  structure: GraphStructure;
  /** The model the session was built from (converted, for a low-precision run). */
  model: onnx.ModelProto;
  keptFloat32?: string[];
}

/**
 * A session returning the values of `structure` (by default, every value of `model`). A converted
 * model passes the structure of its float32 original: the conversion keeps every original value's
 * name, so keys and module boundaries stay those of the original, whatever Casts it inserted.
 */
export async function exposedSession(
  model: onnx.ModelProto,
  options: ort.InferenceSession.SessionOptions,
  structure: GraphStructure = analyzeGraph(model.graph!),
): Promise<BuiltSession> {
  const names = new Set(structure.values.map((v) => v.name));
  const session = await ort.InferenceSession.create(exposeIntermediates(model, names), options);
  return { session, structure, model };
}

/**
 * Converts the model to `precision` and finds, by trying, which op types the provider has no
 * kernel for at that precision: each such op is kept in float32 between Casts and the session is
 * built again. Value types come from onnxruntime's inference on the float32 graph.
 */
export async function lowPrecisionSession(
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
      // An op of a function body (exact Gelu expands to Sqrt, Erf, ...) can share its type with
      // one of the graph's own ops already kept: then the function ops stay in float32 too.
      if (op && keep.size === grown) {
        for (const fn of FUNCTION_OPS) if (graphOps.has(fn)) keep.add(fn);
      }
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
