import { openDump } from '../dump/dumpReader';
import type { CapturedRecord } from '../runners/capturedRecord';
import { captureOnnx } from '../runners/onnxAsCapture';
import { capturePyTorch } from '../runners/pytorchRunner';
import { isCaptured, type AnyDiagnosisConfig } from './capturedConfig';
import { runCapturedDiagnosis, type CaptureSource } from './capturedDiagnosis';
import { runDiagnosis, type DiagnosisObserver } from './diagnose';
import type { DiagnosisResult } from './result';

export interface CaptureSettings {
  /** Interpreter for `kind: pytorch` runs without their own `python`. */
  python?: string;
  /** Per PyTorch capture. */
  timeoutMs?: number;
}

/** The default interpreter: EKKA_PYTHON, else `python3` on the PATH. */
export function defaultPython(): string {
  return process.env.EKKA_PYTHON || 'python3';
}

/** Runs each captured run where it lives: the PyTorch helper, or a dump on disk. */
export function captureSource(settings: CaptureSettings = {}): CaptureSource {
  return async (run, role, signal) => {
    if (run.kind === 'onnx') return captureOnnx(run.options, run.input);
    if (run.kind === 'dump') {
      const dump = await openDump(run.dump);
      const records: CapturedRecord[] = [];
      try {
        for await (const record of dump.records()) records.push(record);
      } finally {
        await dump.close();
      }
      return { info: dump.info, records };
    }
    return capturePyTorch({
      python: run.python ?? settings.python ?? defaultPython(),
      factory: `${run.factoryFile}:${run.factoryFunction}`,
      ...(run.hfModel ? { hfModel: run.hfModel } : {}),
      dtype: run.dtype,
      device: run.device,
      // The reference side also records module inputs: some engine modules (an attention
      // backend) compute what HF only passes from one module to the next.
      inputs: role !== 'target',
      ...((run.timeoutMs ?? settings.timeoutMs)
        ? { timeoutMs: run.timeoutMs ?? settings.timeoutMs }
        : {}),
      ...(signal ? { signal } : {}),
    });
  };
}

/** A diagnosis of either kind: ONNX runs in lockstep, or captured runs paired by the mapping. */
export function runAnyDiagnosis(
  config: AnyDiagnosisConfig,
  observer: DiagnosisObserver = {},
  signal?: AbortSignal,
  settings: CaptureSettings = {},
): Promise<DiagnosisResult> {
  return isCaptured(config)
    ? runCapturedDiagnosis(config, captureSource(settings), observer, signal)
    : runDiagnosis(config, observer, signal);
}
