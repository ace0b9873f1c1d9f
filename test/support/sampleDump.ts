// Building blocks of the valid dumps that the dump tests write: capture info and records.
import type { CaptureInfo, CapturedRecord } from '../../native-bridge/runners/capturedRecord';

/** The capture info of a PyTorch capture in bfloat16; `records` is filled in by the writer. */
export const SAMPLE_CAPTURE_INFO: CaptureInfo = {
  framework: 'pytorch',
  model: 'samples/serving-llama/serving.py:build',
  frameworkVersion: '2.4.0',
  device: 'cuda:0',
  dtype: 'bfloat16',
  records: 0,
};

/**
 * A module-output record named `module#call/output`, with `values` widened the way the reader
 * returns them (Float32Array for float32/float16/bfloat16, else Float64Array).
 */
export function capturedRecord(
  name: string,
  seq: number,
  dtype: string,
  shape: number[],
  values: number[],
  extra: Partial<CapturedRecord> = {},
): CapturedRecord {
  const [module = '', rest = ''] = name.split('#');
  const [call = '1', output = ''] = rest.split('/');
  const wide = ['float32', 'float16', 'bfloat16'].includes(dtype) ? Float32Array : Float64Array;
  return {
    name,
    seq,
    module,
    className: 'Linear',
    call: Number(call),
    output,
    dtype,
    shape,
    data: wide.from(values),
    ...extra,
  };
}
