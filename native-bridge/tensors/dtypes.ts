/** Element types as onnxruntime-node names them (`Tensor.type`). */
export type DType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool'
  | 'string';

/** ONNX TensorProto element types by onnxruntime's type names. */
export const ONNX_ELEM_TYPE: Readonly<Record<string, number>> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
  bfloat16: 16,
};

/** onnxruntime's type names by ONNX element type. */
export const ORT_TYPE_NAME: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(ONNX_ELEM_TYPE).map(([name, type]) => [type, name]),
);

export type FloatDType = 'float32' | 'float16' | 'bfloat16' | 'float64';

export function isFloatDType(dtype: string): dtype is FloatDType {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16' || dtype === 'float64';
}

/**
 * Unit roundoff u = 2^-(mantissa bits + 1): the largest relative error of one rounding to the type.
 * The analytic noise floor scales it by the tensor's norm.
 */
export const UNIT_ROUNDOFF: Record<FloatDType, number> = {
  float64: 2 ** -53,
  float32: 2 ** -24,
  float16: 2 ** -11,
  bfloat16: 2 ** -8,
};

/** Smallest positive normal value: below it, rounding error is absolute, not relative. */
export const MIN_NORMAL: Record<FloatDType, number> = {
  float64: 2 ** -1022,
  float32: 2 ** -126,
  float16: 2 ** -14,
  bfloat16: 2 ** -126,
};

/** Largest finite value: a reference beyond it cannot be represented by a run of that type. */
export const MAX_FINITE: Record<FloatDType, number> = {
  float64: Number.MAX_VALUE,
  float32: 3.4028234663852886e38,
  float16: 65504,
  bfloat16: 3.3895313892515355e38,
};

/** The lower-precision of two float types (the one with the larger unit roundoff). */
export function coarserDType(a: FloatDType, b: FloatDType): FloatDType {
  return UNIT_ROUNDOFF[a] >= UNIT_ROUNDOFF[b] ? a : b;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE 754 binary16 bits to a number, subnormals, infinities and NaN included. */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** bfloat16 bits are the upper half of a float32. */
export function bfloat16BitsToNumber(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0]!;
}

export type FloatArray = Float32Array | Float64Array;

/**
 * Float data as a Float32Array/Float64Array. fp16 and bf16 arrive from onnxruntime as raw 16-bit
 * words (Uint16Array) and are decoded here, so every comparison sees plain numbers.
 */
export function toFloatArray(dtype: FloatDType, data: ArrayLike<number>): FloatArray {
  if (data instanceof Float32Array || data instanceof Float64Array) return data;
  const decode = dtype === 'bfloat16' ? bfloat16BitsToNumber : float16BitsToNumber;
  const out = new Float32Array(data.length);
  if (dtype === 'float16' || dtype === 'bfloat16') {
    for (let i = 0; i < data.length; i++) out[i] = decode(data[i]!);
  } else {
    for (let i = 0; i < data.length; i++) out[i] = data[i]!;
  }
  return out;
}

/**
 * The type a value is compared in: floats as themselves, integers and bools exactly, as float64
 * (a mismatch there is a divergence, not noise).
 */
export function comparisonDType(dtype: string): FloatDType {
  return isFloatDType(dtype) ? dtype : 'float64';
}

/** Any numeric tensor as numbers: floats as toFloatArray, integers and bools as float64. */
export function toNumberArray(
  dtype: string,
  data: ArrayLike<number> | ArrayLike<bigint>,
): FloatArray {
  if (isFloatDType(dtype)) return toFloatArray(dtype, data as ArrayLike<number>);
  return Float64Array.from(data as ArrayLike<number | bigint>, Number);
}

/** Significand bits (the implicit one included) and the smallest normal exponent of each type. */
const PRECISION: Record<FloatDType, { bits: number; minExponent: number }> = {
  float64: { bits: 53, minExponent: -1022 },
  float32: { bits: 24, minExponent: -126 },
  float16: { bits: 11, minExponent: -14 },
  bfloat16: { bits: 8, minExponent: -126 },
};

/**
 * x rounded to the nearest value of `dtype` (ties away from zero; subnormals kept, overflow left
 * unrounded): what storing x in that type does to it.
 */
export function roundToDType(x: number, dtype: FloatDType): number {
  if (dtype === 'float64' || x === 0 || !Number.isFinite(x)) return x;
  if (dtype === 'float32') return Math.fround(x);
  const { bits, minExponent } = PRECISION[dtype];
  const magnitude = Math.abs(x);
  let exponent = Math.floor(Math.log2(magnitude));
  if (2 ** exponent > magnitude) exponent--;
  const ulp = 2 ** (Math.max(exponent, minExponent) - (bits - 1));
  return Math.sign(x) * Math.round(magnitude / ulp) * ulp;
}

/**
 * ‖fl(x) − x‖₂ over the finite values: the error a run of `dtype` cannot escape, since every
 * value it holds is of that type. Zero where the values are exact in it (masks, integers).
 */
export function roundingErrorNorm(values: ArrayLike<number>, dtype: FloatDType): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i]!;
    if (!Number.isFinite(x)) continue;
    const d = roundToDType(x, dtype) - x;
    sum += d * d;
  }
  return Math.sqrt(sum);
}
