import * as path from 'node:path';
import { countMismatches, discreteRatio, errorRatio } from '../compare/errorRatio';
import { comparePair, DEFAULT_COMPARE, unflattenIndex, type PairMetrics } from '../compare/metrics';
import { EkkaError } from '../errors';
import { largestInput } from '../localize/suspects';
import {
  alignPair,
  alignReferenceSide,
  checkPremise,
  planMapping,
  type PlannedPair,
} from '../mapping/mapRecords';
import { PRESETS } from '../mapping/presets';
import type { AlignedTensor } from '../mapping/transforms';
import type { CaptureInfo, CapturedRecord } from '../runners/capturedRecord';
import type { OnnxRunInfo } from '../runners/onnxRunner';
import {
  coarserDType,
  comparisonDType,
  isFloatDType,
  MAX_FINITE,
  roundingErrorNorm,
  type FloatArray,
  type FloatDType,
} from '../tensors/dtypes';
import type { CapturedDiagnosisConfig, CapturedRunConfig } from './capturedConfig';
import { derivedLowPrecisionNote } from './config';
import type { DiagnosisObserver, RunRole } from './diagnose';
import { localizeSeries, reportedThresholds, seriesWarnings } from './localization';
import type {
  DiagnosisResult,
  MappingReport,
  SeriesPoint,
  Suspect,
  UnmatchedRecord,
} from './result';

export interface CapturedRun {
  info: CaptureInfo;
  records: CapturedRecord[];
}

/** Produces a run's records: the PyTorch helper, or a dump reader (tests pass their own). */
export type CaptureSource = (
  run: CapturedRunConfig,
  role: RunRole,
  signal?: AbortSignal,
) => Promise<CapturedRun>;

function runInfo(run: CapturedRunConfig, captured: CapturedRun): OnnxRunInfo {
  const model =
    run.kind === 'pytorch'
      ? `${run.factoryFile}:${run.factoryFunction}`
      : run.kind === 'dump'
        ? run.dump
        : run.options.model;
  return {
    framework: run.kind === 'onnx' ? 'onnxruntime' : run.kind,
    model,
    executionProvider: captured.info.device?.startsWith('cuda') ? 'cuda' : 'cpu',
    optimization: run.kind === 'onnx' ? run.options.optimization : 'disabled',
    precision: (captured.info.dtype ??
      (run.kind === 'pytorch' ? run.dtype : 'float32')) as OnnxRunInfo['precision'],
    capture: 'whole-graph',
    segments: 1,
    capturedValues: captured.records.length,
  };
}

/** Total reference tokens when target calls map to windows of one reference call. */
function referenceTokens(config: CapturedDiagnosisConfig): number | undefined {
  const windows = config.mapping.targetCallTokens;
  return windows ? Math.max(...windows.map(([, end]) => end)) : undefined;
}

/**
 * What a module's value is measured against: the largest ratio among the records it was computed
 * from (the capture helper lists them: the module's inputs and its children's outputs).
 */
function measuredInputs(
  targets: readonly CapturedRecord[],
  series: readonly SeriesPoint[],
  indexByTarget: ReadonlyMap<string, number>,
  consumedInputs: ReadonlyMap<string, number>,
): ReturnType<typeof largestInput> {
  return largestInput(
    series,
    targets.flatMap((target) =>
      (target.inputs ?? []).map(
        (name) =>
          consumedInputs.get(`${target.module}#${target.call}|${name}`) ?? indexByTarget.get(name),
      ),
    ),
  );
}

/**
 * For records that do not list their inputs (another tool's dump): the value compared last
 * before the module's own children, and those children's outputs (hooks report children first).
 */
function guessedInput(
  series: readonly SeriesPoint[],
  module: string,
): { inputIndex?: number; inputRatio: number } {
  let best: number | undefined;
  for (let i = series.length - 1; i >= 0; i--) {
    const earlier = series[i]!.module;
    const inside = earlier === module || earlier.startsWith(module ? `${module}.` : '');
    if (best === undefined || series[i]!.ratio > series[best]!.ratio) best = i;
    if (!inside) break;
  }
  return best === undefined
    ? { inputRatio: 1 }
    : { inputIndex: best, inputRatio: Math.max(1, series[best]!.ratio) };
}

