import { openDump } from '../dump/dumpReader';
import type { CapturedRecord, CapturedRun } from '../runners/capturedRecord';
import { captureOnnx } from '../runners/onnxAsCapture';
import { capturePyTorch } from '../runners/pytorchRunner';
import { discoverPython } from '../runners/pythonDiscovery';
import type { CapturedRunConfig } from './capturedConfig';
import type { RunRole } from './result';

/** Produces a run's records: the PyTorch helper, or a dump reader (tests pass their own). */
export type CaptureSource = (
  run: CapturedRunConfig,
  role: RunRole,
  signal?: AbortSignal,
  graft?: GraftFiles,
) => Promise<CapturedRun>;

/**
 * For PyTorch runs: where the reference saves its modules' arguments, where others read them,
 * and the modules to drill into on them (a drill-down run runs no steps).
 */
export interface GraftFiles {
  save?: string;
  from?: string;
  drill?: string[];
}

export interface CaptureSettings {
  /** Interpreter for `kind: pytorch` runs without their own `python`. */
  python?: string;
  /** Per PyTorch capture. */
  timeoutMs?: number;
}

/**
 * The interpreter for a PyTorch run: the run's own, the caller's, EKKA_PYTHON, else the first
 * candidate that imports torch (runners/pythonDiscovery).
 */
export async function pythonFor(
  run: { python?: string },
  settings: CaptureSettings,
): Promise<string> {
  return run.python ?? settings.python ?? (process.env.EKKA_PYTHON || (await discoverPython()));
}

/** Runs each captured run where it lives: the PyTorch helper, or a dump on disk. */
export function captureSource(settings: CaptureSettings = {}): CaptureSource {
  return async (run, role, signal, graft) => {
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
      python: await pythonFor(run, settings),
      factory: `${run.factoryFile}:${run.factoryFunction}`,
      ...(run.hfModel ? { hfModel: run.hfModel } : {}),
      dtype: run.dtype,
      device: run.device,
      // The reference side also records module inputs: some engine modules (an attention
      // backend) compute what HF only passes from one module to the next.
      inputs: role !== 'target',
      ...(graft?.save ? { graftSave: graft.save } : {}),
      ...(graft?.from ? { graftFrom: graft.from } : {}),
      ...(graft?.drill ? { drill: graft.drill } : {}),
      ...((run.timeoutMs ?? settings.timeoutMs)
        ? { timeoutMs: run.timeoutMs ?? settings.timeoutMs }
        : {}),
      ...(signal ? { signal } : {}),
    });
  };
}
