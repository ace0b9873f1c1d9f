import { buildErrorMap } from '../compare/errorMap';
import { isCaptured, loadDiagnosis, type AnyDiagnosisConfig } from '../diagnosis/capturedConfig';
import { loadConfig } from '../diagnosis/config';
import { confineToFolder } from '../diagnosis/confine';
import { diagnose } from '../diagnosis/diagnose';
import type { DiagnosisResult } from '../diagnosis/result';
import { EkkaError } from '../errors';
import type {
  DidComparePointParams,
  DidProgressParams,
  ErrorMap,
  GetErrorMapParams,
  LocateModuleParams,
  ModuleLocation,
  RunDiagnosisParams,
} from '../protocol';
import { PythonSourceLocator } from '../source/pythonLocator';

/** Error maps kept per run, in bytes; beyond it a module's map is not kept (and says so). */
const ERROR_MAP_BUDGET = 64 * 1024 * 1024;
/** Finished runs whose error maps stay available. */
const RUNS_KEPT = 3;

export interface BridgeEvents {
  point(params: DidComparePointParams): void;
  progress(params: DidProgressParams): void;
}

interface RunState {
  errorMaps: Map<number, ErrorMap>;
  bytes: number;
}

/**
 * What the bridge process does, free of the transport: runs diagnoses and streams their points,
 * keeps each run's error maps for on-demand heatmaps, and locates module sources.
 */
export class BridgeService {
  private readonly runs = new Map<string, RunState>();
  private readonly locators = new Map<string, Promise<PythonSourceLocator | undefined>>();
  private locateQueue: Promise<unknown> = Promise.resolve();

  constructor(private readonly events: BridgeEvents) {}

  async runDiagnosis(params: RunDiagnosisParams, signal: AbortSignal): Promise<DiagnosisResult> {
    const config = applyOverrides(await loadDiagnosis(params.configPath), params.overrides);
    if (params.workspaceFolder) await confineToFolder(config, params.workspaceFolder);
    const state: RunState = { errorMaps: new Map(), bytes: 0 };
    this.runs.set(params.runId, state);
    while (this.runs.size > RUNS_KEPT) this.runs.delete(this.runs.keys().next().value!);
    const { runId } = params;
    return diagnose(
      config,
      {
        runStarted: (role, info) =>
          this.events.progress({
            runId,
            message: `${role}: ${info.executionProvider}, ${info.capture}, ${info.segments} segment(s)`,
          }),
        compared: (point, target, reference) => {
          if (state.bytes >= ERROR_MAP_BUDGET) return;
          const map = buildErrorMap(point.shape, target, reference);
          state.errorMaps.set(point.index, map);
          state.bytes += map.values.byteLength;
        },
        point: (point) => this.events.point({ runId, point, comparedAt: Date.now() }),
      },
      signal,
      params.overrides?.python ? { python: params.overrides.python } : {},
    );
  }

  getErrorMap({ runId, index }: GetErrorMapParams): ErrorMap | null {
    const run = this.runs.get(runId);
    if (!run) throw new EkkaError('bridge', `run ${runId} is no longer kept; run it again`);
    return run.errorMaps.get(index) ?? null;
  }

  /** The module's source; null when the config has no source section or the path is not found. */
  locateModule({ configPath, module }: LocateModuleParams): Promise<ModuleLocation | null> {
    const run = this.locateQueue.then(async () => {
      let locator = this.locators.get(configPath);
      if (!locator) {
        locator = loadConfig(configPath).then((config) =>
          config.source ? PythonSourceLocator.create(config.source) : undefined,
        );
        this.locators.set(configPath, locator);
        locator.catch(() => this.locators.delete(configPath));
      }
      // The locator's parser is not reentrant: one lookup at a time (the queue).
      return (await (await locator)?.locate(module)) ?? null;
    });
    this.locateQueue = run.catch(() => undefined);
    return run;
  }

  async dispose(): Promise<void> {
    this.runs.clear();
    const locators = [...this.locators.values()];
    this.locators.clear();
    for (const locator of locators) (await locator.catch(() => undefined))?.dispose();
  }
}

function applyOverrides(
  config: AnyDiagnosisConfig,
  overrides: RunDiagnosisParams['overrides'],
): AnyDiagnosisConfig {
  if (overrides?.ratioThreshold !== undefined) config.thresholds.ratio = overrides.ratioThreshold;
  if (overrides?.executionProvider && !isCaptured(config)) {
    for (const run of [config.target, config.reference, config.referenceLowPrecision]) {
      if (run) run.executionProvider = overrides.executionProvider;
    }
  }
  return config;
}
