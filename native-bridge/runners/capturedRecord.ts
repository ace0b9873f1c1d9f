/**
 * One module output captured from a framework run (the PyTorch capture helper, or a dump made by
 * it or by another tool). Unlike ONNX records these carry no graph: they are paired with the other
 * run's records by the mapping (native-bridge/mapping), through the module path.
 */
export interface CapturedRecord {
  /** Unique within the run: `${module}#${call}/${output}` (plus `@rank${rank}` for a shard). */
  name: string;
  /** Position in the run's execution order (hook completion order), from 0. */
  seq: number;
  /** Module path as the framework names it: `model.layers.0.self_attn.qkv_proj`; '' is the root. */
  module: string;
  /** The module's class name: `QKVParallelLinear`, `LlamaAttention`. */
  className: string;
  /** 1 for the first call of the module, 2 for the second (a decode step after a prefill), ... */
  call: number;
  /**
   * Where the tensor sits in the module's return value: '' for a plain tensor, '0'/'1' for tuple
   * items, 'hidden' for a dict key, '0.1' when nested.
   */
  output: string;
  /** Tensor-parallel rank that produced this shard; absent for unsharded runs. */
  rank?: number;
  /** Storage type as captured: float32, float16, bfloat16, int64, ... */
  dtype: string;
  shape: number[];
  /** The values, widened to float32 (float64 for integer types). */
  data: Float32Array | Float64Array;
  /** Where the module's class is defined (`inspect`), absolute path and 1-based line. */
  source?: { file: string; line: number };
  /**
   * The records this value was computed from, by name: for a module output, the module's inputs
   * and its children's outputs (all its own code can read); for an input record (`in.*`), what
   * the calling module had read so far. Absent when the capture did not track data flow.
   */
  inputs?: string[];
  /** For an input record (`in.*`): the module whose code computed the value ('' the root). */
  caller?: string;
  /**
   * For a module output: the module's inputs that are other records, by input path (`'0'`,
   * `'hidden_states'`). An input not listed here is a record of its own, `module#call/in.<path>`.
   */
  arguments?: Record<string, string>;
  /** A drill-down op record (`op.<k>`): what the module's code called (`F.linear`, `Tensor.mul`). */
  op?: string;
  /** A drill-down op record: the line of the model's code that called it (absolute path). */
  statement?: { file: string; line: number };
}

/** What a capture says about itself. */
export interface CaptureInfo {
  /** 'pytorch', or whatever tool wrote a dump. */
  framework: string;
  /** e.g. `samples/serving-llama/serving.py:build` or a model directory. */
  model: string;
  /** torch version, device and dtype the run used, as reported by the helper. */
  frameworkVersion?: string;
  device?: string;
  dtype?: string;
  records: number;
}

/** A whole captured run: what it says about itself and its records in execution order. */
export interface CapturedRun {
  info: CaptureInfo;
  records: CapturedRecord[];
}

/**
 * A leaf module's output when it was run again on the reference's inputs (the capture helper's
 * `--graft-from`): output `graft`, or `graft.<path>` for an item of the module's return value.
 */
export function isGraftRecord(record: Pick<CapturedRecord, 'output'>): boolean {
  return record.output === 'graft' || record.output.startsWith('graft.');
}

/** The name of the record a graft reproduces: the module's first call, same output path. */
export function graftedRecordName(record: Pick<CapturedRecord, 'module' | 'output'>): string {
  const path = record.output === 'graft' ? '' : record.output.slice('graft.'.length);
  return `${record.module}#1/${path}`;
}
