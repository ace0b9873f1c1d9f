import type { FloatArray } from '../tensors/dtypes';

/** Counts of non-finite values on one side of a comparison. */
export interface NonFiniteCounts {
  nan: number;
  inf: number;
}

/** Everything measured on one aligned pair of activations, in one pass over both arrays. */
export interface PairMetrics {
  elements: number;
  /** ||t - r||₂ over positions where both sides are finite. */
  diffNorm: number;
  /** ||r||₂ over the same positions. */
  referenceNorm: number;
  /** ||t - r|| / ||r||; 0 when both are zero, Infinity when only the reference is zero. */
  relativeL2Error: number;
  /** t·r / (||t|| ||r||); 1 when both are all zero, 0 when exactly one is. */
  cosineSimilarity: number;
  maxAbsError: number;
  /** Flat index of the largest absolute difference (-1 when no finite pair exists). */
  maxAbsErrorIndex: number;
  target: NonFiniteCounts;
  reference: NonFiniteCounts;
  /** Elements outside |t − r| ≤ atol + rtol·|r| (non-finite mismatches included). */
  toleranceViolations: number;
  /** Positions where exactly one side is non-finite, or both are but differ (NaN vs ±Inf, +Inf vs -Inf). */
  nonFiniteMismatches: number;
}

/**
 * Compares a target activation with its reference. Sums are accumulated in float64. Non-finite
 * values are counted, never folded into the norms: a position where both sides hold the same
 * infinity (an additive mask, say) or both hold NaN agrees; any other non-finite position is a
 * mismatch.
 */
export interface CompareOptions {
  /** Elementwise tolerances for `toleranceViolations`. */
  atol: number;
  rtol: number;
  /**
   * Finite reference values are clamped to ±referenceLimit first: the largest value the target's
   * type can hold. A float32 mask sentinel (−3.4e38) and its float16 saturation (−65504) then agree,
   * and the comparison measures what a run of the target's type could have got right.
   */
  referenceLimit: number;
}

/** Polygraphy's default tolerances, no clamping. */
export const DEFAULT_COMPARE: CompareOptions = { atol: 1e-5, rtol: 1e-5, referenceLimit: Infinity };

export function comparePair(
  target: FloatArray,
  reference: FloatArray,
  { atol, rtol, referenceLimit }: CompareOptions = DEFAULT_COMPARE,
): PairMetrics {
  if (target.length !== reference.length) {
    throw new RangeError(`element counts differ: ${target.length} vs ${reference.length}`);
  }
  let diffSq = 0;
  let refSq = 0;
  let targetSq = 0;
  let dot = 0;
  let maxAbs = 0;
  let maxIndex = -1;
  let tNan = 0;
  let tInf = 0;
  let rNan = 0;
  let rInf = 0;
  let mismatches = 0;
  let violations = 0;
  for (let i = 0; i < target.length; i++) {
    const t = target[i]!;
    const raw = reference[i]!;
    const r = raw > referenceLimit ? referenceLimit : raw < -referenceLimit ? -referenceLimit : raw;
    if (Number.isFinite(t) && Number.isFinite(r)) {
      const d = t - r;
      diffSq += d * d;
      refSq += r * r;
      targetSq += t * t;
      dot += t * r;
      const a = Math.abs(d);
      if (a > atol + rtol * Math.abs(r)) violations++;
      if (a > maxAbs || maxIndex < 0) {
        maxAbs = a;
        maxIndex = i;
      }
      continue;
    }
    if (Number.isNaN(t)) tNan++;
    else if (!Number.isFinite(t)) tInf++;
    if (Number.isNaN(r)) rNan++;
    else if (!Number.isFinite(r)) rInf++;
    const agree = t === r || (Number.isNaN(t) && Number.isNaN(r));
    if (!agree) {
      mismatches++;
      violations++;
    }
  }
  const diffNorm = Math.sqrt(diffSq);
  const referenceNorm = Math.sqrt(refSq);
  const targetNorm = Math.sqrt(targetSq);
  let cosineSimilarity: number;
  if (referenceNorm === 0 && targetNorm === 0) cosineSimilarity = 1;
  else if (referenceNorm === 0 || targetNorm === 0) cosineSimilarity = 0;
  else cosineSimilarity = dot / (referenceNorm * targetNorm);
  return {
    elements: target.length,
    diffNorm,
    referenceNorm,
    relativeL2Error: referenceNorm > 0 ? diffNorm / referenceNorm : diffNorm > 0 ? Infinity : 0,
    cosineSimilarity,
    maxAbsError: maxAbs,
    maxAbsErrorIndex: maxIndex,
    target: { nan: tNan, inf: tInf },
    reference: { nan: rNan, inf: rInf },
    nonFiniteMismatches: mismatches,
    toleranceViolations: violations,
  };
}

/** A flat index as a multi-dimensional one (row-major), for messages such as "[0, 3, 17]". */
export function unflattenIndex(flat: number, shape: readonly number[]): number[] {
  const index = new Array<number>(shape.length).fill(0);
  let rest = flat;
  for (let axis = shape.length - 1; axis >= 0; axis--) {
    const size = shape[axis]!;
    index[axis] = size > 0 ? rest % size : 0;
    rest = size > 0 ? Math.floor(rest / size) : 0;
  }
  return index;
}
