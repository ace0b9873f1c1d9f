import { detectChangePoint, type ChangePointResult } from '../localize/changePoint';
import { rankSuspects, type RankedSuspect } from '../localize/suspects';
import type { Thresholds } from './config';
import type { DiagnosisResult, SeriesPoint } from './result';

/** The change point of a compared series and the suspects ranked around it, as the result states them. */
export function localizeSeries(
  series: readonly SeriesPoint[],
  thresholds: Thresholds,
): {
  detection: ChangePointResult;
  ranked: RankedSuspect[];
  changePoint: DiagnosisResult['changePoint'];
} {
  const detection = detectChangePoint(
    series.map((p) => p.ratio),
    {
      threshold: thresholds.ratio,
      minRun: thresholds.minRun,
      penaltyScale: thresholds.penaltyScale,
      minSigma: 0.1,
    },
  );
  if (detection.index === null) return { detection, ranked: [], changePoint: null };
  const ranked = rankSuspects(series, detection.index, {
    threshold: thresholds.ratio,
    maxSuspects: thresholds.maxSuspects,
    lookback: thresholds.lookback,
  });
  const at = series[detection.index]!;
  return {
    detection,
    ranked,
    changePoint: { index: detection.index, module: at.module, ratio: at.ratio },
  };
}

/** The thresholds a result reports. */
export function reportedThresholds(thresholds: Thresholds): DiagnosisResult['thresholds'] {
  return {
    ratio: thresholds.ratio,
    minRun: thresholds.minRun,
    penaltyScale: thresholds.penaltyScale,
    lookback: thresholds.lookback,
  };
}

/**
 * What the user must know about a compared series that the ratios alone hide: a reference that is
 * NaN/Inf (its error is not measurable there) and empty values (nothing was compared).
 */
export function seriesWarnings(series: readonly SeriesPoint[]): string[] {
  const warnings: string[] = [];
  const nonFinite = series.filter((p) => p.reference.nan + p.reference.inf > 0);
  if (nonFinite.length > 0) {
    const first = nonFinite[0]!;
    warnings.push(
      `the reference holds NaN/Inf in ${nonFinite.length} of ${series.length} module outputs (first: #${first.index} ${first.module || '(root)'}): the target's error cannot be measured there`,
    );
  }
  const empty = series.filter((p) => p.shape.includes(0));
  if (empty.length > 0) {
    warnings.push(
      `${empty.length} of ${series.length} module outputs are empty (zero elements, e.g. #${empty[0]!.index} [${empty[0]!.shape.join(', ')}]): nothing was compared there`,
    );
  }
  return warnings;
}
