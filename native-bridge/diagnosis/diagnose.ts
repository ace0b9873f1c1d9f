import * as path from 'node:path';
import type { Tensor } from 'onnxruntime-node';
import { errorRatio, RATIO_CAP, type ErrorRatio } from '../compare/errorRatio';
import { comparePair, DEFAULT_COMPARE, unflattenIndex, type PairMetrics } from '../compare/metrics';
import { describeCause, EkkaError } from '../errors';
import { findRewiring } from '../localize/rewiring';
import { largestInput } from '../localize/suspects';
import type { ActivationRecord } from '../runners/activationRecord';
import type { ProducedValue } from '../onnx/graphStructure';
import { readInputFile } from '../runners/inputFile';
import type { OnnxRunInfo } from '../runners/onnxRunner';
import { relativeKernelLocation, type KernelLocation } from '../source/cppLocator';
import { locateSuspectKernels } from '../source/kernelCalls';
import { PythonSourceLocator, type SourceLocation } from '../source/pythonLocator';
import {
  coarserDType,
  isFloatDType,
  MAX_FINITE,
  roundingErrorNorm,
  toFloatArray,
  toNumberArray,
  comparisonDType,
  type FloatArray,
  type FloatDType,
} from '../tensors/dtypes';
import { derivedLowPrecisionNote, type DiagnosisConfig } from './config';
import { localizeSeries, reportedThresholds, seriesWarnings } from './localization';
import { runSchedule, type RunRole, type ScheduledRun } from './lockstep';
import type { DiagnosisResult, SeriesPoint, Suspect, UnmatchedRecord } from './result';

export type { RunRole };

/**
 * Source locations of `modules`, in order, with the custom kernel (C++/CUDA) each one runs where the
 * source folders hold it; a lookup that fails becomes a warning and null.
 */
async function locateSources(
  config: DiagnosisConfig,
  modules: readonly string[],
  warnings: string[],
): Promise<{ source?: SourceLocation; kernel?: KernelLocation }[]> {
  if (!config.source || modules.length === 0) return modules.map(() => ({}));
  let locator: PythonSourceLocator | undefined;
  let found: { source?: SourceLocation; kernel?: KernelLocation }[];
  try {
    locator = await PythonSourceLocator.create(config.source);
    found = [];
    // One at a time: the locator's parser is not reentrant.
    for (const module of modules) found.push({ source: await locator.locate(module) });
  } catch (cause) {
    warnings.push(`source lines not found: ${describeCause(cause)}`);
    found = modules.map(() => ({}));
  } finally {
    locator?.dispose();
  }
  try {
    const located = await locateSuspectKernels(
      config.source.searchPaths,
      modules.map((module, i) => ({ module, source: found[i]!.source })),
      config.target.model,
    );
    located.kernels.forEach((kernel, i) => {
      if (kernel) found[i]!.kernel = kernel;
    });
    warnings.push(...located.warnings);
  } catch (cause) {
    warnings.push(`kernel sources not found: ${describeCause(cause)}`);
  }
  return found;
}

export function relativeLocation(location: SourceLocation, baseDir: string): SourceLocation {
  const relative = (file: string) => path.relative(baseDir, file).split(path.sep).join('/');
  const result: SourceLocation = { ...location, file: relative(location.file) };
  if (location.constructedAt) {
    result.constructedAt = {
      ...location.constructedAt,
      file: relative(location.constructedAt.file),
    };
  }
  return result;
}

/** Callbacks for progress; `point` fires once per compared module output, as soon as it exists. */
export interface DiagnosisObserver {
  runStarted?(role: RunRole, info: OnnxRunInfo): void;
  /** A run has run its next segment; its comparisons follow. */
  segmentRan?(role: RunRole, segment: number): void;
  point?(point: SeriesPoint): void;
  /** With each point: the two values it compared (valid only during the call). */
  compared?(point: SeriesPoint, target: FloatArray, reference: FloatArray): void;
}

interface ReferenceValue {
  record: ActivationRecord;
  dtype: FloatDType;
  data: FloatArray;
}

interface ComparedOp {
  /** Position in the run's execution order. */
  seq: number;
  module: string;
  node: string;
  op: string;
  ratio: number;
}

/**
 * A warning when most of a graph's ops belong to no module: the exporter kept no scopes the
 * engine reads, so the series collapses onto the root and a suspect cannot name a module.
 */
