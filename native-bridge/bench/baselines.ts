import type { DiagnosisResult, SeriesPoint } from '../diagnosis/result';

/**
 * The localization rules users apply today, run on the same compared module outputs as ours and
 * given the same signals: the noise-normalized ratio (with the low-precision reference where the
 * case has one), the data-flow edges (`inputIndex`), and tolerances for the target's precision.
 * Each returns a ranking (best first, one entry per module) and whether it raises an alarm.
 */
export interface BaselineVerdict {
  alarm: boolean;
  ranking: string[];
}

export type Baseline = (result: DiagnosisResult, precision: string) => BaselineVerdict;

function uniqueModules(points: readonly SeriesPoint[]): string[] {
  return [...new Set(points.map((p) => p.module))];
}

/**
 * torch.testing's default relative tolerance per dtype, applied to the relative L2 error
 * (float32 1.3e-6, float16 1e-3, bfloat16 1.6e-2).
 */
export const RELATIVE_TOLERANCE: Record<string, number> = {
  float32: 1.3e-6,
  float16: 1e-3,
  bfloat16: 1.6e-2,
};

const thresholdOf = (result: DiagnosisResult) => result.thresholds.ratio;

/** Whether the model's output (the last compared value) reads above the ratio threshold. */
const outputDiverges = (result: DiagnosisResult): boolean =>
  (result.series[result.series.length - 1]?.ratio ?? 0) >= thresholdOf(result);

/**
 * Polygraphy / msprobe style with the dtype's tolerance: the first module in execution order whose
 * relative error exceeds the target precision's tolerance, then the later failing ones.
 */
export const firstOverDtypeTolerance: Baseline = (result, precision) => {
  const tolerance = RELATIVE_TOLERANCE[precision] ?? RELATIVE_TOLERANCE.float32!;
  const failing = result.series.filter((p) => p.relativeL2Error > tolerance);
  return { alarm: failing.length > 0, ranking: uniqueModules(failing) };
};

/** The first module in execution order whose noise ratio reaches the threshold ours uses. */
export const firstOverRatio: Baseline = (result) => {
  const failing = result.series.filter((p) => p.ratio >= thresholdOf(result));
  return { alarm: failing.length > 0, ranking: uniqueModules(failing) };
};

/** The module with the largest noise ratio, then the next largest; alarm on the output. */
export const largestRatio: Baseline = (result) => ({
  alarm: outputDiverges(result),
  ranking: uniqueModules([...result.series].sort((a, b) => b.ratio - a.ratio)),
});

/**
 * CRADLE (Pham et al., ICSE 2019) given our edges and noise: rank by the rate of change of the
 * ratio from the value a module reads (its input with the largest ratio) to its output,
 * (r − r_in) / (r_in + ε); alarm on the output.
 */
export const rateOfChangeAlongEdges: Baseline = (result) => {
  const epsilon = 1e-7;
  const scored = result.series.map((p) => {
    const input = p.inputIndex !== undefined ? result.series[p.inputIndex] : undefined;
    const previous = input?.ratio ?? p.inputRatio ?? 0;
    return { point: p, rate: (p.ratio - previous) / (previous + epsilon) };
  });
  scored.sort((a, b) => b.rate - a.rate);
  return { alarm: outputDiverges(result), ranking: uniqueModules(scored.map((s) => s.point)) };
};

export const BASELINES: Record<string, Baseline> = {
  'first-over-dtype-tolerance': firstOverDtypeTolerance,
  'first-ratio-over-threshold': firstOverRatio,
  'largest-ratio': largestRatio,
  'rate-of-change-on-edges': rateOfChangeAlongEdges,
};
