import {
  countMismatches,
  discreteRatio,
  errorRatio,
  RATIO_CAP,
  type ErrorRatio,
} from '../compare/errorRatio';
import { comparePair, DEFAULT_COMPARE, unflattenIndex, type PairMetrics } from '../compare/metrics';
import {
  coarserDType,
  comparisonDType,
  isFloatDType,
  MAX_FINITE,
  roundingErrorNorm,
  type FloatArray,
  type FloatDType,
} from '../tensors/dtypes';
import type { DiagnosisObserver, SeriesPoint } from './result';

/**
 * Every run kind hands this stage aligned pairs (target value, reference value, and what the
 * low-precision reference left of the same value); it measures each and builds the series point.
 */

/** What the low-precision reference's value leaves of itself: its distance from the reference. */
export interface LowPrecisionGap {
  metrics: PairMetrics;
  /** Elements that differ, for integer and boolean values (a router's top-k indices). */
  mismatches: number;
}

/** The types one pair is measured in. */
export interface PairTypes {
  /** Integer or boolean values: counted mismatches, not norms. */
  exact: boolean;
  /**
   * Exact values where any mismatch diverges, whatever the low-precision reference flips (ONNX
   * graphs); otherwise mismatches are read against those precision alone flips.
   */
  strict?: boolean;
  /**
   * The precision the target computed the value at: the coarser of its storage type and the run's
   * (a converted graph returns float32 logits of float16 values).
   */
  runDType: FloatDType;
  /** The reference value's type as compared. */
  referenceDType: FloatDType;
}

export interface Measured {
  /** Integer or boolean values, compared by mismatches (PairTypes.exact). */
  exact: boolean;
  metrics: PairMetrics;
  ratio: ErrorRatio;
  /** The type the noise was read at (the analytic floor's when no gap was measured). */
  noiseDType: FloatDType;
}

/**
 * The low-precision reference's distance from the reference, measured as the target's will be
 * (finite reference values clamped to what the low-precision type holds).
 */
export function lowPrecisionGap(
  low: FloatArray,
  reference: FloatArray,
  types: Pick<PairTypes, 'exact' | 'runDType'>,
): LowPrecisionGap {
  const limit = types.exact ? Infinity : MAX_FINITE[types.runDType];
  return {
    metrics: comparePair(low, reference, { ...DEFAULT_COMPARE, referenceLimit: limit }),
    mismatches: types.exact ? countMismatches(low, reference) : 0,
  };
}

/**
 * Metrics and the robust error ratio of one pair. Floats: the target's distance over the noise
 * (the low-precision gap guarded by the reference's own rounding, else the analytic floor).
 * Integers and booleans: mismatching elements over those precision alone flips (see
 * compare/errorRatio), or any mismatch where `strict`.
 */
export function measurePair(
  target: FloatArray,
  reference: FloatArray,
  types: PairTypes,
  gap: LowPrecisionGap | undefined,
  floorFactor: number,
): Measured {
  const noiseDType = coarserDType(types.runDType, types.referenceDType);
  if (types.exact) {
    const metrics = comparePair(target, reference, DEFAULT_COMPARE);
    const mismatches = countMismatches(target, reference);
    const ratio: ErrorRatio = types.strict
      ? { ratio: mismatches > 0 ? RATIO_CAP : 0, noise: 0, noiseSource: 'analytic-floor' }
      : discreteRatio(mismatches, gap?.mismatches, metrics.elements);
    return { exact: true, metrics, ratio, noiseDType };
  }
  const metrics = comparePair(target, reference, {
    ...DEFAULT_COMPARE,
    referenceLimit: MAX_FINITE[types.runDType],
  });
  const ratio = errorRatio(metrics, gap?.metrics, noiseDType, {
    floorFactor,
    roundingNorm: gap ? roundingErrorNorm(reference, types.runDType) : undefined,
  });
  return { exact: false, metrics, ratio, noiseDType };
}

/**
 * The types a captured pair is measured in. A value the target holds in float32 inside a
 * low-precision run (a router's softmax over bfloat16 logits) carries the run's rounding: its
 * noise is the coarser of the two.
 */
