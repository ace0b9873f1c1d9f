import type { SeriesPoint } from '../diagnosis/result';

/**
 * The localization rules users apply today, run on the same aligned module outputs as ours.
 * Each returns a ranking (best first, one entry per module) and whether it raises an alarm at all.
 */
export interface BaselineVerdict {
  alarm: boolean;
  ranking: string[];
}

export type Baseline = (series: readonly SeriesPoint[]) => BaselineVerdict;

function uniqueModules(points: readonly SeriesPoint[]): string[] {
  return [...new Set(points.map((p) => p.module))];
}

/**
 * Output-level inconsistency threshold for the rules that first check the model's output before
 * localizing (relative L2 of the last module output).
 */
export const OUTPUT_INCONSISTENCY = 1e-3;

const outputDiverges = (series: readonly SeriesPoint[]): boolean =>
  (series[series.length - 1]?.relativeL2Error ?? 0) > OUTPUT_INCONSISTENCY;

/**
 * Polygraphy / msprobe style: the first module (in execution order) with any element outside
 * atol = rtol = 1e-5; later failing modules follow in order.
 */
export const firstOverTolerance: Baseline = (series) => {
  const failing = series.filter((p) => p.toleranceViolations > 0);
  return { alarm: failing.length > 0, ranking: uniqueModules(failing) };
};

/** The module with the largest relative error, then the next largest. */
export const largestError: Baseline = (series) => ({
  alarm: outputDiverges(series),
  ranking: uniqueModules([...series].sort((a, b) => b.relativeL2Error - a.relativeL2Error)),
});

/**
 * CRADLE style (Pham et al., ICSE 2019): rank by the rate of change of the error from one module
 * output to the next, (e_i − e_{i−1}) / (e_{i−1} + ε); the largest relative increase first.
 */
export const rateOfChange: Baseline = (series) => {
  const epsilon = 1e-7;
  const scored = series.map((p, i) => {
    const previous = i > 0 ? series[i - 1]!.relativeL2Error : 0;
    return { point: p, rate: (p.relativeL2Error - previous) / (previous + epsilon) };
  });
  scored.sort((a, b) => b.rate - a.rate);
  return { alarm: outputDiverges(series), ranking: uniqueModules(scored.map((s) => s.point)) };
};

export const BASELINES: Record<string, Baseline> = {
  'first-over-atol-rtol': firstOverTolerance,
  'largest-error': largestError,
  'rate-of-change': rateOfChange,
};
