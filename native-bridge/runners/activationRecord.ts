import type { DType } from '../tensors/dtypes';

/** Raw element storage as onnxruntime returns it (fp16/bf16 as 16-bit words). */
export type TensorData =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | string[];

/** One intermediate activation captured from a run, yielded in execution order. */
export interface ActivationRecord {
  /** Position in the run's execution order. */
  seq: number;
  /** Value name in the graph. */
  name: string;
  nodeName: string;
  op: string;
  /** Dotted module path (see modulePathFromNodeName and moduleCalls). */
  module: string;
  /** Which call of the module produced it: 1, or 2 for a second call (a decode step), ... */
  call: number;
  /** Index of the segment that produced it (0 for a whole-graph run). */
  segment: number;
  /** Alignment key of the op output: `${module}|${op}#${ordinal}`. */
  opKey: string;
  /**
   * Set on values that leave their module: `${module}@out${k}` for floats, `${module}@int${k}` for
   * integers and bools, `${module}@pass${k}` for a module input handed on through casts (see
   * ProducedValue.passThrough), k counting the module's boundary values of that kind in order.
   * These make up the module-level series.
   */
  boundaryKey?: string;
  /** For boundary values: the values entering this module from other modules. */
  moduleInputs?: readonly string[];
  dtype: DType;
  shape: number[];
  data: TensorData;
}
