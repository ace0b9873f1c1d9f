/**
 * A ratio of two noise norms is itself a random number. The target's error and the low-precision
 * reference's gap are two draws of rounding noise; read from ν degrees of freedom each, the log of
 * their ratio has a standard deviation of about 1/√ν (the F(ν, ν) distribution). Over thousands of
 * elements that spread is a few per cent; over the 16 routing weights of a mixture-of-experts gate
 * it is a factor of two. A ratio inside the band noise alone reaches is not evidence.
 */

/** One-sided z for α = 10⁻⁴: one value in ten thousand reads above its band by chance. */
export const SAMPLING_Z = 3.719;

/** The largest ratio noise alone reaches with probability 1 − α, given the gap's degrees of freedom. */
export function samplingBand(dof: number | undefined): number {
  return dof !== undefined && dof > 0 ? Math.exp(SAMPLING_Z / Math.sqrt(dof)) : 1;
}

/** The series as localization reads it: a ratio within its sampling band reads as noise (≤ 1). */
export function beyondSampling<P extends { ratio: number; noiseDof?: number }>(
  series: readonly P[],
): P[] {
  return series.map((point) =>
    point.ratio > 1 && point.ratio < samplingBand(point.noiseDof) ? { ...point, ratio: 1 } : point,
  );
}