export function pairTypes(
  targetDType: string,
  referenceDType: string,
  targetPrecision: FloatDType,
): PairTypes {
  const exact = !isFloatDType(targetDType);
  return {
    exact,
    runDType: exact ? 'float64' : coarserDType(comparisonDType(targetDType), targetPrecision),
    referenceDType: comparisonDType(referenceDType),
  };
}

/** A captured value: its values and its storage type. */
interface Value {
  data: FloatArray;
  dtype: string;
}

/**
 * One value of a rerun (a graft, an op of a drill-down) against the reference's, read over the
 * low-precision reference's same value where there is one (else the analytic floor). Undefined
 * when the sizes differ.
 */
export function measureRecords(
  target: Value,
  reference: Value,
  low: Value | undefined,
  targetPrecision: FloatDType,
  floorFactor: number,
): Measured | undefined {
  const n = reference.data.length;
  if (target.data.length !== n) return undefined;
  const types = pairTypes(target.dtype, reference.dtype, targetPrecision);
  const gap =
    low && low.data.length === n ? lowPrecisionGap(low.data, reference.data, types) : undefined;
  return measurePair(target.data, reference.data, types, gap, floorFactor);
}

/** Where a point sits and what it was computed from: everything a front-end knows of it. */
export type PointPlace = Pick<
  SeriesPoint,
  'module' | 'call' | 'segment' | 'key' | 'node' | 'op' | 'dtype' | 'shape' | 'inputRatio'
> &
  Partial<
    Pick<
      SeriesPoint,
      'inputIndex' | 'decisionInput' | 'source' | 'rewired' | 'unpairedInput' | 'ownRatio'
    >
  >;

/**
 * The series as it grows: builds each point from its measurement, streams it to the observer, and
 * keeps which noise the series was read against.
 */
export class SeriesBuilder {
  readonly points: SeriesPoint[] = [];
  private measuredNoise = false;
  private floorDType: FloatDType = 'float32';

  constructor(private readonly observer: DiagnosisObserver) {}

  get length(): number {
    return this.points.length;
  }

  add(
    place: PointPlace,
    { exact, metrics, ratio, noiseDType }: Measured,
    target: FloatArray,
    reference: FloatArray,
  ): SeriesPoint {
    if (ratio.noiseSource === 'low-precision-reference') this.measuredNoise = true;
    else if (!exact) this.floorDType = coarserDType(this.floorDType, noiseDType);
    const { inputRatio, inputIndex, decisionInput, source, rewired, unpairedInput, ...at } = place;
    const point: SeriesPoint = {
      index: this.points.length,
      ...at,
      ratio: ratio.ratio,
      relativeL2Error: metrics.relativeL2Error,
      cosineSimilarity: metrics.cosineSimilarity,
      maxAbsError: metrics.maxAbsError,
      maxAbsErrorIndex:
        metrics.maxAbsErrorIndex < 0 ? [] : unflattenIndex(metrics.maxAbsErrorIndex, place.shape),
      noiseSource: ratio.noiseSource,
      ...(ratio.noiseDof !== undefined ? { noiseDof: ratio.noiseDof } : {}),
      inputRatio,
      ...(inputIndex !== undefined ? { inputIndex } : {}),
      ...(decisionInput !== undefined ? { decisionInput } : {}),
      ...(source ? { source } : {}),
      ...(rewired ? { rewired } : {}),
      ...(unpairedInput ? { unpairedInput } : {}),
      target: metrics.target,
      reference: metrics.reference,
      nonFiniteMismatches: metrics.nonFiniteMismatches,
      toleranceViolations: metrics.toleranceViolations,
    };
    this.points.push(point);
    this.observer.compared?.(point, target, reference);
    this.observer.point?.(point);
    return point;
  }

  /** The noise the result reports: measured when any point used the low-precision reference. */
  noise(floorFactor: number): {
    source: 'low-precision-reference' | 'analytic-floor';
    floorFactor: number;
    floorDType: FloatDType;
  } {
    return {
      source: this.measuredNoise ? 'low-precision-reference' : 'analytic-floor',
      floorFactor,
      floorDType: this.floorDType,
    };
  }
}
