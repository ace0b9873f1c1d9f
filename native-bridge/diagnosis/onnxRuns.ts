import * as path from 'node:path';
import type { Tensor } from 'onnxruntime-node';
import { errorRatio, RATIO_CAP } from '../compare/errorRatio';
import { comparePair, DEFAULT_COMPARE } from '../compare/metrics';
import { describeCause, EkkaError } from '../errors';
import { findRewiring } from '../localize/rewiring';
import { largestInput, type RankedSuspect } from '../localize/suspects';
import type { ActivationRecord } from '../runners/activationRecord';
import { unscopedShare } from '../onnx/graphStructure';
import { readInputFile } from '../runners/inputFile';
import { relativeKernelLocation, type KernelLocation } from '../source/cppLocator';
import { locateSuspectKernels } from '../source/kernelCalls';
import { PythonSourceLocator, type SourceLocation } from '../source/pythonLocator';
import {
  coarserDType,
  comparisonDType,
  isFloatDType,
  MAX_FINITE,
  toNumberArray,
  type FloatArray,
  type FloatDType,
} from '../tensors/dtypes';
import { derivedLowPrecisionNote, type DiagnosisConfig } from './config';
import { finishDiagnosis, type SuspectDetail } from './finish';
import { runSchedule, type ScheduledRun } from './lockstep';
import {
  lowPrecisionGap as measureGap,
  measurePair,
  SeriesBuilder,
  type LowPrecisionGap,
  type PairTypes,
} from './measure';
import type {
  DiagnosisObserver,
  DiagnosisResult,
  RunRole,
  SeriesPoint,
  UnmatchedRecord,
} from './result';

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
 * The ONNX front-end: runs the reference (and its low-precision twin, when configured), then the
 * target, in lockstep segment by segment, pairing values by key and measuring each target value as
 * it arrives. Its refinement runs the suspects' segments again for their ops and their own ratio,
 * and looks up their source lines.
 */
