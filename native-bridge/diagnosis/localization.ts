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
