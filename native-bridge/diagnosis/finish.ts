import type { RankedSuspect } from '../localize/suspects';
import type { KernelLocation } from '../source/cppLocator';
import type { SourceLocation } from '../source/pythonLocator';
import type { Thresholds } from './config';
import { localizeSeries, reportedThresholds, seriesWarnings } from './localization';
import type { SeriesBuilder } from './measure';
import type {
  DiagnosisResult,
  MappingReport,
  SeriesPoint,
  Suspect,
  UnmatchedRecord,
} from './result';

/** What a run kind's front-end knows of a suspect beyond the series: where it is, and what it runs. */
export interface SuspectDetail {
  /** The op inside the module that diverges first, where ops were compared. */
  op?: string;
  node?: string;
  source: SourceLocation | null;
  kernel?: KernelLocation;
  /** The module's ratio when run again on the reference's inputs, where the kind allows. */
  ownRatio?: number;
  /** PyTorch runs: the module's ops run again on the reference's arguments (Suspect.drillDown). */
  drillDown?: Suspect['drillDown'];
  statement?: Suspect['statement'];
  moduleSource?: Suspect['moduleSource'];
}

/** Everything a front-end hands over once its pairs are measured. */
export interface Findings {
  /** `performance.now()` when the diagnosis began. */
  started: number;
  series: SeriesBuilder;
  unmatched: UnmatchedRecord[];
  /** What the front-end found that the user should know. */
  warnings: string[];
  runs: DiagnosisResult['runs'];
  mapping?: MappingReport;
  runsMs: Partial<Record<string, number>>;
  lockstep: boolean;
}

/**
 * The front-end's step after ranking, in rank order: each suspect's detail (ops compared again,
 * source lines located); it may add warnings. Called once, with at least one suspect.
 */
export type Refine = (
  ranked: readonly RankedSuspect[],
  series: readonly SeriesPoint[],
  warnings: string[],
) => Promise<SuspectDetail[]>;

export interface FinishOptions {
  thresholds: Thresholds;
  name?: string;
  file?: string;
  /** The folder source files are made relative to (the config's, or the first source root). */
  baseDir: string;
  /** Ops compared one to one, counted after `refine` (which may compare more). */
  comparedOps?: () => number;
}

/** Localizes the measured series, lets the front-end refine the suspects, and builds the result. */
export async function finishDiagnosis(
  options: FinishOptions,
  findings: Findings,
  refine: Refine,
): Promise<DiagnosisResult> {
  const series = findings.series.points;
  const { thresholds } = options;
  const warnings = [...seriesWarnings(series), ...findings.warnings];
  const { detection, ranked, changePoint, notes } = localizeSeries(series, thresholds);
  warnings.push(...notes);
  const details = ranked.length > 0 ? await refine(ranked, series, warnings) : [];
  const suspects: Suspect[] = ranked.map((suspect, rank) => {
    const point = series[suspect.index]!;
    const detail = details[rank] ?? { source: null };
    return {
      rank: rank + 1,
      module: suspect.module,
      op: detail.op ?? point.op,
      node: detail.node ?? point.node,
      ratio: suspect.ratio,
      ownJump: suspect.ownJump,
      kind: suspect.kind,
      ...(suspect.under ? { under: suspect.under } : {}),
      ...(detail.ownRatio !== undefined ? { ownRatio: detail.ownRatio } : {}),
      confidence: suspect.confidence,
      index: suspect.index,
      source: detail.source,
      ...(detail.kernel ? { kernel: detail.kernel } : {}),
      ...(detail.statement ? { statement: detail.statement } : {}),
      ...(detail.moduleSource !== undefined ? { moduleSource: detail.moduleSource } : {}),
      ...(detail.drillDown ? { drillDown: detail.drillDown } : {}),
    };
  });
  const result: DiagnosisResult = {
    format: 'ekka-diagnosis',
    version: 1,
    runs: findings.runs,
    noise: findings.series.noise(thresholds.noiseFloorFactor),
    thresholds: reportedThresholds(thresholds),
    series,
    changePoint,
    spikes: detection.spikes,
    suspects,
    unmatched: findings.unmatched,
    ...(findings.mapping ? { mapping: findings.mapping } : {}),
    warnings,
    comparedOps: options.comparedOps?.() ?? 0,
    timings: {
      totalMs: performance.now() - findings.started,
      runsMs: findings.runsMs,
      lockstep: findings.lockstep,
    },
  };
  if (options.name) result.name = options.name;
  if (options.file) result.config = options.file;
  result.sourceBase = options.baseDir;
  return result;
}
