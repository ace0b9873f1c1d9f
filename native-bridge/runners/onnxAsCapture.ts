import { isFloatDType, toNumberArray } from '../tensors/dtypes';
import type { CapturedRecord, CapturedRun } from './capturedRecord';
import { readInputFile } from './inputFile';
import { OnnxCapture, type OnnxRunOptions } from './onnxRunner';

/**
 * An ONNX run as a capture, so it can be paired with a PyTorch one: each float value leaving a
 * module scope becomes a record of that module (node scopes are module paths: `/model/layers.0/
 * self_attn/...` → `model.layers.0.self_attn`). The op type stands in for the class name.
 */
export async function captureOnnx(
  options: OnnxRunOptions,
  inputFile: string,
): Promise<CapturedRun> {
  const inputs = await readInputFile(inputFile);
  const capture = await OnnxCapture.open({ ...options, capture: 'whole-graph' });
  try {
    const boundary: CapturedRecord[] = [];
    for await (const batch of capture.runSegments(inputs, 'modules')) {
      for (const record of batch) {
        if (!/@out\d+$/.test(record.boundaryKey ?? '') || !isFloatDType(record.dtype)) continue;
        boundary.push({
          name: '',
          seq: boundary.length,
          module: record.module,
          className: record.op,
          call: record.call,
          output: '',
          dtype: record.dtype,
          shape: record.shape,
          data: toNumberArray(record.dtype, record.data as ArrayLike<number>),
        });
      }
    }
    const records = asModuleOutputs(boundary);
    return {
      info: {
        framework: 'onnxruntime',
        model: options.model,
        device: capture.info.executionProvider,
        dtype: capture.info.precision,
        records: records.length,
      },
      records,
    };
  } finally {
    await capture.release();
  }
}

/** A module path and every enclosing one, the root ('') included. */
function scopes(module: string): string[] {
  const parts = module ? module.split('.') : [];
  return ['', ...parts.map((_, i) => parts.slice(0, i + 1).join('.'))];
}

/**
 * Module return values from boundary values. A module returns what its subtree computes last: its
 * own last value, or a child's (attention's output is its o_proj's); a module whose nodes all sit in
 * children still gets a record. Values a module hands to its children on the way are auxiliary.
 */
function asModuleOutputs(boundary: readonly CapturedRecord[]): CapturedRecord[] {
  const last = new Map<string, number>();
  for (const [i, record] of boundary.entries()) {
    for (const scope of scopes(record.module)) last.set(`${scope}#${record.call}`, i);
  }
  const out: CapturedRecord[] = [];
  const aux = new Map<string, number>();
  for (const [i, record] of boundary.entries()) {
    const own = `${record.module}#${record.call}`;
    if (last.get(own) !== i) {
      const k = aux.get(own) ?? 0;
      aux.set(own, k + 1);
      out.push({ ...record, output: `aux.${k}`, name: `${own}/aux.${k}`, seq: out.length });
    }
    // Every scope whose subtree ends here returns this value, innermost first (hook order).
    for (const scope of scopes(record.module).reverse()) {
      if (last.get(`${scope}#${record.call}`) !== i) continue;
      out.push({
        ...record,
        module: scope,
        output: '',
        name: `${scope}#${record.call}/`,
        seq: out.length,
      });
    }
  }
  return out;
}
