import { MIN_NORMAL, UNIT_ROUNDOFF, type FloatDType } from '../tensors/dtypes';
import type { PairMetrics } from './metrics';

/** Ratios are capped here so that JSON stays finite; a non-finite divergence reads as the cap. */
export const RATIO_CAP = 1e12;

export interface NoiseFloorOptions {
  /**
   * γ in the analytic floor γ · u(dtype) · ||reference||: how many unit roundoffs of relative error
   * a correct module may accumulate. Default 64: fp32 runs of the same graph with and without graph
   * optimizations stay below that on the bundled sample (see docs/error-model.md).
   */
  floorFactor: number;
  /**
   * ‖fl(Y_R) − Y_R‖ at the target's precision (tensors/roundingErrorNorm). With a low-precision
   * reference it replaces the analytic floor as the guard under the measured gap: no run of that
   * precision gets closer than storing the reference in it, and a value exact in it (a mask) has
   * no rounding noise at all.
   */
  roundingNorm?: number;
}

export const DEFAULT_NOISE_FLOOR: NoiseFloorOptions = { floorFactor: 64 };

export type NoiseSource = 'low-precision-reference' | 'analytic-floor';

export interface ErrorRatio {
  /** ||X_T − Y_R|| / noise, capped at RATIO_CAP. */
  ratio: number;
  /** The denominator actually used. */
  noise: number;
  noiseSource: NoiseSource;
  /**
   * Where the denominator is the measured gap: its degrees of freedom (noiseDegreesOfFreedom), so
   * that a ratio read from few noisy elements can be told from one read from many.
   */
  noiseDof?: number;
}

/**
 * The degrees of freedom of a squared norm ‖d‖² read from n elements: 2n·P / (n − P), where P is
 * the participation ratio (Σd²)²/Σd⁴. n for Gaussian differences, about 2.5 n for uniform rounding
 * errors, about 2 when one element holds the whole norm; Infinity when all elements differ alike.
 */
export function noiseDegreesOfFreedom(metrics: PairMetrics): number {
  const n = metrics.elements;
  const p = metrics.effectiveElements;
  if (p <= 0) return 0;
  return p >= n ? Infinity : (2 * n * p) / (n - p);
}

/**
 * The robust error ratio of one module: the target's distance from the full-precision reference,
 * divided by the distance the reference itself travels when run at the target's precision. Where
 * no low-precision reference exists, the analytic floor γ · u · (||Y_R|| + √n · min normal) stands
 * in, so all-fp32 diagnoses still read "≈1 means noise". With one, the gap is guarded from below
 * by the reference's own rounding to the target's type when `roundingNorm` is given (a gap of zero
 * on values a cast leaves exact), else by the analytic floor.
 *
 * Non-finite values: a target with more NaN/Inf mismatches than the low-precision reference has
 * (i.e. not explained by precision) gets the capped ratio.
 */
export function errorRatio(
  targetVsReference: PairMetrics,
  lowPrecisionVsReference: PairMetrics | undefined,
  dtype: FloatDType,
  options: NoiseFloorOptions = DEFAULT_NOISE_FLOOR,
): ErrorRatio {
  // Rounding error is relative for normal numbers and absolute (one subnormal step) below them,
  // so an all-zero reference still has a floor: γ·u·(‖Y_R‖ + √n · min normal).
  const subnormalStep = Math.sqrt(targetVsReference.elements) * MIN_NORMAL[dtype];
  const rounding = lowPrecisionVsReference ? options.roundingNorm : undefined;
  const analytic =
    rounding !== undefined
      ? UNIT_ROUNDOFF[dtype] * subnormalStep
      : options.floorFactor *
        UNIT_ROUNDOFF[dtype] *
        (targetVsReference.referenceNorm + subnormalStep);
  const measured = Math.max(lowPrecisionVsReference?.diffNorm ?? 0, rounding ?? 0);
  const noise = Math.max(measured, analytic, Number.MIN_VALUE);
  const noiseSource: NoiseSource =
    measured > analytic ? 'low-precision-reference' : 'analytic-floor';
  const explainedMismatches = lowPrecisionVsReference?.nonFiniteMismatches ?? 0;
  if (targetVsReference.nonFiniteMismatches > explainedMismatches) {
    return { ratio: RATIO_CAP, noise, noiseSource };
  }
  // Where the gap itself is the denominator, how rough an estimate of the noise it is.
  const gap = noiseSource === 'low-precision-reference' ? lowPrecisionVsReference : undefined;
  const dof = gap && gap.diffNorm >= (rounding ?? 0) ? noiseDegreesOfFreedom(gap) : Infinity;
  return {
    ratio: Math.min(RATIO_CAP, targetVsReference.diffNorm / noise),
    noise,
    noiseSource,
    ...(Number.isFinite(dof) ? { noiseDof: dof } : {}),
  };
}

/** Elements that differ between two integer (or boolean) tensors of one length. */
export function countMismatches(target: ArrayLike<number>, reference: ArrayLike<number>): number {
  let count = 0;
  for (let i = 0; i < target.length; i++) if (target[i] !== reference[i]) count++;
  return count;
}

/**
 * The ratio of a discrete value (top-k indices, a routing or a mask): integers are decisions over
 * floats, and a near tie flips under any rounding. Mismatched elements over the ones the
 * low-precision reference mismatches, at least 1 % of the elements and at least one: flips at the
 * rate rounding causes read as noise, more read as a divergence.
 */
export function discreteRatio(
  targetMismatches: number,
  lowPrecisionMismatches: number | undefined,
  elements: number,
): ErrorRatio {
  const noise = Math.max(lowPrecisionMismatches ?? 0, 0.01 * elements, 1);
  return {
    ratio: Math.min(RATIO_CAP, targetMismatches / noise),
    noise,
    noiseSource:
      lowPrecisionMismatches === undefined ? 'analytic-floor' : 'low-precision-reference',
  };
}