export async function diagnoseOnnx(
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
  const floorFactor = thresholds.noiseFloorFactor;
  const targetPrecision: FloatDType = config.target.precision ?? 'float32';
  const lowPrecisionDType: FloatDType = config.referenceLowPrecision?.precision ?? 'float32';

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
  const gaps = new Map<string, LowPrecisionGap>();
  const lowPrecisionKeyByName = new Map<string, string>();
  const onLowPrecision = (record: ActivationRecord): void => {
    if (record.boundaryKey) lowPrecisionKeyByName.set(record.name, record.boundaryKey);
    const key = record.boundaryKey ?? record.opKey;
    const ref = record.boundaryKey ? referenceByBoundary.get(key) : referenceByOp.get(key);
    if (!ref || !isFloatDType(record.dtype) || !sameShape(ref.record.shape, record.shape)) return;
    const data = toNumberArray(record.dtype, record.data as ArrayLike<number>);
    const runDType = coarserDType(record.dtype, lowPrecisionDType);
    gaps.set(key, measureGap(data, ref.data, { exact: false, runDType }));
  };

  const series = new SeriesBuilder(observer);
  const unmatched: UnmatchedRecord[] = [];
  const comparedOps: ComparedOp[] = [];
  const seriesIndexByValue = new Map<string, number>();
  const matchedBoundaries = new Set<string>();
  let excusedNonFinite = 0;

  const targetKeyByName = new Map<string, string>();
  /** Reference module outputs of the segments run again for the suspects. */
  const rerunReference = new Map<string, ReferenceValue>();
  const targetBoundaryData = new Map<string, { name: string; data: FloatArray }>();
  /** Target module outputs with no reference twin, by value name: who produced them. */
  const unpairedProducer = new Map<string, { module: string; key: string }>();
  /** The types a target value is measured in. */
  const typesOf = (record: ActivationRecord, ref: ReferenceValue): PairTypes => {
    const exact = !isFloatDType(record.dtype);
    return {
      exact,
      // Integers and bools (positions, indices, masks) must match exactly: any difference diverges.
      strict: true,
      // The precision this value was computed at (a converted graph returns float32 logits).
      runDType: exact ? 'float64' : coarserDType(record.dtype as FloatDType, targetPrecision),
      referenceDType: ref.dtype,
    };
  };
  const measure = (record: ActivationRecord, ref: ReferenceValue, key: string) => {
    const types = typesOf(record, ref);
    const data = toNumberArray(record.dtype, record.data as ArrayLike<number>);
    return { data, types, ...measurePair(data, ref.data, types, gaps.get(key), floorFactor) };
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
    const measured = measure(record, ref, key);
    const { data, metrics, ratio, types } = measured;
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
          comparePair(t, r, { ...DEFAULT_COMPARE, referenceLimit: MAX_FINITE[types.runDType] }),
          undefined,
          coarserDType(types.runDType, ref.dtype),
          { floorFactor },
        ).ratio < thresholds.ratio,
    );
    const unpairedInput = (record.moduleInputs ?? [])
      .map((name) => unpairedProducer.get(name))
      .find((producer) => producer !== undefined);
    const inputs = largestInput(
      series.points,
      (record.moduleInputs ?? []).map((input) => seriesIndexByValue.get(input)),
    );
    seriesIndexByValue.set(record.name, series.length);
    series.add(
      {
        module: record.module,
        call: record.call,
        segment: record.segment,
        key,
        node: record.nodeName,
        op: record.op,
        dtype: record.dtype,
        shape: record.shape,
        ...inputs,
        ...(rewired ? { rewired } : {}),
        ...(unpairedInput ? { unpairedInput } : {}),
      },
      measured,
      data,
      ref.data,
    );
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
    throwIfCancelled();
    if (series.length === 0) {
      const targets = unmatched.filter((u) => u.side === 'target');
      const first = targets[0];
      throw new EkkaError(
        'input',
        `no target value could be paired with a reference value (${targets.length} target, ${unmatched.length - targets.length} reference module outputs unmatched${first ? `; first: ${first.key}: ${first.reason}` : ''})`,
        config.file,
      );
    }
    const warnings: string[] = [];
    if (excusedNonFinite > 0) {
      warnings.push(
        `${excusedNonFinite} module outputs hold NaN/Inf where the reference is finite, and the low-precision reference has them too: precision explains them, so they are not blamed on the target, but their error is not measured`,
      );
    }
    if (config.derivedLowPrecision && config.referenceLowPrecision) {
      warnings.push(derivedLowPrecisionNote(config.referenceLowPrecision.precision ?? 'float32'));
    }
    const unscoped = unscopedShare(schedule.captures.get('target')?.structure.values ?? []);
    if (unscoped) warnings.push(unscoped);
    const resultRuns: DiagnosisResult['runs'] = {
      target: schedule.infos.target!,
      reference: schedule.infos.reference!,
      ...(schedule.infos.referenceLowPrecision
        ? { referenceLowPrecision: schedule.infos.referenceLowPrecision }
        : {}),
    };
    return await finishDiagnosis(
      {
        thresholds,
        baseDir: config.baseDir,
        ...(config.name ? { name: config.name } : {}),
        ...(config.file ? { file: config.file } : {}),
        comparedOps: () => comparedOps.length,
      },
      {
        started,
        series,
        unmatched,
        warnings,
        runs: resultRuns,
        runsMs: schedule.ms,
        lockstep: schedule.lockstep,
      },
      refine,
    );
  } finally {
    await schedule.release();
  }

  /**
   * The suspects' segments run again for every op (the first op whose error exceeds what enters
   * the module names the suspect's op), the top suspect's segment once more on the reference's
   * inputs (its own ratio), and the source lines and kernels of every suspect.
   */
  async function refine(
    ranked: readonly RankedSuspect[],
    points: readonly SeriesPoint[],
    warnings: string[],
  ): Promise<SuspectDetail[]> {
    await compareOpsOfSegments(
      ranked.slice(0, OP_DETAIL_SUSPECTS).map((r) => points[r.index]!.segment),
    );
    const top = points[ranked[0]!.index]!;
    throwIfCancelled();
    const topOwnRatio = await ownRatioOf(top);
    throwIfCancelled();
    comparedOps.sort((a, b) => a.seq - b.seq);
    const locations = await locateSources(
      config,
      ranked.map((s) => s.module),
      warnings,
    );
    return ranked.map((suspect, rank) => {
      const point = points[suspect.index]!;
      const bar = thresholds.ratio * Math.max(point.inputRatio, 1);
      const firstDivergentOp = comparedOps.find(
        (op) => op.module === suspect.module && op.ratio >= bar,
      );
      const { source: location, kernel } = locations[rank] ?? {};
      return {
        ...(firstDivergentOp ? { op: firstDivergentOp.op, node: firstDivergentOp.node } : {}),
        source: location ? relativeLocation(location, config.baseDir) : null,
        ...(kernel ? { kernel: relativeKernelLocation(kernel, config.baseDir) } : {}),
        ...(rank === 0 && topOwnRatio !== undefined ? { ownRatio: topOwnRatio } : {}),
      };
    });
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