export function unscopedShare(values: readonly ProducedValue[]): string | undefined {
  if (values.length < 20) return undefined;
  const unscoped = values.filter((v) => v.node.module === '').length;
  if (unscoped / values.length < 0.5) return undefined;
  return `${unscoped} of ${values.length} values belong to no module: the model's node names and metadata carry no module scopes the engine reads (TorchScript-style '/model/layers.0/...' names, or the dynamo exporter's pkg.torch.onnx.name_scopes), so modules cannot be told apart and suspects name the root`;
}

/** Suspects whose segments are run again to name the op inside them. */
const OP_DETAIL_SUSPECTS = 3;

/** A reference record as the comparisons read it: numbers, and the type they are compared in. */
function referenceValue(record: ActivationRecord): ReferenceValue {
  return {
    record,
    dtype: comparisonDType(record.dtype),
    data: toNumberArray(record.dtype, record.data as ArrayLike<number>),
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Runs the reference (and its low-precision twin, when configured), then the target, comparing
 * each target value with its reference as it arrives; localizes the first persistent divergence
 * and names the suspects' source lines.
 */
export async function runDiagnosis(
  config: DiagnosisConfig,
  observer: DiagnosisObserver = {},
  signal?: AbortSignal,
): Promise<DiagnosisResult> {
  const started = performance.now();
  /** Between steps: a cancelled diagnosis stops at the next one. */
  const throwIfCancelled = (): void => {
    if (signal?.aborted) throw new EkkaError('cancelled', 'diagnosis cancelled');
  };
  const inputs = await readInputFile(config.input);
  const thresholds = config.thresholds;

  const referenceByOp = new Map<string, ReferenceValue>();
  const referenceByBoundary = new Map<string, ReferenceValue>();
  const referenceKeyByName = new Map<string, string>();
  const referenceInputKeys = new Map<string, string[]>();
  const onReference = (record: ActivationRecord): void => {
    const value = referenceValue(record);
    referenceByOp.set(record.opKey, value);
    if (record.boundaryKey) {
      referenceByBoundary.set(record.boundaryKey, value);
      referenceKeyByName.set(record.name, record.boundaryKey);
      referenceInputKeys.set(
        record.boundaryKey,
        (record.moduleInputs ?? []).flatMap((name) => referenceKeyByName.get(name) ?? []),
      );
    }
  };

  // The low-precision reference is reduced to its distance from the reference right away.
  const lowPrecisionGap = new Map<string, PairMetrics>();
  const lowPrecisionDType: FloatDType = config.referenceLowPrecision?.precision ?? 'float32';
  const lowPrecisionKeyByName = new Map<string, string>();
  const onLowPrecision = (record: ActivationRecord): void => {
    if (record.boundaryKey) lowPrecisionKeyByName.set(record.name, record.boundaryKey);
    const key = record.boundaryKey ?? record.opKey;
    const ref = record.boundaryKey ? referenceByBoundary.get(key) : referenceByOp.get(key);
    if (!ref || !isFloatDType(record.dtype) || !sameShape(ref.record.shape, record.shape)) return;
    const data = toFloatArray(record.dtype, record.data as ArrayLike<number>);
    const limit = MAX_FINITE[coarserDType(record.dtype, lowPrecisionDType)];
    lowPrecisionGap.set(
      key,
      comparePair(data, ref.data, { ...DEFAULT_COMPARE, referenceLimit: limit }),
    );
  };

  const series: SeriesPoint[] = [];
  const unmatched: UnmatchedRecord[] = [];
  const comparedOps: ComparedOp[] = [];
  const seriesIndexByValue = new Map<string, number>();
  const matchedBoundaries = new Set<string>();
  const floorFactor = thresholds.noiseFloorFactor;
  const targetPrecision: FloatDType = config.target.precision ?? 'float32';
  let excusedNonFinite = 0;
  let usedMeasuredNoise = false;
  let floorDType: FloatDType = 'float32';

  const targetKeyByName = new Map<string, string>();
  /** Reference module outputs of the segments run again for the suspects. */
  const rerunReference = new Map<string, ReferenceValue>();
  const targetBoundaryData = new Map<string, { name: string; data: FloatArray }>();
  /** Target module outputs with no reference twin, by value name: who produced them. */
  const unpairedProducer = new Map<string, { module: string; key: string }>();
  /** Compares a target value with its reference: metrics and robust error ratio. */
  const measure = (record: ActivationRecord, ref: ReferenceValue, key: string) => {
    const exact = !isFloatDType(record.dtype);
    const data = toNumberArray(record.dtype, record.data as ArrayLike<number>);
    // The precision this value was computed at (a converted graph returns float32 logits).
    const runDType = exact ? 'float64' : coarserDType(record.dtype as FloatDType, targetPrecision);
    const compareOptions = { ...DEFAULT_COMPARE, referenceLimit: MAX_FINITE[runDType] };
    const metrics = comparePair(data, ref.data, compareOptions);
    const gap = lowPrecisionGap.get(key);
    // Without a measured gap the floor follows the coarsest precision involved: the record's storage
    // type, the target run's precision (a converted graph returns float32 logits of float16 values)
    // and the reference's.
    const dtype = gap ? ref.dtype : coarserDType(runDType, ref.dtype);
    if (!exact) floorDType = coarserDType(floorDType, dtype);
    // Integers and bools (positions, indices, masks) must match exactly: any difference diverges.
    const ratio: ErrorRatio = exact
      ? { ratio: metrics.diffNorm > 0 ? RATIO_CAP : 0, noise: 0, noiseSource: 'analytic-floor' }
      : errorRatio(metrics, gap, dtype, {
          floorFactor,
          roundingNorm: gap ? roundingErrorNorm(ref.data, runDType) : undefined,
        });
    return { data, metrics, ratio, runDType, compareOptions };
  };

  const comparedSeqs = new Set<number>();
  const onTarget = (record: ActivationRecord): void => {
    // A segment run again for its ops returns values the main pass compared already.
    if (comparedSeqs.has(record.seq)) return;
    comparedSeqs.add(record.seq);
    const key = record.boundaryKey ?? record.opKey;
    if (record.boundaryKey) targetKeyByName.set(record.name, record.boundaryKey);
    const ref = record.boundaryKey ? referenceByBoundary.get(key) : referenceByOp.get(key);
    if (!ref || !sameShape(ref.record.shape, record.shape)) {
      if (record.boundaryKey) {
        // Kept for the rewiring check: a module reading a value the reference has no twin of. A
        // mask or index the target builds in another form (a boolean mask where the reference adds
        // a float one) is a representation, not a missing op: only float values are blamed.
        if (isFloatDType(record.dtype)) {
          targetBoundaryData.set(key, {
            name: record.name,
            data: toNumberArray(record.dtype, record.data as ArrayLike<number>),
          });
          unpairedProducer.set(record.name, { module: record.module, key });
        }
        unmatched.push({
          side: 'target',
          key,
          module: record.module,
          node: record.nodeName,
          reason: ref
            ? `shape differs: target [${record.shape.join(', ')}], reference [${ref.record.shape.join(', ')}]`
            : 'no reference value with this key',
        });
      }
      return;
    }
    const { data, metrics, ratio, runDType, compareOptions } = measure(record, ref, key);
    if (ratio.noiseSource === 'low-precision-reference') usedMeasuredNoise = true;
    if (record.boundaryKey && metrics.nonFiniteMismatches > 0 && ratio.ratio < RATIO_CAP)
      excusedNonFinite++;
    comparedOps.push({
      seq: record.seq,
      module: record.module,
      node: record.nodeName,
      op: record.op,
      ratio: ratio.ratio,
    });
    if (!record.boundaryKey) return;

    matchedBoundaries.add(key);
    targetBoundaryData.set(key, { name: record.name, data });
    const rewired = findRewiring(
      record.module,
      (record.moduleInputs ?? []).flatMap((name) => {
        const inputKey = targetKeyByName.get(name);
        const value = inputKey && targetBoundaryData.get(inputKey)?.data;
        return inputKey && value ? [{ key: inputKey, value }] : [];
      }),
      (referenceInputKeys.get(key) ?? []).flatMap((inputKey) => {
        const value = referenceByBoundary.get(inputKey)?.data;
        return value ? [{ key: inputKey, value }] : [];
      }),
      (t, r) =>
        t.length === r.length &&
        errorRatio(
          comparePair(t, r, compareOptions),
          undefined,
          coarserDType(runDType, ref.dtype),
          {
            floorFactor,
          },
        ).ratio < thresholds.ratio,
    );
    const unpairedInput = (record.moduleInputs ?? [])
      .map((name) => unpairedProducer.get(name))
      .find((producer) => producer !== undefined);
    const inputs = largestInput(
      series,
      (record.moduleInputs ?? []).map((input) => seriesIndexByValue.get(input)),
    );
    seriesIndexByValue.set(record.name, series.length);
    const point: SeriesPoint = {
      index: series.length,
      module: record.module,
      call: record.call,
      segment: record.segment,
      key,
      node: record.nodeName,
      op: record.op,
      dtype: record.dtype,
      shape: record.shape,
      ratio: ratio.ratio,
      relativeL2Error: metrics.relativeL2Error,
      cosineSimilarity: metrics.cosineSimilarity,
      maxAbsError: metrics.maxAbsError,
      maxAbsErrorIndex:
        metrics.maxAbsErrorIndex < 0 ? [] : unflattenIndex(metrics.maxAbsErrorIndex, record.shape),
      noiseSource: ratio.noiseSource,
      ...inputs,
      ...(rewired ? { rewired } : {}),
      ...(unpairedInput ? { unpairedInput } : {}),
      target: metrics.target,
      reference: metrics.reference,
      nonFiniteMismatches: metrics.nonFiniteMismatches,
      toleranceViolations: metrics.toleranceViolations,
    };
    series.push(point);
    observer.compared?.(point, data, ref.data);
    observer.point?.(point);
  };

  // Segment by segment: the reference's values of a segment are compared with the target's and
  // dropped, except those a later segment reads (module inputs for the rewiring check).
  const dropSettled = (live: ReadonlyMap<RunRole, ReadonlySet<string>>, final: boolean): void => {
    const referenceLive = live.get('reference') ?? new Set<string>();
    const targetLive = live.get('target') ?? new Set<string>();
    for (const [key, value] of referenceByBoundary) {
      if (referenceLive.has(value.record.name)) continue;
      if (!matchedBoundaries.has(key)) {
        // The target may still produce it in a later segment (its graph may be ordered otherwise).
        if (!final) continue;
        unmatched.push({
          side: 'reference',
          key,
          module: value.record.module,
          node: value.record.nodeName,
          reason: 'no target value with this key',
        });
      }
      referenceByBoundary.delete(key);
    }
    referenceByOp.clear();
    for (const [key, value] of targetBoundaryData) {
      if (!targetLive.has(value.name)) targetBoundaryData.delete(key);
    }
  };
  const runs: ScheduledRun[] = [
    { role: 'reference', options: config.reference, onRecord: onReference },
  ];
  if (config.referenceLowPrecision) {
    runs.push({
      role: 'referenceLowPrecision',
      options: config.referenceLowPrecision,
      onRecord: onLowPrecision,
    });
  }
  runs.push({ role: 'target', options: config.target, onRecord: onTarget });
  const schedule = await runSchedule(runs, inputs, {
    runStarted: (role, info) => observer.runStarted?.(role, info),
    segmentRan: (role, segment) => observer.segmentRan?.(role, segment),
    afterSegment: dropSettled,
    signal,
    detail: 'modules',
  });
  try {
    return await localize();
  } finally {
    await schedule.release();
  }

  /** Change point, suspects (their segments run again for every op), source lines, the result. */
  async function localize(): Promise<DiagnosisResult> {
    throwIfCancelled();
    let topOwnRatio: number | undefined;
    const warnings: string[] = [];
    if (excusedNonFinite > 0) {
      warnings.push(
        `${excusedNonFinite} module outputs hold NaN/Inf where the reference is finite, and the low-precision reference has them too: precision explains them, so they are not blamed on the target, but their error is not measured`,
      );
    }
    if (series.length === 0) {
      const targets = unmatched.filter((u) => u.side === 'target');
      const first = targets[0];
      throw new EkkaError(
        'input',
        `no target value could be paired with a reference value (${targets.length} target, ${unmatched.length - targets.length} reference module outputs unmatched${first ? `; first: ${first.key}: ${first.reason}` : ''})`,
        config.file,
      );
    }
    warnings.push(...seriesWarnings(series));
    if (config.derivedLowPrecision && config.referenceLowPrecision) {
      warnings.push(derivedLowPrecisionNote(config.referenceLowPrecision.precision ?? 'float32'));
    }
    const unscoped = unscopedShare(schedule.captures.get('target')?.structure.values ?? []);
    if (unscoped) warnings.push(unscoped);
    const { detection, ranked, changePoint, notes } = localizeSeries(series, thresholds);
    warnings.push(...notes);
    let suspects: Suspect[] = [];
    if (ranked.length > 0) {
      await compareOpsOfSegments(
        ranked.slice(0, OP_DETAIL_SUSPECTS).map((r) => series[r.index]!.segment),
      );
      const top = ranked[0] && series[ranked[0].index];
      throwIfCancelled();
      topOwnRatio = top ? await ownRatioOf(top) : undefined;
      throwIfCancelled();
      comparedOps.sort((a, b) => a.seq - b.seq);
      const locations = await locateSources(
        config,
        ranked.map((s) => s.module),
        warnings,
      );
      suspects = ranked.map((suspect, rank) => {
        const point = series[suspect.index]!;
        // The first op in the module whose error exceeds what enters the module by the threshold.
        const bar = thresholds.ratio * Math.max(point.inputRatio, 1);
        const firstDivergentOp = comparedOps.find(
          (op) => op.module === suspect.module && op.ratio >= bar,
        );
        const { source: location, kernel } = locations[rank] ?? {};
        return {
          rank: rank + 1,
          module: suspect.module,
          op: firstDivergentOp?.op ?? point.op,
          node: firstDivergentOp?.node ?? point.node,
          ratio: suspect.ratio,
          ownJump: suspect.ownJump,
          kind: suspect.kind,
          ...(suspect.under ? { under: suspect.under } : {}),
          ...(rank === 0 && topOwnRatio !== undefined ? { ownRatio: topOwnRatio } : {}),
          confidence: suspect.confidence,
          index: suspect.index,
          source: location ? relativeLocation(location, config.baseDir) : null,
          ...(kernel ? { kernel: relativeKernelLocation(kernel, config.baseDir) } : {}),
        };
      });
    }

    const result: DiagnosisResult = {
      format: 'ekka-diagnosis',
      version: 1,
      runs: { target: schedule.infos.target!, reference: schedule.infos.reference! },
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
      warnings,
      comparedOps: comparedOps.length,
      timings: {
        totalMs: performance.now() - started,
        runsMs: schedule.ms,
        lockstep: schedule.lockstep,
      },
    };
    if (schedule.infos.referenceLowPrecision) {
      result.runs.referenceLowPrecision = schedule.infos.referenceLowPrecision;
    }
    if (config.name) result.name = config.name;
    if (config.file) result.config = config.file;
    return result;
  }

  /**
   * Own error vs inherited: the suspect's segment runs in the target again, fed the reference's
   * inputs for that segment. A module that still diverges there starts the error itself; one that
   * does not got it from an earlier segment. Undefined where runs are not partitioned in lockstep or
   * the inputs differ in type or shape (a low-precision target fed float32 references, say).
   */
  async function ownRatioOf(point: SeriesPoint): Promise<number | undefined> {
    const target = schedule.captures.get('target');
    const targetInputs = target?.segmentInputs(point.segment);
    const ref = rerunReference.get(point.key);
    if (!schedule.lockstep || !target || !targetInputs || !ref) return undefined;
    // The reference's inputs, else (a low-precision target) the low-precision reference's.
    const sources: [RunRole, Map<string, string>][] = [
      ['reference', referenceKeyByName],
      ['referenceLowPrecision', lowPrecisionKeyByName],
    ];
    const feeds = sources
      .map(([role, keyByName]) => inputsFrom(role, keyByName, point.segment, targetInputs))
      .find((found) => found !== undefined);
    if (!feeds) return undefined;
    const records = await target.runSegmentOn(point.segment, feeds, 'modules');
    const record = records.find((r) => r.boundaryKey === point.key);
    return record ? measure(record, ref, point.key).ratio.ratio : undefined;
  }

  /** Another run's inputs for the target's segment, matched by key; undefined unless all fit. */
  function inputsFrom(
    role: RunRole,
    keyByName: ReadonlyMap<string, string>,
    segment: number,
    targetInputs: Readonly<Record<string, Tensor>>,
  ): Record<string, Tensor> | undefined {
    const inputs = schedule.captures.get(role)?.segmentInputs(segment);
    if (!inputs) return undefined;
    const nameByKey = new Map([...keyByName].map(([name, key]) => [key, name]));
    const feeds: Record<string, Tensor> = {};
    for (const [name, tensor] of Object.entries(targetInputs)) {
      const key = targetKeyByName.get(name);
      const given = inputs[key ? (nameByKey.get(key) ?? '') : name];
      if (!given || given.type !== tensor.type || given.dims.join() !== tensor.dims.join()) {
        return undefined;
      }
      feeds[name] = given;
    }
    return feeds;
  }

  /**
   * A partitioned run compared module outputs only; the segments holding the suspects run again
   * with every op exposed (from the inputs each run gave them), and their ops are compared.
   */
  async function compareOpsOfSegments(segments: readonly number[]): Promise<void> {
    const target = schedule.captures.get('target');
    if (!schedule.lockstep || target?.info.capture !== 'partitioned') return;
    for (const k of [...new Set(segments)]) {
      for (const run of runs) {
        throwIfCancelled();
        const records = await schedule.captures.get(run.role)!.rerunSegment(k);
        for (const record of records) {
          if (!record.boundaryKey && isFloatDType(record.dtype)) run.onRecord(record);
          if (run.role === 'reference' && record.boundaryKey) {
            rerunReference.set(record.boundaryKey, referenceValue(record));
          }
        }
      }
      referenceByOp.clear();
    }
  }
}