/**
 * Diagnoses two captured runs of different implementations: captures them (and the low-precision
 * reference), pairs their records through the mapping, aligns each pair, compares, and localizes
 * the change point as the ONNX path does. Sources come from each target record's class.
 */
export async function runCapturedDiagnosis(
  config: CapturedDiagnosisConfig,
  capture: CaptureSource,
  observer: DiagnosisObserver = {},
  signal?: AbortSignal,
): Promise<DiagnosisResult> {
  const started = performance.now();
  const throwIfCancelled = () => {
    if (signal?.aborted) throw new EkkaError('cancelled', 'diagnosis cancelled');
  };
  const runsMs: Partial<Record<string, number>> = {};
  // One failing capture stops the others (their helper processes are killed).
  const captures = new AbortController();
  const stopAll = () => captures.abort();
  signal?.addEventListener('abort', stopAll, { once: true });
  const take = async (run: CapturedRunConfig, role: RunRole) => {
    const t = performance.now();
    const captured = await capture(run, role, captures.signal).catch((cause: unknown) => {
      captures.abort();
      throw cause;
    });
    runsMs[role] = performance.now() - t;
    observer.runStarted?.(role, runInfo(run, captured));
    throwIfCancelled();
    return captured;
  };
  // The runs are independent processes (or files): capture them side by side.
  const [reference, lowPrecision, target] = await Promise.all([
    take(config.reference, 'reference'),
    config.referenceLowPrecision
      ? take(config.referenceLowPrecision, 'referenceLowPrecision')
      : Promise.resolve(undefined),
    take(config.target, 'target'),
  ]).finally(() => signal?.removeEventListener('abort', stopAll));

  const presetRules =
    config.mapping.preset === 'none' ? [] : (PRESETS[config.mapping.preset] ?? []);
  const rules = [
    ...config.mapping.rules.map((rule, i) => ({ rule, origin: `rule ${i + 1} (ekka.json)` })),
    ...presetRules.map((rule) => ({
      rule,
      origin: `preset ${config.mapping.preset}`,
      checked: true,
    })),
  ];
  const plan = planMapping(target.records, reference.records, {
    rules,
    ignore: config.mapping.ignore,
    ...(config.mapping.targetCallTokens
      ? { targetCallTokens: config.mapping.targetCallTokens }
      : {}),
  });
  const targetByName = new Map(target.records.map((r) => [r.name, r]));
  const referenceByName = new Map(reference.records.map((r) => [r.name, r]));
  const lowByName = new Map(lowPrecision?.records.map((r) => [r.name, r]) ?? []);
  const tokens = referenceTokens(config);
  const tensor = (r: CapturedRecord): AlignedTensor => ({ data: r.data, shape: r.shape });

  const series: SeriesPoint[] = [];
  const unmatched: UnmatchedRecord[] = plan.unmatched.map((u) => ({
    side: u.side,
    key: u.name,
    module: u.module,
    node: u.name,
    reason: u.reason,
  }));
  const mappingPairs: MappingReport['pairs'] = [];
  let usedMeasuredNoise = false;
  let floorDType: ReturnType<typeof comparisonDType> = 'float32';
  const floorFactor = config.thresholds.noiseFloorFactor;
  const targetPrecision = computePrecision(config.target);

  const classOf = new Map<string, CapturedRecord>();
  for (const record of target.records) {
    if (!record.output.startsWith('in.') && !classOf.has(record.module)) {
      classOf.set(record.module, record);
    }
  }
  const seriesIndexByTarget = new Map<string, number>();
  const consumedInputs = new Map<string, number>();
  const tracksInputs = target.records.some((r) => r.inputs !== undefined);
  const premiseNotes: string[] = [];
  for (const planned of plan.pairs) {
    throwIfCancelled();
    const targets = planned.target.map((name) => targetByName.get(name)!);
    const referencesOf = (p: PlannedPair) => p.reference.map((name) => referenceByName.get(name)!);
    const { pair, note } = checkPremise(planned, (p) => {
      try {
        const fit = alignPair(p, targets.map(tensor), referencesOf(p).map(tensor), tokens);
        return comparePair(fit.target.data, fit.reference.data).relativeL2Error;
      } catch {
        return Infinity;
      }
    });
    if (note && pair.origin === 'same path') premiseNotes.push(pair.key);
    const references = referencesOf(pair);
    let aligned;
    try {
      aligned = alignPair(pair, targets.map(tensor), references.map(tensor), tokens);
      if (note) aligned.transforms.unshift(note);
    } catch (cause) {
      unmatched.push({
        side: 'target',
        key: pair.key,
        module: pair.module,
        node: pair.target.join(', '),
        reason: (cause as Error).message,
      });
      continue;
    }
    let gap: PairMetrics | undefined;
    let lowAligned: FloatArray | undefined;
    const lows = pair.reference.map((name) => lowByName.get(name));
    if (lows.every((r) => r !== undefined)) {
      try {
        // The low-precision reference goes through the same steps; the full one is aligned above
        // (a reshape keeps its values in order).
        const low = alignReferenceSide(pair, lows.map(tensor), tokens, []);
        if (low.data.length === aligned.reference.data.length) {
          gap = comparePair(low.data, aligned.reference.data);
          lowAligned = low.data;
        }
      } catch {
        gap = undefined;
      }
    }
    // A module input belongs to the code that computed it: the calling module's class.
    const first = targets[0]!;
    const owner = pair.inputOf ? (classOf.get(pair.module) ?? first) : first;
    // A value the target holds in float32 inside a low-precision run (a router's softmax over
    // bfloat16 logits) carries the run's rounding: its noise is the coarser of the two, as on the
    // ONNX path.
    const dtype = isFloatDType(first.dtype)
      ? coarserDType(comparisonDType(first.dtype), targetPrecision)
      : comparisonDType(first.dtype);
    const metrics = comparePair(aligned.target.data, aligned.reference.data, {
      ...DEFAULT_COMPARE,
      referenceLimit: MAX_FINITE[dtype],
    });
    // With a measured gap, the reference's own rounding to the target's type guards it from below
    // (values a cast leaves exact); whole-model captures at bf16 sit far below the analytic γ·u.
    const lowData = gap ? lowAligned : undefined;
    const ratio = isFloatDType(first.dtype)
      ? errorRatio(metrics, gap, dtype, {
          floorFactor,
          roundingNorm: gap ? roundingErrorNorm(aligned.reference.data, dtype) : undefined,
        })
      : discreteRatio(
          countMismatches(aligned.target.data, aligned.reference.data),
          lowData ? countMismatches(lowData, aligned.reference.data) : undefined,
          metrics.elements,
        );
    if (ratio.noiseSource === 'low-precision-reference') usedMeasuredNoise = true;
    else floorDType = coarserDType(floorDType, dtype);
    const inputs = tracksInputs
      ? measuredInputs(targets, series, seriesIndexByTarget, consumedInputs)
      : guessedInput(series, pair.module);
    if (pair.inputOf && !targets[0]!.output.startsWith('in.')) {
      // A record the target passes where the reference computes its own value: what the consumer
      // reads, not the record's own point.
      consumedInputs.set(`${pair.inputOf}|${targets[0]!.name}`, series.length);
    } else {
      for (const name of pair.target) seriesIndexByTarget.set(name, series.length);
    }
    const relative = (file: string) =>
      path.relative(config.baseDir, file).split(path.sep).join('/');
    const point: SeriesPoint = {
      index: series.length,
      module: pair.module,
      call: pair.call,
      segment: 0,
      key: pair.key,
      node: pair.target.join(' + '),
      op: owner.className,
      dtype: first.dtype,
      shape: aligned.target.shape,
      ratio: ratio.ratio,
      relativeL2Error: metrics.relativeL2Error,
      cosineSimilarity: metrics.cosineSimilarity,
      maxAbsError: metrics.maxAbsError,
      maxAbsErrorIndex:
        metrics.maxAbsErrorIndex < 0
          ? []
          : unflattenIndex(metrics.maxAbsErrorIndex, aligned.target.shape),
      noiseSource: ratio.noiseSource,
      ...inputs,
      ...(owner.source
        ? { source: { file: relative(owner.source.file), line: owner.source.line } }
        : {}),
      target: metrics.target,
      reference: metrics.reference,
      nonFiniteMismatches: metrics.nonFiniteMismatches,
      toleranceViolations: metrics.toleranceViolations,
    };
    series.push(point);
    mappingPairs.push({
      key: pair.key,
      target: pair.target,
      reference: pair.reference,
      origin: pair.origin,
      transforms: aligned.transforms,
    });
    observer.compared?.(point, aligned.target.data, aligned.reference.data);
    observer.point?.(point);
  }

  const thresholds = config.thresholds;
  const { detection, ranked, changePoint, notes } = localizeSeries(series, thresholds);
  let suspects: Suspect[] = [];
  if (ranked.length > 0) {
    suspects = ranked.map((suspect, rank) => {
      const point = series[suspect.index]!;
      const record = classOf.get(suspect.module) ?? targetByName.get(point.node.split(' + ')[0]!)!;
      const source = record.source
        ? {
            file: path.relative(config.baseDir, record.source.file).split(path.sep).join('/'),
            line: record.source.line,
            symbol: record.className,
            kind: 'class' as const,
          }
        : null;
      return {
        rank: rank + 1,
        module: suspect.module,
        op: point.op,
        node: point.node,
        ratio: suspect.ratio,
        ownJump: suspect.ownJump,
        kind: suspect.kind,
        ...(suspect.under ? { under: suspect.under } : {}),
        confidence: suspect.confidence,
        index: suspect.index,
        source,
      };
    });
  }
  const warnings: string[] = [];
  const unmatchedTargets = unmatched.filter((u) => u.side === 'target').length;
  if (series.length === 0) {
    throw new EkkaError(
      'input',
      `no target record could be paired with a reference record (${target.records.length} target, ${reference.records.length} reference records; see mapping rules)`,
      config.file,
    );
  }
  warnings.push(...seriesWarnings(series), ...notes);
  if (config.derivedLowPrecision && config.referenceLowPrecision?.kind === 'pytorch') {
    warnings.push(derivedLowPrecisionNote(config.referenceLowPrecision.dtype));
  }
  if (premiseNotes.length > 0) {
    warnings.push(
      `preset ${config.mapping.preset}: ${premiseNotes.length} rules not applied where the target matches the reference's same-path module better (${premiseNotes.slice(0, 3).join(', ')}${premiseNotes.length > 3 ? ', …' : ''})`,
    );
  }
  if (!tracksInputs) {
    warnings.push(
      "the target's records do not say which values each module read: a module's input is taken as the value compared just before it (Ekka's PyTorch capture records the real inputs)",
    );
  }
  if (unmatchedTargets > 0)
    warnings.push(`${unmatchedTargets} target values not compared (see unmatched)`);
  const result: DiagnosisResult = {
    format: 'ekka-diagnosis',
    version: 1,
    runs: {
      target: runInfo(config.target, target),
      reference: runInfo(config.reference, reference),
      ...(lowPrecision && config.referenceLowPrecision
        ? { referenceLowPrecision: runInfo(config.referenceLowPrecision, lowPrecision) }
        : {}),
    },
    noise: {
      source: usedMeasuredNoise ? 'low-precision-reference' : 'analytic-floor',
      floorFactor,
      floorDType,
    },
    thresholds: reportedThresholds(thresholds),
    series,
    changePoint,
    spikes: detection.spikes,
    suspects,
    unmatched,
    mapping: { preset: config.mapping.preset, pairs: mappingPairs, unmatched },
    warnings,
    comparedOps: 0,
    timings: { totalMs: performance.now() - started, runsMs, lockstep: false },
  };
  if (config.name) result.name = config.name;
  if (config.file) result.config = config.file;
  return result;
}

/** The precision a target run computes in, where its configuration says (dumps do not). */
function computePrecision(run: CapturedRunConfig): FloatDType {
  if (run.kind === 'pytorch') return run.dtype;
  if (run.kind === 'onnx') return run.options.precision ?? 'float32';
  return 'float32';
}
