import { isCaptured, type AnyDiagnosisConfig } from './capturedConfig';
import { diagnoseCaptured } from './capturedRuns';
import { captureSource, type CaptureSettings, type CaptureSource } from './captureSource';
import { diagnoseOnnx } from './onnxRuns';
import type { DiagnosisObserver, DiagnosisResult } from './result';

export interface DiagnoseSettings extends CaptureSettings {
  /** Where captured runs' records come from; by default their helper, dump or ONNX run. */
  capture?: CaptureSource;
}

/**
 * The one entry for every run kind. Each front-end pairs values its own way (ONNX runs in lockstep
 * by key, captured runs through the mapping), then hands them to one pipeline: measure
 * (diagnosis/measure), localize and report (diagnosis/finish).
 */
export function diagnose(
  config: AnyDiagnosisConfig,
  observer: DiagnosisObserver = {},
  signal?: AbortSignal,
  settings: DiagnoseSettings = {},
): Promise<DiagnosisResult> {
  return isCaptured(config)
    ? diagnoseCaptured(config, settings.capture ?? captureSource(settings), observer, signal)
    : diagnoseOnnx(config, observer, signal);
}
