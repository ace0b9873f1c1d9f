import { onnx } from 'onnx-proto';
import { MAX_FINITE } from '../tensors/dtypes';
import { castNode } from './modelFile';

/** Storage types a float32 graph can be converted to. */
export type LowPrecision = 'float16' | 'bfloat16';

const DATA_TYPE: Record<LowPrecision, onnx.TensorProto.DataType> = {
  float16: onnx.TensorProto.DataType.FLOAT16,
  bfloat16: onnx.TensorProto.DataType.BFLOAT16,
};
const FLOAT = onnx.TensorProto.DataType.FLOAT;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Rounds a number to IEEE binary16 (nearest, ties to even) and returns its bits. */
export function numberToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // Inf or NaN
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to Inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow to ±0
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let bits = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    if (rest > half || (rest === half && bits & 1)) bits++;
    return sign | bits;
  }
  let bits = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && bits & 1)) bits++; // a carry into the exponent is right
  return sign | bits;
}

/** Rounds a number to bfloat16 (nearest, ties to even) and returns its bits. */
export function numberToBfloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40; // quiet NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function floatValues(tensor: onnx.ITensorProto): Float32Array {
  const raw = tensor.rawData;
  if (raw && raw.length > 0) {
    const copy = new Uint8Array(raw); // aligned copy
    return new Float32Array(copy.buffer, 0, copy.length / 4);
  }
  return Float32Array.from(tensor.floatData ?? []);
}

/**
 * Converts a float32 tensor in place to the low-precision type (raw little-endian 16-bit words).
 * Finite values beyond the type's range saturate to its largest finite value (±65504 for float16)
 * instead of rounding to infinity, as common fp16 converters do: a mask constant written as float32's minimum stays a large negative
 * number (as in a model exported at float16) rather than -Inf, which turns 0 · mask into NaN.
 */
function convertTensor(tensor: onnx.ITensorProto, precision: LowPrecision): void {
  if (tensor.dataType !== FLOAT) return;
  const toBits = precision === 'float16' ? numberToFloat16Bits : numberToBfloat16Bits;
  const limit = MAX_FINITE[precision];
  const values = floatValues(tensor);
  const words = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    words[i] = toBits(Number.isFinite(v) ? Math.max(-limit, Math.min(limit, v)) : v);
  }
  tensor.dataType = DATA_TYPE[precision];
  tensor.floatData = [];
  tensor.rawData = new Uint8Array(words.buffer);
}

function scopeOf(nodeName: string): string {
  return nodeName.startsWith('/') ? nodeName.slice(0, nodeName.lastIndexOf('/') + 1) : '';
}

/**
 * Rewrites a float32 graph so that its activations are stored in `precision`: float initializers
 * and constants are rounded, Casts to float32 retarget to the low type, float inputs are cast on
 * entry and float outputs cast back to float32 on exit (the interface is unchanged). Ops listed in
 * `keepFloat32` (no kernel for the low type) run in float32 between Casts, so their outputs are
 * still rounded to the low type. `valueTypes` gives the float32 graph's value types (from
 * onnxruntime's own inference). Mutates and returns `model`.
 */
export function convertToLowPrecision(
  model: onnx.ModelProto,
  precision: LowPrecision,
  valueTypes: ReadonlyMap<string, string>,
  keepFloat32: ReadonlySet<string>,
): onnx.ModelProto {
  const graph = model.graph!;
  const low = DATA_TYPE[precision];
  // Names this rewrite introduces map back to the float32 value they carry.
  const origin = new Map<string, string>();
  const isFloat = (name: string) => valueTypes.get(origin.get(name) ?? name) === 'float32';
  for (const tensor of graph.initializer ?? []) convertTensor(tensor, precision);

  const nodes: onnx.INodeProto[] = [];
  const rename = new Map<string, string>();
  for (const input of graph.input ?? []) {
    const name = input.name ?? '';
    if (!isFloat(name)) continue;
    const lowName = `${name}__${precision}`;
    rename.set(name, lowName);
    origin.set(lowName, name);
    nodes.push(castNode(`${name}__to_${precision}`, name, lowName, low));
  }

  for (const [index, node] of (graph.node ?? []).entries()) {
    node.input = (node.input ?? []).map((name) => rename.get(name) ?? name);
    for (const attribute of node.attribute ?? []) {
      if (
        node.opType === 'Cast' &&
        attribute.name === 'to' &&
        Number(attribute.i) === Number(FLOAT)
      )
        attribute.i = low;
      if (attribute.t) convertTensor(attribute.t, precision);
    }
    if (!keepFloat32.has(node.opType ?? '')) {
      nodes.push(node);
      continue;
    }
    // Unnamed nodes get their index, so the inserted Casts' names stay unique.
    const prefix = node.name
      ? `${scopeOf(node.name)}${node.name.split('/').pop()}`
      : `${node.opType ?? 'node'}_${index}`;
    const before: onnx.INodeProto[] = [];
    const after: onnx.INodeProto[] = [];
    node.input = node.input.map((name, k) => {
      if (!name || !isFloat(name)) return name;
      const wide = `${prefix}_in${k}_float32`;
      before.push(castNode(`${prefix}_in${k}_to_float32`, name, wide, FLOAT));
      return wide;
    });
    node.output = (node.output ?? []).map((name, k) => {
      if (!name || !isFloat(name)) return name;
      const wide = `${prefix}_out${k}_float32`;
      after.push(castNode(`${prefix}_out${k}_to_${precision}`, wide, name, low));
      return wide;
    });
    nodes.push(...before, node, ...after);
  }

  // Keep the float32 interface: graph outputs are cast back after the low-precision value.
  for (const output of graph.output ?? []) {
    const name = output.name ?? '';
    if (!isFloat(name)) continue;
    const lowName = `${name}__${precision}_out`;
    for (const node of nodes) {
      node.output = (node.output ?? []).map((o) => (o === name ? lowName : o));
      node.input = (node.input ?? []).map((i) => (i === name ? lowName : i));
    }
    const producer = nodes.find((n) => n.output?.includes(lowName));
    nodes.push(
      castNode(`${scopeOf(producer?.name ?? '')}${name}_to_float32`, lowName, name, FLOAT),
    );
  }
  graph.node = nodes;
  // Declared intermediate types (the dynamo exporter writes them) would still say float32:
  // onnxruntime infers the new ones.
  graph.valueInfo = [];
  return model;
}

/**
 * ONNX ops defined by a function body. When one has no kernel for a type, onnxruntime expands it
 * and the error names an op of the body (an unnamed ReduceMax inside Softmax), not the op itself.
 */
export const FUNCTION_OPS = new Set([
  'Softmax',
  'LogSoftmax',
  'LayerNormalization',
  'GroupNormalization',
  'MeanVarianceNormalization',
  'Gelu',
  'HardSwish',
  'Mish',
  'Celu',
  'GreaterOrEqual',
  'LessOrEqual',
  'Range',
  'Shrink',
  'ThresholdedRelu',
  'CastLike',
]);

/**
 * The op type that cannot take the low-precision type, from onnxruntime's load error: either no
 * kernel is registered for it, or the op's schema does not allow the type at this opset.
 */
export function opWithoutKernel(message: string): string | undefined {
  return (
    /Could not find an implementation for (\w+)\(\d+\) node/.exec(message)?.[1] ??
    /Type 'tensor\((?:b?float16)\)' of (?:input|output) parameter \([^)]*\) of operator \((\w+)\)/.exec(
      message,
    )?.[1]
  );
}
