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
  /**
   * How many elements carry the difference: (Σd²)² / Σd⁴, the participation ratio. n when every
   * element differs alike, 1 when one element holds it all, 0 when nothing differs. A norm read
   * from few such elements is a rough estimate (see localize/samplingBand).
   */
  effectiveElements: number;
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

/**
 * A finite reference value clamped to ±limit; ±Inf and NaN pass unchanged, so that an infinity
 * both runs hold (a `masked_fill(-inf)` mask) agrees instead of reading as a mismatch.
 */
function clampFinite(r: number, limit: number): number {
  return r - r === 0 ? Math.min(limit, Math.max(-limit, r)) : r;
}

/** Polygraphy's default tolerances, no clamping. */
export const DEFAULT_COMPARE: CompareOptions = { atol: 1e-5, rtol: 1e-5, referenceLimit: Infinity };

export function comparePair(
  target: FloatArray,
  reference: FloatArray,
  options: CompareOptions = DEFAULT_COMPARE,
): PairMetrics {
  if (target.length !== reference.length) {
    throw new RangeError(`element counts differ: ${target.length} vs ${reference.length}`);
  }
  // Optimistic: one branch-free pass; NaN or ±Inf anywhere shows in its sums, then the careful pass.
  return fastPass(target, reference, options) ?? carefulPass(target, reference, options);
}

interface Sums {
  diffSq: number;
  diffFourth: number;
  refSq: number;
  targetSq: number;
  dot: number;
  maxAbs: number;
  maxIndex: number;
  violations: number;
}

/** NaN/Inf counts per side and mismatching positions, as a pass tallies them. */
interface NonFiniteTally {
  tNan: number;
  tInf: number;
  rNan: number;
  rInf: number;
  mismatches: number;
}

const NO_NON_FINITE: NonFiniteTally = { tNan: 0, tInf: 0, rNan: 0, rInf: 0, mismatches: 0 };
/** Elements per block: the pass keeps no per-element branch; the largest block is searched after. */
const BLOCK = 4096;

function fastPass(
  target: FloatArray,
  reference: FloatArray,
  options: CompareOptions,
): PairMetrics | undefined {
  const { atol, rtol, referenceLimit: limit } = options;
  const n = target.length;
  let diffSq = 0;
  let diffFourth = 0;
  let refSq = 0;
  let targetSq = 0;
  let dot = 0;
  let violations = 0;
  let maxAbs = -1;
  let maxBlock = 0;
  for (let start = 0; start < n; start += BLOCK) {
    const end = Math.min(n, start + BLOCK);
    let blockMax = 0;
    for (let i = start; i < end; i++) {
      const t = target[i]!;
      const r = clampFinite(reference[i]!, limit);
      const d = t - r;
      const d2 = d * d;
      diffSq += d2;
      diffFourth += d2 * d2;
      refSq += r * r;
      targetSq += t * t;
      dot += t * r;
      const a = Math.abs(d);
      blockMax = Math.max(blockMax, a);
      violations += a > atol + rtol * Math.abs(r) ? 1 : 0;
    }
    if (blockMax > maxAbs) {
      maxAbs = blockMax;
      maxBlock = start;
    }
  }
  if (!Number.isFinite(diffSq + diffFourth + refSq + targetSq + dot + maxAbs)) return undefined;
  let maxIndex = n > 0 ? maxBlock : -1;
  for (let i = maxBlock; i < Math.min(n, maxBlock + BLOCK); i++) {
    if (Math.abs(target[i]! - clampFinite(reference[i]!, limit)) === maxAbs) {
      maxIndex = i;
      break;
    }
  }
  return metricsFrom(
    n,
    {
      diffSq,
      diffFourth,
      refSq,
      targetSq,
      dot,
      maxAbs: Math.max(maxAbs, 0),
      maxIndex,
      violations,
    },
    NO_NON_FINITE,
  );
}

/** Element by element, keeping non-finite values out of the sums and counting them. */
function carefulPass(
  target: FloatArray,
  reference: FloatArray,
  options: CompareOptions,
): PairMetrics {
  const { atol, rtol, referenceLimit: limit } = options;
  const sums: Sums = {
    diffSq: 0,
    diffFourth: 0,
    refSq: 0,
    targetSq: 0,
    dot: 0,
    maxAbs: -1,
    maxIndex: -1,
    violations: 0,
  };
  const nonFinite: NonFiniteTally = { tNan: 0, tInf: 0, rNan: 0, rInf: 0, mismatches: 0 };
  for (let i = 0; i < target.length; i++) {
    const t = target[i]!;
    const r = clampFinite(reference[i]!, limit);
    const d = t - r;
    // The difference of two finite values is finite in float64.
    if (d - d !== 0) {
      countNonFinite(t, r, nonFinite);
      // An overflow to ±Inf where the reference lies beyond the target type's range: saturation.
      const saturated =
        Number.isFinite(limit) && Math.abs(t) === Infinity && r === limit * Math.sign(t);
      if (saturated) nonFinite.mismatches--;
      continue;
    }
    sums.diffSq += d * d;
    sums.diffFourth += d * d * d * d;
    sums.refSq += r * r;
    sums.targetSq += t * t;
    sums.dot += t * r;
    const a = Math.abs(d);
    if (a > atol + rtol * Math.abs(r)) sums.violations++;
    if (a > sums.maxAbs) {
      sums.maxAbs = a;
      sums.maxIndex = i;
    }
  }
  sums.violations += nonFinite.mismatches;
  if (sums.maxIndex < 0) sums.maxAbs = 0;
  return metricsFrom(target.length, sums, nonFinite);
}

function metricsFrom(elements: number, sums: Sums, nonFinite: NonFiniteTally): PairMetrics {
  const diffNorm = Math.sqrt(sums.diffSq);
  const referenceNorm = Math.sqrt(sums.refSq);
  const targetNorm = Math.sqrt(sums.targetSq);
  let cosineSimilarity: number;
  if (referenceNorm === 0 && targetNorm === 0) cosineSimilarity = 1;
  else if (referenceNorm === 0 || targetNorm === 0) cosineSimilarity = 0;
  else cosineSimilarity = sums.dot / (referenceNorm * targetNorm);
  return {
    elements,
    diffNorm,
    effectiveElements: sums.diffFourth > 0 ? (sums.diffSq * sums.diffSq) / sums.diffFourth : 0,
    referenceNorm,
    relativeL2Error: referenceNorm > 0 ? diffNorm / referenceNorm : diffNorm > 0 ? Infinity : 0,
    cosineSimilarity,
    maxAbsError: sums.maxAbs,
    maxAbsErrorIndex: sums.maxIndex,
    target: { nan: nonFinite.tNan, inf: nonFinite.tInf },
    reference: { nan: nonFinite.rNan, inf: nonFinite.rInf },
    nonFiniteMismatches: nonFinite.mismatches,
    toleranceViolations: sums.violations,
  };
}

/** The rare path: at least one side is NaN or infinite. */
function countNonFinite(t: number, r: number, counts: NonFiniteTally): void {
  if (t !== t) counts.tNan++;
  else if (t === Infinity || t === -Infinity) counts.tInf++;
  if (r !== r) counts.rNan++;
  else if (r === Infinity || r === -Infinity) counts.rInf++;
  const agree = t === r || (t !== t && r !== r);
  if (!agree) counts.mismatches++;
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
