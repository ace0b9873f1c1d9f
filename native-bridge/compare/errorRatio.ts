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
}

export const DEFAULT_NOISE_FLOOR: NoiseFloorOptions = { floorFactor: 64 };

export type NoiseSource = 'low-precision-reference' | 'analytic-floor';

export interface ErrorRatio {
  /** ||X_T − Y_R|| / noise, capped at RATIO_CAP. */
  ratio: number;
  /** The denominator actually used. */
  noise: number;
  noiseSource: NoiseSource;
}

/**
 * The robust error ratio of one module: the target's distance from the full-precision reference,
 * divided by the distance the reference itself travels when run at the target's precision. Where
 * no low-precision reference exists, or its gap is below the analytic bound for `dtype`, the
 * analytic floor γ · u · (||Y_R|| + √n · min normal) stands in, so all-fp32 diagnoses still read "≈1 means noise".
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
  const analytic =
    options.floorFactor *
    UNIT_ROUNDOFF[dtype] *
    (targetVsReference.referenceNorm + Math.sqrt(targetVsReference.elements) * MIN_NORMAL[dtype]);
  const measured = lowPrecisionVsReference?.diffNorm ?? 0;
  const noise = Math.max(measured, analytic, Number.MIN_VALUE);
  const noiseSource: NoiseSource =
    measured > analytic ? 'low-precision-reference' : 'analytic-floor';
  const explainedMismatches = lowPrecisionVsReference?.nonFiniteMismatches ?? 0;
  if (targetVsReference.nonFiniteMismatches > explainedMismatches) {
    return { ratio: RATIO_CAP, noise, noiseSource };
  }
  return { ratio: Math.min(RATIO_CAP, targetVsReference.diffNorm / noise), noise, noiseSource };
}
